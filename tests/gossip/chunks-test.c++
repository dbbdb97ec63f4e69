#include "gossip/chunks.h"

#include <algorithm>
#include <string>

#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using namespace deltasync::crdt;

const Limits kLimits;

using Map = AWLWWMap<std::string, int64_t>;

// A state with live entries from several writers and removals (so context chunks exist).
Map history() {
  std::vector<Map> reps(3);
  const int steps = *rc::gen::inRange(0, 300);
  for (int i = 0; i < steps; ++i) {
    size_t r = *rc::gen::inRange<size_t>(0, 3);
    std::string k = "key-" + std::to_string(*rc::gen::inRange(0, 80));
    switch (*rc::gen::inRange(0, 6)) {
      case 0: reps[r].remove(k); break;
      case 1: reps[r].join(reps[*rc::gen::inRange<size_t>(0, 3)]); break;
      default: reps[r].set(ReplicaId{r + 1}, k, *rc::gen::arbitrary<int64_t>(), Timestamp{uint64_t(i)});
    }
  }
  return reps[*rc::gen::inRange<size_t>(0, 3)];
}

TEST_CASE("chunks: bounded, each below the state, and joined in any order they give the state") {
  PROPERTY("chunked transfer", [] {
    Map x = history();
    const size_t maxBytes = *rc::gen::inRange<size_t>(200, 4000);
    auto chunks = encodeChunks(x, maxBytes);
    std::vector<Map> decoded;
    for (auto& c : chunks) {
      Map piece = decodeChunk<Map>(c, kLimits);
      RC_ASSERT(c.size() <= maxBytes || piece.store().size() == 1);
      Map joined = x;
      joined.join(piece);
      RC_ASSERT(joined == x);  // piece <= x: joining it alone never removes or invents anything
      decoded.push_back(std::move(piece));
    }
    // Any order, into an empty replica and into a replica holding an older version.
    std::vector<size_t> order(decoded.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[*rc::gen::inRange<size_t>(0, i)]);
    Map fresh;
    for (size_t i : order) fresh.join(decoded[i]);
    RC_ASSERT(fresh == x);
  });
}

TEST_CASE("chunks: a large state splits into chunks of at most 64 KiB") {
  ORSet<int64_t> big;
  for (int64_t i = 0; i < 300000; ++i) big.add(ReplicaId{1 + uint64_t(i % 3)}, i * 104729);
  for (int64_t i = 0; i < 300000; i += 7) big.remove(i * 104729);
  auto chunks = encodeChunks(big);
  CHECK(chunks.size() > 10);
  ORSet<int64_t> back;
  for (auto& c : chunks) {
    CHECK(c.size() <= kDefaultChunkBytes);
    back.join(decodeChunk<ORSet<int64_t>>(c, kLimits));
  }
  CHECK(back == big);
}

TEST_CASE("chunks: one entry larger than the bound travels alone") {
  MVRegister<std::string> r;
  r.write(ReplicaId{1}, std::string(5000, 'x'));
  auto chunks = encodeChunks(r, 1000);
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].size() > 1000);
  CHECK(decodeChunk<MVRegister<std::string>>(chunks[0], kLimits) == r);
}

}  // namespace
}  // namespace deltasync::gossip
