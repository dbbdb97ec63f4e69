// crdt/ values <-> gossip/wire.capnp, validating on decode.
//
// Decoders treat their input as hostile: every count, length, id (never 0) and dot is checked
// against gossip/limits.h and against the CRDT's invariants (a store's dots lie inside its context,
// no dot twice, counters in 1..2^48-1, ids strictly increasing, column kinds as expected, columns
// consumed exactly; entries under one key within limits.maxEntriesPerKey and maxSameKeyPairs)
// before the value is returned, in time linear in the input whatever its keys (see
// DotStore::Loader; expected over the dot stores' secret hash seed, crdt/flat-index.h, which a
// peer cannot choose keys or dots against). A violation throws DecodeError naming what was
// wrong; the decoded value is built on the side, so nothing is applied to any state.
//
// Include this header only where messages are built or read: it pulls in generated capnp code.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crdt/aw-lww-map.h"
#include "crdt/causal-context.h"
#include "crdt/counter-map.h"
#include "crdt/dot-store.h"
#include "crdt/ew-flag.h"
#include "crdt/g-counter.h"
#include "crdt/lww-register.h"
#include "crdt/mv-register.h"
#include "crdt/or-map.h"
#include "crdt/or-set.h"
#include "crdt/pn-counter.h"
#include "gossip/errors.h"
#include "gossip/limits.h"
#include "gossip/split.h"
#include "gossip/varint.h"
#include "gossip/wire.capnp.h"

