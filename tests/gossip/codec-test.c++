#include "gossip/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using namespace deltasync::crdt;

const Limits kLimits;

// Encodes x as the root of a message, serializes it to bytes, reads it back and decodes it.
template <typename Wire, typename T, typename Dec>
T roundTrip(const T& x, void (*enc)(const T&, typename Wire::Builder), Dec dec) {
  capnp::MallocMessageBuilder mb;
  enc(x, mb.initRoot<Wire>());
  auto words = capnp::messageToFlatArray(mb);
  capnp::FlatArrayMessageReader reader(words);
  return dec(reader.getRoot<Wire>());
}

template <typename T>
T roundTripCausal(const T& x, const Limits& limits = kLimits) {
  return roundTrip<wire::CausalState>(
      x, &encodeCausal<T>, [&](wire::CausalState::Reader r) { return decodeCausal<T>(r, limits); });
}

// == looks the left side's entries up in the right side's indexes: check decoded values as both.
template <typename T>
bool equalBothWays(const T& a, const T& b) {
  return a == b && b == a;
}

// A reachable state: 3 replicas run random operations and sometimes join each other.
template <typename T, typename Op>
T history(Op op) {
  std::vector<T> reps(3);
  const int steps = *rc::gen::inRange(0, 60);
  for (int i = 0; i < steps; ++i) {
    size_t r = *rc::gen::inRange<size_t>(0, 3);
    if (*rc::gen::inRange(0, 5) == 0) {
      reps[r].join(reps[*rc::gen::inRange<size_t>(0, 3)]);
    } else {
      op(reps[r], ReplicaId{r + 1 + (uint64_t(1) << 40)});
    }
  }
  return reps[*rc::gen::inRange<size_t>(0, 3)];
}

std::string genText() {
  return *rc::gen::oneOf(rc::gen::element<std::string>("", "a", "ab", "abc", "k1", "k10", "k100"),
                         rc::gen::container<std::string>(rc::gen::inRange<char>(0, 127)));
}

struct Bytes {
  std::vector<unsigned char> v;
  Bytes(std::initializer_list<uint64_t> varints) {
    ColumnWriter w;
    for (uint64_t x : varints) w.varint(x);
    v = w.bytes();
  }
  capnp::Data::Reader data() const { return capnp::Data::Reader(v.data(), v.size()); }
};

