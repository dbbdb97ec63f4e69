// The presence tracker (gossip/presence.h): Phoenix.Tracker's documented behaviour (track,
// duplicate track, untrack, update with the previous ref, list grouped by key, diffs for local
// and remote changes, replica down/up/permdown, graceful leave, late joiner), the owner-only
// rule for received presence objects, and a property: any order, duplication and staleness of
// state exchanges converges every node to the model, and each node's diffs replay to its list.
#include "gossip/presence.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <deltasync/errors.h>

#include "gossip/errors.h"
#include "gossip/varint.h"
#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

const ReplicaId kA{0xa}, kB{0xb}, kC{0xc};

// A store and its tracker, whose membership has reported kA, kB and kC alive.
struct Node {
  ObjectStore store;
  PresenceTracker tracker;
  explicit Node(ReplicaId id, PresenceConfig config = {}) : store(id), tracker(store, Limits{}, config) {
    for (ReplicaId other : {kA, kB, kC}) tracker.memberEvent(MemberEvent{other, MemberState::alive}, 0);
  }
};

// Sends everything `from` holds to `to` (a full-state exchange: the strongest test of staleness).
void sync(const Node& from, Node& to) {
  std::vector<NamedValue> all;
  for (const auto& [name, v] : from.store.objects()) all.push_back({name, v});
  if (!all.empty()) to.store.joinRemote(from.store.self(), all);
}

// key -> metas (as strings "origin:ref:meta") of a list, for comparisons.
using Flat = std::map<std::string, std::multiset<std::string>>;
std::string show(const PresenceMeta& m) {
  return std::to_string(m.ref.origin.value) + ":" + std::to_string(m.ref.counter) + ":" + m.meta;
}
Flat flat(const PresenceTracker& t, const std::string& topic) {
  Flat out;
  for (const auto& [key, metas] : t.list(topic)) {
    for (const auto& m : metas) out[key].insert(show(m));
  }
  return out;
}
// Applies a diff to a flat list (joins after leaves, as a subscriber does).
void apply(Flat& f, const PresenceDiff& d) {
  for (const auto& [key, metas] : d.leaves) {
    for (const auto& m : metas) {
      auto it = f.find(key);
      REQUIRE(it != f.end());
      auto at = it->second.find(show(m));
      REQUIRE(at != it->second.end());
      it->second.erase(at);
      if (it->second.empty()) f.erase(it);
    }
  }
  for (const auto& [key, metas] : d.joins) {
    for (const auto& m : metas) f[key].insert(show(m));
  }
}

TEST_CASE("presence: track, list grouped by key, get, count, topics") {
  Node a(kA);
  PresenceRef r1 = a.tracker.track(1, "room", "alice", "{\"s\":\"online\"}");
  PresenceRef r2 = a.tracker.track(2, "room", "alice", "{\"s\":\"away\"}");  // a second tab
  PresenceRef r3 = a.tracker.track(1, "room", "bob", "{}");
  a.tracker.track(1, "lobby", "alice", "{}");
  CHECK(r1.origin == kA);
  CHECK(r1 != r2);
  CHECK(a.tracker.count("room") == 3);
  CHECK(a.tracker.keyCount("room") == 2);
  CHECK(a.tracker.topics() == std::vector<std::string>{"lobby", "room"});
  auto list = a.tracker.list("room");
  REQUIRE(list.size() == 2);
  CHECK(list[0].first == "alice");
  REQUIRE(list[0].second.size() == 2);
  CHECK(list[0].second[0].ref == r1);
  CHECK(list[0].second[0].meta == "{\"s\":\"online\"}");
  CHECK(list[0].second[1].connection == 2);
  CHECK(list[1].first == "bob");
  CHECK(a.tracker.get("room", "bob").at(0).ref == r3);
  CHECK(a.tracker.get("room", "carol").empty());
  CHECK(a.tracker.list("nowhere").empty());
  CHECK(a.tracker.count("nowhere") == 0);
}

