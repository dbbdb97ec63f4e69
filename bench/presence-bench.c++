// presence-bench: the presence tracker's targets (issue "The presence tracker"), measured two ways:
//
//   tracker  gossip::PresenceTracker alone over its store (no threads, no network): track,
//            list, get, close, and heap bytes per presence (counted by replacing operator new).
//   node     deltasync::Node instances in this process on 127.0.0.1 over TCP (real sockets, real
//            loop and notifier threads), through the public API: track from one thread and from
//            16, propagation of 10k joins to two peers, 100k leaves after closing connections,
//            a late joiner's catch-up, and a fresh cluster's time to see every replica up.
//   sim      8 simulated nodes under steady churn: wire bytes per change per receiving node; at
//            the default tuning under 10% loss: false leaves in an hour, leaves after a
//            partition, joins after its heal.
//
//   presence-bench [--runs 5] [--presences 100000] [--gossip-interval 20] [--seeds 12]
//                  [--parts tracker,churn,partition,node]
//   (--parts node-track: only node's one-thread track, e.g. under a profiler)
//
// Each measurement runs --runs times: the first (a fresh process meets it once) and the median
// of all are printed. Waits on the cluster are polled every 1 ms, so they resolve to ~1 ms.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>
#include <deltasync/presence.h>

#include "gossip/presence.h"
#include "tests/sim/simulator.h"

// ---- heap accounting ----------------------------------------------------------------------

namespace {
std::atomic<int64_t> gHeap{0};
}  // namespace

