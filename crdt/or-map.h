// ORMap<K, T>: an observed-remove map whose values are causal CRDTs (ORSet, AWLWWMap,
// MVRegister, EWFlag, or ORMap itself), all sharing the map's one causal context.
//
// Nesting without aliasing: the reference implementation gives each nested value a reference to
// the map's context, which dangles or aliases when the map is copied. Here nested values are kept
// as bare stores (T::Store) and the context exists once, in the map. update() lends the context to
// a temporary T by moving it in and back out, so no reference to it ever outlives the call and
// copying a map copies everything.
//
// A key is present while its nested store has entries: removing a key removes the dots it has
// observed, so a concurrent update of the nested value (an unseen dot) keeps the key (add-wins).
//
// Cost: a per-map index dot -> key finds the keys a removal touches, so joining a delta costs
// O(keys and dots in the delta + size of the nested values it touches), never a scan of the map.
//
// Invariants: no key maps to an empty store; byDot_ maps exactly the dots of all nested stores
// to their keys.
#pragma once

#include <algorithm>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "crdt/causal.h"

namespace deltasync::crdt {

template <typename K, typename T>
class ORMapStore {
 public:
  using Inner = typename T::Store;

  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  void clear() { *this = ORMapStore(); }

  const Inner* find(const K& k) const {
    auto it = map_.find(k);
    return it == map_.end() ? nullptr : &it->second;
  }
  template <typename F>
  void forEach(F&& f) const {  // f(const K&, const Inner&)
    for (const auto& [k, s] : map_) f(k, s);
  }

  bool containsDot(Dot d) const { return byDot_.count(d) != 0; }
  template <typename F>
  void forEachDot(F&& f) const {
    for (const auto& [d, k] : byDot_) f(d);
  }
  void collectDots(CausalContext& ctx) const {
    forEachDot([&](Dot d) { ctx.add(d); });
  }

  // Calls f(Dot) for each dot of the map that cd contains: walks cd when it has fewer dots than
  // the map, else scans the map's dots.
  template <typename F>
  void forEachCoveredDot(const CausalContext& cd, F&& f) const {
    if (byDot_.empty() || cd.empty()) return;
    if (cd.dotCount() <= byDot_.size()) {
      cd.forEachInterval([&](ReplicaId r, Interval i) {
        for (uint64_t c = i.lo; c <= i.hi; ++c) {
          if (byDot_.count(Dot{r, c})) f(Dot{r, c});
        }
      });
      return;
    }
    for (const auto& [d, k] : byDot_) {
      if (cd.contains(d)) f(d);
    }
  }

  // Joins (b, cb) into (*this, ca), key by key, for the keys b holds and the keys owning dots
  // that cb covers (removals). The caller joins the contexts afterwards.
  void joinFrom(const CausalContext& ca, const ORMapStore& b, const CausalContext& cb) {
    std::vector<K> touched;
    std::unordered_set<K> seen;
    forEachCoveredDot(cb, [&](Dot d) {
      const K& k = byDot_.at(d);
      if (seen.insert(k).second) touched.push_back(k);
    });
    for (const auto& [k, s] : b.map_) {
      if (seen.insert(k).second) touched.push_back(k);
    }
    static const Inner kBottom{};
    for (const K& k : touched) {
      const Inner* theirs = b.find(k);
      modify(k, [&](Inner& mine) { mine.joinFrom(ca, theirs ? *theirs : kBottom, cb); });
    }
  }

  ORMapStore unseenBy(const CausalContext& cx) const {
    ORMapStore out;
    for (const auto& [k, s] : map_) {
      Inner part = s.unseenBy(cx);
      if (!part.empty()) out.put(k, std::move(part));
    }
    return out;
  }

  bool operator==(const ORMapStore& o) const {
    if (map_.size() != o.map_.size()) return false;
    for (const auto& [k, s] : map_) {
      const Inner* t = o.find(k);
      if (t == nullptr || !(*t == s)) return false;
    }
    return true;
  }

  size_t memoryBytes() const {
    // Node-based containers: count nodes and buckets (libstdc++ layout, approximately).
    size_t n = sizeof(*this) + map_.bucket_count() * sizeof(void*) +
               byDot_.bucket_count() * sizeof(void*) +
               byDot_.size() * (sizeof(std::pair<const Dot, K>) + 2 * sizeof(void*));
    for (const auto& [k, s] : map_) {
      n += sizeof(std::pair<const K, Inner>) + 2 * sizeof(void*) + s.memoryBytes() - sizeof(Inner);
    }
    return n;
  }
  void shrinkToFit() {
    for (auto& [k, s] : map_) s.shrinkToFit();
  }

