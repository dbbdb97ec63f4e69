// Memory footprint benchmarks (bench/RESULTS.md, targets 3 and 6). Not Google Benchmark: a plain
// program printing a table, so that its counting allocator never distorts a timing benchmark.
//
// Each state is measured two independent ways:
//   memoryBytes  the type's own accounting (crdt/README.md: "bytes of storage owned");
//   heap         live bytes of this binary's replaced global operator new/delete, taken as
//                malloc_usable_size() of every live block (so allocator rounding is included;
//                glibc's 8-byte chunk header is not, see the `blocks` column to add it).
// The measured object itself is heap-allocated (std::make_unique) so that `heap` includes its
// sizeof, as memoryBytes does. `peak` is the high-water mark while building (vector growth and
// index rebuilds keep the old and new buffers alive at once). Deltas returned by mutators are
// dropped at once, as a replica that has shipped them would.
//
// The standard containers are measured with the same counter (memoryBytes: n/a). Ends with a
// PASS/FAIL line per target (bench/RESULTS.md) and exits 1 if any target is missed.
#include <malloc.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/aw-lww-map.h"
#include "crdt/hlc.h"
#include "crdt/or-set.h"

// ---------------------------------------------------------------------------------------------
// Counting allocator (this binary only). Single-threaded program: plain counters suffice.

