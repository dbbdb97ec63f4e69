#include "gossip/presence.h"

#include <algorithm>
#include <stdexcept>

#include <deltasync/errors.h>

#include "gossip/errors.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

namespace {

constexpr char kHex[] = "0123456789abcdef";

bool byRef(const PresenceMeta& a, const PresenceMeta& b) { return a.ref < b.ref; }

}  // namespace

std::string presenceObjectName(ReplicaId origin) {
  std::string name(kPresencePrefix);
  for (int shift = 60; shift >= 0; shift -= 4) name += kHex[(origin.value >> shift) & 15];
  return name;
}

ReplicaId presenceOwner(std::string_view name) {
  if (name.substr(0, kPresencePrefix.size()) != kPresencePrefix) return {};
  std::string_view hex = name.substr(kPresencePrefix.size());
  if (hex.size() != 16) return {};
  uint64_t v = 0;
  for (char c : hex) {
    const char* p = std::find(kHex, kHex + 16, c);
    if (p == kHex + 16) return {};
    v = (v << 4) | static_cast<uint64_t>(p - kHex);
  }
  return ReplicaId{v};
}

// ---- PresenceDiff -------------------------------------------------------------------------

void PresenceDiff::add(const std::string& key, const PresenceMeta& m, bool leave) {
  auto& opposite = leave ? joins : leaves;
  if (auto it = opposite.find(key); it != opposite.end()) {
    auto& metas = it->second;
    auto at = std::find_if(metas.begin(), metas.end(), [&](const PresenceMeta& x) { return x.ref == m.ref; });
    if (at != metas.end()) {
      metas.erase(at);
      if (metas.empty()) opposite.erase(it);
      return;
    }
  }
  auto& metas = (leave ? leaves : joins)[key];
  metas.insert(std::upper_bound(metas.begin(), metas.end(), m, byRef), m);
}

void PresenceDiff::append(const PresenceDiff& later) {
  // A later diff's leaves refer to rows that joined before it: apply them first, so that a
  // row that joined in *this and left in `later` cancels; then its joins.
  for (const auto& [key, metas] : later.leaves) {
    for (const auto& m : metas) add(key, m, true);
  }
  for (const auto& [key, metas] : later.joins) {
    for (const auto& m : metas) add(key, m, false);
  }
}

// ---- encoding -----------------------------------------------------------------------------
// Entry key: varint(topic bytes) topic varint(key bytes) key fixed64(connection).
// Value: varint(previous ref counter) meta.

// Straight into the string (no ColumnWriter and copy; the key was encoded twice per track before).
std::string PresenceTracker::encodeKey(const std::string& topic, const std::string& key, uint64_t connection) {
  std::string out;
  out.reserve(varintSize(topic.size()) + topic.size() + varintSize(key.size()) + key.size() + 8);  // exact: stored
  appendVarint(out, topic.size());
  out += topic;
  appendVarint(out, key.size());
  out += key;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((connection >> (8 * i)) & 0xff));
  return out;
}

PresenceTracker::Entry PresenceTracker::decodeKey(std::string_view bytes) {
  ColumnReader r(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "presence key");
  Entry e;
  e.topic = std::string(r.raw(r.varint()));
  e.key = std::string(r.raw(r.varint()));
  e.connection = r.fixed64();
  r.expectEnd();
  return e;
}

std::string PresenceTracker::encodeValue(uint64_t previous, const std::string& meta) {
  std::string out;
  out.reserve(varintSize(previous) + meta.size());  // exact: the store keeps this string
  appendVarint(out, previous);
  out += meta;
  return out;
}

std::pair<uint64_t, std::string> PresenceTracker::decodeValue(std::string_view bytes) {
  ColumnReader r(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "presence value");
  uint64_t previous = r.varint();
  return {previous, std::string(r.raw(r.remaining()))};
}

// ---- construction and checks ----------------------------------------------------------------

PresenceTracker::PresenceTracker(ObjectStore& store, const Limits& limits, PresenceConfig config)
    : store_(store), limits_(limits), config_(config), selfName_(presenceObjectName(store.self())) {
  store_.listen([this](const Change& c) { onChange(c); });
  store_.addCheck(std::string(kPresencePrefix), [this](const std::string& name, const Value& v) { check(name, v); });
  origins_[self()].known = true;
}

