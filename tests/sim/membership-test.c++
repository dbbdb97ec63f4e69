// Membership and failure detection (gossip/membership.h) under the deterministic simulator.
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "tests/sim/simulator.h"
#include "tests/sim/workload.h"

namespace deltasync::sim {
namespace {

using gossip::MemberState;

SimConfig clusterConfig(size_t n, uint64_t seed) {
  SimConfig cfg;
  cfg.nodes = n;
  cfg.seed = seed;
  cfg.membership = true;
  return cfg;
}

size_t nodesKnowingAll(Simulator& sim) {
  size_t live = 0;
  for (size_t i = 0; i < sim.size(); ++i) live += sim.alive(i) ? 1 : 0;
  size_t full = 0;
  for (size_t i = 0; i < sim.size(); ++i) {
    if (sim.alive(i) && sim.membership(i).liveMembers().size() == live) ++full;
  }
  return full;
}

// How many live observers saw `target` go to `state` (not removal) at or after `since`.
size_t observers(const Simulator& sim, ReplicaId target, MemberState state, uint64_t since) {
  std::vector<size_t> seen;
  for (const auto& e : sim.events()) {
    if (e.timeMs >= since && e.event.id == target && e.event.state == state && !e.event.removed) seen.push_back(e.observer);
  }
  std::sort(seen.begin(), seen.end());
  return static_cast<size_t>(std::unique(seen.begin(), seen.end()) - seen.begin());
}

size_t downEventsAbout(const Simulator& sim, size_t node, uint64_t since) {
  size_t n = 0;
  for (const auto& e : sim.events()) {
    if (e.timeMs >= since && e.event.id == sim.id(node) && e.event.state == MemberState::down && !e.event.removed) ++n;
  }
  return n;
}

TEST_CASE("membership: 50 nodes joining through seeds all learn each other; views stay small") {
  Simulator sim(clusterConfig(50, 1));
  sim.runFor(60000);
  CHECK(nodesKnowingAll(sim) == 50);
  size_t maxView = 0;
  for (size_t i = 0; i < sim.size(); ++i) maxView = std::max(maxView, sim.engine(i).neighbors().size());
  CHECK(maxView <= 4 * gossip::MembershipConfig{}.viewSize);
  CHECK(sim.stats().suspicions == 0);  // no faults, no suspicion
  CHECK(sim.stats().errors == 0);
}

// Membership objects wired by hand, every message delivered at once: what one round trip carries.
struct Wire {
  std::map<uint64_t, gossip::Membership*> nodes;
  // Delivers `out` and everything it sets off, to members in `nodes` only.
  void deliver(ReplicaId from, std::vector<gossip::Outgoing> out, uint64_t nowMs) {
    std::deque<std::pair<ReplicaId, gossip::Outgoing>> queue;
    for (auto& o : out) queue.emplace_back(from, std::move(o));
    while (!queue.empty()) {
      auto [sender, o] = std::move(queue.front());
      queue.pop_front();
      auto it = nodes.find(o.to.value);
      if (it == nodes.end()) continue;
      std::vector<gossip::Outgoing> replies;
      it->second->receive(sender, o.message, nowMs, replies);
      for (auto& r : replies) queue.emplace_back(o.to, std::move(r));
    }
  }
  void tick(gossip::Membership& m, uint64_t nowMs) {
    std::vector<gossip::Outgoing> out;
    m.tick(nowMs, out);
    deliver(m.self(), std::move(out), nowMs);
  }
};

TEST_CASE("membership: joiners through one seed know the cluster one round trip after their first tick") {
  // A cluster whose news has long been disseminated: nothing about a or b is piggybacked any
  // more, so a joiner learns of them only from the seed's table sample. Before, the seed sent one
  // sample per syncIntervalMs in all, and a joiner pinged it at its first probe (a random point
  // of the first period): the second of two joiners 100 ms apart knew neither a nor b.
  gossip::MembershipConfig cfg;
  gossip::Membership s(ReplicaId{1}, "s", cfg), a(ReplicaId{2}, "a", cfg), b(ReplicaId{3}, "b", cfg);
  Wire wire{{{1, &s}, {2, &a}, {3, &b}}};
  a.addSeed(s.self(), "s", 0);
  b.addSeed(s.self(), "s", 0);
  uint64_t now = 0;
  for (; now < 60000; now += 10) {
    for (auto* m : {&s, &a, &b}) wire.tick(*m, now);
  }
  REQUIRE(s.liveMembers().size() == 3);
  REQUIRE(a.liveMembers().size() == 3);
  for (uint64_t joiner : {10, 11, 12}) {
    INFO("joiner ", joiner);
    now += 100;
    cfg.seed = joiner;
    gossip::Membership n(ReplicaId{joiner}, "n", cfg);
    wire.nodes[joiner] = &n;
    n.addSeed(s.self(), "s", now);
    wire.tick(n, now);  // its first tick: the join ping, the seed's ack with its sample
    CHECK(n.member(a.self()) != nullptr);
    CHECK(n.member(b.self()) != nullptr);
    if (joiner != 10) CHECK(n.member(ReplicaId{10}) != nullptr);  // the first joiner
    wire.nodes.erase(joiner);  // it stays alive in s's table: the next joiner's sample holds it
  }
}

TEST_CASE("membership: a crashed node is declared down at every live node, then removed") {
  Simulator sim(clusterConfig(40, 2));
  sim.runFor(60000);
  REQUIRE(nodesKnowingAll(sim) == 40);
  const uint64_t t = sim.now();
  sim.crash(7);
  sim.runFor(30000);
  CHECK(observers(sim, sim.id(7), MemberState::down, t) == 39);
  sim.runFor(gossip::MembershipConfig{}.removeAfterMs);
  size_t removed = 0;
  for (const auto& e : sim.events()) removed += e.event.id == sim.id(7) && e.event.removed ? 1 : 0;
  CHECK(removed == 39);
  for (size_t i = 0; i < sim.size(); ++i) {
    if (i != 7) CHECK(std::find(sim.engine(i).neighbors().begin(), sim.engine(i).neighbors().end(), sim.id(7)) == sim.engine(i).neighbors().end());
  }
}

TEST_CASE("membership: a node cut off briefly is suspected, refutes, and is never declared down") {
  // Cut for a probe period and a probe timeout: long enough for whole probes of it to fail (it is
  // suspected), shorter than the suspicion timeout (at least 0.74 s at N = 30). Members ping a
  // suspect beside their probes, so it hears of the suspicion and refutes within a period of
  // the heal. Five seeds: each is one draw of who probes it when.
  const gossip::MembershipConfig mc;
  for (uint64_t seed = 3; seed < 8; ++seed) {
    CAPTURE(seed);
    Simulator sim(clusterConfig(30, seed));
    sim.runFor(60000);
    REQUIRE(nodesKnowingAll(sim) == 30);
    const uint64_t t = sim.now();
    const uint64_t s0 = sim.stats().suspicions;
    std::vector<int> groups(30, 0);
    groups[4] = 1;
    sim.partition(groups);
    sim.runFor(mc.probeIntervalMs + mc.probeTimeoutMs);
    sim.heal();
    sim.runFor(60000);
    CHECK(sim.stats().suspicions > s0);
    CHECK(downEventsAbout(sim, 4, t) == 0);
    CHECK(sim.membership(4).incarnation() > 0);  // it refuted
    CHECK(nodesKnowingAll(sim) == 30);
    CHECK(sim.stats().errors == 0);  // every message decodes and is accepted
  }
}

TEST_CASE("membership: after a long partition both sides declare each other down, then rejoin when it heals") {
  Simulator sim(clusterConfig(30, 4));
  sim.runFor(60000);
  REQUIRE(nodesKnowingAll(sim) == 30);
  std::vector<int> groups(30);
  for (size_t i = 0; i < groups.size(); ++i) groups[i] = i < 12 ? 0 : 1;
  sim.partition(groups);
  sim.runFor(90000);
  // Node 0 (side 0) sees every node of side 1 down.
  CHECK(sim.membership(0).liveMembers().size() == 12);
  sim.heal();
  // Down members are pinged in turn each probe period, and a member back from down is flooded:
  // the sides know each other again within a few periods (one random down member per
  // syncIntervalMs, as before, took 2.9 s here).
  const uint64_t healed = sim.now();
  while (nodesKnowingAll(sim) != 30 && sim.now() - healed < 120000) sim.runFor(10);
  MESSAGE("every node knows every other again " << sim.now() - healed << " ms after the heal");
  CHECK(nodesKnowingAll(sim) == 30);
  CHECK(sim.now() - healed <= 4 * gossip::MembershipConfig{}.probeIntervalMs);
  CHECK(sim.stats().errors == 0);  // every message decodes and is accepted
}

TEST_CASE("membership: a leaving node is reported left everywhere") {
  Simulator sim(clusterConfig(20, 5));
  sim.runFor(60000);
  REQUIRE(nodesKnowingAll(sim) == 20);
  const uint64_t t = sim.now();
  const uint64_t sent = sim.stats().messages;
  sim.leave(9);
  REQUIRE(sim.stats().messages > sent);
  sim.runFor(20000);
  sim.crash(9);  // it stops after announcing
  sim.runFor(20000);
  CHECK(observers(sim, sim.id(9), MemberState::left, t) == 19);
  CHECK(observers(sim, sim.id(9), MemberState::down, t) == 0);
  CHECK(sim.stats().errors == 0);  // every message decodes and is accepted
}

TEST_CASE("membership: a forged leave cannot evict a member: far ahead it is refused, within reach refuted") {
  Simulator sim(clusterConfig(5, 11));
  sim.runFor(30000);
  REQUIRE(nodesKnowingAll(sim) == 5);
  const ReplicaId victim = sim.id(1);
  const std::string address = sim.membership(0).member(victim)->address;
  auto forged = [&](uint64_t incarnation) {
    return gossip::PingMsg{sim.id(2), 999999, {{victim, incarnation, MemberState::left, address, {}}}, 0, false};
  };
  // "Left at 2^64 - 1": before, every node took it, and the victim's refutation wrapped to 0.
  const uint64_t errors = sim.stats().errors;
  sim.inject(2, 0, forged(UINT64_MAX));
  sim.runFor(1000);
  CHECK(sim.stats().errors == errors + 1);
  CHECK(sim.stats().lastError.find("more than 2^32 beyond") != std::string::npos);
  CHECK(sim.membership(0).member(victim)->state == MemberState::alive);
  // Within reach (1000 refutations ahead, as a member that lost many suspicions might be): taken
  // and flooded, then refuted by the victim at 1001; no node keeps it out.
  const uint64_t t = sim.now();
  sim.inject(2, 0, forged(sim.membership(0).member(victim)->incarnation + 1000));
  sim.runFor(30000);
  CHECK(observers(sim, victim, MemberState::left, t) >= 1);
  CHECK(sim.membership(1).incarnation() >= 1001);
  for (size_t i = 0; i < sim.size(); ++i) {
    if (i == 1) continue;
    INFO("node ", i);
    CHECK(sim.membership(i).member(victim)->state == MemberState::alive);
    CHECK(!sim.membership(i).member(victim)->removed);
  }
}

TEST_CASE("membership: the engine replicates over membership views, through loss and a crash") {
  SimConfig cfg = clusterConfig(40, 6);
  Simulator sim(cfg);
  Expected ex;
  sim.runFor(20000);
  sim.setFaults(Faults{.loss = 0.2, .duplicate = 0.05, .reorder = 0.1});
  for (int r = 0; r < 100; ++r) {
    for (int k = 0; k < 3; ++k) randomOp(sim, ex);
    if (r == 40) sim.crash(11);
    if (r == 70) sim.restart(11, true);
    sim.runFor(cfg.tickMs);
  }
  sim.heal();
  REQUIRE(sim.runUntilQuiet(600000));
  CHECK(check(sim, ex) == "");
}

TEST_CASE("membership: N = 1000 at 10% loss, no healthy node declared down; a crash is detected everywhere") {
  // DELTASYNC_SIM_FD_SECONDS sets the lossy period (default one simulated hour).
  // DELTASYNC_SIM_LARGE_N sets N (default 1000; smaller under the sanitizers).
  const uint64_t seconds = envOr("DELTASYNC_SIM_FD_SECONDS", 3600);
  const size_t n = envOr("DELTASYNC_SIM_LARGE_N", 1000);
  Simulator sim(clusterConfig(n, 7));
  sim.runFor(60000);
  REQUIRE(nodesKnowingAll(sim) == n);
  const uint64_t t = sim.now();
  sim.setFaults(Faults{.loss = 0.1});
  sim.runFor(seconds * 1000);
  size_t falseDowns = 0;
  for (const auto& e : sim.events()) falseDowns += e.timeMs >= t && e.event.state == MemberState::down ? 1 : 0;
  MESSAGE(seconds << " s at 10% loss: " << sim.stats().suspicions << " suspicion events, " << falseDowns
                  << " down events");
  CHECK(falseDowns == 0);
  const uint64_t c = sim.now();
  sim.crash(123);
  sim.runFor(30000);
  CHECK(observers(sim, sim.id(123), MemberState::down, c) == n - 1);
}

}  // namespace
}  // namespace deltasync::sim