namespace {

size_t gLiveBytes = 0;
size_t gPeakBytes = 0;
size_t gLiveBlocks = 0;

void* countedAlloc(size_t n, size_t align) {
  if (n == 0) n = 1;
  void* p;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else {
    p = std::aligned_alloc(align, (n + align - 1) / align * align);
  }
  if (p == nullptr) return nullptr;
  gLiveBytes += malloc_usable_size(p);
  ++gLiveBlocks;
  if (gLiveBytes > gPeakBytes) gPeakBytes = gLiveBytes;
  return p;
}

void countedFree(void* p) noexcept {
  if (p == nullptr) return;
  gLiveBytes -= malloc_usable_size(p);
  --gLiveBlocks;
  std::free(p);
}

void* allocOrThrow(size_t n, size_t align) {
  void* p = countedAlloc(n, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t n) { return allocOrThrow(n, 0); }
void* operator new[](size_t n) { return allocOrThrow(n, 0); }
void* operator new(size_t n, std::align_val_t a) {
  return allocOrThrow(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a) {
  return allocOrThrow(n, static_cast<size_t>(a));
}
void* operator new(size_t n, const std::nothrow_t&) noexcept { return countedAlloc(n, 0); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return countedAlloc(n, 0); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return countedAlloc(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return countedAlloc(n, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { countedFree(p); }
void operator delete[](void* p) noexcept { countedFree(p); }
void operator delete(void* p, size_t) noexcept { countedFree(p); }
void operator delete[](void* p, size_t) noexcept { countedFree(p); }
void operator delete(void* p, std::align_val_t) noexcept { countedFree(p); }
void operator delete[](void* p, std::align_val_t) noexcept { countedFree(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { countedFree(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { countedFree(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { countedFree(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { countedFree(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  countedFree(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  countedFree(p);
}

namespace deltasync::bench {
namespace {

using crdt::AWLWWMap;
using crdt::HybridLogicalClock;
using crdt::ORSet;
using crdt::Timestamp;
using IntSet = ORSet<int64_t>;
using StrMap = AWLWWMap<std::string, int64_t>;

constexpr size_t kBig = 1'000'000;
constexpr size_t kDeleteBase = 100'000;
constexpr size_t kDeleteKeep = kDeleteBase / 10;

// Heap bytes since construction began, read while the object is alive.
struct Probe {
  size_t live0 = gLiveBytes;
  size_t blocks0 = gLiveBlocks;
  Probe() { gPeakBytes = gLiveBytes; }
  size_t heap() const { return gLiveBytes - live0; }
  size_t blocks() const { return gLiveBlocks - blocks0; }
  size_t peak() const { return gPeakBytes - live0; }
};

constexpr size_t kNotApplicable = SIZE_MAX;

void header(const char* title) {
  std::printf("\n## %s\n\n", title);
  std::printf("| %-52s | %9s | %12s | %8s | %12s | %8s | %9s | %11s |\n", "state", "entries",
              "memoryBytes", "B/entry", "heap", "B/entry", "blocks", "peak B/ent");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(54, '-').c_str(),
              std::string(11, '-').c_str(), std::string(14, '-').c_str(),
              std::string(10, '-').c_str(), std::string(14, '-').c_str(),
              std::string(10, '-').c_str(), std::string(11, '-').c_str(),
              std::string(13, '-').c_str());
}

void row(const std::string& name, size_t n, size_t memoryBytes, const Probe& p, bool withPeak) {
  char mb[32], mbPer[32], peak[32];
  if (memoryBytes == kNotApplicable) {
    std::snprintf(mb, sizeof(mb), "n/a");
    std::snprintf(mbPer, sizeof(mbPer), "n/a");
  } else {
    std::snprintf(mb, sizeof(mb), "%zu", memoryBytes);
    std::snprintf(mbPer, sizeof(mbPer), "%.2f", double(memoryBytes) / double(n));
  }
  if (withPeak) {
    std::snprintf(peak, sizeof(peak), "%.2f", double(p.peak()) / double(n));
  } else {
    std::snprintf(peak, sizeof(peak), "-");
  }
  std::printf("| %-52s | %9zu | %12s | %8s | %12zu | %8.2f | %9zu | %11s |\n", name.c_str(), n,
              mb, mbPer, p.heap(), double(p.heap()) / double(n), p.blocks(), peak);
}

struct Verdict {
  std::string what;
  double value;
  double target;  // pass iff value <= target
};
std::vector<Verdict> gVerdicts;

void verdict(std::string what, double value, double target) {
  gVerdicts.push_back({std::move(what), value, target});
}

// Builds a container with f(container) and prints its row (no memoryBytes).
template <typename C, typename Fill>
void baseline(const std::string& name, size_t n, Fill&& fill) {
  Probe p;
  auto c = std::make_unique<C>();
  fill(*c);
  if (c->size() != n) std::fprintf(stderr, "memory-bench: %s has %zu entries\n", name.c_str(), c->size());
  row(name, n, kNotApplicable, p, true);
}

// ---------------------------------------------------------------------------------------------
// Target 3: 1e6-entry states

void bigORSet() {
  header("1e6 elements: ORSet<int64_t> (shuffled keys 0..999999, one replica) and baselines");
  const std::vector<int64_t> keys = intKeys(kBig, Order::kShuffled);
  {
    Probe p;
    auto s = std::make_unique<IntSet>();
    for (int64_t k : keys) s->add(kReplicaA, k);
    size_t mb = s->memoryBytes();
    row("ORSet<int64_t>", kBig, mb, p, true);
    verdict("ORSet<int64_t> 1e6: memoryBytes B/element", double(mb) / kBig, 48);
    verdict("ORSet<int64_t> 1e6: heap B/element", double(p.heap()) / kBig, 48);
    s->shrinkToFit();
    row("ORSet<int64_t> after shrinkToFit()", kBig, s->memoryBytes(), p, false);
  }
  baseline<std::unordered_set<int64_t>>("std::unordered_set<int64_t>", kBig, [&](auto& c) {
    for (int64_t k : keys) c.insert(k);
  });
  baseline<std::set<int64_t>>("std::set<int64_t>", kBig, [&](auto& c) {
    for (int64_t k : keys) c.insert(k);
  });
  baseline<std::unordered_map<int64_t, uint64_t>>(
      "std::unordered_map<int64_t, uint64_t> (element->dot)", kBig, [&](auto& c) {
        uint64_t n = 0;
        for (int64_t k : keys) c.emplace(k, ++n);
      });
  baseline<std::map<int64_t, uint64_t>>("std::map<int64_t, uint64_t> (element->dot)", kBig,
                                        [&](auto& c) {
                                          uint64_t n = 0;
                                          for (int64_t k : keys) c.emplace(k, ++n);
                                        });
}

void bigAWLWWMap() {
  header("1e6 keys: AWLWWMap<std::string, int64_t> (\"k0\"..\"k999999\", one replica) and baselines");
  const std::vector<std::string> keys = stringKeys(kBig, Order::kSequential);
  {
    Probe p;
    auto m = std::make_unique<StrMap>();
    HybridLogicalClock clock;
    for (size_t i = 0; i < keys.size(); ++i) {
      m->set(kReplicaA, keys[i], static_cast<int64_t>(i), clock.now(syntheticMillis(i)));
    }
    size_t mb = m->memoryBytes();
    row("AWLWWMap<std::string, int64_t>", kBig, mb, p, true);
    verdict("AWLWWMap<string,int64_t> 1e6: memoryBytes B/entry", double(mb) / kBig, 64);
    verdict("AWLWWMap<string,int64_t> 1e6: heap B/entry", double(p.heap()) / kBig, 64);
    m->shrinkToFit();
    row("AWLWWMap<std::string, int64_t> after shrinkToFit()", kBig, m->memoryBytes(), p, false);
  }
  baseline<std::unordered_map<std::string, int64_t>>(
      "std::unordered_map<std::string, int64_t>", kBig, [&](auto& c) {
        for (size_t i = 0; i < keys.size(); ++i) c.insert_or_assign(keys[i], int64_t(i));
      });
  baseline<std::map<std::string, int64_t>>("std::map<std::string, int64_t>", kBig, [&](auto& c) {
    for (size_t i = 0; i < keys.size(); ++i) c.insert_or_assign(keys[i], int64_t(i));
  });
  baseline<std::unordered_map<std::string, std::pair<Timestamp, int64_t>>>(
      "std::unordered_map<std::string, (Timestamp, int64_t)>", kBig, [&](auto& c) {
        HybridLogicalClock clock;
        for (size_t i = 0; i < keys.size(); ++i) {
          c.insert_or_assign(keys[i], std::pair{clock.now(syntheticMillis(i)), int64_t(i)});
        }
      });
}

// ---------------------------------------------------------------------------------------------
// Target 6: after 1e5 writes and removal of a random 90%, compared with a fresh state holding
// the surviving 10%.

// Keys 0..n-1 written in a seeded shuffled order; `doomed` the first 90% of an independently
// seeded permutation, removed in that order; `kept` the rest.
struct DeletePlan {
  std::vector<int64_t> writes = intKeys(kDeleteBase, Order::kShuffled);
  std::vector<int64_t> doomed, kept;
  DeletePlan() {
    std::vector<int64_t> perm = intKeys(kDeleteBase, Order::kSequential);
    std::mt19937_64 rng(kSeed + 1);
    shuffle(perm, rng);
    doomed.assign(perm.begin(), perm.begin() + (kDeleteBase - kDeleteKeep));
    kept.assign(perm.begin() + (kDeleteBase - kDeleteKeep), perm.end());
  }
};

template <typename State, typename Write, typename Erase>
void deletion(const char* typeName, Write&& write, Erase&& erase) {
  char title[200];
  std::snprintf(title, sizeof(title),
                "%s: 1e5 writes, remove a random 90%%, vs a fresh state of the 10%% left",
                typeName);
  header(title);
  const DeletePlan plan;
  size_t asIs, shrunk, fresh, freshShrunk;
  size_t heapAsIs, heapShrunk, heapFresh, heapFreshShrunk;
  {
    Probe p;
    auto s = std::make_unique<State>();
    size_t op = 0;
    for (int64_t k : plan.writes) write(*s, k, op++);
    row("full (1e5 written)", kDeleteBase, s->memoryBytes(), p, true);
    for (int64_t k : plan.doomed) erase(*s, k);
    asIs = s->memoryBytes();
    heapAsIs = p.heap();
    row("after removing 90%, as is", kDeleteKeep, asIs, p, false);
    s->shrinkToFit();
    shrunk = s->memoryBytes();
    heapShrunk = p.heap();
    row("after removing 90%, shrinkToFit()", kDeleteKeep, shrunk, p, false);
    if (s->size() != kDeleteKeep) std::fprintf(stderr, "memory-bench: wrong size after removes\n");
  }
  {
    Probe p;
    auto s = std::make_unique<State>();
    size_t op = 0;
    for (int64_t k : plan.kept) write(*s, k, op++);
    fresh = s->memoryBytes();
    heapFresh = p.heap();
    row("fresh: the 10% written into an empty state", kDeleteKeep, fresh, p, true);
    s->shrinkToFit();
    freshShrunk = s->memoryBytes();
    heapFreshShrunk = p.heap();
    row("fresh, shrinkToFit()", kDeleteKeep, freshShrunk, p, false);
  }
  std::printf("\nratios to fresh (memoryBytes | heap):\n");
  std::printf("  as is      / fresh            %.3f | %.3f\n", double(asIs) / fresh,
              double(heapAsIs) / heapFresh);
  std::printf("  shrunk     / fresh            %.3f | %.3f\n", double(shrunk) / fresh,
              double(heapShrunk) / heapFresh);
  std::printf("  shrunk     / fresh shrunk     %.3f | %.3f\n", double(shrunk) / freshShrunk,
              double(heapShrunk) / heapFreshShrunk);
  std::string t = typeName;
  verdict(t + " after 90% removed, as is / fresh (memoryBytes)", double(asIs) / fresh, 1.05);
  verdict(t + " after 90% removed, shrinkToFit / fresh (memoryBytes)", double(shrunk) / fresh,
          1.05);
  verdict(t + " after 90% removed, shrinkToFit / fresh shrinkToFit (memoryBytes)",
          double(shrunk) / freshShrunk, 1.05);
}

}  // namespace
}  // namespace deltasync::bench

int main() {
  using namespace deltasync::bench;
  std::printf("# memory-bench (deltasync bench/memory-bench.c++)\n");
  std::printf("heap = live bytes via replaced operator new/delete (malloc_usable_size);"
              " B/entry = bytes / entries\n");
  bigORSet();
  bigAWLWWMap();
  deletion<IntSet>(
      "ORSet<int64_t>", [](IntSet& s, int64_t k, size_t) { s.add(kReplicaA, k); },
      [](IntSet& s, int64_t k) { s.remove(k); });
  {
    // AWLWWMap with keys "k<n>": one clock across the whole run is enough (timestamps only need
    // to increase per replica).
    static HybridLogicalClock clock;
    deletion<StrMap>(
        "AWLWWMap<std::string, int64_t>",
        [](StrMap& m, int64_t k, size_t op) {
          m.set(kReplicaA, keyName(static_cast<uint64_t>(k)), k,
                clock.now(syntheticMillis(op)));
        },
        [](StrMap& m, int64_t k) { m.remove(keyName(static_cast<uint64_t>(k))); });
  }
  std::printf("\n## Verdicts\n\n");
  bool allPass = true;
  for (const Verdict& v : gVerdicts) {
    bool pass = v.value <= v.target;
    allPass = allPass && pass;
    std::printf("%-4s %-72s %8.3f (target <= %g)\n", pass ? "PASS" : "FAIL", v.what.c_str(),
                v.value, v.target);
  }
  return allPass ? 0 : 1;
}
