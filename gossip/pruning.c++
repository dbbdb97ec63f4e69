#include "gossip/pruning.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <unordered_map>
#include <type_traits>
#include <utility>

#include "gossip/errors.h"
#include "gossip/presence.h"
#include "gossip/store.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

namespace {

// The dot-store kinds whose entries a marker re-homes (sets, maps, registers, flags).
template <typename T>
constexpr bool kDots = requires(const T& x) { x.store().dotAt(0); T::fromParts(x.store(), x.context()); };
// Every kind with a causal context (the above and the or-maps).
template <typename T>
constexpr bool kCausal = requires(const T& x) { x.context(); x.store(); };
template <typename T>
constexpr bool kCounter = std::is_same_v<T, crdt::GCounter> || std::is_same_v<T, crdt::PNCounter>;

std::pair<uint64_t, uint64_t> totalsOf(const crdt::GCounter& c, ReplicaId r) { return {c.get(r), 0}; }
std::pair<uint64_t, uint64_t> totalsOf(const crdt::PNCounter& c, ReplicaId r) {
  const auto e = c.get(r);
  return {e.increments, e.decrements};
}

bool addOverflows(uint64_t a, uint64_t b) { return a > std::numeric_limits<uint64_t>::max() - b; }

std::string hex16(ReplicaId r) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r.value));
  return buf;
}

std::optional<ReplicaId> parseHex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return ReplicaId{v};
}

}  // namespace

uint64_t traceOf(const Value& v, ReplicaId r) {
  return std::visit(
      [&](const auto& x) -> uint64_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (kCausal<T>) {
          const auto* o = x.context().find(r);
          if (o == nullptr) return 0;  // (every dot of the store is in the context)
          uint64_t h = 0x7a11;
          for (const auto& i : o->intervals) h = hashCombine(h, hashCombine(i.lo, i.hi));
          // Live entries: a dot names one write for good, so the dots say which entries live.
          uint64_t live = 0;
          x.store().forEachDot([&](crdt::Dot d) {
            if (d.replica == r) live += crdt::mix64(d.counter);
          });
          return hashCombine(h, live);
        } else if constexpr (kCounter<T>) {
          const auto [p, n] = totalsOf(x, r);
          return p == 0 && n == 0 ? 0 : hashCombine(hashCombine(0xc0, p), n);
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          uint64_t h = 0;
          for (const auto& [k, slot] : x) {
            const auto t = slot.totals.get(r);
            const auto f = slot.floors.get(r);
            if (t.increments == 0 && t.decrements == 0) continue;
            h += hashCombine(hashBytes(k), hashCombine(hashCombine(t.increments, t.decrements),
                                                        hashCombine(f.increments, f.decrements)));
          }
          return h;
        } else {
          return 0;  // registers keep their writer's id (a tie-break); tombstones hold nothing
        }
      },
      v);
}

bool mentions(const Value& v, ReplicaId r) {
  return std::visit(
      [&](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        if constexpr (kCausal<T>) {
          return x.context().find(r) != nullptr;
        } else if constexpr (kCounter<T>) {
          const auto [p, n] = totalsOf(x, r);
          return p != 0 || n != 0;
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          return traceOf(v, r) != 0;
        } else {
          return false;
        }
      },
      v);
}

std::string unprunable(const Value& v, ReplicaId r, ReplicaId pruner) {
  auto overflows = [](const crdt::PNCounter::Entry& a, const crdt::PNCounter::Entry& b) {
    return addOverflows(a.increments, b.increments) || addOverflows(a.decrements, b.decrements);
  };
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (kCounter<T>) {
          const auto [p, n] = totalsOf(x, r);
          const auto [sp, sn] = totalsOf(x, pruner);
          return addOverflows(sp, p) || addOverflows(sn, n) ? "the pruner's total would pass 2^64 - 1" : "";
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          for (const auto& [k, slot] : x) {
            if (overflows(slot.totals.get(r), slot.totals.get(pruner)) || overflows(slot.floors.get(r), slot.floors.get(pruner))) {
              return "the pruner's total of a key would pass 2^64 - 1";
            }
          }
          return {};
        } else {
          return {};
        }
      },
      v);
}