namespace deltasync::gossip {

void encode(const crdt::CausalContext& c, wire::CausalContext::Builder out);
crdt::CausalContext decode(wire::CausalContext::Reader in, const Limits& limits);

// The dot-set blob of the compact offer and request (wire.capnp: Envelope.compact): per origin,
// in strictly increasing replica order, a byte: 0 for the implicit origin (the message's sender,
// nonzero), or 1 followed by the 8-byte id (never the implicit one); then the runs as in
// DotSummary.dots.
void encodeDots(const crdt::CausalContext& c, ColumnWriter& out, crdt::ReplicaId implicit);
crdt::CausalContext decodeDots(const unsigned char* data, size_t size, const Limits& limits, crdt::ReplicaId implicit);

void encode(const crdt::GCounter& c, wire::GCounter::Builder out);
crdt::GCounter decode(wire::GCounter::Reader in, const Limits& limits);

void encode(const crdt::PNCounter& c, wire::PNCounter::Builder out);
crdt::PNCounter decode(wire::PNCounter::Reader in, const Limits& limits);

// A map of counters (wire.capnp CounterMapState): keys strictly increasing, within limits, each
// slot valid (crdt::CounterMap::valid).
void encode(const crdt::CounterMap<std::string>& m, wire::CounterMapState::Builder out);
crdt::CounterMap<std::string> decode(wire::CounterMapState::Reader in, const Limits& limits);

namespace _ {

// An origin's intervals as (gap, span) varint pairs (wire.capnp, CausalContext.Origin.runs).
void writeRuns(const crdt::Intervals& intervals, ColumnWriter& out);
// Reads one (gap, span) pair into c; `next` (the lowest counter the interval may start at,
// 1 for an origin's first) as in writeRuns. Validates the bounds.
void readRun(ColumnReader& in, crdt::ReplicaId replica, uint64_t& next, crdt::CausalContext& c);

inline capnp::Data::Reader asData(const ColumnWriter& w) {
  return capnp::Data::Reader(w.bytes().data(), w.bytes().size());
}
inline ColumnReader reader(capnp::Data::Reader d, const char* column) {
  return ColumnReader(d.begin(), d.size(), column);
}

// How one scalar type travels in key and value columns (see ScalarKind in wire.capnp).
template <typename T>
struct Scalar;

template <>
struct Scalar<int64_t> {
  static constexpr wire::ScalarKind kKind = wire::ScalarKind::INT64;
  struct KeyState {
    int64_t prev = 0;
  };
  static void writeKey(ColumnWriter& w, KeyState& st, int64_t k) {
    // Wrapping difference: any two int64 keys differ by a representable uint64.
    w.varint(zigzag(static_cast<int64_t>(static_cast<uint64_t>(k) - static_cast<uint64_t>(st.prev))));
    st.prev = k;
  }
  static int64_t readKey(ColumnReader& r, KeyState& st, const Limits&) {
    st.prev = static_cast<int64_t>(static_cast<uint64_t>(st.prev) +
                                   static_cast<uint64_t>(r.signedVarint()));
    return st.prev;
  }
  static void writeValue(ColumnWriter& w, int64_t v) { w.signedVarint(v); }
  static int64_t readValue(ColumnReader& r, const Limits&) { return r.signedVarint(); }
};

template <>
struct Scalar<std::string> {
  static constexpr wire::ScalarKind kKind = wire::ScalarKind::TEXT;
  struct KeyState {
    std::string prev;
  };
  static void writeKey(ColumnWriter& w, KeyState& st, std::string_view k) {
    size_t shared = 0;
    size_t most = std::min(k.size(), st.prev.size());
    while (shared < most && k[shared] == st.prev[shared]) ++shared;
    w.varint(shared);
    w.varint(k.size() - shared);
    w.raw(k.substr(shared));
    st.prev.assign(k);
  }
  static std::string_view readKey(ColumnReader& r, KeyState& st, const Limits& limits) {
    uint64_t shared = r.varint();
    uint64_t suffix = r.varint();
    if (shared > st.prev.size()) r.fail("shared prefix longer than the previous key");
    if (suffix > limits.maxKeyBytes || shared + suffix > limits.maxKeyBytes) {
      r.fail("key longer than limits.maxKeyBytes");
    }
    std::string_view tail = r.raw(suffix);
    st.prev.resize(shared);
    st.prev.append(tail);
    return st.prev;
  }
  static void writeValue(ColumnWriter& w, std::string_view v) {
    w.varint(v.size());
    w.raw(v);
  }
  static std::string readValue(ColumnReader& r, const Limits& limits) {
    uint64_t n = r.varint();
    if (n > limits.maxValueBytes) r.fail("value longer than limits.maxValueBytes");
    return std::string(r.raw(n));
  }
};

// Payload-free keys and values.
template <typename Unit>
struct UnitScalar {
  static constexpr wire::ScalarKind kKind = wire::ScalarKind::NONE;
  struct KeyState {};
  static void writeKey(ColumnWriter&, KeyState&, const Unit&) {}
  static Unit readKey(ColumnReader&, KeyState&, const Limits&) { return Unit{}; }
  static void writeValue(ColumnWriter&, const Unit&) {}
  static Unit readValue(ColumnReader&, const Limits&) { return Unit{}; }
};
template <>
struct Scalar<crdt::Empty> : UnitScalar<crdt::Empty> {};
template <>
struct Scalar<std::monostate> : UnitScalar<std::monostate> {};

// A store value: plain, or Stamped (AWLWWMap) whose timestamps go to their own column.
template <typename V>
struct ValueColumns {
  using S = Scalar<V>;
  static constexpr wire::ScalarKind kKind = S::kKind;
  static constexpr bool kStamped = false;
  static void write(ColumnWriter& values, ColumnWriter&, uint64_t&, const V& v) { S::writeValue(values, v); }
  static V read(ColumnReader& values, ColumnReader&, uint64_t&, const Limits& l) { return S::readValue(values, l); }
};
template <typename V>
struct ValueColumns<crdt::Stamped<V>> {
  using S = Scalar<V>;
  static constexpr wire::ScalarKind kKind = S::kKind;
  static constexpr bool kStamped = true;
  static void write(ColumnWriter& values, ColumnWriter& ts, uint64_t& prevTs, const crdt::Stamped<V>& v) {
    S::writeValue(values, v.value);
    ts.varint(zigzag(static_cast<int64_t>(v.ts.value - prevTs)));
    prevTs = v.ts.value;
  }
  static crdt::Stamped<V> read(ColumnReader& values, ColumnReader& ts, uint64_t& prevTs, const Limits& l) {
    V v = S::readValue(values, l);
    prevTs += static_cast<uint64_t>(unzigzag(ts.varint()));
    return crdt::Stamped<V>{crdt::Timestamp{prevTs}, std::move(v)};
  }
};

// Reads a dot store's keys column, as the Scalar<K> reader would, and writes each key into an
// entry of the store (the key type the store keeps, DotStore<K, V>::Loader::Stored): read() per
// entry, then the reader itself is the Loader::addWith maker that stores it.
template <typename K>
class StoreKeys {
 public:
  using Stored = typename crdt::DotStore<K, crdt::Empty>::Loader::Stored;
  StoreKeys(const Limits& limits, std::string& /*scratch*/) : limits_(limits) {}
  void read(ColumnReader& r) { key_ = Scalar<K>::readKey(r, state_, limits_); }
  void operator()(Stored& key) const { key = Stored(key_); }

