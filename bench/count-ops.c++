// Runs exactly N operations of one kind, for instruction counts under callgrind, which unlike wall
// time are repeatable on a shared, noisy machine:
//
//   valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=/dev/null
//       build-bench/bench/count-ops or-set-add 1000000 shuffled
//
// Only the operation loop is collected (CALLGRIND_TOGGLE_COLLECT around it): building the inputs,
// creating the empty container and destroying the result are not. Divide the "Collected" count
// valgrind prints by N for instructions per operation. bench/run-benchmarks does all that.
//
// Modes mirror bench/or-set-bench.c++ and bench/aw-lww-map-bench.c++ (same seeded keys):
//   null-int             loop over the int64 keys only (harness cost)
//   or-set-add           ORSet<int64_t>::add, delta included
//   std-map-int          std::map<int64_t, uint64_t>::emplace
//   unordered-map-int    std::unordered_map<int64_t, uint64_t>::emplace
//   null-hlc             loop over the string keys ticking a HybridLogicalClock
//   aw-lww-set           AWLWWMap<std::string, int64_t>::set with HLC timestamps, delta included
//   unordered-map-str    std::unordered_map<std::string, int64_t>::insert_or_assign
//   std-map-str          std::map<std::string, int64_t>::insert_or_assign
//   or-set-join          copyOfA.join(B) for ORSet<int64_t>, A = 0..N-1 at replica A,
//                        B = N/2..3N/2-1 at replica B (copy made before collection starts)
//   aw-lww-join          copyOfA.join(B) then copyOfB.join(A) for AWLWWMap<std::string,
//                        int64_t>, A = k0..k(N-1), B = k(N/2)..k(3N/2-1)
//   replica-map-set      a node's local map put as the runtime makes it: gossip::Replica's
//                        store().update on AWLWWMap<std::string, std::string> (the store joins
//                        and reports it, the engine logs it), HLC timestamps; no peers
//   replica-set-add      the same for an ORSet<std::string> add
// For the join modes the order argument is ignored, and Ir/N is per element of one input.
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define DELTASYNC_HAVE_CALLGRIND 1
#else
#define CALLGRIND_TOGGLE_COLLECT
#define DELTASYNC_HAVE_CALLGRIND 0
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/aw-lww-map.h"
#include "crdt/hlc.h"
#include "crdt/or-set.h"
#include "gossip/replica.h"

