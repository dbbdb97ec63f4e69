// crdt/ values <-> gossip/wire.capnp, validating on decode.
//
// Decoders treat their input as hostile: every count, length, id and dot is checked against
// gossip/limits.h and against the CRDT's invariants (a store's dots lie inside its context, no
// dot twice, counters in 1..2^48-1, ids strictly increasing, column kinds as expected, columns
// consumed exactly) before the value is returned. A violation throws DecodeError naming what was
// wrong; the decoded value is built on the side, so nothing is applied to any state.
//
// Include this header only where messages are built or read: it pulls in generated capnp code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crdt/aw-lww-map.h"
#include "crdt/causal-context.h"
#include "crdt/dot-store.h"
#include "crdt/ew-flag.h"
#include "crdt/g-counter.h"
#include "crdt/mv-register.h"
#include "crdt/or-set.h"
#include "crdt/pn-counter.h"
#include "gossip/errors.h"
#include "gossip/limits.h"
#include "gossip/varint.h"
#include "gossip/wire.capnp.h"

namespace deltasync::gossip {

void encode(const crdt::CausalContext& c, wire::CausalContext::Builder out);
crdt::CausalContext decode(wire::CausalContext::Reader in, const Limits& limits);

void encode(const crdt::GCounter& c, wire::GCounter::Builder out);
crdt::GCounter decode(wire::GCounter::Reader in, const Limits& limits);

void encode(const crdt::PNCounter& c, wire::PNCounter::Builder out);
crdt::PNCounter decode(wire::PNCounter::Reader in, const Limits& limits);

namespace _ {

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

template <typename K, typename V>
void encodeStore(const crdt::DotStore<K, V>& s, wire::DotStore::Builder out) {
  using KS = Scalar<K>;
  using VC = ValueColumns<V>;
  std::vector<crdt::ReplicaId> writers;
  s.forEachDot([&](crdt::Dot d) { writers.push_back(d.replica); });
  std::sort(writers.begin(), writers.end());
  writers.erase(std::unique(writers.begin(), writers.end()), writers.end());
  auto ws = out.initWriters(static_cast<unsigned>(writers.size()));
  for (unsigned i = 0; i < writers.size(); ++i) ws.set(i, writers[i].value);

  std::vector<uint64_t> prevCounter(writers.size(), 0);
  ColumnWriter dots, keys, values, timestamps;
  typename KS::KeyState keyState;
  uint64_t prevTs = 0;
  s.forEach([&](typename crdt::DotStore<K, V>::KeyView k, crdt::Dot d, const V& v) {
    size_t w = std::lower_bound(writers.begin(), writers.end(), d.replica) - writers.begin();
    dots.varint(w);
    dots.varint(zigzag(static_cast<int64_t>(d.counter - prevCounter[w])));
    prevCounter[w] = d.counter;
    KS::writeKey(keys, keyState, k);
    VC::write(values, timestamps, prevTs, v);
  });
  out.setCount(static_cast<uint32_t>(s.size()));
  out.setDots(asData(dots));
  out.setKeyKind(KS::kKind);
  out.setKeys(asData(keys));
  out.setValueKind(VC::kKind);
  out.setValues(asData(values));
  out.setTimestamps(asData(timestamps));
}

template <typename K, typename V>
crdt::DotStore<K, V> decodeStore(wire::DotStore::Reader in, const Limits& limits) {
  using KS = Scalar<K>;
  using VC = ValueColumns<V>;
  if (in.getCount() > limits.maxEntries) throw DecodeError("dot store: more than limits.maxEntries entries");
  if (in.getKeyKind() != KS::kKind) throw DecodeError("dot store: unexpected key kind");
  if (in.getValueKind() != VC::kKind) throw DecodeError("dot store: unexpected value kind");
  auto ws = in.getWriters();
  if (ws.size() > limits.maxOrigins) throw DecodeError("dot store: more than limits.maxOrigins writers");
  std::vector<crdt::ReplicaId> writers;
  writers.reserve(ws.size());
  for (uint64_t id : ws) {
    if (!writers.empty() && !(writers.back().value < id)) {
      throw DecodeError("dot store: writer ids not strictly increasing");
    }
    writers.push_back(crdt::ReplicaId{id});
  }
  if (!VC::kStamped && in.getTimestamps().size() != 0) {
    throw DecodeError("dot store: timestamps column on a type without timestamps");
  }
  ColumnReader dots = reader(in.getDots(), "dots");
  ColumnReader keys = reader(in.getKeys(), "keys");
  ColumnReader values = reader(in.getValues(), "values");
  ColumnReader timestamps = reader(in.getTimestamps(), "timestamps");
  std::vector<uint64_t> prevCounter(writers.size(), 0);
  std::vector<bool> used(writers.size(), false);
  typename KS::KeyState keyState;
  uint64_t prevTs = 0;
  crdt::DotStore<K, V> store;
  for (uint32_t i = 0; i < in.getCount(); ++i) {
    uint64_t w = dots.varint();
    if (w >= writers.size()) dots.fail("writer index out of range");
    int64_t delta = dots.signedVarint();
    uint64_t counter = prevCounter[w] + static_cast<uint64_t>(delta);
    if ((delta > 0 && counter < prevCounter[w]) || (delta < 0 && counter > prevCounter[w]) ||
        counter == 0 || counter > crdt::kMaxDotCounter) {
      dots.fail("dot counter outside 1..2^48-1");
    }
    prevCounter[w] = counter;
    used[w] = true;
    auto key = KS::readKey(keys, keyState, limits);
    V value = VC::read(values, timestamps, prevTs, limits);
    crdt::Dot d{writers[w], counter};
    if (store.containsDot(d)) dots.fail("the same dot appears twice");
    store.insertNew(key, d, std::move(value));
  }
  dots.expectEnd();
  keys.expectEnd();
  values.expectEnd();
  timestamps.expectEnd();
  if (std::find(used.begin(), used.end(), false) != used.end()) {
    throw DecodeError("dot store: a listed writer has no entry");
  }
  return store;
}

}  // namespace _

// Causal types: ORSet<E>, AWLWWMap<K, V>, MVRegister<V>, EWFlag.
template <typename T>
void encodeCausal(const T& x, wire::CausalState::Builder out) {
  encode(x.context(), out.initContext());
  _::encodeStore(x.store(), out.initStore());
}

template <typename T>
T decodeCausal(wire::CausalState::Reader in, const Limits& limits) {
  crdt::CausalContext ctx = decode(in.getContext(), limits);
  auto store = _::decodeStore<typename T::Store::Key, typename T::Store::Value>(in.getStore(), limits);
  store.forEachDot([&](crdt::Dot d) {
    if (!ctx.contains(d)) {
      throw DecodeError("causal state: dot (" + std::to_string(d.replica.value) + ", " +
                        std::to_string(d.counter) + ") of the store is not in the context");
    }
  });
  return T::fromParts(std::move(store), std::move(ctx));
}

}  // namespace deltasync::gossip