 private:
  typename Scalar<K>::KeyState state_;
  K key_{};
  const Limits& limits_;
};

// String keys (prefix-coded, as Scalar<std::string>) straight into crdt::CompactString. A key of
// up to 15 bytes whose predecessor was one too, the common case, is built in registers as its
// canonical inline form (two words): the previous key's first `shared` bytes, then the 16 column
// bytes that start `shared` bytes before the suffix (so the suffix lands at its offset in the key
// without a shift), masked to the key's length, and the length byte; the two words are then
// stored into the entry as they are. Through a std::string and CompactString's byte-wise
// constructor this cost about 50 instructions per key, with 128-bit shifts about as many, and a
// CompactString temporary stalled on store forwarding (bench/RESULTS.md, session 6); so did the
// two words when kept in memory (the compiler loaded them as one 16-byte value), which is why
// nothing here takes the reader's address (longer keys live in the caller's `scratch`, and
// slow() takes and returns values). Validation is exactly readKey's.
template <>
class StoreKeys<std::string> {
 public:
  using Stored = crdt::CompactString;
  StoreKeys(const Limits& limits, std::string& scratch)
      : long_(scratch), maxKeyBytes_(limits.maxKeyBytes) {}

  void read(ColumnReader& r) {
    const uint64_t shared = r.varint();
    const uint64_t suffix = r.varint();
    if (shared > len_) r.fail("shared prefix longer than the previous key");
    if (suffix > maxKeyBytes_ || shared + suffix > maxKeyBytes_) {
      r.fail("key longer than limits.maxKeyBytes");
    }
    const uint64_t n = shared + suffix;
    if constexpr (std::endian::native == std::endian::little) {
      // The 16 bytes read must lie inside the column. Before the suffix there are always at least
      // `shared` bytes (every byte of the previous key came in some earlier suffix), and after it
      // the check below.
      if (n <= 15 && len_ <= 15 && r.consumed() >= shared && r.remaining() + shared >= 16) {
        const char* at = r.raw(suffix).data() - shared;
        uint64_t t0, t1;
        std::memcpy(&t0, at, 8);
        std::memcpy(&t1, at + 8, 8);
        const auto& keep = kKeepBytes[shared];  // the bytes of the previous key kept
        const auto& all = kKeepBytes[n];        // the bytes of the key
        w0_ = (w0_ & keep[0]) | (t0 & all[0] & ~keep[0]);
        w1_ = (w1_ & keep[1]) | (t1 & all[1] & ~keep[1]) | (n << 56);
        len_ = n;
        return;
      }
    }
    const Form f = slow(long_, Form{w0_, w1_, len_}, r.raw(suffix), shared);
    w0_ = f.w0;
    w1_ = f.w1;
    len_ = f.len;
  }

  void operator()(Stored& key) const {
    if (len_ <= 15) {
      key.assignInlineWords(w0_, w1_);
    } else {
      key = Stored(std::string_view(long_));
    }
  }

