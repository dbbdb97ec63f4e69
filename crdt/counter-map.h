// CounterMap<K>: a map from keys to counters (up and down) whose removeKey resets what it
// observed, and only that: the nested counter of a "map of counters" (issue 19).
//
// Why not an OR-map of causal counters: the textbook embedded counter (one cumulative entry per
// writer, under a fresh dot per increment) loses to a concurrent removal in the wrong way. A
// removeKey that observed writer w's entry (dot d, total t) removes d; w's concurrent increment
// writes (d', t + n), which the removal never saw, so it survives with the whole old total t, not
// just n (Baquero, Almeida and Lerche, "The problem with embedded CRDT counters and a solution",
// PaPoC 2016). Users see a deleted counter come back at its old value.
//
// State, per key: `totals`, a PNCounter (each writer's cumulative increments and decrements on
// that key, ever), and `floors`, a PNCounter (per writer, the largest totals a removeKey of the
// key observed). Both only grow; join takes the pointwise maximum of both, key by key, so it is
// a join-semilattice (the product of PN-counter lattices), and deltas are idempotent, may be
// duplicated, reordered or dropped.
//   value(k)   = sum over writers w of (p_w - floor p_w) - (n_w - floor n_w)
//   removeKey  floors := totals, for every writer: it resets exactly what it observed. An
//              increment concurrent with it raises its writer's total past the floor the
//              removal recorded, so after the join exactly the concurrent increments count
//              (observed-reset semantics, as an add-wins set gives elements).
//   increment  a writer's total grows from its own last total, which is never below any floor
//              of it (floors are observed totals): no writer ever needs to learn of a reset
//              before it counts again.
// A key is present when some writer's totals exceed its floors (increments and decrements that
// cancel still make it present, with value 0, as in a PN-counter that was used).
//
// Invariants: for every key and writer, floors <= totals in each half (a floor is an observed
// total, and a removeKey delta carries the totals it observed with the floors); no key with
// empty totals (floors then are empty too). valid() checks them for untrusted input (the wire
// codec refuses what fails it). The form is canonical and equality is structural.
//
// Not oblivious: a removed key keeps its totals and floors (per writer that ever touched it, two
// pairs of counts) so that a late copy of its old increments cannot bring them back. A map whose
// keys come and go grows with the keys it ever had (documented in the README's limits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "crdt/pn-counter.h"

namespace deltasync::crdt {

template <typename K>
class CounterMap {
 public:
  struct Slot {
    PNCounter totals;
    PNCounter floors;
    bool operator==(const Slot&) const = default;
  };
  using const_iterator = typename std::map<K, Slot>::const_iterator;

  CounterMap() = default;

  // Adds n to self's increments of key k; returns that delta ({k: totals {self: (new p, 0)}}).
  // n == 0 changes nothing and returns bottom. Throws std::overflow_error (nothing changed) when
  // self's total would pass 2^64 - 1.
  CounterMap increment(ReplicaId self, const K& k, uint64_t n = 1) { return add(self, k, n, true); }
  // Adds n to self's decrements of key k. As increment() otherwise.
  CounterMap decrement(ReplicaId self, const K& k, uint64_t n = 1) { return add(self, k, n, false); }

  // Resets key k: every writer's floors become its totals here. Returns the delta (the totals
  // and the floors it set); bottom when k is not present (nothing to reset).
  CounterMap removeKey(const K& k) {
    auto it = slots_.find(k);
    if (it == slots_.end() || !present(it->second)) return CounterMap{};
    it->second.floors = it->second.totals;
    CounterMap delta;
    delta.slots_.emplace(k, it->second);
    return delta;
  }

  // The key's value: its counts since the removals it has seen (0 when absent), clamped to the
  // int64 range as PNCounter::value() is.
  int64_t value(const K& k) const {
    auto it = slots_.find(k);
    return it == slots_.end() ? 0 : valueOf(it->second);
  }
  bool contains(const K& k) const {
    auto it = slots_.find(k);
    return it != slots_.end() && present(it->second);
  }
  // Present keys in key order with their values.
  std::vector<std::pair<K, int64_t>> entries() const {
    std::vector<std::pair<K, int64_t>> out;
    for (const auto& [k, s] : slots_) {
      if (present(s)) out.emplace_back(k, valueOf(s));
    }
    return out;
  }
  // Present keys (O(keys held, removed ones included)).
  size_t size() const {
    size_t n = 0;
    for (const auto& [k, s] : slots_) n += present(s) ? 1 : 0;
    return n;
  }

