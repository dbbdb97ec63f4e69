// handle-bench: local writes per second through the public handles, against the raw CRDT in the
// same run (issue 19's "batched handle writes within 2x of the raw CRDT"): each run of a case is
// held against a raw run just before it, and the median of those ratios is reported.
//
// One node, no peers, no data directory. Each case writes for `seconds`, `runs` times; reported:
// the first run (a fresh map) and the median of the runs, in writes/s, and the ratio to the raw
// CRDT's median.
//   raw           AWLWWMap<string, string>::set with a hybrid logical clock, one thread: what a
//                 handle put does at its core, without the node
//   blocking 1    Map<string, string>::put from one thread (each returns once applied and logged)
//   blocking 4    the same from 4 threads (one map, different keys)
//   non-blocking  put(key, value, WriteTo::local()) from one thread, 256 futures in flight: a
//                 write counts once its future completed
//   typed         Map<int64_t, int64_t>::put from one thread (the codecs' cost)
//   batch N       Node::batch of N puts (1, 100, 10,000) from one thread: each batch is applied
//                 as one unit when its function returns (one delta per object)
// Keys cycle through 100,000 per thread, so maps stop growing after the first pass.
//
//   handle-bench [--seconds 2] [--runs 3] [--case NAME]   (NAME: only that case and raw)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

#include "crdt/aw-lww-map.h"
#include "crdt/hlc.h"
#include "measure.h"

namespace {

using Clock = std::chrono::steady_clock;
using deltasync::bench::argOr;
using deltasync::bench::percentile;

constexpr uint64_t kKeys = 100000;

std::vector<std::string> keyNames(const std::string& prefix) {
  std::vector<std::string> out;
  out.reserve(kKeys);
  for (uint64_t i = 0; i < kKeys; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// Runs write(i) for i = 0, 1, ... on `threads` threads for `seconds`; writes per second, each
// call counting `perCall` writes.
double rate(int threads, double seconds, const std::function<void(int thread, uint64_t i)>& write, uint64_t perCall = 1) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      uint64_t n = 0;
      const uint64_t between = std::max<uint64_t>(1, 64 / perCall);  // calls between looks at the clock
      while (!stop.load(std::memory_order_relaxed)) {
        for (uint64_t k = 0; k < between; ++k) write(t, n++);
      }
      total += n * perCall;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  return static_cast<double>(total) / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = static_cast<double>(argOr(argc, argv, "--seconds", 2));
  const size_t runs = std::max<size_t>(1, argOr(argc, argv, "--runs", 3));
  deltasync::log::setLevel(deltasync::log::Level::warn);
  deltasync::NodeConfig config;
  config.listen = "127.0.0.1:0";
  config.secret = deltasync::Secret(std::string(40, 'h'));
  deltasync::Node node(config);

  std::vector<std::vector<std::string>> keys;
  for (int t = 0; t < 4; ++t) keys.push_back(keyNames("t" + std::to_string(t) + "-key-"));
  const std::string value = "value";

  struct Case {
    const char* name;
    std::function<double(size_t run)> measure;
  };
  // Each case writes into a fresh object and deletes it after the run (as the raw case's map dies
  // with its run), so every run meets the same heap: the objects of earlier runs and cases, ~15
  // MB each, would otherwise tax later ones with their cache and allocator footprint.
  auto fresh = [&](const std::string& name, const std::function<double(const std::string&)>& measure) {
    const double r = measure(name);
    node.deleteObject(name);
    return r;
  };
  std::vector<Case> cases;
  cases.push_back({"raw", [&](size_t) {
                     deltasync::crdt::AWLWWMap<std::string, std::string> m;
                     deltasync::crdt::HybridLogicalClock hlc;
                     const deltasync::crdt::ReplicaId self{1};
                     return rate(1, seconds, [&](int, uint64_t i) {
                       const uint64_t wall = static_cast<uint64_t>(
                           std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
                       m.set(self, keys[0][i % kKeys], value, hlc.now(wall));
                     });
                   }});
  cases.push_back({"blocking 1", [&](size_t run) {
                     return fresh("b1-" + std::to_string(run), [&](const std::string& name) {
                       auto m = node.map<std::string, std::string>(name);
                       return rate(1, seconds, [&](int, uint64_t i) { m.put(keys[0][i % kKeys], value); });
                     });
                   }});
  cases.push_back({"blocking 4", [&](size_t run) {
                     return fresh("b4-" + std::to_string(run), [&](const std::string& name) {
                       auto m = node.map<std::string, std::string>(name);
                       return rate(4, seconds, [&](int t, uint64_t i) { m.put(keys[static_cast<size_t>(t)][i % kKeys], value); });
                     });
                   }});
  cases.push_back({"non-blocking", [&](size_t run) {
                     return fresh("nb-" + std::to_string(run), [&](const std::string& name) {
                       auto m = node.map<std::string, std::string>(name);
                       std::deque<std::future<deltasync::WriteResult>> inFlight;
                       const double r = rate(1, seconds, [&](int, uint64_t i) {
                         if (inFlight.size() >= 256) {
                           inFlight.front().get();
                           inFlight.pop_front();
                         }
                         inFlight.push_back(m.put(keys[0][i % kKeys], value, deltasync::WriteTo::local()));
                       });
                       for (auto& f : inFlight) f.get();
                       return r;
                     });
                   }});
  cases.push_back({"typed", [&](size_t run) {
                     return fresh("typed-" + std::to_string(run), [&](const std::string& name) {
                       auto m = node.map<int64_t, int64_t>(name);
                       return rate(1, seconds, [&](int, uint64_t i) {
                         m.put(static_cast<int64_t>(i % kKeys), static_cast<int64_t>(i));
                       });
                     });
                   }});

  for (uint64_t size : {uint64_t{1}, uint64_t{100}, uint64_t{10000}}) {
    static std::deque<std::string> names;  // (stable: cases point at them)
    names.push_back("batch " + std::to_string(size));
    cases.push_back({names.back().c_str(), [&, size](size_t run) {
                       return fresh("batch" + std::to_string(size) + "-" + std::to_string(run), [&](const std::string& name) {
                         auto m = node.map<std::string, std::string>(name);
                         return rate(
                             1, seconds,
                             [&](int, uint64_t i) {
                               node.batch([&] {
                                 for (uint64_t b = 0; b < size; ++b) m.put(keys[0][(i * size + b) % kKeys], value);
                               });
                             },
                             size);
                       });
                     }});
  }

  std::printf("%.0f s per run, %zu runs; one node, no peers, memory only\n", seconds, runs);
  std::printf("(vs raw: the median over runs of the case's rate over the raw rate measured just before it)\n");
  std::printf("%-14s %14s %14s %10s\n", "case", "first/s", "median/s", "vs raw");
  const char* only = nullptr;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--case") only = argv[i + 1];
  }
  const Case& raw = cases.front();
  for (const Case& c : cases) {
    if (only != nullptr && &c != &raw && std::string(c.name) != only) continue;
    std::vector<double> r, ratios;
    for (size_t run = 0; run < runs; ++run) {
      // The machine's speed drifts (shared, noisy): each run is held against a raw run next to it.
      const double base = &c == &raw ? 0 : raw.measure(run);
      r.push_back(c.measure(run));
      ratios.push_back(&c == &raw ? 1.0 : r.back() / base);
    }
    std::printf("%-14s %14.0f %14.0f %9.2fx\n", c.name, r[0], percentile(r, 0.5), percentile(ratios, 0.5));
  }
  return 0;
}
