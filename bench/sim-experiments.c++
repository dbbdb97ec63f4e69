// The gossip experiments of bench/RESULTS.md, run on the deterministic simulator (tests/sim):
// the real engine, membership and codec; byte counts are real encoded message sizes. Results
// depend only on the seeds, never on the machine's load.
//
//   sim-experiments rounds  [--nodes=10,100,1000] [--loss=0,0.1] [--trials=50] [--static]
//                           [--kind=counter|set]  (a set add takes the offer/request path)
//   sim-experiments mesh    15-node partial mesh: BP+RR with lazy offers, eager BP+RR, classic
//                           delta, state shipping
//   sim-experiments sets    [--ops-per-round=100] [--offers=1] [--seed=88]  8 replicas, 10,000
//                           sets over 1,000 keys, fan-out 2: bytes per operation until converged
//   sim-experiments detect  [--nodes=1000] [--crashes=20]  time until a crash is down everywhere
//   sim-experiments idle    [--nodes=1000]  bytes per second per node of an idle cluster
//   sim-experiments restarts [--generations=100] [--prune-after=60]  6 nodes; every 10 s one node
//                           stops (leaves) and starts again under a new id, then writes: the
//                           replica ids left in the objects' metadata, with pruning and without
//   sim-experiments all     everything above with defaults (rounds also at N = 10000, static)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gossip/compact.h"
#include "measure.h"
#include "tests/sim/simulator.h"

namespace ds = deltasync;
using ds::sim::Faults;
using ds::sim::SimConfig;
using ds::sim::Simulator;

namespace {

struct Args {
  std::map<std::string, std::string> opts;
  std::string get(const std::string& k, const std::string& d) const {
    auto it = opts.find(k);
    return it == opts.end() ? d : it->second;
  }
  bool has(const std::string& k) const { return opts.count(k) != 0; }
};

std::vector<double> numbers(const std::string& csv) {
  std::vector<double> out;
  std::stringstream ss(csv);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stod(item));
  return out;
}

using deltasync::bench::percentile;

// Engine options every experiment takes: --offers=0|1, --claim-ticks=N.
void engineOptions(const Args& a, ds::gossip::EngineConfig& e) {
  if (a.has("offers")) e.offers = a.get("offers", "1") != "0";
  if (a.has("claim-ticks")) e.claimTicks = static_cast<uint32_t>(std::stoul(a.get("claim-ticks", "1")));
}

// ---- rounds for one update to reach every node ------------------------------------------

void rounds(const Args& a) {
  const auto trials = static_cast<size_t>(std::stoul(a.get("trials", "50")));
  const bool fixedGraph = a.has("static");
  const bool set = a.get("kind", "counter") == "set";
  ds::gossip::EngineConfig engine;
  engineOptions(a, engine);
  std::printf("## rounds for one update to reach all N nodes (%s views, %zu updates each, %s)\n\n",
              fixedGraph ? "static random graph (ring + 3 chords per node)" : "membership", trials,
              !set ? "a counter increment: pushed directly"
              : engine.offers ? "an OR-set add: offer, request, push per hop" : "an OR-set add, eager push");
  std::printf("| N | loss | p50 rounds | p99 rounds | max | target p99 |\n|---|---|---|---|---|---|\n");
  for (double nd : numbers(a.get("nodes", "10,100,1000"))) {
    for (double loss : numbers(a.get("loss", "0,0.1"))) {
      const auto n = static_cast<size_t>(nd);
      SimConfig cfg;
      cfg.nodes = n;
      cfg.seed = 11 + n;
      cfg.membership = !fixedGraph;
      cfg.chords = 3;
      cfg.engine = engine;
      Simulator sim(cfg);
      sim.runFor(fixedGraph ? 1000 : 60000);  // membership: let the cluster form
      sim.setFaults(Faults{.loss = loss});
      std::vector<double> r;
      for (size_t k = 0; k < trials; ++k) {
        size_t origin = sim.below(n);
        std::string name = "r" + std::to_string(k);
        sim.at(origin, [&](ds::gossip::ObjectStore& e) {
          if (set) {
            e.update<ds::crdt::ORSet<std::string>>(name, [&](auto& x) { return x.add(sim.id(origin), "x"); });
          } else {
            e.update<ds::crdt::GCounter>(name, [&](ds::crdt::GCounter& c) { return c.increment(sim.id(origin)); });
          }
        });
        const uint64_t t0 = sim.now();
        bool all = false;
        while (!all && sim.now() - t0 < 200 * cfg.tickMs) {
          sim.runFor(5);
          all = true;
          for (size_t i = 0; i < n && all; ++i) all = sim.store(i).find(name) != nullptr;
        }
        r.push_back(std::ceil(static_cast<double>(sim.now() - t0) / cfg.tickMs));
        sim.runFor(3 * cfg.tickMs);  // let acks settle before the next update
      }
      double bound = std::ceil((loss > 0 ? 1.4 : 1.2) * std::log2(static_cast<double>(n)));
      std::printf("| %zu | %.0f%% | %.0f | %.0f | %.0f | <= %.0f |\n", n, loss * 100, percentile(r, 0.5),
                  percentile(r, 0.99), percentile(r, 1.0), bound);
      std::fflush(stdout);
    }
  }
  std::printf("\n");
}