TEST_CASE("codec: decode(encode(x)) == x for every type") {
  PROPERTY("CausalContext", [] {
    auto c = *rc::gen::container<std::vector<std::pair<uint8_t, uint16_t>>>(
        rc::gen::pair(rc::gen::inRange<uint8_t>(1, 5), rc::gen::inRange<uint16_t>(1, 300)));
    CausalContext ctx;
    for (auto [r, k] : c) ctx.add(Dot{ReplicaId{r}, k});
    if (*rc::gen::arbitrary<bool>()) ctx.addRange(ReplicaId{9}, 1, kMaxDotCounter);
    auto back = roundTrip<wire::CausalContext>(
        ctx, static_cast<void (*)(const CausalContext&, wire::CausalContext::Builder)>(&encode),
        [](wire::CausalContext::Reader r) { return decode(r, kLimits); });
    RC_ASSERT(back == ctx);
  });
  PROPERTY("GCounter", [] {
    auto x = history<GCounter>([](GCounter& s, ReplicaId self) {
      s.increment(self, *rc::gen::inRange<uint64_t>(0, 1000));
    });
    auto back = roundTrip<wire::GCounter>(
        x, static_cast<void (*)(const GCounter&, wire::GCounter::Builder)>(&encode),
        [](wire::GCounter::Reader r) { return decode(r, kLimits); });
    RC_ASSERT(back == x);
  });
  PROPERTY("PNCounter", [] {
    auto x = history<PNCounter>([](PNCounter& s, ReplicaId self) {
      if (*rc::gen::arbitrary<bool>()) {
        s.increment(self, *rc::gen::inRange<uint64_t>(0, 1000));
      } else {
        s.decrement(self, *rc::gen::inRange<uint64_t>(0, 1000));
      }
    });
    auto back = roundTrip<wire::PNCounter>(
        x, static_cast<void (*)(const PNCounter&, wire::PNCounter::Builder)>(&encode),
        [](wire::PNCounter::Reader r) { return decode(r, kLimits); });
    RC_ASSERT(back == x);
  });
  PROPERTY("ORSet<int64_t>", [] {
    auto x = history<ORSet<int64_t>>([](ORSet<int64_t>& s, ReplicaId self) {
      int64_t e = *rc::gen::oneOf(rc::gen::inRange<int64_t>(-20, 20), rc::gen::arbitrary<int64_t>());
      if (*rc::gen::inRange(0, 3) == 0) {
        s.remove(e);
      } else {
        s.add(self, e);
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(x), x));
  });
  PROPERTY("ORSet<std::string>", [] {
    auto x = history<ORSet<std::string>>([](ORSet<std::string>& s, ReplicaId self) {
      std::string e = genText();
      if (*rc::gen::inRange(0, 3) == 0) {
        s.remove(e);
      } else {
        s.add(self, e);
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(x), x));
  });
  PROPERTY("AWLWWMap<std::string, int64_t>", [] {
    using M = AWLWWMap<std::string, int64_t>;
    auto x = history<M>([](M& m, ReplicaId self) {
      std::string k = genText();
      if (*rc::gen::inRange(0, 4) == 0) {
        m.remove(k);
      } else {
        m.set(self, k, *rc::gen::arbitrary<int64_t>(), Timestamp{*rc::gen::arbitrary<uint64_t>()});
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(x), x));
  });
  PROPERTY("AWLWWMap<int64_t, std::string>", [] {
    using M = AWLWWMap<int64_t, std::string>;
    auto x = history<M>([](M& m, ReplicaId self) {
      int64_t k = *rc::gen::inRange<int64_t>(-5, 5);
      if (*rc::gen::inRange(0, 4) == 0) {
        m.remove(k);
      } else {
        m.set(self, k, genText(), Timestamp{*rc::gen::inRange<uint64_t>(0, 10)});
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(x), x));
  });
  PROPERTY("MVRegister<std::string> and EWFlag", [] {
    auto reg = history<MVRegister<std::string>>([](MVRegister<std::string>& r, ReplicaId self) {
      if (*rc::gen::inRange(0, 4) == 0) {
        r.reset();
      } else {
        r.write(self, genText());
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(reg), reg));
    auto flag = history<EWFlag>([](EWFlag& f, ReplicaId self) {
      if (*rc::gen::arbitrary<bool>()) {
        f.enable(self);
      } else {
        f.disable();
      }
    });
    RC_ASSERT(equalBothWays(roundTripCausal(flag), flag));
  });
}

TEST_CASE("codec: ORMap (nested two levels) and LWWRegister round-trip") {
  using Inner = ORMap<int64_t, ORSet<std::string>>;
  using Outer = ORMap<std::string, Inner>;
  PROPERTY("ORMap<string, ORMap<int64, ORSet<string>>>", [] {
    auto x = history<Outer>([](Outer& m, ReplicaId self) {
      std::string k = *rc::gen::element<std::string>("room", "lobby", "k");
      int64_t k2 = *rc::gen::inRange<int64_t>(0, 4);
      switch (*rc::gen::inRange(0, 4)) {
        case 0: m.remove(k); break;
        case 1: m.update(k, [&](Inner& in) { return in.remove(k2); }); break;
        default:
          m.update(k, [&](Inner& in) {
            return in.update(k2, [&](ORSet<std::string>& s) { return s.add(self, genText()); });
          });
      }
    });
    auto back = roundTrip<wire::ORMapState>(
        x, static_cast<void (*)(const Outer&, wire::ORMapState::Builder)>(&encode<std::string, Inner>),
        [](wire::ORMapState::Reader r) { return decodeORMap<Outer>(r, kLimits); });
    RC_ASSERT(back == x);
  });
  PROPERTY("ORMap<int64, AWLWWMap<string, int64>>", [] {
    using M = ORMap<int64_t, AWLWWMap<std::string, int64_t>>;
    auto x = history<M>([](M& m, ReplicaId self) {
      int64_t k = *rc::gen::inRange<int64_t>(-2, 2);
      if (*rc::gen::inRange(0, 4) == 0) {
        m.remove(k);
      } else {
        m.update(k, [&](auto& in) { return in.set(self, genText(), 7, Timestamp{*rc::gen::arbitrary<uint64_t>()}); });
      }
    });
    auto back = roundTrip<wire::ORMapState>(
        x, static_cast<void (*)(const M&, wire::ORMapState::Builder)>(&encode<int64_t, AWLWWMap<std::string, int64_t>>),
        [](wire::ORMapState::Reader r) { return decodeORMap<M>(r, kLimits); });
    RC_ASSERT(back == x);
  });
  PROPERTY("LWWRegister<std::string>", [] {
    auto x = history<LWWRegister<std::string>>([](LWWRegister<std::string>& r, ReplicaId self) {
      r.set(self, genText(), Timestamp{*rc::gen::inRange<uint64_t>(0, 20)});
    });
    auto back = roundTrip<wire::LWWRegister>(
        x, static_cast<void (*)(const LWWRegister<std::string>&, wire::LWWRegister::Builder)>(&encode<std::string>),
        [](wire::LWWRegister::Reader r) { return decodeLWWRegister<std::string>(r, kLimits); });
    RC_ASSERT(back == x);
  });
}

TEST_CASE("codec: ORMap validation rules") {
  using M = ORMap<int64_t, ORSet<int64_t>>;
  // Two keys (1 and 2), each with one element; dots (5,1) and (5,2); context 1..2.
  auto build = [](auto mutate) {
    auto mb = std::make_unique<capnp::MallocMessageBuilder>();
    auto root = mb->initRoot<wire::ORMapState>();
    auto origin = root.initContext().initOrigins(1)[0];
    origin.setReplica(5);
    origin.setRuns(Bytes{0, 1}.data());
    auto store = root.initStore();
    store.setKeyKind(wire::ScalarKind::INT64);
    store.setKeys(Bytes{zigzag(1), zigzag(1)}.data());
    auto values = store.initValues(2);
    for (unsigned i = 0; i < 2; ++i) {
      auto ds = values[i].initDotStore();
      ds.setCount(1);
      ds.initWriters(1).set(0, 5);
      ds.setDots(Bytes{0, zigzag(int64_t(i) + 1)}.data());
      ds.setKeyKind(wire::ScalarKind::INT64);
      ds.setKeys(Bytes{zigzag(9)}.data());
    }
    mutate(root);
    return mb;
  };
  auto decodeIt = [](capnp::MallocMessageBuilder& mb) {
    return decodeORMap<M>(mb.getRoot<wire::ORMapState>().asReader(), kLimits);
  };
  auto ok = build([](auto) {});
  auto m = decodeIt(*ok);
  CHECK(m.size() == 2);
  CHECK(m.get(2).contains(9));
  using B = wire::ORMapState::Builder;
  auto reject = [&](auto mutate, const char* fragment) {
    auto mb = build(mutate);
    CHECK_THROWS_WITH_AS(decodeIt(*mb), doctest::Contains(fragment), DecodeError);
  };
  reject([](B r) { r.getStore().setKeys(Bytes{zigzag(1), zigzag(0)}.data()); }, "the same key appears twice");
  reject([](B r) { r.getStore().getValues()[1].getDotStore().setDots(Bytes{0, zigzag(1)}.data()); },
         "the same dot appears under two keys");
  reject([](B r) {
    auto ds = r.getStore().getValues()[1].getDotStore();
    ds.setCount(0);
    ds.initWriters(0);
    ds.setDots(Bytes{}.data());
    ds.setKeys(Bytes{}.data());
  }, "empty nested store");
  reject([](B r) { r.getStore().getValues()[0].initOrMap(); }, "expected a dot store");
  reject([](B r) { r.getContext().getOrigins()[0].setRuns(Bytes{0, 0}.data()); }, "not in the context");
  reject([](B r) { r.getStore().setKeyKind(wire::ScalarKind::TEXT); }, "unexpected key kind");
}

TEST_CASE("codec: empty and large values") {
  CHECK(roundTripCausal(ORSet<int64_t>{}) == ORSet<int64_t>{});
  ORSet<int64_t> big;
  for (int64_t i = 0; i < 200000; ++i) big.add(ReplicaId{1}, i * 7919);
  for (int64_t i = 0; i < 200000; i += 3) big.remove(i * 7919);
  CHECK(roundTripCausal(big) == big);
  AWLWWMap<std::string, int64_t> m;
  for (int64_t i = 0; i < 100000; ++i) m.set(ReplicaId{2}, "k" + std::to_string(i), i, Timestamp{uint64_t(i)});
  auto back = roundTripCausal(m);
  CHECK(back == m);
  CHECK(m == back);  // looks m's entries up in the decoded indexes
  CHECK(back.size() == m.size());
  CHECK(*back.get("k99999") == 99999);
}

// The column decoder builds string keys of up to 15 bytes in registers from the previous key and
// the suffix (gossip/codec.h, StoreKeys<std::string>), and longer ones through a std::string:
// keys that share prefixes of every length, cross 15 bytes both ways, hold zero bytes, and end
// the column (the last keys take the byte-wise path) come back equal, and canonical (a key
// index lookup hashes the canonical form, so a non-canonical key would not be found).
TEST_CASE("codec: string keys decode exactly around the 15-byte inline size") {
  PROPERTY("prefix-sharing keys of 0..24 bytes", [] {
    const auto base = *rc::gen::container<std::string>(24, rc::gen::element<char>('\0', 'a', 'b'));
    const auto picks = *rc::gen::container<std::vector<std::pair<size_t, int>>>(
        rc::gen::pair(rc::gen::inRange<size_t>(0, 25), rc::gen::inRange<int>(-1, 3)));
    ORSet<std::string> x;
    std::vector<std::string> added;
    for (auto [len, change] : picks) {
      std::string k = base.substr(0, len);
      if (change >= 0 && !k.empty()) k[change % k.size()] = static_cast<char>('c' + change);
      x.add(ReplicaId{7}, k);
      added.push_back(k);
    }
    const ORSet<std::string> back = roundTripCausal(x);
    RC_ASSERT(equalBothWays(back, x));
    for (const std::string& k : added) RC_ASSERT(back.contains(k));
    RC_ASSERT(!back.contains(base + "z"));
  });
  // A fixed sequence through every transition, in a store large enough to be indexed.
  ORSet<std::string> x;
  const std::vector<std::string> keys = {"", "a", "abcdefghijklmno", "abcdefghijklmnop",
                                         "abcdefghijklmnopq", "abcdefgh", std::string("ab\0", 3),
                                         std::string(15, '\0'), std::string(16, '\0'), "b",
                                         "abcdefghijklmnoq", "abcdefghijklmnp", "abcdefghijklmn"};
  for (const std::string& k : keys) x.add(ReplicaId{3}, k);
  const ORSet<std::string> back = roundTripCausal(x);
  CHECK(equalBothWays(back, x));
  for (const std::string& k : keys) CHECK(back.contains(k));
  CHECK(!back.contains("ab"));
  CHECK(!back.contains(std::string(14, '\0')));
}

// Keys crafted to collide under the former, unseeded key hash mix64(w0 * C ^ mix64(w1)) of a
// 15-byte key's canonical form (w0: bytes 0..7; w1: bytes 8..14 and the length): for any w1 there
// is a w0 that lands on a chosen hash, so a peer could send any number of distinct keys in one
// probe cluster (quadratic to index). With the seeded hash (crdt/flat-index.h, hashSeed) they
// spread like random values, and they decode and are found as any keys are.
// This program does not link the node runtime, which draws the seed when the library loads: it
// sets one the same way (tests/lib/node-test checks that the runtime does).
[[gnu::constructor(101)]] void seedHashes() { crdt::_::setHashSeed(0x243f6a8885a308d3ULL); }

TEST_CASE("codec: keys crafted to share an unseeded hash spread over the key index") {
  CHECK(crdt::_::hashSeed() != 0);
  constexpr uint64_t kC = 0x9e3779b97f4a7c15ULL;
  uint64_t cInverse = kC;  // Newton's iteration for the inverse of an odd number mod 2^64
  for (int i = 0; i < 6; ++i) cInverse *= 2 - kC * cInverse;
  REQUIRE(kC * cInverse == 1);
  constexpr uint64_t kTarget = 42;
  std::vector<std::string> keys;
  std::set<uint64_t> homes;  // the low 16 bits of each key's hash: its home in a 2^16-slot index
  for (uint64_t i = 1; i <= 2000; ++i) {
    const uint64_t w1 = (uint64_t{15} << 56) | i;
    const uint64_t w0 = (kTarget ^ mix64(w1)) * cInverse;
    REQUIRE(mix64(w0 * kC ^ mix64(w1)) == mix64(kTarget));  // one hash, unseeded
    unsigned char b[16];
    std::memcpy(b, &w0, 8);
    std::memcpy(b + 8, &w1, 8);
    keys.emplace_back(reinterpret_cast<const char*>(b), 15);
    homes.insert(DotStore<std::string>::hashKey(keys.back()) & 0xffff);
  }
  // 2000 random homes among 65536 coincide about 30 times; all in one would be 1 home.
  CHECK(homes.size() > 1900);
  ORSet<std::string> x;
  for (const std::string& k : keys) x.add(ReplicaId{3}, k);
  const ORSet<std::string> back = roundTripCausal(x);
  CHECK(equalBothWays(back, x));
  for (const std::string& k : keys) CHECK(back.contains(k));
}

// --- The bulk path: decoded stores are built by DotStore::Loader and indexed once. ---

// One entry of a hand-built ORSet<int64_t> message: writer index (0 -> replica 5, 1 -> 6),
// dot counter, element.
struct SetEntry {
  uint64_t writer;
  uint64_t counter;
  int64_t element;
};

// Decodes an ORSet<int64_t> message with these entries and a context of 1..ctxMax per writer.
ORSet<int64_t> decodeSetEntries(const std::vector<SetEntry>& entries, uint64_t ctxMax) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::CausalState>();
  auto origins = root.initContext().initOrigins(2);
  auto store = root.initStore();
  auto writers = store.initWriters(2);
  for (unsigned i = 0; i < 2; ++i) {
    origins[i].setReplica(5 + i);
    origins[i].setRuns(Bytes{0, ctxMax - 1}.data());
    writers.set(i, 5 + i);
  }
  ColumnWriter dots, keys;
  uint64_t prev[2] = {0, 0};
  int64_t prevElement = 0;
  for (const SetEntry& e : entries) {
    dots.varint(e.writer);
    dots.signedVarint(static_cast<int64_t>(e.counter - prev[e.writer]));
    prev[e.writer] = e.counter;
    keys.signedVarint(e.element - prevElement);
    prevElement = e.element;
  }
  store.setCount(static_cast<uint32_t>(entries.size()));
  store.setDots(_::asData(dots));
  store.setKeyKind(wire::ScalarKind::INT64);
  store.setKeys(_::asData(keys));
  store.setValueKind(wire::ScalarKind::NONE);
  auto words = capnp::messageToFlatArray(mb);
  capnp::FlatArrayMessageReader reader(words);
  return decodeCausal<ORSet<int64_t>>(reader.getRoot<wire::CausalState>(), kLimits);
}

// n entries alternating between the two writers (counters 1, 1, 2, 2, ...), element i % keys:
// so elements repeat (concurrent adds of one element: valid) once n > keys.
std::vector<SetEntry> setEntries(uint64_t n, int64_t keys) {
  std::vector<SetEntry> out;
  for (uint64_t i = 0; i < n; ++i) out.push_back({i % 2, i / 2 + 1, static_cast<int64_t>(i) % keys});
  return out;
}

TEST_CASE("codec: decoded stores are fully indexed, on both sides of the small-store size") {
  for (uint64_t n : {2, 3, 8, 9, 17, 100, 5000}) {
    CAPTURE(n);
    const int64_t keys = static_cast<int64_t>(n / 3 + 1);
    ORSet<int64_t> s = decodeSetEntries(setEntries(n, keys), n);
    // The same value built through the write path.
    DotStore<int64_t> store;
    for (const SetEntry& e : setEntries(n, keys)) store.insert(e.element, Dot{ReplicaId{5 + e.writer}, e.counter}, {});
    CausalContext ctx;
    ctx.addRange(ReplicaId{5}, 1, n);
    ctx.addRange(ReplicaId{6}, 1, n);
    ORSet<int64_t> expected = ORSet<int64_t>::fromParts(std::move(store), std::move(ctx));
    // Both directions: == looks entries of its left side up in the index of its right side.
    CHECK(s == expected);
    CHECK(expected == s);
    CHECK(s.size() == static_cast<size_t>(std::min<int64_t>(keys, static_cast<int64_t>(n))));
    for (int64_t k = 0; k < keys && k < static_cast<int64_t>(n); ++k) CHECK(s.contains(k));
    CHECK(!s.contains(keys));
    // The decoded value keeps working as a state: removes and joins find entries by index.
    ORSet<int64_t> joined = s;
    joined.join(expected);
    CHECK(joined == expected);
    s.remove(0);
    expected.remove(0);
    CHECK(s == expected);
    CHECK(!s.contains(0));
    s.add(ReplicaId{5}, -1);
    CHECK(s.contains(-1));
  }
}

TEST_CASE("codec: the bulk path rejects what the entry-by-entry checks did") {
  for (uint64_t n : {3, 8, 9, 100, 5000}) {
    CAPTURE(n);
    auto entries = setEntries(n, 7);
    // A repeated dot, first and last, with the entries in between unchanged.
    auto dup = entries;
    dup.back() = dup[(n - 1) % 2];
    dup.back().element = 3;
    CHECK_THROWS_WITH_AS(decodeSetEntries(dup, n), doctest::Contains("the same dot appears twice"),
                         DecodeError);
    // Consecutive repeats: writer 0's counter does not move.
    dup = entries;
    dup[n - 1] = dup[n - 2];
    CHECK_THROWS_WITH_AS(decodeSetEntries(dup, n), doctest::Contains("the same dot appears twice"),
                         DecodeError);
    // A dot beyond the context, at the end.
    CHECK_THROWS_WITH_AS(decodeSetEntries(entries, (n - 1) / 2), doctest::Contains("not in the context"),
                         DecodeError);
  }
  // A lying count: the claim is bounded by limits, the allocation by the bytes present.
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::CausalState>();
  root.initContext().initOrigins(1)[0].setReplica(5);
  root.getContext().getOrigins()[0].setRuns(Bytes{0, 0}.data());
  auto store = root.initStore();
  store.setCount(kLimits.maxEntries);
  store.initWriters(1).set(0, 5);
  store.setDots(Bytes{0, zigzag(1)}.data());
  store.setKeyKind(wire::ScalarKind::INT64);
  store.setKeys(Bytes{zigzag(3)}.data());
  store.setValueKind(wire::ScalarKind::NONE);
  CHECK_THROWS_WITH_AS(decodeCausal<ORSet<int64_t>>(root.asReader(), kLimits),
                       doctest::Contains("truncated varint"), DecodeError);
}

// --- Keys with many entries (DotStore::Loader, Limits::maxEntriesPerKey). ---

// The join of `writers` concurrent writes of one key, each by its own replica: a reachable state
// with that many entries under the key (plus, for sets and maps, a second key of one entry).
template <typename T, typename Write>
T concurrentWrites(uint32_t writers, Write write) {
  T all;
  for (uint32_t i = 0; i < writers; ++i) {
    T own;
    all.join(write(own, ReplicaId{1000 + i}, i));
  }
  return all;
}

template <typename T, typename Write>
void checkKeyLimit(Write write) {
  // 2 and 20: below and above DotStore::kSmall (the unindexed and the indexed finish()).
  for (uint32_t limit : {2u, 20u}) {
    CAPTURE(limit);
    Limits tight = kLimits;
    tight.maxEntriesPerKey = limit;
    const T at = concurrentWrites<T>(limit, write);
    CHECK(equalBothWays(roundTripCausal(at, tight), at));
    const T over = concurrentWrites<T>(limit + 1, write);
    CHECK_THROWS_WITH_AS(
        roundTripCausal(over, tight),
        doctest::Contains("more than limits.maxEntriesPerKey entries under one key"), DecodeError);
    CHECK(equalBothWays(roundTripCausal(over), over));
    // The same by pairs: `at` has limit(limit-1)/2 pairs of entries under its key, `over` more.
    Limits fewPairs = kLimits;
    fewPairs.maxSameKeyPairs = uint64_t{limit} * (limit - 1) / 2;
    CHECK(equalBothWays(roundTripCausal(at, fewPairs), at));
    CHECK_THROWS_WITH_AS(roundTripCausal(over, fewPairs),
                         doctest::Contains("more than limits.maxSameKeyPairs pairs"), DecodeError);
  }
}

TEST_CASE(
    "codec: a key with more than limits.maxEntriesPerKey entries is rejected, in every kind") {
  checkKeyLimit<EWFlag>([](EWFlag& f, ReplicaId r, uint32_t) { return f.enable(r); });
  checkKeyLimit<MVRegister<std::string>>([](MVRegister<std::string>& m, ReplicaId r, uint32_t i) {
    return m.write(r, std::to_string(i));
  });
  checkKeyLimit<ORSet<int64_t>>([](ORSet<int64_t>& s, ReplicaId r, uint32_t i) {
    auto d = s.add(r, 42);
    if (i == 0) d.join(s.add(r, 43));
    return d;
  });
  checkKeyLimit<AWLWWMap<std::string, int64_t>>(
      [](AWLWWMap<std::string, int64_t>& m, ReplicaId r, uint32_t i) {
        auto d = m.set(r, "k", i, Timestamp{i});
        if (i == 0) d.join(m.set(r, "other", i, Timestamp{i}));
        return d;
      });
}

// A flag enabled by `writers` replicas concurrently, built with a Loader (joining that many
// deltas one by one walks the flag's one probe cluster per delta).
EWFlag flagOf(uint32_t writers) {
  DotStore<std::monostate>::Loader load(writers);
  CausalContext ctx;
  for (uint32_t i = 0; i < writers; ++i) {
    load.add(load.writer(ReplicaId{1000 + i}), 1, std::monostate{}, Empty{});
    ctx.add(Dot{ReplicaId{1000 + i}, 1});
  }
  return EWFlag::fromParts(std::get<DotStore<std::monostate>>(std::move(load).finish()),
                           std::move(ctx));
}

// A flag enabled concurrently by 1000 nodes (a presence flag of a 1000-node cluster) is far below
// the default limits; one with an entry per writer the limits allow (maxOrigins) is above them.
TEST_CASE("codec: the default limits admit a 1000-node flag and bound a 65535-writer one") {
  const EWFlag thousand = flagOf(1000);
  CHECK(thousand == concurrentWrites<EWFlag>(
                        1000, [](EWFlag& f, ReplicaId r, uint32_t) { return f.enable(r); }));
  CHECK(roundTripCausal(thousand) == thousand);
  const EWFlag atLimit = flagOf(kLimits.maxEntriesPerKey);
  CHECK(roundTripCausal(atLimit) == atLimit);
  const EWFlag most = flagOf(kLimits.maxOrigins);
  CHECK_THROWS_WITH_AS(roundTripCausal(most), doctest::Contains("limits.maxEntriesPerKey"),
                       DecodeError);
  // Raised deliberately, the limits admit it: decoding is linear either way (before the Loader
  // grouped a key's entries, this decode walked a cluster of up to 65535 slots per entry).
  Limits raised = kLimits;
  raised.maxEntriesPerKey = kLimits.maxOrigins;
  raised.maxSameKeyPairs = UINT64_MAX;
  CHECK(roundTripCausal(most, raised) == most);
}

// One dot repeated many times: rejected without building a probe cluster of the repeats.
TEST_CASE("codec: a dot repeated in every entry is rejected") {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::CausalState>();
  auto origin = root.initContext().initOrigins(1)[0];
  origin.setReplica(5);
  origin.setRuns(Bytes{0, 0}.data());
  auto store = root.initStore();
  const uint32_t n = 50000;
  store.setCount(n);
  store.initWriters(1).set(0, 5);
  ColumnWriter dots, keys;
  for (uint32_t i = 0; i < n; ++i) {
    dots.varint(0);
    dots.varint(zigzag(i == 0 ? 1 : 0));
    keys.varint(zigzag(1));  // elements 1, 2, 3, ...
  }
  store.setDots(_::asData(dots));
  store.setKeyKind(wire::ScalarKind::INT64);
  store.setKeys(_::asData(keys));
  store.setValueKind(wire::ScalarKind::NONE);
  CHECK_THROWS_WITH_AS(decodeCausal<ORSet<int64_t>>(root.asReader(), kLimits),
                       doctest::Contains("the same dot appears twice"), DecodeError);
}

// --- Negative tests: one per validation rule, on hand-built messages. ---


// A valid one-entry ORSet<int64_t> message (writer 5, dot (5, 1), element 3), then a mutation.
template <typename Mutate>
void expectRejected(Mutate mutate, const char* fragment) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::CausalState>();
  auto origin = root.initContext().initOrigins(1)[0];
  origin.setReplica(5);
  origin.setRuns(Bytes{0, 0}.data());  // interval 1..1
  auto store = root.initStore();
  store.setCount(1);
  store.initWriters(1).set(0, 5);
  store.setDots(Bytes{0, zigzag(1)}.data());
  store.setKeyKind(wire::ScalarKind::INT64);
  store.setKeys(Bytes{zigzag(3)}.data());
  store.setValueKind(wire::ScalarKind::NONE);
  mutate(root);
  auto words = capnp::messageToFlatArray(mb);
  capnp::FlatArrayMessageReader reader(words);
  CHECK_THROWS_WITH_AS(decodeCausal<ORSet<int64_t>>(reader.getRoot<wire::CausalState>(), kLimits),
                       doctest::Contains(fragment), DecodeError);
}

TEST_CASE("codec: the valid baseline message decodes") {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::CausalState>();
  auto origin = root.initContext().initOrigins(1)[0];
  origin.setReplica(5);
  origin.setRuns(Bytes{0, 0}.data());
  auto store = root.initStore();
  store.setCount(1);
  store.initWriters(1).set(0, 5);
  store.setDots(Bytes{0, zigzag(1)}.data());
  store.setKeyKind(wire::ScalarKind::INT64);
  store.setKeys(Bytes{zigzag(3)}.data());
  auto s = decodeCausal<ORSet<int64_t>>(root.asReader(), kLimits);
  CHECK(s.contains(3));
  CHECK(s.size() == 1);
}

TEST_CASE("codec: each validation rule rejects its malformed message") {
  using R = wire::CausalState::Builder;
  expectRejected([](R r) { r.getStore().setDots(Bytes{1, zigzag(1)}.data()); }, "writer index out of range");
  expectRejected([](R r) { r.getStore().setDots(Bytes{0, zigzag(0)}.data()); }, "outside 1..2^48-1");
  expectRejected([](R r) { r.getStore().setDots(Bytes{0, zigzag(int64_t{1} << 48)}.data()); },
                 "outside 1..2^48-1");
  expectRejected([](R r) {
    auto s = r.getStore();
    s.setCount(2);
    s.setDots(Bytes{0, zigzag(1), 0, zigzag(0)}.data());
    s.setKeys(Bytes{zigzag(3), zigzag(1)}.data());
  }, "the same dot appears twice");
  expectRejected([](R r) { r.getStore().setDots(Bytes{0, zigzag(2)}.data()); }, "not in the context");
  expectRejected([](R r) { r.getStore().setKeyKind(wire::ScalarKind::TEXT); }, "unexpected key kind");
  expectRejected([](R r) { r.getStore().setValueKind(wire::ScalarKind::INT64); }, "unexpected value kind");
  expectRejected([](R r) { r.getStore().setCount(2); }, "truncated varint");
  expectRejected([](R r) { r.getStore().setKeys(Bytes{zigzag(3), 7}.data()); }, "trailing bytes");
  expectRejected([](R r) { r.getStore().setTimestamps(Bytes{1}.data()); }, "timestamps column");
  expectRejected([](R r) {
    auto w = r.getStore().initWriters(2);
    w.set(0, 5);
    w.set(1, 6);
  }, "a listed writer has no entry");
  expectRejected([](R r) {
    auto w = r.getStore().initWriters(2);
    w.set(0, 6);
    w.set(1, 5);
  }, "writer ids not strictly increasing");
  expectRejected([](R r) { r.getStore().setCount(kLimits.maxEntries + 1); }, "limits.maxEntries");
  // Contexts.
  expectRejected([](R r) { r.getContext().getOrigins()[0].setRuns(Bytes{}.data()); }, "origin without intervals");
  expectRejected([](R r) { r.getContext().getOrigins()[0].setRuns(Bytes{0, uint64_t{1} << 48}.data()); },
                 "beyond 2^48-1");
  expectRejected([](R r) { r.getContext().getOrigins()[0].setRuns(Bytes{0}.data()); }, "truncated varint");
  expectRejected([](R r) {
    auto o = r.getContext().initOrigins(2);
    o[0].setReplica(5);
    o[0].setRuns(Bytes{0, 0}.data());
    o[1].setReplica(5);
    o[1].setRuns(Bytes{0, 0}.data());
  }, "not strictly increasing");
}

TEST_CASE("codec: counters reject non-canonical entries") {
  auto rejectG = [](auto fill, const char* fragment) {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<wire::GCounter>().initEntries(2);
    fill(e);
    CHECK_THROWS_WITH_AS(decode(mb.getRoot<wire::GCounter>().asReader(), kLimits),
                         doctest::Contains(fragment), DecodeError);
  };
  rejectG([](auto e) {
    e[0].setReplica(1); e[0].setCount(1); e[1].setReplica(2); e[1].setCount(0);
  }, "zero count");
  rejectG([](auto e) {
    e[0].setReplica(2); e[0].setCount(1); e[1].setReplica(2); e[1].setCount(3);
  }, "not strictly increasing");
  capnp::MallocMessageBuilder mb;
  auto e = mb.initRoot<wire::PNCounter>().initEntries(1);
  e[0].setReplica(1);
  CHECK_THROWS_WITH_AS(decode(mb.getRoot<wire::PNCounter>().asReader(), kLimits),
                       doctest::Contains("all-zero entry"), DecodeError);
}

}  // namespace
}  // namespace deltasync::gossip
