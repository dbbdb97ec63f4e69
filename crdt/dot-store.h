// DotStore<K, V>: the indexed dot store behind ORSet, AWLWWMap, MVRegister and EWFlag.
//
// A causal CRDT's state is (store, context). The store is a set of entries (key, dot, value): for
// an OR-set, key = element and value = nothing; for an AW-LWW map, value = (timestamp, value);
// for registers and flags, the key is std::monostate. A key with several entries is a key with
// concurrent writes (several surviving dots).
//
// Layout: entries live in one dense array (a ChunkedVector, which grows without copying;
// swap-remove on erase) and are indexed twice by FlatIndex (key -> positions, dot -> position).
// Dots are packed into 64 bits as (replica slot << 48 | counter) through a per-store
// ReplicaTable. With these, add, remove and lookup cost O(1) expected, and joining a delta costs
// O(size of the delta), never a scan of the state (see joinFrom). Stores of at most kSmall
// entries keep no index and scan linearly: a delta is usually one entry, and three small vectors
// would cost more than they save.
//
// Invariants:
//   - every dot appears in at most one entry; keyCount_ == number of distinct keys;
//   - indexes are active whenever entries_.size() > kSmall (and may be earlier, after reserve()),
//     and when active they index exactly the entries;
//   - replicas_ counts exactly one reference per entry;
//   - (maintained by the owning type, relied on by joinFrom) every dot in the store is contained
//     in the owner's causal context.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "crdt/causal-context.h"
#include "crdt/chunked-vector.h"
#include "crdt/compact-string.h"
#include "crdt/dot.h"
#include "crdt/errors.h"
#include "crdt/flat-index.h"
#include "crdt/replica-table.h"

namespace deltasync::crdt {

// The value of a store whose entries carry none (sets, flags).
struct Empty {
  bool operator==(const Empty&) const = default;
};

namespace _ {

// How a key type is stored in entries and looked up. Lookups take a View, so a std::string key
// can be looked up by std::string_view without allocating.
template <typename K>
struct KeyStorage {
  using Stored = K;
  using View = const K&;
  static Stored make(View k) { return k; }
  static View view(const Stored& s) { return s; }
  static uint64_t hash(View k) { return mix64(std::hash<K>{}(k) ^ hashSeed()); }
  static uint64_t hashStored(const Stored& s) { return hash(s); }
  static size_t heapBytes(const Stored&) { return 0; }
};

template <>
struct KeyStorage<std::string> {
  using Stored = CompactString;
  using View = std::string_view;
  static Stored make(View k) { return CompactString(k); }
  static View view(const Stored& s) { return s.view(); }
  // Keys of up to 15 bytes (the inline ones) hash as the two words of CompactString's canonical
  // inline form: a few instructions instead of a byte loop, and for a stored key (index
  // rebuilds, joins) not even a copy. Longer keys chain the same step over their 8-byte words.
  // Both start from the secret seed (see hashSeed): each step mixes the state before the next
  // word goes in, so which words collide depends on the seed (std::hash, MurmurHash, has
  // collisions that hold for every seed).
  static uint64_t hash(View k) {
    if (k.size() <= 15) {
      unsigned char b[16];
      CompactString::inlineForm(k, b);
      return hashInline(b);
    }
    return hashLong(k);
  }
  static uint64_t hashStored(const Stored& s) {
    return s.isInline() ? hashInline(s.inlineBytes()) : hash(s.view());
  }
  static uint64_t hashInline(const unsigned char* b) {
    uint64_t w[2];
    std::memcpy(w, b, sizeof(w));
    return mix64(mix64(w[0] ^ hashSeed()) ^ w[1]);
  }
  [[gnu::noinline]] static uint64_t hashLong(View k) {
    uint64_t h = hashSeed() ^ (k.size() * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= k.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, k.data() + i, 8);
      h = mix64(h ^ w);
    }
    uint64_t w = 0;
    std::memcpy(&w, k.data() + i, k.size() - i);
    return mix64(h ^ w);
  }
  static size_t heapBytes(const Stored& s) { return s.heapBytes(); }
};

}  // namespace _

template <typename K, typename V = Empty>
class DotStore {
  using KS = _::KeyStorage<K>;

 public:
  using Key = K;
  using Value = V;
  using KeyView = typename KS::View;
  static constexpr size_t kSmall = 8;
  static constexpr uint32_t kNone = UINT32_MAX;

  size_t size() const { return entries_.size(); }  // entries (= live dots)
  size_t keyCount() const { return keyCount_; }
  bool empty() const { return entries_.empty(); }

  bool containsKey(KeyView k) const { return firstOfKey(k) != kNone; }
  bool containsDot(Dot d) const { return findDot(d) != kNone; }

  // Calls f(Dot, const V&) for each entry of key k.
  template <typename F>
  void forEachOfKey(KeyView k, F&& f) const {
    forEachPosOfKey(k, [&](uint32_t p) { f(dotAt(p), entries_[p].value); });
  }