// ---- bytes against the optimum on a partial mesh ------------------------------------------

struct MeshResult {
  uint64_t wire = 0, payload = 0, elements = 0, rounds = 0;
  std::map<size_t, uint64_t> byKind;  // Message alternative index -> wire bytes
  bool converged = false;
};

MeshResult meshRun(ds::gossip::EngineConfig engine, uint64_t& optimum) {
  SimConfig cfg;
  cfg.nodes = 15;
  cfg.seed = 77;
  cfg.chords = 1;  // ring + one chord per node, made symmetric: ~4 neighbours each
  cfg.engine = engine;
  cfg.countPayload = true;
  Simulator sim(cfg);
  optimum = 0;
  size_t next = 0;
  for (int round = 0; round < 20; ++round) {  // every node adds an element every round
    for (size_t i = 0; i < sim.size(); ++i) {
      sim.at(i, [&](ds::gossip::ObjectStore& e) {
        auto d = e.update<ds::crdt::ORSet<std::string>>("s", [&](auto& s) {
          return s.add(sim.id(i), "e" + std::to_string(next++));
        });
        // The delta alone in its compact encoding, naming its writer (as every relay must), plus
        // the object name.
        optimum += (ds::gossip::wireSize(ds::gossip::Value(d), sim.id((i + 1) % sim.size())) + 1) * (sim.size() - 1);
      });
    }
    sim.runFor(cfg.tickMs);
  }
  MeshResult r;
  if (engine.shipState) {
    // State shipping never falls quiet: count until every replica holds the same state.
    uint64_t start = sim.now();
    while (!sim.converged() && sim.now() - start < 1000 * cfg.tickMs) sim.runFor(cfg.tickMs);
    r.converged = sim.converged();
  } else {
    r.converged = sim.runUntilQuiet(1000 * cfg.tickMs) && sim.converged();
  }
  r.wire = sim.stats().bytes;
  r.payload = sim.stats().payload;
  r.elements = sim.stats().elements;
  for (auto [k, b] : sim.stats().bytesByKind) r.byKind[k] = b;
  r.rounds = sim.now() / cfg.tickMs;
  return r;
}