 private:
  // kKeepBytes[k]: the masks of a 16-byte little-endian form's bytes 0..k-1, as two words.
  static constexpr auto kKeepBytes = [] {
    std::array<std::array<uint64_t, 2>, 17> m{};
    for (unsigned k = 0; k <= 16; ++k) {
      m[k][0] = k >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * k)) - 1;
      m[k][1] = k <= 8 ? 0 : k == 16 ? ~uint64_t{0} : (uint64_t{1} << (8 * (k - 8))) - 1;
    }
    return m;
  }();

  // The current key: when len_ <= 15 its canonical inline form (w0_, w1_), else long_.
  std::string& long_;
  uint64_t w0_ = 0, w1_ = 0;
  uint64_t len_ = 0;
  uint64_t maxKeyBytes_;

  struct Form {
    uint64_t w0, w1, len;
  };
  // The key after `prev` (its form, or longKey) and a (shared, tail) pair, by way of longKey.
  [[gnu::noinline]] static Form slow(std::string& longKey, Form prev, std::string_view tail,
                                     uint64_t shared) {
    if (prev.len <= 15) {
      unsigned char b[16];
      std::memcpy(b, &prev.w0, 8);
      std::memcpy(b + 8, &prev.w1, 8);
      longKey.assign(reinterpret_cast<const char*>(b), prev.len);
    }
    longKey.resize(shared);
    longKey.append(tail);
    Form next{0, 0, longKey.size()};
    if (next.len <= 15) {
      unsigned char b[16];
      crdt::CompactString::inlineForm(longKey, b);
      std::memcpy(&next.w0, b, 8);
      std::memcpy(&next.w1, b + 8, 8);
    }
    return next;
  }
};

// The store entries at `at` (a run of s's canonical order), as a store of just those entries
// would encode: encodeStore is the run of all of them, and a catch-up part (gossip/split.h) one
// run, encoded without building it.
template <typename K, typename V>
void encodeStoreRange(const crdt::DotStore<K, V>& s, Positions at, wire::DotStore::Builder out) {
  using KS = Scalar<K>;
  using VC = ValueColumns<V>;
  // Entries go out by (writer, counter), whatever the storage order (DotStore::dotOrder): that
  // order follows arrival and erases (swap-remove), so after deletes it made the same entries
  // encode up to 1.7x larger (bench/RESULTS.md). In that order the writers come ascending.
  std::vector<crdt::ReplicaId> writers;
  for (uint32_t i = 0; i < at.count; ++i) {
    const crdt::ReplicaId r = s.dotAt(at[i]).replica;
    if (writers.empty() || writers.back() != r) writers.push_back(r);
  }
  auto ws = out.initWriters(static_cast<unsigned>(writers.size()));
  for (unsigned i = 0; i < writers.size(); ++i) ws.set(i, writers[i].value);

  uint64_t w = 0;  // the index in `writers` of the current entry's writer
  uint64_t prevCounter = 0;
  ColumnWriter dots, keys, values, timestamps;
  typename KS::KeyState keyState;
  uint64_t prevTs = 0;
  for (uint32_t i = 0; i < at.count; ++i) {
    const uint32_t p = at[i];
    const crdt::Dot d = s.dotAt(p);
    if (d.replica != writers[w]) {
      ++w;
      prevCounter = 0;
    }
    dots.varint(w);
    dots.varint(zigzag(static_cast<int64_t>(d.counter - prevCounter)));
    prevCounter = d.counter;
    KS::writeKey(keys, keyState, s.keyAt(p));
    VC::write(values, timestamps, prevTs, s.valueAt(p));
  }
  out.setCount(at.count);
  out.setDots(asData(dots));
  out.setKeyKind(KS::kKind);
  out.setKeys(asData(keys));
  out.setValueKind(VC::kKind);
  out.setValues(asData(values));
  out.setTimestamps(asData(timestamps));
}

