// Causal<Derived, Store>: what every dot-store CRDT shares: the (store, context) pair, join,
// strip, semantic equality, and the two mutation patterns all of them are made of.
//
// Invariant (relied on by DotStore::joinFrom): every dot in store_ is contained in ctx_.
//
// Store concept (DotStore, ORMapStore): empty(), clear(), joinFrom(ca, b, cb), unseenBy(cx),
// containsDot(d), forEachDot(f), forEachCoveredDot(cd, f), collectDots(ctx), operator==,
// memoryBytes(), shrinkToFit().
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>
#include <utility>

#include "crdt/causal-context.h"
#include "crdt/dot-store.h"

namespace deltasync::crdt {

template <typename Derived, typename S>
class Causal {
 public:
  using Store = S;

  const Store& store() const { return store_; }
  const CausalContext& context() const { return ctx_; }

  // Bottom: no entries and no context (not even knowledge of removals). Use the type's size()
  // to ask whether it holds no elements.
  bool empty() const { return store_.empty() && ctx_.empty(); }

  // Throws LimitError (leaving *this unchanged) when the result would exceed a store limit.
  void join(const Derived& other) {
    store_.joinFrom(ctx_, other.store_, other.ctx_);
    ctx_.join(other.ctx_);
  }

  // The part of `delta` that would inflate `state`:
  //   store: delta's entries whose dots state's context has not seen;
  //   context: delta's dots that state has not seen, plus the dots of state's entries that
  //   delta's context covers and delta's store lacks (removals state has not applied yet).
  friend Derived strip(const Derived& delta, const Derived& state) {
    Store s = delta.store_.unseenBy(state.ctx_);
    CausalContext c = delta.ctx_.minus(state.ctx_);
    state.store_.forEachCoveredDot(delta.ctx_, [&](Dot d) {
      if (!delta.store_.containsDot(d)) c.add(d);
    });
    return Derived::fromParts(std::move(s), std::move(c));
  }

  bool operator==(const Causal& o) const { return ctx_ == o.ctx_ && store_ == o.store_; }

  size_t memoryBytes() const {
    return store_.memoryBytes() + ctx_.memoryBytes();  // each counts its own sizeof
  }

  // Releases spare capacity (see DotStore::shrinkToFit).
  void shrinkToFit() {
    store_.shrinkToFit();
    ctx_.shrinkToFit();
  }

  // Assembles a value from parts (decoders, nesting). Precondition: every dot of `store` is in
  // `ctx`; decoders must validate that before calling.
  static Derived fromParts(Store store, CausalContext ctx) {
    Derived d;
    d.store_ = std::move(store);
    d.ctx_ = std::move(ctx);
    return d;
  }
  // Moves the parts out, leaving bottom (ORMap uses this to lend its context to a nested value).
  std::pair<Store, CausalContext> intoParts() && {
    return {std::exchange(store_, Store()), std::exchange(ctx_, CausalContext())};
  }

 protected:
  Store store_;
  CausalContext ctx_;

  // Replaces every entry of key k by one new entry (k, next dot of self, v). The delta holds the
  // new entry and a context of the new dot plus the dots it supersedes. Strong exception safety:
  // everything that can throw for a reason other than memory runs before the state changes.
  template <typename St = Store>  // deferred: only dot stores have keys and values
  Derived writeKey(ReplicaId self, typename St::KeyView k, typename St::Value v) {
    Derived delta;
    writeKeyInto(delta, self, k, std::move(v));
    return delta;
  }

  // writeKey(), with its delta joined into `delta` rather than returned: `delta` may hold the
  // deltas of earlier writes of this replica to this value (a batch: gossip/store.h "Units"),
  // and ends as their join with this write's, without building and joining a one-entry delta.
  // Precondition: delta's dots all come from this value's writes (so an entry of k in it is one
  // this write supersedes).
  template <typename St = Store>
  void writeKeyInto(Derived& delta, ReplicaId self, typename St::KeyView k, typename St::Value v) {
    writeKeyIntoWith(delta, self, k, [&](const uint32_t*, size_t) { return std::move(v); });
  }

  // writeKeyInto() of the value make(const uint32_t* superseded, size_t n) returns, given the
  // store positions of the n entries the write supersedes (valid for reading during the call):
  // for a value that depends on what it replaces (AWLWWMap stamps after it) without a lookup of
  // its own. make runs before anything changes; if it throws, nothing has.
  template <typename St = Store, typename Make>
  void writeKeyIntoWith(Derived& delta, ReplicaId self, typename St::KeyView k, Make&& make) {
    Dot d = ctx_.nextDot(self);
    const uint64_t h = St::hashKey(k);  // one hash serves the probe and both inserts
    store_.prefetchWrite(h, d);         // the new dot's index slot, needed at the insert below
    // Positions of the entries this write supersedes (usually 0 or 1; more after concurrency).
    uint32_t few[Store::kSmall];
    std::vector<uint32_t> many;
    size_t n = 0;
    store_.forEachPosOfKey(k, h, [&](uint32_t p) {
      if (n < Store::kSmall) few[n] = p;
      if (n == Store::kSmall) many.assign(few, few + n);
      if (n >= Store::kSmall) many.push_back(p);
      ++n;
    });
    uint32_t* pos = n > Store::kSmall ? many.data() : few;
    typename St::Value v = make(static_cast<const uint32_t*>(pos), n);
    if (delta.ctx_.empty()) {
      delta.store_.assignOne(k, d, v);  // a fresh delta: no general insert path
    } else {
      // An earlier write of the batch to k is superseded (its dot stays in delta's context).
      // (One probe with the hash in hand, not eraseKey's and insertNew's own.)
      size_t had = 0;
      uint32_t prev = 0;
      delta.store_.forEachPosOfKey(k, h, [&](uint32_t p) {
        prev = p;
        ++had;
      });
      if (had == 1) {
        delta.store_.eraseAt(prev);
      } else if (had > 1) {  // (each write of k erases the one before, so not from a batch's writes)
        delta.store_.eraseKey(k);
      }
      delta.store_.insertNew(k, d, v, true, h);
    }
    delta.ctx_.add(d);
    store_.insertNew(k, d, std::move(v), n == 0, h);  // appended after every old position
    std::sort(pos, pos + n, std::greater<uint32_t>());  // descending: the rest stay valid
    for (size_t i = 0; i < n; ++i) {
      delta.ctx_.add(store_.dotAt(pos[i]));
      store_.eraseAt(pos[i]);
    }
    ctx_.add(d);
  }

  // removeKey(), joined into `delta` as writeKeyInto() does.
  template <typename St = Store>
  void removeKeyInto(Derived& delta, typename St::KeyView k) {
    delta.store_.eraseKey(k);
    store_.eraseKey(k, &delta.ctx_);
  }

  // Removes every entry of key k. The delta is an empty store with the removed dots as context.
  template <typename St = Store>
  Derived removeKey(typename St::KeyView k) {
    Derived delta;
    store_.eraseKey(k, &delta.ctx_);
    return delta;
  }

  // Removes every entry.
  Derived removeAll() {
    Derived delta;
    store_.collectDots(delta.ctx_);
    store_.clear();
    return delta;
  }
};

}  // namespace deltasync::crdt