  // Calls f(KeyView, Dot, const V&) for every entry, in storage order.
  template <typename F>
  void forEach(F&& f) const {
    for (uint32_t p = 0; p < entries_.size(); ++p) {
      f(KS::view(entries_[p].key), dotAt(p), entries_[p].value);
    }
  }

  // Calls f(KeyView) once per distinct key.
  template <typename F>
  void forEachKey(F&& f) const {
    bool unique = keyCount_ == entries_.size();
    for (uint32_t p = 0; p < entries_.size(); ++p) {
      KeyView k = KS::view(entries_[p].key);
      if (unique || firstOfKey(k) == p) f(k);
    }
  }

  // Adds an entry. Preconditions (checked): d is a valid dot not already present.
  void insert(KeyView k, Dot d, V v) {
    if (containsDot(d)) throw std::invalid_argument("dot already present in store");
    insertNew(k, d, std::move(v));
  }

  // insert() without the duplicate-dot check, for callers that know d is absent because it is
  // not in the owner's context (store dots are always in it).
  void insertNew(KeyView k, Dot d, V v) {
    uint64_t h = hashKey(k);
    insertNew(k, d, std::move(v), firstOfKey(k, h) == kNone, h);
  }

  // The hash the key index uses; computing it once per operation and passing it on saves
  // re-hashing (string keys).
  static uint64_t hashKey(KeyView k) { return KS::hash(k); }

  // Starts loading the index slots that a write of a key hashed at keyHash with dot d will
  // probe, so their cache misses overlap with the caller's other work (a write into a large
  // store misses in both indexes; see bench/RESULTS.md). Changes nothing.
  void prefetchWrite(uint64_t keyHash, Dot d) const {
    if (!byKey_.active()) return;
    byKey_.prefetch(keyHash);
    uint32_t s = replicas_.find(d.replica);
    if (s != _::ReplicaTable::kNone) byDot_.prefetch(dotHash(pack(s, d.counter)));
  }

  // insertNew() for callers that already know whether k is new to the store and its hashKey().
  // (v is forwarded down to the entry, built in place: a string value moved through each call
  // cost ~20 instructions a level.)
  template <typename U>
  void insertNew(KeyView k, Dot d, U&& v, bool newKey, uint64_t keyHash) {
    if (d.counter == 0 || d.counter > kMaxDotCounter) {
      throw std::invalid_argument("dot counter out of range: " + std::to_string(d.counter));
    }
    if (entries_.size() >= UINT32_MAX - 1) throw LimitError("dot store holds 2^32 - 2 entries");
    uint32_t slot = replicas_.acquire(d.replica);
    insertAtSlot(k, slot, d.counter, std::forward<U>(v), newKey, keyHash);
  }

  // Makes an empty store hold the one entry (k, d, v), without the general insert path: a write
  // builds its delta this way. Preconditions: empty() and no slot ever used (a fresh store); d
  // comes from CausalContext::nextDot (so its counter is in range).
  void assignOne(KeyView k, Dot d, const V& v) {
    const uint32_t slot = replicas_.acquireFirst(d.replica);
    entries_.emplace_back(KS::make(k), v, pack(slot, d.counter));
    keyCount_ = 1;
  }

  // Removes the entry with dot d, if any. Returns whether one was removed.
  bool eraseDot(Dot d) {
    uint32_t p = findDot(d);
    if (p == kNone) return false;
    erasePosition(p);
    return true;
  }

  // Removes every entry of key k; adds their dots to *removed when given. Returns the count.
  size_t eraseKey(KeyView k, CausalContext* removed = nullptr) {
    uint32_t found[kSmall];
    std::vector<uint32_t> more;
    size_t n = 0;
    forEachPosOfKey(k, [&](uint32_t p) {
      if (n < kSmall) {
        found[n] = p;
      } else {
        more.push_back(p);
      }
      ++n;
    });
    if (n == 0) return 0;
    more.insert(more.end(), found, found + std::min(n, kSmall));
    std::sort(more.begin(), more.end(), std::greater<uint32_t>());
    for (uint32_t p : more) {
      if (removed != nullptr) removed->add(dotAt(p));
      erasePosition(p);
    }
    return n;
  }

  void clear() { *this = DotStore(); }

  // Makes room for n entries in total (storage and indexes), as a fresh store growing to n would.
  void reserve(size_t n) {
    if (n <= entries_.size()) return;
    entries_.reserve(n);
    if (n > kSmall && (!byKey_.active() || byKey_.needsGrow(n))) {
      rebuildIndexes(_::FlatIndex::capacityFor(n));
    }
  }

  // Releases spare capacity: afterwards the footprint is that of a store built fresh with the
  // same entries. Erasing shrinks automatically too, but with hysteresis (within ~2.7x).
  void shrinkToFit() {
    entries_.shrink_to_fit();
    if (byKey_.active()) rebuildIndexes(_::FlatIndex::capacityFor(entries_.size()));
  }