  // Replaces key k's store wholesale (used by update/remove and decoders). An empty store
  // removes the key.
  void put(const K& k, Inner s) {
    modify(k, [&](Inner& mine) { mine = std::move(s); });
  }

  // Runs fn on k's store (created empty if absent) and then re-indexes its dots; drops the key
  // if the store ends up empty. Costs O(size of k's store).
  template <typename F>
  void modify(const K& k, F&& fn) {
    auto it = map_.find(k);
    bool existed = it != map_.end();
    if (!existed) it = map_.emplace(k, Inner{}).first;
    std::vector<Dot> before;
    it->second.forEachDot([&](Dot d) { before.push_back(d); });
    // Re-index on every exit: a throwing fn may still have changed the store.
    auto reindex = [&] {
      std::vector<Dot> after;
      it->second.forEachDot([&](Dot d) { after.push_back(d); });
      std::sort(before.begin(), before.end());
      std::sort(after.begin(), after.end());
      std::vector<Dot> gone, added;
      std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                          std::back_inserter(gone));
      std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                          std::back_inserter(added));
      for (Dot d : gone) byDot_.erase(d);
      for (Dot d : added) byDot_.emplace(d, k);
    };
    try {
      fn(it->second);
    } catch (...) {
      reindex();
      if (it->second.empty()) map_.erase(it);
      throw;
    }
    reindex();
    if (it->second.empty()) map_.erase(it);
  }

  // Takes k's store out (the key disappears from the map and the index).
  Inner take(const K& k) {
    auto it = map_.find(k);
    if (it == map_.end()) return Inner{};
    Inner s = std::move(it->second);
    map_.erase(it);
    s.forEachDot([&](Dot d) { byDot_.erase(d); });
    return s;
  }

 private:
  std::unordered_map<K, Inner> map_;
  std::unordered_map<Dot, K> byDot_;
};

template <typename K, typename T>
class ORMap : public Causal<ORMap<K, T>, ORMapStore<K, T>> {
  using Base = Causal<ORMap<K, T>, ORMapStore<K, T>>;

 public:
  using Key = K;
  using Value = T;

  // Applies a mutation to the value at k: fn(T& value) runs one of T's mutators and returns its
  // delta, e.g. m.update(k, [&](auto& set) { return set.add(self, e); }). The value passed in
  // owns the map's context for the duration of the call (moved in and back out; if fn throws, the
  // map is restored). Returns the map's delta.
  template <typename F>
  ORMap update(const K& k, F&& fn) {
    ORMap delta;
    this->store_.modify(k, [&](typename T::Store& inner) {
      T value = T::fromParts(std::move(inner), std::move(this->ctx_));
      auto giveBack = [&] {
        auto [s, c] = std::move(value).intoParts();
        inner = std::move(s);
        this->ctx_ = std::move(c);
      };
      T d;
      try {
        d = fn(value);
      } catch (...) {
        giveBack();
        throw;
      }
      giveBack();
      auto [ds, dc] = std::move(d).intoParts();
      delta.store_.put(k, std::move(ds));
      delta.ctx_ = std::move(dc);
    });
    return delta;
  }

  // Removes k as observed here; concurrent updates of k survive.
  ORMap remove(const K& k) {
    ORMap delta;
    this->store_.take(k).collectDots(delta.ctx_);
    return delta;
  }
  ORMap clear() {
    ORMap delta;
    this->store_.collectDots(delta.ctx_);
    this->store_.clear();
    return delta;
  }

  bool contains(const K& k) const { return this->store_.find(k) != nullptr; }
  size_t size() const { return this->store_.size(); }

  // A read-only snapshot of k's value (bottom if absent): its store, with a context of exactly
  // that store's dots. Read from it; to change the map use update(), never mutate the snapshot
  // and join it back (its context does not know the map's other dots).
  T get(const K& k) const {
    const auto* s = this->store_.find(k);
    if (s == nullptr) return T{};
    CausalContext c;
    s->collectDots(c);
    return T::fromParts(*s, std::move(c));
  }

  template <typename F>
  void forEachKey(F&& f) const {
    this->store_.forEach([&](const K& k, const auto&) { f(k); });
  }
};

}  // namespace deltasync::crdt
