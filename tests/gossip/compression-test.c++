#include "gossip/compression.h"

#include <vector>

#include "gossip/errors.h"
#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

kj::ArrayPtr<const kj::byte> view(const std::vector<kj::byte>& v) { return kj::arrayPtr(v.data(), v.size()); }

TEST_CASE("zlib: round trip, and corruption is a DecodeError") {
  PROPERTY("round trip", [](std::vector<uint8_t> data) {
    std::vector<kj::byte> in(data.begin(), data.end());
    auto z = zlibCompress(view(in));
    auto back = zlibDecompress(z, in.size());
    RC_ASSERT(std::vector<kj::byte>(back.begin(), back.end()) == in);
    if (!in.empty()) {
      RC_ASSERT_THROWS_AS(zlibDecompress(z, in.size() - 1), DecodeError);  // one byte over
    }
  });
  PROPERTY("corrupted input never crashes", [](std::vector<uint8_t> data) {
    std::vector<kj::byte> in(data.begin(), data.end());
    auto z = zlibCompress(view(in));
    std::vector<kj::byte> bad(z.begin(), z.end());
    bad[*rc::gen::inRange<size_t>(0, bad.size())] ^= static_cast<kj::byte>(*rc::gen::inRange(1, 256));
    if (*rc::gen::arbitrary<bool>()) bad.resize(*rc::gen::inRange<size_t>(0, bad.size()));
    try {
      auto out = zlibDecompress(view(bad), 1 << 20);
      RC_ASSERT(out.size() <= size_t{1} << 20);
    } catch (const DecodeError&) {
    }
  });
}

TEST_CASE("zlib: a decompression bomb stops at the limit") {
  std::vector<kj::byte> zeros(64 << 20, 0);  // 64 MiB of zeros compress to ~64 KiB
  auto z = zlibCompress(view(zeros));
  CHECK(z.size() < (1 << 20));
  CHECK_THROWS_WITH_AS(zlibDecompress(z, 1 << 20), doctest::Contains("inflates beyond"), DecodeError);
  auto small = zlibCompress(kj::arrayPtr(zeros.data(), 10));
  std::vector<kj::byte> extra(small.begin(), small.end());
  extra.push_back(1);
  CHECK_THROWS_WITH_AS(zlibDecompress(view(extra), 100), doctest::Contains("trailing bytes"), DecodeError);
  CHECK_THROWS_AS(zlibDecompress(kj::ArrayPtr<const kj::byte>(), 100), DecodeError);
}

}  // namespace
}  // namespace deltasync::gossip