// The presence limits (config_): "" or what is over, for local writes and received entries alike.
std::string PresenceTracker::sizeProblem(std::string_view topic, std::string_view key, std::string_view meta) const {
  auto over = [](const char* what, size_t n, size_t max, const char* limit) {
    return std::string(what) + " longer than " + limit + " (" + std::to_string(n) + " > " + std::to_string(max) +
           " bytes)";
  };
  if (topic.size() > config_.maxTopicBytes) return over("topic", topic.size(), config_.maxTopicBytes, "maxTopicBytes");
  if (key.size() > config_.maxKeyBytes) return over("key", key.size(), config_.maxKeyBytes, "maxKeyBytes");
  if (meta.size() > config_.maxMetaBytes) return over("meta", meta.size(), config_.maxMetaBytes, "maxMetaBytes");
  return {};
}

void PresenceTracker::checkSizes(const std::string& topic, const std::string& key, const std::string& meta) const {
  if (topic.empty()) throw std::invalid_argument("presence topic is empty");
  if (std::string p = sizeProblem(topic, key, meta); !p.empty()) throw LimitExceeded("presence " + p);
  // What peers hold every map entry to (a tracker's limits above normally sit well inside).
  if (std::string p = keyProblem(topic.size() + key.size() + 20, limits_); !p.empty()) throw LimitExceeded("presence: " + p);
  if (std::string p = valueProblem(meta.size() + 10, limits_); !p.empty()) throw LimitExceeded("presence: " + p);
}

void PresenceTracker::check(const std::string& name, const Value& delta) const {
  const ReplicaId owner = presenceOwner(name);
  if (owner.value == 0) throw ProtocolError("'" + name.substr(0, 40) + "' is not a presence object name");
  const Map* m = std::get_if<Map>(&delta);
  if (m == nullptr) throw ProtocolError("presence object '" + name + "' is a " + kindName(delta) + ", not a map");
  for (const auto& o : m->context().origins()) {
    if (o.replica != owner) {
      throw ProtocolError("presence object '" + name + "' carries a causal context of replica " +
                          std::to_string(o.replica.value) + ": only its owner writes it");
    }
  }
  m->store().forEach([&](std::string_view k, crdt::Dot d, const crdt::Stamped<std::string>& v) {
    if (d.replica != owner) {
      throw ProtocolError("presence object '" + name + "' carries a write of replica " + std::to_string(d.replica.value) +
                          ": only its owner writes it");
    }
    try {
      Entry e = decodeKey(k);
      auto [previous, meta] = decodeValue(v.value);
      if (e.topic.empty()) throw ProtocolError("presence object '" + name + "': an entry with an empty topic");
      if (std::string p = sizeProblem(e.topic, e.key, meta); !p.empty()) {
        throw ProtocolError("presence object '" + name + "': an entry's " + p);
      }
    } catch (const DecodeError& e) {
      throw ProtocolError("presence object '" + name + "': " + e.what());
    }
  });
}

// ---- this node's presences ----------------------------------------------------------------

PresenceRef PresenceTracker::write(const std::string& entryKey, const std::string& meta, uint64_t previous) {
  const ReplicaId me = self();
  Map delta = store_.update<Map>(selfName_, [&](Map& m) {
    return m.set(me, entryKey, encodeValue(previous, meta), crdt::Timestamp{});
  });
  uint64_t ref = 0;
  delta.store().forEach([&](std::string_view, crdt::Dot d, const auto&) { ref = d.counter; });
  return PresenceRef{me, ref};
}

PresenceRef PresenceTracker::track(uint64_t connection, const std::string& topic, const std::string& key,
                                   const std::string& meta) {
  checkSizes(topic, key, meta);
  auto& keys = local_[connection];
  const std::string k = encodeKey(topic, key, connection);
  if (keys.count(k) != 0) {
    throw std::invalid_argument("presence ('" + topic + "', '" + key + "') is already tracked on this connection");
  }
  if (localCount_ >= config_.maxPresences) {
    if (keys.empty()) local_.erase(connection);
    throw LimitExceeded("presence: this node tracks maxPresences (" + std::to_string(config_.maxPresences) +
                        ") presences already");
  }
  // A new entry (the usual case: the key is not in our object) is shown from what we know here
  // rather than decoded back from the store's report of it (onChange skips it): the same row and
  // the same join, without decoding its key and value again (about 5% of a track's instructions).
  // A key still in the object (a write that replaces an entry) goes the general way, so that the
  // entry it replaces leaves.
  const Map* mine = object(self());
  const bool fresh = mine == nullptr || !mine->contains(k);
  PresenceRef ref;
  try {
    skipOwnChange_ = fresh;
    ref = write(k, meta, 0);
    skipOwnChange_ = false;
  } catch (...) {
    skipOwnChange_ = false;
    if (keys.empty()) local_.erase(connection);
    throw;
  }
  if (fresh) show(self(), origins_[self()], ref.counter, Entry{topic, key, connection}, 0, meta);
  keys.insert(k);
  ++localCount_;
  return ref;
}

