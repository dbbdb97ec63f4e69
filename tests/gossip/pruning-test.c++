// Pruning a removed replica's metadata (gossip/pruning.h) at the level of values and stores: the
// marker's encoding, what applying a marker and forgetting do to each kind, and the law that
// makes pruning safe: whatever the members do concurrently with it, once every store has synced,
// every read is what it would have been without pruning, and no store holds the pruned id.
#include "gossip/pruning.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gossip/errors.h"
#include "gossip/store.h"
#include "tests/support/property.h"
#include "tests/support/reads.h"

namespace deltasync::gossip {
namespace {

using Set = crdt::ORSet<std::string>;
const ReplicaId kR{9};  // the replica pruned
const ReplicaId kP{1};  // the pruner

std::vector<NamedValue> all(const ObjectStore& s) {
  std::vector<NamedValue> out;
  for (const auto& [name, v] : s.objects()) out.push_back({name, v});
  return out;
}

using testing::reads;

// The pruner's step 4 without membership: the done mark for r from its state, then learnt.
void pruneAt(ObjectStore& p, ReplicaId r) {
  PruneMarker marker{p.self(), {}};
  for (const auto& [name, v] : p.objects()) {
    if (auto part = markerPart(name, v, r, p.self())) marker.objects.push_back(*part);
  }
  const std::string done = encodePruneMarker(marker);
  p.update<Map>(std::string(kPruneObject), [&](Map& m) { return m.set(p.self(), doneKey(r), done, crdt::Timestamp{}); });
  p.learnPruned();
}

TEST_CASE("pruning: markers encode and decode, and malformed ones are refused") {
  PruneMarker m{kP, {{"a", 7, {1, 2, 9}, 0, 0, {}}, {"b", 0, {}, 12, 3, {}}, {"c", 0, {}, 0, 0, {{"k", 5, 1, 2, 1}, {"l", 1, 0, 0, 0}}}}};
  CHECK(decodePruneMarker(encodePruneMarker(m)) == m);
  PruneMarker floorAbove{kP, {{"c", 0, {}, 0, 0, {{"k", 1, 0, 2, 0}}}}};
  CHECK_THROWS_AS(decodePruneMarker(encodePruneMarker(floorAbove)), DecodeError);
  PruneMarker keysUnsorted{kP, {{"c", 0, {}, 0, 0, {{"l", 1, 0, 0, 0}, {"k", 1, 0, 0, 0}}}}};
  CHECK_THROWS_AS(decodePruneMarker(encodePruneMarker(keysUnsorted)), DecodeError);
  CHECK_THROWS_AS(decodePruneMarker(""), DecodeError);
  std::string bytes = encodePruneMarker(m);
  CHECK_THROWS_AS(decodePruneMarker(bytes + "x"), DecodeError);           // trailing
  CHECK_THROWS_AS(decodePruneMarker(bytes.substr(0, bytes.size() - 1)), DecodeError);  // truncated
  PruneMarker repeated{kP, {{"a", 0, {3, 3}, 0, 0, {}}}};
  CHECK_THROWS_AS(decodePruneMarker(encodePruneMarker(repeated)), DecodeError);  // not ascending
  PruneMarker unsorted{kP, {{"b", 0, {}, 1, 0, {}}, {"a", 0, {}, 1, 0, {}}}};
  CHECK_THROWS_AS(decodePruneMarker(encodePruneMarker(unsorted)), DecodeError);
  // Runs of consecutive dots take a few bytes, and a run is held to what a store may hold.
  PruneMarker big{kP, {{"a", 5, {}, 0, 0, {}}}};
  for (uint64_t d = 1; d <= 100000; ++d) big.objects[0].dots.push_back(d);
  big.objects[0].dots.push_back(100005);
  CHECK(encodePruneMarker(big).size() < 32);
  CHECK(decodePruneMarker(encodePruneMarker(big)) == big);
  CHECK_THROWS_AS(decodePruneMarker(encodePruneMarker(big), 1000), DecodeError);
  CHECK(doneOf(doneKey(ReplicaId{0xabc})) == ReplicaId{0xabc});
  CHECK_FALSE(doneOf("done/xyz").has_value());
  CHECK_FALSE(doneOf(goneKey(kR)).has_value());
  // The one key parser: each form round-trips, anything else is refused.
  const auto vote = parsePruneKey(voteKey(kR, kP));
  REQUIRE(vote.has_value());
  CHECK((vote->kind == PruneKey::vote && vote->replica == kR && vote->voter == kP));
  const auto gone = parsePruneKey(goneKey(kR));
  REQUIRE(gone.has_value());
  CHECK((gone->kind == PruneKey::gone && gone->replica == kR));
  for (const std::string& bad : std::vector<std::string>{"gone/", "gone/00000000000000zz", "vote/" + std::string(16, '0'), voteKey(kR, kP) + "0",
                          "vote/" + std::string(16, '0') + "x" + std::string(16, '0'), "gonE/" + std::string(16, '0'),
                          "done/" + std::string(17, '0'), "x"}) {
    CAPTURE(bad);
    CHECK_FALSE(parsePruneKey(bad).has_value());
  }
}

TEST_CASE("pruning: a received $prune object is checked") {
  Map ok;
  ok.join(ok.set(kP, goneKey(kR), "1000", {}));
  ok.join(ok.set(kP, voteKey(kR, kP), "9a", {}));
  ok.join(ok.set(kP, doneKey(ReplicaId{5}), encodePruneMarker({kP, {}}), {}));
  CHECK_NOTHROW(checkPruneObject(std::string(kPruneObject), Value(ok)));
  Map badKey;
  badKey.join(badKey.set(kP, "other", "x", {}));
  CHECK_THROWS_AS(checkPruneObject(std::string(kPruneObject), Value(badKey)), ProtocolError);
  Map badMarker;
  badMarker.join(badMarker.set(kP, doneKey(kR), "\x01", {}));
  CHECK_THROWS_AS(checkPruneObject(std::string(kPruneObject), Value(badMarker)), ProtocolError);
  CHECK_THROWS_AS(checkPruneObject(std::string(kPruneObject), Value(Set{})), ProtocolError);
  CHECK_THROWS_AS(checkPruneObject(std::string(kPruneObject), Value(Tombstone{})), ProtocolError);
  CHECK_THROWS_AS(checkPruneObject("$prune2", Value(ok)), ProtocolError);
  // The store runs the rule on what peers send (the replica core registers it; here by hand).
  ObjectStore s(kP);
  s.addCheck(std::string(kPruneObject), checkPruneObject);
  CHECK_THROWS_AS(s.joinRemote(kR, {{std::string(kPruneObject), Value(badKey)}}), ProtocolError);
  CHECK(s.size() == 0);
}

TEST_CASE("pruning: a share that would overflow the pruner's total is not pruned") {
  crdt::GCounter g;
  g.join(g.increment(kR, UINT64_MAX - 1));
  g.join(g.increment(kP, 5));
  CHECK(unprunable(Value(g), kR, kP).find("2^64") != std::string::npos);
  CHECK(unprunable(Value(g), kR, ReplicaId{7}).empty());
  MapOfCounters c;
  c.join(c.increment(kR, "k", UINT64_MAX));
  c.join(c.increment(kP, "k", 1));
  CHECK(unprunable(Value(c), kR, kP).find("2^64") != std::string::npos);
  // An or-map whose entries of r are all gone is pruned like any other: its context only.
  MapOfSets m;
  m.update("k", [](Set& s) { return s.add(kR, "x"); });
  m.join(m.remove("k"));
  Value v(m);
  CHECK(unprunable(v, kR, kP).empty());
  CHECK(mentions(v, kR));
  CHECK_FALSE(markerPart("m", v, kR, kP).has_value());
  forget(v, kR);
  CHECK_FALSE(mentions(v, kR));
  CHECK(traceOf(v, kR) == 0);
}

TEST_CASE("pruning: forgetting strips every kind of the replica's id") {
  crdt::GCounter g;
  g.join(g.increment(kR, 3));
  g.join(g.increment(kP, 2));
  Value gv(g);
  forget(gv, kR);
  CHECK(std::get<crdt::GCounter>(gv).value() == 2);
  CHECK_FALSE(mentions(gv, kR));
  MapOfCounters c;
  c.join(c.increment(kR, "k", 4));
  c.join(c.increment(kP, "k", 1));
  c.join(c.increment(kR, "only-r", 1));
  Value cv(c);
  forget(cv, kR);
  CHECK(std::get<MapOfCounters>(cv).value("k") == 1);
  CHECK_FALSE(std::get<MapOfCounters>(cv).contains("only-r"));
  CHECK(traceOf(cv, kR) == 0);
}

// One random history: r, the pruner and two other members write; everyone syncs (agreement);
// the pruner prunes while the others keep writing (removals of r's entries among them); then
// stores sync in a random order. The same history without pruning is the model.
TEST_CASE("pruning: concurrent writes and removals read as without pruning, and r leaves no trace") {
  PROPERTY("pruning is invisible to readers", [] {
    const int n = *rc::gen::inRange(1, 12);
    struct Op {
      int node;   // 0 the pruner, 1 and 2 the others
      int kind;   // 0 remove an element, 1 add one, 2 count, 3 sync (node <- other), 4 remove a
                  // key of the map of sets, 5 add to one, 6 reset a key of the map of counters,
                  // 7 count in one
      int arg;
    };
    const auto ops = *rc::gen::container<std::vector<Op>>(rc::gen::construct<Op>(
        rc::gen::inRange(0, 3), rc::gen::inRange(0, 8), rc::gen::inRange(0, 16)));
    const bool pruneFirst = *rc::gen::arbitrary<bool>();

    auto run = [&](bool prune) {
      ObjectStore r(kR);
      std::vector<std::unique_ptr<ObjectStore>> s;
      for (uint64_t id : {1, 2, 3}) s.push_back(std::make_unique<ObjectStore>(ReplicaId{id}));
      for (int i = 0; i < n; ++i) {
        r.update<Set>("set", [&](Set& x) { return x.add(kR, "e" + std::to_string(i)); });
        r.update<crdt::PNCounter>("pn", [&](crdt::PNCounter& x) { return x.increment(kR, i + 1); });
        r.update<crdt::GCounter>("g", [&](crdt::GCounter& x) { return x.increment(kR, 2); });
        r.update<MapOfSets>("om", [&](MapOfSets& x) {
          return x.update("k" + std::to_string(i % 3), [&](Set& s) { return s.add(kR, "x" + std::to_string(i)); });
        });
        r.update<MapOfCounters>("cm", [&](MapOfCounters& x) { return x.increment(kR, "k" + std::to_string(i % 3), i + 1); });
      }
      r.update<Set>("set", [&](Set& x) { return x.remove("e0"); });  // a removal r made itself
      s[1]->update<Set>("set", [&](Set& x) { return x.add(s[1]->self(), "b"); });
      for (auto& x : s) x->joinRemote(kR, all(r));
      for (auto& x : s) {
        for (auto& y : s) {
          if (x != y) x->joinRemote(y->self(), all(*y));
        }
      }
      if (prune && pruneFirst) pruneAt(*s[0], kR);
      bool pruned = prune && pruneFirst;
      for (const auto& op : ops) {
        ObjectStore& at = *s[op.node];
        const std::string e = "e" + std::to_string(op.arg % (n + 2));
        if (op.kind == 0) {
          at.update<Set>("set", [&](Set& x) { return x.remove(e); });
        } else if (op.kind == 1) {
          at.update<Set>("set", [&](Set& x) { return x.add(at.self(), e); });
        } else if (op.kind == 2) {
          at.update<crdt::PNCounter>("pn", [&](crdt::PNCounter& x) { return x.decrement(at.self(), 1); });
        } else if (op.kind == 4) {
          at.update<MapOfSets>("om", [&](MapOfSets& x) { return x.remove("k" + std::to_string(op.arg % 4)); });
        } else if (op.kind == 5) {
          at.update<MapOfSets>("om", [&](MapOfSets& x) {
            return x.update("k" + std::to_string(op.arg % 4), [&](Set& s) { return s.add(at.self(), e); });
          });
        } else if (op.kind == 6) {
          at.update<MapOfCounters>("cm", [&](MapOfCounters& x) { return x.removeKey("k" + std::to_string(op.arg % 4)); });
        } else if (op.kind == 7) {
          at.update<MapOfCounters>("cm", [&](MapOfCounters& x) { return x.increment(at.self(), "k" + std::to_string(op.arg % 4), 1); });
        } else {
          const ObjectStore& from = *s[(op.node + 1 + op.arg % 2) % 3];
          at.joinRemote(from.self(), all(from));
        }
        if (prune && !pruned && op.kind == 3) {  // the pruner prunes after some exchange
          pruneAt(*s[0], kR);
          pruned = true;
        }
      }
      if (prune && !pruned) pruneAt(*s[0], kR);
      for (int round = 0; round < 2; ++round) {
        for (auto& x : s) {
          for (auto& y : s) {
            if (x != y) x->joinRemote(y->self(), all(*y));
          }
        }
      }
      return s;
    };
    // (Without pruning at the start the agreement is stale: members may have written since.)
    const auto model = run(false);
    const auto pruned = run(true);
    const auto want = reads(*model[0]);
    for (size_t i = 0; i < 3; ++i) {
      RC_ASSERT(reads(*model[i]) == want);
      RC_ASSERT(reads(*pruned[i]) == want);
      RC_ASSERT(pruned[i]->forgotten(kR));
      for (const auto& [name, v] : pruned[i]->objects()) RC_ASSERT(!mentions(v, kR));
      RC_ASSERT(pruned[i]->objects() == pruned[0]->objects());
    }
  });
}

TEST_CASE("pruning: a removal made before the mark arrives is kept, also when the pruner's entries come with it") {
  ObjectStore r(kR), p(kP), b(ReplicaId{2});
  r.update<Set>("set", [&](Set& x) { return x.add(kR, "x"); });
  p.joinRemote(kR, all(r));
  b.joinRemote(kR, all(r));
  // The pruner prunes; meanwhile b removes r's entry.
  std::vector<NamedValue> sent;
  p.listen([&](const Change& c) { sent.push_back({c.name, c.delta}); });
  pruneAt(p, kR);
  b.update<Set>("set", [&](Set& x) { return x.remove("x"); });
  // b gets the pruner's unit: its mark and its own re-homed entry, in one message.
  REQUIRE(sent.size() >= 2);
  b.joinRemote(kP, sent);
  CHECK_FALSE(std::get<Set>(*b.find("set")).contains("x"));
  CHECK(b.forgotten(kR));
  // b's removal of the re-homed entry reaches the pruner.
  p.joinRemote(b.self(), all(b));
  CHECK_FALSE(std::get<Set>(*p.find("set")).contains("x"));
  // A late delta of r's (from a member that had not pruned) is stripped: nothing comes back.
  b.joinRemote(kR, all(r));
  CHECK_FALSE(std::get<Set>(*b.find("set")).contains("x"));
  for (const auto& [name, v] : b.objects()) CHECK_FALSE(mentions(v, kR));
}

TEST_CASE("pruning: a key reset concurrently with the pruning stays reset in a map of counters") {
  ObjectStore r(kR), p(kP), b(ReplicaId{2});
  r.update<MapOfCounters>("cm", [&](MapOfCounters& x) { return x.increment(kR, "k", 5); });
  p.joinRemote(kR, all(r));
  b.joinRemote(kR, all(r));
  pruneAt(p, kR);
  b.update<MapOfCounters>("cm", [&](MapOfCounters& x) { return x.removeKey("k"); });
  b.joinRemote(kP, all(p));  // learns the mark after its reset
  CHECK_FALSE(std::get<MapOfCounters>(*b.find("cm")).contains("k"));
  p.joinRemote(b.self(), all(b));
  CHECK_FALSE(std::get<MapOfCounters>(*p.find("cm")).contains("k"));
  CHECK(p.objects() == b.objects());
}

TEST_CASE("pruning: a restarted store applies the marks it holds again, without reporting") {
  ObjectStore r(kR), p(kP);
  r.update<crdt::GCounter>("g", [&](crdt::GCounter& x) { return x.increment(kR, 5); });
  r.update<Set>("set", [&](Set& x) { return x.add(kR, "x"); });
  p.joinRemote(kR, all(r));
  pruneAt(p, kR);
  // A restart from storage that persisted the changes, not the strip: the state before pruning
  // joined with the mark (a crash between the two, or a log replay).
  ObjectStore q(kP);
  for (const auto& [name, v] : r.objects()) q.restore(name, v);
  q.restore(std::string(kPruneObject), *p.find(std::string(kPruneObject)));
  int reported = 0;
  q.listen([&](const Change&) { ++reported; });
  q.learnPruned(false);
  CHECK(reported == 0);
  CHECK(q.objects() == p.objects());
  CHECK(std::get<crdt::GCounter>(*q.find("g")).value() == 5);
}

}  // namespace
}  // namespace deltasync::gossip