TEST_CASE("presence: a duplicate track is refused and changes nothing; untrack is idempotent") {
  Node a(kA);
  a.tracker.track(1, "room", "alice", "m");
  a.tracker.takeDiffs();
  CHECK_THROWS_AS(a.tracker.track(1, "room", "alice", "other"), std::invalid_argument);
  CHECK(a.tracker.get("room", "alice").at(0).meta == "m");
  CHECK_FALSE(a.tracker.hasDiffs());
  CHECK(a.tracker.untrack(1, "room", "alice"));
  CHECK_FALSE(a.tracker.untrack(1, "room", "alice"));
  CHECK_FALSE(a.tracker.untrack(9, "room", "alice"));
  CHECK(a.tracker.count("room") == 0);
  CHECK(a.tracker.topics().empty());
  auto d = a.tracker.takeDiffs();
  REQUIRE(d.count("room") == 1);
  CHECK(d["room"].leaves.at("alice").size() == 1);
  CHECK(d["room"].joins.empty());
  CHECK_THROWS_AS(a.tracker.update(1, "room", "alice", "x"), std::invalid_argument);
  a.tracker.track(1, "room", "alice", "again");  // tracked anew after untrack
  CHECK(a.tracker.count("room") == 1);
}

TEST_CASE("presence: update gives a new ref, keeps the previous one, and diffs leave + join at once") {
  Node a(kA), b(kB);
  PresenceRef r1 = a.tracker.track(1, "room", "alice", "online");
  sync(a, b);
  a.tracker.takeDiffs();
  b.tracker.takeDiffs();
  PresenceRef r2 = a.tracker.update(1, "room", "alice", "typing");
  CHECK(r2 != r1);
  auto metas = a.tracker.get("room", "alice");
  REQUIRE(metas.size() == 1);
  CHECK(metas[0].ref == r2);
  CHECK(metas[0].previous == r1);
  CHECK(metas[0].meta == "typing");
  sync(a, b);
  for (Node* n : {&a, &b}) {
    auto d = n->tracker.takeDiffs();
    REQUIRE(d.size() == 1);
    CHECK(d["room"].leaves.at("alice").at(0).ref == r1);
    CHECK(d["room"].joins.at("alice").at(0).ref == r2);
    CHECK(d["room"].joins.at("alice").at(0).previous == r1);
    CHECK(n->tracker.count("room") == 1);
  }
}

TEST_CASE("presence: closing a connection removes all of its presences in one write and one diff") {
  Node a(kA), b(kB);
  for (int i = 0; i < 50; ++i) a.tracker.track(7, "t" + std::to_string(i % 5), "k" + std::to_string(i), "m");
  a.tracker.track(8, "t0", "other", "m");
  sync(a, b);
  CHECK(b.tracker.count("t0") == 11);
  b.tracker.takeDiffs();
  size_t writes = 0;
  a.store.listen([&](const Change&) { ++writes; });
  CHECK(a.tracker.close(7) == 50);
  CHECK(writes == 1);
  CHECK(a.tracker.close(7) == 0);
  CHECK(a.tracker.localCount() == 1);
  sync(a, b);
  auto d = b.tracker.takeDiffs();
  CHECK(d.size() == 5);
  CHECK(d["t0"].leaves.size() == 10);
  CHECK(b.tracker.count("t0") == 1);
  CHECK(b.tracker.get("t0", "other").at(0).ref.origin == kA);
}

TEST_CASE("presence: remote presences carry their origin; a late joiner receives everything") {
  Node a(kA), b(kB), c(kC);
  a.tracker.track(1, "room", "alice", "a");
  b.tracker.track(1, "room", "bob", "b");
  sync(a, b);
  sync(b, a);
  CHECK(flat(a.tracker, "room") == flat(b.tracker, "room"));
  CHECK(a.tracker.get("room", "bob").at(0).ref.origin == kB);
  sync(b, c);  // c hears only of b, which relays a's presences
  CHECK(flat(c.tracker, "room") == flat(a.tracker, "room"));
  auto d = c.tracker.takeDiffs();
  CHECK(d["room"].joins.size() == 2);
}

