#include "gossip/varint.h"

#include <limits>

#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

TEST_CASE("varint and zigzag round-trip every value, and only consume what they wrote") {
  PROPERTY("round trip", [](std::vector<uint64_t> us, std::vector<int64_t> ss) {
    ColumnWriter w;
    for (uint64_t u : us) w.varint(u);
    for (int64_t s : ss) w.signedVarint(s);
    ColumnReader r(w.bytes().data(), w.size(), "test");
    for (uint64_t u : us) RC_ASSERT(r.varint() == u);
    for (int64_t s : ss) RC_ASSERT(r.signedVarint() == s);
    RC_ASSERT(r.atEnd());
  });
  for (int64_t s : {int64_t{0}, int64_t{-1}, int64_t{1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    CHECK(unzigzag(zigzag(s)) == s);
  }
  CHECK(zigzag(-1) == 1);
  CHECK(zigzag(1) == 2);
}

TEST_CASE("one- and two-byte varints (the inline fast path) decode as the general loop does") {
  // Every value around the 1/2/3-byte boundaries, alone (the last varint of a column takes the
  // loop) and followed by another value (it takes the fast path).
  for (uint64_t v = 0; v < (uint64_t{1} << 15) + 300; v += (v < 300 || v > (1 << 14) - 300) ? 1 : 97) {
    ColumnWriter w;
    w.varint(v);
    ColumnReader alone(w.bytes().data(), w.size(), "test");
    CHECK(alone.varint() == v);
    CHECK(alone.atEnd());
    w.varint(v);
    ColumnReader two(w.bytes().data(), w.size(), "test");
    CHECK(two.varint() == v);
    CHECK(two.varint() == v);
    CHECK(two.atEnd());
  }
  // Non-canonical (padded) encodings keep their value, and each byte is consumed once.
  const unsigned char padded[] = {0x80, 0x00, 0x81, 0x00, 0x05};
  ColumnReader r(padded, sizeof padded, "test");
  CHECK(r.varint() == 0);
  CHECK(r.varint() == 1);
  CHECK(r.varint() == 5);
  CHECK(r.atEnd());
}

TEST_CASE("malformed columns are rejected with the column's name") {
  const unsigned char truncated[] = {0x80, 0x80};
  ColumnReader a(truncated, sizeof truncated, "dots");
  CHECK_THROWS_WITH_AS(a.varint(), doctest::Contains("column 'dots': truncated varint"), DecodeError);

  const unsigned char tooLong[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  ColumnReader b(tooLong, sizeof tooLong, "keys");
  CHECK_THROWS_WITH_AS(b.varint(), doctest::Contains("overflows 64 bits"), DecodeError);

  const unsigned char eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
  ColumnReader c(eleven, sizeof eleven, "keys");
  CHECK_THROWS_AS(c.varint(), DecodeError);

  const unsigned char shortRaw[] = {0x05, 'a', 'b'};
  ColumnReader d(shortRaw, sizeof shortRaw, "values");
  CHECK_THROWS_WITH_AS(d.raw(d.varint()), doctest::Contains("past the end"), DecodeError);

  const unsigned char extra[] = {0x01, 0x02};
  ColumnReader e(extra, sizeof extra, "values");
  e.varint();
  CHECK_THROWS_WITH_AS(e.expectEnd(), doctest::Contains("trailing bytes"), DecodeError);
}

}  // namespace
}  // namespace deltasync::gossip
