// CausalContext: the set of dots a state or delta has seen.
//
// Representation: per origin replica, a sorted list of disjoint, non-adjacent closed intervals
// of counters. This single canonical form is both the "compact version vector" (an origin whose
// first interval starts at 1 has seen 1..hi contiguously) and the "dot cloud" (any further
// intervals). Joining merges intervals, so compaction happens on every join and never needs a
// separate pass; a delta group holding 1000 consecutive adds of one replica keeps one interval.
//
// Invariants (checked by valid(), maintained by every mutator):
//   - origins_ sorted by replica id, no duplicates, no origin with an empty interval list;
//   - each interval has 1 <= lo <= hi <= kMaxDotCounter;
//   - intervals of one origin sorted, disjoint and non-adjacent (prev.hi + 1 < next.lo).
// Because the form is canonical, equality is structural equality.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

// GCC 12 reports a false -Wstringop-overread inside boost's trivially-copyable move path.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overread"
#include <boost/container/small_vector.hpp>
#pragma GCC diagnostic pop
#else
#include <boost/container/small_vector.hpp>
#endif

#include "crdt/dot.h"

namespace deltasync::crdt {

struct Interval {
  uint64_t lo = 0;
  uint64_t hi = 0;  // inclusive

  constexpr uint64_t length() const { return hi - lo + 1; }
  constexpr bool operator==(const Interval&) const = default;
};

// Vectors with room for one element inline and doubling growth: most origins hold one interval
// and most deltas one origin, so a typical delta's context allocates nothing.
template <typename T>
using InlineVector = boost::container::small_vector<
    T, 1, void,
    boost::container::small_vector_options_t<
        boost::container::growth_factor<boost::container::growth_factor_100>>>;

using Intervals = InlineVector<Interval>;

class CausalContext {
 public:
  struct Origin {
    ReplicaId replica;
    Intervals intervals;

    bool operator==(const Origin&) const = default;
  };

  CausalContext() = default;
  CausalContext(const CausalContext&) = default;
  CausalContext& operator=(const CausalContext&) = default;
  // Moves never throw: a small_vector moves its inline elements (which never allocate) or steals
  // its heap block, but does not say noexcept, and without it every std::vector of states (parts,
  // chunks, values) copied all of them each time it grew.
  CausalContext(CausalContext&&) noexcept = default;
  CausalContext& operator=(CausalContext&&) noexcept = default;

  bool empty() const { return origins_.empty(); }

  bool contains(Dot d) const {
    const Origin* o = find(d.replica);
    return o != nullptr && containsCounter(o->intervals, d.counter);
  }

  // Highest counter seen from `r`, 0 if none.
  uint64_t max(ReplicaId r) const {
    const Origin* o = find(r);
    return o == nullptr ? 0 : o->intervals.back().hi;
  }

  // The version-vector entry of `r`: n such that 1..n are all contained (0 if 1 is missing).
  uint64_t contiguous(ReplicaId r) const {
    const Origin* o = find(r);
    return (o == nullptr || o->intervals.front().lo != 1) ? 0 : o->intervals.front().hi;
  }

  // The dot a replica uses for its next event: (r, max(r) + 1). Throws LimitError when the
  // counter would pass kMaxDotCounter. Does not add it.
  Dot nextDot(ReplicaId r) const;

  void add(Dot d) {
    // Fast path, inline: the next dot of an origin already present (a replica's own writes).
    if (Origin* o = findMutable(d.replica)) {
      Interval& last = o->intervals.back();
      if (d.counter == last.hi + 1 && d.counter <= kMaxDotCounter) {
        last.hi = d.counter;
        return;
      }
    }
    addOther(d);
  }
  // Adds lo..hi (inclusive). Throws std::invalid_argument unless 1 <= lo <= hi <= kMaxDotCounter.
  void addRange(ReplicaId r, uint64_t lo, uint64_t hi);

  // Removes one dot (used to build exact delta contexts). No-op when absent.
  void erase(Dot d);
  // Removes every dot of r (pruning a removed replica: gossip/pruning.h). No-op when absent.
  void eraseReplica(ReplicaId r);

  void join(const CausalContext& other);

  // True when every dot of `other` is contained in *this.
  bool includes(const CausalContext& other) const;

  // Dots of *this that `other` does not contain.
  CausalContext minus(const CausalContext& other) const;

  // Dots in both.
  CausalContext intersect(const CausalContext& other) const;

  // Number of dots (saturates at UINT64_MAX) and of intervals.
  uint64_t dotCount() const;
  size_t intervalCount() const;

  const InlineVector<Origin>& origins() const { return origins_; }
  const Origin* find(ReplicaId r) const {
    if (origins_.size() <= 8) {  // most contexts have a handful of origins: scan
      for (const Origin& o : origins_) {
        if (o.replica == r) return &o;
      }
      return nullptr;
    }
    auto it = std::lower_bound(origins_.begin(), origins_.end(), r,
                               [](const Origin& o, ReplicaId id) { return o.replica < id; });
    return (it != origins_.end() && it->replica == r) ? &*it : nullptr;
  }

  // Calls f(ReplicaId, Interval) for every interval, in (replica, lo) order.
  template <typename F>
  void forEachInterval(F&& f) const {
    for (const Origin& o : origins_) {
      for (const Interval& i : o.intervals) f(o.replica, i);
    }
  }

  // Releases spare vector capacity.
  void shrinkToFit() {
    origins_.shrink_to_fit();
    for (Origin& o : origins_) o.intervals.shrink_to_fit();
  }

  // Bytes of heap and inline storage used (for memory accounting).
  size_t memoryBytes() const;

  // Heap bytes of an InlineVector (nothing while its one element fits inline).
  template <typename V>
  static size_t heapBytes(const V& v) {
    return v.capacity() > 1 ? v.capacity() * sizeof(typename V::value_type) : 0;
  }

  // Checks the invariants above; used on decoded input and in tests.
  bool valid() const;

  bool operator==(const CausalContext&) const = default;

  static bool containsCounter(const Intervals& iv, uint64_t c) {
    if (iv.size() == 1) return iv[0].lo <= c && c <= iv[0].hi;
    // First interval whose hi >= c.
    auto it = std::lower_bound(iv.begin(), iv.end(), c,
                               [](const Interval& i, uint64_t v) { return i.hi < v; });
    return it != iv.end() && it->lo <= c;
  }

 private:
  InlineVector<Origin> origins_;

  Origin& findOrInsert(ReplicaId r);
  void addOther(Dot d);  // add() past its inline fast path
  Origin* findMutable(ReplicaId r) { return const_cast<Origin*>(find(r)); }
};

}  // namespace deltasync::crdt