TEST_CASE("presence: a down origin's presences leave, come back when it is alive, and are purged at permdown") {
  PresenceConfig config;
  config.permdownMs = 60000;
  config.goneKeepMs = 1000;
  Node a(kA, config), b(kB, config), c(kC, config);
  a.tracker.track(1, "room", "alice", "a");
  b.tracker.track(1, "room", "bob", "b");
  sync(a, b);
  sync(b, c);
  b.tracker.takeDiffs();
  b.tracker.memberEvent(MemberEvent{kA, MemberState::suspect}, 100);
  CHECK(b.tracker.count("room") == 2);  // suspect: still shown
  b.tracker.memberEvent(MemberEvent{kA, MemberState::down}, 200);
  CHECK(b.tracker.count("room") == 1);
  CHECK(b.tracker.get("room", "alice").empty());
  auto d = b.tracker.takeDiffs();
  CHECK(d["room"].leaves.count("alice") == 1);
  // Changes while hidden are not shown, but are there when it comes back.
  a.tracker.track(2, "room", "alice2", "a2");
  sync(a, b);
  CHECK(b.tracker.count("room") == 1);
  CHECK_FALSE(b.tracker.hasDiffs());
  b.tracker.memberEvent(MemberEvent{kA, MemberState::alive}, 300);
  CHECK(b.tracker.count("room") == 3);
  d = b.tracker.takeDiffs();
  CHECK(d["room"].joins.size() == 2);
  CHECK(d["room"].leaves.empty());
  // Down for permdownMs: gone, purged, and the purge replicates.
  b.tracker.memberEvent(MemberEvent{kA, MemberState::down}, 1000);
  b.tracker.memberEvent(MemberEvent{kA, MemberState::down, true}, 31000);  // forgotten by membership
  b.tracker.tick(60999);
  CHECK(b.store.find(presenceObjectName(kA)) != nullptr);
  CHECK(std::get<Map>(*b.store.find(presenceObjectName(kA))).size() == 2);
  b.tracker.tick(61000);
  CHECK(std::get<Map>(*b.store.find(presenceObjectName(kA))).size() == 0);
  auto origins = b.tracker.origins();
  auto gone = std::find_if(origins.begin(), origins.end(), [](const OriginInfo& o) { return o.id == kA; });
  REQUIRE(gone != origins.end());
  CHECK(gone->status == OriginStatus::gone);
  sync(b, c);
  CHECK(c.tracker.count("room") == 1);  // c saw a up all along, and has its presences purged
  CHECK(c.tracker.get("room", "alice").empty());
  // A gone origin's row goes after goneKeepMs: no trace in any table.
  b.tracker.tick(62000);
  origins = b.tracker.origins();
  CHECK(std::none_of(origins.begin(), origins.end(), [](const OriginInfo& o) { return o.id == kA; }));
  // a was alive after all (a long partition): it learns of the purge and tracks its live
  // presences again under new refs, which reach everyone.
  sync(c, a);
  CHECK(a.tracker.count("room") == 1);  // bob only, for the moment
  a.tracker.tick(62000);
  CHECK(a.tracker.count("room") == 3);
  CHECK(a.tracker.get("room", "alice").at(0).meta == "a");
  sync(a, c);
  sync(c, b);
  CHECK(b.tracker.count("room") == 1);  // a is still gone at b...
  b.tracker.memberEvent(MemberEvent{kA, MemberState::alive}, 63000);  // ...until membership hears it
  CHECK(flat(b.tracker, "room") == flat(a.tracker, "room"));
  CHECK(flat(c.tracker, "room") == flat(a.tracker, "room"));
}