PresenceRef PresenceTracker::update(uint64_t connection, const std::string& topic, const std::string& key,
                                    const std::string& meta) {
  checkSizes(topic, key, meta);
  auto it = local_.find(connection);
  const std::string k = encodeKey(topic, key, connection);
  if (it == local_.end() || it->second.count(k) == 0) {
    throw std::invalid_argument("presence ('" + topic + "', '" + key + "') is not tracked on this connection");
  }
  uint64_t previous = 0;
  if (const Map* m = object(self())) {
    m->store().forEachOfKey(k, [&](crdt::Dot d, const auto&) { previous = d.counter; });
  }
  lost_.erase(k);
  return write(k, meta, previous);
}

bool PresenceTracker::untrack(uint64_t connection, const std::string& topic, const std::string& key) {
  auto it = local_.find(connection);
  const std::string k = encodeKey(topic, key, connection);
  if (it == local_.end() || it->second.erase(k) == 0) return false;
  if (it->second.empty()) local_.erase(it);
  --localCount_;
  lost_.erase(k);
  if (const Map* m = object(self()); m != nullptr && m->contains(k)) {
    store_.update<Map>(selfName_, [&](Map& m) { return m.remove(k); });
  }
  return true;
}

size_t PresenceTracker::close(uint64_t connection) {
  auto it = local_.find(connection);
  if (it == local_.end()) return 0;
  const std::set<std::string> keys = std::move(it->second);
  local_.erase(it);
  localCount_ -= keys.size();
  for (const auto& k : keys) lost_.erase(k);
  if (const Map* m = object(self()); m != nullptr) {
    // One delta for all of them, each removal joined straight into it: joining one removal delta
    // per key (as before) joined contexts of a size growing with each, quadratic in the keys:
    // closing a connection of 20,000 presences took 1.47 G instructions, half a second.
    store_.update<Map>(selfName_, [&](Map& state) {
      Map delta;
      for (const auto& k : keys) state.removeInto(delta, k);
      return delta;
    });
  }
  return keys.size();
}

bool PresenceTracker::tracked(uint64_t connection, const std::string& topic, const std::string& key) const {
  auto it = local_.find(connection);
  return it != local_.end() && it->second.count(encodeKey(topic, key, connection)) != 0;
}

// ---- the store's changes --------------------------------------------------------------------

const Map* PresenceTracker::object(ReplicaId id) const {
  const Value* v = store_.find(id == self() ? selfName_ : presenceObjectName(id));
  return v == nullptr ? nullptr : std::get_if<Map>(v);
}

bool PresenceTracker::visible(const Origin& o, ReplicaId id) const {
  return id == self() || (o.known && (o.status == OriginStatus::up || o.status == OriginStatus::suspect));
}

PresenceMeta PresenceTracker::metaOf(const Row& r) {
  return PresenceMeta{PresenceRef{r.origin, r.ref}, PresenceRef{r.previous == 0 ? ReplicaId{} : r.origin, r.previous},
                      r.connection, r.meta};
}

void PresenceTracker::show(ReplicaId id, Origin& o, uint64_t ref, Entry entry, uint64_t previous, std::string meta) {
  Row row{id, ref, previous, entry.connection, std::move(meta)};
  events_.push_back(DiffEvent{entry.topic, entry.key, metaOf(row), false});
  Topic& t = topics_[entry.topic];
  auto& rows = t.keys[entry.key];
  auto at = std::upper_bound(rows.begin(), rows.end(), row, [](const Row& a, const Row& b) {
    return std::tie(a.origin, a.ref) < std::tie(b.origin, b.ref);
  });
  rows.insert(at, std::move(row));
  ++t.count;
  o.shown.emplace(ref, std::move(entry));
}