  // Removes the entry at position p (positions come from forEachPosOfKey / findDot). The last
  // entry moves into p, so erase several positions in descending order.
  void eraseAt(uint32_t p) { erasePosition(p); }

  // Adds every dot of the store to ctx.
  void collectDots(CausalContext& ctx) const {
    for (uint32_t p = 0; p < entries_.size(); ++p) ctx.add(dotAt(p));
  }

  // Joins (b, cb) into (*this, ca). The caller joins the contexts afterwards.
  //
  // An entry survives iff it is in both stores, or in one store and unseen by the other's
  // context. Since every store dot lies in its own context:
  //   - b's entry with dot d is new to *this iff d is not in ca (no lookup in *this needed);
  //   - *this's entry with dot d dies iff d is in cb but not in b.
  // The second set is found by walking cb's dots (lookups in *this) when cb is smaller than
  // *this, else by scanning *this; so a delta costs O(|delta|), a state O(min(|a|, |cb|) + |b|).
  //
  // Limits are checked before anything changes, so a LimitError leaves *this unchanged (and the
  // store-dots-in-context invariant intact).
  void joinFrom(const CausalContext& ca, const DotStore& b, const CausalContext& cb) {
    // Per slot of b: the intervals of ca for that replica (nullptr: ca has none). Inline vectors:
    // a delta from one writer (the common join) allocates nothing here.
    InlineVector<const Intervals*> seen(b.replicas_.slotCount(), nullptr);
    b.replicas_.forEach([&](ReplicaId r, uint32_t s) {
      if (const auto* o = ca.find(r)) seen[s] = &o->intervals;
    });
    checkJoinLimits(b, seen);
    removeCoveredBy(cb, b);
    if (b.entries_.empty()) return;
    if (b.entries_.size() > kSmall) {
      // A bulk join: size storage and indexes once for what will be added, not by doubling.
      size_t fresh = 0;
      for (const Entry& e : b.entries_) fresh += unseen(seen, e.dot);
      const size_t total = entries_.size() + fresh;
      // When the indexes must be rebuilt anyway (or most entries are new), building them once
      // over everything costs less than a rebuild followed by one insert per new entry.
      if (fresh > kSmall &&
          (!byKey_.active() || byKey_.needsGrow(total) || fresh >= entries_.size())) {
        appendAndReindex(b, seen, total);
        return;
      }
      reserve(total);
    }
    InlineVector<uint32_t> mine(b.replicas_.slotCount(), _::ReplicaTable::kNone);  // see refIfUnseen
    // Key hashes run kAhead entries ahead of the inserts, and each is prefetched into the key
    // index when computed: a bulk join's probes then overlap their cache misses instead of
    // waiting for each in turn (the home-slot load was over half of a join's time).
    constexpr uint32_t kAhead = 16;
    uint64_t ahead[kAhead];
    const uint32_t nb = static_cast<uint32_t>(b.entries_.size());
    auto hashAhead = [&](uint32_t q) {
      const Entry& e = b.entries_[q];
      uint64_t h = KS::hashStored(e.key);
      byKey_.prefetch(h);
      if (uint32_t m = mine[slotOf(e.dot)]; m != _::ReplicaTable::kNone) {
        byDot_.prefetch(dotHash(pack(m, counterOf(e.dot))));
      }
      ahead[q % kAhead] = h;
    };
    for (uint32_t q = 0; q < std::min(nb, kAhead); ++q) hashAhead(q);
    for (uint32_t p = 0; p < nb; ++p) {
      const Entry& e = b.entries_[p];
      uint64_t h = ahead[p % kAhead];
      if (p + kAhead < nb) hashAhead(p + kAhead);
      uint32_t slot = refIfUnseen(b, e.dot, seen, mine);
      if (slot == _::ReplicaTable::kNone) continue;
      KeyView k = KS::view(e.key);
      insertAtSlot(k, slot, counterOf(e.dot), e.value, firstOfKey(k, h) == kNone, h);
    }
  }

