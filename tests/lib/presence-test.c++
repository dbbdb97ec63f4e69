// deltasync::Presence (include/deltasync/presence.h) on real nodes in this process over TCP: what
// one node tracks shows on the others with its origin; subscribers get the state, then diffs that
// replay to the list; closing a connection or a node makes its presences leave everywhere; many
// threads tracking at once are all absorbed; misuse gets clear errors.
//
// Waits are liveness bounds (poll until true, give up after seconds), never timing assertions.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/errors.h>
#include <deltasync/node.h>
#include <deltasync/presence.h>

#include "tests/lib/tcp-nodes.h"

namespace deltasync {
namespace {

using testing::alive;
using testing::eventually;
NodeConfig config(std::vector<std::string> seeds = {}) { return testing::tcpConfig(std::move(seeds)); }

// A subscriber's view: the diffs it got, applied in order to an empty list.
struct Replay {
  std::mutex m;
  std::map<std::string, std::map<std::string, std::set<std::string>>> topics;  // topic -> key -> refs
  size_t calls = 0;
  std::string error;
  void operator()(const PresenceDiff& d) {
    std::lock_guard lock(m);
    ++calls;
    auto& keys = topics[d.topic];
    for (const auto& e : d.leaves) {
      for (const auto& meta : e.metas) {
        if (keys[e.key].erase(meta.ref.text()) == 0) error = "a leave of a ref never joined: " + meta.ref.text();
      }
      if (keys[e.key].empty()) keys.erase(e.key);
    }
    for (const auto& e : d.joins) {
      for (const auto& meta : e.metas) {
        if (!keys[e.key].insert(meta.ref.text()).second) error = "a join of a ref already there: " + meta.ref.text();
      }
    }
  }
  std::map<std::string, std::set<std::string>> of(const std::string& topic) {
    std::lock_guard lock(m);
    return topics[topic];
  }
};

std::map<std::string, std::set<std::string>> refs(const Presence& p, const std::string& topic) {
  std::map<std::string, std::set<std::string>> out;
  for (const auto& e : p.list(topic)) {
    for (const auto& m : e.metas) out[e.key].insert(m.ref.text());
  }
  return out;
}

TEST_CASE("presence: tracked on one node, listed on all, with diffs that replay to the list") {
  Node a(config());
  Node b(config({a.address()}));
  Node c(config({a.address()}));
  REQUIRE(eventually([&] { return alive(a) == 3 && alive(b) == 3 && alive(c) == 3; }));
  auto pa = a.presence(), pb = b.presence(), pc = c.presence();

  auto tab1 = pa.connect();
  auto tab2 = pa.connect();
  PresenceRef alice1 = tab1.track("room", "alice", R"({"s":"online"})");
  tab2.track("room", "alice", R"({"s":"away"})");
  tab1.track("lobby", "alice", "{}");
  CHECK(alice1.replica == a.id());
  Replay early;
  auto subEarly = pc.subscribe("room", std::ref(early));  // subscribes while joins are on their way
  auto bobConn = pb.connect();
  PresenceRef bob = bobConn.track("room", "bob", "{}");
  CHECK(bob.replica == b.id());

  for (Presence* p : {&pa, &pb, &pc}) {
    CHECK(eventually([&] { return p->count("room") == 3 && p->count("lobby") == 1; }));
    CHECK(p->topics() == std::vector<std::string>{"lobby", "room"});
  }
  auto list = pc.list("room");
  REQUIRE(list.size() == 2);
  CHECK(list[0].key == "alice");
  REQUIRE(list[0].metas.size() == 2);
  CHECK(list[0].metas[0].ref.replica == a.id());
  CHECK(pc.get("room", "bob").at(0).ref == bob);

  Replay late;
  auto subLate = pc.subscribe("room", std::ref(late));  // the first call holds the state
  Replay all;
  auto subAll = pb.subscribeAll(std::ref(all));
  CHECK(eventually([&] { return late.of("room") == refs(pc, "room"); }));

  // An update: a new ref that keeps the old one as previous.
  PresenceRef alice2 = tab1.update("room", "alice", R"({"s":"typing"})");
  CHECK(alice2 != alice1);
  CHECK(eventually([&] {
    for (const auto& m : pc.get("room", "alice")) {
      if (m.ref == alice2) return m.previous == alice1 && m.meta == R"({"s":"typing"})";
    }
    return false;
  }));
  CHECK_FALSE(tab1.untrack("room", "nobody"));
  CHECK(bobConn.untrack("room", "bob"));
  CHECK(eventually([&] { return pa.get("room", "bob").empty() && pc.count("room") == 2; }));

  // Closing a connection: all of its presences leave, everywhere.
  tab1.close();
  tab1.close();  // idempotent
  CHECK(eventually([&] { return pc.count("room") == 1 && pc.count("lobby") == 0 && pb.count("lobby") == 0; }));
  CHECK(pc.topics() == std::vector<std::string>{"room"});
  CHECK_THROWS_AS(tab1.track("room", "alice", "{}"), std::logic_error);

  for (Replay* r : {&early, &late}) {
    CHECK(eventually([&] { return r->of("room") == refs(pc, "room"); }));
    CHECK(r->error == "");
  }
  CHECK(eventually([&] { return all.of("room") == refs(pb, "room") && all.of("lobby").empty(); }));
  CHECK(all.error == "");
  auto replicas = pc.replicas();
  CHECK(replicas.size() == 3);
  for (const auto& r : replicas) CHECK(r.status == ReplicaStatus::up);
}

TEST_CASE("presence: diffs nobody listens to are dropped; a later subscription still replays to the list") {
  Node a(config());
  auto pa = a.presence();
  auto conn = pa.connect();
  {
    Replay first;
    auto sub = pa.subscribe("room", std::ref(first));
    conn.track("room", "k1", "{}");
    CHECK(eventually([&] { return first.of("room") == refs(pa, "room") && !first.of("room").empty(); }));
    CHECK(first.error == "");
  }  // unsubscribed: nobody listens from here
  conn.track("room", "k2", "{}");
  conn.untrack("room", "k1");
  Replay later;
  auto sub = pa.subscribe("room", std::ref(later));  // the state, then every later change
  conn.track("room", "k3", "{}");
  conn.update("room", "k2", R"({"x":1})");
  conn.untrack("room", "k3");
  CHECK(eventually([&] { return later.of("room") == refs(pa, "room") && refs(pa, "room").count("k2") == 1; }));
  CHECK(refs(pa, "room").size() == 1);
  CHECK(later.error == "");
}

TEST_CASE("presence: a node that closes takes its presences with it; many threads track at once") {
  Node a(config());
  Node b(config({a.address()}));
  REQUIRE(eventually([&] { return alive(a) == 2 && alive(b) == 2; }));
  const uint64_t aId = a.id();
  auto pb = b.presence();
  {
    auto pa = a.presence();
    constexpr int kThreads = 16, kEach = 200;
    std::vector<PresenceConnection> conns;
    for (int t = 0; t < kThreads; ++t) conns.push_back(pa.connect());
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          try {
            conns[t].track("burst", "user" + std::to_string(t * kEach + i), "{}");
          } catch (const std::exception&) {
            ++failures;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    CHECK(pa.count("burst") == kThreads * kEach);
    CHECK(eventually([&] { return pb.count("burst") == kThreads * kEach; }));
    a.close();
    CHECK_THROWS_AS(pa.count("burst"), NodeClosed);
    CHECK_THROWS_AS(conns[0].track("burst", "late", "{}"), NodeClosed);
  }  // the connections go after their node: nothing to do, no error
  CHECK(eventually([&] { return pb.count("burst") == 0; }));
  CHECK(pb.topics().empty());
  CHECK(eventually([&] {
    for (const auto& r : pb.replicas()) {
      if (r.id == aId) return r.status == ReplicaStatus::gone && r.presences == 0;
    }
    return false;
  }));
}

TEST_CASE("presence: misuse gets clear errors and changes nothing") {
  NodeConfig cfg = config();
  cfg.presence.maxMetaBytes = 16;
  cfg.presence.maxPresences = 2;
  Node a(cfg);
  auto p = a.presence();
  auto conn = p.connect();
  conn.track("room", "alice", "{}");
  CHECK_THROWS_AS(conn.track("room", "alice", "{}"), std::invalid_argument);
  CHECK_THROWS_AS(conn.update("room", "bob", "{}"), std::invalid_argument);
  CHECK_THROWS_AS(conn.track("", "bob", "{}"), std::invalid_argument);
  CHECK_THROWS_AS(conn.track("room", "bob", std::string(17, 'x')), LimitExceeded);
  CHECK_THROWS_AS(conn.track(std::string(300, 't'), "bob", "{}"), LimitExceeded);
  auto other = p.connect();
  other.track("room", "alice", "{}");  // the same key through another connection is fine
  CHECK_THROWS_AS(other.track("room", "carol", "{}"), LimitExceeded);  // maxPresences
  CHECK(p.count("room") == 2);
  CHECK(p.get("room", "alice").size() == 2);
  // The tracker's objects are not the application's to write.
  CHECK_THROWS_AS(a.counter("$presence/0000000000000001"), std::invalid_argument);
  CHECK(conn.id() != other.id());
}

}  // namespace
}  // namespace deltasync
