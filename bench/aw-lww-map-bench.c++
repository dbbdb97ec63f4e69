// AWLWWMap<std::string, int64_t> timing benchmarks (bench/RESULTS.md, targets 4 and 5), each
// with baselines measured in the same run:
//
//   set/...   1e6 distinct keys "k0".."k999999" set at one replica into an empty map, each with a
//             timestamp from a HybridLogicalClock fed synthetic physical time (1024 sets per
//             millisecond), one set() (and its returned delta) per key; baselines:
//             std::unordered_map / std::map insert_or_assign of the same keys, and a null loop
//             that only ticks the clock (harness + HLC cost).
//   join/...  two replicas' independent sets of half-overlapping keys (A: k0..k99999,
//             B: k50000..k149999), merged both ways on fresh copies (copyOfA.join(B) and
//             copyOfB.join(A)); baselines: the same last-writer-wins merge of
//             std::unordered_map / std::map holding (timestamp, replica, value) per key.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/aw-lww-map.h"
#include "crdt/hlc.h"

namespace deltasync::bench {
namespace {

using crdt::AWLWWMap;
using crdt::HybridLogicalClock;
using crdt::Timestamp;
using StrMap = AWLWWMap<std::string, int64_t>;

constexpr size_t kSetCount = 1'000'000;
constexpr size_t kJoinCount = 100'000;

const std::vector<std::string>& setKeys(Order order) {
  static const std::vector<std::string> sequential = stringKeys(kSetCount, Order::kSequential);
  static const std::vector<std::string> shuffled = stringKeys(kSetCount, Order::kShuffled);
  return order == Order::kSequential ? sequential : shuffled;
}

// ---------------------------------------------------------------------------------------------
// set: 1e6 distinct keys into an empty map

void setNull(benchmark::State& state, Order order) {
  const auto& keys = setKeys(order);
  for (auto _ : state) {
    HybridLogicalClock clock;
    for (size_t i = 0; i < keys.size(); ++i) {
      Timestamp ts = clock.now(syntheticMillis(i));
      benchmark::DoNotOptimize(ts);
      benchmark::DoNotOptimize(keys[i].data());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

void setAWLWWMap(benchmark::State& state, Order order) {
  const auto& keys = setKeys(order);
  for (auto _ : state) {
    state.PauseTiming();
    auto map = std::make_unique<StrMap>();
    HybridLogicalClock clock;
    state.ResumeTiming();
    for (size_t i = 0; i < keys.size(); ++i) {
      StrMap delta = map->set(kReplicaA, keys[i], static_cast<int64_t>(i),
                              clock.now(syntheticMillis(i)));
      benchmark::DoNotOptimize(delta);
    }
    state.PauseTiming();
    if (map->size() != keys.size()) state.SkipWithError("AWLWWMap lost keys");
    map.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

template <typename Map>
void setMap(benchmark::State& state, Order order) {
  const auto& keys = setKeys(order);
  for (auto _ : state) {
    state.PauseTiming();
    auto map = std::make_unique<Map>();
    state.ResumeTiming();
    for (size_t i = 0; i < keys.size(); ++i) {
      auto r = map->insert_or_assign(keys[i], static_cast<int64_t>(i));
      benchmark::DoNotOptimize(r);
    }
    state.PauseTiming();
    if (map->size() != keys.size()) state.SkipWithError("map lost keys");
    map.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * keys.size()));
}

// ---------------------------------------------------------------------------------------------
// join: two replicas' concurrent writes to half-overlapping keys, merged both ways

struct LwwCell {
  uint64_t ts;
  uint64_t replica;
  int64_t value;
  bool beats(const LwwCell& o) const {
    return ts != o.ts ? ts > o.ts : replica > o.replica;
  }
};

struct JoinInputs {
  StrMap a, b;
  std::unordered_map<std::string, LwwCell> hashA, hashB;
  std::map<std::string, LwwCell> mapA, mapB;
};

const JoinInputs& joinInputs() {
  static const JoinInputs in = [] {
    JoinInputs j;
    auto fill = [](crdt::ReplicaId self, size_t first, StrMap& m,
                   std::unordered_map<std::string, LwwCell>& h,
                   std::map<std::string, LwwCell>& o) {
      HybridLogicalClock clock;
      std::vector<std::string> keys = stringKeys(kJoinCount, Order::kSequential, first);
      for (size_t i = 0; i < keys.size(); ++i) {
        Timestamp ts = clock.now(syntheticMillis(i));
        auto v = static_cast<int64_t>(self.value ^ i);
        m.set(self, keys[i], v, ts);
        h.emplace(keys[i], LwwCell{ts.value, self.value, v});
        o.emplace(keys[i], LwwCell{ts.value, self.value, v});
      }
    };
    fill(kReplicaA, 0, j.a, j.hashA, j.mapA);
    fill(kReplicaB, kJoinCount / 2, j.b, j.hashB, j.mapB);
    return j;
  }();
  return in;
}

constexpr size_t kUnionSize = kJoinCount + kJoinCount / 2;

// which: 'A' = copyOfA.join(B), 'B' = copyOfB.join(A), '2' = both (one timed region).
void joinAWLWWMap(benchmark::State& state, char which) {
  const auto& in = joinInputs();
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<StrMap> a, b;
    if (which != 'B') a = std::make_unique<StrMap>(in.a);
    if (which != 'A') b = std::make_unique<StrMap>(in.b);
    state.ResumeTiming();
    if (a) a->join(in.b);
    if (b) b->join(in.a);
    benchmark::DoNotOptimize(a.get());
    benchmark::DoNotOptimize(b.get());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if ((a && a->size() != kUnionSize) || (b && b->size() != kUnionSize)) {
      state.SkipWithError("join result has the wrong size");
    }
    if (a && b && !(*a == *b)) state.SkipWithError("joins disagree");
    a.reset();
    b.reset();
    state.ResumeTiming();
  }
  size_t merged = which == '2' ? 2 * kJoinCount : kJoinCount;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * merged));
}

template <typename Map>
void lwwMerge(Map& into, const Map& from) {
  for (const auto& [k, cell] : from) {
    auto [it, inserted] = into.try_emplace(k, cell);
    if (!inserted && cell.beats(it->second)) it->second = cell;
  }
}

// Both ways, as joinAWLWWMap(..., '2').
template <typename Map>
void joinMapBothWays(benchmark::State& state, const Map& inA, const Map& inB) {
  for (auto _ : state) {
    state.PauseTiming();
    auto a = std::make_unique<Map>(inA);
    auto b = std::make_unique<Map>(inB);
    state.ResumeTiming();
    lwwMerge(*a, inB);
    lwwMerge(*b, inA);
    benchmark::DoNotOptimize(a.get());
    benchmark::DoNotOptimize(b.get());
    benchmark::ClobberMemory();
    state.PauseTiming();
    if (a->size() != kUnionSize || b->size() != kUnionSize) {
      state.SkipWithError("merge has the wrong size");
    }
    a.reset();
    b.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 2 * kJoinCount));
}
void joinUnorderedMap(benchmark::State& state) {
  joinMapBothWays(state, joinInputs().hashA, joinInputs().hashB);
}
void joinStdMap(benchmark::State& state) {
  joinMapBothWays(state, joinInputs().mapA, joinInputs().mapB);
}

void registerAll() {
  for (Order o : {Order::kSequential, Order::kShuffled}) {
    std::string suffix = std::string("/") + orderName(o);
    benchmark::RegisterBenchmark(("set1e6/null+hlc" + suffix).c_str(), setNull, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("set1e6/AWLWWMap" + suffix).c_str(), setAWLWWMap, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("set1e6/std::unordered_map" + suffix).c_str(),
                                 setMap<std::unordered_map<std::string, int64_t>>, o)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("set1e6/std::map" + suffix).c_str(),
                                 setMap<std::map<std::string, int64_t>>, o)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("join1e5/AWLWWMap/A.join(B)", joinAWLWWMap, 'A')
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/AWLWWMap/B.join(A)", joinAWLWWMap, 'B')
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/AWLWWMap/both-ways", joinAWLWWMap, '2')
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/std::unordered_map-lww/both-ways", joinUnorderedMap)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("join1e5/std::map-lww/both-ways", joinStdMap)
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
