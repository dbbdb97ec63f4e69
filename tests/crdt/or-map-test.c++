#include "crdt/or-map.h"

#include <set>
#include <string>

#include "crdt/aw-lww-map.h"
#include "crdt/ew-flag.h"
#include "crdt/mv-register.h"
#include "crdt/or-set.h"
#include "tests/support/crdt-laws.h"
#include "tests/support/model-sim.h"

namespace deltasync::crdt {
namespace {

// Specification of ORMap<key, ORSet<element>>: adds are events (key, element); removing an
// element observes its live events under that key; removing a key observes every live event
// under it. A key is present iff it has a live event.
struct Add {
  int key;
  int element;
};
using NestedModel = testing::EventModel<Add>;
using Nested = ORMap<int, ORSet<int>>;

TEST_CASE("ORMap<K, ORSet>: agrees with the specification under loss, duplication, reordering") {
  PROPERTY("model-based convergence", [] {
    testing::ModelSim<Nested, NestedModel>::run(
        [](Nested& rep, NestedModel& model, size_t r) -> std::pair<Nested, NestedModel> {
          const int k = *rc::gen::inRange(0, 3);
          const int e = *rc::gen::inRange(0, 3);
          const int what = *rc::gen::inRange(0, 4);
          auto sameElement = [k, e](const Add& a) { return a.key == k && a.element == e; };
          if (what <= 1) {
            auto d = rep.update(k, [&](ORSet<int>& s) { return s.add(ReplicaId{r + 1}, e); });
            return {d, model.write(sameElement, Add{k, e})};
          }
          if (what == 2) {
            auto d = rep.update(k, [&](ORSet<int>& s) { return s.remove(e); });
            return {d, model.observe(sameElement)};
          }
          return {rep.remove(k), model.observe([k](const Add& a) { return a.key == k; })};
        },
        [](const Nested& rep, const NestedModel& model) {
          std::set<std::pair<int, int>> live;
          std::set<int> keys;
          model.forEachLive([&](uint64_t, const Add& a) {
            live.insert({a.key, a.element});
            keys.insert(a.key);
          });
          RC_ASSERT(rep.size() == keys.size());
          for (int k = 0; k < 3; ++k) {
            RC_ASSERT(rep.contains(k) == (keys.count(k) == 1));
            ORSet<int> value = rep.get(k);
            for (int e = 0; e < 3; ++e) RC_ASSERT(value.contains(e) == (live.count({k, e}) == 1));
          }
        });
  });
}

// Nested two levels deep, so the laws cover ORMapStore inside ORMapStore as well.
using Deep = ORMap<int, ORMap<int, MVRegister<int>>>;
struct DeepOp {
  int kind = 0;  // 0, 1: write; 2: remove inner key; 3: remove outer key
  int outer = 0, inner = 0, value = 0;
  Deep apply(Deep& m, ReplicaId self) const {
    if (kind == 3) return m.remove(outer);
    return m.update(outer, [&](auto& in) {
      if (kind == 2) return in.remove(inner);
      return in.update(inner, [&](auto& reg) { return reg.write(self, value); });
    });
  }
};
void showValue(const DeepOp& op, std::ostream& os) {
  os << "op" << op.kind << "(" << op.outer << "/" << op.inner << " = " << op.value << ")";
}
rc::Gen<DeepOp> genDeepOp() {
  return rc::gen::apply([](int k, int o, int i, int v) { return DeepOp{k, o, i, v}; },
                        rc::gen::inRange(0, 4), rc::gen::inRange(0, 3), rc::gen::inRange(0, 3),
                        rc::gen::inRange(0, 5));
}

TEST_CASE("ORMap: lattice laws (two levels of nesting)") {
  CHECK(checkJoinLaws<Deep>(genDeepOp()));
  CHECK(checkDeltaMutatorLaw<Deep>(genDeepOp()));
  CHECK(checkStripLaws<Deep>(genDeepOp()));
  CHECK(checkConvergence<Deep>(genDeepOp()));
}

TEST_CASE("ORMap: copying copies the shared context (no aliasing)") {
  ReplicaId a{1}, b{2};
  ORMap<std::string, ORSet<int>> m;
  m.update("x", [&](auto& s) { return s.add(a, 1); });
  auto copy = m;
  copy.update("x", [&](auto& s) { return s.add(b, 2); });
  copy.update("y", [&](auto& s) { return s.add(b, 3); });
  CHECK(m.context().max(b) == 0);  // the original's context did not move
  CHECK(!m.get("x").contains(2));
  CHECK(!m.contains("y"));
  m.join(copy);
  CHECK(m.get("x").contains(2));
  CHECK(m.get("y").contains(3));
  CHECK(m == copy);
  // A mutation after the copy uses the right next dot in each.
  auto d1 = m.update("z", [&](auto& s) { return s.add(a, 9); });
  auto d2 = copy.update("z", [&](auto& s) { return s.add(a, 9); });
  CHECK(d1 == d2);  // same replica, same history -> same dot, same delta
}

TEST_CASE("ORMap: removing a key keeps a concurrent nested update (add-wins)") {
  ReplicaId a{1}, b{2};
  ORMap<std::string, ORSet<int>> x, y;
  y.join(x.update("k", [&](auto& s) { return s.add(a, 1); }));
  auto rm = y.remove("k");
  auto up = x.update("k", [&](auto& s) { return s.add(a, 2); });
  x.join(rm);
  y.join(up);
  CHECK(x == y);
  CHECK(x.contains("k"));
  CHECK(x.get("k").contains(2));
  CHECK(!x.get("k").contains(1));
}

TEST_CASE("ORMap: nests every causal type, including itself") {
  ReplicaId a{1}, b{2};
  ORMap<std::string, ORMap<std::string, AWLWWMap<std::string, int>>> deep, other;
  other.join(deep.update("room", [&](auto& users) {
    return users.update("alice", [&](auto& meta) { return meta.set(a, "status", 1, Timestamp{5}); });
  }));
  other.join(deep.update("room", [&](auto& users) {
    return users.update("bob", [&](auto& meta) { return meta.set(a, "status", 2, Timestamp{6}); });
  }));
  auto rmAlice = other.update("room", [&](auto& users) { return users.remove("alice"); });
  deep.join(rmAlice);
  CHECK(deep == other);
  CHECK(!deep.get("room").get("alice").contains("status"));
  CHECK(*deep.get("room").get("bob").get("status") == 2);

  ORMap<int, MVRegister<std::string>> regs;
  regs.update(1, [&](auto& r) { return r.write(a, "one"); });
  ORMap<int, EWFlag> flags, flags2;
  flags2.join(flags.update(1, [&](auto& f) { return f.enable(a); }));
  auto off = flags2.update(1, [&](auto& f) { return f.disable(); });
  auto on = flags.update(1, [&](auto& f) { return f.enable(b); });
  flags.join(off);
  flags2.join(on);
  CHECK(flags == flags2);
  CHECK(flags.get(1).read());  // enable-wins
  CHECK(regs.get(1).values() == std::vector<std::string>{"one"});
}

TEST_CASE("ORMap: an update that throws leaves the map unchanged") {
  ReplicaId a{1};
  ORMap<int, ORSet<int>> m;
  m.update(1, [&](auto& s) { return s.add(a, 1); });
  auto before = m;
  CHECK_THROWS_AS(m.update(1, [&](ORSet<int>& s) -> ORSet<int> {
    s.add(a, 2);
    throw std::runtime_error("boom");
  }), std::runtime_error);
  // The mutation that ran before the throw is kept consistently (state and index agree); the
  // context was given back, so the map still works and joins cleanly.
  CHECK(m.context().valid());
  m.join(before);
  CHECK(m.get(1).contains(1));
  auto d = m.update(2, [&](auto& s) { return s.add(a, 3); });
  CHECK(d.context().max(a) == m.context().max(a));
}

}  // namespace
}  // namespace deltasync::crdt
