#include "crdt/or-set.h"

#include <map>
#include <set>
#include <string>

#include "tests/support/property.h"

namespace deltasync::crdt {
namespace {

// Specification of an add-wins set, independent of dots and contexts: every add is an event;
// a replica knows some events and knows some of them removed. An element is present iff some
// add of it is known and not removed: "present iff some add was not observed by a remove".
struct SetModel {
  std::map<uint64_t, int> known;  // add event -> element
  std::set<uint64_t> removed;

  void merge(const SetModel& o) {
    known.insert(o.known.begin(), o.known.end());
    removed.insert(o.removed.begin(), o.removed.end());
  }
  bool present(int e) const {
    for (auto& [ev, el] : known) {
      if (el == e && !removed.count(ev)) return true;
    }
    return false;
  }
  // What a remove (or the superseding part of an add) of e observes here.
  SetModel observe(int e) {
    SetModel m;
    for (auto& [ev, el] : known) {
      if (el == e && !removed.count(ev)) {
        m.known.emplace(ev, el);
        m.removed.insert(ev);
      }
    }
    return m;
  }
};

struct Message {
  size_t to;
  ORSet<int> delta;
  SetModel model;
};

// Replicas run random adds/removes; messages (deltas, delta groups, whole states) are lost,
// duplicated and reordered. After every step each replica agrees with its model; at the end a
// full exchange makes all replicas equal.
TEST_CASE("ORSet: agrees with the add-wins specification under loss, duplication, reordering") {
  PROPERTY("model-based convergence", [] {
    const size_t n = *rc::gen::inRange<size_t>(2, 5);
    std::vector<ORSet<int>> reps(n);
    std::vector<SetModel> models(n);
    std::vector<ORSet<int>> pendingGroup(n);  // deltas buffered for a joined group send
    std::vector<SetModel> pendingModel(n);
    std::vector<Message> net;
    uint64_t nextEvent = 1;

    auto send = [&](size_t from, const ORSet<int>& d, const SetModel& m) {
      for (size_t j = 0; j < n; ++j) {
        if (j != from) net.push_back(Message{j, d, m});
      }
    };
    const int steps = *rc::gen::inRange(0, 80);
    for (int s = 0; s < steps; ++s) {
      const int action = *rc::gen::inRange(0, 10);
      const size_t r = *rc::gen::inRange<size_t>(0, n);
      const int e = *rc::gen::inRange(0, 6);
      ReplicaId self{r + 1};
      if (action <= 2) {  // add
        SetModel m = models[r].observe(e);
        uint64_t ev = nextEvent++;
        m.known.emplace(ev, e);
        models[r].merge(m);
        ORSet<int> d = reps[r].add(self, e);
        send(r, d, m);
        pendingGroup[r].join(d);
        pendingModel[r].merge(m);
      } else if (action <= 4) {  // remove
        SetModel m = models[r].observe(e);
        models[r].merge(m);
        ORSet<int> d = reps[r].remove(e);
        send(r, d, m);
        pendingGroup[r].join(d);
        pendingModel[r].merge(m);
      } else if (action <= 7 && !net.empty()) {  // deliver (maybe duplicate) a random message
        size_t i = *rc::gen::inRange<size_t>(0, net.size());
        Message msg = net[i];
        if (!*rc::gen::arbitrary<bool>()) net.erase(net.begin() + i);
        reps[msg.to].join(msg.delta);
        models[msg.to].merge(msg.model);
      } else if (action == 8 && !net.empty()) {  // lose one
        net.erase(net.begin() + *rc::gen::inRange<size_t>(0, net.size()));
      } else if (action == 9) {  // send a joined delta group or the whole state
        if (*rc::gen::arbitrary<bool>()) {
          send(r, pendingGroup[r], pendingModel[r]);
          pendingGroup[r] = ORSet<int>();
          pendingModel[r] = SetModel();
        } else {
          send(r, reps[r], models[r]);
        }
      }
      for (size_t j = 0; j < n; ++j) {
        size_t count = 0;
        for (int x = 0; x < 6; ++x) {
          RC_ASSERT(reps[j].contains(x) == models[j].present(x));
          count += models[j].present(x);
        }
        RC_ASSERT(reps[j].size() == count);
        RC_ASSERT(reps[j].context().valid());
      }
    }
    // Heal: everyone joins everyone's state.
    std::vector<ORSet<int>> snapshot = reps;
    for (size_t j = 0; j < n; ++j) {
      for (size_t k = 0; k < n; ++k) reps[j].join(snapshot[k]);
    }
    SetModel all;
    for (auto& m : models) all.merge(m);
    for (size_t j = 0; j < n; ++j) {
      RC_ASSERT(reps[j] == reps[0]);
      for (int x = 0; x < 6; ++x) RC_ASSERT(reps[j].contains(x) == all.present(x));
    }
  });
}

TEST_CASE("ORSet: a concurrent add wins over a remove") {
  ReplicaId a{1}, b{2};
  ORSet<std::string> x, y;
  y.join(x.add(a, "k"));
  auto rm = y.remove("k");     // y saw a's add
  auto add = x.add(a, "k");    // concurrent re-add at a
  x.join(rm);
  y.join(add);
  CHECK(x.contains("k"));
  CHECK(y.contains("k"));
  CHECK(x == y);
  (void)b;
}

TEST_CASE("ORSet: copying copies (no shared context; copy, mutate, join back loses nothing)") {
  ReplicaId a{1}, b{2};
  ORSet<int> x;
  for (int i = 0; i < 20; ++i) x.add(a, i);
  ORSet<int> copy = x;
  copy.add(b, 100);
  copy.remove(3);
  CHECK(x.contains(3));  // the original is untouched
  CHECK(!x.contains(100));
  CHECK(x.context().max(b) == 0);
  x.join(copy);
  CHECK(x.contains(100));
  CHECK(!x.contains(3));
  CHECK(x.size() == 20);
  CHECK(x == copy);
}

// The reference implementation scans the whole store on add and remove (O(n)). Ours must not:
// count key comparisons, deterministically, instead of timing.
struct CountedKey {
  int64_t v;
  static inline uint64_t comparisons = 0;
  bool operator==(const CountedKey& o) const {
    ++comparisons;
    return v == o.v;
  }
};

}  // namespace
}  // namespace deltasync::crdt

