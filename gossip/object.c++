#include "gossip/object.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace deltasync::gossip {

uint64_t hashBytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return crdt::mix64(h);
}
uint64_t hashCombine(uint64_t a, uint64_t b) { return crdt::mix64(a * 0x9e3779b97f4a7c15ULL + b); }

namespace {

// The state as the delta's kind T: nullptr when there is none or it is of another kind.
template <typename T>
const T* stateAs(const Value* state) {
  return state != nullptr ? std::get_if<T>(state) : nullptr;
}

constexpr const char* kNames[] = {"g-counter", "pn-counter", "lww-register", "mv-register", "ew-flag",
                                  "or-set",    "aw-lww-map", "or-map",       "deleted",     "or-map-of-sets",
                                  "map-of-counters"};
static_assert(std::size(kNames) == kKindCount);

template <size_t... I>
Value bottomOfImpl(size_t kind, std::index_sequence<I...>) {
  Value out;
  ((kind == I ? (out.emplace<I>(), 0) : 0), ...);
  return out;
}

// (Callers have dealt with tombstones.)
void requireSameKind(const Value& a, const Value& b) {
  if (a.index() != b.index()) {
    throw KindMismatch(std::string("object kinds differ: ") + kindName(a) + " vs " + kindName(b));
  }
}


uint64_t hashScalar(std::string_view s) { return hashBytes(s); }
uint64_t hashScalar(const std::monostate&) { return 0x5151; }
uint64_t hashScalar(const crdt::Empty&) { return 0x6161; }
template <typename V>
uint64_t hashScalar(const crdt::Stamped<V>& s) {
  return hashCombine(s.ts.value, hashScalar(s.value));
}

uint64_t hashContext(const crdt::CausalContext& c) {
  uint64_t h = 0x1234;  // intervals are canonical (sorted, maximal), so a running hash is fine
  c.forEachInterval([&](crdt::ReplicaId r, crdt::Interval i) {
    h = hashCombine(h, hashCombine(r.value, hashCombine(i.lo, i.hi)));
  });
  return h;
}

// Entries are unordered: a sum of per-entry hashes (dots are unique, so no entry cancels).
template <typename K, typename V>
uint64_t hashStore(const crdt::DotStore<K, V>& s) {
  uint64_t sum = 0;
  s.forEach([&](const auto& k, crdt::Dot d, const V& v) {
    sum += hashCombine(hashCombine(hashScalar(k), hashCombine(d.replica.value, d.counter)), hashScalar(v));
  });
  return hashCombine(s.size(), sum);
}
template <typename K, typename T>
uint64_t hashStore(const crdt::ORMapStore<K, T>& s) {
  uint64_t sum = 0;
  s.forEach([&](const K& k, const auto& inner) { sum += hashCombine(hashScalar(k), hashStore(inner)); });
  return hashCombine(s.size(), sum);
}

}  // namespace

crdt::Timestamp latestStamp(const Value& v) {
  return std::visit(
      [](const auto& x) -> crdt::Timestamp {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
          return x.timestamp();
        } else if constexpr (std::is_same_v<T, Map>) {
          return x.latest();
        } else if constexpr (std::is_same_v<T, crdt::ORMap<std::string, Map>>) {
          crdt::Timestamp t{};
          x.store().forEach([&](const std::string&, const Map::Store& inner) { t = std::max(t, crdt::latestStamp(inner)); });
          return t;
        } else {
          return crdt::Timestamp{};
        }
      },
      v);
}

bool claimsUnminted(const Value& delta, const Value* state, crdt::ReplicaId self) {
  return std::visit(
      [&](const auto& d) {
        using T = std::decay_t<decltype(d)>;
        const T* s = stateAs<T>(state);
        if constexpr (std::is_same_v<T, crdt::GCounter>) {
          return d.get(self) > (s ? s->get(self) : 0);
        } else if constexpr (std::is_same_v<T, crdt::PNCounter>) {
          const auto mine = s ? s->get(self) : crdt::PNCounter::Entry{self, 0, 0};
          const auto theirs = d.get(self);
          return theirs.increments > mine.increments || theirs.decrements > mine.decrements;
        } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>> || std::is_same_v<T, Tombstone>) {
          return false;
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          // Per key, as for the PN-counter (a floor never exceeds its totals: valid()).
          for (const auto& [k, slot] : d) {
            const auto theirs = slot.totals.get(self);
            const auto mine = s != nullptr ? s->totalsOf(k, self) : crdt::PNCounter::Entry{self, 0, 0};
            if (theirs.increments > mine.increments || theirs.decrements > mine.decrements) return true;
          }
          return false;
        } else {
          return d.context().max(self) > (s ? s->context().max(self) : 0);
        }
      },
      delta);
}