  // joinFrom's bulk path: appends b's entries unseen by ca (`seen`, as in joinFrom; `total`
  // entries afterwards) without indexing them, then builds both indexes once over all entries,
  // counting distinct keys on the way. Every allocation happens before the state changes and a
  // failed append is undone, so an exception leaves *this as it was (spare capacity aside).
  void appendAndReindex(const DotStore& b, const InlineVector<const Intervals*>& seen,
                        size_t total) {
    const size_t capacity = _::FlatIndex::capacityFor(total);
    std::vector<uint32_t> keySlots = _::FlatIndex::emptySlots(capacity);
    std::vector<uint32_t> dotSlots = _::FlatIndex::emptySlots(capacity);
    entries_.reserve(total);
    const size_t before = entries_.size();
    InlineVector<uint32_t> mine(b.replicas_.slotCount(), _::ReplicaTable::kNone);
    try {
      for (const Entry& e : b.entries_) {
        uint32_t slot = refIfUnseen(b, e.dot, seen, mine);
        if (slot == _::ReplicaTable::kNone) continue;
        try {
          entries_.push_back(Entry{e.key, e.value, pack(slot, counterOf(e.dot))});
        } catch (...) {
          replicas_.release(slot);
          throw;
        }
      }
    } catch (...) {
      for (; entries_.size() > before; entries_.pop_back()) {
        replicas_.release(slotOf(entries_.back().dot));
      }
      throw;
    }
    keyCount_ = rebuildIndexes(std::move(keySlots), std::move(dotSlots),
                               [&](uint32_t p, uint32_t q) {
                                 return KS::view(entries_[p].key) == KS::view(entries_[q].key);
                               });
  }

  // Bulk construction, for decoders: entries are appended unindexed, then finish() builds both
  // indexes once over all of them (as joinFrom's bulk path does), checks that no dot repeats and
  // that no key has more than a given number of entries. One probe per entry into a growing
  // table cost several times more (random misses and rehashes). Until finish() the store is not
  // observable, so its invariants are not needed.
  //
  //   Loader l(expected);  uint32_t w = l.writer(r);  l.add(w, counter, key, value); ...
  //   auto s = std::move(l).finish(maxPerKey);  // a DotStore, or the Fault found
  //
  // finish() costs O(n + r log r) expected for n entries of which r share their key with an
  // earlier one, whatever the input (decoders feed it hostile input; the expectation is over the
  // secret hash seed, so distinct keys or dots collide only by chance, see _::hashSeed):
  //   - every entry of one key hashes alike, so a key's entries form one probe cluster, and
  //     inserting them one by one walks that cluster once per entry: quadratic (40k entries
  //     under one key took ~0.9 s to decode). finish() leaves a key's later entries out of the
  //     first pass (FlatIndex::Defer) and inserts each key's group with one walk (insertRun);
  //   - a repeated dot is left out the same way, so repeats cannot build a cluster either.
  // The entries per key, and the sum over keys of m(m-1)/2 for m entries (what inserting them one
  // by one costs beyond one step each), are bounded by the caller (gossip: Limits::
  // maxEntriesPerKey, maxSameKeyPairs) because after decoding, local operations on the store
  // (joins, strip, writes, index rebuilds) still walk a key's cluster per entry they insert.
  // Several entries of one key from one writer are accepted: received states can hold them (a
  // re-add that overtakes its remove; tests/crdt/or-set-test.c++), so they are no sign of a
  // hostile peer, and rejecting them would reject honest states.
  class Loader {
   public:
    using Stored = typename KS::Stored;
    // Why finish() returned no store.
    enum class Fault {
      kRepeatedDot,     // some dot was added twice
      kKeyOverLimit,    // some key has more than maxPerKey entries
      kPairsOverLimit,  // the keys' m(m-1)/2 for m entries sum to more than maxPairs
    };

    // Makes room for `expected` entries (more still fit: storage grows as for any append). Callers
    // decoding untrusted input should bound it by what the input can actually hold.
    explicit Loader(size_t expected) { s_.entries_.reserve(expected); }

    // The handle of replica r's slot, for add(). Throws LimitError beyond 65535 replicas.
    uint32_t writer(ReplicaId r) {
      uint32_t slot = s_.replicas_.acquire(r);  // held until finish(): a writer with no entry
      held_.push_back(slot);                    // leaves a free slot, as an erase would
      return slot;
    }

    // Appends (k, (writer's replica, counter), v). Throws std::invalid_argument for a counter
    // outside 1..kMaxDotCounter; a repeated dot is found by finish().
    [[gnu::always_inline]] void add(uint32_t writer, uint64_t counter, KeyView k, V v) {
      // The key is made in place: a temporary moved in would be reloaded right after its bytes
      // were stored piecewise, and that store-forwarding stall cost ~10% of a decode.
      addWith(writer, counter, [&](Stored& key) {
        key.~Stored();
        try {
          new (&key) Stored(KS::make(k));
        } catch (...) {  // (a key too long, or no memory for a heap key)
          new (&key) Stored();
          throw;
        }
      }, std::move(v));
    }

    // add() whose key is written by makeKey(Stored& key) into the entry's (empty) key: a decoder
    // that builds keys in registers stores them straight into the entry (gossip/codec.h).
    // (Always inlined: the decode loop calls it once per entry, and out of line it cost ~10%.)
    template <typename MakeKey>
    [[gnu::always_inline]] void addWith(uint32_t writer, uint64_t counter, const MakeKey& makeKey, V v) {
      if (counter == 0 || counter > kMaxDotCounter || s_.entries_.size() >= UINT32_MAX - 1) {
        badAdd(counter);
      }
      Entry& e = s_.entries_.emplace_back();
      try {
        makeKey(e.key);
      } catch (...) {
        s_.entries_.pop_back();
        throw;
      }
      e.value = std::move(v);
      e.dot = pack(writer, counter);
      s_.replicas_.addRef(writer);
    }

