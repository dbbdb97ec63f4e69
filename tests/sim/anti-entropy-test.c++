// The gossip engine under the deterministic simulator: convergence and no lost updates under
// loss, duplication, reordering, partitions, slow nodes and crashes, across many seeds.
//
// The check (Jepsen's set checker, plus counters): after the faults heal and the network falls
// quiet, every live replica holds the same objects; the OR-set holds exactly the elements added
// (each unique) minus those removed by a replica that had observed them; the counters equal the
// sum of all increments. A failing seed is printed and replays exactly (DELTASYNC_SIM_SEED=N
// runs that seed alone).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>

#include "tests/sim/simulator.h"
#include "tests/sim/workload.h"

namespace deltasync::sim {
namespace {

// Setup / random operations with faults / heal and check, for one seed.
std::string runFaultySeed(uint64_t seed, gossip::EngineConfig engine = {}) {
  SimConfig cfg;
  cfg.seed = seed;
  cfg.engine = engine;
  // A first generator picks the size so the simulator's own stream stays seed-determined.
  std::mt19937_64 pick(seed ^ 0x5eed);
  cfg.nodes = 3 + pick() % 48;  // 3..50
  cfg.chords = 1 + pick() % 2;
  cfg.faults = Faults{.loss = 0.3, .duplicate = 0.1, .reorder = 0.2};
  Simulator sim(cfg);
  Expected ex;
  const size_t n = sim.size();
  std::vector<size_t> crashed;
  for (int round = 0; round < 80; ++round) {
    for (int k = 0; k < 3; ++k) randomOp(sim, ex);
    if (round % 20 == 5) {  // a clean split, a one-way block, or a flapping link
      uint64_t what = sim.below(3);
      if (what == 0) {
        std::vector<int> g(n);
        for (auto& x : g) x = static_cast<int>(sim.below(2));
        sim.partition(g);
      } else if (what == 1) {
        sim.blockOneWay(sim.below(n), sim.below(n));
      } else {
        std::vector<int> g(n, 0);
        g[sim.below(n)] = 1;
        sim.partition(g);
      }
    }
    if (round % 20 == 12) sim.partition(std::vector<int>(n, 0));
    if (round % 25 == 7 && n > 3) {  // a crash; it comes back with its durable state
      size_t c = sim.below(n);
      if (sim.alive(c)) {
        sim.crash(c);
        crashed.push_back(c);
      }
    }
    if (round % 25 == 17) {
      for (size_t c : crashed) sim.restart(c, true);
      crashed.clear();
    }
    if (round == 30) sim.setSlow(sim.below(n), 3);
    sim.runFor(cfg.tickMs);
  }
  for (size_t c : crashed) sim.restart(c, true);
  sim.heal();
  if (!sim.runUntilQuiet(2000 * cfg.tickMs)) return "did not fall quiet";
  return check(sim, ex);
}

// Deletes racing writes: objects written at random nodes while some are deleted at others, under
// the same faults. After the heal every live node holds the same state, every deleted name is a
// tombstone everywhere (whatever was written to it concurrently), nothing else was lost, and no
// node refused anything (a tombstone meeting writes is not an error).
std::string runDeleteSeed(uint64_t seed) {
  SimConfig cfg;
  cfg.seed = seed;
  std::mt19937_64 pick(seed ^ 0xde1e7e);
  cfg.nodes = 3 + pick() % 20;
  cfg.faults = Faults{.loss = 0.3, .duplicate = 0.1, .reorder = 0.2};
  Simulator sim(cfg);
  const size_t n = sim.size();
  const std::vector<std::string> names{"m0", "m1", "s0", "s1"};
  std::set<std::string> deleted;
  std::map<std::string, std::set<std::string>> added;  // set name -> elements added
  size_t refused = 0, next = 0;
  for (int round = 0; round < 60; ++round) {
    for (int k = 0; k < 4; ++k) {
      const size_t i = sim.below(n);
      if (!sim.alive(i)) continue;
      const std::string name = names[sim.below(names.size())];
      const bool erase = sim.chance(0.04);
      const ReplicaId self = sim.id(i);
      sim.at(i, [&](gossip::ObjectStore& e) {
        try {
          if (erase) {
            e.erase(name);
            deleted.insert(name);
          } else if (name[0] == 'm') {
            crdt::Timestamp ts{(sim.now() << 16) | sim.below(1 << 16)};
            e.update<gossip::Map>(name, [&](gossip::Map& m) { return m.set(self, "k" + std::to_string(sim.below(8)), "v", ts); });
          } else {
            std::string el = "e" + std::to_string(next++);
            e.update<Set>(name, [&](Set& x) { return x.add(self, el); });
            added[name].insert(el);
          }
        } catch (const gossip::ObjectDeleted&) {
          ++refused;  // this node knew of the delete: the write is refused, as defined
        }
      });
    }
    if (round % 20 == 5) {
      std::vector<int> g(n);
      for (auto& x : g) x = static_cast<int>(sim.below(2));
      sim.partition(g);
    }
    if (round % 20 == 12) sim.partition(std::vector<int>(n, 0));
    sim.runFor(cfg.tickMs);
  }
  sim.heal();
  if (!sim.runUntilQuiet(2000 * cfg.tickMs)) return "did not fall quiet";
  if (sim.stats().errors != 0) return "engine/codec errors: " + sim.stats().lastError;
  if (std::string d = sim.divergence(); !d.empty()) return d;
  size_t i = 0;
  while (!sim.alive(i)) ++i;
  const gossip::ObjectStore& e = sim.store(i);
  for (const auto& name : deleted) {
    const gossip::Value* v = e.find(name);
    if (v == nullptr || !gossip::isTombstone(*v)) return "'" + name + "' was deleted but is not a tombstone";
  }
  for (const auto& [name, elements] : added) {
    if (deleted.count(name) != 0) continue;
    const gossip::Value* v = e.find(name);
    if (v == nullptr || std::get<Set>(*v).size() != elements.size()) return "'" + name + "' lost elements";
  }
  return "";
}

TEST_CASE("anti-entropy: deletes racing writes converge to the tombstone everywhere, under faults") {
  checkSeeds(5000, "divergent", [](uint64_t seed) { return runDeleteSeed(seed); });
}

TEST_CASE("anti-entropy: the same seed gives the same trace; another seed another") {
  auto trace = [](uint64_t seed) {
    SimConfig cfg;
    cfg.seed = seed;
    cfg.nodes = 12;
    cfg.faults = Faults{.loss = 0.2, .duplicate = 0.1, .reorder = 0.2};
    Simulator sim(cfg);
    Expected ex;
    for (int r = 0; r < 30; ++r) {
      randomOp(sim, ex);
      sim.runFor(cfg.tickMs);
    }
    sim.heal();
    sim.runUntilQuiet(500 * cfg.tickMs);
    return std::make_pair(sim.traceHash(), sim.stats().bytes);
  };
  auto a = trace(7), b = trace(7), c = trace(8);
  CHECK(a == b);
  CHECK(a.first != c.first);
}

TEST_CASE("anti-entropy: converges and loses nothing under 30% loss, duplication, reordering, partitions, crashes") {
  checkSeeds(1000, "divergent", [](uint64_t seed) { return runFaultySeed(seed); });
}

// Seeds of each protocol variant below: 10 in the main suite, fewer where DELTASYNC_SIM_SEEDS is
// cut (the sanitizer run: 3 at 10 seeds), since the variants repeat the fault run's work.
uint64_t variantSeeds() {
  return std::clamp<uint64_t>(envOr("DELTASYNC_SIM_SEEDS", 200) / 3, 3, 10);
}

TEST_CASE("anti-entropy: classic delta propagation (BP and RR off) converges too") {
  gossip::EngineConfig classic;
  classic.offers = false;
  classic.backPropagation = false;
  classic.removeRedundant = false;
  for (uint64_t seed = 1; seed <= variantSeeds(); ++seed) {
    std::string problem = runFaultySeed(seed, classic);
    CHECK_MESSAGE(problem.empty(), "seed " << seed << ": " << problem);
  }
}

TEST_CASE("anti-entropy: the eager push (lazy offers off) converges too") {
  gossip::EngineConfig eager;
  eager.offers = false;
  for (uint64_t seed = 11; seed < 11 + variantSeeds(); ++seed) {
    std::string problem = runFaultySeed(seed, eager);
    CHECK_MESSAGE(problem.empty(), "seed " << seed << ": " << problem);
  }
}

TEST_CASE("anti-entropy: with lazy offers each new element reaches each node about once") {
  // bench/sim-experiments mesh in small: 15 nodes (~4 neighbours), every node adds an element
  // every round. The eager push sends ~2.7 elements per element and receiver; offers ~1.
  SimConfig cfg;
  cfg.seed = 77;
  cfg.nodes = 15;
  cfg.countPayload = true;
  Simulator sim(cfg);
  Expected ex;
  for (int round = 0; round < 10; ++round) {
    for (size_t i = 0; i < sim.size(); ++i) {
      sim.at(i, [&](gossip::ObjectStore& e) {
        std::string el = "e" + std::to_string(ex.nextElement++);
        e.update<Set>("set", [&](Set& s) { return s.add(sim.id(i), el); });
        ex.added.insert(el);
      });
    }
    sim.runFor(cfg.tickMs);
  }
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  CHECK(check(sim, ex) == "");
  const double optimum = 150.0 * 14;
  CHECK(static_cast<double>(sim.stats().elements) <= 1.15 * optimum);
}

TEST_CASE("anti-entropy: gossip to 2 random neighbours per round (fan-out) converges too") {
  gossip::EngineConfig fanout;
  fanout.fanout = 2;
  for (uint64_t seed = 21; seed < 21 + variantSeeds(); ++seed) {
    std::string problem = runFaultySeed(seed, fanout);
    CHECK_MESSAGE(problem.empty(), "seed " << seed << ": " << problem);
  }
}

TEST_CASE("anti-entropy: a node that restarts empty, as a new replica, catches up by digest") {
  SimConfig cfg;
  cfg.seed = 42;
  cfg.nodes = 8;
  cfg.engine.maxLogEntries = 16;  // force log GC, so the newcomer must be served a state transfer
  Simulator sim(cfg);
  Expected ex;
  for (int r = 0; r < 20; ++r) {
    for (int k = 0; k < 5; ++k) randomOp(sim, ex);
    sim.runFor(cfg.tickMs);
  }
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  // Node 3 loses its disk: everything it wrote has long been replicated.
  sim.crash(3);
  for (int r = 0; r < 10; ++r) {
    for (int k = 0; k < 5; ++k) randomOp(sim, ex);
    sim.runFor(cfg.tickMs);
  }
  sim.restart(3, false);
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  CHECK(check(sim, ex) == "");
  CHECK(sim.engine(3).stats().requestsSent > 0);
}

TEST_CASE("anti-entropy: catching up on a large object goes in bounded chunks") {
  SimConfig cfg;
  cfg.seed = 43;
  cfg.nodes = 4;
  cfg.engine.maxLogEntries = 8;      // the newcomer cannot be served from the log
  cfg.engine.maxChunkBytes = 4096;
  Simulator sim(cfg);
  Expected ex;
  for (int k = 0; k < 3000; ++k) {  // ~30 KB of OR-set, with removals (context-only parts)
    sim.at(0, [&](gossip::ObjectStore& e) {
      std::string el = "element-" + std::to_string(k);
      e.update<Set>("set", [&](Set& s) { return s.add(sim.id(0), el); });
      ex.added.insert(el);
      if (k % 3 == 0) {
        e.update<Set>("set", [&](Set& s) { return s.remove(el); });
        ex.removed.insert(el);
      }
    });
  }
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  sim.crash(2);
  sim.restart(2, false);  // empty, new id: needs the whole state
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  CHECK(check(sim, ex) == "");
  constexpr size_t kChunk = 4;
  static_assert(std::is_same_v<std::variant_alternative_t<kChunk, gossip::Message>, gossip::StateChunkMsg>);
  CHECK(sim.stats().largestByKind.at(kChunk) <= 2 * cfg.engine.maxChunkBytes);
  uint64_t chunks = 0;
  for (size_t i = 0; i < sim.size(); ++i) chunks += sim.engine(i).stats().chunksSent;
  CHECK(chunks >= 10);
}

TEST_CASE("anti-entropy: a forged claim on a replica's dots is refuted by it, and the cluster keeps its data") {
  // A holder of the secret sends node 3 a delta in node 0's name: a context claiming node 0's
  // dots far past its own (its entries among them) and a planted entry. Node 3 cannot tell it
  // from a relayed delta and spreads it. Before, node 0's entries vanished everywhere, node 0
  // refused every message that carried the claim (the cluster never went quiet), and its next
  // writes were taken as seen.
  SimConfig cfg;
  cfg.seed = 17;
  cfg.nodes = 5;
  Simulator sim(cfg);
  for (int k = 0; k < 20; ++k) {
    sim.at(0, [&](gossip::ObjectStore& e) { e.update<Set>("set", [&](Set& s) { return s.add(sim.id(0), "own-" + std::to_string(k)); }); });
  }
  sim.at(1, [&](gossip::ObjectStore& e) { e.update<Set>("set", [&](Set& s) { return s.add(sim.id(1), "other"); }); });
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  Set forged;  // context (node 0, 1..1001), one entry "planted" at (node 0, 1001)
  for (int i = 0; i < 1001; ++i) forged.add(sim.id(0), "planted");
  REQUIRE(forged.context().max(sim.id(0)) == 1001);
  sim.inject(4, 3, gossip::DeltaPushMsg{sim.id(4), 0, 0, 1, {{"set", gossip::Value(forged)}}});
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  sim.at(0, [&](gossip::ObjectStore& e) { e.update<Set>("set", [&](Set& s) { return s.add(sim.id(0), "after"); }); });
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  CHECK(sim.divergence() == "");
  for (size_t i = 0; i < sim.size(); ++i) {
    INFO("node ", i);
    const Set& s = std::get<Set>(*sim.store(i).find("set"));
    CHECK(s.size() == 23);  // own-0..19, other, after, and the planted entry (kept: gossip/object.h)
    for (int k = 0; k < 20; ++k) CHECK(s.contains("own-" + std::to_string(k)));
    CHECK(s.contains("after"));
    CHECK(s.contains("other"));
  }
  CHECK(sim.engine(0).stats().deltasRefuted >= 1);
}

TEST_CASE("anti-entropy: forged claims on a replica's counts and or-map dots: adopted and refuted, nothing stalls") {
  // The same forgery against node 0's counter and map of sets: a count of 1000 in its name (it
  // counted 20), and a context claiming its or-map dots 1..1001 with none of its entries. Before,
  // node 0 refused both for good (replication to it stalled, the cluster never went quiet).
  SimConfig cfg;
  cfg.seed = 23;
  cfg.nodes = 5;
  Simulator sim(cfg);
  const ReplicaId victim = sim.id(0);
  for (int k = 0; k < 20; ++k) {
    sim.at(0, [&](gossip::ObjectStore& e) {
      e.update<crdt::GCounter>("hits", [&](crdt::GCounter& c) { return c.increment(victim); });
      e.update<gossip::MapOfSets>("rooms", [&](gossip::MapOfSets& m) {
        return m.update("r" + std::to_string(k % 3), [&](Set& s) { return s.add(victim, "own-" + std::to_string(k)); });
      });
    });
  }
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  crdt::GCounter count;
  crdt::CausalContext claim;
  claim.addRange(victim, 1, 1001);
  sim.inject(4, 3, gossip::DeltaPushMsg{sim.id(4), 0, 0, 1,
                                        {{"hits", gossip::Value(count.increment(victim, 1000))},
                                         {"rooms", gossip::Value(gossip::MapOfSets::fromParts({}, claim))}}});
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  sim.at(0, [&](gossip::ObjectStore& e) {
    e.update<crdt::GCounter>("hits", [&](crdt::GCounter& c) { return c.increment(victim); });
    e.update<gossip::MapOfSets>("rooms", [&](gossip::MapOfSets& m) {
      return m.update("r0", [&](Set& s) { return s.add(victim, "after"); });
    });
  });
  REQUIRE(sim.runUntilQuiet(500 * cfg.tickMs));
  CHECK(sim.divergence() == "");
  for (size_t i = 0; i < sim.size(); ++i) {
    INFO("node ", i);
    CHECK(std::get<crdt::GCounter>(*sim.store(i).find("hits")).value() == 1001);  // adopted, then counted on
    const auto& rooms = std::get<gossip::MapOfSets>(*sim.store(i).find("rooms"));
    for (int k = 0; k < 20; ++k) CHECK(rooms.get("r" + std::to_string(k % 3)).contains("own-" + std::to_string(k)));
    CHECK(rooms.get("r0").contains("after"));
  }
  CHECK(sim.engine(0).stats().deltasRefuted >= 2);
}

TEST_CASE("anti-entropy: the log is collected once every neighbour has acked") {
  SimConfig cfg;
  cfg.seed = 5;
  cfg.nodes = 6;
  Simulator sim(cfg);
  Expected ex;
  for (int r = 0; r < 10; ++r) {
    for (int k = 0; k < 4; ++k) randomOp(sim, ex);
    sim.runFor(cfg.tickMs);
  }
  REQUIRE(sim.runUntilQuiet(200 * cfg.tickMs));
  for (size_t i = 0; i < sim.size(); ++i) {
    CHECK(sim.engine(i).logSize() == 0);
    CHECK(sim.engine(i).logStart() == sim.engine(i).seq());
  }
  CHECK(check(sim, ex) == "");
}

TEST_CASE("anti-entropy: one N = 1000 run converges under 10% loss") {
  SimConfig cfg;
  cfg.seed = 99;
  cfg.nodes = envOr("DELTASYNC_SIM_LARGE_N", 1000);  // smaller under the sanitizers
  cfg.chords = 2;
  cfg.faults = Faults{.loss = 0.1, .duplicate = 0.05, .reorder = 0.1};
  Simulator sim(cfg);
  Expected ex;
  for (int r = 0; r < 20; ++r) {
    for (int k = 0; k < 10; ++k) randomOp(sim, ex);
    sim.runFor(cfg.tickMs);
  }
  sim.heal();
  REQUIRE(sim.runUntilQuiet(1000 * cfg.tickMs));
  CHECK(check(sim, ex) == "");
}

}  // namespace
}  // namespace deltasync::sim
