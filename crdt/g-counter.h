// GCounter: a grow-only counter. Each replica owns one entry (the total of its own increments);
// the counter's value is the sum of the entries, and join takes the pointwise maximum.
//
// A delta carries the absolute new entry {self -> total}, not the increment: deltas are then
// idempotent (applying one twice, or an old one after a newer one, changes nothing), which is what
// lets the gossip layer duplicate, reorder and drop them freely.
//
// Invariants: entries_ sorted by replica id, no duplicate replicas, no zero counts (a zero entry
// means the same as an absent one, so it is never stored). The form is therefore canonical and
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

namespace deltasync::crdt {

// Exact sums of many 64-bit entries. __extension__ keeps -Wpedantic quiet about the GNU type.
__extension__ typedef unsigned __int128 UInt128;
__extension__ typedef __int128 Int128;

class GCounter {
 public:
  struct Entry {
    ReplicaId replica;
    uint64_t count = 0;

    bool operator==(const Entry&) const = default;
  };
  using const_iterator = std::vector<Entry>::const_iterator;

  GCounter() = default;

  // The join of the given entries (any order; duplicates keep their maximum; zero counts are
  // dropped). Always yields a valid counter, so the wire codec can feed it untrusted input.
  static GCounter fromEntries(std::span<const Entry> entries) {
    GCounter c;
    c.entries_.assign(entries.begin(), entries.end());
    std::sort(c.entries_.begin(), c.entries_.end(), [](const Entry& a, const Entry& b) {
      return a.replica != b.replica ? a.replica < b.replica : a.count > b.count;
    });
    // After the sort the first entry of each replica holds its maximum.
    auto last = std::unique(c.entries_.begin(), c.entries_.end(),
                            [](const Entry& a, const Entry& b) { return a.replica == b.replica; });
    c.entries_.erase(last, c.entries_.end());
    std::erase_if(c.entries_, [](const Entry& e) { return e.count == 0; });
    return c;
  }

  // Adds n to self's entry and returns the delta {self -> new total}. n == 0 changes nothing and
  // returns bottom. Throws std::overflow_error (counter unchanged) if self's entry would exceed
  // UINT64_MAX.
  GCounter increment(ReplicaId self, uint64_t n = 1) {
    if (n == 0) return GCounter{};
    auto it = lowerBound(self);
    bool present = it != entries_.end() && it->replica == self;
    uint64_t current = present ? it->count : 0;
    if (n > std::numeric_limits<uint64_t>::max() - current) {
      throw std::overflow_error("GCounter: entry of replica " + std::to_string(self.value) +
                                " would exceed 2^64 - 1");
    }
    if (present) {
      it->count = current + n;
    } else {
      it = entries_.insert(it, Entry{self, n});
    }
    GCounter delta;
    delta.entries_.push_back(*it);
    return delta;
  }

  // The sum of all entries, saturating at UINT64_MAX. The sum can exceed 64 bits although no
  // single entry does (each replica may hold up to 2^64 - 1). Saturating keeps the reading
  // monotone -- a grow-only counter never appears to shrink, which wrapping around would break --
  // and UINT64_MAX then reads as "at least UINT64_MAX". exactValue() has the true sum.
  uint64_t value() const {
    UInt128 sum = exactValue();
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    return sum > kMax ? kMax : static_cast<uint64_t>(sum);
  }

  // The true sum. Cannot overflow: it would take 2^64 entries.
  UInt128 exactValue() const {
    UInt128 sum = 0;
    for (const Entry& e : entries_) sum += e.count;
    return sum;
  }

  // The entry of replica r (0 if it never incremented).
  uint64_t get(ReplicaId r) const {
    auto it = lowerBound(r);
    return (it != entries_.end() && it->replica == r) ? it->count : 0;
  }

  bool empty() const { return entries_.empty(); }

  // Pointwise maximum.
  void join(const GCounter& other) {
    if (other.entries_.empty()) return;
    entries_ = _::mergeByReplica(entries_, other.entries_, [](const Entry& a, const Entry& b) {
      return Entry{a.replica, std::max(a.count, b.count)};
    });
  }

  // Non-zero entries in replica order, for the wire codec.
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }

  size_t memoryBytes() const { return sizeof(*this) + entries_.capacity() * sizeof(Entry); }

  bool operator==(const GCounter& other) const { return entries_ == other.entries_; }

 private:
  std::vector<Entry> entries_;

  friend GCounter strip(const GCounter& delta, const GCounter& state);

  std::vector<Entry>::iterator lowerBound(ReplicaId r) { return _::lowerBoundByReplica(entries_, r); }
  const_iterator lowerBound(ReplicaId r) const { return _::lowerBoundByReplica(entries_, r); }
};

// The entries of `delta` greater than the corresponding entries of `state`.
inline GCounter strip(const GCounter& delta, const GCounter& state) {
  GCounter out;
  auto s = state.entries_.begin();
  for (const GCounter::Entry& e : delta.entries_) {
    while (s != state.entries_.end() && s->replica < e.replica) ++s;
    bool known = s != state.entries_.end() && s->replica == e.replica && s->count >= e.count;
    if (!known) out.entries_.push_back(e);
  }
  return out;
}

}  // namespace deltasync::crdt