  // Bottom: no key at all (a removed key's totals and floors are not bottom).
  bool empty() const { return slots_.empty(); }

  void join(const CounterMap& other) {
    for (const auto& [k, s] : other.slots_) {
      auto [it, fresh] = slots_.try_emplace(k, s);
      if (!fresh) {
        it->second.totals.join(s.totals);
        it->second.floors.join(s.floors);
      }
    }
  }

  // Replica r's totals on key k ({r, 0, 0} when it never counted there).
  PNCounter::Entry totalsOf(const K& k, ReplicaId r) const {
    auto it = slots_.find(k);
    return it == slots_.end() ? PNCounter::Entry{r, 0, 0} : it->second.totals.get(r);
  }

  // Key k's slot, or end().
  const_iterator find(const K& k) const { return slots_.find(k); }

  // Every slot, removed keys included, in key order (for the wire codec).
  const_iterator begin() const { return slots_.begin(); }
  const_iterator end() const { return slots_.end(); }
  size_t slotCount() const { return slots_.size(); }

  // The value made of the given slots (the wire codec's input), if it keeps the invariants above:
  // floors <= totals per writer and half, no slot with empty totals.
  static bool valid(const Slot& s) {
    if (s.totals.empty()) return false;
    for (const auto& f : s.floors) {
      const auto t = s.totals.get(f.replica);
      if (f.increments > t.increments || f.decrements > t.decrements) return false;
    }
    return true;
  }
  // Adds a slot (the codec, keys in any order; a key given twice joins). Requires valid(s).
  void insertSlot(K k, Slot s) {
    auto [it, fresh] = slots_.try_emplace(std::move(k), s);
    if (!fresh) {
      it->second.totals.join(s.totals);
      it->second.floors.join(s.floors);
    }
  }

  size_t memoryBytes() const {
    size_t n = sizeof(*this);
    for (const auto& [k, s] : slots_) n += 64 + sizeof(K) + s.totals.memoryBytes() + s.floors.memoryBytes();
    return n;
  }

  bool operator==(const CounterMap& other) const { return slots_ == other.slots_; }

  // What of `delta` is not already in `state` (as PNCounter's strip, per key and half).
  friend CounterMap strip(const CounterMap& delta, const CounterMap& state) {
    CounterMap out;
    for (const auto& [k, s] : delta.slots_) {
      auto it = state.slots_.find(k);
      if (it == state.slots_.end()) {
        out.slots_.emplace(k, s);
        continue;
      }
      Slot kept{strip(s.totals, it->second.totals), strip(s.floors, it->second.floors)};
      if (kept.totals.empty() && kept.floors.empty()) continue;
      // A floor needs its totals beside it (the invariant): keep the delta's totals whole then.
      if (!kept.floors.empty()) kept.totals = s.totals;
      out.slots_.emplace(k, std::move(kept));
    }
    return out;
  }

 private:
  std::map<K, Slot> slots_;

  static bool present(const Slot& s) {
    for (const auto& t : s.totals) {
      const auto f = s.floors.get(t.replica);
      if (t.increments > f.increments || t.decrements > f.decrements) return true;
    }
    return false;
  }

  static int64_t valueOf(const Slot& s) {
    Int128 v = 0;
    for (const auto& t : s.totals) {
      const auto f = s.floors.get(t.replica);
      v += static_cast<Int128>(t.increments - f.increments) - static_cast<Int128>(t.decrements - f.decrements);
    }
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    return v < kMin ? kMin : v > kMax ? kMax : static_cast<int64_t>(v);
  }

  CounterMap add(ReplicaId self, const K& k, uint64_t n, bool up) {
    if (n == 0) return CounterMap{};
    auto [it, fresh] = slots_.try_emplace(k);
    PNCounter counted;
    try {
      counted = up ? it->second.totals.increment(self, n) : it->second.totals.decrement(self, n);
    } catch (...) {
      if (fresh) slots_.erase(it);  // (a fresh slot cannot overflow; kept exception-safe anyway)
      throw;
    }
    CounterMap delta;
    delta.slots_.emplace(k, Slot{std::move(counted), PNCounter{}});
    return delta;
  }
};

}  // namespace deltasync::crdt