TEST_CASE("presence: an origin membership has not reported alive shows nothing until it is") {
  Node a(kA);
  ObjectStore store(ReplicaId{0xd});
  PresenceTracker newcomer(store, Limits{});
  a.tracker.track(1, "room", "alice", "a");
  std::vector<NamedValue> all;
  for (const auto& [name, v] : a.store.objects()) all.push_back({name, v});
  store.joinRemote(kB, all);  // a's presences relayed by b: a may be long dead
  CHECK(newcomer.count("room") == 0);
  CHECK_FALSE(newcomer.hasDiffs());
  newcomer.memberEvent(MemberEvent{kA, MemberState::alive}, 10);
  CHECK(newcomer.count("room") == 1);
  CHECK(newcomer.takeDiffs()["room"].joins.count("alice") == 1);
}

TEST_CASE("presence: a graceful leave removes the origin's presences at once") {
  Node a(kA), b(kB);
  a.tracker.track(1, "room", "alice", "a");
  sync(a, b);
  b.tracker.memberEvent(MemberEvent{kA, MemberState::left}, 5);
  CHECK(b.tracker.count("room") == 0);
  CHECK(std::get<Map>(*b.store.find(presenceObjectName(kA))).size() == 0);
}

TEST_CASE("presence: a stale full state does not bring back presences that left") {
  Node a(kA), b(kB), stale(kC);
  a.tracker.track(1, "room", "alice", "a");
  a.tracker.track(2, "room", "bob", "b");
  sync(a, stale);  // an old copy
  a.tracker.untrack(1, "room", "alice");
  a.tracker.update(2, "room", "bob", "b2");
  sync(a, b);
  sync(stale, b);  // the old state arrives last (a rolling deploy's stale transfer)
  CHECK(flat(b.tracker, "room") == flat(a.tracker, "room"));
  CHECK(b.tracker.get("room", "bob").at(0).meta == "b2");
  CHECK(b.tracker.get("room", "alice").empty());
}

TEST_CASE("presence: only the owner writes its presence object") {
  Node a(kA), b(kB), c(kC);
  a.tracker.track(1, "room", "alice", "a");
  sync(a, b);
  // c forges a presence under a's name (its own dot) and a removal of a's entries.
  Map forged;
  forged.set(kC, "\x04room\x05mallo12345678", "\x00m", crdt::Timestamp{});
  CHECK_THROWS_AS(b.store.joinRemote(kC, {{presenceObjectName(kA), Value(forged)}}), ProtocolError);
  Map removal = std::get<Map>(*a.store.find(presenceObjectName(kA)));
  removal = removal.clear();
  Map mixed = removal;
  mixed.join(forged);
  CHECK_THROWS_AS(b.store.joinRemote(kC, {{presenceObjectName(kA), Value(mixed)}}), ProtocolError);
  // Malformed entries and wrong kinds, even from the owner.
  Map bad;
  bad.set(kA, "\x09short", "", crdt::Timestamp{});
  CHECK_THROWS_AS(b.store.joinRemote(kA, {{presenceObjectName(kA), Value(bad)}}), ProtocolError);
  crdt::GCounter counter;
  counter.increment(kC);
  CHECK_THROWS_AS(b.store.joinRemote(kC, {{presenceObjectName(kC), Value(counter)}}), ProtocolError);
  CHECK_THROWS_AS(b.store.joinRemote(kC, {{"$presence/zz", Value(Map{})}}), ProtocolError);
  CHECK(b.tracker.count("room") == 1);
  CHECK(b.tracker.get("room", "alice").at(0).meta == "a");
}