template <typename K, typename V>
void encodeStore(const crdt::DotStore<K, V>& s, wire::DotStore::Builder out) {
  const std::vector<uint32_t> order = s.dotOrder();
  encodeStoreRange(s, Positions{order.empty() ? nullptr : order.data(), 0, static_cast<uint32_t>(s.size())}, out);
}

// A store dot that its context lacks (decodeStore, requireDotsInContext).
[[noreturn]] inline void dotNotInContext(crdt::Dot d) {
  throw DecodeError("causal state: dot (" + std::to_string(d.replica.value) + ", " +
                    std::to_string(d.counter) + ") of the store is not in the context");
}

// The store a Loader built, or a DecodeError (located in column `at`) naming its fault. Both
// encodings end a dot store's decoding here, so both enforce the same rules (see
// DotStore::Loader). (A column name, not the reader: see ColumnReader on taking its address.)
template <typename K, typename V>
crdt::DotStore<K, V> finishLoad(typename crdt::DotStore<K, V>::Loader&& load, const Limits& limits,
                                const char* at) {
  using Fault = typename crdt::DotStore<K, V>::Loader::Fault;
  auto r = std::move(load).finish(limits.maxEntriesPerKey, limits.maxSameKeyPairs);
  if (auto* store = std::get_if<crdt::DotStore<K, V>>(&r)) return std::move(*store);
  switch (std::get<Fault>(r)) {
    case Fault::kRepeatedDot:
      ColumnReader::failIn(at, "the same dot appears twice");
    case Fault::kKeyOverLimit:
      ColumnReader::failIn(at, "more than limits.maxEntriesPerKey entries under one key");
    case Fault::kPairsOverLimit:
      break;
  }
  ColumnReader::failIn(at, "more than limits.maxSameKeyPairs pairs of entries under a shared key");
}

// With ctx, also checks that every dot lies in *ctx (decodeCausal), entry by entry while the
// dot is at hand instead of in a second pass over the store.
template <typename K, typename V>
crdt::DotStore<K, V> decodeStore(wire::DotStore::Reader in, const Limits& limits,
                                 const crdt::CausalContext* ctx = nullptr) {
  using KS = Scalar<K>;
  using VC = ValueColumns<V>;
  if (in.getCount() > limits.maxEntries) throw DecodeError("dot store: more than limits.maxEntries entries");
  if (in.getKeyKind() != KS::kKind) throw DecodeError("dot store: unexpected key kind");
  if (in.getValueKind() != VC::kKind) throw DecodeError("dot store: unexpected value kind");
  auto ws = in.getWriters();
  if (ws.size() > limits.maxOrigins) throw DecodeError("dot store: more than limits.maxOrigins writers");
  if (!VC::kStamped && in.getTimestamps().size() != 0) {
    throw DecodeError("dot store: timestamps column on a type without timestamps");
  }
  // Entries go into a Loader and are indexed once at the end. Pre-size for the entries the dots
  // column can actually hold (>= 2 bytes each), never for the claimed count alone, and at most
  // kMaxReserve: garbage must not make us allocate much before validation rejects it (larger
  // stores grow by doubling as they decode; the indexes are sized for the entries decoded).
  constexpr size_t kMaxReserve = size_t{1} << 20;
  typename crdt::DotStore<K, V>::Loader load(
      std::min<size_t>({in.getCount(), in.getDots().size() / 2, kMaxReserve}));
  struct Writer {
    crdt::ReplicaId id;
    uint64_t prevCounter = 0;
    const crdt::Intervals* seen = nullptr;  // ctx's intervals of id
    uint32_t slot = 0;                      // load's handle
    bool used = false;
  };
  std::vector<Writer> writers;
  writers.reserve(ws.size());
  for (uint64_t id : ws) {
    if (id == 0) throw DecodeError("dot store: writer id 0 (no such replica)");
    if (!writers.empty() && !(writers.back().id.value < id)) {
      throw DecodeError("dot store: writer ids not strictly increasing");
    }
    Writer w{crdt::ReplicaId{id}};
    if (ctx != nullptr) {
      if (const auto* o = ctx->find(w.id)) w.seen = &o->intervals;
    }
    w.slot = load.writer(w.id);
    writers.push_back(w);
  }
  ColumnReader dots = reader(in.getDots(), "dots");
  ColumnReader keys = reader(in.getKeys(), "keys");
  ColumnReader values = reader(in.getValues(), "values");
  ColumnReader timestamps = reader(in.getTimestamps(), "timestamps");
  std::string longKey;  // StoreKeys' scratch
  StoreKeys<K> storeKeys(limits, longKey);
  uint64_t prevTs = 0;
  for (uint32_t i = 0; i < in.getCount(); ++i) {
    uint64_t wi = dots.varint();
    if (wi >= writers.size()) dots.fail("writer index out of range");
    Writer& w = writers[wi];
    int64_t delta = dots.signedVarint();
    uint64_t counter = w.prevCounter + static_cast<uint64_t>(delta);
    if ((delta > 0 && counter < w.prevCounter) || (delta < 0 && counter > w.prevCounter) ||
        counter == 0 || counter > crdt::kMaxDotCounter) {
      dots.fail("dot counter outside 1..2^48-1");
    }
    w.prevCounter = counter;
    w.used = true;
    if (ctx != nullptr &&
        (w.seen == nullptr || !crdt::CausalContext::containsCounter(*w.seen, counter))) {
      dotNotInContext(crdt::Dot{w.id, counter});
    }
    storeKeys.read(keys);
    load.addWith(w.slot, counter, storeKeys, VC::read(values, timestamps, prevTs, limits));
  }
  dots.expectEnd();
  keys.expectEnd();
  values.expectEnd();
  timestamps.expectEnd();
  for (const Writer& w : writers) {
    if (!w.used) throw DecodeError("dot store: a listed writer has no entry");
  }
  return finishLoad<K, V>(std::move(load), limits, dots.column());
}

