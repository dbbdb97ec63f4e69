#include "crdt/aw-lww-map.h"

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/crdt-laws.h"
#include "tests/support/model-sim.h"

namespace deltasync::crdt {
namespace {

// Specification: a key is present iff some write of it was not observed by a remove or a later
// write; its value is that of the live write with the greatest (timestamp, writer, event order);
// the last part only matters when one writer's timestamps are not monotonic, as here.
struct Write {
  int key;
  uint64_t ts;
  uint64_t writer;
  int value;
};
using MapModel = testing::EventModel<Write>;
using Map = AWLWWMap<int, int>;

TEST_CASE("AWLWWMap: agrees with the specification under loss, duplication, reordering") {
  PROPERTY("model-based convergence", [] {
    testing::ModelSim<Map, MapModel>::run(
        [](Map& rep, MapModel& model, size_t r) -> std::pair<Map, MapModel> {
          const int k = *rc::gen::inRange(0, 5);
          auto same = [k](const Write& w) { return w.key == k; };
          if (*rc::gen::inRange(0, 3) < 2) {
            // Few distinct timestamps, so equal timestamps on different replicas are common.
            const uint64_t ts = *rc::gen::inRange<uint64_t>(0, 4);
            const int v = *rc::gen::inRange(0, 100);
            return {rep.set(ReplicaId{r + 1}, k, v, Timestamp{ts}),
                    model.write(same, Write{k, ts, r + 1, v})};
          }
          return {rep.remove(k), model.observe(same)};
        },
        [](const Map& rep, const MapModel& model) {
          std::map<int, std::pair<Write, uint64_t>> best;  // key -> (write, event)
          model.forEachLive([&](uint64_t ev, const Write& w) {
            auto it = best.find(w.key);
            if (it == best.end() || std::tie(it->second.first.ts, it->second.first.writer,
                                             it->second.second) < std::tie(w.ts, w.writer, ev)) {
              best[w.key] = {w, ev};
            }
          });
          std::map<int, Write> winner;
          for (auto& [k, we] : best) winner[k] = we.first;
          RC_ASSERT(rep.size() == winner.size());
          for (int k = 0; k < 5; ++k) {
            auto it = winner.find(k);
            const int* got = rep.get(k);
            RC_ASSERT((got != nullptr) == (it != winner.end()));
            if (got != nullptr) {
              RC_ASSERT(*got == it->second.value);
              auto [ts, writer] = rep.stampOf(k);
              RC_ASSERT(ts.value == it->second.ts);
              RC_ASSERT(writer.value == it->second.writer);
            }
          }
        });
  });
}

struct MapOp {
  int kind = 0;  // 0, 1: set; 2: remove; 3: clear
  std::string key;
  int64_t value = 0;
  uint64_t ts = 0;
  AWLWWMap<std::string, int64_t> apply(AWLWWMap<std::string, int64_t>& m, ReplicaId self) const {
    if (kind <= 1) return m.set(self, key, value, Timestamp{ts});
    if (kind == 2) return m.remove(key);
    return m.clear();
  }
};
void showValue(const MapOp& op, std::ostream& os) {
  os << "op" << op.kind << "(" << op.key << ", " << op.value << ", ts " << op.ts << ")";
}
rc::Gen<MapOp> genMapOp() {
  return rc::gen::apply(
      [](int k, int key, int64_t v, uint64_t ts) { return MapOp{k, "k" + std::to_string(key), v, ts}; },
      rc::gen::weightedOneOf<int>({{10, rc::gen::inRange(0, 3)}, {1, rc::gen::just(3)}}),
      rc::gen::inRange(0, 8), rc::gen::inRange<int64_t>(-5, 5), rc::gen::inRange<uint64_t>(0, 6));
}

TEST_CASE("AWLWWMap: lattice laws") {
  using M = AWLWWMap<std::string, int64_t>;
  CHECK(checkJoinLaws<M>(genMapOp()));
  CHECK(checkDeltaMutatorLaw<M>(genMapOp()));
  CHECK(checkStripLaws<M>(genMapOp()));
  CHECK(checkConvergence<M>(genMapOp()));
}

TEST_CASE("AWLWWMap: equal timestamps on different replicas resolve identically everywhere") {
  ReplicaId a{1}, b{2}, c{3};
  Timestamp t{42};
  std::vector<AWLWWMap<std::string, int>> reps(3);
  auto da = reps[0].set(a, "k", 1, t);
  auto db = reps[1].set(b, "k", 2, t);
  auto dc = reps[2].set(c, "k", 3, t);
  // Deliver in different orders at each replica.
  reps[0].join(dc);
  reps[0].join(db);
  reps[1].join(da);
  reps[1].join(dc);
  reps[2].join(db);
  reps[2].join(da);
  for (auto& r : reps) {
    REQUIRE(r.get("k") != nullptr);
    CHECK(*r.get("k") == 3);  // greatest ReplicaId wins the tie
    CHECK(r == reps[0]);
  }
}

TEST_CASE("AWLWWMap: a remove that saw one of two concurrent writes keeps the other") {
  ReplicaId a{1}, b{2};
  AWLWWMap<std::string, int> x, y;
  auto wa = x.set(a, "k", 1, Timestamp{10});
  auto wb = y.set(b, "k", 2, Timestamp{5});
  y.join(wa);                   // y sees both
  auto rm = x.remove("k");      // x saw only its own write
  x.join(wb);
  y.join(rm);
  REQUIRE(x.get("k") != nullptr);
  CHECK(*x.get("k") == 2);  // the unseen write survives (add-wins), though its timestamp is older
  CHECK(x == y);
}

// See the ORSet test of the same name: the bulk join path must count keys, index entries and
// pick winners as the entry-by-entry one does.
TEST_CASE("AWLWWMap: a bulk join agrees with joining the same entries one delta at a time") {
  ReplicaId a{1}, b{2}, c{3};
  using Map = AWLWWMap<std::string, int64_t>;
  auto key = [](int i) { return (i % 3 == 0 ? "a-much-longer-key-" : "k") + std::to_string(i); };
  Map x, y, z;
  std::vector<Map> ds;
  for (int i = 0; i < 300; ++i) x.set(a, key(i), i, Timestamp{uint64_t(10 + i)});
  for (int i = 150; i < 450; ++i) ds.push_back(y.set(b, key(i), -i, Timestamp{uint64_t(i)}));
  for (int i = 400; i < 500; ++i) ds.push_back(z.set(c, key(i), 1000 + i, Timestamp{5}));
  y.join(z);
  ds.push_back(y.remove(key(200)));  // only b's write: x's survives (add-wins)
  ds.push_back(y.remove(key(350)));  // gone everywhere

  Map bulk = x, stepwise = x;
  bulk.join(y);
  for (const auto& d : ds) stepwise.join(d);
  CHECK(bulk == stepwise);
  CHECK(bulk.size() == 499);
  CHECK(!bulk.contains(key(350)));
  CHECK(*bulk.get(key(200)) == 200);
  // Concurrent writes: the greatest (timestamp, replica) wins.
  CHECK(*bulk.get(key(100)) == 100);
  CHECK(*bulk.get(key(160)) == 160);    // a at ts 170 beats b at ts 160
  CHECK(*bulk.get(key(299)) == 299);    // a at ts 309 beats b at ts 299
  CHECK(*bulk.get(key(300)) == -300);
  CHECK(*bulk.get(key(420)) == -420);   // b at ts 420 beats c at ts 5
  CHECK(*bulk.get(key(470)) == 1470);
  Map other = y;
  other.join(x);
  CHECK(other == bulk);
  for (int i = 0; i < 500; i += 2) bulk.remove(key(i));
  CHECK(bulk.size() == 250);
  CHECK(bulk.get(key(420)) == nullptr);
  CHECK(*bulk.get(key(421)) == -421);
}

TEST_CASE("AWLWWMap: copy, mutate the copy, join back: nothing lost") {
  ReplicaId a{1}, b{2};
  AWLWWMap<std::string, int64_t> m;
  for (int i = 0; i < 50; ++i) m.set(a, "key" + std::to_string(i), i, Timestamp{uint64_t(i)});
  auto copy = m;
  copy.set(b, "key3", -3, Timestamp{1000});
  copy.remove("key4");
  CHECK(*m.get("key3") == 3);
  CHECK(m.contains("key4"));
  m.join(copy);
  CHECK(*m.get("key3") == -3);
  CHECK(!m.contains("key4"));
  CHECK(m == copy);
  CHECK(m.size() == 49);
}

TEST_CASE("AWLWWMap: writes joined into one delta (a batch) equal the join of their deltas") {
  PROPERTY("setInto / setIntoAfter / removeInto == join of set / remove", [] {
    // Two copies of a state that already holds another replica's entries (so writes supersede
    // entries of both writers), then the same writes: one returning deltas, one accumulating.
    // Replicas 2 and 3 write concurrently, so a key may hold two entries (the winner: the greater
    // stamp).
    Map base, other;
    for (const auto& [k, v, t] : *rc::gen::container<std::vector<std::tuple<int, int, int>>>(
             rc::gen::tuple(rc::gen::inRange(0, 8), rc::gen::inRange(0, 100), rc::gen::inRange(1, 20)))) {
      base.set(ReplicaId{2}, k, v, Timestamp{static_cast<uint64_t>(t)});
      other.set(ReplicaId{3}, k, v, Timestamp{static_cast<uint64_t>(t % 7 + 1)});
    }
    base.join(other);
    Map stepwise = base, batched = base;
    Map joined, delta;
    const auto ops = *rc::gen::container<std::vector<std::tuple<bool, int, int>>>(
        rc::gen::tuple(rc::gen::arbitrary<bool>(), rc::gen::inRange(0, 8), rc::gen::inRange(0, 100)));
    uint64_t ts = 10;
    for (const auto& [put, k, v] : ops) {
      if (put) {
        // Every other put goes through setIntoAfter, which must hand over the winner's stamp.
        const Timestamp winner = stepwise.stampOrZero(k);
        RC_ASSERT(winner == (stepwise.contains(k) ? stepwise.stampOf(k).first : Timestamp{}));
        joined.join(stepwise.set(ReplicaId{1}, k, v, Timestamp{ts}));
        if (ts % 2 == 0) {
          batched.setInto(delta, ReplicaId{1}, k, v, Timestamp{ts});
        } else {
          Timestamp replaced{UINT64_MAX};
          batched.setIntoAfter(delta, ReplicaId{1}, k, v, [&](Timestamp r) {
            replaced = r;
            return Timestamp{ts};
          });
          RC_ASSERT(replaced == winner);
        }
      } else {
        joined.join(stepwise.remove(k));
        batched.removeInto(delta, k);
      }
      ++ts;
    }
    RC_ASSERT(batched == stepwise);
    RC_ASSERT(delta == joined);
    // And the delta carries the batch: joined into the base, it gives the final state.
    Map replay = base;
    replay.join(delta);
    RC_ASSERT(replay == stepwise);
  });
}

}  // namespace
}  // namespace deltasync::crdt
