// Pruning removed replicas (gossip/pruning.h) on the real replica core under the deterministic
// simulator, with membership: a node that is gone for good is pruned once its gone mark is
// pruneAfterMs old, by one pruner, and afterwards no object anywhere holds its id while every
// read gives what it gave before; the two sides of a partition do not prune meanwhile; a node
// that comes back after it was pruned is refused and its writes are not taken.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tests/sim/simulator.h"
#include "tests/support/reads.h"

namespace deltasync::sim {
namespace {

using Set = crdt::ORSet<std::string>;
using Reg = crdt::MVRegister<std::string>;

using testing::reads;

SimConfig config(uint64_t seed) {
  SimConfig cfg;
  cfg.nodes = 6;
  cfg.seed = seed;
  cfg.membership = true;
  cfg.pruning.pruneAfterMs = 60000;
  cfg.pruning.checkIntervalMs = 1000;
  return cfg;
}

// Every node writes to every kind that can be re-homed; node `victim` more than most.
void writeAll(Simulator& sim, int round) {
  for (size_t i = 0; i < sim.size(); ++i) {
    if (!sim.alive(i)) continue;
    const auto self = sim.id(i);
    const std::string tag = std::to_string(i) + "-" + std::to_string(round);
    sim.at(i, [&](gossip::ObjectStore& s) {
      s.update<Set>("set", [&](Set& x) { return x.add(self, "e" + tag); });
      s.update<gossip::Map>("map", [&](gossip::Map& x) {
        return x.set(self, "k" + std::to_string((i + round) % 4), "v" + tag, crdt::Timestamp{uint64_t(round) << 20 | i});
      });
      s.update<crdt::PNCounter>("pn", [&](crdt::PNCounter& x) { return x.increment(self, i + 1); });
      s.update<crdt::GCounter>("g", [&](crdt::GCounter& x) { return x.increment(self, 2); });
      s.update<Reg>("reg", [&](Reg& x) { return x.write(self, "r" + tag); });
      s.update<gossip::MapOfSets>("om", [&](gossip::MapOfSets& x) {
        return x.update("k" + std::to_string(round % 3), [&](Set& e) { return e.add(self, "o" + tag); });
      });
      s.update<gossip::MapOfCounters>("cm", [&](gossip::MapOfCounters& x) {
        return x.increment(self, "k" + std::to_string((i + round) % 3), i + 1);
      });
    });
  }
}

bool anyMentions(Simulator& sim, ReplicaId r) {
  for (size_t i = 0; i < sim.size(); ++i) {
    if (!sim.alive(i)) continue;
    for (const auto& [name, v] : sim.store(i).objects()) {
      if (gossip::mentions(v, r)) return true;
    }
  }
  return false;
}

uint64_t prunings(Simulator& sim) {
  uint64_t n = 0;
  for (size_t i = 0; i < sim.size(); ++i) n += sim.replica(i).pruner().stats().pruned;
  return n;
}

bool allForgot(Simulator& sim, ReplicaId r) {
  for (size_t i = 0; i < sim.size(); ++i) {
    if (sim.alive(i) && !sim.store(i).forgotten(r)) return false;
  }
  return true;
}

TEST_CASE("pruning: a node gone for good is pruned once, leaves no trace, and every read stays the same") {
  for (uint64_t seed : {1, 2, 3}) {
    INFO("seed ", seed);
    Simulator sim(config(seed));
    sim.runFor(10000);
    for (int round = 0; round < 5; ++round) {
      writeAll(sim, round);
      sim.runFor(500);
    }
    const size_t victim = 5;
    const ReplicaId gone = sim.id(victim);
    REQUIRE(sim.runUntilQuiet(60000));
    // Some of its entries are removed or overwritten by others before it goes.
    sim.at(1, [&](gossip::ObjectStore& s) {
      s.update<Set>("set", [&](Set& x) { return x.remove("e5-0"); });
      s.update<gossip::MapOfCounters>("cm", [&](gossip::MapOfCounters& x) { return x.removeKey("k0"); });
    });
    REQUIRE(sim.runUntilQuiet(60000));
    sim.crash(victim);
    sim.runFor(5000);
    const auto before = reads(sim.store(0));
    REQUIRE(before.at("set").find("e5-1") != std::string::npos);
    CHECK(anyMentions(sim, gone));

    // Removed after removeAfterMs (30 s), pruned pruneAfterMs (60 s) later.
    for (int t = 0; t < 200 && !allForgot(sim, gone); ++t) sim.runFor(1000);
    REQUIRE(allForgot(sim, gone));
    REQUIRE(sim.runUntilQuiet(60000));
    CHECK(prunings(sim) == 1);
    CHECK(sim.divergence() == "");
    CHECK_FALSE(anyMentions(sim, gone));
    for (size_t i = 0; i < sim.size(); ++i) {
      if (sim.alive(i)) CHECK(reads(sim.store(i)) == before);
    }
    // The re-homed entries are ordinary entries: removing one removes it everywhere.
    sim.at(2, [&](gossip::ObjectStore& s) {
      s.update<Set>("set", [&](Set& x) { return x.remove("e5-1"); });
    });
    writeAll(sim, 9);
    REQUIRE(sim.runUntilQuiet(60000));
    CHECK(sim.divergence() == "");
    CHECK(reads(sim.store(0)).at("set").find("e5-1") == std::string::npos);
    // Nothing waits: the gone mark and the votes went with the pruning.
    for (size_t i = 0; i < sim.size(); ++i) {
      if (sim.alive(i)) CHECK(sim.replica(i).pruner().stats().blocked == "");
    }
  }
}

TEST_CASE("pruning: under loss, duplication and reordering, removals and counts racing the pruning are all kept") {
  // The victim leaves 300 elements; from before its gone mark comes of age, every 100 ms a live
  // node removes one of them and counts. While removals of its entries are in flight the votes
  // disagree, so the pruning waits for them; whatever the order, every removal and count is kept.
  // (The narrow race, a removal made after the votes were counted and before the remover learnt
  // the mark, is pinned by tests/gossip/pruning-test's model.)
  for (uint64_t seed : {4, 5, 6, 7}) {
    INFO("seed ", seed);
    Simulator sim(config(seed));
    sim.runFor(10000);
    sim.setFaults(Faults{0.05, 0.02, 0.05, 1, 20, 300});
    writeAll(sim, 0);
    const ReplicaId gone = sim.id(5);
    sim.at(5, [&](gossip::ObjectStore& s) {
      for (int k = 0; k < 300; ++k) s.update<Set>("set", [&](Set& x) { return x.add(gone, "v" + std::to_string(k)); });
    });
    REQUIRE(sim.runUntilQuiet(120000));
    auto setOf = [&](size_t i) { return std::get<Set>(*sim.store(i).find("set")).elements(); };
    auto expected = setOf(0);
    REQUIRE(expected.size() == 306);
    int64_t count = std::get<crdt::PNCounter>(*sim.store(0).find("pn")).value();
    sim.crash(5);
    sim.runFor(80000);  // removed after ~30 s; its gone mark comes of age ~60 s later
    CHECK_FALSE(sim.store(0).forgotten(gone));
    for (int k = 0; k < 300; ++k) {
      const size_t i = sim.below(5);
      const std::string e = "v" + std::to_string(k);
      sim.at(i, [&](gossip::ObjectStore& s) {
        s.update<Set>("set", [&](Set& x) { return x.remove(e); });
        s.update<crdt::PNCounter>("pn", [&](crdt::PNCounter& x) { return x.increment(sim.id(i), 1); });
      });
      expected.erase(std::find(expected.begin(), expected.end(), e));
      ++count;
      sim.runFor(100);
    }
    for (int t = 0; t < 200 && !allForgot(sim, gone); ++t) sim.runFor(1000);
    REQUIRE(allForgot(sim, gone));
    sim.setFaults(Faults{});
    REQUIRE(sim.runUntilQuiet(120000));
    CHECK(prunings(sim) == 1);
    CHECK(sim.divergence() == "");
    CHECK_FALSE(anyMentions(sim, gone));
    std::sort(expected.begin(), expected.end());
    for (size_t i = 0; i < 5; ++i) {
      auto got = setOf(i);
      std::sort(got.begin(), got.end());
      CHECK(got == expected);
      CHECK(std::get<crdt::PNCounter>(*sim.store(i).find("pn")).value() == count);
    }
  }
}

TEST_CASE("pruning: while a partition is on, neither side prunes; after the heal one node does") {
  // Node 5 dies; 60 s later (its gone mark still young) the cluster splits {0,1} | {2,3,4} for
  // 80 s. Node 5's mark comes of age during the split, but each side has marked the other gone
  // (young marks): nobody prunes. Pruning each side's view of node 5 apart would re-home its
  // entries twice (a counter counted twice after the heal).
  Simulator sim(config(7));
  sim.runFor(10000);
  for (int round = 0; round < 3; ++round) {
    writeAll(sim, round);
    sim.runFor(500);
  }
  REQUIRE(sim.runUntilQuiet(60000));
  const auto before = reads(sim.store(0));
  const ReplicaId gone = sim.id(5);
  sim.crash(5);
  sim.runFor(60000);
  sim.partition({0, 0, 1, 1, 1, 2});
  sim.runFor(80000);
  CHECK(prunings(sim) == 0);
  for (size_t i = 0; i < 5; ++i) CHECK_FALSE(sim.store(i).forgotten(gone));
  CHECK(sim.replica(0).pruner().stats().blocked.find("marked gone less than") != std::string::npos);
  sim.heal();
  for (int t = 0; t < 300 && !allForgot(sim, gone); ++t) sim.runFor(1000);
  REQUIRE(allForgot(sim, gone));
  REQUIRE(sim.runUntilQuiet(60000));
  CHECK(prunings(sim) == 1);
  CHECK(sim.divergence() == "");
  CHECK_FALSE(anyMentions(sim, gone));
  CHECK(reads(sim.store(0)) == before);
}

TEST_CASE("pruning: a node's presences are purged before it is pruned, and its presence object leaves no trace") {
  // A presence object holds its owner's dots alone (gossip/presence.h): it is never re-homed.
  SimConfig cfg = config(13);
  cfg.presence.permdownMs = 150000;  // longer than removal (30 s) + pruneAfterMs (60 s)
  Simulator sim(cfg);
  sim.runFor(10000);
  writeAll(sim, 0);
  sim.at(5, [&](gossip::ObjectStore&) { sim.replica(5).presence().track(1, "room", "alice", "{}"); });
  REQUIRE(sim.runUntilQuiet(60000));
  const ReplicaId gone = sim.id(5);
  REQUIRE(sim.replica(0).presence().count("room") == 1);
  sim.crash(5);
  sim.runFor(120000);  // gone mark of age, presences not purged yet
  CHECK_FALSE(sim.store(0).forgotten(gone));
  CHECK(sim.replica(0).pruner().stats().blocked.find("presences are not purged") != std::string::npos);
  for (int t = 0; t < 300 && !allForgot(sim, gone); ++t) sim.runFor(1000);
  REQUIRE(allForgot(sim, gone));
  REQUIRE(sim.runUntilQuiet(60000));
  CHECK(sim.divergence() == "");
  CHECK_FALSE(anyMentions(sim, gone));
  for (size_t i = 0; i < 5; ++i) {
    CHECK(sim.replica(i).presence().count("room") == 0);
    CHECK(sim.store(i).find(std::string(gossip::kPresencePrefix) + [&] {
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(gone.value));
      return std::string(hex);
    }()) == nullptr);
  }
}

TEST_CASE("pruning: a node that comes back after it was pruned is refused, and its writes are not taken") {
  Simulator sim(config(11));
  sim.runFor(10000);
  writeAll(sim, 0);
  REQUIRE(sim.runUntilQuiet(60000));
  const ReplicaId gone = sim.id(5);
  sim.crash(5);
  for (int t = 0; t < 200 && !allForgot(sim, gone); ++t) sim.runFor(1000);
  REQUIRE(allForgot(sim, gone));
  REQUIRE(sim.runUntilQuiet(60000));
  const auto before = reads(sim.store(0));
  // It returns with its state under its id, and writes.
  sim.restart(5, true);
  sim.at(5, [&](gossip::ObjectStore& s) {
    s.update<Set>("set", [&](Set& x) { return x.add(gone, "late"); });
  });
  const uint64_t errors = sim.stats().errors;
  sim.runFor(30000);
  CHECK(sim.stats().errors > errors);
  CHECK(sim.stats().lastError.find("was pruned from the cluster") != std::string::npos);
  for (size_t i = 0; i < 5; ++i) {
    INFO("node ", i);
    CHECK(reads(sim.store(i)) == before);
    CHECK(sim.store(i).forgotten(gone));
    for (const auto& [name, v] : sim.store(i).objects()) CHECK_FALSE(gossip::mentions(v, gone));
  }
}

}  // namespace
}  // namespace deltasync::sim