    // The store, indexed (when larger than kSmall) with its distinct keys counted, or the first
    // fault found.
    std::variant<DotStore, Fault> finish(size_t maxPerKey = SIZE_MAX,
                                         uint64_t maxPairs = UINT64_MAX) && {
      for (uint32_t slot : held_) s_.replicas_.release(slot);
      const auto n = static_cast<uint32_t>(s_.entries_.size());
      const auto& e = s_.entries_;
      auto sameKey = [&](uint32_t p, uint32_t q) { return KS::view(e[p].key) == KS::view(e[q].key); };
      auto sameDot = [&](uint32_t p, uint32_t q) { return e[p].dot == e[q].dot; };
      uint64_t pairs = 0;  // entries p, q < p of one key
      if (n <= kSmall) {
        s_.keyCount_ = 0;
        for (uint32_t p = 0; p < n; ++p) {
          size_t ofKey = 1;
          for (uint32_t q = 0; q < p; ++q) {
            ofKey += sameKey(p, q);
            if (sameDot(p, q)) return Fault::kRepeatedDot;
          }
          if (ofKey > maxPerKey) return Fault::kKeyOverLimit;
          pairs += ofKey - 1;
          s_.keyCount_ += ofKey == 1;
        }
        if (pairs > maxPairs) return Fault::kPairsOverLimit;
        return std::move(s_);
      }
      std::vector<std::pair<uint32_t, uint32_t>> later;  // (first entry of a key, later entry)
      const size_t capacity = _::FlatIndex::capacityFor(n);
      auto [keys, dots] = s_.rebuildIndexes(
          _::FlatIndex::emptySlots(capacity), _::FlatIndex::emptySlots(capacity),
          _::FlatIndex::defer(sameKey, [&](uint32_t p, uint32_t q) { noteLater(later, q, p); }),
          _::FlatIndex::defer(sameDot, [](uint32_t, uint32_t) {}));
      if (dots != n) return Fault::kRepeatedDot;
      s_.keyCount_ = keys;
      // Each key's later entries, in position order (as inserting them one by one would place
      // them), after its first.
      std::sort(later.begin(), later.end());
      for (size_t g = 0, end; g < later.size(); g = end) {
        for (end = g + 1; end < later.size() && later[end].first == later[g].first;) ++end;
        const uint64_t m = end - g + 1;
        if (m > maxPerKey) return Fault::kKeyOverLimit;
        pairs += m * (m - 1) / 2;
        if (pairs > maxPairs) return Fault::kPairsOverLimit;
        s_.byKey_.insertRun(s_.keyHashAt(later[g].first), end - g,
                            [&](size_t k) { return later[g + k].second; });
      }
      return std::move(s_);
    }

   private:
    // Out of line and cold: inlined into the index rebuild's probe loop, the vector's growth
    // code cost ~4 instructions per entry of a decode that never calls it (callgrind).
    [[gnu::cold, gnu::noinline]] static void noteLater(std::vector<std::pair<uint32_t, uint32_t>>& later,
                                                        uint32_t first, uint32_t p) {
      later.emplace_back(first, p);
    }

    [[noreturn, gnu::cold]] void badAdd(uint64_t counter) const {
      if (counter == 0 || counter > kMaxDotCounter) {
        throw std::invalid_argument("dot counter out of range: " + std::to_string(counter));
      }
      throw LimitError("dot store holds 2^32 - 2 entries");
    }

    DotStore s_;
    InlineVector<uint32_t> held_;
  };

  // Whether the context whose intervals per slot of b are `seen` (as in joinFrom) lacks b's
  // packed dot.
  static bool unseen(const InlineVector<const Intervals*>& seen, uint64_t dot) {
    const Intervals* iv = seen[slotOf(dot)];
    return iv == nullptr || !CausalContext::containsCounter(*iv, counterOf(dot));
  }

  // For b's packed dot: kNone if `seen` contains it, else our slot for its replica with one
  // more reference taken. `mine` maps b's slots to ours, filled on first use
  // (checkJoinLimits made acquiring safe).
  uint32_t refIfUnseen(const DotStore& b, uint64_t dot, const InlineVector<const Intervals*>& seen,
                       InlineVector<uint32_t>& mine) {
    if (!unseen(seen, dot)) return _::ReplicaTable::kNone;
    uint32_t& m = mine[slotOf(dot)];
    if (m == _::ReplicaTable::kNone) {
      m = replicas_.acquire(b.replicas_.id(slotOf(dot)));
    } else {
      replicas_.addRef(m);
    }
    return m;
  }

