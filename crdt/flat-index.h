// FlatIndex: an open-addressing hash index of uint32 positions into a caller-owned dense array.
//
// The dot stores keep their entries in one dense vector and index them twice (by key, by dot).
// Storing only 4-byte positions keeps each index at ~4/load bytes per entry; the caller supplies
// hashes and equality by position, so the index never owns or copies keys.
//
// Invariants: capacity is 0 or a power of two >= kMinCapacity; size <= capacity * 3/4 after every
// insert; linear probing with backward-shift deletion, so there are no tombstones and every
// present position is reachable from its home slot without crossing an empty slot. Positions may
// repeat hashes (a multi-index: one key with several dots) but each position appears once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace deltasync::crdt::_ {

class FlatIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kMinCapacity = 16;

  bool active() const { return !slots_.empty(); }
  size_t capacity() const { return slots_.size(); }
  size_t memoryBytes() const { return slots_.capacity() * sizeof(uint32_t); }
  void reset() { std::vector<uint32_t>().swap(slots_); }

  // The capacity a fresh index holding n positions would have (so shrinking restores the
  // footprint of a freshly built state of the same size).
  static size_t capacityFor(size_t n) {
    size_t cap = kMinCapacity;
    while (n > cap / 4 * 3) cap *= 2;
    return cap;
  }
  bool needsGrow(size_t n) const { return n > slots_.size() / 4 * 3; }
  // Shrinks once the load falls below half of what a grow leaves (3/8), so alternating inserts
  // and erases at a boundary never rebuild repeatedly; the rebuild goes to capacityFor(n).
  bool wantsShrink(size_t n) const {
    return slots_.size() > kMinCapacity && n < slots_.size() / 16 * 3;
  }

  // First position in h's probe sequence for which match(pos) holds, else kNone.
  template <typename Match>
  uint32_t find(uint64_t h, Match&& match) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t p = slots_[i];
      if (p == kNone) return kNone;
      if (match(p)) return p;
    }
  }

  // Calls f(pos) for every position in h's cluster (callers filter by equality).
  template <typename F>
  void forEachInCluster(uint64_t h, F&& f) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t p = slots_[i];
      if (p == kNone) return;
      f(p);
    }
  }

  // Caller guarantees !needsGrow(size + 1) (see rebuild).
  void insert(uint64_t h, uint32_t pos) { insertAtHome(h & (slots_.size() - 1), pos); }

  // Replaces position `from` (hashed at h) by `to`, for entries that moved in the dense array.
  void relabel(uint64_t h, uint32_t from, uint32_t to) {
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    while (slots_[i] != from) i = (i + 1) & mask;
    slots_[i] = to;
  }

  // Removes position `pos` (hashed at h). hashOf(pos) must return the hash of any present
  // position, to decide which followers may shift back.
  template <typename HashOf>
  void erase(uint64_t h, uint32_t pos, HashOf&& hashOf) {
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    while (slots_[i] != pos) i = (i + 1) & mask;
    size_t j = i;
    for (;;) {
      j = (j + 1) & mask;
      uint32_t p = slots_[j];
      if (p == kNone) break;
      size_t home = hashOf(p) & mask;
      // p stays if its home lies cyclically in (i, j].
      bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots_[i] = p;
      i = j;
    }
    slots_[i] = kNone;
  }

  // Rebuilds for positions 0..n-1 at the given capacity (a power of two).
  //
  // Inserting positions in order would write to random slots of a table that no longer fits in
  // cache. For large tables the positions are first partitioned by the top bits of their home
  // slot (a counting sort, sequential passes), then inserted bucket by bucket, so the writes of
  // each bucket stay inside one small region of the table. Transient memory: 8 bytes per entry.
  template <typename HashOf>
  void rebuild(size_t capacity, uint32_t n, HashOf&& hashOf) {
    std::vector<uint32_t>(capacity, kNone).swap(slots_);
    const size_t mask = capacity - 1;
    if (n < kPartitionFrom) {
      for (uint32_t p = 0; p < n; ++p) insertAtHome(hashOf(p) & mask, p);
      return;
    }
    unsigned capBits = 0;
    while ((size_t{1} << capBits) < capacity) ++capBits;
    const unsigned bucketBits = capBits < kBucketBits ? capBits : kBucketBits;
    const unsigned shift = capBits - bucketBits;
    std::vector<uint32_t> homes(n);
    std::vector<uint32_t> start((size_t{1} << bucketBits) + 1, 0);
    for (uint32_t p = 0; p < n; ++p) {
      homes[p] = static_cast<uint32_t>(hashOf(p) & mask);
      ++start[(homes[p] >> shift) + 1];
    }
    for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    std::vector<uint32_t> order(n);
    for (uint32_t p = 0; p < n; ++p) order[start[homes[p] >> shift]++] = p;
    for (uint32_t p : order) insertAtHome(homes[p], p);
  }

 private:
  static constexpr uint32_t kPartitionFrom = 1u << 14;  // below: the table fits in cache anyway
  static constexpr unsigned kBucketBits = 10;

  std::vector<uint32_t> slots_;

  void insertAtHome(size_t i, uint32_t pos) {
    size_t mask = slots_.size() - 1;
    while (slots_[i] != kNone) i = (i + 1) & mask;
    slots_[i] = pos;
  }
};

}  // namespace deltasync::crdt::_
