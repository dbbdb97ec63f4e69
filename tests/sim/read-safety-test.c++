// Reads never show a state that no sequence of the writes could produce (issue 14): a key (or
// set element) that is only ever overwritten, never removed, is never absent from a node's state
// after it first appeared there, and no change the store reports (what subscribers are told)
// takes it away, across every interleaving the simulator makes.
//
// The workload: two writers overwrite one map key and re-add one set element (a write supersedes
// the entries it has seen: its delta's context removes them) while the other nodes watch; around
// it, other keys are written and removed for real, so removals keep flowing. Faults: loss,
// duplication, reordering, partitions and one-way blocks; a small log and small chunks force
// catch-ups by digest whose large objects travel split (entry parts and context parts). The
// check runs inside the store's change hook, i.e. after every join that touched the object.
// A failing seed is printed and replays alone with DELTASYNC_SIM_SEED=N.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/sim/simulator.h"
#include "tests/sim/workload.h"

namespace deltasync::sim {
namespace {

constexpr const char* kMap = "kv";
constexpr const char* kKey = "watched";
constexpr const char* kSet = "set";
constexpr const char* kElement = "watched";

struct Watch {
  std::vector<bool> keySeen, elementSeen;
  std::string violation;  // the first one
};

// Registers the check on node i's store.
void watch(Simulator& sim, size_t i, Watch& w) {
  sim.at(i, [&sim, &w, i](gossip::ObjectStore& s) {
    s.listen([&sim, &w, &s, i](const gossip::Change& c) {
      if (c.name == kMap) {
        const bool has = std::get<gossip::Map>(*s.find(kMap)).contains(kKey);
        if (has) {
          w.keySeen[i] = true;
        } else if (w.keySeen[i] && w.violation.empty()) {
          w.violation = "node " + std::to_string(i) + " lost map key '" + kKey + "' at t=" +
                        std::to_string(sim.now()) + " ms (a change from " +
                        (c.local() ? std::string("itself") : "replica " + std::to_string(c.origin.value)) + ")";
        }
      } else if (c.name == kSet) {
        const bool has = std::get<Set>(*s.find(kSet)).contains(kElement);
        if (has) {
          w.elementSeen[i] = true;
        } else if (w.elementSeen[i] && w.violation.empty()) {
          w.violation = "node " + std::to_string(i) + " lost set element '" + kElement + "' at t=" +
                        std::to_string(sim.now()) + " ms";
        }
      }
    });
  });
}

// What both checks run under: `nodes` nodes; loss, duplication and reordering; a small log and
// small chunks, so that peers left behind the log catch up by digest and objects travel split in
// chunks; pushes cut at pushBytes and up to `spread` more.
SimConfig faulty(uint64_t seed, std::mt19937_64& pick, size_t nodes, size_t pushBytes, size_t spread) {
  SimConfig cfg;
  cfg.seed = seed;
  cfg.nodes = nodes;
  cfg.chords = 1 + pick() % 2;
  cfg.faults = Faults{.loss = 0.2, .duplicate = 0.1, .reorder = 0.3};
  cfg.engine.maxLogEntries = 16 + pick() % 48;
  cfg.engine.maxChunkBytes = 256;
  cfg.engine.maxPushBytes = pushBytes + pick() % spread;
  return cfg;
}

std::string runSeed(uint64_t seed) {
  std::mt19937_64 pick(seed ^ 0xfeed);
  SimConfig cfg = faulty(seed, pick, 4 + pick() % 13, 512, 4096);  // 4..16 nodes
  // Transfers of several chunks joined whole, or (1) as they arrive, removal-only parts held.
  cfg.engine.maxHeldChunks = pick() % 2 == 0 ? 1 : 64;
  Simulator sim(cfg);
  const size_t n = sim.size();
  Watch w{std::vector<bool>(n), std::vector<bool>(n), {}};
  for (size_t i = 0; i < n; ++i) watch(sim, i, w);
  const size_t writers[2] = {0, 1 + pick() % (n - 1)};
  uint64_t version = 0;
  auto overwrite = [&](size_t i) {
    ReplicaId self = sim.id(i);
    std::string v = "v" + std::to_string(version++);
    crdt::Timestamp ts{(sim.now() << 16) | sim.below(1 << 16)};
    sim.at(i, [&](gossip::ObjectStore& s) {
      s.update<gossip::Map>(kMap, [&](gossip::Map& m) { return m.set(self, kKey, v, ts); });
      s.update<Set>(kSet, [&](Set& st) { return st.add(self, kElement); });
    });
  };
  auto churn = [&](size_t i) {  // other keys and elements, written and removed for real
    ReplicaId self = sim.id(i);
    std::string key = "k" + std::to_string(sim.below(40));
    crdt::Timestamp ts{(sim.now() << 16) | sim.below(1 << 16)};
    const bool remove = sim.chance(0.3);
    sim.at(i, [&](gossip::ObjectStore& s) {
      if (remove) {
        s.update<gossip::Map>(kMap, [&](gossip::Map& m) { return m.remove(key); });
        s.update<Set>(kSet, [&](Set& st) { return st.remove(key); });
      } else {
        s.update<gossip::Map>(kMap, [&](gossip::Map& m) { return m.set(self, key, std::string(24, 'x'), ts); });
        s.update<Set>(kSet, [&](Set& st) { return st.add(self, key); });
      }
    });
  };
  for (int round = 0; round < 120; ++round) {
    for (size_t wr : writers) {
      if (sim.chance(0.7)) overwrite(wr);
    }
    for (int k = 0; k < 3; ++k) churn(sim.below(n));
    if (round % 30 == 10) {  // a split, a one-way block or an isolated node
      uint64_t what = sim.below(3);
      std::vector<int> g(n, 0);
      if (what == 0) {
        for (auto& x : g) x = static_cast<int>(sim.below(2));
        sim.partition(g);
      } else if (what == 1) {
        sim.blockOneWay(sim.below(n), sim.below(n));
      } else {
        g[sim.below(n)] = 1;
        sim.partition(g);
      }
    }
    if (round % 30 == 25) sim.heal();
    sim.runFor(cfg.tickMs / 2 + sim.below(cfg.tickMs));
    if (!w.violation.empty()) return w.violation;
  }
  sim.heal();
  if (!sim.runUntilQuiet(2000 * cfg.tickMs)) return "did not fall quiet";
  if (!w.violation.empty()) return w.violation;
  if (sim.stats().errors != 0) return "engine/codec errors: " + sim.stats().lastError;
  if (std::string d = sim.divergence(); !d.empty()) return d;
  for (size_t i = 0; i < n; ++i) {
    if (!w.keySeen[i] || !w.elementSeen[i]) return "node " + std::to_string(i) + " never saw the watched key";
  }
  return "";
}

TEST_CASE("read safety: an overwritten key is never absent after it appeared, under faults") {
  checkSeeds(5000, "with a vanished key", runSeed);
}

// Batches are seen whole (gossip/store.h "Units", gossip/engine.h "Batch atomicity"): every write
// is a unit that makes the same change to two sets and to two maps (add or remove an element,
// put or remove a key, from any node, concurrently), so a node that ever joined part of a unit
// without the rest shows the two sets (or maps) different. Checked after every unit each node
// joins, under loss, duplication, reordering, partitions, cuts at small push sizes and catch-ups
// in small chunks (transfers held whole: the test sets no bound on them).
std::string runBatchSeed(uint64_t seed) {
  std::mt19937_64 pick(seed ^ 0xba7c);
  SimConfig cfg = faulty(seed, pick, 3 + pick() % 8, 128, 1024);  // 3..10 nodes
  cfg.engine.maxHeldChunks = 1u << 20;
  Simulator sim(cfg);
  const size_t n = sim.size();
  std::string violation;
  for (size_t i = 0; i < n; ++i) {
    sim.at(i, [&sim, &violation, i](gossip::ObjectStore& s) {
      s.listenUnits([&sim, &violation, &s, i] {
        auto elements = [&](const char* name) {
          std::vector<std::string> out;
          if (const gossip::Value* v = s.find(name)) std::get<Set>(*v).forEach([&](std::string_view e) { out.emplace_back(e); });
          std::sort(out.begin(), out.end());
          return out;
        };
        auto entries = [&](const char* name) {
          std::vector<std::string> out;
          if (const gossip::Value* v = s.find(name)) {
            std::get<gossip::Map>(*v).forEach([&](std::string_view k, const std::string& x) { out.push_back(std::string(k) + "=" + x); });
          }
          std::sort(out.begin(), out.end());
          return out;
        };
        if (violation.empty() && (elements("a") != elements("b") || entries("ma") != entries("mb"))) {
          violation = "node " + std::to_string(i) + " shows part of a batch at t=" + std::to_string(sim.now()) + " ms";
        }
      });
    });
  }
  auto batch = [&](size_t i) {
    const ReplicaId self = sim.id(i);
    const std::string item = "e" + std::to_string(sim.below(12));
    const crdt::Timestamp ts{(sim.now() << 16) | sim.below(1 << 16)};
    const std::string value = "v" + std::to_string(sim.below(1000)) + std::string(sim.below(40), 'x');
    const uint64_t what = sim.below(4);
    sim.at(i, [&](gossip::ObjectStore& s) {
      s.beginUnit();
      for (const char* name : {"a", "b"}) {
        if (what == 0) s.update<Set>(name, [&](Set& st) { return st.add(self, item); });
        if (what == 1) s.update<Set>(name, [&](Set& st) { return st.remove(item); });
      }
      for (const char* name : {"ma", "mb"}) {
        if (what == 2) s.update<gossip::Map>(name, [&](gossip::Map& m) { return m.set(self, item, value, ts); });
        if (what == 3) s.update<gossip::Map>(name, [&](gossip::Map& m) { return m.remove(item); });
      }
      s.endUnit();
    });
  };
  for (int round = 0; round < 100; ++round) {
    for (int k = 0; k < 3; ++k) batch(sim.below(n));
    if (round % 25 == 10) {
      std::vector<int> g(n, 0);
      for (auto& x : g) x = static_cast<int>(sim.below(2));
      sim.partition(g);
    }
    if (round % 25 == 20) sim.heal();
    sim.runFor(cfg.tickMs / 2 + sim.below(cfg.tickMs));
    if (!violation.empty()) return violation;
  }
  sim.heal();
  if (!sim.runUntilQuiet(2000 * cfg.tickMs)) return "did not fall quiet";
  if (!violation.empty()) return violation;
  if (sim.stats().errors != 0) return "engine/codec errors: " + sim.stats().lastError;
  return sim.divergence();
}

TEST_CASE("batches: no node ever shows part of a batch, under faults") {
  checkSeeds(9000, "showing part of a batch", runBatchSeed);
}

// Reads that wait for their peers (Engine::requestSync, lib's Node::sync): once a node counts
// all its neighbours synced for a request, it holds every element they held when it asked.
// Elements are only added (each one new), so what a neighbour held then is still there; checked
// after every slice of simulated time, under loss, duplication, reordering, partitions, cuts and
// catch-ups. Lost requests or answers are never retried by the engine (lib's futures time out),
// so completion is checked once faults are gone: a request then always completes.
std::string runSyncSeed(uint64_t seed) {
  std::mt19937_64 pick(seed ^ 0x5ca1);
  SimConfig cfg = faulty(seed, pick, 3 + pick() % 8, 128, 2048);  // 3..10 nodes
  Simulator sim(cfg);
  const size_t n = sim.size();
  struct Pending {
    size_t node;
    uint64_t id;
    std::set<std::string> expected;
  };
  std::vector<Pending> pending;
  size_t completed = 0;
  auto holds = [&](size_t i, const std::string& e) {
    const gossip::Value* v = sim.store(i).find("s");
    return v != nullptr && std::get<Set>(*v).contains(e);
  };
  auto elementsOf = [&](size_t i) {
    std::set<std::string> out;
    if (const gossip::Value* v = sim.store(i).find("s")) std::get<Set>(*v).forEach([&](std::string_view e) { out.emplace(e); });
    return out;
  };
  auto ask = [&](size_t r) {
    Pending p{r, 0, {}};
    for (size_t j : sim.adjacent(r)) {
      auto e = elementsOf(j);
      p.expected.insert(e.begin(), e.end());
    }
    p.id = sim.requestSync(r);
    pending.push_back(std::move(p));
  };
  auto check = [&]() -> std::string {
    for (auto it = pending.begin(); it != pending.end();) {
      if (sim.engine(it->node).syncedPeers(it->id) < sim.adjacent(it->node).size()) {
        ++it;
        continue;
      }
      for (const std::string& e : it->expected) {
        if (!holds(it->node, e)) {
          return "node " + std::to_string(it->node) + " counts its peers synced (request " + std::to_string(it->id) +
                 ") but lacks '" + e + "' at t=" + std::to_string(sim.now()) + " ms";
        }
      }
      ++completed;
      it = pending.erase(it);
    }
    return "";
  };
  uint64_t next = 0;
  for (int round = 0; round < 80; ++round) {
    for (int k = 0; k < 3; ++k) {
      const size_t i = sim.below(n);
      const std::string e = "e" + std::to_string(next++);
      const ReplicaId self = sim.id(i);
      sim.at(i, [&](gossip::ObjectStore& st) { st.update<Set>("s", [&](Set& x) { return x.add(self, e); }); });
    }
    if (sim.chance(0.5)) ask(sim.below(n));
    if (round % 25 == 10) {
      std::vector<int> g(n, 0);
      for (auto& x : g) x = static_cast<int>(sim.below(2));
      sim.partition(g);
    }
    if (round % 25 == 20) sim.heal();
    for (int slice = 0; slice < 4; ++slice) {
      sim.runFor(cfg.tickMs / 4);
      if (std::string v = check(); !v.empty()) return v;
    }
  }
  sim.heal();
  if (!sim.runUntilQuiet(2000 * cfg.tickMs)) return "did not fall quiet";
  if (std::string v = check(); !v.empty()) return v;
  // Without faults every request completes: one from each node now.
  pending.clear();
  for (size_t r = 0; r < n; ++r) ask(r);
  for (int slice = 0; slice < 200 && !pending.empty(); ++slice) {
    sim.runFor(cfg.tickMs / 4);
    if (std::string v = check(); !v.empty()) return v;
  }
  if (!pending.empty()) return std::to_string(pending.size()) + " sync requests did not complete without faults";
  if (completed == 0) return "no sync completed";
  if (sim.stats().errors != 0) return "engine/codec errors: " + sim.stats().lastError;
  return "";
}

TEST_CASE("reads that sync: a node counting its peers synced holds all they held, under faults") {
  checkSeeds(11000, "reading less than its peers held", runSyncSeed);
}

}  // namespace
}  // namespace deltasync::sim
