// The object store: a node's replicated state, one lattice name -> (kind, CRDT), and the one
// place every change to it goes through.
//
// Pure: no I/O, no threads, no clock. Owned by the replica core (gossip/replica.h); read by lib/
// (handles, ctl, metrics) under lib's state lock, never through the engine.
//
// Change hook: every change is reported to the listeners, in registration order, from inside
// the call that made it, after the object holds it:
//   Change{name, delta, origin}  origin 0: made on this node (update(), applyLocal());
//                                otherwise the peer the delta came from (joinRemote()).
//   `delta` is exactly what inflated the object (for remote deltas: the part the state lacked,
//   after strip: RR), so a listener that joins every reported delta into a copy of the initial
//   state rebuilds the store. `received` is the delta as it arrived (== delta for local ones).
// The engine logs every change it hears (gossip/engine.h); lib/ turns them into subscription
// notifications; durable storage (lib/storage.h) persists them. A listener must not call back into the
// store's mutators.
//
// Units: the changes of one call (a local update, a received message) form a unit, and so do
// the local changes between beginUnit() and endUnit() (a batch of writes, lib/node.c++). After
// the last change of a unit that reported any, the unit listeners are called: the engine keeps
// a unit's log entries together (a push is never cut inside one), so peers join it whole. Within
// an explicit unit the changes are not reported as they are made: each object's deltas are
// joined and reported at endUnit(), one change per object in name order (one delta per object,
// one log entry, one stored change). Readers under lib's state lock never see a unit half made:
// a unit is made under the unique lock.
//
// restore() puts state in place at start (durable storage) and reports nothing: restored
// state is not news to anyone, and peers that lack it catch up by digest.
//
// Invariants: an object's kind never changes (KindMismatch, nothing applied) except to the
// tombstone (erase(), or one received), which is final: local writes to it throw ObjectDeleted
// and received deltas of it are redundant (gossip/object.h); no object is
// bottom after a local update that created it and changed nothing; joinRemote() checks every
// object of a message before it applies any (all or nothing for kind, forgery and addCheck()
// errors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gossip/messages.h"
#include "gossip/object.h"

namespace deltasync::gossip {

struct Change {
  const std::string& name;
  const Value& delta;     // what inflated the object
  const Value& received;  // as it arrived (== delta for local changes)
  ReplicaId origin;       // 0: local; else the peer it came from
  bool local() const { return origin.value == 0; }
};

struct JoinStats {
  uint64_t joined = 0;     // objects whose delta inflated the state
  uint64_t redundant = 0;  // objects whose delta the state already held (RR)
  uint64_t refuted = 0;    // objects whose delta claimed our dots beyond ours (object.h, refute)
};

class ObjectStore {
 public:
  using Listener = std::function<void(const Change&)>;

  explicit ObjectStore(ReplicaId self) : self_(self) {}
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  ReplicaId self() const { return self_; }

  // Runs mutator(T& state) -> T delta on object `name` (created as bottom of kind T if absent)
  // and reports the delta. Throws KindMismatch if the object exists with another kind, and
  // ObjectDeleted if it was deleted (nothing changes), and whatever the mutator throws (the mutators of crdt/ leave state unchanged).
  // An object the call created stays only if the mutator changed something: a no-op (say,
  // removing an absent element) or a throwing mutator leaves no bottom object behind.
  template <typename T, typename F>
  T update(const std::string& name, F&& mutator) {
    bool existed = true;
    Value& v = objectOfKind(name, Value(std::in_place_type<T>).index(), &existed);
    T delta;
    try {
      delta = mutator(std::get<T>(v));
    } catch (...) {
      if (!existed) objects_.erase(name);
      throw;
    }
    if (!delta.empty()) {
      reportLocal(name, Value(delta));
    } else if (!existed && isBottom(v)) {
      objects_.erase(name);
    }
    return delta;
  }

  // As update(), for a mutator that joins its delta into the one it is given:
  // mutator(T& state, T& delta) (the crdt kinds' ...Into writes). Outside a unit `delta` is fresh
  // and reported when not bottom; inside one it is the unit's pending delta of the object, so a
  // batch builds one delta per object without joining a delta per write.
  template <typename T, typename F>
  void updateInto(const std::string& name, F&& mutator) {
    bool existed = true;
    Value& v = objectOfKind(name, Value(std::in_place_type<T>).index(), &existed);
    T fresh;
    auto pending = pending_.end();
    if (inUnit_) pending = pendingOf(name, [] { return Value(std::in_place_type<T>); });
    T& delta = pending != pending_.end() ? std::get<T>(pending->second) : fresh;
    const bool had = !delta.empty();
    try {
      mutator(std::get<T>(v), delta);
    } catch (...) {
      if (!existed) objects_.erase(name);
      if (pending != pending_.end() && !had) erasePending(pending);
      throw;
    }
    if (pending == pending_.end() && !fresh.empty()) {
      reportLocal(name, Value(std::move(fresh)));
    } else if (pending != pending_.end() && !had && delta.empty()) {
      erasePending(pending);
    }
    if (!existed && isBottom(v)) objects_.erase(name);
  }