  // Throws LimitError if inserting b's unseen entries could exceed the entry or replica limits.
  // Exact only when it matters: the common case is decided from the sizes alone.
  void checkJoinLimits(const DotStore& b,
                       const InlineVector<const Intervals*>& seen) const {
    if (entries_.size() + b.entries_.size() >= UINT32_MAX - 1) {
      throw LimitError("joined dot store would hold 2^32 - 2 entries");
    }
    if (replicas_.usedCount() + b.replicas_.usedCount() <= _::ReplicaTable::kMaxSlots) return;
    std::vector<bool> adds(b.replicas_.slotCount(), false);
    for (const Entry& e : b.entries_) {
      if (unseen(seen, e.dot)) adds[slotOf(e.dot)] = true;
    }
    size_t fresh = 0;
    b.replicas_.forEach([&](ReplicaId r, uint32_t s) {
      if (adds[s] && replicas_.find(r) == _::ReplicaTable::kNone) ++fresh;
    });
    if (replicas_.usedCount() + fresh > _::ReplicaTable::kMaxSlots) {
      throw LimitError("join would give one dot store live dots of more than 65535 replicas");
    }
  }

  // Removes the entries whose dots cb covers and b lacks (b's context says they were removed).
  void removeCoveredBy(const CausalContext& cb, const DotStore& b) {
    std::vector<uint32_t> doomed;
    forEachDotCoveredBy(cb, [&](uint32_t p, Dot d) {
      if (!b.containsDot(d)) doomed.push_back(p);
    });
    std::sort(doomed.begin(), doomed.end(), std::greater<uint32_t>());
    for (uint32_t p : doomed) erasePosition(p);
  }

  // The entries whose dots cx has not seen (the store part of strip, see Causal).
  DotStore unseenBy(const CausalContext& cx) const {
    DotStore out;
    for (uint32_t p = 0; p < entries_.size(); ++p) {
      Dot dot = dotAt(p);
      if (!cx.contains(dot)) out.insertNew(KS::view(entries_[p].key), dot, entries_[p].value);
    }
    return out;
  }

  // Calls f(Dot) for every entry.
  template <typename F>
  void forEachDot(F&& f) const {
    for (uint32_t p = 0; p < entries_.size(); ++p) f(dotAt(p));
  }

  // The canonical order of the entries, (writer, counter) as Dot orders: the positions in that
  // order, or an empty vector when the storage order is that order already (a store built by
  // appends usually is; erases swap-remove and arrivals interleave writers). The encodings
  // (gossip/codec.h) and catch-up chunking (gossip/split.h) emit entries in this order, so that
  // bytes do not depend on the history of deletes.
  std::vector<uint32_t> dotOrder() const {
    const auto n = static_cast<uint32_t>(entries_.size());
    if (n < 2) return {};
    // rank[slot]: the slot's replica's place among the live replicas by id.
    std::vector<uint64_t> rank(replicas_.slotCount(), 0);
    {
      std::vector<std::pair<ReplicaId, uint32_t>> bySlot;
      replicas_.forEach([&](ReplicaId r, uint32_t s) { bySlot.emplace_back(r, s); });
      std::sort(bySlot.begin(), bySlot.end());
      for (uint32_t i = 0; i < bySlot.size(); ++i) rank[bySlot[i].second] = i;
    }
    auto key = [&](uint32_t p) { return rank[slotOf(entries_[p].dot)] << 48 | counterOf(entries_[p].dot); };
    uint32_t p = 1;
    while (p < n && key(p - 1) < key(p)) ++p;
    if (p >= n) return {};
    std::vector<std::pair<uint64_t, uint32_t>> byKey;  // (rank << 48 | counter, position)
    byKey.reserve(n);
    for (uint32_t q = 0; q < n; ++q) byKey.emplace_back(key(q), q);
    std::sort(byKey.begin(), byKey.end());
    std::vector<uint32_t> order;
    order.reserve(n);
    for (const auto& e : byKey) order.push_back(e.second);
    return order;
  }

  // Calls f(Dot) for every entry whose dot cd contains.
  template <typename F>
  void forEachCoveredDot(const CausalContext& cd, F&& f) const {
    forEachDotCoveredBy(cd, [&](uint32_t, Dot d) { f(d); });
  }

  // Semantic equality: the same set of (key, dot, value) entries.
  bool operator==(const DotStore& o) const {
    if (entries_.size() != o.entries_.size() || keyCount_ != o.keyCount_) return false;
    for (uint32_t p = 0; p < entries_.size(); ++p) {
      uint32_t q = o.findDot(dotAt(p));
      if (q == kNone) return false;
      if (!(KS::view(o.entries_[q].key) == KS::view(entries_[p].key))) return false;
      if (!(o.entries_[q].value == entries_[p].value)) return false;
    }
    return true;
  }

  size_t memoryBytes() const {
    size_t n = sizeof(*this) + entries_.heapBytes() + byKey_.memoryBytes() +
               byDot_.memoryBytes() + replicas_.memoryBytes();
    for (const Entry& e : entries_) n += KS::heapBytes(e.key);
    return n;
  }

