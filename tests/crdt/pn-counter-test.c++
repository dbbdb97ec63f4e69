#include "crdt/pn-counter.h"

#include <limits>
#include <map>
#include <vector>

#include "tests/support/crdt-laws.h"
#include "tests/support/property.h"

namespace deltasync::crdt {

// Prints counters in law violations (found by ADL, so outside the anonymous namespace).
void showValue(const PNCounter& c, std::ostream& os) {
  os << "{";
  for (const auto& e : c)
    os << " r" << e.replica.value << ":+" << e.increments << "-" << e.decrements;
  os << " }";
}

namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr int64_t kMin64 = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr ReplicaId r1{1}, r2{2}, r3{3};

// One increment or decrement by the acting replica. Amounts are mostly small (0 included), now
// and then huge, so that a replica's half overflows (refused, counter unchanged) and the
// difference leaves the int64 range (value() clamps).
struct Op {
  bool up = true;
  uint64_t n = 1;

  PNCounter apply(PNCounter& state, ReplicaId self) const {
    try {
      return up ? state.increment(self, n) : state.decrement(self, n);
    } catch (const std::overflow_error&) {
      return PNCounter{};
    }
  }
};

void showValue(const Op& op, std::ostream& os) {
  os << (op.up ? "increment(" : "decrement(") << op.n << ")";
}

rc::Gen<Op> genOp() {
  return rc::gen::apply(
      [](bool up, uint64_t n) {
        return Op{up, n};
      },
      rc::gen::arbitrary<bool>(),
      rc::gen::weightedOneOf<uint64_t>({
          {17, rc::gen::inRange<uint64_t>(0, 6)},
          {3, rc::gen::inRange<uint64_t>(kMax / 4, kMax)},
      }));
}

PNCounter counterOf(std::vector<PNCounter::Entry> entries) {
  return PNCounter::fromEntries(entries);
}

int64_t clamp64(Int128 v) {
  return v < kMin64 ? kMin64 : v > kMax64 ? kMax64 : int64_t(v);
}

TEST_CASE("PNCounter: lattice laws") {
  CHECK(checkJoinLaws<PNCounter>(genOp()));
  CHECK(checkDeltaMutatorLaw<PNCounter>(genOp()));
  CHECK(checkStripLaws<PNCounter>(genOp()));
  CHECK(checkConvergence<PNCounter>(genOp()));
}

TEST_CASE("PNCounter: value is increments minus decrements") {
  PROPERTY("model: per-replica totals of each kind and their difference", [] {
    const auto replicas = *rc::gen::inRange<size_t>(2, 6);
    const auto events = *genEvents(genOp(), replicas, 60);
    Network<PNCounter> net(replicas);
    // Specification: per replica, the totals of its accepted increments and decrements (one is
    // refused exactly when it would take its total past 2^64 - 1).
    std::map<ReplicaId, PNCounter::Entry> model;
    for (size_t r = 0; r < replicas; ++r) model[replicaId(r)] = {replicaId(r), 0, 0};
    for (const auto& e : events) {
      if (e.kind == Event<Op>::Kind::kMutate) {
        PNCounter::Entry& m = model[replicaId(e.from)];
        uint64_t& total = e.op->up ? m.increments : m.decrements;
        if (e.op->n <= kMax - total) total += e.op->n;
      }
      net.apply(e);
      for (size_t i = 0; i < replicas; ++i) {
        RC_ASSERT(net.state(i).get(replicaId(i)) == model[replicaId(i)]);  // own entry exact
      }
    }
    net.exchangeAll();

    Int128 exact = 0;
    std::vector<PNCounter::Entry> entries;
    for (const auto& [r, m] : model) {
      exact += Int128{m.increments} - Int128{m.decrements};
      if (m.increments != 0 || m.decrements != 0) entries.push_back(m);
    }
    for (size_t i = 0; i < replicas; ++i) {
      const PNCounter& c = net.state(i);
      RC_ASSERT(c.exactValue() == exact);
      RC_ASSERT(c.value() == clamp64(exact));
      for (size_t r = 0; r < replicas; ++r) RC_ASSERT(c.get(replicaId(r)) == model[replicaId(r)]);
      RC_ASSERT(std::vector<PNCounter::Entry>(c.begin(), c.end()) == entries);
      RC_ASSERT(c.size() == entries.size());
      RC_ASSERT(c.empty() == entries.empty());
    }
  });
}

TEST_CASE("PNCounter: fromEntries is the join of its entries and inverts iteration") {
  PROPERTY("fromEntries(entries) == join of singletons; fromEntries(c.begin(), c.end()) == c", [] {
    auto entries = *rc::gen::container<std::vector<PNCounter::Entry>>(rc::gen::apply(
        [](uint64_t r, uint64_t p, uint64_t n) {
          return PNCounter::Entry{ReplicaId{r}, p, n};
        },
        rc::gen::inRange<uint64_t>(1, 5), rc::gen::inRange<uint64_t>(0, 3),
        rc::gen::inRange<uint64_t>(0, 3)));
    PNCounter joinedSingletons;
    for (const auto& e : entries) {
      PNCounter single;
      single.increment(e.replica, e.increments);
      single.decrement(e.replica, e.decrements);
      joinedSingletons.join(single);
    }
    PNCounter c = PNCounter::fromEntries(entries);
    RC_ASSERT(c == joinedSingletons);
    std::vector<PNCounter::Entry> out(c.begin(), c.end());
    RC_ASSERT(PNCounter::fromEntries(out) == c);
    for (size_t k = 1; k < out.size(); ++k) RC_ASSERT(out[k - 1].replica < out[k].replica);
    for (const auto& e : out) RC_ASSERT((e.increments != 0 || e.decrements != 0));
  });
}

TEST_CASE("PNCounter: deltas carry absolute totals of one half, so they are idempotent") {
  PNCounter a;
  PNCounter d1 = a.increment(r1, 5);
  PNCounter d2 = a.decrement(r1, 2);
  PNCounter d3 = a.increment(r1);
  CHECK(d1 == counterOf({{r1, 5, 0}}));
  CHECK(d2 == counterOf({{r1, 0, 2}}));
  CHECK(d3 == counterOf({{r1, 6, 0}}));
  CHECK(a.value() == 4);
  CHECK(a.get(r1) == PNCounter::Entry{r1, 6, 2});
  CHECK(a.get(r2) == PNCounter::Entry{r2, 0, 0});

  PNCounter b;
  b.join(d3);
  b.join(d2);
  b.join(d2);  // a duplicate
  b.join(d1);  // an old delta, late
  CHECK(b == a);
  CHECK(b.value() == 4);
}

TEST_CASE("PNCounter: a copy mutated elsewhere and joined back loses nothing") {
  PNCounter a;
  a.increment(r1, 5);
  PNCounter b = a;  // handed to replica 2
  b.decrement(r2, 7);
  a.decrement(r1, 1);
  CHECK(a.value() == 4);  // the copy's decrement did not leak into the original
  CHECK(b.value() == -2);
  PNCounter ab = a;
  ab.join(b);
  PNCounter ba = b;
  ba.join(a);
  CHECK(ab == ba);
  CHECK(ab.value() == -3);
}

TEST_CASE("PNCounter: overflow of a half throws and leaves the counter unchanged") {
  PNCounter c;
  c.increment(r1, kMax - 1);
  c.decrement(r1, kMax);
  const PNCounter before = c;
  CHECK_THROWS_AS(c.increment(r1, 2), std::overflow_error);
  CHECK_THROWS_AS(c.decrement(r1, 1), std::overflow_error);
  CHECK(c == before);
  CHECK(c.increment(r1, 1) == counterOf({{r1, kMax, 0}}));
  CHECK(c.value() == 0);
  CHECK_THROWS_AS(c.increment(r1), std::overflow_error);
  CHECK(c.get(r1) == PNCounter::Entry{r1, kMax, kMax});
}

TEST_CASE("PNCounter: value() clamps to the int64 range, exactValue() does not") {
  PNCounter c;
  c.increment(r1, kMax);
  CHECK(c.value() == kMax64);
  CHECK(c.exactValue() == Int128{kMax});
  c.increment(r2, kMax);
  CHECK(c.value() == kMax64);
  c.decrement(r3, kMax);
  c.decrement(r1, kMax);
  CHECK(c.exactValue() == 0);
  CHECK(c.value() == 0);
  c.decrement(r2, kMax);
  CHECK(c.exactValue() == -Int128{kMax});
  CHECK(c.value() == kMin64);
  // Just inside the range on both sides.
  PNCounter d;
  d.increment(r1, uint64_t{kMax64});
  CHECK(d.value() == kMax64);
  d.decrement(r2, uint64_t{kMax64} + 1);
  CHECK(d.value() == -1);
  PNCounter e;
  e.decrement(r1, uint64_t{kMax64} + 1);
  CHECK(e.value() == kMin64);
  CHECK(e.exactValue() == Int128{kMin64});
  e.decrement(r1, 1);
  CHECK(e.value() == kMin64);
  CHECK(e.exactValue() == Int128{kMin64} - 1);
}

TEST_CASE("PNCounter: a zero amount is a no-op with an empty delta") {
  PNCounter c;
  CHECK(c.increment(r1, 0).empty());
  CHECK(c.decrement(r1, 0).empty());
  CHECK(c.empty());
  c.decrement(r1, 3);
  const PNCounter before = c;
  CHECK(c.increment(r1, 0).empty());
  CHECK(c == before);
}

TEST_CASE("PNCounter: equality is semantic") {
  CHECK(PNCounter{}.empty());
  CHECK(counterOf({{r1, 0, 0}}) == PNCounter{});
  CHECK(counterOf({{r1, 0, 0}}).empty());
  CHECK(counterOf({{r2, 1, 0}, {r1, 0, 4}, {r1, 3, 0}}) == counterOf({{r1, 3, 4}, {r2, 1, 0}}));
  CHECK(counterOf({{r1, 3, 0}}) != counterOf({{r1, 0, 3}}));
  // Equal values, different histories: not the same state.
  CHECK(counterOf({{r1, 3, 3}}) != PNCounter{});
}

TEST_CASE("PNCounter: strip keeps exactly the halves that would inflate the state") {
  PNCounter state = counterOf({{r1, 5, 1}, {r3, 2, 2}});
  PNCounter delta = counterOf({{r1, 5, 3}, {r2, 1, 0}, {r3, 1, 1}});
  CHECK(strip(delta, state) == counterOf({{r1, 0, 3}, {r2, 1, 0}}));
  CHECK(strip(counterOf({{r1, 4, 1}}), state).empty());
  CHECK(strip(state, state).empty());
  CHECK(strip(PNCounter{}, state).empty());
  CHECK(strip(state, PNCounter{}) == state);
}

TEST_CASE("PNCounter: memoryBytes counts the entries") {
  PNCounter c;
  CHECK(c.memoryBytes() == sizeof(PNCounter));
  for (uint64_t r = 1; r <= 10; ++r) c.decrement(ReplicaId{r});
  CHECK(c.size() == 10);
  CHECK(c.memoryBytes() >= sizeof(PNCounter) + 10 * sizeof(PNCounter::Entry));
  CHECK(c.memoryBytes() <= sizeof(PNCounter) + 32 * sizeof(PNCounter::Entry));
}

}  // namespace
}  // namespace deltasync::crdt
