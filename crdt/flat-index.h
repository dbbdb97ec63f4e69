// FlatIndex: an open-addressing hash index of uint32 positions into a caller-owned dense array.
//
// The dot stores keep their entries in one dense vector and index them twice (by key, by dot).
// Storing only 4-byte slots keeps each index at ~4/load bytes per entry; the caller supplies
// hashes and equality by position, so the index never owns or copies keys.
//
// A slot holds a position in its low bits and, in the bits a position cannot reach, a tag: hash
// bits that the home slot does not use. With capacity 2^b, positions (< capacity * 3/4) need b
// bits, leaving 32 - b bits of tag (11 at 2^21 slots, none from 2^32). Probes compare tags
// first and call the caller's equality only on a tag match, so a probe that passes other keys'
// slots does not load their entries (at 1e6 entries those loads were the largest cost of a
// write: random cache misses into the dense array).
//
// Invariants: capacity is 0 or a power of two >= kMinCapacity; size <= capacity * 3/4 after every
// insert; linear probing with backward-shift deletion, so there are no tombstones and every
// present position is reachable from its home slot without crossing an empty slot; the tag of a
// present slot is tagOf(its hash). Positions may repeat hashes (a multi-index: one key with
// several dots) but each position appears once. An empty slot is kNone, which no (tag, position)
// pair equals because a position never has all of its bits set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace deltasync::crdt::_ {

// The secret seed of the hashes that the dot stores index keys and dots by: handed in once per
// process, before any store is built (setHashSeed). crdt/ does no I/O, so it does not draw it:
// lib/runtime.c++ draws it from the OS's random source when the library loads. Keys and dots come from peers, and
// with a public hash a peer can compute values that collide: distinct keys of one hash share a
// probe cluster, so n of them cost O(n^2) probes to index (hash flooding). Unseeded, 15-byte keys
// with one 64-bit hash could be computed directly. With the seed unknown, collisions can only be
// hit by chance. (Only index layout depends on it, never a result: positions found in a
// cluster are always ordered or compared before use.)
//
// It is a plain global, set by a constructor that runs before any ordinary static initialiser
// (priority 101), so every store ever built sees one value. (A function with a static local
// cost ~13 instructions per call with the spills around it, ~65 per map write; bench/RESULTS.md,
// session 6.) Without setHashSeed it is 0: the index layout is then the same in every run (the
// simulator and crdt's and gossip's own tests run so), and peers could aim collisions at it.
extern uint64_t gHashSeed;
inline uint64_t hashSeed() { return gHashSeed; }
// Sets the seed. Only before any store is built (a store indexed under one seed is not found
// under another): from a [[gnu::constructor(101)]] function, as lib/runtime.c++ does.
inline void setHashSeed(uint64_t seed) { gHashSeed = seed; }

class FlatIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kMinCapacity = 16;

  bool active() const { return !slots_.empty(); }
  size_t capacity() const { return slots_.size(); }
  size_t memoryBytes() const { return slots_.capacity() * sizeof(uint32_t); }
  void reset() {
    std::vector<uint32_t>().swap(slots_);
    posMask_ = 0;
  }

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

  // Starts loading h's home slot into cache, so that a later probe of h overlaps its miss with
  // other work. No effect on an inactive index.
  void prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & (slots_.size() - 1)]);
  }

  // First position in h's probe sequence for which match(pos) holds, else kNone. match is only
  // called for positions whose tag equals h's.
  template <typename Match>
  uint32_t find(uint64_t h, Match&& match) const {
    size_t mask = slots_.size() - 1;
    const uint32_t tag = tagOf(h);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t s = slots_[i];
      if (s == kNone) return kNone;
      if ((s & ~posMask_) == tag && match(s & posMask_)) return s & posMask_;
    }
  }

  // Calls f(pos) for every position in h's cluster whose tag equals h's: a superset of the
  // positions hashed at h (callers filter by equality).
  template <typename F>
  void forEachInCluster(uint64_t h, F&& f) const {
    size_t mask = slots_.size() - 1;
    const uint32_t tag = tagOf(h);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t s = slots_[i];
      if (s == kNone) return;
      if ((s & ~posMask_) == tag) f(s & posMask_);
    }
  }

  // Caller guarantees !needsGrow(size + 1) (see rebuildBoth).
  void insert(uint64_t h, uint32_t pos) { insertAtHome(h & (slots_.size() - 1), tagOf(h) | pos); }

  // Replaces position `from` (hashed at h) by `to`, for entries that moved in the dense array.
  void relabel(uint64_t h, uint32_t from, uint32_t to) {
    size_t i = slotOf(h, from);
    slots_[i] = (slots_[i] & ~posMask_) | to;
  }

  // Removes position `pos` (hashed at h). hashOf(pos) must return the hash of any present
  // position, to decide which followers may shift back.
  template <typename HashOf>
  void erase(uint64_t h, uint32_t pos, HashOf&& hashOf) {
    size_t mask = slots_.size() - 1;
    size_t i = slotOf(h, pos);
    size_t j = i;
    for (;;) {
      j = (j + 1) & mask;
      uint32_t s = slots_[j];
      if (s == kNone) break;
      size_t home = hashOf(s & posMask_) & mask;
      // s stays if its home lies cyclically in (i, j].
      bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots_[i] = s;
      i = j;
    }
    slots_[i] = kNone;
  }

  // The slot array of an empty index of the given capacity (a power of two), for rebuildBoth;
  // allocating it first lets a caller get every allocation done before it changes state.
  // A slot array of `capacity` empty slots. A large one (1 MiB and up) is faulted in as one block
  // before it is filled (MADV_POPULATE_WRITE, Linux 5.14+; elsewhere a no-op): inserts write it
  // at random, and a page faulted in by the kernel one at a time cost ~1.3 us each, about a
  // quarter of a cold 1e5-element join (bench/RESULTS.md "first call").
  static std::vector<uint32_t> emptySlots(size_t capacity);

  // Passed as `same` to rebuildBoth when duplicates need not be counted.
  struct NoSame {};

  // Passed as `same` to rebuildBoth to leave repeats out instead of inserting them: a position p
  // for which same(p, q) holds for an earlier-inserted q with p's hash is not inserted, and
  // repeat(p, q) is called with the first such q (the first of p's equals in probe order, since
  // repeats are never inserted; with an equality of keys, the first entry of p's key). The
  // caller inserts them afterwards with insertRun, grouped by q. Why: inserting m positions of one
  // hash one by one walks their cluster m times (each walk ends past all earlier ones), which is
  // quadratic for a key with many entries; a run walks it once. The walk of a left-out position
  // also stops at q instead of at the cluster's end.
  template <typename Same, typename Repeat>
  struct Defer {
    Same same;
    Repeat repeat;
  };
  template <typename Same, typename Repeat>
  static Defer<Same, Repeat> defer(Same same, Repeat repeat) {
    return {std::move(same), std::move(repeat)};
  }

  // Inserts positions posAt(0), ..., posAt(count - 1), all hashed at h, with one walk from h's
  // home slot: the k-th lands on the k-th free slot, as inserting them one by one would put them.
  // Caller guarantees !needsGrow(size + count).
  template <typename PosAt>
  void insertRun(uint64_t h, size_t count, PosAt&& posAt) {
    const size_t mask = slots_.size() - 1;
    const uint32_t tag = tagOf(h);
    size_t i = h & mask;
    for (size_t k = 0; k < count; ++k) {
      while (slots_[i] != kNone) i = (i + 1) & mask;
      slots_[i] = tag | posAt(k);
    }
  }

  // Rebuilds two indexes over the same positions 0..n-1, into `freshA` and `freshB` (from
  // emptySlots; capacities powers of two >= n * 4/3): the dot stores index every entry by key
  // and by dot, and one pass reads each entry once for both hashes. hashesOf(p) returns
  // {hash in a, hash in b}. Allocates nothing itself, so it fails only if a Defer's repeat does.
  // Returns, for a and for b, how many positions p have no earlier-inserted position q with p's
  // hash for which same(p, q) holds: with an equality of keys, the number of distinct keys (with
  // NoSame, n; with Defer, the positions inserted).
  //
  // Positions go in in order, so the writes land on random slots of tables that may be far
  // larger than the cache. Each home slot is prefetched kAhead positions before its insert, so
  // those misses overlap instead of being paid one after another. (This replaced partitioning
  // the positions by home slot with a counting sort: four passes and 8 bytes of scratch per
  // entry, and slower in bench/.)
  template <typename HashesOf, typename SameA, typename SameB>
  static std::pair<size_t, size_t> rebuildBoth(FlatIndex& a, std::vector<uint32_t>&& freshA, SameA&& sameA,
                                               FlatIndex& b, std::vector<uint32_t>&& freshB, SameB&& sameB,
                                               uint32_t n, HashesOf&& hashesOf) {
    a.adopt(std::move(freshA));
    b.adopt(std::move(freshB));
    const Raw ra = a.raw(), rb = b.raw();
    uint64_t aheadA[kAhead], aheadB[kAhead];
    auto load = [&](uint32_t p) {
      auto [ha, hb] = hashesOf(p);
      __builtin_prefetch(ra.slots + (ha & ra.mask));
      __builtin_prefetch(rb.slots + (hb & rb.mask));
      aheadA[p % kAhead] = ha;
      aheadB[p % kAhead] = hb;
    };
    for (uint32_t p = 0; p < n && p < kAhead; ++p) load(p);
    size_t firstsA = 0, firstsB = 0;
    for (uint32_t p = 0; p < n; ++p) {
      const uint64_t ha = aheadA[p % kAhead], hb = aheadB[p % kAhead];
      if (p + kAhead < n) load(p + kAhead);
      firstsA += ra.insert(ha, p, sameA);
      firstsB += rb.insert(hb, p, sameB);
    }
    return {firstsA, firstsB};
  }

 private:
  static constexpr uint32_t kAhead = 16;  // prefetch distance of rebuildBoth, in positions

  std::vector<uint32_t> slots_;
  uint32_t posMask_ = 0;  // low bits of a slot that hold the position; the rest is the tag

  uint32_t tagOf(uint64_t h) const { return static_cast<uint32_t>(h >> 32) & ~posMask_; }

  // Takes `fresh` (from emptySlots) as the slot array, dropping every position.
  void adopt(std::vector<uint32_t>&& fresh) {
    slots_.swap(fresh);
    const size_t mask = slots_.size() - 1;
    posMask_ = static_cast<uint32_t>(mask < UINT32_MAX ? mask : UINT32_MAX);
  }

  // The slot holding position pos (present, hashed at h).
  size_t slotOf(uint64_t h, uint32_t pos) const {
    size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    while ((slots_[i] & posMask_) != pos) i = (i + 1) & mask;  // kNone never matches
    return i;
  }

  // Stores slot at the first free slot from i.
  void insertAtHome(size_t i, uint32_t slot) {
    const size_t mask = slots_.size() - 1;
    while (slots_[i] != kNone) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  // The slot array and masks as plain values, for rebuildBoth's loop: a store into the slots
  // may alias posMask_ (both uint32_t), so through the members the compiler would reload them
  // at every step.
  struct Raw {
    uint32_t* slots;
    size_t mask;
    uint32_t posMask;

    // Stores pos (hashed at h) at the first free slot from its home. Returns false iff same(pos,
    // q) held for a position q with the same tag passed on the way (every earlier position with
    // the same hash is passed: no deletions happen during a rebuild). With a Defer, such a pos is
    // handed to its repeat instead of stored.
    template <typename Same>
    bool insert(uint64_t h, uint32_t pos, Same&& same) const {
      const uint32_t slot = (static_cast<uint32_t>(h >> 32) & ~posMask) | pos;
      bool first = true;
      size_t i = h & mask;
      for (; slots[i] != kNone; i = (i + 1) & mask) {
        if constexpr (IsDefer<std::decay_t<Same>>::value) {
          uint32_t s = slots[i];
          if (__builtin_expect(((s ^ slot) & ~posMask) == 0 && same.same(pos, s & posMask), 0)) {
            same.repeat(pos, s & posMask);
            return false;
          }
        } else if constexpr (!std::is_same_v<std::decay_t<Same>, NoSame>) {
          uint32_t s = slots[i];
          if (first && ((s ^ slot) & ~posMask) == 0 && same(pos, s & posMask)) first = false;
        }
      }
      slots[i] = slot;
      return first;
    }
  };
  template <typename T>
  struct IsDefer : std::false_type {};
  template <typename Same, typename Repeat>
  struct IsDefer<Defer<Same, Repeat>> : std::true_type {};
  Raw raw() { return Raw{slots_.data(), slots_.size() - 1, posMask_}; }
};

}  // namespace deltasync::crdt::_
