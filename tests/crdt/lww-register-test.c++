#include "crdt/lww-register.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/crdt-laws.h"
#include "tests/support/property.h"

namespace deltasync::crdt {

using Register = LWWRegister<std::string>;

// Prints registers in law violations (found by ADL, so outside the anonymous namespace).
void showValue(const Register& r, std::ostream& os) {
  if (r.empty()) {
    os << "{}";
    return;
  }
  os << "{" << r.timestamp().physical() << "." << r.timestamp().logical() << " r"
     << r.writer().value << " \"" << *r.get() << "\"}";
}

namespace {

constexpr ReplicaId r1{1}, r2{2}, r3{3};

// One write by the acting replica. Timestamps come from a tiny range, so that writes of
// different replicas often share a timestamp (resolved by ReplicaId) and a replica now and then
// reuses one of its own timestamps with another value (the caller bug, resolved by value), and
// stale writes (which lose at once) are common.
struct Op {
  std::string value;
  uint64_t physical = 0;
  uint64_t logical = 0;

  Timestamp timestamp() const { return Timestamp::make(physical, logical); }
  Register apply(Register& state, ReplicaId self) const {
    return state.set(self, value, timestamp());
  }
};

void showValue(const Op& op, std::ostream& os) {
  os << "set(\"" << op.value << "\" at " << op.physical << "." << op.logical << ")";
}

rc::Gen<Op> genOp() {
  return rc::gen::apply(
      [](std::string v, uint64_t p, uint64_t l) {
        return Op{std::move(v), p, l};
      },
      rc::gen::element<std::string>("a", "b", "a much longer value that lives on the heap"),
      rc::gen::inRange<uint64_t>(1, 5), rc::gen::inRange<uint64_t>(0, 2));
}

TEST_CASE("LWWRegister: lattice laws") {
  CHECK(checkJoinLaws<Register>(genOp()));
  CHECK(checkDeltaMutatorLaw<Register>(genOp()));
  CHECK(checkStripLaws<Register>(genOp()));
  CHECK(checkConvergence<Register>(genOp()));
}

TEST_CASE("LWWRegister: the write with the greatest (timestamp, writer) wins") {
  PROPERTY("model: max over all writes of (timestamp, writer, value)", [] {
    const auto replicas = *rc::gen::inRange<size_t>(2, 6);
    const auto events = *genEvents(genOp(), replicas, 60);
    Network<Register> net(replicas);
    using Write = std::tuple<Timestamp, ReplicaId, std::string>;
    std::optional<Write> winner;
    for (const auto& e : events) {
      if (e.kind == Event<Op>::Kind::kMutate) {
        Write w{e.op->timestamp(), replicaId(e.from), e.op->value};
        if (!winner.has_value() || *winner < w) winner = w;
      }
      net.apply(e);
    }
    net.exchangeAll();
    for (size_t i = 0; i < replicas; ++i) {
      const Register& r = net.state(i);
      RC_ASSERT(r.empty() == !winner.has_value());
      if (!winner.has_value()) {
        RC_ASSERT(r.get() == nullptr);
        continue;
      }
      RC_ASSERT(r.get() != nullptr);
      RC_ASSERT(*r.get() == std::get<2>(*winner));
      RC_ASSERT(r.timestamp() == std::get<0>(*winner));
      RC_ASSERT(r.writer() == std::get<1>(*winner));
    }
  });
}

TEST_CASE("LWWRegister: set returns the new register, or bottom when the write loses") {
  Register r;
  CHECK(r.empty());
  CHECK(r.get() == nullptr);
  CHECK(r.timestamp() == Timestamp{});
  CHECK(r.writer() == ReplicaId{});

  Register d = r.set(r1, "x", Timestamp::make(10, 0));
  CHECK(d == r);
  CHECK(!d.empty());
  CHECK(*r.get() == "x");
  CHECK(r.timestamp() == Timestamp::make(10, 0));
  CHECK(r.writer() == r1);

  // Older timestamp: loses at once.
  const Register before = r;
  CHECK(r.set(r2, "old", Timestamp::make(9, 5)).empty());
  CHECK(r == before);
  // Same timestamp, smaller writer: loses; greater writer: wins.
  CHECK(r.set(ReplicaId{0}, "zero", Timestamp::make(10, 0)).empty());
  CHECK(r == before);
  CHECK(!r.set(r2, "two", Timestamp::make(10, 0)).empty());
  CHECK(*r.get() == "two");
  CHECK(r.writer() == r2);
  // Newer timestamp wins whatever the writer.
  CHECK(r.set(r1, "newer", Timestamp::make(10, 1)) == r);
  CHECK(*r.get() == "newer");
  // Rewriting the identical write changes nothing.
  CHECK(r.set(r1, "newer", Timestamp::make(10, 1)).empty());
}

TEST_CASE("LWWRegister: applying a delta twice, or late, changes nothing") {
  Register a;
  Register d1 = a.set(r1, "first", Timestamp::make(1, 0));
  Register d2 = a.set(r1, "second", Timestamp::make(2, 0));
  Register b;
  b.join(d2);
  b.join(d2);
  b.join(d1);
  CHECK(b == a);
  CHECK(*b.get() == "second");
}

TEST_CASE("LWWRegister: a copy written elsewhere and joined back loses nothing") {
  Register a;
  a.set(r1, "a", Timestamp::make(1, 0));
  Register b = a;  // handed to replica 2
  b.set(r2, "b", Timestamp::make(3, 0));
  CHECK(*a.get() == "a");  // the copy's write did not leak into the original
  a.set(r1, "a2", Timestamp::make(2, 0));
  Register ab = a;
  ab.join(b);
  Register ba = b;
  ba.join(a);
  CHECK(ab == ba);
  CHECK(*ab.get() == "b");
}

TEST_CASE("LWWRegister: equal timestamps resolve identically whatever the delivery order") {
  const Timestamp ts = Timestamp::make(42, 0);
  // Three replicas write concurrently with the same timestamp.
  std::array<Register, 3> deltas;
  std::array<ReplicaId, 3> ids{r2, r3, r1};
  std::array<std::string, 3> values{"from 2", "from 3", "from 1"};
  for (size_t k = 0; k < 3; ++k) {
    Register local;
    deltas[k] = local.set(ids[k], values[k], ts);
  }
  std::array<size_t, 3> order{0, 1, 2};
  do {
    Register r;
    for (size_t k : order) r.join(deltas[k]);
    CHECK(*r.get() == "from 3");
    CHECK(r.writer() == r3);
    CHECK(r.timestamp() == ts);
  } while (std::next_permutation(order.begin(), order.end()));

  // Each replica's own view: it wrote first, then received the others in either order.
  for (size_t self = 0; self < 3; ++self) {
    for (bool reversed : {false, true}) {
      Register r;
      r.set(ids[self], values[self], ts);
      for (size_t k = 0; k < 3; ++k) {
        size_t other = reversed ? 2 - k : k;
        if (other != self) r.join(deltas[other]);
      }
      CHECK(*r.get() == "from 3");
    }
  }

  // A replica reusing a timestamp (a caller bug): the greater value wins, in any order.
  Register x, y;
  Register dx = x.set(r1, "apple", ts);
  Register dy = y.set(r1, "pear", ts);
  x.join(dy);
  y.join(dx);
  CHECK(x == y);
  CHECK(*x.get() == "pear");
}

TEST_CASE("LWWRegister: with hybrid logical clocks, a write made after seeing another wins") {
  // Replica 1's physical clock runs 30 s ahead of replica 2's.
  HybridLogicalClock clock1, clock2;
  const uint64_t wall = 1'767'225'600'000;
  Register at1, at2;
  Register d1 = at1.set(r1, "written first, on the fast clock", clock1.now(wall + 30'000));
  at2.join(d1);
  clock2.update(d1.timestamp(), wall + 1);  // the receive event
  Register d2 = at2.set(r2, "written after seeing it", clock2.now(wall + 2));
  CHECK(!d2.empty());
  at1.join(d2);
  CHECK(at1 == at2);
  CHECK(*at1.get() == "written after seeing it");

  // Without the receive event the later write would lose at once: that is what the clock is for.
  HybridLogicalClock unaware;
  Register at3 = at1;
  CHECK(at3.set(r3, "stale", unaware.now(wall + 3)).empty());
}

TEST_CASE("LWWRegister: strip is the delta when it would win, else bottom") {
  Register state;
  state.set(r1, "x", Timestamp::make(5, 0));
  Register newer, older, sameTimeHigherId;
  newer.set(r1, "y", Timestamp::make(6, 0));
  older.set(r2, "z", Timestamp::make(4, 0));
  sameTimeHigherId.set(r2, "w", Timestamp::make(5, 0));
  CHECK(strip(newer, state) == newer);
  CHECK(strip(older, state).empty());
  CHECK(strip(sameTimeHigherId, state) == sameTimeHigherId);
  CHECK(strip(state, state).empty());
  CHECK(strip(Register{}, state).empty());
  CHECK(strip(state, Register{}) == state);
}

TEST_CASE("LWWRegister: equality compares the whole write") {
  auto reg = [](ReplicaId w, std::string v, Timestamp t) {
    Register r;
    r.set(w, std::move(v), t);
    return r;
  };
  const Timestamp t = Timestamp::make(7, 0);
  CHECK(reg(r1, "a", t) == reg(r1, "a", t));
  CHECK(reg(r1, "a", t) != reg(r2, "a", t));
  CHECK(reg(r1, "a", t) != reg(r1, "b", t));
  CHECK(reg(r1, "a", t) != reg(r1, "a", Timestamp::make(7, 1)));
  CHECK(reg(r1, "a", t) != Register{});
}

TEST_CASE("LWWRegister: memoryBytes counts the value's heap storage") {
  CHECK(Register{}.memoryBytes() == sizeof(Register));
  Register small;
  small.set(r1, "ab", Timestamp::make(1, 0));  // fits std::string's inline buffer
  CHECK(small.memoryBytes() == sizeof(Register));
  Register big;
  big.set(r1, std::string(1000, 'x'), Timestamp::make(1, 0));
  CHECK(big.memoryBytes() >= sizeof(Register) + 1000);
  CHECK(big.memoryBytes() <= sizeof(Register) + 2048);

  LWWRegister<std::vector<int>> vec;
  vec.set(r1, std::vector<int>(100, 7), Timestamp::make(1, 0));
  CHECK(vec.memoryBytes() >= sizeof(vec) + 100 * sizeof(int));

  LWWRegister<int> plain;
  plain.set(r1, 5, Timestamp::make(1, 0));
  CHECK(plain.memoryBytes() == sizeof(plain));
  CHECK(*plain.get() == 5);
}

}  // namespace
}  // namespace deltasync::crdt