void mesh(const Args& a) {
  std::printf("## bytes against the optimum: 15-node partial mesh (~4 neighbours), every node adds an\n"
              "## OR-set element every round for 20 rounds (300 deltas), then runs until converged\n\n");
  std::printf("| protocol | elements sent | x optimum | CRDT payload bytes | x optimum | all wire bytes | x optimum | converged |\n"
              "|---|---|---|---|---|---|---|---|\n");
  struct Mode {
    const char* name;
    ds::gossip::EngineConfig cfg;
  };
  ds::gossip::EngineConfig offers, eager, classic, state;
  engineOptions(a, offers);
  eager.offers = false;
  classic.offers = false;
  classic.backPropagation = false;
  classic.removeRedundant = false;
  state.offers = false;
  state.shipState = true;
  uint64_t optimum = 0;
  std::vector<std::pair<const char*, MeshResult>> all;
  for (const Mode& m : {Mode{"delta, BP + RR + lazy offers", offers}, Mode{"delta, BP + RR, eager push", eager},
                        Mode{"classic delta (BP, RR off)", classic}, Mode{"state shipping", state}}) {
    MeshResult r = meshRun(m.cfg, optimum);
    const double optElements = 300.0 * 14;
    std::printf("| %s | %lu | %.2f | %lu | %.2f | %lu | %.2f | %s |\n", m.name, static_cast<unsigned long>(r.elements),
                static_cast<double>(r.elements) / optElements, static_cast<unsigned long>(r.payload),
                static_cast<double>(r.payload) / static_cast<double>(optimum), static_cast<unsigned long>(r.wire),
                static_cast<double>(r.wire) / static_cast<double>(optimum), r.converged ? "yes" : "NO");
    std::fflush(stdout);
    all.emplace_back(m.name, r);
  }
  std::printf("\nwire bytes by message kind:\n\n| protocol | pushes | acks | offers | requests | digests, chunks |\n"
              "|---|---|---|---|---|---|\n");
  for (auto& [name, r] : all) {
    auto k = [&](size_t i) { return static_cast<unsigned long>(r.byKind.count(i) ? r.byKind.at(i) : 0); };
    std::printf("| %s | %lu | %lu | %lu | %lu | %lu |\n", name, k(0), k(1), k(11), k(12), k(2) + k(3) + k(4));
  }
  std::printf("\noptimum: each of the 300 deltas delivered once to each of the 14 others: 4200 elements;\n"
              "%lu bytes when each delta travels alone in its compact encoding, naming its writer, with the\n"
              "object name (no message framing; batching joins deltas, so payload can beat this)\n\n",
              static_cast<unsigned long>(optimum));
}

// ---- bytes per operation: 8 replicas, 10,000 sets over 1,000 keys -----------------------------

void sets(const Args& a) {
  const auto perRound = static_cast<size_t>(std::stoul(a.get("ops-per-round", "100")));
  SimConfig cfg;
  cfg.nodes = 8;
  cfg.seed = std::stoull(a.get("seed", "88"));
  cfg.chords = 8;  // with 8 nodes: (nearly) a full mesh
  cfg.engine.fanout = 2;
  engineOptions(a, cfg.engine);
  cfg.countPayload = true;
  Simulator sim(cfg);
  const size_t ops = 10000;
  uint64_t counter = 0;
  for (size_t done = 0; done < ops;) {
    for (size_t k = 0; k < perRound && done < ops; ++k, ++done) {
      size_t i = sim.below(sim.size());
      std::string key = "k" + std::to_string(sim.below(1000));
      std::string value = std::to_string(sim.below(10000));
      ds::crdt::Timestamp ts{(sim.now() << 16) | (++counter & 0xffff)};
      sim.at(i, [&](ds::gossip::ObjectStore& e) {
        e.update<ds::gossip::Map>("kv", [&](ds::gossip::Map& m) { return m.set(sim.id(i), key, value, ts); });
      });
    }
    sim.runFor(cfg.tickMs);
  }
  bool quiet = sim.runUntilQuiet(10000 * cfg.tickMs);
  const auto& st = sim.stats();
  size_t degree = 0;
  for (size_t i = 0; i < sim.size(); ++i) degree += sim.adjacent(i).size();
  std::printf("## bytes per operation: 8 replicas (avg %.1f neighbours), 10,000 random sets over 1,000 keys,\n"
              "## %zu sets per round, each replica pushing to 2 random neighbours per round, %s\n\n",
              static_cast<double>(degree) / 8, perRound, cfg.engine.offers ? "lazy offers" : "eager push");
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| all wire bytes per op | %.1f |\n", static_cast<double>(st.bytes) / ops);
  std::printf("| all wire bytes per op and receiving replica (/ 7) | %.1f |\n", static_cast<double>(st.bytes) / ops / 7);
  std::printf("| push bytes per op | %.1f |\n", static_cast<double>(st.bytesByKind.count(0) ? st.bytesByKind.at(0) : 0) / ops);
  std::printf("| ack bytes per op | %.1f |\n", static_cast<double>(st.bytesByKind.count(1) ? st.bytesByKind.at(1) : 0) / ops);
  auto kindBytes = [&](size_t k) { return st.bytesByKind.count(k) ? st.bytesByKind.at(k) : 0; };
  std::printf("| offer + request bytes per op | %.1f |\n", static_cast<double>(kindBytes(11) + kindBytes(12)) / ops);
  std::printf("| map entries sent per op (7 = each op once to each other replica) | %.2f |\n",
              static_cast<double>(st.elements) / ops);
  std::printf("| messages | %lu |\n", static_cast<unsigned long>(st.messages));
  std::printf("| converged and quiet | %s |\n\n", quiet && sim.converged() ? "yes" : "NO");
}

