#include "gossip/store.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gossip/errors.h"
#include "gossip/pruning.h"

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
    // (Counters adopt every claim: no walk of a map of counters' keys here, the join does one.)
    if (!adoptsClaims(o.value) && claimsUnminted(o.value, state, self_) && !refutable(o.value, state, self_)) {
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

namespace {

// objects, or (in `copy`) objects with every forgotten replica stripped from them.
const std::vector<NamedValue>& withoutForgotten(const std::vector<NamedValue>& objects,
                                                const std::set<ReplicaId>& forgotten, std::vector<NamedValue>& copy) {
  auto mentionsAny = [&](const Value& v) {
    return std::any_of(forgotten.begin(), forgotten.end(), [&](ReplicaId r) { return mentions(v, r); });
  };
  if (forgotten.empty() || std::none_of(objects.begin(), objects.end(), [&](const NamedValue& o) { return mentionsAny(o.value); })) {
    return objects;
  }
  copy = objects;
  for (auto& o : copy) {
    for (ReplicaId r : forgotten) forget(o.value, r);
  }
  return copy;
}

}  // namespace

JoinStats ObjectStore::joinRemote(ReplicaId from, const std::vector<NamedValue>& objects) {
  std::vector<NamedValue> copy;
  const std::vector<NamedValue>* in = &withoutForgotten(objects, forgotten_, copy);
  check(*in);
  JoinStats stats;
  std::vector<std::pair<std::string, Value>> refutations;  // applied as our writes after the join
  bool reported = false;
  auto joinOne = [&](const NamedValue& o) {
    auto it = objects_.find(o.name);
    // (check() refused every claim on our dots that cannot be refuted; refutable() is O(1) but
    // for counter maps, where it walks the delta's keys as the join does.)
    if (!(it != objects_.end() && isTombstone(it->second)) &&
        refutable(o.value, it == objects_.end() ? nullptr : &it->second, self_)) {
      // Made before the join, from the state the claim removes from.
      Value local = refute(o.value, it == objects_.end() ? nullptr : &it->second, self_);
      if (!isBottom(local)) refutations.emplace_back(o.name, std::move(local));
      ++stats.refuted;
    }
    if (it == objects_.end()) {
      if (isBottom(o.value)) return;
      it = objects_.emplace(o.name, o.value).first;
      ++stats.joined;
      reported = true;
      report(Change{it->first, o.value, o.value, from});
      return;
    }
    Value news = strip(o.value, it->second);
    if (isBottom(news)) {
      ++stats.redundant;
      return;
    }
    joinInto(it->second, news);
    ++stats.joined;
    reported = true;
    report(Change{it->first, news, o.value, from});
  };
  // "$prune" first (all its parts): a done mark it brings is applied to our state as it is before
  // the message's other objects (the pruner's own re-homed entries among them) are joined
  // (gossip/pruning.h).
  const bool marks = std::any_of(in->begin(), in->end(), [](const NamedValue& o) { return o.name == kPruneObject; });
  if (marks) {
    for (const auto& o : *in) {
      if (o.name == kPruneObject) joinOne(o);
    }
    const size_t before = forgotten_.size();
    if (reported) unitEnded();
    reported = false;
    learnPruned();
    if (forgotten_.size() != before) {
      std::vector<NamedValue> again;
      if (&withoutForgotten(*in, forgotten_, again) == &again) {
        copy = std::move(again);
        in = &copy;
      }
    }
  }
  for (const auto& o : *in) {
    if (o.name != kPruneObject) joinOne(o);
  }
  if (reported) unitEnded();
  for (const auto& [name, local] : refutations) applyLocal(name, local);
  return stats;
}

void ObjectStore::learnPruned(bool reportChanges) {
  const Value* marks = find(std::string(kPruneObject));
  const Map* m = marks != nullptr ? std::get_if<Map>(marks) : nullptr;
  if (m == nullptr) return;
  std::vector<std::pair<ReplicaId, PruneMarker>> fresh;
  m->forEach([&](std::string_view key, const std::string& value) {
    const auto r = doneOf(key);
    if (!r || forgotten_.count(*r) != 0) return;
    if (*r == self_) {
      prunedSelf_ = true;
      return;
    }
    fresh.emplace_back(*r, decodePruneMarker(value));  // (checked when it was received: checkPruneObject)
  });
  if (fresh.empty()) return;
  std::sort(fresh.begin(), fresh.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const bool ownUnit = reportChanges && !inUnit_;
  if (ownUnit) beginUnit();
  try {
    for (const auto& [r, marker] : fresh) {
      for (const auto& part : marker.objects) {
        auto it = objects_.find(part.name);
        if (it == objects_.end() || isTombstone(it->second)) continue;
        Value write = applyPart(part, it->second, r, marker.pruner);
        if (isBottom(write)) continue;
        if (reportChanges) {
          applyLocal(part.name, write);
        } else {
          joinInto(it->second, write);
        }
      }
      for (auto it = objects_.begin(); it != objects_.end();) {
        forget(it->second, r);
        it = isBottom(it->second) ? objects_.erase(it) : std::next(it);
      }
      forgotten_.insert(r);
    }
  } catch (...) {
    if (ownUnit) endUnit();
    throw;
  }
  if (ownUnit) endUnit();
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
