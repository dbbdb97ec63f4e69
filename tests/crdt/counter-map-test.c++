#include "crdt/counter-map.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/support/crdt-laws.h"
#include "tests/support/property.h"

namespace deltasync::crdt {

using Counters = CounterMap<std::string>;

// Prints maps in law violations (found by ADL, so outside the anonymous namespace).
void showValue(const Counters& c, std::ostream& os) {
  os << "{";
  for (const auto& [k, s] : c) {
    os << " " << k << ": totals";
    for (const auto& e : s.totals) os << " r" << e.replica.value << ":+" << e.increments << "-" << e.decrements;
    os << " floors";
    for (const auto& e : s.floors) os << " r" << e.replica.value << ":+" << e.increments << "-" << e.decrements;
    os << ";";
  }
  os << " }";
}

namespace {

constexpr ReplicaId r1{1}, r2{2}, r3{3};

// One increment, decrement or removeKey by the acting replica, on one of three keys.
struct Op {
  enum class Kind { kIncrement, kDecrement, kRemove } kind = Kind::kIncrement;
  std::string key;
  uint64_t n = 1;

  Counters apply(Counters& state, ReplicaId self) const {
    try {
      switch (kind) {
        case Kind::kIncrement: return state.increment(self, key, n);
        case Kind::kDecrement: return state.decrement(self, key, n);
        case Kind::kRemove: return state.removeKey(key);
      }
    } catch (const std::overflow_error&) {
    }
    return Counters{};
  }
};

void showValue(const Op& op, std::ostream& os) {
  const char* names[] = {"increment", "decrement", "removeKey"};
  os << names[static_cast<int>(op.kind)] << "(" << op.key;
  if (op.kind != Op::Kind::kRemove) os << ", " << op.n;
  os << ")";
}

rc::Gen<Op> genOp() {
  return rc::gen::apply(
      [](int kind, std::string key, uint64_t n) { return Op{static_cast<Op::Kind>(kind), std::move(key), n}; },
      rc::gen::weightedOneOf<int>({{4, rc::gen::just(0)}, {2, rc::gen::just(1)}, {2, rc::gen::just(2)}}),
      rc::gen::element<std::string>("a", "b", "c"),
      rc::gen::weightedOneOf<uint64_t>({{19, rc::gen::inRange<uint64_t>(0, 6)},
                                        {1, rc::gen::just(std::numeric_limits<uint64_t>::max() / 2)}}));
}

TEST_CASE("CounterMap: lattice laws") {
  CHECK(checkJoinLaws<Counters>(genOp()));
  CHECK(checkDeltaMutatorLaw<Counters>(genOp()));
  CHECK(checkStripLaws<Counters>(genOp()));
  CHECK(checkConvergence<Counters>(genOp()));
}

TEST_CASE("CounterMap: a removeKey resets what it observed; a concurrent increment survives alone") {
  Counters a, b;
  b.join(a.increment(r1, "k", 5));
  CHECK(b.value("k") == 5);
  // Concurrently: b removes the key (it saw the 5); a adds 2 more.
  Counters removal = b.removeKey("k");
  Counters more = a.increment(r1, "k", 2);
  CHECK_FALSE(b.contains("k"));
  CHECK(a.value("k") == 7);
  a.join(removal);
  b.join(more);
  // Only what the removal did not see counts: 2, not 7 (the textbook embedded counter gives 7).
  CHECK(a == b);
  CHECK(a.value("k") == 2);
  CHECK(a.contains("k"));
  // A late copy of the old increment changes nothing.
  Counters old;
  old.join(Counters{}.increment(r1, "k", 5));
  a.join(old);
  CHECK(a.value("k") == 2);
  // After the removal was seen, counting starts again from there, by any writer.
  a.join(a.increment(r1, "k", 1));
  a.join(a.decrement(r2, "k", 4));
  CHECK(a.value("k") == -1);
  // Two removals of the same state meet; a removal of an absent key is bottom.
  Counters x = a, y = a;
  Counters rx = x.removeKey("k"), ry = y.removeKey("k");
  x.join(ry);
  y.join(rx);
  CHECK(x == y);
  CHECK_FALSE(x.contains("k"));
  CHECK(x.value("k") == 0);
  CHECK(x.removeKey("k").empty());
  CHECK(x.removeKey("never").empty());
  CHECK(x.entries().empty());
  CHECK_FALSE(x.empty());  // the removed key's totals and floors stay (not oblivious)
}

TEST_CASE("CounterMap: the values after any history are the counts no removal observed (a model)") {
  // A world of replicas that run operations and send whole states to each other, beside a model
  // that knows which operations each replica has seen: the converged value of a key is the sum
  // of its increments minus its decrements that no removeKey of that key had seen when it ran.
  PROPERTY("model: observed-reset", [] {
    const size_t replicas = *rc::gen::inRange<size_t>(2, 5);
    struct Event {
      bool sync = false;
      size_t from = 0, to = 0;
      Op op;
    };
    const auto events = *rc::gen::container<std::vector<Event>>(
        *rc::gen::inRange<size_t>(1, 60), rc::gen::apply(
                                            [replicas](bool sync, size_t from, size_t to, Op op) {
                                              return Event{sync, from % replicas, to % replicas, op};
                                            },
                                            rc::gen::weightedOneOf<bool>({{2, rc::gen::just(false)}, {1, rc::gen::just(true)}}),
                                            rc::gen::inRange<size_t>(0, 16), rc::gen::inRange<size_t>(0, 16), genOp()));
    std::vector<Counters> states(replicas);
    std::vector<std::set<size_t>> seen(replicas);  // ops (by index) each replica has seen
    struct Done {
      std::string key;
      int64_t amount;  // +n, -n, or 0 for a removal
      bool removal;
      std::set<size_t> observed;  // a removal's: what it had seen
    };
    std::vector<Done> done;
    for (const Event& e : events) {
      if (e.sync) {
        states[e.to].join(states[e.from]);
        seen[e.to].insert(seen[e.from].begin(), seen[e.from].end());
        continue;
      }
      const Counters before = states[e.from];
      const Counters delta = e.op.apply(states[e.from], replicaId(e.from));
      if (delta.empty() && states[e.from] == before) continue;  // refused (overflow) or a no-op
      const bool removal = e.op.kind == Op::Kind::kRemove;
      const int64_t amount = removal ? 0
                             : e.op.kind == Op::Kind::kIncrement ? static_cast<int64_t>(e.op.n)
                                                                 : -static_cast<int64_t>(e.op.n);
      done.push_back({e.op.key, amount, removal, removal ? seen[e.from] : std::set<size_t>{}});
      seen[e.from].insert(done.size() - 1);
    }
    // Converge.
    Counters all;
    for (const auto& s : states) all.join(s);
    for (const std::string& key : {"a", "b", "c"}) {
      __int128 want = 0;
      bool present = false;
      for (size_t i = 0; i < done.size(); ++i) {
        if (done[i].removal || done[i].key != key) continue;
        bool reset = false;
        for (const auto& d : done) reset = reset || (d.removal && d.key == key && d.observed.count(i) != 0);
        if (!reset) {
          want += done[i].amount;
          present = true;
        }
      }
      const int64_t clamped = want > std::numeric_limits<int64_t>::max()   ? std::numeric_limits<int64_t>::max()
                              : want < std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::min()
                                                                           : static_cast<int64_t>(want);
      RC_ASSERT(all.value(key) == clamped);
      RC_ASSERT(all.contains(key) == present);
    }
  });
}

TEST_CASE("CounterMap: valid() refuses floors above totals and empty totals") {
  Counters::Slot ok{PNCounter::fromEntries(std::vector<PNCounter::Entry>{{r1, 5, 1}}),
                    PNCounter::fromEntries(std::vector<PNCounter::Entry>{{r1, 3, 1}})};
  CHECK(Counters::valid(ok));
  Counters::Slot above = ok;
  above.floors = PNCounter::fromEntries(std::vector<PNCounter::Entry>{{r1, 6, 0}});
  CHECK_FALSE(Counters::valid(above));
  Counters::Slot stranger = ok;
  stranger.floors = PNCounter::fromEntries(std::vector<PNCounter::Entry>{{r3, 1, 0}});  // no totals of r3
  CHECK_FALSE(Counters::valid(stranger));
  CHECK_FALSE(Counters::valid(Counters::Slot{}));
  Counters m;
  m.insertSlot("k", ok);
  m.insertSlot("k", ok);
  CHECK(m.value("k") == 2);
  CHECK(m.slotCount() == 1);
  CHECK(m.entries() == std::vector<std::pair<std::string, int64_t>>{{"k", 2}});
  (void)r2;
}

}  // namespace
}  // namespace deltasync::crdt