TEST_CASE("presence: limits are checked before anything changes") {
  PresenceConfig config;
  config.maxPresences = 3;
  config.maxMetaBytes = 10;
  Node a(kA, config);
  CHECK_THROWS_AS(a.tracker.track(1, "room", "alice", std::string(11, 'm')), LimitExceeded);
  CHECK_THROWS_AS(a.tracker.track(1, std::string(257, 't'), "alice", "m"), LimitExceeded);
  CHECK_THROWS_AS(a.tracker.track(1, "room", std::string(1025, 'k'), "m"), LimitExceeded);
  CHECK_THROWS_AS(a.tracker.track(1, "", "alice", "m"), std::invalid_argument);
  for (int i = 0; i < 3; ++i) a.tracker.track(1, "room", "k" + std::to_string(i), "m");
  CHECK_THROWS_AS(a.tracker.track(2, "room", "one-more", "m"), LimitExceeded);
  CHECK(a.tracker.count("room") == 3);
  a.tracker.untrack(1, "room", "k0");
  a.tracker.track(2, "room", "one-more", "m");
  CHECK_THROWS_AS(a.tracker.update(2, "room", "one-more", std::string(11, 'm')), LimitExceeded);
  CHECK(a.tracker.get("room", "one-more").at(0).meta == "m");
  CHECK(a.store.find("$presence/") == nullptr);
}

TEST_CASE("presence: diffs coalesce a join and a leave of the same ref") {
  PresenceDiff d;
  PresenceMeta m{PresenceRef{kA, 1}, {}, 1, "x"};
  d.add("k", m, false);
  d.add("k", m, true);
  CHECK(d.empty());
  d.add("k", m, true);  // hidden, then shown again
  PresenceDiff later;
  later.add("k", m, false);
  d.append(later);
  CHECK(d.empty());
}

TEST_CASE("presence: one key's rows from several origins and connections stay sorted by ref as they come and go") {
  Node a(kA), b(kB), c(kC);
  a.tracker.track(1, "room", "alice", "a1");
  b.tracker.track(1, "room", "alice", "b1");
  c.tracker.track(1, "room", "alice", "c1");
  a.tracker.track(2, "room", "alice", "a2");
  sync(c, b);  // c's row arrives before a's at b
  sync(a, b);
  auto refs = [&] {
    std::vector<std::pair<uint64_t, std::string>> out;
    for (const auto& m : b.tracker.get("room", "alice")) out.emplace_back(m.ref.origin.value, m.meta);
    return out;
  };
  using V = std::vector<std::pair<uint64_t, std::string>>;
  CHECK(refs() == V{{kA.value, "a1"}, {kA.value, "a2"}, {kB.value, "b1"}, {kC.value, "c1"}});
  CHECK(b.tracker.list("room") == std::vector<std::pair<std::string, std::vector<PresenceMeta>>>{
                                      {"alice", b.tracker.get("room", "alice")}});
  a.tracker.untrack(1, "room", "alice");  // the first row goes
  sync(a, b);
  CHECK(refs() == V{{kA.value, "a2"}, {kB.value, "b1"}, {kC.value, "c1"}});
  b.tracker.untrack(1, "room", "alice");  // a middle one
  CHECK(refs() == V{{kA.value, "a2"}, {kC.value, "c1"}});
  b.tracker.memberEvent(MemberEvent{kC, MemberState::down}, 100);  // the last one
  CHECK(refs() == V{{kA.value, "a2"}});
  CHECK(b.tracker.keyCount("room") == 1);
  b.tracker.memberEvent(MemberEvent{kC, MemberState::alive}, 200);
  CHECK(refs() == V{{kA.value, "a2"}, {kC.value, "c1"}});
  a.tracker.close(2);
  sync(a, b);
  b.tracker.memberEvent(MemberEvent{kC, MemberState::down}, 300);
  CHECK(b.tracker.get("room", "alice").empty());
  CHECK(b.tracker.count("room") == 0);
  CHECK(b.tracker.topics().empty());
}

