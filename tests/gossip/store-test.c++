// The object store (gossip/store.h): local mutations, remote joins with their checks, and the
// change hook that the engine, lib/'s subscriptions and durable storage rely on.
#include "gossip/store.h"

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
  // A write under the receiver's own id that it never made.
  Value forged(Set{});
  std::get<Set>(forged).add(kA, "mine?");
  CHECK_THROWS_AS(a.joinRemote(kB, {{"s", good}, {"t", forged}}), ProtocolError);
  CHECK(a.find("s") == nullptr);
  CHECK(r.changes.size() == 1);
  JoinStats js = a.joinRemote(kB, {{"s", good}});
  CHECK(js.joined == 1);
  CHECK(a.joinRemote(kB, {{"s", good}}).redundant == 1);  // RR: nothing new, nothing reported
  REQUIRE(r.changes.size() == 2);
  CHECK(r.changes[1] == std::make_pair(std::string("s"), kB));
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

}  // namespace
}  // namespace deltasync::gossip
