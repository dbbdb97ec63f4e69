// converge: replicas edit shared state while partitioned and over a lossy network, then heal and
// converge. A small, honest picture of what deltasync's CRDT core does: every write yields a
// delta; deltas are joined in any order, any number of times; nothing acknowledged is lost.
//
//   examples/converge [--replicas N] [--ops N] [--loss PERCENT] [--seed S]
//
// The network is simulated in-process (the gossip engine and RPC transport come later).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "crdt/aw-lww-map.h"
#include "crdt/g-counter.h"
#include "crdt/hlc.h"
#include "crdt/or-set.h"

namespace {

using namespace deltasync::crdt;

struct Replica {
  ReplicaId id;
  HybridLogicalClock clock;
  ORSet<std::string> online;              // who is here
  AWLWWMap<std::string, std::string> status;  // user -> status line
  GCounter messages;                      // messages sent, cluster-wide
};

struct Delta {
  ORSet<std::string> online;
  AWLWWMap<std::string, std::string> status;
  GCounter messages;
};

void usage(std::ostream& os) {
  os << "usage: converge [--replicas N (2..64, default 3)] [--ops N (default 300)]\n"
        "                [--loss PERCENT (0..95, default 30)] [--seed S (default 1)]\n"
        "Runs N replicas that edit a presence set, a status map and a counter while the\n"
        "network drops, duplicates and reorders deltas and is partitioned for the first half;\n"
        "then heals with one anti-entropy round and checks that all replicas are equal.\n";
}

bool parseUint(const char* s, uint64_t lo, uint64_t hi, uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t replicas = 3, ops = 300, loss = 30, seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      return 0;
    }
    uint64_t* target = a == "--replicas" ? &replicas
                       : a == "--ops"    ? &ops
                       : a == "--loss"   ? &loss
                       : a == "--seed"   ? &seed
                                         : nullptr;
    uint64_t lo = a == "--replicas" ? 2 : 0;
    uint64_t hi = a == "--replicas" ? 64 : a == "--loss" ? 95 : UINT64_MAX;
    if (target == nullptr || i + 1 >= argc || !parseUint(argv[i + 1], lo, hi, *target)) {
      std::cerr << "converge: bad argument '" << a << (i + 1 < argc ? " " + std::string(argv[i + 1]) : "")
                << "'\n";
      usage(std::cerr);
      return 2;
    }
    ++i;
  }

  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t n) { return rng() % n; };  // our own range mapping: portable
  const std::vector<std::string> users = {"ada", "bob", "cyd", "dee", "eve", "fay", "gus", "hal"};
  const std::vector<std::string> moods = {"coding", "lunch", "in a meeting", "away", "reviewing"};

  std::vector<Replica> reps;
  for (uint64_t r = 0; r < replicas; ++r) reps.push_back(Replica{ReplicaId{r + 1}, HybridLogicalClock{}, {}, {}, {}});
  std::deque<std::pair<size_t, Delta>> net;  // (destination, delta)
  uint64_t physicalMillis = 1'700'000'000'000;
  uint64_t sent = 0, delivered = 0, dropped = 0, totalMessages = 0;

  for (uint64_t step = 0; step < ops; ++step) {
    physicalMillis += pick(20);
    size_t r = pick(replicas);
    Replica& rep = reps[r];
    const std::string& user = users[pick(users.size())];
    Delta d;
    switch (pick(4)) {
      case 0: d.online = rep.online.add(rep.id, user); break;
      case 1: d.online = rep.online.remove(user); break;
      case 2:
        d.status = rep.status.set(rep.id, user, moods[pick(moods.size())], rep.clock.now(physicalMillis));
        break;
      default: d.messages = rep.messages.increment(rep.id, 1 + pick(3)); ++totalMessages; break;
    }
    // Gossip the delta; the first half of the run is partitioned into even and odd replicas.
    bool partitioned = step < ops / 2;
    for (size_t j = 0; j < replicas; ++j) {
      if (j == r || (partitioned && j % 2 != r % 2)) continue;
      if (pick(100) < loss) {
        ++dropped;
        continue;
      }
      net.emplace_back(j, d);
      ++sent;
      if (pick(10) == 0) net.emplace_back(j, d);  // duplicate
    }
    // Deliver a few messages in random order.
    for (int k = 0; k < 2 && !net.empty(); ++k) {
      size_t i = pick(net.size());
      auto [to, msg] = net[i];
      net.erase(net.begin() + i);
      reps[to].online.join(msg.online);
      reps[to].status.join(msg.status);
      reps[to].messages.join(msg.messages);
      ++delivered;
    }
  }

  auto show = [&](const char* title) {
    std::cout << title << "\n";
    for (auto& rep : reps) {
      auto online = rep.online.elements();
      std::sort(online.begin(), online.end());
      std::cout << "  replica " << rep.id.value << ": online {";
      for (size_t i = 0; i < online.size(); ++i) std::cout << (i ? ", " : "") << online[i];
      std::cout << "}  statuses " << rep.status.size() << "  messages " << rep.messages.value()
                << "\n";
    }
  };
  std::cout << "deltasync converge: " << replicas << " replicas, " << ops << " operations, " << loss
            << "% loss, seed " << seed << "\n"
            << "  deltas sent " << sent << ", dropped " << dropped << ", delivered " << delivered
            << ", still in flight " << net.size() << "\n";
  show("before healing:");

  // Heal: one full anti-entropy round (every replica joins every other's state).
  std::vector<Replica> snapshot = reps;
  for (auto& rep : reps) {
    for (auto& other : snapshot) {
      rep.online.join(other.online);
      rep.status.join(other.status);
      rep.messages.join(other.messages);
    }
  }
  show("after healing:");

  bool converged = true;
  for (auto& rep : reps) {
    converged = converged && rep.online == reps[0].online && rep.status == reps[0].status &&
                rep.messages == reps[0].messages;
  }
  std::cout << (converged ? "converged: all replicas are equal\n" : "NOT CONVERGED\n");
  return converged ? 0 : 1;
}