// ---- failure detection and idle traffic at N = 1000 -----------------------------------------

void detect(const Args& a) {
  const auto n = static_cast<size_t>(std::stoul(a.get("nodes", "1000")));
  const auto crashes = static_cast<size_t>(std::stoul(a.get("crashes", "20")));
  SimConfig cfg;
  cfg.nodes = n;
  cfg.seed = 99;
  cfg.membership = true;
  Simulator sim(cfg);
  sim.runFor(120000);
  std::vector<double> everywhere, each;
  size_t undetected = 0;
  for (size_t c = 0; c < crashes; ++c) {
    size_t victim;
    do victim = sim.below(n); while (!sim.alive(victim));
    const size_t before = sim.events().size();
    const uint64_t t0 = sim.now();
    sim.crash(victim);
    sim.runFor(60000);
    std::map<size_t, double> seen;
    for (size_t k = before; k < sim.events().size(); ++k) {
      const auto& e = sim.events()[k];
      if (e.event.id == sim.id(victim) && e.event.state == ds::gossip::MemberState::down && !e.event.removed) {
        seen.emplace(e.observer, static_cast<double>(e.timeMs - t0) / 1000.0);
      }
    }
    size_t live = 0;
    for (size_t i = 0; i < n; ++i) live += sim.alive(i) ? 1 : 0;
    if (seen.size() < live) ++undetected;
    double last = 0;
    for (auto& [o, t] : seen) {
      each.push_back(t);
      last = std::max(last, t);
    }
    everywhere.push_back(last);
  }
  std::printf("## failure detection, N = %zu, default parameters, %zu crashes one after another\n\n", n, crashes);
  std::printf("| measure | p50 | p99 | max |\n|---|---|---|---|\n");
  std::printf("| seconds until down at every live node | %.1f | %.1f | %.1f |\n", percentile(everywhere, 0.5),
              percentile(everywhere, 0.99), percentile(everywhere, 1.0));
  std::printf("| seconds until down at one observer | %.1f | %.1f | %.1f |\n", percentile(each, 0.5),
              percentile(each, 0.99), percentile(each, 1.0));
  std::printf("\ncrashes not seen by every live node within 60 s: %zu\n\n", undetected);
}

void idle(const Args& a) {
  const auto n = static_cast<size_t>(std::stoul(a.get("nodes", "1000")));
  SimConfig cfg;
  cfg.nodes = n;
  cfg.seed = 5;
  cfg.membership = true;
  Simulator sim(cfg);
  sim.runFor(300000);  // join news drained
  const auto b0 = sim.stats().bytes, m0 = sim.stats().messages;
  const uint64_t seconds = 60;
  sim.runFor(seconds * 1000);
  std::printf("## idle traffic, N = %zu, after 300 s of formation, over %lu s\n\n", n, static_cast<unsigned long>(seconds));
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| bytes per second per node (sent) | %.0f |\n",
              static_cast<double>(sim.stats().bytes - b0) / static_cast<double>(n * seconds));
  std::printf("| messages per second per node | %.2f |\n\n",
              static_cast<double>(sim.stats().messages - m0) / static_cast<double>(n * seconds));
}

// What an object store holds of its objects' metadata: distinct replica ids in the contexts and
// counters of the user's objects, their bytes in memory, and their compact encoding.
struct Metadata {
  size_t ids = 0, memory = 0, encoded = 0;
};
Metadata metadata(const ds::gossip::ObjectStore& s) {
  std::set<uint64_t> ids;
  Metadata m;
  for (const auto& [name, v] : s.objects()) {
    if (name[0] == '$') continue;
    std::visit(
        [&](const auto& x) {
          if constexpr (requires { x.context().origins(); }) {
            for (const auto& o : x.context().origins()) ids.insert(o.replica.value);
          } else if constexpr (requires { x.begin()->replica; }) {
            for (const auto& e : x) ids.insert(e.replica.value);
          }
        },
        v);
    m.memory += ds::gossip::memoryBytes(v);
    ds::gossip::ColumnWriter w;
    ds::gossip::encodeCompact(v, s.self(), w);
    m.encoded += w.size();
  }
  m.ids = ids.size();
  return m;
}

