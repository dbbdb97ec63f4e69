// The built-in codecs (include/deltasync/codec.h): round trips, order preserved (encoded bytes
// sort as the values do), and bytes they do not accept refused with a CodecError.
#include <deltasync/codec.h>

#include <cmath>
#include <cstring>
#include <string>

#include "tests/support/property.h"

namespace deltasync {
namespace {

// As elements() and entries() sort: unsigned bytes (std::string compares so).
bool bytesLess(const std::string& a, const std::string& b) { return a < b; }

template <typename T>
void roundTripsAndSorts(const char* name) {
  PROPERTY(name, [](T a, T b) {
    RC_ASSERT(Codec<T>::decode(Codec<T>::encode(a)) == a);
    RC_ASSERT((a < b) == bytesLess(Codec<T>::encode(a), Codec<T>::encode(b)));
  });
}

TEST_CASE("codec: integers and bools round-trip and sort as their bytes") {
  roundTripsAndSorts<int64_t>("int64_t");
  roundTripsAndSorts<uint64_t>("uint64_t");
  roundTripsAndSorts<bool>("bool");
  CHECK(bytesLess(Codec<int64_t>::encode(INT64_MIN), Codec<int64_t>::encode(-1)));
  CHECK(bytesLess(Codec<int64_t>::encode(-1), Codec<int64_t>::encode(0)));
  CHECK(bytesLess(Codec<int64_t>::encode(0), Codec<int64_t>::encode(INT64_MAX)));
}

TEST_CASE("codec: doubles round-trip bit for bit and sort as their bytes") {
  PROPERTY("double", [](double a, double b) {
    const double back = Codec<double>::decode(Codec<double>::encode(a));
    RC_ASSERT(std::memcmp(&back, &a, sizeof a) == 0);  // NaN payloads and -0.0 too
    if (!std::isnan(a) && !std::isnan(b) && a != b) {
      RC_ASSERT((a < b) == bytesLess(Codec<double>::encode(a), Codec<double>::encode(b)));
    }
  });
  const double ordered[] = {-INFINITY, -1e300, -1.0, -1e-300, -0.0, 0.0, 1e-300, 1.0, 1e300, INFINITY};
  for (size_t i = 1; i < std::size(ordered); ++i) {
    CAPTURE(i);
    CHECK(bytesLess(Codec<double>::encode(ordered[i - 1]), Codec<double>::encode(ordered[i])));
  }
}

TEST_CASE("codec: strings and byte strings are their bytes") {
  PROPERTY("string", [](const std::string& s) {
    RC_ASSERT(Codec<std::string>::encode(s) == s);
    RC_ASSERT(Codec<std::string>::decode(s) == s);
    Bytes b = Codec<Bytes>::decode(s);
    RC_ASSERT(b.size() == s.size());
    RC_ASSERT(Codec<Bytes>::encode(b) == s);
  });
}

TEST_CASE("codec: bytes a codec does not accept are a CodecError saying why") {
  CHECK_THROWS_WITH_AS(Codec<int64_t>::decode("abc"), "int64_t takes 8 bytes, not 3", CodecError);
  CHECK_THROWS_WITH_AS(Codec<uint64_t>::decode(""), "uint64_t takes 8 bytes, not 0", CodecError);
  CHECK_THROWS_WITH_AS(Codec<double>::decode(std::string(9, 'x')), "double takes 8 bytes, not 9", CodecError);
  CHECK_THROWS_WITH_AS(Codec<bool>::decode("\x02"), "bool takes one byte, 0 or 1", CodecError);
  CHECK_THROWS_AS(Codec<bool>::decode("yes"), CodecError);
  CHECK_THROWS_WITH_AS(detail::decodeStored<int64_t>("abc", "ages", "value"),
                       "object 'ages': a stored value (3 bytes) does not decode: int64_t takes 8 bytes, not 3",
                       CodecError);
}

struct Point {
  int32_t x, y;
  bool operator==(const Point&) const = default;
};

}  // namespace

template <>
struct Codec<Point> {
  static std::string encode(const Point& p) { return std::to_string(p.x) + "," + std::to_string(p.y); }
  static Point decode(std::string_view bytes) {
    const size_t comma = bytes.find(',');
    if (comma == std::string_view::npos) throw std::invalid_argument("a point is \"x,y\"");
    return {std::stoi(std::string(bytes.substr(0, comma))), std::stoi(std::string(bytes.substr(comma + 1)))};
  }
};

namespace {

TEST_CASE("codec: a user type is storable by specialising Codec, and its decode errors are CodecErrors") {
  static_assert(Encodable<Point>);
  static_assert(Encodable<int64_t> && Encodable<double> && Encodable<bool> && Encodable<Bytes>);
  static_assert(!Encodable<float>);  // no codec: Set<float> does not compile, with a message
  CHECK(Codec<Point>::decode(Codec<Point>::encode({-3, 7})) == Point{-3, 7});
  CHECK_THROWS_WITH_AS(detail::decodeStored<Point>("nope", "points", "element"),
                       "object 'points': a stored element (4 bytes) does not decode: a point is \"x,y\"",
                       CodecError);
}

}  // namespace
}  // namespace deltasync
