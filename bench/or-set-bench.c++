// ORSet<int64_t> timing benchmarks (bench/RESULTS.md, targets 1 and 2), each with baselines
// measured in the same run:
//
//   add/...   grow an empty set to 1e6 elements at one replica, one add() (and its returned
//             delta) per element; std::map / std::unordered_map insertion of the same keys, and a
//             null loop over the keys (harness cost).
//   join/...  join of two independent 1e5-element sets that half overlap (A: 0..99999 at replica
//             A, B: 50000..149999 at replica B), both ways, on fresh copies made outside the
//             timed region; baselines: std::set_union of sorted keys, and std::map /
//             std::unordered_map range insertion of B's content into a copy of A's.
//
// Every timed iteration starts from an empty (or freshly copied) container; constructing the
// copies and destroying the results happen with the timer paused.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/or-set.h"

namespace deltasync::bench {
namespace {

using crdt::ORSet;
using IntSet = ORSet<int64_t>;

constexpr size_t kAddCount = 1'000'000;
constexpr size_t kJoinCount = 100'000;

const std::vector<int64_t>& addKeys(Order order) {
  static const std::vector<int64_t> sequential = intKeys(kAddCount, Order::kSequential);
  static const std::vector<int64_t> shuffled = intKeys(kAddCount, Order::kShuffled);
  return order == Order::kSequential ? sequential : shuffled;
}

// ---------------------------------------------------------------------------------------------
// add: 1e6 elements into an empty container

void addNull(benchmark::State& state, Order order) {
  const auto& keys = addKeys(order);
  for (auto _ : state) {
    for (int64_t k : keys) benchmark::DoNotOptimize(k);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

void addORSet(benchmark::State& state, Order order) {
  const auto& keys = addKeys(order);
  for (auto _ : state) {
    state.PauseTiming();
    auto set = std::make_unique<IntSet>();
    state.ResumeTiming();
    for (int64_t k : keys) {
      IntSet delta = set->add(kReplicaA, k);
      benchmark::DoNotOptimize(delta);
    }
    state.PauseTiming();
    if (set->size() != keys.size()) state.SkipWithError("ORSet lost elements");
    set.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

// The value stands for the dot an OR-set keeps per element: a counter that grows per add.
template <typename Map>
void addMap(benchmark::State& state, Order order) {
  const auto& keys = addKeys(order);
  for (auto _ : state) {
    state.PauseTiming();
    auto map = std::make_unique<Map>();
    state.ResumeTiming();
    uint64_t counter = 0;
    for (int64_t k : keys) {
      auto r = map->emplace(k, ++counter);
      benchmark::DoNotOptimize(r);
    }
    state.PauseTiming();
    if (map->size() != keys.size()) state.SkipWithError("map lost elements");
    map.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

// ---------------------------------------------------------------------------------------------
// join: two independent half-overlapping 1e5-element sets

struct JoinInputs {
  IntSet a, b;
  std::vector<int64_t> sortedA, sortedB;
  std::map<int64_t, uint64_t> mapA, mapB;
  std::unordered_map<int64_t, uint64_t> hashA, hashB;
};

const JoinInputs& joinInputs() {
  static const JoinInputs in = [] {
    JoinInputs j;
    j.sortedA = intKeys(kJoinCount, Order::kSequential, 0);
    j.sortedB = intKeys(kJoinCount, Order::kSequential, kJoinCount / 2);
    uint64_t c = 0;
    for (int64_t k : j.sortedA) {
      j.a.add(kReplicaA, k);
      j.mapA.emplace(k, ++c);
      j.hashA.emplace(k, c);
    }
    c = 0;
    for (int64_t k : j.sortedB) {
      j.b.add(kReplicaB, k);
      j.mapB.emplace(k, ++c);
      j.hashB.emplace(k, c);
    }
    return j;
  }();
  return in;
}

constexpr size_t kUnionSize = kJoinCount + kJoinCount / 2;

// into = A: measures copyOfA.join(B); into = B: copyOfB.join(A).
void joinORSet(benchmark::State& state, char into) {
  const auto& in = joinInputs();
  const IntSet& dst = into == 'A' ? in.a : in.b;
  const IntSet& src = into == 'A' ? in.b : in.a;
  for (auto _ : state) {
    state.PauseTiming();
    auto copy = std::make_unique<IntSet>(dst);
    state.ResumeTiming();
    copy->join(src);
    benchmark::DoNotOptimize(copy.get());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if (copy->size() != kUnionSize) state.SkipWithError("join result has the wrong size");
    copy.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}

// Both ways in one timed region: copyOfA.join(B) then copyOfB.join(A).
void joinORSetBothWays(benchmark::State& state) {
  const auto& in = joinInputs();
  for (auto _ : state) {
    state.PauseTiming();
    auto a = std::make_unique<IntSet>(in.a);
    auto b = std::make_unique<IntSet>(in.b);
    state.ResumeTiming();
    a->join(in.b);
    b->join(in.a);
    benchmark::DoNotOptimize(a.get());
    benchmark::DoNotOptimize(b.get());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if (!(*a == *b)) state.SkipWithError("joins disagree");
    a.reset();
    b.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 2 * kJoinCount));
}

void joinSetUnion(benchmark::State& state) {
  const auto& in = joinInputs();
  for (auto _ : state) {
    std::vector<int64_t> out;
    out.reserve(in.sortedA.size() + in.sortedB.size());
    std::set_union(in.sortedA.begin(), in.sortedA.end(), in.sortedB.begin(), in.sortedB.end(),
                   std::back_inserter(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if (out.size() != kUnionSize) state.SkipWithError("set_union has the wrong size");
    out = {};
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kJoinCount));
}

template <typename Map>
void joinMap(benchmark::State& state, const Map& a, const Map& b) {
  for (auto _ : state) {
    state.PauseTiming();
    auto copy = std::make_unique<Map>(a);
    state.ResumeTiming();
    copy->insert(b.begin(), b.end());
    benchmark::DoNotOptimize(copy.get());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if (copy->size() != kUnionSize) state.SkipWithError("merge has the wrong size");
    copy.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
void joinStdMap(benchmark::State& state) {
  joinMap(state, joinInputs().mapA, joinInputs().mapB);
}
void joinUnorderedMap(benchmark::State& state) {
  joinMap(state, joinInputs().hashA, joinInputs().hashB);
}

void registerAll() {
  for (Order o : {Order::kShuffled, Order::kSequential}) {
    std::string suffix = std::string("/") + orderName(o);
    benchmark::RegisterBenchmark(("add1e6/null" + suffix).c_str(), addNull, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("add1e6/ORSet" + suffix).c_str(), addORSet, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("add1e6/std::map" + suffix).c_str(),
                                 addMap<std::map<int64_t, uint64_t>>, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("add1e6/std::unordered_map" + suffix).c_str(),
                                 addMap<std::unordered_map<int64_t, uint64_t>>, o)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("join1e5/ORSet/A.join(B)", joinORSet, 'A')
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/ORSet/B.join(A)", joinORSet, 'B')
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/ORSet/both-ways", joinORSetBothWays)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/std::set_union", joinSetUnion)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/std::map-insert", joinStdMap)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/std::unordered_map-insert", joinUnorderedMap)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace deltasync::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  deltasync::bench::registerAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