namespace deltasync::bench {
namespace {

using crdt::AWLWWMap;
using crdt::HybridLogicalClock;
using crdt::ORSet;

// Keeps a value alive without costing instructions beyond its computation.
template <typename T>
inline void keep(const T& v) {
  asm volatile("" : : "r"(&v) : "memory");
}

template <typename Container, typename Op, typename Keys>
size_t run(const Keys& keys, Op&& op) {
  auto c = std::make_unique<Container>();
  CALLGRIND_TOGGLE_COLLECT;
  for (size_t i = 0; i < keys.size(); ++i) op(*c, keys[i], i);
  CALLGRIND_TOGGLE_COLLECT;
  return c->size();
}

// Collects exactly the joins: copies of the inputs are made before, destroyed after.
template <typename T>
size_t runJoins(const T& a, const T& b, bool bothWays) {
  auto a2 = std::make_unique<T>(a);
  auto b2 = std::make_unique<T>(b);
  CALLGRIND_TOGGLE_COLLECT;
  a2->join(b);
  if (bothWays) b2->join(a);
  CALLGRIND_TOGGLE_COLLECT;
  if (bothWays && !(*a2 == *b2)) return 0;
  return a2->size();
}

struct Nothing {
  size_t n = 0;
  size_t size() const { return n; }
};

int usage() {
  std::fprintf(stderr,
               "usage: count-ops MODE [N [sequential|shuffled]]\n"
               "MODE: null-int or-set-add std-map-int unordered-map-int\n"
               "      null-hlc aw-lww-set unordered-map-str std-map-str\n"
               "      or-set-join aw-lww-join replica-map-set replica-set-add\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) return usage();
  std::string mode = argv[1];
  size_t n = argc >= 3 ? std::strtoull(argv[2], nullptr, 10) : 1'000'000;
  Order order = Order::kShuffled;
  if (argc >= 4) {
    if (std::strcmp(argv[3], "sequential") == 0) {
      order = Order::kSequential;
    } else if (std::strcmp(argv[3], "shuffled") != 0) {
      return usage();
    }
  }
  if (n == 0) return usage();

  size_t result;
  size_t expected = n;
  if (mode == "null-int" || mode == "or-set-add" || mode == "std-map-int" ||
      mode == "unordered-map-int") {
    const auto keys = intKeys(n, order);
    if (mode == "null-int") {
      result = run<Nothing>(keys, [](Nothing& c, int64_t k, size_t) {
        keep(k);
        ++c.n;
      });
    } else if (mode == "or-set-add") {
      result = run<ORSet<int64_t>>(keys, [](ORSet<int64_t>& s, int64_t k, size_t) {
        auto d = s.add(kReplicaA, k);
        keep(d);
      });
    } else if (mode == "std-map-int") {
      result = run<std::map<int64_t, uint64_t>>(
          keys, [](auto& m, int64_t k, size_t i) { keep(m.emplace(k, i + 1)); });
    } else {
      result = run<std::unordered_map<int64_t, uint64_t>>(
          keys, [](auto& m, int64_t k, size_t i) { keep(m.emplace(k, i + 1)); });
    }
  } else if (mode == "null-hlc" || mode == "aw-lww-set" || mode == "unordered-map-str" ||
             mode == "std-map-str") {
    const auto keys = stringKeys(n, order);
    HybridLogicalClock clock;
    if (mode == "null-hlc") {
      result = run<Nothing>(keys, [&](Nothing& c, const std::string& k, size_t i) {
        keep(clock.now(syntheticMillis(i)));
        keep(k);
        ++c.n;
      });
    } else if (mode == "aw-lww-set") {
      using M = AWLWWMap<std::string, int64_t>;
      result = run<M>(keys, [&](M& m, const std::string& k, size_t i) {
        auto d = m.set(kReplicaA, k, static_cast<int64_t>(i), clock.now(syntheticMillis(i)));
        keep(d);
      });
    } else if (mode == "unordered-map-str") {
      result = run<std::unordered_map<std::string, int64_t>>(
          keys, [](auto& m, const std::string& k, size_t i) {
            keep(m.insert_or_assign(k, static_cast<int64_t>(i)));
          });
    } else {
      result = run<std::map<std::string, int64_t>>(
          keys, [](auto& m, const std::string& k, size_t i) {
            keep(m.insert_or_assign(k, static_cast<int64_t>(i)));
          });
    }
  } else if (mode == "or-set-join") {
    ORSet<int64_t> a, b;
    for (int64_t k : intKeys(n, Order::kSequential)) a.add(kReplicaA, k);
    for (int64_t k : intKeys(n, Order::kSequential, static_cast<int64_t>(n / 2))) {
      b.add(kReplicaB, k);
    }
    result = runJoins(a, b, false);
    expected = n + n / 2;
  } else if (mode == "aw-lww-join") {
    using M = AWLWWMap<std::string, int64_t>;
    M a, b;
    auto fill = [](M& m, crdt::ReplicaId self, const std::vector<std::string>& keys) {
      HybridLogicalClock clock;
      for (size_t i = 0; i < keys.size(); ++i) {
        m.set(self, keys[i], static_cast<int64_t>(i), clock.now(syntheticMillis(i)));
      }
    };
    fill(a, kReplicaA, stringKeys(n, Order::kSequential));
    fill(b, kReplicaB, stringKeys(n, Order::kSequential, n / 2));
    result = runJoins(a, b, true);
    expected = n + n / 2;
  } else if (mode == "replica-map-set" || mode == "replica-set-add") {
    const auto keys = stringKeys(n, order);
    gossip::ReplicaConfig rc;
    rc.membership = false;
    rc.engine.maxLogEntries = n + 1;  // logs every write (no peer acks any)
    auto replica = std::make_unique<gossip::Replica>(kReplicaA, "", rc);
    gossip::ObjectStore& store = replica->store();
    HybridLogicalClock clock;
    const std::string value = "online";
    const bool map = mode == "replica-map-set";
    CALLGRIND_TOGGLE_COLLECT;
    for (size_t i = 0; i < n; ++i) {
      if (map) {
        keep(store.update<gossip::Map>(
            "m", [&](gossip::Map& m) { return m.set(kReplicaA, keys[i], value, clock.now(syntheticMillis(i))); }));
      } else {
        using S = ORSet<std::string>;
        keep(store.update<S>("s", [&](S& s) { return s.add(kReplicaA, keys[i]); }));
      }
    }
    CALLGRIND_TOGGLE_COLLECT;
    const gossip::Value* v = store.find(map ? "m" : "s");
    result = v == nullptr ? 0 : std::visit([](const auto& x) -> size_t {
      if constexpr (requires { x.size(); }) return x.size();
      else return 0;
    }, *v);
  } else {
    return usage();
  }
  if (result != expected) {
    std::fprintf(stderr, "count-ops: %s produced %zu entries, expected %zu\n", mode.c_str(),
                 result, expected);
    return 1;
  }
  bool join = mode.ends_with("-join");
  std::printf("count-ops: %s n=%zu order=%s callgrind-client-requests=%s\n", mode.c_str(), n,
              join ? "n/a" : orderName(order), DELTASYNC_HAVE_CALLGRIND ? "yes" : "no");
  return 0;
}

}  // namespace
}  // namespace deltasync::bench

int main(int argc, char** argv) { return deltasync::bench::main(argc, argv); }
