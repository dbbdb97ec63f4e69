// PNCounter: a counter that can go up and down. It is two grow-only counters -- one of
// increments (P), one of decrements (N) -- stored together as one (p, n) pair per replica, since a
// replica that does one usually does the other. value() = sum(p) - sum(n); join takes the
// pointwise maximum of each half.
//
// As in GCounter, a delta carries absolute totals: increment() returns {self -> (new p, 0)} and
// decrement() returns {self -> (0, new n)}, so deltas are idempotent and may be duplicated,
// reordered or dropped.
//
// Invariants: entries_ sorted by replica id, no duplicate replicas, no entry with p == n == 0
// (it means the same as an absent entry, so it is never stored). The form is canonical and
// equality is structural.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "crdt/dot.h"
#include "crdt/replica-entries.h"
#include "crdt/g-counter.h"  // UInt128, Int128

namespace deltasync::crdt {

class PNCounter {
 public:
  struct Entry {
    ReplicaId replica;
    uint64_t increments = 0;  // p: total of this replica's increments
    uint64_t decrements = 0;  // n: total of this replica's decrements

    bool operator==(const Entry&) const = default;
  };
  using const_iterator = std::vector<Entry>::const_iterator;

  PNCounter() = default;

  // The join of the given entries (any order; duplicates merge pointwise by maximum; all-zero
  // entries are dropped). Always yields a valid counter, so the wire codec can feed it untrusted
  // input.
  static PNCounter fromEntries(std::span<const Entry> entries) {
    PNCounter c;
    c.entries_.assign(entries.begin(), entries.end());
    std::sort(c.entries_.begin(), c.entries_.end(),
              [](const Entry& a, const Entry& b) { return a.replica < b.replica; });
    std::vector<Entry> merged;
    for (const Entry& e : c.entries_) {
      if (!merged.empty() && merged.back().replica == e.replica) {
        merged.back().increments = std::max(merged.back().increments, e.increments);
        merged.back().decrements = std::max(merged.back().decrements, e.decrements);
      } else {
        merged.push_back(e);
      }
    }
    std::erase_if(merged, [](const Entry& e) { return e.increments == 0 && e.decrements == 0; });
    c.entries_ = std::move(merged);
    return c;
  }

  // Adds n to self's increments; returns {self -> (new total, 0)}. n == 0 changes nothing and
  // returns bottom. Throws std::overflow_error (counter unchanged) if self's total of increments
  // would exceed UINT64_MAX.
  PNCounter increment(ReplicaId self, uint64_t n = 1) { return add(self, n, &Entry::increments); }

  // Adds n to self's decrements; returns {self -> (0, new total)}. As increment() otherwise.
  PNCounter decrement(ReplicaId self, uint64_t n = 1) { return add(self, n, &Entry::decrements); }

  // sum(p) - sum(n), clamped to [INT64_MIN, INT64_MAX]. The exact difference needs more than 64
  // bits in general (each replica's totals alone go up to 2^64 - 1). Clamping is the least
  // surprising choice for a reader: it never throws (a peer's data cannot make reads fail), keeps
  // the sign right and is monotone in the exact value, where wrapping around would turn a huge
  // positive count negative. exactValue() has the true difference.
  int64_t value() const {
    Int128 v = exactValue();
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    return v < kMin ? kMin : v > kMax ? kMax : static_cast<int64_t>(v);
  }

  // The true difference. Each sum fits in 128 bits unless there are 2^64 entries, and so does
  // the difference unless there are 2^63.
  Int128 exactValue() const {
    UInt128 p = 0, n = 0;
    for (const Entry& e : entries_) {
      p += e.increments;
      n += e.decrements;
    }
    return static_cast<Int128>(p) - static_cast<Int128>(n);
  }

  // The entry of replica r ({r, 0, 0} if it never changed the counter).
  Entry get(ReplicaId r) const {
    auto it = lowerBound(r);
    return (it != entries_.end() && it->replica == r) ? *it : Entry{r, 0, 0};
  }

  bool empty() const { return entries_.empty(); }

  // Pointwise maximum of both halves.
  void join(const PNCounter& other) {
    if (other.entries_.empty()) return;
    entries_ = _::mergeByReplica(entries_, other.entries_, [](const Entry& a, const Entry& b) {
      return Entry{a.replica, std::max(a.increments, b.increments),
                   std::max(a.decrements, b.decrements)};
    });
  }

  // Entries in replica order, for the wire codec.
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }

  size_t memoryBytes() const { return sizeof(*this) + entries_.capacity() * sizeof(Entry); }

  bool operator==(const PNCounter& other) const { return entries_ == other.entries_; }

 private:
  std::vector<Entry> entries_;

  friend PNCounter strip(const PNCounter& delta, const PNCounter& state);

  PNCounter add(ReplicaId self, uint64_t n, uint64_t Entry::*half) {
    if (n == 0) return PNCounter{};
    auto it = lowerBound(self);
    bool present = it != entries_.end() && it->replica == self;
    uint64_t current = present ? (*it).*half : 0;
    if (n > std::numeric_limits<uint64_t>::max() - current) {
      throw std::overflow_error(
          std::string("PNCounter: ") + (half == &Entry::increments ? "increments" : "decrements") +
          " of replica " + std::to_string(self.value) + " would exceed 2^64 - 1");
    }
    if (!present) it = entries_.insert(it, Entry{self, 0, 0});
    (*it).*half = current + n;
    Entry d{self, 0, 0};
    d.*half = current + n;
    PNCounter delta;
    delta.entries_.push_back(d);
    return delta;
  }

  std::vector<Entry>::iterator lowerBound(ReplicaId r) { return _::lowerBoundByReplica(entries_, r); }
  const_iterator lowerBound(ReplicaId r) const { return _::lowerBoundByReplica(entries_, r); }
};

// The halves of `delta`'s entries that exceed `state`'s; a half that does not is zeroed, and an
// entry with neither half left is dropped.
inline PNCounter strip(const PNCounter& delta, const PNCounter& state) {
  PNCounter out;
  auto s = state.entries_.begin();
  for (const PNCounter::Entry& e : delta.entries_) {
    while (s != state.entries_.end() && s->replica < e.replica) ++s;
    PNCounter::Entry kept = e;
    if (s != state.entries_.end() && s->replica == e.replica) {
      if (e.increments <= s->increments) kept.increments = 0;
      if (e.decrements <= s->decrements) kept.decrements = 0;
    }
    if (kept.increments != 0 || kept.decrements != 0) out.entries_.push_back(kept);
  }
  return out;
}

}  // namespace deltasync::crdt