namespace {

// The kinds that refute: dot stores at the top level.
template <typename T>
constexpr bool kRefutes = requires(const T& x) { x.store().dotAt(0); T::fromParts(x.store(), x.context()); };
// ... and the or-maps, whose nested stores are dot stores.
template <typename T>
constexpr bool kRefutesNested = requires(const T& x) {
  typename T::Store::Inner;
  x.store().forEach([](const auto&, const auto&) {});
  T::fromParts(x.store(), x.context());
};
// The kinds that adopt a claim on this replica's counts instead (object.h, "Refutation").
template <typename T>
constexpr bool kCounts =
    std::is_same_v<T, crdt::GCounter> || std::is_same_v<T, crdt::PNCounter> || std::is_same_v<T, MapOfCounters>;

// (greatest dot of self in state, greatest claimed by delta) for the kinds that refute.
template <typename T>
std::pair<uint64_t, uint64_t> claimOf(const T& d, const Value* state, crdt::ReplicaId self) {
  const T* s = stateAs<T>(state);
  return {s != nullptr ? s->context().max(self) : 0, d.context().max(self)};
}

// This replica's entries of `store` that `d` removes (its context covers their dots and its store
// lacks them), as a store of the same type under the fresh dots next + 1, next + 2, ... (next is
// advanced past them), with their keys, values and stamps.
template <typename Store, typename Delta>
Store rehomeLost(const Store& store, const Delta& d, crdt::ReplicaId self, uint64_t& next) {
  std::vector<uint32_t> lost;
  for (uint32_t p = 0; p < store.size(); ++p) {
    const crdt::Dot dot = store.dotAt(p);
    if (dot.replica == self && d.context().contains(dot) && !d.store().containsDot(dot)) lost.push_back(p);
  }
  typename Store::Loader load(lost.size());
  if (!lost.empty()) {
    const uint32_t w = load.writer(self);
    for (uint32_t p : lost) load.add(w, ++next, store.keyAt(p), store.valueAt(p));
  }
  auto loaded = std::move(load).finish();
  if (!std::holds_alternative<Store>(loaded)) throw std::logic_error("refute: re-homed entries did not load");
  return std::get<Store>(std::move(loaded));
}

// The entries a refutation may re-home: every entry of the state.
template <typename T>
uint64_t entriesOf(const T* s) {
  if (s == nullptr) return 0;
  if constexpr (kRefutesNested<T>) {
    uint64_t n = 0;
    s->store().forEach([&](const auto&, const auto& inner) { n += inner.size(); });
    return n;
  } else {
    return s->store().size();
  }
}

}  // namespace

bool adoptsClaims(const Value& delta) {
  return std::visit([](const auto& d) { return kCounts<std::decay_t<decltype(d)>>; }, delta);
}

bool refutable(const Value& delta, const Value* state, crdt::ReplicaId self) {
  return std::visit(
      [&](const auto& d) {
        using T = std::decay_t<decltype(d)>;
        if constexpr (kCounts<T>) {
          return claimsUnminted(delta, state, self);  // adopted: see object.h
        } else if constexpr (kRefutes<T> || kRefutesNested<T>) {
          const auto [mine, claimed] = claimOf(d, state, self);
          // (and room past the claim for every entry of ours that may need a new dot)
          const uint64_t ours = entriesOf(stateAs<T>(state));
          return claimed > mine && claimed - mine <= kMaxDotLead && claimed <= crdt::kMaxDotCounter - ours;
        } else {
          return false;
        }
      },
      delta);
}

Value refute(const Value& delta, const Value* state, crdt::ReplicaId self) {
  return std::visit(
      [&](const auto& d) -> Value {
        using T = std::decay_t<decltype(d)>;
        if constexpr (kCounts<T>) {
          // Nothing to write: joining the delta adopts the claimed totals as our own.
          if (!refutable(delta, state, self)) throw std::logic_error("refute: not refutable");
          return Value(T{});
        } else if constexpr (kRefutes<T> || kRefutesNested<T>) {
          if (!refutable(delta, state, self)) throw std::logic_error("refute: not refutable");
          const uint64_t claimed = claimOf(d, state, self).second;
          // Our entries the delta removes, re-homed (an or-map's key by key, under the same keys).
          const T* s = stateAs<T>(state);
          typename T::Store store;
          uint64_t next = claimed;
          if constexpr (kRefutesNested<T>) {
            if (s != nullptr) {
              s->store().forEach([&](const auto& key, const auto& inner) {
                auto moved = rehomeLost(inner, d, self, next);
                if (!moved.empty()) store.put(key, std::move(moved));
              });
            }
          } else if (s != nullptr) {
            store = rehomeLost(s->store(), d, self, next);
          }
          crdt::CausalContext ctx;
          if (next > claimed) ctx.addRange(self, claimed + 1, next);
          return Value(T::fromParts(std::move(store), std::move(ctx)));
        } else {
          throw std::logic_error("refute: not refutable");
        }
      },
      delta);
}

