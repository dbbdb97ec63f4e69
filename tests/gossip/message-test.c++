#include "gossip/message.h"

#include <vector>

#include "gossip/codec.h"
#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using namespace deltasync::crdt;

kj::Array<kj::byte> sampleSet(int n) {
  ORSet<int64_t> s;
  for (int64_t i = 0; i < n; ++i) s.add(ReplicaId{1}, i);
  capnp::MallocMessageBuilder mb;
  encodeCausal(s, mb.initRoot<wire::CausalState>());
  return frame(mb);
}

ORSet<int64_t> decodeSet(kj::ArrayPtr<const kj::byte> bytes, const Limits& limits = Limits{}) {
  IncomingMessage in(bytes, limits);
  return in.decodeRoot<wire::CausalState>(
      [&](wire::CausalState::Reader r) { return decodeCausal<ORSet<int64_t>>(r, limits); });
}

void put32(std::vector<kj::byte>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

TEST_CASE("message: framed bytes round-trip") {
  auto bytes = sampleSet(1000);
  auto s = decodeSet(bytes);
  CHECK(s.size() == 1000);
}

TEST_CASE("message: framing is checked before capnp reads anything") {
  auto good = sampleSet(10);
  std::vector<kj::byte> b(good.begin(), good.end());
  auto view = [](const std::vector<kj::byte>& v) { return kj::arrayPtr(v.data(), v.size()); };

  Limits small;
  small.maxMessageBytes = good.size() - 8;
  CHECK_THROWS_WITH_AS(decodeSet(good, small), doctest::Contains("exceeds limits.maxMessageBytes"), DecodeError);

  auto odd = b;
  odd.push_back(0);
  CHECK_THROWS_WITH_AS(decodeSet(view(odd)), doctest::Contains("whole number of words"), DecodeError);
  CHECK_THROWS_WITH_AS(decodeSet(kj::ArrayPtr<const kj::byte>()), doctest::Contains("whole number of words"),
                       DecodeError);

  auto many = b;
  put32(many, 0, 1000);  // 1001 segments
  CHECK_THROWS_WITH_AS(decodeSet(view(many)), doctest::Contains("limits.maxSegments"), DecodeError);

  Limits lots;
  lots.maxSegments = 1u << 30;
  auto table = b;
  put32(table, 0, 100000);  // a table larger than the message
  CHECK_THROWS_WITH_AS(decodeSet(view(table), lots), doctest::Contains("segment table runs past"), DecodeError);

  auto mismatch = b;
  put32(mismatch, 4, 1);  // first segment claims 1 word
  CHECK_THROWS_WITH_AS(decodeSet(view(mismatch)), doctest::Contains("do not match"), DecodeError);

  auto trailing = b;
  trailing.insert(trailing.end(), 8, 0);
  CHECK_THROWS_WITH_AS(decodeSet(view(trailing)), doctest::Contains("do not match"), DecodeError);
}

TEST_CASE("message: capnp's own errors while reading become DecodeError") {
  auto good = sampleSet(10);
  std::vector<kj::byte> b(good.begin(), good.end());
  // Corrupt the root pointer (first word after the 8-byte table) to point far out of bounds.
  uint64_t badPtr = (uint64_t{0x00ffffff} << 2) | 0;  // struct pointer, huge offset
  std::memcpy(b.data() + 8, &badPtr, 8);
  // Cap'n Proto treats this as recoverable and reads a default struct, which the codec rejects;
  // either way the caller gets a DecodeError.
  CHECK_THROWS_AS(decodeSet(kj::arrayPtr(b.data(), b.size())), DecodeError);

  Limits tight;
  tight.traversalLimitWords = 4;
  CHECK_THROWS_WITH_AS(decodeSet(sampleSet(1000), tight), doctest::Contains("capnp:"), DecodeError);
}

TEST_CASE("message: random corruption never crashes and never yields an invalid value") {
  PROPERTY("corrupted bytes", [] {
    auto good = sampleSet(*rc::gen::inRange(0, 50));
    std::vector<kj::byte> b(good.begin(), good.end());
    const int flips = *rc::gen::inRange(1, 8);
    for (int i = 0; i < flips; ++i) {
      size_t at = *rc::gen::inRange<size_t>(0, b.size());
      b[at] ^= static_cast<kj::byte>(*rc::gen::inRange(1, 256));
    }
    try {
      auto s = decodeSet(kj::arrayPtr(b.data(), b.size()));
      RC_ASSERT(s.context().valid());
      s.store().forEachDot([&](Dot d) { RC_ASSERT(s.context().contains(d)); });
    } catch (const DecodeError&) {
    }
  });
}

}  // namespace
}  // namespace deltasync::gossip
