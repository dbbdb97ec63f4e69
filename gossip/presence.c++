#include "gossip/presence.h"

#include <algorithm>
#include <stdexcept>

#include <deltasync/errors.h>

#include "crdt/flat-index.h"
#include "gossip/errors.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

namespace {

constexpr char kHex[] = "0123456789abcdef";

bool byRef(const PresenceMeta& a, const PresenceMeta& b) { return a.ref < b.ref; }

// An entry value (encodeValue) read in place: a view into `bytes`.
std::pair<uint64_t, std::string_view> valueParts(std::string_view bytes) {
  ColumnReader r(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "presence value");
  uint64_t previous = r.varint();
  return {previous, r.raw(r.remaining())};
}

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

std::string PresenceTracker::encodeValue(uint64_t previous, const std::string& meta) {
  std::string out;
  out.reserve(varintSize(previous) + meta.size());  // exact: the store keeps this string
  appendVarint(out, previous);
  out += meta;
  return out;
}

PresenceTracker::KeyParts PresenceTracker::keyParts(std::string_view bytes) {
  ColumnReader r(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "presence key");
  KeyParts e;
  e.topic = r.raw(r.varint());
  e.key = r.raw(r.varint());
  e.connection = r.fixed64();
  r.expectEnd();
  return e;
}

std::string PresenceTracker::rowPlace(std::string_view topic, std::string_view key) {
  std::string out;
  out.reserve(varintSize(topic.size()) + topic.size() + key.size());
  appendVarint(out, topic.size());
  out += topic;
  out += key;
  return out;
}

// ---- RefIndex -------------------------------------------------------------------------------

size_t PresenceTracker::RefIndex::home(uint64_t ref) const {
  // Seeded as the dot stores' indexes are (refs come from peers: see crdt::hashSeed).
  return static_cast<size_t>(crdt::mix64(ref ^ crdt::_::hashSeed())) & (slots_.size() - 1);
}

const PresenceTracker::RowMap::iterator* PresenceTracker::RefIndex::find(uint64_t ref) const {
  if (size_ == 0) return nullptr;
  const size_t mask = slots_.size() - 1;
  for (size_t i = home(ref);; i = (i + 1) & mask) {
    if (slots_[i].ref == ref) return &slots_[i].at;
    if (slots_[i].ref == 0) return nullptr;
  }
}

void PresenceTracker::RefIndex::insert(uint64_t ref, RowMap::iterator at) {
  if ((size_ + 1) * 5 > slots_.size() * 4) resize(slots_.empty() ? 8 : slots_.size() * 2);
  const size_t mask = slots_.size() - 1;
  size_t i = home(ref);
  while (slots_[i].ref != 0) i = (i + 1) & mask;
  slots_[i] = Slot{ref, at};
  ++size_;
}

void PresenceTracker::RefIndex::erase(uint64_t ref) {
  if (size_ == 0) return;
  const size_t mask = slots_.size() - 1;
  size_t i = home(ref);
  while (slots_[i].ref != ref) {
    if (slots_[i].ref == 0) return;
    i = (i + 1) & mask;
  }
  // Backward-shift deletion: later slots of the probe run move into the hole unless their home
  // lies cyclically in (hole, slot], so every ref stays reachable from its home without markers.
  for (size_t j = (i + 1) & mask; slots_[j].ref != 0; j = (j + 1) & mask) {
    const size_t h = home(slots_[j].ref);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (!stays) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = Slot{};
  --size_;
  if (size_ == 0) {
    slots_ = {};
  } else if (slots_.size() > 8 && size_ * 8 < slots_.size()) {
    resize(slots_.size() / 2);
  }
}

void PresenceTracker::RefIndex::resize(size_t slots) {
  std::vector<Slot> old = std::exchange(slots_, std::vector<Slot>(slots));
  const size_t mask = slots - 1;
  for (const Slot& s : old) {
    if (s.ref == 0) continue;
    size_t i = home(s.ref);
    while (slots_[i].ref != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

// ---- construction and checks ----------------------------------------------------------------

PresenceTracker::PresenceTracker(ObjectStore& store, const Limits& limits, PresenceConfig config)
    : store_(store), limits_(limits), config_(config), selfName_(presenceObjectName(store.self())) {
  store_.listen([this](const Change& c) { onChange(c); });
  store_.addCheck(std::string(kPresencePrefix), [this](const std::string& name, const Value& v) { check(name, v); });
  originOf(self()).known = true;
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
      const KeyParts e = keyParts(k);
      const std::string_view meta = valueParts(v.value).second;
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

bool PresenceTracker::isTracked(const Map* mine, const std::string& entryKey) const {
  return (mine != nullptr && mine->contains(entryKey)) || lost_.count(entryKey) != 0;
}

PresenceTracker::Connection::Connection(Connection&& o) noexcept : live(o.live), size_(o.size_), heap_(o.heap_), u_(o.u_) {
  o.size_ = 0;
  o.heap_ = 0;
  o.live = 0;
}

void PresenceTracker::Connection::free() {
  if (heap_) delete[] u_.heap.refs;
  heap_ = 0;
  size_ = 0;
}

void PresenceTracker::Connection::push(uint64_t ref) {
  if (size_ == capacity()) {
    const size_t capacity = 2 * size_;
    auto* refs = new uint64_t[capacity];
    std::copy(begin(), end(), refs);
    const uint32_t n = size_;
    free();
    u_.heap.refs = refs;
    u_.heap.capacity = capacity;
    heap_ = 1;
    size_ = n;
  }
  (heap_ ? u_.heap.refs : u_.refs)[size_++] = ref;
}

PresenceTracker::Connection& PresenceTracker::remember(uint64_t connection, uint64_t ref) {
  Connection& c = local_[connection];
  // Stale refs (see Connection) go when the refs are full and at least half of them stale:
  // amortised O(1) a write.
  if (c.size() == c.capacity() && c.size() >= 2 * size_t{c.live}) {
    if (const Map* mine = object(self())) {
      const ReplicaId me = self();
      c.keepIf([&](uint64_t r) { return mine->store().containsDot(crdt::Dot{me, r}); });
    }
  }
  c.push(ref);
  return c;
}

PresenceRef PresenceTracker::track(uint64_t connection, const std::string& topic, const std::string& key,
                                   const std::string& meta) {
  checkSizes(topic, key, meta);
  const std::string k = encodeKey(topic, key, connection);
  const Map* mine = object(self());
  if (isTracked(mine, k)) {
    throw std::invalid_argument("presence ('" + topic + "', '" + key + "') is already tracked on this connection");
  }
  if (localCount_ >= config_.maxPresences) {
    throw LimitExceeded("presence: this node tracks maxPresences (" + std::to_string(config_.maxPresences) +
                        ") presences already");
  }
  // A new entry (always: the own object holds tracked entries only, see the header) is shown
  // from what we know here rather than decoded back from the store's report of it (onChange
  // skips it): the same row and the same join, without decoding its key and value again (about
  // 5% of a track's instructions). A key still in the object would go the general way, so that
  // the entry it replaces leaves.
  const bool fresh = mine == nullptr || !mine->contains(k);
  PresenceRef ref;
  try {
    skipOwnChange_ = fresh;
    ref = write(k, meta, 0);
    skipOwnChange_ = false;
  } catch (...) {
    skipOwnChange_ = false;
    throw;
  }
  if (fresh) show(self(), originOf(self()), ref.counter, KeyParts{topic, key, connection}, 0, meta);
  ++remember(connection, ref.counter).live;
  ++localCount_;
  return ref;
}

PresenceRef PresenceTracker::update(uint64_t connection, const std::string& topic, const std::string& key,
                                    const std::string& meta) {
  checkSizes(topic, key, meta);
  const std::string k = encodeKey(topic, key, connection);
  const Map* mine = object(self());
  if (!isTracked(mine, k)) {
    throw std::invalid_argument("presence ('" + topic + "', '" + key + "') is not tracked on this connection");
  }
  uint64_t previous = 0;
  if (mine != nullptr) {
    mine->store().forEachOfKey(k, [&](crdt::Dot d, const auto&) { previous = d.counter; });
  }
  lost_.erase(k);
  return write(k, meta, previous);  // (onChange gives its connection the new ref)
}

bool PresenceTracker::untrack(uint64_t connection, const std::string& topic, const std::string& key) {
  const std::string k = encodeKey(topic, key, connection);
  const Map* mine = object(self());
  const bool stored = mine != nullptr && mine->contains(k);
  if (!stored && lost_.count(k) == 0) return false;
  if (auto it = local_.find(connection); it != local_.end() && --it->second.live == 0) local_.erase(it);
  --localCount_;
  lost_.erase(k);
  if (stored) store_.update<Map>(selfName_, [&](Map& m) { return m.remove(k); });
  return true;
}

size_t PresenceTracker::close(uint64_t connection) {
  auto it = local_.find(connection);
  if (it == local_.end()) return 0;
  const Connection c = std::move(it->second);
  local_.erase(it);
  localCount_ -= c.live;
  size_t stored = 0;
  if (const Map* m = object(self()); m != nullptr) {
    // One delta for all of them, each removal joined straight into it: joining one removal delta
    // per key (as before) joined contexts of a size growing with each, quadratic in the keys:
    // closing a connection of 20,000 presences took 1.47 G instructions, half a second.
    const ReplicaId me = self();
    store_.update<Map>(selfName_, [&](Map& state) {
      Map delta;
      std::string k;
      for (uint64_t ref : c) {
        const uint32_t p = state.store().findDot(crdt::Dot{me, ref});
        if (p == Map::Store::kNone) continue;  // stale
        k.assign(state.store().keyAt(p));
        state.removeInto(delta, k);
        ++stored;
      }
      return delta;
    });
  }
  // The others were purged by another node (lost_), normally none.
  for (auto l = lost_.begin(); stored < c.live && l != lost_.end();) {
    if (keyParts(l->first).connection == connection) {
      l = lost_.erase(l);
      ++stored;
    } else {
      ++l;
    }
  }
  return c.live;
}

bool PresenceTracker::tracked(uint64_t connection, const std::string& topic, const std::string& key) const {
  return isTracked(object(self()), encodeKey(topic, key, connection));
}

// ---- the store's changes --------------------------------------------------------------------

const Map* PresenceTracker::object(ReplicaId id) const {
  const Value* v = store_.find(id == self() ? selfName_ : presenceObjectName(id));
  return v == nullptr ? nullptr : std::get_if<Map>(v);
}

bool PresenceTracker::visible(const Origin& o, ReplicaId id) const {
  return id == self() || (o.known && (o.status == OriginStatus::up || o.status == OriginStatus::suspect));
}

PresenceTracker::Origin& PresenceTracker::originOf(ReplicaId id) {
  auto [it, added] = origins_.try_emplace(id);
  if (added) {
    if (freeSlots_.empty()) {
      it->second.slot = static_cast<uint32_t>(originIds_.size());
      originIds_.push_back(id);
    } else {
      it->second.slot = freeSlots_.back();
      freeSlots_.pop_back();
      originIds_[it->second.slot] = id;
    }
  }
  return it->second;
}

PresenceTracker::Row PresenceTracker::makeRow(uint32_t slot, uint64_t ref, uint64_t previous, uint64_t connection,
                                              std::string_view meta) {
  Row r;
  r.refWord = ref | uint64_t{slot & 0xffff} << 48;
  if (previous >= kCounterBits) bigPrevious_[{slot, ref}] = previous;
  r.previousWord = std::min(previous, kCounterBits) | uint64_t{slot >> 16} << 48;
  r.connection = connection;
  r.meta = crdt::CompactString(meta);
  return r;
}

PresenceMeta PresenceTracker::metaOf(const Row& r) const {
  const ReplicaId origin = originIds_[r.slot()];
  uint64_t previous = r.previousWord & kCounterBits;
  if (previous == kCounterBits) previous = bigPrevious_.at({r.slot(), r.ref()});
  return PresenceMeta{PresenceRef{origin, r.ref()}, PresenceRef{previous == 0 ? ReplicaId{} : origin, previous},
                      r.connection, std::string(r.meta.view())};
}

template <typename Less>
void PresenceTracker::Rows::insert(Row r, Less&& less) {
  if (many() == nullptr) {
    auto v = std::make_unique<std::vector<Row>>();
    v->reserve(2);
    v->push_back(std::move(row_));
    row_ = Row{};
    row_.connection = reinterpret_cast<uintptr_t>(v.release());  // refWord 0: see Rows
  }
  std::vector<Row>& v = *many();
  v.insert(std::upper_bound(v.begin(), v.end(), r, less), std::move(r));
}

bool PresenceTracker::Rows::erase(const Row* which) {
  std::vector<Row>* v = many();
  if (v == nullptr) return true;
  v->erase(v->begin() + (which - v->data()));
  if (v->size() == 1) {
    Row last = std::move(v->front());
    delete v;
    row_ = std::move(last);
  }
  return false;
}

void PresenceTracker::show(ReplicaId, Origin& o, uint64_t ref, const KeyParts& e, uint64_t previous,
                           std::string_view meta) {
  Row row = makeRow(o.slot, ref, previous, e.connection, meta);
  events_.push_back(DiffEvent{std::string(e.topic), std::string(e.key), metaOf(row), false});
  const std::string place = rowPlace(e.topic, e.key);
  auto t = topics_.find(e.topic);
  if (t == topics_.end()) t = topics_.emplace(std::string(e.topic), TopicCount{}).first;
  auto at = rows_.lower_bound(std::string_view(place));
  if (at == rows_.end() || at->first.view() != place) {
    at = rows_.emplace_hint(at, crdt::CompactString(place), std::move(row));
    ++t->second.keys;
  } else {
    at->second.insert(std::move(row), [this](const Row& a, const Row& b) {
      return std::pair(originIds_[a.slot()], a.ref()) < std::pair(originIds_[b.slot()], b.ref());
    });
  }
  ++t->second.count;
  o.shown.insert(ref, at);
}

void PresenceTracker::hide(ReplicaId id, Origin& o, uint64_t ref, RowMap::iterator at, bool byOther) {
  o.shown.erase(ref);
  Rows& rows = at->second;
  const Row* r = nullptr;
  for (const Row& x : rows) {
    if (x.slot() == o.slot && x.ref() == ref) r = &x;
  }
  if (r == nullptr) return;  // (not reached: the index and the rows agree)
  // The place is varint(topic bytes) topic key.
  const std::string_view place = at->first.view();
  ColumnReader pr(reinterpret_cast<const unsigned char*>(place.data()), place.size(), "presence place");
  const std::string_view topic = pr.raw(pr.varint());
  const std::string_view key = pr.raw(pr.remaining());
  // This node's own entry removed by another node (a purge): its connection lives (the own
  // object holds tracked entries only), so remember its meta to track it again (tick()).
  if (id == self() && byOther && local_.count(r->connection) != 0) {
    lost_[encodeKey(std::string(topic), std::string(key), r->connection)] = std::string(r->meta.view());
  }
  events_.push_back(DiffEvent{std::string(topic), std::string(key), metaOf(*r), true});
  if ((r->previousWord & kCounterBits) == kCounterBits) bigPrevious_.erase({o.slot, ref});
  auto t = topics_.find(topic);
  --t->second.count;
  if (rows.erase(r)) {
    --t->second.keys;
    rows_.erase(at);
  }
  if (t->second.count == 0) topics_.erase(t);
}

void PresenceTracker::showAll(ReplicaId id, Origin& o) {
  const Map* m = object(id);
  if (m == nullptr) return;
  m->store().forEach([&](std::string_view k, crdt::Dot d, const crdt::Stamped<std::string>& v) {
    if (d.replica != id || o.shown.contains(d.counter)) return;
    auto [previous, meta] = valueParts(v.value);
    show(id, o, d.counter, keyParts(k), previous, meta);
  });
}

void PresenceTracker::hideAll(ReplicaId id, Origin& o) {
  std::vector<std::pair<uint64_t, RowMap::iterator>> all;
  all.reserve(o.shown.size());
  o.shown.forEach([&](uint64_t ref, RowMap::iterator at) { all.emplace_back(ref, at); });
  for (const auto& [ref, at] : all) hide(id, o, ref, at, false);
}

void PresenceTracker::onChange(const Change& c) {
  if (skipOwnChange_) return;  // track() shows its new entry itself
  const ReplicaId owner = presenceOwner(c.name);
  if (owner.value == 0) return;
  const Map* delta = std::get_if<Map>(&c.delta);
  if (delta == nullptr) return;  // check() refused such a remote one; a local write of ours never is
  Origin& o = originOf(owner);
  if (!visible(o, owner)) {  // shown again from the store when it is up
    if (o.status == OriginStatus::gone && !c.local()) refilled_.insert(owner);  // purged again by tick()
    return;
  }
  const Map* state = object(owner);
  // Leaves: shown rows whose dots the delta's context covers and the state no longer holds. The
  // covered counters are looked up one by one, or the shown refs scanned when there are fewer.
  if (const auto* covered = delta->context().find(owner); covered != nullptr && o.shown.size() != 0) {
    std::vector<std::pair<uint64_t, RowMap::iterator>> gone;
    auto left = [&](uint64_t ref) { return state == nullptr || !state->store().containsDot(crdt::Dot{owner, ref}); };
    uint64_t span = 0;
    for (const auto& i : covered->intervals) span += std::min<uint64_t>(i.hi - i.lo + 1, o.shown.size() + 1);
    if (span <= o.shown.size()) {
      for (const auto& i : covered->intervals) {
        for (uint64_t ref = i.lo;; ++ref) {
          if (const RowMap::iterator* at = o.shown.find(ref); at != nullptr && left(ref)) gone.emplace_back(ref, *at);
          if (ref == i.hi) break;
        }
      }
    } else {
      o.shown.forEach([&](uint64_t ref, RowMap::iterator at) {
        if (crdt::CausalContext::containsCounter(covered->intervals, ref) && left(ref)) gone.emplace_back(ref, at);
      });
    }
    for (const auto& [ref, at] : gone) hide(owner, o, ref, at, !c.local());
  }
  // Joins: the delta's entries the state holds and that are not shown yet.
  if (state == nullptr) return;
  delta->store().forEach([&](std::string_view k, crdt::Dot d, const crdt::Stamped<std::string>& v) {
    if (d.replica != owner || o.shown.contains(d.counter) || !state->store().containsDot(d)) return;
    auto [previous, meta] = valueParts(v.value);
    const KeyParts e = keyParts(k);
    show(owner, o, d.counter, e, previous, meta);
    // A new entry of ours on a live connection (update's new ref, a purged presence tracked
    // again, or our entries re-written under new dots by a refutation, gossip/object.h): its
    // connection holds the ref, so that close() finds it.
    if (owner == self() && local_.count(e.connection) != 0) remember(e.connection, d.counter);
  });
}

// ---- membership and time --------------------------------------------------------------------

void PresenceTracker::setStatus(ReplicaId id, OriginStatus s, uint64_t nowMs) {
  if (id == self()) return;
  Origin& o = originOf(id);
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
        freeSlots_.push_back(it->second.slot);  // (a gone origin shows no rows)
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
  // (Every entry of lost_ is tracked: untrack, close and update take theirs out.)
  for (const auto& [k, meta] : std::exchange(lost_, {})) {
    const Map* m = object(self());
    if (m != nullptr && m->contains(k)) continue;  // tracked again meanwhile (update)
    write(k, meta, 0);  // (onChange gives its connection the new ref)
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
  out.reserve(t->second.keys);
  const std::string prefix = rowPlace(topic, {});  // (every place of the topic starts so)
  for (auto at = rows_.lower_bound(std::string_view(prefix)); at != rows_.end(); ++at) {
    const std::string_view place = at->first.view();
    if (!place.starts_with(prefix)) break;
    const Rows& rows = at->second;
    std::vector<PresenceMeta> metas;
    metas.reserve(rows.size());
    for (const Row& r : rows) metas.push_back(metaOf(r));
    out.emplace_back(place.substr(prefix.size()), std::move(metas));
  }
  return out;
}

std::vector<PresenceMeta> PresenceTracker::get(const std::string& topic, const std::string& key) const {
  std::vector<PresenceMeta> out;
  auto at = rows_.find(std::string_view(rowPlace(topic, key)));
  if (at == rows_.end()) return out;
  for (const Row& r : at->second) out.push_back(metaOf(r));
  return out;
}

size_t PresenceTracker::count(const std::string& topic) const {
  auto t = topics_.find(topic);
  return t == topics_.end() ? 0 : t->second.count;
}

size_t PresenceTracker::keyCount(const std::string& topic) const {
  auto t = topics_.find(topic);
  return t == topics_.end() ? 0 : t->second.keys;
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