  // Joins a delta made on this node's behalf elsewhere (batched by lib/) and reports it. Same
  // errors as update().
  void applyLocal(const std::string& name, const Value& delta);

  // Deletes object `name` for good (gossip/object.h, Tombstone): whatever it held, of any kind,
  // or nothing (the name is retired all the same). Reported as a change whose delta is the
  // tombstone, unless it was deleted already.
  void erase(const std::string& name) {
    if (const Value* v = find(name); v != nullptr && isTombstone(*v)) return;
    applyLocal(name, Tombstone{});
  }

  // Joins the objects of a message from peer `from`: first checks every one (its kind matches
  // ours; no replica's dots claimed far beyond what we know: claimTooFar; a write under our id
  // that we lack, claimsUnminted, only where it can be refuted) and throws ProtocolError before
  // anything is applied; then strips, joins and reports each. A delta that claims our dots is
  // joined, and its refutation applied as our write after the message (gossip/object.h,
  // "Refutation"). Objects deleted here are skipped: nothing joins into a tombstone.
  JoinStats joinRemote(ReplicaId from, const std::vector<NamedValue>& objects);
  // joinRemote()'s checks alone (ProtocolError), for a message whose objects are held back before
  // they are joined (gossip/engine.h, "Batch atomicity"): it is refused when it arrives.
  void check(const std::vector<NamedValue>& objects) const;

  // Start-up only: sets an object's state without reporting it.
  void restore(const std::string& name, Value state);

  // Listeners for the life of the store (the replica core and lib/ register theirs at start).
  void listen(Listener listener) { listeners_.push_back(std::move(listener)); }
  // Called after the last change of each unit (see "Units").
  void listenUnits(std::function<void()> listener) { unitListeners_.push_back(std::move(listener)); }

  // An explicit unit of local changes (see "Units"); units do not nest. endUnit() reports what
  // the unit changed, also when the caller ends it early because a write threw: what was applied
  // is never left unreported (the log, storage and subscriptions always match the state).
  void beginUnit();
  void endUnit();
  bool inUnit() const { return inUnit_; }

  // A rule for received objects whose names start with `prefix` (the presence tracker's): run by
  // joinRemote() on each such object before anything of the message is applied; it throws
  // ProtocolError to refuse the message.
  using Check = std::function<void(const std::string& name, const Value& delta)>;
  void addCheck(std::string prefix, Check check) { checks_.emplace_back(std::move(prefix), std::move(check)); }

  // Forgotten replicas (gossip/pruning.h): replicas pruned from the cluster, by the done marks of
  // the reserved object "$prune". learnPruned() applies each new mark: its marker's writes, joined
  // as this node's local change (one unit), then r stripped from every object; from then on r is
  // stripped from every object received, before anything else looks at it. joinRemote() learns a
  // mark that a message brings before it joins the message's other objects. A mark naming this
  // replica is not applied: prunedSelf() says so (the cluster refuses it; it needs a new id).
  // With `report` false (start-up, after restore()) nothing is reported: the marks were applied
  // before the restart, and applying them again changes nothing but what the strip left behind.
  void learnPruned(bool reportChanges = true);
  bool forgotten(ReplicaId r) const { return forgotten_.count(r) != 0; }
  const std::set<ReplicaId>& forgottenReplicas() const { return forgotten_; }
  bool prunedSelf() const { return prunedSelf_; }

  const Value* find(const std::string& name) const;
  const std::map<std::string, Value>& objects() const { return objects_; }
  size_t size() const { return objects_.size(); }

 private:
  // Object `name`, created as bottom of `kind` if absent; *existed (when given) says whether it was
  // there. Throws ObjectDeleted and KindMismatch (see update()).
  Value& objectOfKind(const std::string& name, size_t kind, bool* existed = nullptr);
  using Pending = std::map<std::string, Value>::iterator;
  // The open unit's pending delta of `name`, made by make() if it has none. The last one found is
  // remembered: a batch writes one object many times in a row.
  template <typename Make>
  Pending pendingOf(const std::string& name, Make&& make) {
    if (lastPending_ != pending_.end() && lastPending_->first == name) return lastPending_;
    auto it = pending_.lower_bound(name);
    if (it == pending_.end() || it->first != name) it = pending_.emplace_hint(it, name, make());
    return lastPending_ = it;
  }
  void erasePending(Pending it) {
    if (it == lastPending_) lastPending_ = pending_.end();
    pending_.erase(it);
  }
  // A local change: reported now, or joined into the open unit's pending delta of its object.
  void reportLocal(const std::string& name, const Value& delta);
  void report(const Change& change) {
    for (const auto& l : listeners_) l(change);
  }
  void unitEnded() {
    for (const auto& l : unitListeners_) l();
  }

  ReplicaId self_;
  std::map<std::string, Value> objects_;
  std::vector<Listener> listeners_;
  std::vector<std::function<void()>> unitListeners_;
  bool inUnit_ = false;
  std::map<std::string, Value> pending_;  // the open unit's deltas, per object
  Pending lastPending_ = pending_.end();  // pendingOf()'s last answer, or end()
  std::vector<std::pair<std::string, Check>> checks_;
  std::set<ReplicaId> forgotten_;
  bool prunedSelf_ = false;
};

}  // namespace deltasync::gossip
