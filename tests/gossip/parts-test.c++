// Catch-up parts (gossip/engine.h partsOf, cut by gossip/split.h): what a state transfer sends of
// a large value, encoded. Each part is within the bound (or one entry alone), never more than the
// value, encodes as the part built as a value would, and the parts join to the value in any order.
#include <algorithm>
#include <string>

#include "gossip/engine.h"
#include "gossip/compact.h"
#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using namespace deltasync::crdt;

const Limits kLimits;

// A state with live entries from several writers and removals (so context-only parts exist).
Map history() {
  std::vector<Map> reps(3);
  const int steps = *rc::gen::inRange(0, 300);
  for (int i = 0; i < steps; ++i) {
    size_t r = *rc::gen::inRange<size_t>(0, 3);
    std::string k = "key-" + std::to_string(*rc::gen::inRange(0, 80));
    switch (*rc::gen::inRange(0, 6)) {
      case 0: reps[r].remove(k); break;
      case 1: reps[r].join(reps[*rc::gen::inRange<size_t>(0, 3)]); break;
      default:
        reps[r].set(ReplicaId{r + 1}, k, std::string(*rc::gen::inRange(0, 30), 'v'), Timestamp{uint64_t(i)});
    }
  }
  return reps[*rc::gen::inRange<size_t>(0, 3)];
}

// The parts of v, each through its own encoding (as a state chunk carries it), checked against
// the bound and against v.
// sender: the chunks' (references 0 stand for it).
template <typename T>
std::vector<T> transferred(const T& x, size_t maxBytes, ReplicaId sender) {
  std::vector<T> out;
  for (const std::vector<unsigned char>& bytes : partsOf(Value(x), maxBytes, sender)) {
    T piece = std::get<T>(decodeCompact(bytes.data(), bytes.size(), sender, kLimits));
    ColumnWriter asValue;
    encodeCompact(Value(piece), sender, asValue);
    RC_ASSERT(asValue.bytes() == bytes);  // encoded from x's entries as the part itself encodes
    RC_ASSERT(bytes.size() <= maxBytes || piece.store().size() == 1);
    T joined = x;
    joined.join(piece);
    RC_ASSERT(joined == x);  // piece <= x: joining it alone never removes or invents anything
    out.push_back(std::move(piece));
  }
  return out;
}

TEST_CASE("parts: bounded, each below the state, and joined in any order they give the state") {
  PROPERTY("catch-up parts", [] {
    Map x = history();
    const size_t maxBytes = *rc::gen::inRange<size_t>(200, 4000);
    // The sender: one of the writers (1..3), or a stranger.
    std::vector<Map> decoded = transferred(x, maxBytes, ReplicaId{*rc::gen::inRange<uint64_t>(1, 5)});
    // Any order, into an empty replica.
    std::vector<size_t> order(decoded.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[*rc::gen::inRange<size_t>(0, i)]);
    Map fresh;
    for (size_t i : order) fresh.join(decoded[i]);
    RC_ASSERT(fresh == x);
  });
}

TEST_CASE("parts: a large state splits into parts of at most 64 KiB") {
  ORSet<std::string> big;
  for (int64_t i = 0; i < 300000; ++i) big.add(ReplicaId{1 + uint64_t(i % 3)}, std::to_string(i * 104729));
  for (int64_t i = 0; i < 300000; i += 7) big.remove(std::to_string(i * 104729));
  auto parts = transferred(big, 64 << 10, ReplicaId{2});
  CHECK(parts.size() > 10);
  ORSet<std::string> back;
  for (auto& p : parts) back.join(p);
  CHECK(back == big);
}

TEST_CASE("parts: one entry larger than the bound travels alone") {
  MVRegister<std::string> r;
  r.write(ReplicaId{1}, std::string(5000, 'x'));
  auto parts = partsOf(Value(r), 1000, ReplicaId{1});
  REQUIRE(parts.size() == 1);
  CHECK(parts[0].size() > 1000);
  CHECK(std::get<MVRegister<std::string>>(decodeCompact(parts[0].data(), parts[0].size(), ReplicaId{1}, kLimits)) == r);
}

}  // namespace
}  // namespace deltasync::gossip