std::string claimTooFar(const Value& delta, const Value* state) {
  return std::visit(
      [&](const auto& d) -> std::string {
        using T = std::decay_t<decltype(d)>;
        if constexpr (requires { d.context().origins(); }) {
          const T* s = stateAs<T>(state);
          for (const auto& o : d.context().origins()) {
            if (o.intervals.empty()) continue;
            const uint64_t claimed = o.intervals.back().hi;
            const uint64_t known = s != nullptr ? s->context().max(o.replica) : 0;
            if (claimed > known && claimed - known > kMaxDotLead) {
              return "claims dots of replica " + std::to_string(o.replica.value) + " up to " + std::to_string(claimed) +
                     ", more than 2^32 beyond the " + std::to_string(known) + " known here (forged?)";
            }
          }
        }
        return {};
      },
      delta);
}

const char* kindName(size_t kind) { return kind < kKindCount ? kNames[kind] : "unknown"; }

Value bottomOf(size_t kind) { return bottomOfImpl(kind, std::make_index_sequence<kKindCount>{}); }

bool isBottom(const Value& v) {
  return std::visit([](const auto& x) { return x.empty(); }, v);
}

size_t memoryBytes(const Value& v) {
  return std::visit(
      [](const auto& x) -> size_t {
        if constexpr (requires { x.memoryBytes(); }) {
          return x.memoryBytes();
        } else {
          return sizeof(x);
        }
      },
      v);
}

void joinInto(Value& state, const Value& delta) {
  if (isTombstone(state)) return;
  if (isTombstone(delta)) {
    state = Tombstone{};
    return;
  }
  requireSameKind(state, delta);
  std::visit(
      [&](auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (!std::is_same_v<T, Tombstone>) s.join(std::get<T>(delta));
      },
      state);
}

Value strip(const Value& delta, const Value& state) {
  if (isTombstone(state)) return isTombstone(delta) ? bottomOf(0) : bottomOf(delta.index());
  if (isTombstone(delta)) return delta;
  requireSameKind(delta, state);
  return std::visit(
      [&](const auto& d) -> Value {
        using T = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<T, Tombstone>) {
          return d;
        } else {
          return strip(d, std::get<T>(state));
        }
      },
      delta);
}

uint64_t contentHash(const Value& v) {
  return std::visit(
      [&](const auto& x) -> uint64_t {
        using T = std::decay_t<decltype(x)>;
        uint64_t h = v.index() + 1;
        if constexpr (std::is_same_v<T, crdt::GCounter>) {
          for (const auto& e : x) h = hashCombine(h, hashCombine(e.replica.value, e.count));
        } else if constexpr (std::is_same_v<T, crdt::PNCounter>) {
          for (const auto& e : x) {
            h = hashCombine(h, hashCombine(e.replica.value, hashCombine(e.increments, e.decrements)));
          }
        } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
          if (x.get() != nullptr) {
            h = hashCombine(h, hashCombine(x.timestamp().value, hashCombine(x.writer().value, hashBytes(*x.get()))));
          }
        } else if constexpr (std::is_same_v<T, Tombstone>) {
          h = hashCombine(h, 0xdead);
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          for (const auto& [k, slot] : x) {  // in key order
            h = hashCombine(h, hashBytes(k));
            for (const auto& e : slot.totals) h = hashCombine(h, hashCombine(e.replica.value, hashCombine(e.increments, e.decrements)));
            h = hashCombine(h, 0xf1005);
            for (const auto& e : slot.floors) h = hashCombine(h, hashCombine(e.replica.value, hashCombine(e.increments, e.decrements)));
          }
        } else {
          h = hashCombine(h, hashCombine(hashContext(x.context()), hashStore(x.store())));
        }
        return h;
      },
      v);
}

}  // namespace deltasync::gossip
