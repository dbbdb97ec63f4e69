#include "crdt/g-counter.h"

#include <limits>
#include <map>
#include <vector>

#include "tests/support/crdt-laws.h"
#include "tests/support/property.h"

namespace deltasync::crdt {

// Prints counters in law violations (found by ADL, so outside the anonymous namespace).
void showValue(const GCounter& c, std::ostream& os) {
  os << "{";
  for (const auto& e : c) os << " r" << e.replica.value << ":" << e.count;
  os << " }";
}

namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr ReplicaId r1{1}, r2{2}, r3{3};

// One increment by the acting replica. Amounts are mostly small (0 included: a no-op), now and
// then huge, so that a replica's entry overflows (the increment is refused and the counter left
// unchanged, which the delta-mutator law then checks) and sums pass 2^64 (value() saturates).
struct Op {
  uint64_t n = 1;

  GCounter apply(GCounter& state, ReplicaId self) const {
    try {
      return state.increment(self, n);
    } catch (const std::overflow_error&) {
      return GCounter{};
    }
  }
};

void showValue(const Op& op, std::ostream& os) {
  os << "increment(" << op.n << ")";
}

rc::Gen<Op> genOp() {
  return rc::gen::map(rc::gen::weightedOneOf<uint64_t>({
                          {17, rc::gen::inRange<uint64_t>(0, 6)},
                          {3, rc::gen::inRange<uint64_t>(kMax / 4, kMax)},
                      }),
                      [](uint64_t n) { return Op{n}; });
}

GCounter counterOf(std::vector<GCounter::Entry> entries) {
  return GCounter::fromEntries(entries);
}

TEST_CASE("GCounter: lattice laws") {
  CHECK(checkJoinLaws<GCounter>(genOp()));
  CHECK(checkDeltaMutatorLaw<GCounter>(genOp()));
  CHECK(checkStripLaws<GCounter>(genOp()));
  CHECK(checkConvergence<GCounter>(genOp()));
}

TEST_CASE("GCounter: value is the total of all increments ever done") {
  PROPERTY("model: per-replica totals and their sum", [] {
    const auto replicas = *rc::gen::inRange<size_t>(2, 6);
    const auto events = *genEvents(genOp(), replicas, 60);
    Network<GCounter> net(replicas);
    // Specification: each replica's total of its accepted increments (an increment is refused
    // exactly when it would take that total past 2^64 - 1).
    std::map<ReplicaId, uint64_t> model;
    std::vector<uint64_t> lastRead(replicas, 0);
    for (const auto& e : events) {
      if (e.kind == Event<Op>::Kind::kMutate) {
        uint64_t& total = model[replicaId(e.from)];
        if (e.op->n <= kMax - total) total += e.op->n;
      }
      net.apply(e);
      for (size_t i = 0; i < replicas; ++i) {
        // A replica's own entry is always exact; no reading ever goes down.
        RC_ASSERT(net.state(i).get(replicaId(i)) == model[replicaId(i)]);
        RC_ASSERT(net.state(i).value() >= lastRead[i]);
        lastRead[i] = net.state(i).value();
      }
    }
    net.exchangeAll();

    UInt128 sum = 0;
    std::vector<GCounter::Entry> entries;
    for (auto [r, total] : model) {
      sum += total;
      if (total != 0) entries.push_back({r, total});
    }
    for (size_t i = 0; i < replicas; ++i) {
      const GCounter& c = net.state(i);
      RC_ASSERT(c.exactValue() == sum);
      RC_ASSERT(c.value() == (sum > kMax ? kMax : static_cast<uint64_t>(sum)));
      for (size_t r = 0; r < replicas; ++r) RC_ASSERT(c.get(replicaId(r)) == model[replicaId(r)]);
      RC_ASSERT(std::vector<GCounter::Entry>(c.begin(), c.end()) == entries);
      RC_ASSERT(c.size() == entries.size());
      RC_ASSERT(c.empty() == entries.empty());
    }
  });
}

TEST_CASE("GCounter: genHistoryState yields reachable states of replicas 1..3") {
  PROPERTY("entries belong to the world's replicas; the state is canonical", [] {
    const GCounter c = *genHistoryState<GCounter>(genOp());
    RC_CLASSIFY(c.size() >= 2, "state mentions several replicas");
    RC_CLASSIFY(c.empty(), "empty");
    for (const auto& e : c) {
      RC_ASSERT(e.replica.value >= 1);
      RC_ASSERT(e.replica.value <= 3);
      RC_ASSERT(e.count != 0);
    }
    RC_ASSERT(GCounter::fromEntries(std::vector<GCounter::Entry>(c.begin(), c.end())) == c);
  });
}

TEST_CASE("GCounter: fromEntries is the join of its entries and inverts iteration") {
  PROPERTY("fromEntries(entries) == join of singletons; fromEntries(c.begin(), c.end()) == c", [] {
    auto entries = *rc::gen::container<std::vector<GCounter::Entry>>(rc::gen::apply(
        [](uint64_t r, uint64_t n) {
          return GCounter::Entry{ReplicaId{r}, n};
        },
        rc::gen::inRange<uint64_t>(1, 5), rc::gen::inRange<uint64_t>(0, 4)));
    GCounter joinedSingletons;
    for (const auto& e : entries) {
      GCounter single;
      single.increment(e.replica, e.count);
      joinedSingletons.join(single);
    }
    GCounter c = GCounter::fromEntries(entries);
    RC_ASSERT(c == joinedSingletons);
    std::vector<GCounter::Entry> out(c.begin(), c.end());
    RC_ASSERT(GCounter::fromEntries(out) == c);
    for (size_t k = 1; k < out.size(); ++k) RC_ASSERT(out[k - 1].replica < out[k].replica);
    for (const auto& e : out) RC_ASSERT(e.count != 0);
  });
}

TEST_CASE("GCounter: increment returns the absolute entry, so deltas are idempotent") {
  GCounter a;
  GCounter d1 = a.increment(r1, 5);
  GCounter d2 = a.increment(r1, 2);
  CHECK(d1 == counterOf({{r1, 5}}));
  CHECK(d2 == counterOf({{r1, 7}}));
  CHECK(a.value() == 7);
  CHECK(a.get(r1) == 7);
  CHECK(a.get(r2) == 0);

  GCounter b;
  b.join(d2);
  b.join(d2);  // a duplicate
  b.join(d1);  // an old delta, late
  CHECK(b == a);
  CHECK(b.value() == 7);
}

TEST_CASE("GCounter: a copy mutated elsewhere and joined back loses nothing") {
  GCounter a;
  a.increment(r1, 5);
  GCounter b = a;  // handed to replica 2
  b.increment(r2, 3);
  a.increment(r1, 1);
  CHECK(a.value() == 6);  // the copy's increments did not leak into the original
  CHECK(b.value() == 8);
  GCounter ab = a;
  ab.join(b);
  GCounter ba = b;
  ba.join(a);
  CHECK(ab == ba);
  CHECK(ab.value() == 9);
  CHECK(ab.get(r1) == 6);
  CHECK(ab.get(r2) == 3);
}

TEST_CASE("GCounter: overflow of an entry throws and leaves the counter unchanged") {
  GCounter c;
  c.increment(r1, kMax - 1);
  c.increment(r2, 4);
  const GCounter before = c;
  CHECK_THROWS_AS(c.increment(r1, 2), std::overflow_error);
  CHECK(c == before);
  CHECK(c.increment(r1, 1) == counterOf({{r1, kMax}}));
  const GCounter full = c;
  CHECK_THROWS_AS(c.increment(r1), std::overflow_error);
  CHECK_THROWS_AS(c.increment(r1, kMax), std::overflow_error);
  CHECK(c == full);
  // Other replicas' entries are independent.
  c.increment(r2, kMax - 4);
  CHECK(c.get(r2) == kMax);
}

TEST_CASE("GCounter: value() saturates, exactValue() does not") {
  GCounter c;
  c.increment(r1, kMax);
  CHECK(c.value() == kMax);
  CHECK(c.exactValue() == kMax);
  c.increment(r2, 1);
  CHECK(c.value() == kMax);
  CHECK(c.exactValue() == UInt128{kMax} + 1);
  c.increment(r3, kMax);
  CHECK(c.value() == kMax);
  CHECK(c.exactValue() == UInt128{kMax} * 2 + 1);
}

TEST_CASE("GCounter: increment by zero is a no-op with an empty delta") {
  GCounter c;
  CHECK(c.increment(r1, 0).empty());
  CHECK(c.empty());
  c.increment(r1, 3);
  const GCounter before = c;
  CHECK(c.increment(r1, 0).empty());
  CHECK(c == before);
}

TEST_CASE("GCounter: equality is semantic") {
  CHECK(GCounter{}.empty());
  CHECK(counterOf({{r1, 0}}) == GCounter{});
  CHECK(counterOf({{r1, 0}}).empty());
  CHECK(counterOf({{r2, 1}, {r1, 0}, {r1, 3}}) == counterOf({{r1, 3}, {r2, 1}}));
  CHECK(counterOf({{r1, 3}, {r1, 5}}) == counterOf({{r1, 5}}));
  CHECK(counterOf({{r1, 3}}) != counterOf({{r1, 4}}));
  CHECK(counterOf({{r1, 3}}) != counterOf({{r2, 3}}));
}

TEST_CASE("GCounter: strip keeps exactly the entries that would inflate the state") {
  GCounter state = counterOf({{r1, 5}, {r3, 2}});
  GCounter delta = counterOf({{r1, 5}, {r2, 1}, {r3, 4}});
  CHECK(strip(delta, state) == counterOf({{r2, 1}, {r3, 4}}));
  CHECK(strip(counterOf({{r1, 4}}), state).empty());
  CHECK(strip(state, state).empty());
  CHECK(strip(GCounter{}, state).empty());
  CHECK(strip(state, GCounter{}) == state);
}

TEST_CASE("GCounter: memoryBytes counts the entries") {
  GCounter c;
  CHECK(c.memoryBytes() == sizeof(GCounter));
  for (uint64_t r = 1; r <= 10; ++r) c.increment(ReplicaId{r});
  CHECK(c.size() == 10);
  CHECK(c.memoryBytes() >= sizeof(GCounter) + 10 * sizeof(GCounter::Entry));
  CHECK(c.memoryBytes() <= sizeof(GCounter) + 32 * sizeof(GCounter::Entry));
}

}  // namespace
}  // namespace deltasync::crdt