void restarts(const Args& a) {
  const int generations = std::stoi(a.get("generations", "100"));
  const uint64_t pruneAfterS = std::stoull(a.get("prune-after", "60"));
  std::printf("## metadata after %d restarts under new ids (6 nodes, one stops and starts every 10 s)\n\n",
              generations);
  std::printf("| pruning | replica ids in the metadata | memory bytes | compact bytes | replicas pruned |\n"
              "|---|---|---|---|---|\n");
  for (const uint64_t after : {uint64_t{0}, pruneAfterS * 1000}) {
    SimConfig cfg;
    cfg.nodes = 6;
    cfg.seed = 21;
    cfg.membership = true;
    cfg.pruning.pruneAfterMs = after;
    cfg.pruning.checkIntervalMs = 1000;
    Simulator sim(cfg);
    sim.runFor(10000);
    auto write = [&](size_t i, int g) {
      const auto self = sim.id(i);
      sim.at(i, [&](ds::gossip::ObjectStore& s) {
        for (int k = 0; k < 50; ++k) {
          const std::string key = "k" + std::to_string(sim.below(1000));
          s.update<ds::gossip::Map>("map", [&](ds::gossip::Map& m) {
            return m.set(self, key, "v" + std::to_string(g), ds::crdt::Timestamp{uint64_t(g) << 20 | uint64_t(k)});
          });
        }
        s.update<ds::crdt::ORSet<std::string>>("set", [&](ds::crdt::ORSet<std::string>& x) {
          return x.add(self, "e" + std::to_string(sim.below(200)));
        });
        s.update<ds::crdt::PNCounter>("counter", [&](ds::crdt::PNCounter& c) { return c.increment(self, 1); });
      });
    };
    for (size_t i = 0; i < sim.size(); ++i) write(i, 0);
    for (int g = 1; g <= generations; ++g) {
      const size_t i = 1 + sim.below(sim.size() - 1);  // node 0 stays: it is measured
      sim.leave(i);
      sim.runFor(500);
      sim.crash(i);
      sim.restart(i, false);
      sim.runFor(1000);
      write(i, g);
      sim.runFor(8500);
    }
    sim.runFor(after + 60000);  // the last ones pruned too
    sim.runUntilQuiet(120000);
    const Metadata m = metadata(sim.store(0));
    uint64_t pruned = 0;
    for (size_t i = 0; i < sim.size(); ++i) pruned += sim.replica(i).pruner().stats().pruned;
    std::printf("| %s | %zu | %zu | %zu | %lu |\n", after == 0 ? "off" : ("after " + std::to_string(pruneAfterS) + " s").c_str(),
                m.ids, m.memory, m.encoded, static_cast<unsigned long>(pruned));
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::printf("usage: sim-experiments rounds|mesh|sets|detect|idle|restarts|all [--key=value ...]\n"
                "see the top of bench/sim-experiments.c++ for the options\n");
    return argc < 2 ? 2 : 0;
  }
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0) {
      std::fprintf(stderr, "sim-experiments: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
    auto eq = s.find('=');
    a.opts[s.substr(2, eq == std::string::npos ? std::string::npos : eq - 2)] = eq == std::string::npos ? "" : s.substr(eq + 1);
  }
  const std::string what = argv[1];
  try {
    if (what == "rounds") rounds(a);
    else if (what == "mesh") mesh(a);
    else if (what == "sets") sets(a);
    else if (what == "detect") detect(a);
    else if (what == "idle") idle(a);
    else if (what == "restarts") restarts(a);
    else if (what == "all") {
      rounds(a);
      Args big;
      big.opts = {{"nodes", "10000"}, {"static", ""}, {"trials", "20"}};
      rounds(big);
      mesh(a);
      sets(a);
      detect(a);
      idle(a);
    } else {
      std::fprintf(stderr, "sim-experiments: unknown experiment '%s' (try --help)\n", what.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sim-experiments: %s\n", e.what());
    return 1;
  }
  return 0;
}