// Nested stores of ORMap: a DotStore or another ORMapStore, chosen by the static type.
template <typename S>
struct StoreCodec;

template <typename K, typename V>
struct StoreCodec<crdt::DotStore<K, V>> {
  static void encode(const crdt::DotStore<K, V>& s, wire::NestedStore::Builder out) {
    encodeStore(s, out.initDotStore());
  }
  static crdt::DotStore<K, V> decode(wire::NestedStore::Reader in, const Limits& limits) {
    if (!in.isDotStore()) throw DecodeError("nested store: expected a dot store");
    return decodeStore<K, V>(in.getDotStore(), limits);
  }
};

template <typename K, typename T>
struct StoreCodec<crdt::ORMapStore<K, T>> {
  using Inner = typename crdt::ORMapStore<K, T>::Inner;

  static void encodeMap(const crdt::ORMapStore<K, T>& s, wire::ORMapStore::Builder out) {
    ColumnWriter keys;
    typename Scalar<K>::KeyState keyState;
    auto values = out.initValues(static_cast<unsigned>(s.size()));
    unsigned i = 0;
    s.forEach([&](const K& k, const Inner& inner) {
      Scalar<K>::writeKey(keys, keyState, k);
      StoreCodec<Inner>::encode(inner, values[i++]);
    });
    out.setKeyKind(Scalar<K>::kKind);
    out.setKeys(asData(keys));
  }
  static void encode(const crdt::ORMapStore<K, T>& s, wire::NestedStore::Builder out) {
    encodeMap(s, out.initOrMap());
  }