std::optional<PruneMarker::Object> markerPart(const std::string& name, const Value& v, ReplicaId r, ReplicaId self) {
  return std::visit(
      [&](const auto& x) -> std::optional<PruneMarker::Object> {
        using T = std::decay_t<decltype(x)>;
        PruneMarker::Object part{name};
        if constexpr (kCausal<T>) {
          x.store().forEachDot([&](crdt::Dot d) {
            if (d.replica == r) part.dots.push_back(d.counter);
          });
          if (part.dots.empty()) return std::nullopt;
          std::sort(part.dots.begin(), part.dots.end());
          part.base = x.context().max(self);
          if (part.base > crdt::kMaxDotCounter - part.dots.size()) {
            throw crdt::LimitError("pruning: the pruner's dot counter would pass its limit");
          }
          return part;
        } else if constexpr (kCounter<T>) {
          const auto [p, n] = totalsOf(x, r);
          if (p == 0 && n == 0) return std::nullopt;
          const auto [sp, sn] = totalsOf(x, self);
          part.increments = sp + p;  // (unprunable(): no overflow)
          part.decrements = sn + n;
          return part;
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          for (const auto& [k, slot] : x) {
            const auto t = slot.totals.get(r);
            if (t.increments == 0 && t.decrements == 0) continue;
            const auto f = slot.floors.get(r);
            const auto st = slot.totals.get(self);
            const auto sf = slot.floors.get(self);
            part.slots.push_back({k, st.increments + t.increments, st.decrements + t.decrements,
                                  sf.increments + f.increments, sf.decrements + f.decrements});
          }
          if (part.slots.empty()) return std::nullopt;
          return part;
        } else {
          return std::nullopt;
        }
      },
      v);
}

Value applyPart(const PruneMarker::Object& part, const Value& v, ReplicaId r, ReplicaId pruner) {
  return std::visit(
      [&](const auto& x) -> Value {
        using T = std::decay_t<decltype(x)>;
        if constexpr (kDots<T>) {
          using Store = typename T::Store;
          const auto& ctx = x.context();
          const auto& store = x.store();
          std::vector<std::pair<uint32_t, uint64_t>> moved;  // (position of r's entry, new counter)
          crdt::CausalContext out;
          for (size_t i = 0; i < part.dots.size(); ++i) {
            const crdt::Dot was{r, part.dots[i]};
            const crdt::Dot now{pruner, part.base + i + 1};
            if (ctx.contains(now)) continue;  // applied already (here, or it came from the pruner)
            if (const uint32_t p = store.findDot(was); p != Store::kNone) {
              moved.emplace_back(p, now.counter);
              out.add(was);
              out.add(now);
            } else if (ctx.contains(was)) {
              out.add(now);  // removed here: so is its new home
            }  // (never seen here: the pruner's write brings it)
          }
          if (out.empty()) return Value(T{});
          typename Store::Loader load(moved.size());
          if (!moved.empty()) {
            const uint32_t w = load.writer(pruner);
            for (const auto& [p, counter] : moved) load.add(w, counter, store.keyAt(p), store.valueAt(p));
          }
          auto loaded = std::move(load).finish();
          if (!std::holds_alternative<Store>(loaded)) throw std::logic_error("pruning: re-homed entries did not load");
          return Value(T::fromParts(std::get<Store>(std::move(loaded)), std::move(out)));
        } else if constexpr (kCausal<T>) {  // or-maps: r's entries sit in the keys' inner stores
          using Outer = typename T::Store;
          using Inner = typename Outer::Inner;
          using Key = typename T::Key;
          const auto& ctx = x.context();
          std::unordered_map<uint64_t, std::pair<const Key*, uint32_t>> at;  // r's counter -> (key, position)
          x.store().forEach([&](const Key& k, const Inner& inner) {
            for (uint32_t p = 0; p < inner.size(); ++p) {
              if (const crdt::Dot d = inner.dotAt(p); d.replica == r) at.emplace(d.counter, std::pair{&k, p});
            }
          });
          std::map<Key, Inner> moved;
          crdt::CausalContext out;
          for (size_t i = 0; i < part.dots.size(); ++i) {
            const crdt::Dot was{r, part.dots[i]};
            const crdt::Dot now{pruner, part.base + i + 1};
            if (ctx.contains(now)) continue;
            if (auto it = at.find(was.counter); it != at.end()) {
              const Inner& inner = *x.store().find(*it->second.first);
              moved[*it->second.first].insertNew(inner.keyAt(it->second.second), now, inner.valueAt(it->second.second));
              out.add(was);
              out.add(now);
            } else if (ctx.contains(was)) {
              out.add(now);
            }
          }
          if (out.empty()) return Value(T{});
          Outer store;
          for (auto& [k, inner] : moved) store.put(k, std::move(inner));
          return Value(T::fromParts(std::move(store), std::move(out)));
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          // Per key: the marker's sums, and our own r floors added to our pruner floors (see the
          // header), every half at most the folded totals.
          MapOfCounters out;
          for (const auto& s : part.slots) {
            MapOfCounters::Slot slot;
            const crdt::PNCounter::Entry mineT = x.totalsOf(s.key, pruner);
            const crdt::PNCounter::Entry totals{pruner, std::max(mineT.increments, s.increments),
                                                std::max(mineT.decrements, s.decrements)};
            crdt::PNCounter::Entry floors{pruner, s.floorIncrements, s.floorDecrements};
            if (auto it = x.find(s.key); it != x.end()) {
              const auto pf = it->second.floors.get(pruner);
              const auto rf = it->second.floors.get(r);
              floors.increments = std::max({floors.increments, pf.increments,
                                            addOverflows(pf.increments, rf.increments) ? UINT64_MAX : pf.increments + rf.increments});
              floors.decrements = std::max({floors.decrements, pf.decrements,
                                            addOverflows(pf.decrements, rf.decrements) ? UINT64_MAX : pf.decrements + rf.decrements});
            }
            floors.increments = std::min(floors.increments, totals.increments);
            floors.decrements = std::min(floors.decrements, totals.decrements);
            if (totals.increments == 0 && totals.decrements == 0) continue;
            slot.totals = crdt::PNCounter::fromEntries({&totals, 1});
            slot.floors = crdt::PNCounter::fromEntries({&floors, 1});
            out.insertSlot(s.key, std::move(slot));
          }
          return strip(Value(std::move(out)), v);  // only what adds to our state
        } else if constexpr (std::is_same_v<T, crdt::GCounter>) {
          if (x.get(pruner) >= part.increments) return Value(T{});
          const crdt::GCounter::Entry e{pruner, part.increments};
          return Value(crdt::GCounter::fromEntries({&e, 1}));
        } else if constexpr (std::is_same_v<T, crdt::PNCounter>) {
          const auto mine = x.get(pruner);
          if (mine.increments >= part.increments && mine.decrements >= part.decrements) return Value(T{});
          const crdt::PNCounter::Entry e{pruner, std::max(mine.increments, part.increments),
                                         std::max(mine.decrements, part.decrements)};
          return Value(crdt::PNCounter::fromEntries({&e, 1}));
        } else {
          return bottomOf(v.index());
        }
      },
      v);
}