void PresenceTracker::hide(ReplicaId id, Origin& o, std::map<uint64_t, Entry>::iterator it, bool byOther) {
  const Entry& e = it->second;
  auto t = topics_.find(e.topic);
  if (t != topics_.end()) {
    auto k = t->second.keys.find(e.key);
    if (k != t->second.keys.end()) {
      auto& rows = k->second;
      auto r = std::find_if(rows.begin(), rows.end(), [&](const Row& x) { return x.origin == id && x.ref == it->first; });
      if (r != rows.end()) {
        // This node's own entry removed by another node (a purge) while its connection lives:
        // remember its meta to track it again (tick()).
        if (id == self() && byOther) {
          auto l = local_.find(r->connection);
          const std::string k2 = encodeKey(e.topic, e.key, r->connection);
          if (l != local_.end() && l->second.count(k2) != 0) lost_[k2] = r->meta;
        }
        events_.push_back(DiffEvent{e.topic, e.key, metaOf(*r), true});
        rows.erase(r);
        --t->second.count;
        if (rows.empty()) t->second.keys.erase(k);
        if (t->second.keys.empty()) topics_.erase(t);
      }
    }
  }
  o.shown.erase(it);
}

void PresenceTracker::showAll(ReplicaId id, Origin& o) {
  const Map* m = object(id);
  if (m == nullptr) return;
  m->store().forEach([&](std::string_view k, crdt::Dot d, const crdt::Stamped<std::string>& v) {
    if (d.replica != id || o.shown.count(d.counter) != 0) return;
    auto [previous, meta] = decodeValue(v.value);
    show(id, o, d.counter, decodeKey(k), previous, std::move(meta));
  });
}

void PresenceTracker::hideAll(ReplicaId id, Origin& o) {
  while (!o.shown.empty()) hide(id, o, o.shown.begin(), false);
}

void PresenceTracker::onChange(const Change& c) {
  if (skipOwnChange_) return;  // track() shows its new entry itself
  const ReplicaId owner = presenceOwner(c.name);
  if (owner.value == 0) return;
  const Map* delta = std::get_if<Map>(&c.delta);
  if (delta == nullptr) return;  // check() refused such a remote one; a local write of ours never is
  Origin& o = origins_[owner];
  if (!visible(o, owner)) {  // shown again from the store when it is up
    if (o.status == OriginStatus::gone && !c.local()) refilled_.insert(owner);  // purged again by tick()
    return;
  }
  const Map* state = object(owner);
  // Leaves: shown rows whose dots the delta's context covers and the state no longer holds.
  if (const auto* covered = delta->context().find(owner)) {
    for (const auto& i : covered->intervals) {
      for (auto it = o.shown.lower_bound(i.lo); it != o.shown.end() && it->first <= i.hi;) {
        auto next = std::next(it);
        if (state == nullptr || !state->store().containsDot(crdt::Dot{owner, it->first})) {
          hide(owner, o, it, !c.local());
        }
        it = next;
      }
    }
  }
  // Joins: the delta's entries the state holds and that are not shown yet.
  if (state == nullptr) return;
  delta->store().forEach([&](std::string_view k, crdt::Dot d, const crdt::Stamped<std::string>& v) {
    if (d.replica != owner || o.shown.count(d.counter) != 0 || !state->store().containsDot(d)) return;
    auto [previous, meta] = decodeValue(v.value);
    show(owner, o, d.counter, decodeKey(k), previous, std::move(meta));
  });
}

// ---- membership and time --------------------------------------------------------------------

void PresenceTracker::setStatus(ReplicaId id, OriginStatus s, uint64_t nowMs) {
  if (id == self()) return;
  Origin& o = origins_[id];
  const bool was = visible(o, id);
  const bool changed = o.status != s || !o.known;
  o.known = true;
  if (!changed) return;
  disarm(id, o);
  o.status = s;
  o.sinceMs = nowMs;
  arm(id, o);
  const bool is = visible(o, id);
  if (was && !is) hideAll(id, o);
  if (!was && is) showAll(id, o);
  if (s == OriginStatus::gone) purge(id);
}

// Down origins turn gone permdownMs after they went down; gone ones are forgotten goneKeepMs
// after: one timer each, so tick() costs what is due, not the number of origins.
std::optional<uint64_t> PresenceTracker::deadline(const Origin& o) const {
  if (o.status == OriginStatus::down) return o.sinceMs + config_.permdownMs;
  if (o.status == OriginStatus::gone) return o.sinceMs + config_.goneKeepMs;
  return std::nullopt;
}

void PresenceTracker::arm(ReplicaId id, const Origin& o) {
  if (auto at = deadline(o)) timers_.emplace(*at, id);
}

void PresenceTracker::disarm(ReplicaId id, const Origin& o) {
  if (auto at = deadline(o)) timers_.erase({*at, id});
}