TEST_CASE("presence: a received entry's previous ref is shown as it came, whatever its size") {
  Node a(kA), b(kB);
  for (uint64_t previous : {uint64_t{0}, uint64_t{7}, crdt::kMaxDotCounter, uint64_t{1} << 60, ~uint64_t{0}}) {
    std::string entry = "\x04room\x05" "alice";
    for (int i = 0; i < 8; ++i) entry.push_back(static_cast<char>(i == 0 ? 1 : 0));  // connection 1: replaced each round
    std::string value;
    appendVarint(value, previous);
    value += "m";
    a.store.update<Map>(presenceObjectName(kA), [&](Map& s) { return s.set(kA, entry, value, crdt::Timestamp{}); });
    sync(a, b);
    auto metas = b.tracker.get("room", "alice");
    REQUIRE(metas.size() == 1);
    CHECK(metas[0].previous.counter == previous);
    CHECK(metas[0].previous.origin == (previous == 0 ? ReplicaId{} : kA));
    CHECK(metas[0].meta == "m");
  }
  auto d = b.tracker.takeDiffs();
  CHECK(d["room"].joins.at("alice").back().previous.counter == ~uint64_t{0});
}

TEST_CASE("presence: a connection closed while another node's purge of its presences is pending") {
  PresenceConfig config;
  config.permdownMs = 1000;
  Node a(kA, config), b(kB, config);
  a.tracker.track(1, "room", "alice", "a");
  a.tracker.track(1, "room", "bob", "a");
  a.tracker.track(2, "room", "carol", "a");
  sync(a, b);
  b.tracker.memberEvent(MemberEvent{kA, MemberState::down}, 0);
  b.tracker.tick(1000);  // purged
  sync(b, a);
  CHECK(a.tracker.count("room") == 0);
  CHECK(a.tracker.localCount() == 3);
  CHECK(a.tracker.tracked(1, "room", "alice"));  // still tracked: tracked again at the next tick
  CHECK(a.tracker.close(1) == 2);
  CHECK_FALSE(a.tracker.tracked(1, "room", "alice"));
  CHECK(a.tracker.localCount() == 1);
  a.tracker.tick(2000);
  CHECK(a.tracker.count("room") == 1);
  CHECK(a.tracker.get("room", "carol").size() == 1);
  CHECK(a.tracker.close(2) == 1);
  CHECK(a.tracker.count("room") == 0);
  CHECK(a.tracker.localCount() == 0);
}

TEST_CASE("presence: our presences written again under new dots (a refuted claim) still leave when their connection closes") {
  // A forged delta claims a's presence dots 1..3 (it tracked 1 and 2) and holds none: a refutes
  // it by writing both entries again under new dots (gossip/object.h, "Refutation"). Closing the
  // connection must remove them under those dots.
  Node a(kA), b(kB);
  a.tracker.track(1, "room", "u1", "m1");
  a.tracker.track(1, "room", "u2", "m2");
  sync(a, b);
  crdt::CausalContext claim;
  claim.addRange(kA, 1, 3);
  const std::string name = presenceObjectName(kA);
  CHECK(a.store.joinRemote(kC, {{name, Value(Map::fromParts(Map::Store(), claim))}}).refuted == 1);
  REQUIRE(a.tracker.count("room") == 2);
  CHECK(a.tracker.get("room", "u1").at(0).ref.counter > 3);
  CHECK(a.tracker.tracked(1, "room", "u1"));
  CHECK(a.tracker.close(1) == 2);
  CHECK(a.tracker.count("room") == 0);
  CHECK(std::get<Map>(*a.store.find(name)).size() == 0);
  sync(a, b);
  CHECK(b.tracker.count("room") == 0);
}

TEST_CASE("presence: many updates and untracks on one connection keep its presences") {
  Node a(kA);
  for (int i = 0; i < 40; ++i) a.tracker.track(1, "room", "k" + std::to_string(i), "0");
  for (int round = 1; round <= 5; ++round) {
    for (int i = 0; i < 40; i += 2) a.tracker.update(1, "room", "k" + std::to_string(i), std::to_string(round));
  }
  for (int i = 0; i < 40; i += 4) CHECK(a.tracker.untrack(1, "room", "k" + std::to_string(i)));
  CHECK(a.tracker.count("room") == 30);
  CHECK(a.tracker.get("room", "k2").at(0).meta == "5");
  CHECK(a.tracker.get("room", "k2").at(0).previous.counter != 0);
  CHECK(a.tracker.close(1) == 30);
  CHECK(a.tracker.count("room") == 0);
  CHECK(std::get<Map>(*a.store.find(presenceObjectName(kA))).size() == 0);
}

