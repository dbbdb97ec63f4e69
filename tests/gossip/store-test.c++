// The object store (gossip/store.h): local mutations, remote joins with their checks, and the
// change hook that the engine, lib/'s subscriptions and durable storage rely on.
#include "gossip/store.h"

#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "gossip/errors.h"
#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using Set = crdt::ORSet<std::string>;
const ReplicaId kA{1}, kB{2};

// Records every change a store reports, and joins each reported delta into a mirror.
struct Recorder {
  std::map<std::string, Value> mirror;
  std::vector<std::pair<std::string, ReplicaId>> changes;
  explicit Recorder(ObjectStore& s) {
    s.listen([this](const Change& c) {
      changes.emplace_back(c.name, c.origin);
      auto it = mirror.find(c.name);
      if (it == mirror.end()) {
        mirror.emplace(c.name, c.delta);
      } else {
        joinInto(it->second, c.delta);
      }
    });
  }
};

TEST_CASE("store: a local update that changes nothing creates no object and reports nothing") {
  ObjectStore s(kA);
  Recorder r(s);
  auto d = s.update<Set>("tags", [](Set& x) { return x.remove("absent"); });
  CHECK(d.empty());
  CHECK(s.find("tags") == nullptr);
  CHECK_THROWS_AS(s.update<Set>("tags", [](Set&) -> Set { throw std::runtime_error("boom"); }), std::runtime_error);
  CHECK(s.find("tags") == nullptr);
  CHECK(r.changes.empty());
  s.update<Set>("tags", [](Set& x) { return x.add(kA, "x"); });
  CHECK(s.find("tags") != nullptr);
  CHECK_THROWS_AS(s.update<crdt::GCounter>("tags", [](crdt::GCounter& c) { return c.increment(kA); }), KindMismatch);
  REQUIRE(r.changes.size() == 1);
  CHECK(r.changes[0] == std::make_pair(std::string("tags"), ReplicaId{}));
}

TEST_CASE("store: a remote message is checked whole before any of it is applied") {
  ObjectStore a(kA), b(kB);
  Recorder r(a);
  a.update<crdt::GCounter>("n", [](crdt::GCounter& c) { return c.increment(kA); });
  Value good(b.update<Set>("s", [](Set& x) { return x.add(kB, "y"); }));
  Value wrongKind(Set{});
  std::get<Set>(wrongKind).add(kB, "z");
  CHECK_THROWS_AS(a.joinRemote(kB, {{"s", good}, {"n", wrongKind}}), ProtocolError);
  CHECK(a.find("s") == nullptr);
  // A claim on some replica's dots more than 2^32 beyond what is known here (claimTooFar):
  // refused, and nothing else of the message is joined.
  crdt::CausalContext far;
  far.addRange(kB, 1, (uint64_t{1} << 32) + 2);
  CHECK_THROWS_AS(a.joinRemote(kB, {{"s", good}, {"t", Value(Set::fromParts(Set::Store(), far))}}), ProtocolError);
  CHECK(a.find("s") == nullptr);
  CHECK(a.find("t") == nullptr);
  CHECK(r.changes.size() == 1);
  JoinStats js = a.joinRemote(kB, {{"s", good}});
  CHECK(js.joined == 1);
  CHECK(a.joinRemote(kB, {{"s", good}}).redundant == 1);  // RR: nothing new, nothing reported
  REQUIRE(r.changes.size() == 2);
  CHECK(r.changes[1] == std::make_pair(std::string("s"), kB));
}