void forget(Value& v, ReplicaId r) {
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (kCausal<T>) {
          const auto* o = x.context().find(r);
          if (o == nullptr) return;
          // Joining a removal of all of r's dots drops its entries (nested ones too).
          crdt::CausalContext all;
          for (const auto& i : o->intervals) all.addRange(r, i.lo, i.hi);
          x.join(T::fromParts(typename T::Store{}, std::move(all)));
          auto [store, ctx] = std::move(x).intoParts();
          ctx.eraseReplica(r);
          x = T::fromParts(std::move(store), std::move(ctx));
        } else if constexpr (kCounter<T>) {
          std::vector<typename T::Entry> kept;
          for (const auto& e : x) {
            if (e.replica != r) kept.push_back(e);
          }
          if (kept.size() != x.size()) x = T::fromEntries(kept);
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          if (traceOf(v, r) == 0) return;
          MapOfCounters out;
          for (const auto& [k, slot] : x) {
            MapOfCounters::Slot s;
            for (const auto& e : slot.totals) {
              if (e.replica != r) s.totals.join(crdt::PNCounter::fromEntries({&e, 1}));
            }
            for (const auto& e : slot.floors) {
              if (e.replica != r) s.floors.join(crdt::PNCounter::fromEntries({&e, 1}));
            }
            if (!s.totals.empty()) out.insertSlot(k, std::move(s));
          }
          x = std::move(out);
        }
      },
      v);
}