  // Calls f(position, Dot) for each entry whose dot cd contains; see joinFrom for the strategy.
  // f must not modify the store.
  template <typename F>
  void forEachDotCoveredBy(const CausalContext& cd, F&& f) const {
    if (entries_.empty() || cd.empty()) return;
    // Dots of cd from replicas this store has live dots of, counted up to our size.
    uint64_t budget = entries_.size();
    uint64_t walk = 0;
    bool walkContext = true;
    for (const auto& o : cd.origins()) {
      if (replicas_.find(o.replica) == _::ReplicaTable::kNone) continue;
      for (const Interval& i : o.intervals) {
        walk += i.length();
        if (walk > budget) {
          walkContext = false;
          break;
        }
      }
      if (!walkContext) break;
    }
    if (walkContext) {
      for (const auto& o : cd.origins()) {
        uint32_t s = replicas_.find(o.replica);
        if (s == _::ReplicaTable::kNone) continue;
        for (const Interval& i : o.intervals) {
          for (uint64_t c = i.lo; c <= i.hi; ++c) {
            uint32_t p = findPacked(pack(s, c));
            if (p != kNone) f(p, Dot{o.replica, c});
          }
        }
      }
      return;
    }
    std::vector<const Intervals*> cover(replicas_.slotCount(), nullptr);
    replicas_.forEach([&](ReplicaId r, uint32_t s) {
      if (const auto* o = cd.find(r)) cover[s] = &o->intervals;
    });
    for (uint32_t p = 0; p < entries_.size(); ++p) {
      uint32_t s = slotOf(entries_[p].dot);
      if (cover[s] != nullptr && CausalContext::containsCounter(*cover[s], counterOf(entries_[p].dot))) {
        f(p, Dot{replicas_.id(s), counterOf(entries_[p].dot)});
      }
    }
  }

  // Direct access by position (valid until the next mutation).
  KeyView keyAt(uint32_t p) const { return KS::view(entries_[p].key); }
  const V& valueAt(uint32_t p) const { return entries_[p].value; }
  Dot dotAt(uint32_t p) const {
    return Dot{replicas_.id(slotOf(entries_[p].dot)), counterOf(entries_[p].dot)};
  }
  uint32_t findDot(Dot d) const {
    uint32_t s = replicas_.find(d.replica);
    if (s == _::ReplicaTable::kNone || d.counter > kMaxDotCounter) return kNone;
    return findPacked(pack(s, d.counter));
  }
  // Calls f(position) for each entry of key k.
  template <typename F>
  void forEachPosOfKey(KeyView k, F&& f) const {
    forEachPosOfKey(k, byKey_.active() ? KS::hash(k) : 0, f);
  }
  template <typename F>
  void forEachPosOfKey(KeyView k, uint64_t h, F&& f) const {
    if (!byKey_.active()) {
      for (uint32_t p = 0; p < entries_.size(); ++p) {
        if (KS::view(entries_[p].key) == k) f(p);
      }
      return;
    }
    byKey_.forEachInCluster(h, [&](uint32_t p) {
      if (KS::view(entries_[p].key) == k) f(p);
    });
  }

 private:
  struct Entry {
    [[no_unique_address]] typename KS::Stored key;
    [[no_unique_address]] V value;
    uint64_t dot;  // slot << 48 | counter

    Entry() = default;
    // (A constructor, not aggregate initialisation in parentheses, for emplace_back: clang 14,
    // which builds the fuzzers, does not have the latter.)
    template <typename Key, typename Val>
    Entry(Key&& k, Val&& v, uint64_t d) : key(std::forward<Key>(k)), value(std::forward<Val>(v)), dot(d) {}
  };

  _::ChunkedVector<Entry> entries_;  // a one-entry store (a typical delta) allocates nothing
  _::FlatIndex byKey_;
  _::FlatIndex byDot_;
  _::ReplicaTable replicas_;
  size_t keyCount_ = 0;

  static uint64_t pack(uint32_t slot, uint64_t counter) {
    return (uint64_t{slot} << 48) | counter;
  }
  static uint32_t slotOf(uint64_t packed) { return static_cast<uint32_t>(packed >> 48); }
  // The dot index's hash of a packed dot: seeded, since peers choose counters (see hashSeed).
  static uint64_t dotHash(uint64_t packed) { return mix64(packed ^ _::hashSeed()); }
  static uint64_t counterOf(uint64_t packed) { return packed & kMaxDotCounter; }

  // Appends an entry whose replica slot reference the caller already holds.
  template <typename U>
  void insertAtSlot(KeyView k, uint32_t slot, uint64_t counter, U&& v, bool newKey, uint64_t keyHash) {
    try {
      entries_.emplace_back(KS::make(k), std::forward<U>(v), pack(slot, counter));
    } catch (...) {
      replicas_.release(slot);
      throw;
    }
    if (newKey) ++keyCount_;
    indexNewLast(keyHash);
  }

