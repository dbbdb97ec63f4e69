// AWLWWMap<K, V>: a map with add-wins keys and last-writer-wins values.
//
// Keys behave as in ORSet: a key is present iff some write of it has not been observed by a
// remove. A write supersedes every entry of its key that this replica has seen; concurrent writes
// from different replicas all survive in the store (so a later remove that saw only one of them
// cannot lose the other: add-wins), and readers see the winner: the greatest
// (timestamp, writer ReplicaId). That order is total, so every replica picks the same winner.
// Timestamps come from the caller's HybridLogicalClock. Should a clock misbehave and one replica
// leave two concurrent-looking writes with equal timestamps (possible when an old write reaches a
// replica that missed its removal), the dot counter breaks the tie: the replica's later write
// wins. So the full order is (timestamp, writer, counter), total in every case.
//
// Cost: set/remove/get O(1) expected; joining a delta O(|delta|). std::string keys are stored as
// 16-byte CompactStrings (no heap for keys up to 15 bytes).
#pragma once

#include <algorithm>
#include <tuple>

#include "crdt/causal.h"
#include "crdt/hlc.h"

namespace deltasync::crdt {

template <typename V>
struct Stamped {
  Timestamp ts;
  V value;

  bool operator==(const Stamped&) const = default;
};

// The greatest timestamp in a store of stamped values (an AW-LWW map's, or one nested in an
// OR-map); Timestamp{} when empty.
template <typename K, typename V>
Timestamp latestStamp(const DotStore<K, Stamped<V>>& store) {
  Timestamp t{};
  for (uint32_t p = 0; p < store.size(); ++p) t = std::max(t, store.valueAt(p).ts);
  return t;
}

template <typename K, typename V>
class AWLWWMap : public Causal<AWLWWMap<K, V>, DotStore<K, Stamped<V>>> {
  using Base = Causal<AWLWWMap<K, V>, DotStore<K, Stamped<V>>>;

 public:
  using Key = K;
  using Value = V;
  using View = typename Base::Store::KeyView;

  AWLWWMap set(ReplicaId self, View k, V v, Timestamp ts) {
    return this->writeKey(self, k, Stamped<V>{ts, std::move(v)});
  }
  AWLWWMap remove(View k) { return this->removeKey(k); }
  // set() and remove() with the delta joined into `delta` (Causal::writeKeyInto: a batch).
  void setInto(AWLWWMap& delta, ReplicaId self, View k, V v, Timestamp ts) {
    this->writeKeyInto(delta, self, k, Stamped<V>{ts, std::move(v)});
  }
  // setInto() stamped stamp(replaced): replaced is the timestamp of k's winning write here
  // (Timestamp{} when absent), found by the write's own lookup (a write stamps after what it
  // replaces: lib/objects.h, Clock).
  template <typename Stamp>
  void setIntoAfter(AWLWWMap& delta, ReplicaId self, View k, V v, Stamp&& stamp) {
    this->writeKeyIntoWith(delta, self, k, [&](const uint32_t* superseded, size_t n) {
      Timestamp replaced{};  // the winner's: the greatest timestamp among k's entries
      for (size_t i = 0; i < n; ++i) replaced = std::max(replaced, this->store_.valueAt(superseded[i]).ts);
      return Stamped<V>{stamp(replaced), std::move(v)};
    });
  }
  void removeInto(AWLWWMap& delta, View k) { this->removeKeyInto(delta, k); }
  AWLWWMap clear() { return this->removeAll(); }

  bool contains(View k) const { return this->store_.containsKey(k); }
  size_t size() const { return this->store_.keyCount(); }

  // The winning value of k, or nullptr. Valid until the next mutation.
  const V* get(View k) const {
    uint32_t best = winner(k);
    return best == DotStore<K, Stamped<V>>::kNone ? nullptr : &this->store_.valueAt(best).value;
  }
  // The greatest timestamp of any entry, winning or not (Timestamp{} when empty): what a receiver
  // holds against its clock's forward-skew bound before joining a delta.
  Timestamp latest() const { return latestStamp(this->store_); }
  // The winning write's timestamp, Timestamp{} when k is absent (one lookup: a write of k stamps
  // after it).
  Timestamp stampOrZero(View k) const {
    uint32_t best = winner(k);
    return best == DotStore<K, Stamped<V>>::kNone ? Timestamp{} : this->store_.valueAt(best).ts;
  }
  // The winning write's timestamp and writer, for k present.
  std::pair<Timestamp, ReplicaId> stampOf(View k) const {
    uint32_t best = winner(k);
    if (best == DotStore<K, Stamped<V>>::kNone) throw std::out_of_range("AWLWWMap::stampOf: no such key");
    return {this->store_.valueAt(best).ts, this->store_.dotAt(best).replica};
  }

  // Calls f(View key, const V& winner) once per key, in no particular order.
  template <typename F>
  void forEach(F&& f) const {
    this->store_.forEachKey([&](View k) { f(k, this->store_.valueAt(winner(k)).value); });
  }

 private:
  uint32_t winner(View k) const {
    uint32_t best = DotStore<K, Stamped<V>>::kNone;
    Timestamp bt{};
    Dot bd{};
    this->store_.forEachPosOfKey(k, [&](uint32_t p) {
      Timestamp t = this->store_.valueAt(p).ts;
      Dot d = this->store_.dotAt(p);
      if (best == DotStore<K, Stamped<V>>::kNone ||
          std::tie(bt, bd.replica, bd.counter) < std::tie(t, d.replica, d.counter)) {
        best = p;
        bt = t;
        bd = d;
      }
    });
    return best;
  }
};

}  // namespace deltasync::crdt