TEST_CASE("store: a claim on our own count is adopted: our next increments count on from it") {
  // a has counted 1 in each counter; a delta (forged, or a's own count from before it lost its
  // state) says a counted 5. Joined: a counts on from 5, so its next increment (6) is taken by b,
  // which holds the claim too, instead of being swallowed as already counted.
  ObjectStore a(kA), b(kB);
  a.update<crdt::GCounter>("g", [](crdt::GCounter& c) { return c.increment(kA); });
  a.update<crdt::PNCounter>("pn", [](crdt::PNCounter& c) { return c.increment(kA); });
  a.update<MapOfCounters>("mc", [](MapOfCounters& m) { return m.increment(kA, "k"); });
  crdt::GCounter g;
  crdt::PNCounter pn;
  MapOfCounters mc;
  const std::vector<NamedValue> claim{
      {"g", Value(g.increment(kA, 5))}, {"pn", Value(pn.increment(kA, 5))}, {"mc", Value(mc.increment(kA, "k", 5))}};
  b.joinRemote(ReplicaId{9}, claim);
  CHECK(a.joinRemote(ReplicaId{9}, claim).refuted == 3);
  CHECK(std::get<crdt::GCounter>(*a.find("g")).value() == 5);
  CHECK(std::get<crdt::PNCounter>(*a.find("pn")).value() == 5);
  CHECK(std::get<MapOfCounters>(*a.find("mc")).value("k") == 5);
  // Nothing left to refute: the same claim again is plain redundant.
  CHECK(a.joinRemote(ReplicaId{9}, claim).refuted == 0);
  const std::vector<NamedValue> next{
      {"g", Value(a.update<crdt::GCounter>("g", [](crdt::GCounter& c) { return c.increment(kA); }))},
      {"pn", Value(a.update<crdt::PNCounter>("pn", [](crdt::PNCounter& c) { return c.increment(kA); }))},
      {"mc", Value(a.update<MapOfCounters>("mc", [](MapOfCounters& m) { return m.increment(kA, "k"); }))}};
  CHECK(b.joinRemote(kA, next).joined == 3);
  CHECK(std::get<crdt::GCounter>(*b.find("g")).value() == 6);
  CHECK(std::get<crdt::PNCounter>(*b.find("pn")).value() == 6);
  CHECK(std::get<MapOfCounters>(*b.find("mc")).value("k") == 6);
}

TEST_CASE("store: a claim on our own dots in an or-map is refuted key by key") {
  // a holds "x" under key "k" and "y" under "j" of a map of sets; a forged delta claims a's dots
  // 1..3 and holds none of them: whoever joins it loses both.
  ObjectStore a(kA), b(kB);
  b.joinRemote(kA, {{"ms", Value(a.update<MapOfSets>("ms", [](MapOfSets& m) {
                       return m.update("k", [](crdt::ORSet<std::string>& s) { return s.add(kA, "x"); });
                     }))}});
  b.joinRemote(kA, {{"ms", Value(a.update<MapOfSets>("ms", [](MapOfSets& m) {
                       return m.update("j", [](crdt::ORSet<std::string>& s) { return s.add(kA, "y"); });
                     }))}});
  crdt::CausalContext claim;
  claim.addRange(kA, 1, 3);
  const Value forged(MapOfSets::fromParts(MapOfSets::Store(), claim));
  b.joinRemote(ReplicaId{9}, {{"ms", forged}});
  CHECK(std::get<MapOfSets>(*b.find("ms")).size() == 0);
  std::optional<Value> refutation;
  a.listen([&](const Change& c) {
    if (c.local()) refutation = c.delta;
  });
  CHECK(a.joinRemote(ReplicaId{9}, {{"ms", forged}}).refuted == 1);
  REQUIRE(refutation.has_value());
  const auto& rm = std::get<MapOfSets>(*refutation);
  CHECK(rm.context().max(kA) == 5);  // x and y under (a, 4) and (a, 5), past the claim (3)
  b.joinRemote(kA, {{"ms", *refutation}});
  for (const ObjectStore* s : {&a, &b}) {
    const auto& m = std::get<MapOfSets>(*s->find("ms"));
    CHECK(m.get("k").elements() == std::vector<std::string>{"x"});
    CHECK(m.get("j").elements() == std::vector<std::string>{"y"});
  }
}

// A forged delta in a's name: a context claiming a's dots 1..10 (its two entries among them, so
// whoever joins it removes them) and a planted entry at (a, 11).
Value forgedAgainstA() {
  Set f;
  for (int i = 0; i < 10; ++i) f.add(kA, "junk" + std::to_string(i));
  for (int i = 0; i < 10; ++i) f.remove("junk" + std::to_string(i));
  f.add(kA, "planted");
  return Value(f);
}

std::set<std::string> elementsOf(const ObjectStore& s, const std::string& name) {
  const auto els = std::get<Set>(*s.find(name)).elements();
  return {els.begin(), els.end()};
}