void* operator new(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  gHeap += static_cast<int64_t>(malloc_usable_size(p));
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  gHeap -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}
void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace {

using Clock = std::chrono::steady_clock;
using deltasync::gossip::ObjectStore;
using deltasync::gossip::PresenceTracker;
using deltasync::gossip::ReplicaId;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Result {
  std::vector<double> runs;
  double first() const { return runs.front(); }
  double median() const {
    auto v = runs;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

void report(const char* what, const Result& r, const char* unit, double scale, const char* target) {
  std::printf("%-58s first %9.3f %s   median %9.3f %s   (target %s)\n", what, r.first() * scale, unit,
              r.median() * scale, unit, target);
  std::fflush(stdout);
}

template <typename F>
Result repeat(int runs, F&& f) {
  Result r;
  for (int i = 0; i < runs; ++i) r.runs.push_back(f());
  return r;
}

// Waits (polling every 1 ms) until pred() holds; seconds from `since`, or -1 after 60 s.
template <typename P>
double until(Clock::time_point since, P pred) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!pred()) {
    if (Clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return seconds(since, Clock::now());
}

std::string key(size_t i) { return "user" + std::to_string(i); }
std::string topic(size_t i) { return "room" + std::to_string(i % 10); }  // 10 topics

// ---- tracker ------------------------------------------------------------------------------

void trackerBench(int runs, size_t n) {
  const deltasync::gossip::Limits limits;
  report("tracker: track n presences, one thread (s)", repeat(runs, [&] {
           ObjectStore store(ReplicaId{1});
           PresenceTracker t(store, limits);
           const auto a = Clock::now();
           for (size_t i = 0; i < n; ++i) t.track(i / 4, topic(i), key(i), R"({"s":"online"})");
           return seconds(a, Clock::now());
         }),
         "s", 1, "<= 0.1 s for 1e5");
  {
    ObjectStore store(ReplicaId{1});
    const int64_t before = gHeap.load();
    auto t = std::make_unique<PresenceTracker>(store, limits);
    for (size_t i = 0; i < n; ++i) t->track(i / 4, topic(i), key(i), R"({"s":"online"})");
    t->takeDiffs();
    const double bytes = static_cast<double>(gHeap.load() - before) / static_cast<double>(n);
    std::printf("%-58s %9.0f B (store object + indexes; meta 15 B, key ~10 B, topic 5 B) (target <= 100 B)\n",
                "tracker: heap bytes per presence", bytes);
    {  // the store object's share: what stays when a second tracker's indexes go
      ObjectStore s2(ReplicaId{1});
      const int64_t b0 = gHeap.load();
      auto t2 = std::make_unique<PresenceTracker>(s2, limits);
      for (size_t i = 0; i < n; ++i) t2->track(i / 4, topic(i), key(i), R"({"s":"online"})");
      t2->takeDiffs();
      t2.reset();
      std::printf("%-58s %9.0f B\n", "  of which the store object",
                  static_cast<double>(gHeap.load() - b0) / static_cast<double>(n));
    }
    report("tracker: list a 10k-presence topic (1e5 in the node) (ms)", repeat(runs * 20, [&] {
             const auto a = Clock::now();
             auto l = t->list("room3");
             const double s = seconds(a, Clock::now());
             if (l.size() != n / 10) std::abort();
             return s;
           }),
           "ms", 1e3, "<= 1 ms");
    report("tracker: get one key in that topic (us)", repeat(runs * 200, [&] {
             const auto a = Clock::now();
             auto g = t->get("room3", key(13));
             const double s = seconds(a, Clock::now());
             if (g.size() != 1) std::abort();
             return s;
           }),
           "us", 1e6, "<= 10 us");
    const auto a = Clock::now();
    for (uint64_t c = 0; c <= n / 4; ++c) t->close(c);
    std::printf("%-58s %9.3f s\n", "tracker: close n/4 connections (4 presences each)", seconds(a, Clock::now()));
  }
  {
    ObjectStore store(ReplicaId{1});
    PresenceTracker t(store, limits);
    for (size_t i = 0; i < n; ++i) t.track(7, topic(i), key(i), R"({"s":"online"})");
    const auto a = Clock::now();
    t.close(7);
    std::printf("%-58s %9.3f s\n", "tracker: close one connection of n presences", seconds(a, Clock::now()));
  }
}

// ---- churn on the simulator -----------------------------------------------------------------

// 8 nodes (membership on, gossip every 100 ms), 1,000 changes/s across the cluster (half joins of
// new presences, half leaves of existing ones, on random nodes), for 30 simulated seconds after a
// quiet baseline of the same length: wire bytes (real encodings) per change per receiving node.
void churnBench() {
  deltasync::sim::SimConfig cfg;
  cfg.nodes = 8;
  cfg.seed = 42;
  cfg.membership = true;
  deltasync::sim::Simulator sim(cfg);
  sim.runFor(20000);
  const uint64_t idle0 = sim.stats().bytes;
  sim.runFor(30000);
  const uint64_t idle = sim.stats().bytes - idle0;
  std::vector<std::vector<std::string>> held(cfg.nodes);
  uint64_t changes = 0, next = 0;
  const uint64_t b0 = sim.stats().bytes;
  for (int step = 0; step < 300; ++step) {  // 100 ms steps
    for (int k = 0; k < 100; ++k) {
      const size_t i = sim.below(cfg.nodes);
      auto& t = sim.replica(i).presence();
      if (held[i].size() < 50 || sim.chance(0.5)) {
        held[i].push_back(key(next++));
        t.track(1, "room", held[i].back(), R"({"s":"online"})");
      } else {
        const size_t j = sim.below(held[i].size());
        t.untrack(1, "room", held[i][j]);
        held[i][j] = held[i].back();
        held[i].pop_back();
      }
      ++changes;
    }
    sim.runFor(100);
  }
  sim.runUntilQuiet(60000);
  const uint64_t bytes = sim.stats().bytes - b0;
  const double receivers = static_cast<double>(changes) * (cfg.nodes - 1);
  std::printf("%-58s %9.1f B all traffic, %9.1f B above the idle cluster's (target <= 40 B)\n",
              "sim: 8 nodes, 1000 changes/s: wire bytes per change per receiver", bytes / receivers,
              (static_cast<double>(bytes) - static_cast<double>(idle)) / receivers);
}

// 8 nodes at the default tuning (membership's defaults, gossip 100 ms), one presence on each,
// under 10% loss: a 4|4 partition, then a heal. Time until every node lists only its side's
// presences, then until every node lists all 8 again; and false leaves (a presence of the same
// side missing from a node's list at a probe, every 100 ms) over a simulated hour of 10% loss
// before the cut. Simulated time is exact, but one seed is one draw: `seeds` seeds, the median
// and the worst are printed.
struct SplitRun {
  uint64_t falseLeaves = 0;
  double leaves = 0, back = 0;
};

SplitRun partitionRun(uint64_t seed) {
  deltasync::sim::SimConfig cfg;
  cfg.nodes = 8;
  cfg.seed = seed;
  cfg.membership = true;
  deltasync::sim::Simulator sim(cfg);
  for (size_t i = 0; i < cfg.nodes; ++i) sim.replica(i).presence().track(1, "room", key(i), "{}");
  sim.runFor(30000);
  deltasync::sim::Faults lossy;
  lossy.loss = 0.10;
  sim.setFaults(lossy);
  auto sideOf = [](size_t i) { return i < 4 ? 0 : 1; };
  auto lists = [&](auto wants) {
    for (size_t i = 0; i < cfg.nodes; ++i) {
      for (size_t j = 0; j < cfg.nodes; ++j) {
        if (sim.replica(i).presence().get("room", key(j)).empty() == wants(i, j)) return false;
      }
    }
    return true;
  };
  SplitRun r;
  for (int step = 0; step < 36000; ++step) {  // one hour in 100 ms steps
    sim.runFor(100);
    for (size_t i = 0; i < cfg.nodes; ++i) r.falseLeaves += sim.replica(i).presence().count("room") != cfg.nodes;
  }
  sim.partition({0, 0, 0, 0, 1, 1, 1, 1});
  sim.setFaults(lossy);
  const uint64_t cut = sim.now();
  while (!lists([&](size_t i, size_t j) { return sideOf(i) == sideOf(j); }) && sim.now() - cut < 120000) sim.runFor(10);
  r.leaves = static_cast<double>(sim.now() - cut) / 1000;
  sim.heal();
  const uint64_t healed = sim.now();
  while (!lists([](size_t, size_t) { return true; }) && sim.now() - healed < 120000) sim.runFor(10);
  r.back = static_cast<double>(sim.now() - healed) / 1000;
  return r;
}

void partitionBench(int seeds) {
  Result leaves, back;
  uint64_t falseLeaves = 0;
  for (int s = 1; s <= seeds; ++s) {
    SplitRun r = partitionRun(static_cast<uint64_t>(s));
    falseLeaves += r.falseLeaves;
    leaves.runs.push_back(r.leaves);
    back.runs.push_back(r.back);
  }
  auto worst = [](const Result& r) { return *std::max_element(r.runs.begin(), r.runs.end()); };
  std::printf("%-58s %9llu over %d seeds (target 0)\n", "sim: 8 nodes, 1 h at 10% loss: false leaves (node-probes)",
              static_cast<unsigned long long>(falseLeaves), seeds);
  std::printf("%-58s median %6.2f s   worst %6.2f s of %d seeds (target <= 3 s)\n",
              "sim: 4|4 partition at 10% loss: far side's leaves everywhere", leaves.median(), worst(leaves), seeds);
  std::printf("%-58s median %6.2f s   worst %6.2f s of %d seeds (target <= 1 s)\n",
              "sim: heal: every presence back everywhere", back.median(), worst(back), seeds);
}

// ---- node ---------------------------------------------------------------------------------

deltasync::NodeConfig config(uint64_t gossipMs, std::vector<std::string> seeds = {}) {
  deltasync::NodeConfig c;
  c.listen = "127.0.0.1:0";
  c.seeds = std::move(seeds);
  c.secret = deltasync::Secret(std::string(40, 'b'));
  c.tuning.gossipIntervalMs = gossipMs;
  c.tuning.probeIntervalMs = 200;
  c.tuning.probeTimeoutMs = 80;
  c.leaveGraceMs = 100;
  return c;
}

size_t upCount(deltasync::Node& n) {
  size_t k = 0;
  for (const auto& r : n.presence().replicas()) k += r.status == deltasync::ReplicaStatus::up;
  return k;
}

// One node alone, one thread: what a track costs through the public API (the log, the store,
// the tracker), with no peer to send to. Also on its own (--parts node-track), for profilers.
void nodeTrackBench(int runs, size_t n, uint64_t gossipMs) {
  deltasync::log::setLevel(deltasync::log::Level::error);
  report("node: track n presences, one thread (s)", repeat(runs, [&] {
           deltasync::Node x(config(gossipMs));
           auto conn = x.presence().connect();
           const auto a = Clock::now();
           for (size_t i = 0; i < n; ++i) conn.track(topic(i), key(i), "{}");
           return seconds(a, Clock::now());
         }),
         "s", 1, "<= 0.1 s for 1e5");
}

void nodeBench(int runs, size_t n, uint64_t gossipMs) {
  deltasync::log::setLevel(deltasync::log::Level::error);
  report("node: fresh 3-node cluster, every replica sees all up (s)", repeat(runs, [&] {
           const auto a = Clock::now();
           deltasync::Node x(config(gossipMs));
           deltasync::Node y(config(gossipMs, {x.address()}));
           deltasync::Node z(config(gossipMs, {x.address()}));
           return until(a, [&] { return upCount(x) == 3 && upCount(y) == 3 && upCount(z) == 3; });
         }),
         "s", 1, "<= 1 s");

  nodeTrackBench(runs, n, gossipMs);

  report("node: n track calls from 16 threads at once (s)", repeat(runs, [&] {
           deltasync::Node x(config(gossipMs));
           std::vector<deltasync::PresenceConnection> conns;
           for (int t = 0; t < 16; ++t) conns.push_back(x.presence().connect());
           std::atomic<size_t> failures{0};
           const auto a = Clock::now();
           std::vector<std::thread> threads;
           for (size_t t = 0; t < 16; ++t) {
             threads.emplace_back([&, t] {
               for (size_t i = t; i < n; i += 16) {
                 try {
                   conns[t].track(topic(i), key(i), "{}");
                 } catch (const std::exception&) {
                   ++failures;
                 }
               }
             });
           }
           for (auto& th : threads) th.join();
           const double s = seconds(a, Clock::now());
           if (failures != 0) std::printf("  %zu calls failed\n", failures.load());
           return s;
         }),
         "s", 1, "<= 0.2 s, 0 failures");

  {
    deltasync::Node x(config(gossipMs));
    deltasync::Node y(config(gossipMs, {x.address()}));
    deltasync::Node z(config(gossipMs, {x.address()}));
    until(Clock::now(), [&] { return upCount(x) == 3 && upCount(y) == 3 && upCount(z) == 3; });
    auto px = x.presence(), py = y.presence(), pz = z.presence();
    const size_t joins = 10000;
    report("node: 3 nodes, 10k joins on A visible on B and C (s after the last)", repeat(runs, [&] {
             auto conn = px.connect();
             for (size_t i = 0; i < joins; ++i) conn.track("bench", key(i), "{}");
             const auto a = Clock::now();
             const double s = until(a, [&] { return py.count("bench") == joins && pz.count("bench") == joins; });
             conn.close();
             until(Clock::now(), [&] { return py.count("bench") == 0 && pz.count("bench") == 0; });
             return s;
           }),
           "s", 1, "<= 0.05 s");

    report("node: close n/4 connections (n presences): all leaves on the peers (s)", repeat(runs, [&] {
             std::vector<deltasync::PresenceConnection> conns;
             for (size_t c = 0; c < n / 4; ++c) conns.push_back(px.connect());
             for (size_t i = 0; i < n; ++i) conns[i / 4].track("bench", key(i), "{}");
             until(Clock::now(), [&] { return py.count("bench") == n && pz.count("bench") == n; });
             const auto a = Clock::now();
             conns.clear();
             return until(a, [&] { return py.count("bench") == 0 && pz.count("bench") == 0; });
           }),
           "s", 1, "<= 0.5 s");

    auto held = px.connect();
    for (size_t i = 0; i < joins; ++i) held.track("late", key(i), "{}");
    until(Clock::now(), [&] { return pz.count("late") == joins; });
    report("node: a new node joins a cluster holding 10k presences: has them all (s)", repeat(runs, [&] {
             const auto a = Clock::now();
             deltasync::Node w(config(gossipMs, {y.address()}));
             auto pw = w.presence();
             return until(a, [&] { return pw.count("late") == joins; });
           }),
           "s", 1, "<= 0.3 s");
  }
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5, seeds = 12;
  size_t n = 100000;
  uint64_t gossipMs = 20;
  std::string parts = "tracker,churn,partition,node";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--presences") == 0) n = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--gossip-interval") == 0) gossipMs = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--seeds") == 0) seeds = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--parts") == 0) parts = argv[i + 1];
  }
  auto part = [&](const char* name) { return ("," + parts + ",").find("," + std::string(name) + ",") != std::string::npos; };
  std::printf("presence-bench: %d runs, n = %zu presences, gossip interval %llu ms\n", runs, n,
              static_cast<unsigned long long>(gossipMs));
  if (part("tracker")) trackerBench(runs, n);
  if (part("churn")) churnBench();
  if (part("partition")) partitionBench(seeds);
  if (part("node")) nodeBench(runs, n, gossipMs);
  if (part("node-track")) nodeTrackBench(runs, n, gossipMs);
  return 0;
}
