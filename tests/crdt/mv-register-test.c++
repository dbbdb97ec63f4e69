#include "crdt/mv-register.h"

#include <set>

#include "tests/support/crdt-laws.h"
#include "tests/support/model-sim.h"

namespace deltasync::crdt {
namespace {

struct Op {
  bool reset = false;
  int value = 0;
  MVRegister<int> apply(MVRegister<int>& r, ReplicaId self) const {
    return reset ? r.reset() : r.write(self, value);
  }
};
void showValue(const Op& op, std::ostream& os) {
  if (op.reset) {
    os << "reset()";
  } else {
    os << "write(" << op.value << ")";
  }
}
rc::Gen<Op> genOp() {
  return rc::gen::apply([](int k, int v) { return Op{k == 0, v}; }, rc::gen::inRange(0, 5),
                        rc::gen::inRange(0, 4));
}

TEST_CASE("MVRegister: lattice laws") {
  CHECK(checkJoinLaws<MVRegister<int>>(genOp()));
  CHECK(checkDeltaMutatorLaw<MVRegister<int>>(genOp()));
  CHECK(checkStripLaws<MVRegister<int>>(genOp()));
  CHECK(checkConvergence<MVRegister<int>>(genOp()));
}

// Specification: the register holds the values of the writes no later write or reset observed.
using RegModel = testing::EventModel<int>;

TEST_CASE("MVRegister: agrees with the specification under loss, duplication, reordering") {
  PROPERTY("model-based convergence", [] {
    testing::ModelSim<MVRegister<int>, RegModel>::run(
        [](MVRegister<int>& rep, RegModel& model, size_t r) -> std::pair<MVRegister<int>, RegModel> {
          auto all = [](int) { return true; };
          if (*rc::gen::inRange(0, 4) == 0) return {rep.reset(), model.observe(all)};
          const int v = *rc::gen::inRange(0, 4);
          return {rep.write(ReplicaId{r + 1}, v), model.write(all, v)};
        },
        [](const MVRegister<int>& rep, const RegModel& model) {
          std::multiset<int> live;
          model.forEachLive([&](uint64_t, int v) { live.insert(v); });
          auto got = rep.values();
          RC_ASSERT(std::multiset<int>(got.begin(), got.end()) == live);
        });
  });
}

TEST_CASE("MVRegister: concurrent writes are all kept until a write observes them") {
  ReplicaId a{1}, b{2};
  MVRegister<std::string> x, y;
  auto wa = x.write(a, "a");
  auto wb = y.write(b, "b");
  x.join(wb);
  y.join(wa);
  CHECK(x.values() == std::vector<std::string>{"a", "b"});
  CHECK(x == y);
  y.join(x.write(a, "c"));
  CHECK(y.values() == std::vector<std::string>{"c"});
}

}  // namespace
}  // namespace deltasync::crdt