std::string encodePruneMarker(const PruneMarker& m) {
  std::string out;
  appendVarint(out, m.pruner.value);
  appendVarint(out, m.objects.size());
  for (const auto& o : m.objects) {
    appendVarint(out, o.name.size());
    out += o.name;
    appendVarint(out, o.base);
    // Ascending counters as runs of consecutive ones: (gap before the run, length - 1). A
    // replica's surviving entries are mostly runs, so a marker stays small.
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    uint64_t prev = 0;
    for (size_t i = 0; i < o.dots.size();) {
      size_t j = i;
      while (j + 1 < o.dots.size() && o.dots[j + 1] == o.dots[j] + 1) ++j;
      runs.emplace_back(o.dots[i] - prev, j - i);
      prev = o.dots[j];
      i = j + 1;
    }
    appendVarint(out, runs.size());
    for (const auto& [gap, extra] : runs) {
      appendVarint(out, gap);
      appendVarint(out, extra);
    }
    appendVarint(out, o.increments);
    appendVarint(out, o.decrements);
    appendVarint(out, o.slots.size());
    for (const auto& slot : o.slots) {
      appendVarint(out, slot.key.size());
      out += slot.key;
      for (uint64_t v : {slot.increments, slot.decrements, slot.floorIncrements, slot.floorDecrements}) appendVarint(out, v);
    }
  }
  return out;
}

PruneMarker decodePruneMarker(std::string_view bytes, uint64_t maxDots) {
  ColumnReader in(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "prune marker");
  PruneMarker m;
  m.pruner = ReplicaId{in.varint()};
  if (m.pruner.value == 0) in.fail("pruner id 0");
  const uint64_t n = in.varint();
  if (n > in.remaining()) in.fail("more objects than bytes");
  for (uint64_t i = 0; i < n; ++i) {
    PruneMarker::Object o;
    o.name = std::string(in.raw(in.varint()));
    o.base = in.varint();
    const uint64_t runs = in.varint();
    if (runs > in.remaining()) in.fail("more runs than bytes");
    uint64_t prev = 0;
    for (uint64_t j = 0; j < runs; ++j) {
      const uint64_t gap = in.varint();
      const uint64_t extra = in.varint();
      if (gap == 0 || gap > crdt::kMaxDotCounter - prev || extra > crdt::kMaxDotCounter - prev - gap) {
        in.fail("dots not ascending within 1..2^48-1");
      }
      if (o.dots.size() + extra >= maxDots) in.fail("more dots than a store may hold");
      for (uint64_t c = prev + gap; c <= prev + gap + extra; ++c) o.dots.push_back(c);
      prev += gap + extra;
    }
    if (o.base > crdt::kMaxDotCounter - o.dots.size()) in.fail("re-homed dots past the counter limit");
    o.increments = in.varint();
    o.decrements = in.varint();
    const uint64_t slots = in.varint();
    if (slots > in.remaining()) in.fail("more keys than bytes");
    for (uint64_t j = 0; j < slots; ++j) {
      PruneMarker::Slot slot;
      slot.key = std::string(in.raw(in.varint()));
      slot.increments = in.varint();
      slot.decrements = in.varint();
      slot.floorIncrements = in.varint();
      slot.floorDecrements = in.varint();
      if (slot.floorIncrements > slot.increments || slot.floorDecrements > slot.decrements) in.fail("a floor above its total");
      if (!o.slots.empty() && o.slots.back().key >= slot.key) in.fail("keys not ascending");
      o.slots.push_back(std::move(slot));
    }
    if (!m.objects.empty() && m.objects.back().name >= o.name) in.fail("object names not ascending");
    m.objects.push_back(std::move(o));
  }
  in.expectEnd();
  return m;
}

std::string prunedError(ReplicaId r) {
  return "replica " + std::to_string(r.value) +
         " was pruned from the cluster (gone for longer than the pruning horizon): it must restart under a new id "
         "(a new data directory)";
}

std::string goneKey(ReplicaId r) { return "gone/" + hex16(r); }
std::string voteKey(ReplicaId r, ReplicaId voter) { return "vote/" + hex16(r) + "/" + hex16(voter); }
std::string doneKey(ReplicaId r) { return "done/" + hex16(r); }

std::optional<PruneKey> parsePruneKey(std::string_view key) {
  const std::string_view head = key.substr(0, 5);
  if (head == "vote/") {
    if (key.size() != 5 + 16 + 1 + 16 || key[21] != '/') return std::nullopt;
    auto r = parseHex16(key.substr(5, 16));
    auto voter = parseHex16(key.substr(22));
    if (!r || !voter) return std::nullopt;
    return PruneKey{PruneKey::vote, *r, *voter};
  }
  PruneKey::Kind kind;
  if (head == "gone/") {
    kind = PruneKey::gone;
  } else if (head == "done/") {
    kind = PruneKey::done;
  } else {
    return std::nullopt;
  }
  auto r = parseHex16(key.substr(5));
  if (!r) return std::nullopt;
  return PruneKey{kind, *r, ReplicaId{}};
}