void PresenceTracker::memberEvent(const MemberEvent& e, uint64_t nowMs) {
  switch (e.state) {
    case MemberState::alive: setStatus(e.id, OriginStatus::up, nowMs); break;
    case MemberState::suspect: setStatus(e.id, OriginStatus::suspect, nowMs); break;
    case MemberState::down: {
      auto it = origins_.find(e.id);
      // A removed (forgotten) down member keeps its down-since time: permdown counts from there.
      if (!(e.removed && it != origins_.end() && it->second.status == OriginStatus::down)) {
        setStatus(e.id, OriginStatus::down, nowMs);
      }
      break;
    }
    case MemberState::left: setStatus(e.id, OriginStatus::gone, nowMs); break;
  }
}

void PresenceTracker::purge(ReplicaId id) {
  const Map* m = object(id);
  if (m == nullptr || m->size() == 0) return;
  store_.update<Map>(presenceObjectName(id), [](Map& state) { return state.clear(); });
}

void PresenceTracker::tick(uint64_t nowMs) {
  while (!timers_.empty() && timers_.begin()->first <= nowMs) {
    const ReplicaId id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto it = origins_.find(id);
    if (it == origins_.end()) continue;
    if (it->second.status == OriginStatus::down) {  // permdown: gone (hidden already)
      it->second.status = OriginStatus::gone;
      it->second.sinceMs = nowMs;
      arm(id, it->second);
      purge(id);
    } else if (it->second.status == OriginStatus::gone) {
      const Map* m = object(id);
      if (m != nullptr && m->size() != 0) {
        it->second.sinceMs = nowMs;  // not empty yet: keep the row a while more
        arm(id, it->second);
      } else {
        origins_.erase(it);
      }
    }
  }
  // Entries of gone origins that arrived after their purge (a late copy of a last write).
  for (ReplicaId id : std::exchange(refilled_, {})) {
    auto it = origins_.find(id);
    if (it != origins_.end() && it->second.status == OriginStatus::gone) purge(id);
  }
  // Our own presences another node purged (it took us for gone) while their connections live.
  for (const auto& [k, meta] : std::exchange(lost_, {})) {
    Entry e = decodeKey(k);
    if (!tracked(e.connection, e.topic, e.key)) continue;
    const Map* m = object(self());
    if (m != nullptr && m->contains(k)) continue;  // tracked again meanwhile (update)
    write(k, meta, 0);
  }
}

std::map<std::string, PresenceDiff> PresenceTracker::takeDiffs() {
  std::map<std::string, PresenceDiff> out;
  for (auto& e : std::exchange(events_, {})) out[e.topic].add(e.key, e.meta, e.leave);
  std::erase_if(out, [](const auto& d) { return d.second.empty(); });
  return out;
}

// ---- reads --------------------------------------------------------------------------------

std::vector<std::pair<std::string, std::vector<PresenceMeta>>> PresenceTracker::list(const std::string& topic) const {
  std::vector<std::pair<std::string, std::vector<PresenceMeta>>> out;
  auto t = topics_.find(topic);
  if (t == topics_.end()) return out;
  out.reserve(t->second.keys.size());
  for (const auto& [key, rows] : t->second.keys) {
    std::vector<PresenceMeta> metas;
    metas.reserve(rows.size());
    for (const auto& r : rows) metas.push_back(metaOf(r));
    out.emplace_back(key, std::move(metas));
  }
  return out;
}

std::vector<PresenceMeta> PresenceTracker::get(const std::string& topic, const std::string& key) const {
  std::vector<PresenceMeta> out;
  auto t = topics_.find(topic);
  if (t == topics_.end()) return out;
  auto k = t->second.keys.find(key);
  if (k == t->second.keys.end()) return out;
  for (const auto& r : k->second) out.push_back(metaOf(r));
  return out;
}

size_t PresenceTracker::count(const std::string& topic) const {
  auto t = topics_.find(topic);
  return t == topics_.end() ? 0 : t->second.count;
}

size_t PresenceTracker::keyCount(const std::string& topic) const {
  auto t = topics_.find(topic);
  return t == topics_.end() ? 0 : t->second.keys.size();
}

std::vector<std::string> PresenceTracker::topics() const {
  std::vector<std::string> out;
  out.reserve(topics_.size());
  for (const auto& [name, t] : topics_) out.push_back(name);
  return out;
}

std::vector<OriginInfo> PresenceTracker::origins() const {
  std::vector<OriginInfo> out;
  for (const auto& [id, o] : origins_) {
    const Map* m = object(id);
    out.push_back(OriginInfo{id, o.status, o.sinceMs, m == nullptr ? size_t{0} : m->size()});
  }
  return out;
}

}  // namespace deltasync::gossip
