#include "crdt/chunked-vector.h"

#include <memory>
#include <string>
#include <vector>

#include "tests/support/property.h"

namespace deltasync::crdt {
namespace {

// An element that owns heap memory and counts live instances, so that a missed or doubled
// construction or destruction shows up (and ASan sees leaks and double frees).
int gLive = 0;
struct Counted {
  std::unique_ptr<std::string> s;
  explicit Counted(std::string v) : s(std::make_unique<std::string>(std::move(v))) { ++gLive; }
  Counted(const Counted& o) : s(std::make_unique<std::string>(*o.s)) { ++gLive; }
  Counted(Counted&& o) noexcept : s(std::move(o.s)) { ++gLive; }
  Counted& operator=(const Counted& o) {
    s = std::make_unique<std::string>(*o.s);
    return *this;
  }
  Counted& operator=(Counted&& o) noexcept = default;
  ~Counted() { --gLive; }
};

// Chunks of 4 elements: every few operations cross a chunk boundary.
using Small = _::ChunkedVector<Counted, 2>;

std::vector<std::string> contents(const Small& v) {
  std::vector<std::string> out;
  for (const Counted& c : v) out.push_back(*c.s);
  return out;
}

void checkSame(const Small& v, const std::vector<std::string>& model) {
  RC_ASSERT(v.size() == model.size());
  RC_ASSERT(contents(v) == model);
  for (size_t p = 0; p < model.size(); ++p) RC_ASSERT(*v[p].s == model[p]);
  RC_ASSERT(v.capacity() >= v.size());
}

TEST_CASE("ChunkedVector: agrees with std::vector across chunk boundaries") {
  PROPERTY("push, pop, overwrite, reserve, shrink, copy, move", [] {
    const int liveBefore = gLive;
    {
      Small v;
      std::vector<std::string> model;
      const auto ops = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 100));
      int next = 0;
      for (int op : ops) {
        if (op < 40) {  // push
          std::string s = "v" + std::to_string(next++);
          v.push_back(Counted(s));
          model.push_back(s);
        } else if (op < 45) {  // emplace: returns the new element
          std::string s = "e" + std::to_string(next++);
          Counted& e = v.emplace_back(s);
          RC_ASSERT(&e == &v.back());
          RC_ASSERT(*e.s == s);
          model.push_back(s);
        } else if (op < 75) {  // pop
          if (!model.empty()) {
            v.pop_back();
            model.pop_back();
          }
        } else if (op < 82) {  // overwrite (as the dot store's swap-remove does)
          if (!model.empty()) {
            size_t p = static_cast<size_t>(op) % model.size();
            v[p] = Counted("w" + std::to_string(next));
            model[p] = "w" + std::to_string(next++);
          }
        } else if (op < 86) {
          size_t n = model.size() + static_cast<size_t>(op % 11);
          v.reserve(n);
          RC_ASSERT(v.capacity() >= n);
        } else if (op < 90) {
          v.shrink_to_fit();
          // No spare chunk, and the head exactly fits when no chunk is used.
          RC_ASSERT(v.capacity() < v.size() + Small::kChunk || v.size() <= Small::kChunk);
          if (v.size() <= Small::kChunk) RC_ASSERT(v.capacity() <= std::max<size_t>(v.size(), 1));
        } else if (op < 94) {  // copy, then mutate the copy: the original must not change
          Small c = v;
          checkSame(c, model);
          c.push_back(Counted("x"));
          if (!model.empty()) c[0] = Counted("y");
          checkSame(v, model);
          Small d;
          d = c;
          RC_ASSERT(contents(d) == contents(c));
        } else if (op < 97) {  // move out and back
          Small m = std::move(v);
          RC_ASSERT(v.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
          checkSame(m, model);
          v = std::move(m);
        } else {  // swap with an empty one and back
          Small e;
          e.swap(v);
          RC_ASSERT(v.empty());
          v.swap(e);
        }
        checkSame(v, model);
      }
      RC_ASSERT(gLive == liveBefore + static_cast<int>(model.size()));
    }
    RC_ASSERT(gLive == liveBefore);
  });
}

TEST_CASE("ChunkedVector: growth past the head copies nothing; shrinking has hysteresis") {
  using V = _::ChunkedVector<int, 3>;  // head up to 8, then chunks of 8
  V v;
  for (int i = 0; i < 8; ++i) v.push_back(i);
  const int* head = &v[0];
  const int* firstChunk = nullptr;
  for (int i = 8; i < 100; ++i) {
    v.push_back(i);
    if (i == 8) firstChunk = &v[8];
  }
  // Elements never moved: the head was full before the first chunk, chunks are never moved.
  CHECK(&v[0] == head);
  CHECK(&v[8] == firstChunk);
  for (int i = 0; i < 100; ++i) CHECK(v[i] == i);
  CHECK(v.capacity() == 104);  // head 8 + 12 chunks of 8
  // Down to 96: the chunk holding 96..103 is kept until the size is 4 below its start.
  while (v.size() > 96) v.pop_back();
  CHECK(v.capacity() == 104);
  while (v.size() > 93) v.pop_back();
  CHECK(v.capacity() == 104);
  v.pop_back();  // 92 = 96 - 8/2
  CHECK(v.capacity() == 96);
  // Back and forth near the boundary: the chunk is allocated once and kept.
  for (int i = 0; i < 5; ++i) v.push_back(0);  // 97: needs the chunk 96..103 again
  CHECK(v.capacity() == 104);
  for (int i = 0; i < 10; ++i) {
    for (int j = 0; j < 4; ++j) v.pop_back();  // 93
    CHECK(v.capacity() == 104);
    for (int j = 0; j < 4; ++j) v.push_back(0);  // 97
    CHECK(v.capacity() == 104);
  }
  // All the way down: the head shrinks like a vector's (below 3/8 load, to a power of two).
  while (v.size() > 2) v.pop_back();
  CHECK(v.capacity() <= 8);
  CHECK(v[0] == 0);
  CHECK(v[1] == 1);
  v.shrink_to_fit();
  CHECK(v.capacity() == 2);
}

TEST_CASE("ChunkedVector: moves and swaps hand over buffers, never elements") {
  using V = _::ChunkedVector<int, 3>;  // head up to 8, then chunks of 8
  for (int n : {5, 8, 9, 30}) {  // (a head of a few ints fits the inline buffer: those move)
    CAPTURE(n);
    V v;
    for (int i = 0; i < n; ++i) v.push_back(i);
    std::vector<const int*> at;
    for (int i = 0; i < n; ++i) at.push_back(&v[static_cast<size_t>(i)]);
    V w;  // fresh: its head is the inline buffer
    w = std::move(v);
    V x;
    x.swap(w);
    REQUIRE(x.size() == static_cast<size_t>(n));
    CHECK(v.empty());
    CHECK(w.empty());
    for (int i = 0; i < n; ++i) {
      CHECK(x[static_cast<size_t>(i)] == i);
      CHECK(&x[static_cast<size_t>(i)] == at[static_cast<size_t>(i)]);  // (elements never moved)
    }
  }
}

TEST_CASE("ChunkedVector: reserve matches what pushing would leave; memory accounting") {
  using V = _::ChunkedVector<uint64_t, 4>;  // head up to 16, chunks of 16
  V a, b;
  a.reserve(50);
  for (uint64_t i = 0; i < 50; ++i) b.push_back(i);
  CHECK(a.capacity() == b.capacity());
  CHECK(a.capacity() == 64);
  CHECK(b.heapBytes() >= 64 * sizeof(uint64_t));
  V one;
  one.push_back(7);
  CHECK(one.heapBytes() == 0);  // one element stays inline
}

TEST_CASE("ChunkedVector: a large reserve is one block; popping or shrinking frees it") {
  using V = _::ChunkedVector<uint64_t, 4>;  // head up to 16, chunks of 16
  V v;
  v.reserve(16 + 5 * 16);  // five chunks, as one block: consecutive in memory
  CHECK(v.capacity() == 96);
  for (uint64_t i = 0; i < 96; ++i) v.push_back(i);
  for (size_t p = 16; p + 1 < 96; ++p) CHECK(&v[p + 1] == &v[p] + 1);
  // Past the block, chunks are separate; popping frees them with the usual hysteresis.
  for (uint64_t i = 96; i < 120; ++i) v.push_back(i);
  CHECK(v.capacity() == 128);
  while (v.size() > 88) v.pop_back();
  CHECK(v.capacity() == 96);
  // Within the block nothing is freed until the size falls below half of its 80 positions ...
  while (v.size() > 40) v.pop_back();
  CHECK(v.capacity() == 96);
  CHECK(&v[33] == &v[32] + 1);
  // ... then the elements move to separate chunks, exactly as many as they need.
  v.pop_back();  // 39
  CHECK(v.capacity() == 48);
  for (uint64_t i = 0; i < 39; ++i) CHECK(v[i] == i);
  // shrink_to_fit() frees a block with a spare chunk at once.
  V w;
  w.reserve(100);
  for (uint64_t i = 0; i < 70; ++i) w.push_back(i);
  CHECK(w.capacity() == 112);
  w.shrink_to_fit();
  CHECK(w.capacity() == 80);
  for (uint64_t i = 0; i < 70; ++i) CHECK(w[i] == i);
  // A copy of a large vector is one block too.
  V c = w;
  CHECK(&c[64] == &c[63] + 1);
  CHECK(c.capacity() == 80);
}

}  // namespace
}  // namespace deltasync::crdt
