#include "crdt/causal-context.h"

#include <set>

#include "crdt/errors.h"
#include "tests/support/property.h"

namespace deltasync::crdt {
namespace {

// Model: a plain set of dots. Counters drawn from a small range so intervals touch and merge.
using Model = std::set<Dot>;

Model modelOf(const CausalContext& c) {
  Model m;
  c.forEachInterval([&](ReplicaId r, Interval i) {
    for (uint64_t k = i.lo; k <= i.hi; ++k) m.insert(Dot{r, k});
  });
  return m;
}

rc::Gen<Dot> genDot() {
  return rc::gen::apply([](uint64_t r, uint64_t c) { return Dot{ReplicaId{r}, c}; },
                        rc::gen::inRange<uint64_t>(1, 4), rc::gen::inRange<uint64_t>(1, 40));
}

rc::Gen<CausalContext> genContext() {
  return rc::gen::map(rc::gen::container<std::vector<Dot>>(genDot()), [](std::vector<Dot> ds) {
    CausalContext c;
    for (Dot d : ds) c.add(d);
    return c;
  });
}

TEST_CASE("CausalContext: add and contains agree with a set of dots") {
  PROPERTY("add/contains/erase model", [] {
    auto ops = *rc::gen::container<std::vector<std::pair<bool, Dot>>>(
        rc::gen::pair(rc::gen::arbitrary<bool>(), genDot()));
    CausalContext c;
    Model m;
    for (auto [isAdd, d] : ops) {
      if (isAdd) {
        c.add(d);
        m.insert(d);
      } else {
        c.erase(d);
        m.erase(d);
      }
      RC_ASSERT(c.valid());
    }
    RC_ASSERT(modelOf(c) == m);
    for (uint64_t r = 1; r <= 4; ++r) {
      uint64_t mx = 0, contiguous = 0;
      for (Dot d : m) {
        if (d.replica.value != r) continue;
        mx = std::max(mx, d.counter);
      }
      while (m.count(Dot{ReplicaId{r}, contiguous + 1})) ++contiguous;
      RC_ASSERT(c.max(ReplicaId{r}) == mx);
      RC_ASSERT(c.contiguous(ReplicaId{r}) == contiguous);
      RC_ASSERT(c.nextDot(ReplicaId{r}).counter == mx + 1);
    }
  });
}

TEST_CASE("CausalContext: set algebra agrees with the model") {
  PROPERTY("join/minus/intersect/includes", [] {
    auto a = *genContext();
    auto b = *genContext();
    Model ma = modelOf(a), mb = modelOf(b);

    Model u = ma, d, i;
    u.insert(mb.begin(), mb.end());
    std::set_difference(ma.begin(), ma.end(), mb.begin(), mb.end(), std::inserter(d, d.end()));
    std::set_intersection(ma.begin(), ma.end(), mb.begin(), mb.end(), std::inserter(i, i.end()));

    CausalContext j = a;
    j.join(b);
    RC_ASSERT(j.valid());
    RC_ASSERT(modelOf(j) == u);
    auto diff = a.minus(b);
    RC_ASSERT(diff.valid());
    RC_ASSERT(modelOf(diff) == d);
    auto inter = a.intersect(b);
    RC_ASSERT(inter.valid());
    RC_ASSERT(modelOf(inter) == i);
    RC_ASSERT(a.includes(b) == std::includes(ma.begin(), ma.end(), mb.begin(), mb.end()));
    RC_ASSERT(a.dotCount() == ma.size());
    // Canonical form: equal sets <=> equal representations.
    RC_ASSERT((a == b) == (ma == mb));
  });
}

TEST_CASE("CausalContext: join is a lattice join") {
  PROPERTY("commutative, associative, idempotent", [] {
    auto a = *genContext(), b = *genContext(), c = *genContext();
    auto ab = a;
    ab.join(b);
    auto ba = b;
    ba.join(a);
    RC_ASSERT(ab == ba);
    auto ab_c = ab;
    ab_c.join(c);
    auto bc = b;
    bc.join(c);
    auto a_bc = a;
    a_bc.join(bc);
    RC_ASSERT(ab_c == a_bc);
    auto aa = a;
    aa.join(a);
    RC_ASSERT(aa == a);
  });
}

TEST_CASE("CausalContext: 1000 consecutive dots keep one interval") {
  CausalContext c;
  for (uint64_t k = 1; k <= 1000; ++k) c.add(Dot{ReplicaId{7}, k});
  CHECK(c.intervalCount() == 1);
  CHECK(c.contiguous(ReplicaId{7}) == 1000);
  // Out of order arrival compacts too.
  CausalContext d;
  for (uint64_t k = 1000; k >= 1; --k) d.add(Dot{ReplicaId{7}, k});
  CHECK(d.intervalCount() == 1);
  CHECK(c == d);
}

TEST_CASE("CausalContext: limits give clear errors") {
  CausalContext c;
  CHECK_THROWS_AS(c.addRange(ReplicaId{1}, 0, 3), std::invalid_argument);
  CHECK_THROWS_AS(c.addRange(ReplicaId{1}, 5, 3), std::invalid_argument);
  CHECK_THROWS_AS(c.addRange(ReplicaId{1}, 1, kMaxDotCounter + 1), std::invalid_argument);
  c.addRange(ReplicaId{1}, 1, kMaxDotCounter);
  CHECK_THROWS_AS(c.nextDot(ReplicaId{1}), LimitError);
  CHECK(c.valid());
}

}  // namespace
}  // namespace deltasync::crdt