TEST_CASE("store: a claim on our own dots is refuted: our entries come back everywhere") {
  const ReplicaId kC{3};
  ObjectStore a(kA), b(kB);
  Recorder r(a);
  std::optional<Value> lastLocal;
  a.listen([&](const Change& c) {
    if (c.local()) lastLocal = c.delta;
  });
  b.joinRemote(kA, {{"s", Value(a.update<Set>("s", [](Set& x) { return x.add(kA, "x"); }))}});
  b.joinRemote(kA, {{"s", Value(a.update<Set>("s", [](Set& x) { return x.add(kA, "y"); }))}});
  REQUIRE(elementsOf(b, "s") == std::set<std::string>{"x", "y"});
  // The forger (c, holding the secret) sends it to b: b cannot tell it from a relayed delta.
  const Value forged = forgedAgainstA();
  b.joinRemote(kC, {{"s", forged}});
  CHECK(elementsOf(b, "s") == std::set<std::string>{"planted"});
  // b relays it to a. Before, a refused it (and every later message that carried it, for good).
  const size_t before = r.changes.size();
  JoinStats js = a.joinRemote(kB, {{"s", forged}});
  CHECK(js.refuted == 1);
  // Joined as it came (the planted entry is kept, as everywhere: it could be a write of a's own
  // from before a lost its state), and a's entries that it removed are written again.
  CHECK(elementsOf(a, "s") == std::set<std::string>{"planted", "x", "y"});
  REQUIRE(r.changes.size() == before + 2);
  CHECK(r.changes.back() == std::make_pair(std::string("s"), ReplicaId{}));
  REQUIRE(lastLocal.has_value());
  const Set& refutation = std::get<Set>(*lastLocal);
  CHECK(refutation.size() == 2);              // x and y under (a, 12) and (a, 13), past the claim (11)
  CHECK(refutation.context().max(kA) == 13);
  CHECK(refutation.context().dotCount() == 2);
  // The refutation relayed to b: a's entries are back.
  b.joinRemote(kA, {{"s", *lastLocal}});
  CHECK(elementsOf(b, "s") == std::set<std::string>{"planted", "x", "y"});
  // a's next write is new to b (its counter is past the claim), not swallowed as already seen.
  b.joinRemote(kA, {{"s", Value(a.update<Set>("s", [](Set& x) { return x.add(kA, "z"); }))}});
  CHECK(elementsOf(b, "s") == std::set<std::string>{"planted", "x", "y", "z"});
  CHECK(elementsOf(a, "s") == elementsOf(b, "s"));
  // A claim that removes nothing of a's is joined with no write of a's.
  const size_t changes = r.changes.size();
  crdt::CausalContext onlyNew;
  onlyNew.addRange(kA, 15, 30);
  CHECK(a.joinRemote(kB, {{"s", Value(Set::fromParts(Set::Store(), onlyNew))}}).refuted == 1);
  CHECK(r.changes.size() == changes + 1);  // the join; no refutation write
  CHECK(elementsOf(a, "s") == std::set<std::string>{"planted", "x", "y", "z"});
}

TEST_CASE("store: a claim far beyond any known dot of a replica is refused by everyone") {
  ObjectStore a(kA), b(kB);
  b.joinRemote(kA, {{"s", Value(a.update<Set>("s", [](Set& x) { return x.add(kA, "x"); }))}});
  crdt::CausalContext far;
  far.addRange(kA, 1, kMaxDotLead + 2);  // a's own 1 + 2^32 + 1: one past the lead
  const Value forged(Set::fromParts(Set::Store(), far));
  for (ObjectStore* s : {&a, &b}) {
    CHECK_THROWS_WITH_AS(s->joinRemote(ReplicaId{3}, {{"s", forged}}), doctest::Contains("more than 2^32 beyond"),
                         ProtocolError);
    CHECK(elementsOf(*s, "s") == std::set<std::string>{"x"});
  }
  // At the lead exactly it is taken (b) and refuted (a).
  crdt::CausalContext near;
  near.addRange(kA, 1, kMaxDotLead + 1);
  const Value claim(Set::fromParts(Set::Store(), near));
  CHECK(a.joinRemote(ReplicaId{3}, {{"s", claim}}).refuted == 1);
  CHECK_NOTHROW(b.joinRemote(ReplicaId{3}, {{"s", claim}}));
}

