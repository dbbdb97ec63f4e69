#include "gossip/store.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gossip/errors.h"

namespace deltasync::gossip {

Value& ObjectStore::objectOfKind(const std::string& name, size_t kind, bool* existed) {
  auto it = objects_.lower_bound(name);
  const bool found = it != objects_.end() && it->first == name;
  if (existed != nullptr) *existed = found;
  if (!found) return objects_.emplace_hint(it, name, bottomOf(kind))->second;
  if (isTombstone(it->second)) throw ObjectDeleted("object '" + name + "' was deleted");
  if (kind == kTombstoneKind) return it->second;  // deleting: any kind becomes the tombstone
  if (it->second.index() != kind) {
    throw KindMismatch("object '" + name + "' is a " + kindName(it->second) + ", not a " + kindName(kind));
  }
  return it->second;
}

void ObjectStore::applyLocal(const std::string& name, const Value& delta) {
  Value& v = objectOfKind(name, delta.index());
  joinInto(v, delta);
  if (!isBottom(delta)) reportLocal(name, delta);
}

void ObjectStore::reportLocal(const std::string& name, const Value& delta) {
  if (!inUnit_) {
    report(Change{name, delta, delta, ReplicaId{}});
    unitEnded();
    return;
  }
  bool fresh = false;
  auto it = pendingOf(name, [&] {
    fresh = true;
    return delta;
  });
  // A tombstone is the top of every kind: joined with it, an object's earlier deltas are gone.
  if (!fresh) {
    if (isTombstone(delta) || it->second.index() != delta.index()) {
      it->second = delta;
    } else {
      joinInto(it->second, delta);
    }
  }
}

void ObjectStore::beginUnit() {
  if (inUnit_) throw std::logic_error("ObjectStore::beginUnit: units do not nest");
  inUnit_ = true;
}

void ObjectStore::endUnit() {
  if (!inUnit_) throw std::logic_error("ObjectStore::endUnit without beginUnit");
  inUnit_ = false;
  auto pending = std::exchange(pending_, {});
  lastPending_ = pending_.end();
  for (const auto& [name, delta] : pending) report(Change{name, delta, delta, ReplicaId{}});
  if (!pending.empty()) unitEnded();
}

void ObjectStore::check(const std::vector<NamedValue>& objects) const {
  for (const auto& o : objects) {
    auto it = objects_.find(o.name);
    if (it != objects_.end() && isTombstone(it->second)) continue;  // deleted here: nothing of it is joined
    if (it != objects_.end() && it->second.index() != o.value.index() && !isTombstone(o.value)) {
      throw ProtocolError("object '" + o.name + "' is a " + kindName(it->second) + " here, the peer sent a " +
                          kindName(o.value));
    }
    const Value* state = it == objects_.end() ? nullptr : &it->second;
    if (std::string far = claimTooFar(o.value, state); !far.empty()) {
      throw ProtocolError("object '" + o.name + "' " + far);
    }
    if (claimsUnminted(o.value, state, self_) && !refutable(o.value, state, self_)) {
      throw ProtocolError("object '" + o.name + "' carries writes under this replica's id (" +
                          std::to_string(self_.value) +
                          ") that it never made: forged, or this replica restarted without its state under its "
                          "old id (start it under a new id)");
    }
    for (const auto& [prefix, rule] : checks_) {
      if (o.name.compare(0, prefix.size(), prefix) == 0) rule(o.name, o.value);
    }
  }
}

JoinStats ObjectStore::joinRemote(ReplicaId from, const std::vector<NamedValue>& objects) {
  check(objects);
  JoinStats stats;
  std::vector<std::pair<std::string, Value>> refutations;  // applied as our writes after the join
  for (const auto& o : objects) {
    auto it = objects_.find(o.name);
    if (!(it != objects_.end() && isTombstone(it->second)) &&
        claimsUnminted(o.value, it == objects_.end() ? nullptr : &it->second, self_)) {
      // check(): refutable. Made before the join, from the state the claim removes from.
      Value local = refute(o.value, it == objects_.end() ? nullptr : &it->second, self_);
      if (!isBottom(local)) refutations.emplace_back(o.name, std::move(local));
      ++stats.refuted;
    }
    if (it == objects_.end()) {
      if (isBottom(o.value)) continue;
      it = objects_.emplace(o.name, o.value).first;
      ++stats.joined;
      report(Change{it->first, o.value, o.value, from});
      continue;
    }
    Value news = strip(o.value, it->second);
    if (isBottom(news)) {
      ++stats.redundant;
      continue;
    }
    joinInto(it->second, news);
    ++stats.joined;
    report(Change{it->first, news, o.value, from});
  }
  if (stats.joined != 0) unitEnded();
  for (const auto& [name, local] : refutations) applyLocal(name, local);
  return stats;
}

void ObjectStore::restore(const std::string& name, Value state) {
  auto it = objects_.find(name);
  if (it != objects_.end() && it->second.index() != state.index()) {
    throw KindMismatch("object '" + name + "' is a " + kindName(it->second) + ", not a " + kindName(state));
  }
  if (isBottom(state)) {
    if (it != objects_.end()) objects_.erase(it);
    return;
  }
  objects_.insert_or_assign(name, std::move(state));
}

const Value* ObjectStore::find(const std::string& name) const {
  auto it = objects_.find(name);
  return it == objects_.end() ? nullptr : &it->second;
}

}  // namespace deltasync::gossip