template <>
struct std::hash<deltasync::crdt::CountedKey> {
  size_t operator()(const deltasync::crdt::CountedKey& k) const noexcept {
    return std::hash<int64_t>{}(k.v);
  }
};

namespace deltasync::crdt {
namespace {

TEST_CASE("ORSet: add, remove and contains do not scan the store") {
  ORSet<CountedKey> s;
  ReplicaId a{1};
  for (int64_t i = 0; i < 100000; ++i) s.add(a, CountedKey{i});
  CountedKey::comparisons = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    s.add(a, CountedKey{200000 + i});
    s.remove(CountedKey{i});
    CHECK(s.contains(CountedKey{50000 + i}));
  }
  // A scan would need ~1e8 comparisons; hashing needs a few per operation.
  CHECK(CountedKey::comparisons < 3000 * 20);
  CHECK(s.size() == 100000);
}

TEST_CASE("ORSet: joining a small delta into a large state does not scan the state") {
  ORSet<CountedKey> big, small;
  ReplicaId a{1}, b{2};
  for (int64_t i = 0; i < 100000; ++i) big.add(a, CountedKey{i});
  small.join(big);
  auto d1 = small.remove(CountedKey{7});
  auto d2 = small.add(b, CountedKey{-1});
  CountedKey::comparisons = 0;
  big.join(d1);
  big.join(d2);
  CHECK(CountedKey::comparisons < 100);
  CHECK(!big.contains(CountedKey{7}));
  CHECK(big.contains(CountedKey{-1}));
}

TEST_CASE("ORSet: removing 90% leaves no tombstones") {
  ReplicaId a{1};
  ORSet<int64_t> s, fresh;
  for (int64_t i = 0; i < 100000; ++i) s.add(a, i);
  for (int64_t i = 0; i < 100000; ++i) {
    if (i % 10 != 0) s.remove(i);
  }
  for (int64_t i = 0; i < 100000; i += 10) fresh.add(a, i);
  CHECK(s.size() == 10000);
  CHECK(s.context().intervalCount() == 1);
  // Automatic shrinking has hysteresis (amortised O(1)); shrinkToFit() gives the exact bound.
  CHECK(s.memoryBytes() <= fresh.memoryBytes() * 3);
  s.shrinkToFit();
  CHECK(s.memoryBytes() <= fresh.memoryBytes() * 105 / 100);
  int64_t wrong = 0;
  for (int64_t i = 0; i < 100000; ++i) wrong += s.contains(i) != (i % 10 == 0);
  CHECK(wrong == 0);
}

TEST_CASE("ORSet: string elements, long and short") {
  ReplicaId a{1}, b{2};
  ORSet<std::string> x, y;
  std::string longKey(100, 'z');
  y.join(x.add(a, "short"));
  y.join(x.add(a, longKey));
  y.join(x.add(b, ""));
  CHECK(y.contains(longKey));
  CHECK(y.contains("short"));
  CHECK(y.contains(""));
  CHECK(y.size() == 3);
  auto els = y.elements();
  CHECK(std::set<std::string>(els.begin(), els.end()) ==
        std::set<std::string>{"", "short", longKey});
  y.join(x.remove(longKey));
  CHECK(!y.contains(longKey));
  CHECK(x == y);
}

}  // namespace
}  // namespace deltasync::crdt