TEST_CASE("store: restore sets state without reporting it") {
  ObjectStore a(kA), b(kB);
  Recorder r(a);
  Set s;
  s.add(kB, "x");
  a.restore("s", Value(s));
  CHECK(r.changes.empty());
  REQUIRE(a.find("s") != nullptr);
  CHECK(std::get<Set>(*a.find("s")).contains("x"));
  CHECK_THROWS_AS(a.restore("s", Value(crdt::GCounter{})), KindMismatch);
  a.restore("s", Value(Set{}));  // bottom: no object
  CHECK(a.find("s") == nullptr);
}

TEST_CASE("store: a deleted object is a tombstone that absorbs every write, local or remote") {
  ObjectStore a(kA), b(kB);
  Recorder r(a);
  a.update<Set>("s", [](Set& x) { return x.add(kA, "x"); });
  Value concurrent(b.update<Set>("s", [](Set& x) { return x.add(kB, "y"); }));  // b has not heard of the delete
  a.erase("s");
  REQUIRE(a.find("s") != nullptr);
  CHECK(isTombstone(*a.find("s")));
  CHECK_THROWS_AS(a.update<Set>("s", [](Set& x) { return x.add(kA, "z"); }), ObjectDeleted);
  CHECK_THROWS_AS(a.update<crdt::GCounter>("s", [](crdt::GCounter& c) { return c.increment(kA); }), ObjectDeleted);
  // The concurrent write arrives: redundant (nothing joins a tombstone), not an error; so is a
  // write of another kind, or one claiming our dots (nothing of it is joined).
  CHECK(a.joinRemote(kB, {{"s", concurrent}}).redundant == 1);
  CHECK(a.joinRemote(kB, {{"s", Value(crdt::GCounter{}.increment(kB))}}).redundant == 1);
  CHECK(isTombstone(*a.find("s")));
  a.erase("s");  // again: nothing more to report
  CHECK(r.changes.size() == 2);  // the add and the delete
  CHECK(isTombstone(r.mirror.at("s")));

  // The delete reaches b, whatever b's object holds, of whatever kind; an absent name is retired too.
  b.update<crdt::GCounter>("n", [](crdt::GCounter& c) { return c.increment(kB); });
  JoinStats js = b.joinRemote(kA, {{"s", Value(Tombstone{})}, {"n", Value(Tombstone{})}, {"new", Value(Tombstone{})}});
  CHECK(js.joined == 3);
  for (const char* name : {"s", "n", "new"}) CHECK(isTombstone(*b.find(name)));
  CHECK_THROWS_AS(b.update<Set>("new", [](Set& x) { return x.add(kB, "late"); }), ObjectDeleted);
}

// A tombstone is the top of every kind's lattice: join stays commutative, associative and
// idempotent over values that mix it in, and strip never loses it.
TEST_CASE("store: the tombstone keeps join a semilattice join") {
  PROPERTY("tombstone laws", [] {
    auto gen = [](int seed) {
      Set s;
      // (Replicas of their own per seed: two seeds never mint one dot for different elements.)
      for (int i = 0; i < seed % 4; ++i) s.add(ReplicaId{uint64_t(100 * seed + 1 + i % 2)}, "e" + std::to_string(seed + i));
      return seed % 3 == 0 ? Value(Tombstone{}) : Value(s);
    };
    const Value x = gen(*rc::gen::inRange(0, 30)), y = gen(*rc::gen::inRange(0, 30)), z = gen(*rc::gen::inRange(0, 30));
    auto join = [](Value a, const Value& b) {
      joinInto(a, b);
      return a;
    };
    RC_ASSERT(join(x, y) == join(y, x));
    RC_ASSERT(join(join(x, y), z) == join(x, join(y, z)));
    RC_ASSERT(join(x, x) == x);
    RC_ASSERT(contentHash(join(x, y)) == contentHash(join(y, x)));
    // strip keeps exactly what inflates: state ⊔ strip(delta, state) == state ⊔ delta.
    Value news = strip(y, x);
    RC_ASSERT(join(x, isBottom(news) ? x : news) == join(x, y));
    if (isTombstone(x)) RC_ASSERT(isBottom(strip(y, x)));
  });
}

