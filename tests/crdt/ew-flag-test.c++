#include "crdt/ew-flag.h"

#include "tests/support/crdt-laws.h"
#include "tests/support/model-sim.h"

namespace deltasync::crdt {
namespace {

struct Op {
  bool enable = true;
  EWFlag apply(EWFlag& f, ReplicaId self) const { return enable ? f.enable(self) : f.disable(); }
};
void showValue(const Op& op, std::ostream& os) { os << (op.enable ? "enable()" : "disable()"); }
rc::Gen<Op> genOp() {
  return rc::gen::map(rc::gen::arbitrary<bool>(), [](bool e) { return Op{e}; });
}

TEST_CASE("EWFlag: lattice laws") {
  CHECK(checkJoinLaws<EWFlag>(genOp()));
  CHECK(checkDeltaMutatorLaw<EWFlag>(genOp()));
  CHECK(checkStripLaws<EWFlag>(genOp()));
  CHECK(checkConvergence<EWFlag>(genOp()));
}

// Specification: the flag is on iff some enable was not observed by a disable.
using FlagModel = testing::EventModel<bool>;

TEST_CASE("EWFlag: agrees with the specification under loss, duplication, reordering") {
  PROPERTY("model-based convergence", [] {
    testing::ModelSim<EWFlag, FlagModel>::run(
        [](EWFlag& rep, FlagModel& model, size_t r) -> std::pair<EWFlag, FlagModel> {
          auto all = [](bool) { return true; };
          if (*rc::gen::arbitrary<bool>()) return {rep.disable(), model.observe(all)};
          return {rep.enable(ReplicaId{r + 1}), model.write(all, true)};
        },
        [](const EWFlag& rep, const FlagModel& model) {
          bool on = false;
          model.forEachLive([&](uint64_t, bool) { on = true; });
          RC_ASSERT(rep.read() == on);
        });
  });
}

TEST_CASE("EWFlag: a concurrent enable wins over a disable") {
  ReplicaId a{1}, b{2};
  EWFlag x, y;
  y.join(x.enable(a));
  auto off = y.disable();
  auto on = x.enable(b);
  x.join(off);
  y.join(on);
  CHECK(x.read());
  CHECK(x == y);
}

}  // namespace
}  // namespace deltasync::crdt
