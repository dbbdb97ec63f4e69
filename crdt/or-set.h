// ORSet<E>: add-wins observed-remove set (Almeida et al. 2018, "AWSet").
//
// An element is present iff some add of it has not been observed by a remove. Each add mints a
// fresh dot and supersedes the element's dots this replica has seen; a remove deletes exactly the
// dots it has seen, so a concurrent add (an unseen dot) survives it. Removed elements leave no
// tombstone: their dots stay only in the causal context, which compacts to intervals.
//
// Cost: add/remove/contains O(1) expected (DotStore indexes); joining a delta O(|delta|).
// E needs std::hash and ==; std::string elements are stored as 16-byte CompactStrings.
#pragma once

#include <vector>

#include "crdt/causal.h"

namespace deltasync::crdt {

template <typename E>
class ORSet : public Causal<ORSet<E>, DotStore<E>> {
  using Base = Causal<ORSet<E>, DotStore<E>>;

 public:
  using Element = E;
  using View = typename Base::Store::KeyView;

  // Adds e at replica self (re-adding refreshes it: a fresh dot supersedes the observed ones).
  ORSet add(ReplicaId self, View e) { return this->writeKey(self, e, Empty{}); }
  // Removes e as observed here; a no-op delta (bottom) when e is absent.
  ORSet remove(View e) { return this->removeKey(e); }
  // add() and remove() with the delta joined into `delta` (Causal::writeKeyInto: a batch).
  void addInto(ORSet& delta, ReplicaId self, View e) { this->writeKeyInto(delta, self, e, Empty{}); }
  void removeInto(ORSet& delta, View e) { this->removeKeyInto(delta, e); }
  // Removes every element observed here.
  ORSet clear() { return this->removeAll(); }

  bool contains(View e) const { return this->store_.containsKey(e); }
  size_t size() const { return this->store_.keyCount(); }

  // Calls f(View) once per element, in no particular order.
  template <typename F>
  void forEach(F&& f) const {
    this->store_.forEachKey(f);
  }
  std::vector<E> elements() const {
    std::vector<E> out;
    out.reserve(size());
    forEach([&](View e) { out.emplace_back(e); });
    return out;
  }
};

}  // namespace deltasync::crdt