TEST_CASE("presence: any order of state exchanges converges to the model, and diffs replay to the list") {
  PROPERTY("presence converges", [] {
    const std::vector<ReplicaId> ids{kA, kB, kC};
    std::vector<std::unique_ptr<Node>> nodes;
    for (auto id : ids) nodes.push_back(std::make_unique<Node>(id));
    std::vector<Flat> replay(3);
    std::vector<std::vector<NamedValue>> old(3);  // stale copies to deliver late
    // model: (node, connection, key) -> meta
    std::map<std::tuple<int, int, int>, std::string> model;
    const int steps = *rc::gen::inRange(1, 80);
    for (int s = 0; s < steps; ++s) {
      const int n = *rc::gen::inRange(0, 3);
      const int conn = *rc::gen::inRange(1, 4);
      const int key = *rc::gen::inRange(0, 4);
      const std::string k = "k" + std::to_string(key);
      auto& t = nodes[n]->tracker;
      switch (*rc::gen::inRange(0, 7)) {
        case 0:
        case 1:
          if (!t.tracked(conn, "room", k)) {
            const std::string meta = "m" + std::to_string(s);
            t.track(conn, "room", k, meta);
            model[{n, conn, key}] = meta;
          }
          break;
        case 2:
          if (t.tracked(conn, "room", k)) {
            const std::string meta = "u" + std::to_string(s);
            t.update(conn, "room", k, meta);
            model[{n, conn, key}] = meta;
          }
          break;
        case 3:
          t.untrack(conn, "room", k);
          model.erase({n, conn, key});
          break;
        case 4:
          t.close(conn);
          for (auto it = model.begin(); it != model.end();) {
            it = (std::get<0>(it->first) == n && std::get<1>(it->first) == conn) ? model.erase(it) : std::next(it);
          }
          break;
        case 5: {  // exchange state between two nodes (maybe keeping a stale copy to send later)
          const int to = *rc::gen::inRange(0, 3);
          if (to != n) sync(*nodes[n], *nodes[to]);
          old[n].clear();
          for (const auto& [name, v] : nodes[n]->store.objects()) old[n].push_back({name, v});
          break;
        }
        default: {  // a stale copy arrives
          const int to = *rc::gen::inRange(0, 3);
          if (to != n && !old[n].empty()) nodes[to]->store.joinRemote(ids[n], old[n]);
          break;
        }
      }
      for (int i = 0; i < 3; ++i) {
        for (const auto& [topic, d] : nodes[i]->tracker.takeDiffs()) apply(replay[i], d);
      }
    }
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          if (i != j) sync(*nodes[i], *nodes[j]);
        }
      }
    }
    for (int i = 0; i < 3; ++i) {
      for (const auto& [topic, d] : nodes[i]->tracker.takeDiffs()) apply(replay[i], d);
      const Flat now = flat(nodes[i]->tracker, "room");
      RC_ASSERT(now == flat(nodes[0]->tracker, "room"));
      RC_ASSERT(replay[i] == now);
      // The model: every tracked and not untracked presence, with its latest meta and origin.
      std::map<std::string, std::multiset<std::string>> metas;
      for (const auto& [key, ms] : nodes[i]->tracker.list("room")) {
        for (const auto& m : ms) {
          metas[key].insert(std::to_string(m.ref.origin.value) + "/" + std::to_string(m.connection) + "/" + m.meta);
        }
      }
      std::map<std::string, std::multiset<std::string>> want;
      for (const auto& [where, meta] : model) {
        const auto [n, conn, key] = where;
        want["k" + std::to_string(key)].insert(std::to_string(ids[n].value) + "/" + std::to_string(conn) + "/" + meta);
      }
      RC_ASSERT(metas == want);
      RC_ASSERT(nodes[i]->tracker.count("room") == model.size());
    }
  });
}

}  // namespace
}  // namespace deltasync::gossip