std::optional<ReplicaId> doneOf(std::string_view key) {
  auto k = parsePruneKey(key);
  if (!k || k->kind != PruneKey::done) return std::nullopt;
  return k->replica;
}

void checkPruneObject(const std::string& name, const Value& delta) {
  if (name != kPruneObject) throw ProtocolError("object '" + name + "': names starting with '$prune' are reserved");
  if (isTombstone(delta)) throw ProtocolError("object '$prune' cannot be deleted");
  const Map* m = std::get_if<Map>(&delta);
  if (m == nullptr) throw ProtocolError(std::string("object '$prune' must be an aw-lww-map, not a ") + kindName(delta));
  std::string error;
  m->store().forEach([&](std::string_view key, crdt::Dot, const auto& stamped) {
    if (!error.empty()) return;
    const auto k = parsePruneKey(key);
    if (!k) {
      error = "object '$prune': unknown key (" + std::to_string(key.size()) + " bytes)";
    } else if (k->kind == PruneKey::done) {
      try {
        decodePruneMarker(stamped.value);
      } catch (const DecodeError& e) {
        error = "object '$prune': key '" + std::string(key) + "': " + e.what();
      }
    }
  });
  if (!error.empty()) throw ProtocolError(error);
}

void Pruner::write(const std::string& key, const std::string* value) {
  const ReplicaId self = store_.self();
  store_.update<Map>(std::string(kPruneObject), [&](Map& m) {
    return value != nullptr ? m.set(self, key, *value, crdt::Timestamp{}) : m.remove(key);
  });
}