// The change hook's law: joining every reported delta into the initial state rebuilds the
// store, whatever mix of local writes and remote joins made it, and each change names its origin.
TEST_CASE("store: reported deltas rebuild the state") {
  PROPERTY("the change hook reports exactly what changed", [] {
    ObjectStore a(kA), b(kB);
    Recorder r(a);
    const auto ops = *rc::gen::container<std::vector<std::tuple<int, int, int>>>(
        rc::gen::tuple(rc::gen::inRange(0, 5), rc::gen::inRange(0, 6), rc::gen::inRange(0, 2)));
    std::vector<NamedValue> fromB;  // b's deltas not yet sent to a
    size_t local = 0, remote = 0;
    for (const auto& [op, element, object] : ops) {
      const std::string name = object == 0 ? "s" : "t";
      const std::string el = "e" + std::to_string(element);
      switch (op) {
        case 0:
          if (!a.update<Set>(name, [&](Set& x) { return x.add(kA, el); }).empty()) ++local;
          break;
        case 1:
          if (!a.update<Set>(name, [&](Set& x) { return x.remove(el); }).empty()) ++local;
          break;
        case 2:
          fromB.push_back({name, Value(b.update<Set>(name, [&](Set& x) { return x.add(kB, el); }))});
          break;
        case 3: {
          Set d = b.update<Set>(name, [&](Set& x) { return x.remove(el); });
          if (!d.empty()) fromB.push_back({name, Value(d)});
          break;
        }
        default:
          remote += a.joinRemote(kB, fromB).joined;
          fromB.clear();
          break;
      }
    }
    RC_ASSERT(r.mirror == a.objects());
    RC_ASSERT(r.changes.size() == local + remote);
    size_t reportedRemote = 0;
    for (const auto& c : r.changes) reportedRemote += c.second == kB;
    RC_ASSERT(reportedRemote == remote);
  });
}

TEST_CASE("store: a unit's changes are reported at its end, one per object, and end the unit once") {
  PROPERTY("units report joined deltas that rebuild the state", [] {
    ObjectStore a(kA), b(kB);
    Recorder r(a);
    size_t unitsEnded = 0;
    a.listenUnits([&] { ++unitsEnded; });
    const auto ops = *rc::gen::container<std::vector<std::tuple<int, int, int>>>(
        rc::gen::tuple(rc::gen::inRange(0, 5), rc::gen::inRange(0, 6), rc::gen::inRange(0, 3)));
    size_t expectedUnits = 0;
    std::set<std::string> touched;  // objects the open unit changed
    size_t reportedAtBegin = 0;
    for (const auto& [op, element, object] : ops) {
      const std::string name = "o" + std::to_string(object);
      const std::string el = "e" + std::to_string(element);
      switch (op) {
        case 0:
        case 1: {
          Set d = a.update<Set>(name, [&](Set& x) { return op == 0 ? x.add(kA, el) : x.remove(el); });
          if (d.empty()) break;
          if (a.inUnit()) {
            touched.insert(name);
          } else {
            ++expectedUnits;
          }
          break;
        }
        case 2: {
          Set d = b.update<Set>(name, [&](Set& x) { return x.add(kB, el); });
          if (!a.inUnit() && a.joinRemote(kB, {{name, Value(d)}}).joined != 0) ++expectedUnits;
          break;
        }
        case 3:
          if (a.inUnit()) break;
          a.beginUnit();
          reportedAtBegin = r.changes.size();
          break;
        default:
          if (!a.inUnit()) break;
          RC_ASSERT(r.changes.size() == reportedAtBegin);  // nothing reported inside the unit
          a.endUnit();
          RC_ASSERT(r.changes.size() == reportedAtBegin + touched.size());  // one change per object
          if (!touched.empty()) ++expectedUnits;
          touched.clear();
          break;
      }
    }
    if (a.inUnit()) {
      a.endUnit();
      if (!touched.empty()) ++expectedUnits;
    }
    RC_ASSERT(r.mirror == a.objects());
    RC_ASSERT(unitsEnded == expectedUnits);
  });
  ObjectStore s(kA);
  s.beginUnit();
  CHECK_THROWS_AS(s.beginUnit(), std::logic_error);
  s.endUnit();
  CHECK_THROWS_AS(s.endUnit(), std::logic_error);
}

}  // namespace
}  // namespace deltasync::gossip