  uint64_t keyHashAt(uint32_t p) const { return KS::hashStored(entries_[p].key); }
  uint64_t dotHashAt(uint32_t p) const { return dotHash(entries_[p].dot); }

  uint32_t findPacked(uint64_t packed) const {
    if (!byDot_.active()) {
      for (uint32_t p = 0; p < entries_.size(); ++p) {
        if (entries_[p].dot == packed) return p;
      }
      return kNone;
    }
    return byDot_.find(dotHash(packed), [&](uint32_t p) { return entries_[p].dot == packed; });
  }

  uint32_t firstOfKey(KeyView k) const {
    return byKey_.active() ? firstOfKey(k, KS::hash(k)) : firstOfKey(k, 0);
  }
  uint32_t firstOfKey(KeyView k, uint64_t h) const {
    if (!byKey_.active()) {
      for (uint32_t p = 0; p < entries_.size(); ++p) {
        if (KS::view(entries_[p].key) == k) return p;
      }
      return kNone;
    }
    return byKey_.find(h, [&](uint32_t p) { return KS::view(entries_[p].key) == k; });
  }

  void rebuildIndexes(size_t capacity) {
    rebuildIndexes(_::FlatIndex::emptySlots(capacity), _::FlatIndex::emptySlots(capacity),
                   _::FlatIndex::NoSame{});
  }
  // Indexes every entry afresh into the given empty slot arrays; returns the distinct keys
  // counted with sameKey (see FlatIndex::rebuildBoth). Cannot fail.
  template <typename SameKey>
  size_t rebuildIndexes(std::vector<uint32_t>&& keySlots, std::vector<uint32_t>&& dotSlots,
                        SameKey&& sameKey) {
    return rebuildIndexes(std::move(keySlots), std::move(dotSlots), sameKey, _::FlatIndex::NoSame{}).first;
  }
  // The same, also counting distinct dots with sameDot: returns {distinct keys, distinct dots}.
  template <typename SameKey, typename SameDot>
  std::pair<size_t, size_t> rebuildIndexes(std::vector<uint32_t>&& keySlots, std::vector<uint32_t>&& dotSlots,
                                           SameKey&& sameKey, SameDot&& sameDot) {
    return _::FlatIndex::rebuildBoth(
        byKey_, std::move(keySlots), sameKey, byDot_, std::move(dotSlots), sameDot,
        static_cast<uint32_t>(entries_.size()), [&](uint32_t p) {
          const Entry& e = entries_[p];
          return std::pair<uint64_t, uint64_t>{KS::hashStored(e.key), dotHash(e.dot)};
        });
  }

  // Indexes the entry just appended at the back.
  void indexNewLast(uint64_t keyHash) {
    size_t n = entries_.size();
    if (!byKey_.active()) {
      if (n > kSmall) rebuildIndexes(_::FlatIndex::capacityFor(n));
      return;
    }
    if (byKey_.needsGrow(n)) {
      rebuildIndexes(_::FlatIndex::capacityFor(n));
      return;
    }
    uint32_t p = static_cast<uint32_t>(n - 1);
    byKey_.insert(keyHash, p);
    byDot_.insert(dotHashAt(p), p);
  }

  void erasePosition(uint32_t p) {
    uint32_t last = static_cast<uint32_t>(entries_.size() - 1);
    bool indexed = byKey_.active();
    uint64_t kh = indexed ? keyHashAt(p) : 0;
    if (indexed) {
      byKey_.erase(kh, p, [&](uint32_t q) { return keyHashAt(q); });
      byDot_.erase(dotHashAt(p), p, [&](uint32_t q) { return dotHashAt(q); });
    }
    replicas_.release(slotOf(entries_[p].dot));
    KeyView k = KS::view(entries_[p].key);
    bool keyGone = true;
    if (indexed) {
      keyGone = byKey_.find(kh, [&](uint32_t q) { return KS::view(entries_[q].key) == k; }) == kNone;
    } else {
      for (uint32_t q = 0; q <= last; ++q) {
        if (q != p && KS::view(entries_[q].key) == k) {
          keyGone = false;
          break;
        }
      }
    }
    if (keyGone) --keyCount_;
    if (p != last) {
      if (indexed) {
        byKey_.relabel(keyHashAt(last), last, p);
        byDot_.relabel(dotHashAt(last), last, p);
      }
      entries_[p] = std::move(entries_[last]);
    }
    entries_.pop_back();
    size_t n = entries_.size();
    if (n <= kSmall) {
      if (indexed) {
        byKey_.reset();
        byDot_.reset();
      }
    } else if (byKey_.wantsShrink(n)) {
      rebuildIndexes(_::FlatIndex::capacityFor(n));
    }
    // entries_.pop_back() released storage with the same hysteresis (see ChunkedVector).
  }
};

}  // namespace deltasync::crdt