void Pruner::step(const Membership& membership, uint64_t wallMs) {
  if (config_.pruneAfterMs == 0) return;
  const ReplicaId self = store_.self();

  // What "$prune" says.
  struct Gone {
    uint64_t since = 0;  // wall ms
    bool left = false;   // it left (not down: it cannot be the far side of a partition)
  };
  std::map<ReplicaId, Gone> gone;
  std::map<ReplicaId, std::map<ReplicaId, uint64_t>> votes;  // r -> voter -> digest
  std::map<ReplicaId, std::vector<std::string>> keysOf;   // r -> its gone and vote keys
  const Value* object = store_.find(std::string(kPruneObject));
  if (const Map* marks = object != nullptr ? std::get_if<Map>(object) : nullptr) {
    marks->forEach([&](std::string_view key, const std::string& value) {
      const auto k = parsePruneKey(key);
      if (!k || k->kind == PruneKey::done) return;
      if (k->kind == PruneKey::gone) {
        gone[k->replica] = Gone{std::strtoull(value.c_str(), nullptr, 10), value.ends_with(" left")};
      } else {
        votes[k->replica][k->voter] = std::strtoull(value.c_str(), nullptr, 16);
      }
      keysOf[k->replica].emplace_back(key);
    });
  }

  // 1. Gone marks: added for removed and left members, withdrawn for live ones.
  std::vector<ReplicaId> voters{self};  // this node and the members alive, suspect or down here
  membership.forEachMember([&](const MemberInfo& m) {
    const bool out = m.removed || m.state == MemberState::left;
    // (A pruned replica that came back may be alive in the table for a while: its messages are
    // refused, so it is soon down again. It never votes.)
    if (!out && !store_.forgotten(m.id)) voters.push_back(m.id);
    if (out && !gone.count(m.id) && !store_.forgotten(m.id)) {
      const bool left = m.state == MemberState::left;
      const std::string since = std::to_string(wallMs) + (left ? " left" : "");
      write(goneKey(m.id), &since);
      gone[m.id] = Gone{wallMs, left};
    } else if (!out && m.state != MemberState::down && gone.count(m.id)) {
      for (const auto& key : keysOf[m.id]) write(key, nullptr);  // it is back
      gone.erase(m.id);
    }
  });
  if (gone.count(self)) {
    for (const auto& key : keysOf[self]) write(key, nullptr);  // we are here
    gone.erase(self);
  }
  for (auto& [r, keys] : keysOf) {
    if (!store_.forgotten(r)) continue;
    for (const auto& key : keys) write(key, nullptr);  // a vote that came after the pruning
    keys.clear();
    gone.erase(r);
  }

  // 2. Votes on the replicas gone for pruneAfterMs that are not live here.
  bool young = false;
  std::vector<ReplicaId> due;
  for (const auto& [r, mark] : gone) {
    if (wallMs < mark.since || wallMs - mark.since < config_.pruneAfterMs) {
      young = young || !mark.left;
    } else if (std::find(voters.begin(), voters.end(), r) == voters.end() && !store_.forgotten(r)) {
      due.push_back(r);
    }
  }
  stats_.blocked.clear();
  if (due.empty()) return;
  std::sort(voters.begin(), voters.end());
  const bool pruner = voters.front() == self;
  // One scan of the state for all of them: each one's digest and, if any, why it cannot be pruned.
  std::vector<uint64_t> digests(due.size(), 0x9a11);
  std::vector<std::string> whys(due.size());
  for (const auto& [name, v] : store_.objects()) {
    const uint64_t nameHash = hashBytes(name);
    for (size_t i = 0; i < due.size(); ++i) {
      const ReplicaId r = due[i];
      if (const uint64_t t = traceOf(v, r); t != 0) digests[i] += hashCombine(nameHash, t);
      if (whys[i].empty()) {
        if (std::string u = unprunable(v, r, self); !u.empty()) whys[i] = "object '" + name + "': " + u;
      }
      // A presence object holds its owner's dots alone (presence.h): r's is never re-homed, so
      // pruning waits until the tracker purged r's presences (after permdownMs).
      if (whys[i].empty() && presenceOwner(name) == r && markerPart(name, v, r, self)) {
        whys[i] = "its presences are not purged yet (they are, permdownMs after it went down)";
      }
    }
  }
  for (size_t i = 0; i < due.size(); ++i) {
    const ReplicaId r = due[i];
    const uint64_t digest = digests[i];
    const std::string& why = whys[i];
    char hex[17];
    std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(digest));
    if (auto it = votes[r].find(self); it == votes[r].end() || it->second != digest) {
      const std::string mine = hex;
      write(voteKey(r, self), &mine);
      votes[r][self] = digest;
      keysOf[r].push_back(voteKey(r, self));
    }
    // 3. The pruner decides.
    if (!pruner) continue;
    if (!why.empty()) {
      stats_.blocked = "replica " + hex16(r) + " cannot be pruned: " + why;
      continue;
    }
    if (young) {
      stats_.blocked = "replica " + hex16(r) + " waits: another replica was marked gone less than pruneAfterMs ago";
      continue;
    }
    const auto& theirs = votes[r];
    const bool agreed = std::all_of(voters.begin(), voters.end(), [&](ReplicaId n) {
      auto it = theirs.find(n);
      return it != theirs.end() && it->second == digest;
    });
    if (!agreed) {
      stats_.blocked = "replica " + hex16(r) + " waits for the members' votes to agree";
      continue;
    }
    if (std::string refused = prune(r, keysOf[r]); !refused.empty()) {
      stats_.blocked = "replica " + hex16(r) + " cannot be pruned: " + refused;
    }
  }
}

std::string Pruner::prune(ReplicaId r, const std::vector<std::string>& cleanup) {
  const ReplicaId self = store_.self();
  PruneMarker marker{self, {}};
  for (const auto& [name, v] : store_.objects()) {
    if (auto part = markerPart(name, v, r, self)) {
      if (part->dots.size() > kMaxMarkerDots) return "object '" + name + "' holds more than 2^24 of its entries";
      marker.objects.push_back(std::move(*part));
    }
  }
  const std::string done = encodePruneMarker(marker);
  if (done.size() > maxValueBytes_) {
    return "its marker would take " + std::to_string(done.size()) + " bytes, more than limits.maxValueBytes (" +
           std::to_string(maxValueBytes_) + "): its entries are too scattered";
  }
  store_.beginUnit();
  try {
    for (const auto& key : cleanup) write(key, nullptr);
    write(doneKey(r), &done);
    store_.learnPruned();  // in the unit: peers get the mark and our writes that apply it together
  } catch (...) {
    store_.endUnit();
    throw;
  }
  store_.endUnit();
  ++stats_.pruned;
  return {};
}

}  // namespace deltasync::gossip
