// The workload of the simulator tests: random operations on a few objects of every kind, with
// what the end state must then be (Jepsen's set checker, plus counters), and the seed loop of the
// fault tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "tests/sim/simulator.h"

namespace deltasync::sim {

using gossip::Engine;
using Set = crdt::ORSet<std::string>;

inline uint64_t envOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// Runs run(seed) -> problem ("" if none) over DELTASYNC_SIM_SEEDS seeds (default 200) from
// `first`, or over DELTASYNC_SIM_SEED alone (a replay). Each failing seed is reported with the
// line that replays it; `what` names a failure in the summary. Checks that none failed.
template <typename Run>
void checkSeeds(uint64_t first, const char* what, Run&& run) {
  const uint64_t only = envOr("DELTASYNC_SIM_SEED", 0);
  const uint64_t seeds = only != 0 ? 1 : envOr("DELTASYNC_SIM_SEEDS", 200);
  size_t failures = 0;
  for (uint64_t k = 0; k < seeds; ++k) {
    const uint64_t seed = only != 0 ? only : first + k;
    if (std::string problem = run(seed); !problem.empty()) {
      ++failures;
      FAIL_CHECK("seed " << seed << " (replay: DELTASYNC_SIM_SEED=" << seed << "): " << problem);
    }
  }
  MESSAGE(seeds << " seeds, " << failures << " " << std::string(what));
  CHECK(failures == 0);
}

struct Expected {
  std::set<std::string> added, removed;
  uint64_t hits = 0;
  int64_t balance = 0;
  size_t nextElement = 0;
};

// One random local operation at a live node.
inline void randomOp(Simulator& sim, Expected& ex) {
  size_t i = sim.below(sim.size());
  if (!sim.alive(i)) return;
  ReplicaId self = sim.id(i);
  uint64_t kind = sim.below(10);
  sim.at(i, [&](gossip::ObjectStore& e) {
    if (kind < 4) {
      std::string el = "e" + std::to_string(ex.nextElement++);
      e.update<Set>("set", [&](Set& s) { return s.add(self, el); });
      ex.added.insert(el);
    } else if (kind < 6) {
      const auto* v = e.find("set");
      if (v == nullptr) return;
      const Set& s = std::get<Set>(*v);
      if (s.size() == 0) return;
      std::vector<std::string> present;
      s.forEach([&](std::string_view el) { present.emplace_back(el); });
      std::string victim = present[sim.below(present.size())];
      e.update<Set>("set", [&](Set& st) { return st.remove(victim); });
      ex.removed.insert(victim);
    } else if (kind < 8) {
      uint64_t n = 1 + sim.below(5);
      e.update<crdt::GCounter>("hits", [&](crdt::GCounter& c) { return c.increment(self, n); });
      ex.hits += n;
    } else if (kind < 9) {
      uint64_t n = 1 + sim.below(3);
      bool up = sim.chance(0.5);
      e.update<crdt::PNCounter>("balance", [&](crdt::PNCounter& c) { return up ? c.increment(self, n) : c.decrement(self, n); });
      ex.balance += up ? static_cast<int64_t>(n) : -static_cast<int64_t>(n);
    } else {
      std::string key = "k" + std::to_string(sim.below(20));
      crdt::Timestamp ts{(sim.now() << 16) | sim.below(1 << 16)};
      e.update<gossip::Map>("kv", [&](gossip::Map& m) { return m.set(self, key, "v" + std::to_string(ex.nextElement), ts); });
    }
  });
}

// Checks the end state: empty, or what is wrong.
inline std::string check(const Simulator& sim, const Expected& ex) {
  if (sim.stats().errors != 0) return "engine/codec errors: " + sim.stats().lastError;
  if (std::string d = sim.divergence(); !d.empty()) return d;
  size_t i = 0;
  while (!sim.alive(i)) ++i;
  const gossip::ObjectStore& e = sim.store(i);
  std::set<std::string> want;
  for (const auto& el : ex.added) {
    if (ex.removed.count(el) == 0) want.insert(el);
  }
  std::set<std::string> have;
  if (const auto* v = e.find("set")) std::get<Set>(*v).forEach([&](std::string_view el) { have.emplace(el); });
  if (have != want) {
    return "set: " + std::to_string(have.size()) + " elements, expected " + std::to_string(want.size());
  }
  uint64_t hits = 0;
  if (const auto* v = e.find("hits")) hits = std::get<crdt::GCounter>(*v).value();
  if (hits != ex.hits) return "hits " + std::to_string(hits) + ", expected " + std::to_string(ex.hits);
  int64_t balance = 0;
  if (const auto* v = e.find("balance")) balance = std::get<crdt::PNCounter>(*v).value();
  if (balance != ex.balance) return "balance " + std::to_string(balance) + ", expected " + std::to_string(ex.balance);
  return "";
}

}  // namespace deltasync::sim