  static crdt::ORMapStore<K, T> decodeMap(wire::ORMapStore::Reader in, const Limits& limits) {
    if (in.getKeyKind() != Scalar<K>::kKind) throw DecodeError("or-map: unexpected key kind");
    auto values = in.getValues();
    if (values.size() > limits.maxEntries) throw DecodeError("or-map: more than limits.maxEntries keys");
    ColumnReader keys = reader(in.getKeys(), "or-map keys");
    typename Scalar<K>::KeyState keyState;
    crdt::ORMapStore<K, T> out;
    for (auto v : values) {
      K key(Scalar<K>::readKey(keys, keyState, limits));
      if (out.find(key) != nullptr) keys.fail("the same key appears twice");
      Inner inner = StoreCodec<Inner>::decode(v, limits);
      if (inner.empty()) throw DecodeError("or-map: empty nested store (absent keys are never sent)");
      inner.forEachDot([&](crdt::Dot d) {
        if (out.containsDot(d)) throw DecodeError("or-map: the same dot appears under two keys");
      });
      out.put(key, std::move(inner));
    }
    keys.expectEnd();
    return out;
  }
  static crdt::ORMapStore<K, T> decode(wire::NestedStore::Reader in, const Limits& limits) {
    if (!in.isOrMap()) throw DecodeError("nested store: expected an or-map");
    return decodeMap(in.getOrMap(), limits);
  }
};

// Checks that every dot of a decoded store lies in its decoded context.
template <typename S>
void requireDotsInContext(const S& store, const crdt::CausalContext& ctx) {
  store.forEachDot([&](crdt::Dot d) {
    if (!ctx.contains(d)) dotNotInContext(d);
  });
}

}  // namespace _

template <typename K, typename T>
void encode(const crdt::ORMap<K, T>& m, wire::ORMapState::Builder out) {
  encode(m.context(), out.initContext());
  _::StoreCodec<crdt::ORMapStore<K, T>>::encodeMap(m.store(), out.initStore());
}

template <typename M>  // M = crdt::ORMap<K, T>
M decodeORMap(wire::ORMapState::Reader in, const Limits& limits) {
  crdt::CausalContext ctx = decode(in.getContext(), limits);
  auto store = _::StoreCodec<typename M::Store>::decodeMap(in.getStore(), limits);
  _::requireDotsInContext(store, ctx);
  return M::fromParts(std::move(store), std::move(ctx));
}

template <typename V>
void encode(const crdt::LWWRegister<V>& r, wire::LWWRegister::Builder out) {
  out.setHasValue(r.get() != nullptr);
  if (r.get() == nullptr) return;
  out.setTimestamp(r.timestamp().value);
  out.setWriter(r.writer().value);
  out.setValueKind(_::Scalar<V>::kKind);
  ColumnWriter w;
  _::Scalar<V>::writeValue(w, *r.get());
  out.setValue(_::asData(w));
}

template <typename V>
crdt::LWWRegister<V> decodeLWWRegister(wire::LWWRegister::Reader in, const Limits& limits) {
  crdt::LWWRegister<V> r;
  if (!in.getHasValue()) return r;
  if (in.getValueKind() != _::Scalar<V>::kKind) throw DecodeError("lww-register: unexpected value kind");
  if (in.getWriter() == 0) throw DecodeError("lww-register: writer id 0 (no such replica)");
  ColumnReader value = _::reader(in.getValue(), "lww-register value");
  V v = _::Scalar<V>::readValue(value, limits);
  value.expectEnd();
  r.set(crdt::ReplicaId{in.getWriter()}, std::move(v), crdt::Timestamp{in.getTimestamp()});
  return r;
}

// Causal types: ORSet<E>, AWLWWMap<K, V>, MVRegister<V>, EWFlag.
template <typename T>
void encodeCausal(const T& x, wire::CausalState::Builder out) {
  encode(x.context(), out.initContext());
  _::encodeStore(x.store(), out.initStore());
}

template <typename T>
T decodeCausal(wire::CausalState::Reader in, const Limits& limits) {
  crdt::CausalContext ctx = decode(in.getContext(), limits);
  auto store =
      _::decodeStore<typename T::Store::Key, typename T::Store::Value>(in.getStore(), limits, &ctx);
  return T::fromParts(std::move(store), std::move(ctx));
}

}  // namespace deltasync::gossip
