// The node runtime (lib/runtime.h) in process: several runtimes on one KJ event loop, connected
// by kj::newTwoWayPipe through a fake dialer, on a timer the test advances by hand. Checks the
// wiring of engine, membership and transport: joining through seeds, convergence, refused
// peers, crash and restart, reconnect with backoff, and the administration interface.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <deltasync/codec.h>

#include "gossip/pruning.h"
#include "lib/clock-watch.h"
#include "lib/control.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/objects.h"
#include "tests/lib/pipe-cluster.h"

namespace deltasync {
namespace {

using testing::Cluster;
using testing::kSecret;

TEST_CASE("log: json lines are one object per line, the message escaped") {
  // stderr into a temporary file for the one line.
  std::fflush(stderr);
  const int saved = dup(2);
  char path[] = "/tmp/deltasync-log-test-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  dup2(fd, 2);
  const log::Level level = log::level();
  log::setLevel(log::Level::info);
  log::setFormat(log::Format::json);
  log::info("a \"quoted\" \\ line\nnext \x01 caf\xc3\xa9 bad \xff\xc3 end");
  log::setFormat(log::Format::text);
  log::setLevel(level);
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string text;
  char buf[4096];
  lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fd);
  unlink(path);
  CHECK(text.rfind("{\"ts\":\"", 0) == 0);
  CHECK(text.find("Z\",\"level\":\"info\",\"msg\":\"a \\\"quoted\\\" \\\\ line\\u000anext \\u0001 caf\xc3\xa9 bad "
                  "\\ufffd\\ufffd end\"}\n") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(log::parseFormat("json") == log::Format::json);
  CHECK_THROWS_AS(log::parseFormat("xml"), std::invalid_argument);
}

TEST_CASE("objects: ctl's typed text is the typed handles' bytes, shown back in their order") {
  const auto& ints = objects::textType("int");
  CHECK(ints.fromText("-3") == Codec<int64_t>::encode(-3));
  CHECK(ints.toText(Codec<int64_t>::encode(INT64_MIN)) == "-9223372036854775808");
  CHECK(objects::textType("uint").fromText("18446744073709551615") == Codec<uint64_t>::encode(UINT64_MAX));
  CHECK(objects::textType("double").toText(objects::textType("double").fromText("0.1")) == "0.1");
  CHECK(objects::textType("bool").fromText("true") == Codec<bool>::encode(true));
  CHECK(objects::textType("bytes").fromText("00ff") == std::string("\0\xff", 2));
  CHECK(objects::textType("bytes").toText(std::string("\0\xff", 2)) == "00ff");
  CHECK(&objects::textType("") == &objects::textType("string"));
  for (const auto& [type, bad] : std::vector<std::pair<std::string, std::string>>{
           {"int", "12x"}, {"int", ""}, {"int", "9223372036854775808"}, {"uint", "-1"}, {"double", "one"},
           {"bool", "yes"}, {"bytes", "abc"}, {"bytes", "zz"}}) {
    CAPTURE(type);
    CAPTURE(bad);
    CHECK_THROWS_AS(objects::textType(type).fromText(bad), std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(objects::textType("float"), doctest::Contains("the types: string, bytes, int, uint, double, bool"),
                       std::invalid_argument);
  CHECK_THROWS_AS(ints.toText("abc"), CodecError);
  // An int-keyed map shown numerically, not as text sorts ("10" < "9").
  gossip::Map m;
  for (int64_t k : {10, 9, -1}) m.join(m.set(ReplicaId{1}, ints.fromText(std::to_string(k)), ints.fromText("7"), crdt::Timestamp{1}));
  CHECK(objects::render(m, ints, ints) == std::vector<std::string>{"-1=7", "9=7", "10=7"});
  CHECK_THROWS_AS(objects::render(m, objects::textType("bool"), ints), CodecError);
}

TEST_CASE("runtime: addresses split at their last colon, IPv6 hosts bracketed") {
  HostPort v6 = splitHostPort("[fd00::5]:7000");
  CHECK(v6.host == "[fd00::5]");
  CHECK(v6.bareHost() == "fd00::5");
  CHECK(v6.port == "7000");
  HostPort v4 = splitHostPort("10.0.0.5:7000");
  CHECK(v4.host == "10.0.0.5");
  CHECK(v4.bareHost() == "10.0.0.5");
  CHECK(v4.port == "7000");
  HostPort bare = splitHostPort("localhost");
  CHECK(bare.host == "localhost");
  CHECK(bare.port.empty());
  HostPort v6bare = splitHostPort("[fd00::5]");
  CHECK(v6bare.bareHost() == "fd00::5");
  CHECK(v6bare.port.empty());
  CHECK_NOTHROW(checkSeedAddress("[fd00::5]:7000"));
  CHECK_THROWS_AS(checkSeedAddress("[fd00::5]"), std::invalid_argument);
  CHECK_THROWS_AS(checkSeedAddress(":7000"), std::invalid_argument);
}

TEST_CASE("runtime: three replicas join through a seed and converge") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(3, "c", {"a", "b"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 3 && c.liveMembers("b") == 3 && c.liveMembers("c") == 3; }));

  objects::Clock clock;
  objects::increment(c.at("a"), "hits", 5);
  objects::increment(c.at("b"), "hits", -2);
  objects::add(c.at("c"), "tags", "x");
  objects::put(c.at("a"), clock, "users", "alice", "online");
  objects::put(c.at("b"), clock, "users", "bob", "away");
  auto converged = [&] {
    for (const char* n : {"a", "b", "c"}) {
      if (c.render(n, "hits") != std::vector<std::string>{"3"}) return false;
      if (c.render(n, "tags") != std::vector<std::string>{"x"}) return false;
      if (c.render(n, "users") != std::vector<std::string>{"alice=online", "bob=away"}) return false;
    }
    return true;
  };
  REQUIRE(c.runUntil(converged, 5000));
  // Every replica heard of every change through its change listener.
  for (const char* n : {"a", "b", "c"}) {
    const auto& ch = c.slots[n]->changes;
    CHECK(std::count(ch.begin(), ch.end(), "users") >= 1);
    CHECK(std::count(ch.begin(), ch.end(), "tags") >= 1);
  }
  CHECK(c.at("a").stats().messagesRejected == 0);
  CHECK(c.at("a").readyLinks() == 2);
}

TEST_CASE("runtime: a node with the wrong secret is refused and changes nothing") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(9, "evil", {"a", "b"}, std::string(40, 'x'));
  objects::increment(c.at("evil"), "hits", 100);
  c.run(3000);
  CHECK(c.liveMembers("a") == 2);
  CHECK(c.at("a").membership().member(ReplicaId{9}) == nullptr);
  CHECK(c.at("a").store().find("hits") == nullptr);
  CHECK(c.at("a").gatekeeperStats().proofRejected + c.at("b").gatekeeperStats().proofRejected == 0);
  // The evil node rejects the servers' proofs first (they cannot match its secret); the servers
  // never hand it a replicator, so nothing was delivered.
  CHECK(c.at("a").gatekeeperStats().authenticated >= 1);  // b authenticated fine
  CHECK(c.at("evil").stats().connects == 0);
  objects::increment(c.at("a"), "hits", 1);
  REQUIRE(c.runUntil([&] { return c.render("b", "hits") == std::vector<std::string>{"1"}; }, 3000));
}

TEST_CASE("runtime: a crashed replica is declared down, restarts with its id and catches up") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(3, "c", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 3 && c.liveMembers("c") == 3; }));
  objects::add(c.at("a"), "s", "before");
  REQUIRE(c.runUntil([&] { return c.render("c", "s") == std::vector<std::string>{"before"}; }, 3000));

  c.crash("c");
  REQUIRE(c.runUntil([&] {
    const auto* m = c.at("a").membership().member(ReplicaId{3});
    return m == nullptr || m->state == gossip::MemberState::down || m->removed;
  }));
  objects::add(c.at("a"), "s", "while-down");
  objects::add(c.at("b"), "s", "also-while-down");
  c.run(500);
  CHECK(c.at("a").stats().connectFailures + c.at("a").stats().disconnects >= 1);

  // Restart with the same id and address but no state (not durable): catch-up by digest.
  c.start(3, "c", {"a"});
  const std::vector<std::string> all{"also-while-down", "before", "while-down"};
  REQUIRE(c.runUntil([&] { return c.render("c", "s") == all && c.liveMembers("a") == 3; }));
  CHECK(c.render("b", "s") == all);
}

TEST_CASE("runtime: a replica gone past the pruning horizon is pruned; back under its id, it is refused at the handshake") {
  Cluster c;
  c.tune = [](RuntimeConfig& rc) {
    rc.membership.removeAfterMs = 300;
    rc.pruning.pruneAfterMs = 1;  // (wall clock) due as soon as it is marked gone
    rc.pruning.checkIntervalMs = 100;
  };
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(3, "c", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 3 && c.liveMembers("b") == 3 && c.liveMembers("c") == 3; }));
  objects::add(c.at("c"), "s", "from-c");
  REQUIRE(c.runUntil([&] { return c.render("a", "s") == std::vector<std::string>{"from-c"} &&
                                  c.render("b", "s") == std::vector<std::string>{"from-c"}; }));
  c.crash("c");
  REQUIRE(c.runUntil([&] { return c.at("a").forgottenReplicas() == 1 && c.at("b").forgottenReplicas() == 1; }));
  CHECK(c.at("a").pruneStats().pruned == 1);  // the lowest live id prunes
  CHECK(c.render("a", "s") == std::vector<std::string>{"from-c"});  // its entry kept, under a's id
  CHECK(c.render("b", "s") == std::vector<std::string>{"from-c"});
  for (const char* n : {"a", "b"}) {
    for (const auto& [name, v] : c.at(n).store().objects()) CHECK_FALSE(gossip::mentions(v, ReplicaId{3}));
  }
  // It comes back under its id: refused, and nothing it writes is taken.
  const uint64_t refused = c.at("a").gatekeeperStats().peerRefused + c.at("b").gatekeeperStats().peerRefused;
  c.start(3, "c", {"a"});
  objects::add(c.at("c"), "s", "late");
  REQUIRE(c.runUntil([&] {
    return c.at("a").gatekeeperStats().peerRefused + c.at("b").gatekeeperStats().peerRefused > refused;
  }));
  c.run(2000);
  CHECK(c.render("a", "s") == std::vector<std::string>{"from-c"});
  CHECK(c.liveMembers("a") == 2);
}

TEST_CASE("runtime: dials back off while a peer refuses, and reconnect when it returns") {
  Cluster c;
  c.start(1, "a", {"b"});
  c.run(200);
  const uint64_t early = c.net.dials;
  c.run(5000);
  // The seed is retried with a doubling backoff (100 ms .. 10 s): a handful of dials in 5 s, not 50.
  CHECK(c.net.dials - early >= 2);
  CHECK(c.net.dials - early <= 8);
  c.start(2, "b", {});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }, 20000));
  objects::add(c.at("b"), "s", "hello");
  REQUIRE(c.runUntil([&] { return c.render("a", "s") == std::vector<std::string>{"hello"}; }, 3000));
}

TEST_CASE("runtime: under a one-way cut the cut-off side is answered on the return path; a healed link is used at once") {
  Cluster c;
  c.tune = [](RuntimeConfig& rc) { rc.membership.removeAfterMs = 600'000; };  // b stays a member
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  // A one-way cut: nothing reaches b, b still reaches a. a's link to b backs off to its maximum,
  // but what a holds for b goes back on b's own deliveries to a: b still gets a's writes.
  c.net.cut.insert("b");
  objects::add(c.at("a"), "s", "during");
  REQUIRE(c.runUntil([&] { return c.render("b", "s") == std::vector<std::string>{"during"}; }, 20'000));
  CHECK(c.at("a").stats().repliesSent > 0);
  CHECK(c.at("b").stats().repliesReceived > 0);
  c.run(30'000);
  CHECK(c.at("a").readyLinks() == 0);
  const uint64_t dials = c.net.dials;
  c.run(10'000);
  CHECK(c.net.dials - dials <= 22);  // while b's messages keep coming: at most ~2 early retries a second
  // Healed: b's next message to a is the sign of life that retries a's link at once.
  c.net.cut.erase("b");
  uint64_t waitedMs = 0;
  REQUIRE(c.runUntil([&] {
    waitedMs += 50;
    return c.at("a").readyLinks() == 1;
  }, 20'000));
  // Simulated time, so exact; without the early retry a waits out its backoff (up to 10 s).
  CHECK(waitedMs <= 1000);
}

TEST_CASE("runtime: a node that can be reached but reaches nobody still receives and is heard (return path)") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(3, "c", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 3 && c.liveMembers("b") == 3 && c.liveMembers("c") == 3; }));
  // c's own connections stop working and it can open none: everything it says goes back on the
  // others' deliveries to it.
  c.net.muted.insert("c");
  objects::add(c.at("a"), "s", "from-a");
  objects::add(c.at("c"), "s", "from-c");
  const std::vector<std::string> both{"from-a", "from-c"};
  REQUIRE(c.runUntil([&] { return c.render("a", "s") == both && c.render("b", "s") == both && c.render("c", "s") == both; },
                     20'000));
  // And it stays so: c keeps hearing and being heard for a long stretch (no member is removed).
  for (int round = 0; round < 5; ++round) {
    const std::string e = "later-" + std::to_string(round);
    objects::add(c.at(round % 2 ? "c" : "b"), "s", e);
    REQUIRE(c.runUntil([&] {
      for (const char* n : {"a", "b", "c"}) {
        const auto r = c.render(n, "s");
        if (std::find(r.begin(), r.end(), e) == r.end()) return false;
      }
      return true;
    }, 20'000));
    c.run(2'000);
  }
  CHECK(c.at("c").readyLinks() == 0);
  CHECK(c.at("c").stats().repliesSent > 0);
  for (const char* n : {"a", "b"}) {
    const auto* m = c.at(n).membership().member(ReplicaId{3});
    REQUIRE(m != nullptr);
    CHECK_FALSE(m->removed);
  }
}

TEST_CASE("runtime: a node restarted under a new id: its old id is retired at once, nobody dials itself") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  // b restarts at its address under a new id, before a could notice it was gone.
  c.crash("b");
  c.start(3, "b", {"a"});
  uint64_t waitedMs = 0;
  REQUIRE(c.runUntil([&] {
    waitedMs += 50;
    const auto* old = c.at("a").membership().member(ReplicaId{2});
    return old != nullptr && (old->state == gossip::MemberState::down || old->removed);
  }, 20'000));
  // Simulated time: a's redial of "b" found replica 3 there and retired 2. (With this test's fast
  // probes, suspicion gets there about as soon; what retiring changes is checked next.)
  CHECK(waitedMs <= 1000);
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  // Nobody dials replica 2 again: not a (it is retired), not b (its address is b's own).
  const uint64_t dials = c.net.dials;
  c.run(5000);
  std::string dialled;
  for (size_t i = dials; i < c.net.dialed.size(); ++i) dialled += " " + c.net.dialed[i];
  CHECK_MESSAGE(c.net.dials - dials <= 2, "dialled:" << dialled);
  for (const char* n : {"a", "b"}) {
    CHECK(c.at(n).gatekeeperStats().helloRejected == 0);
    CHECK(c.at(n).gatekeeperStats().proofRejected == 0);
  }
  objects::add(c.at("a"), "s", "after");
  REQUIRE(c.runUntil([&] { return c.render("b", "s") == std::vector<std::string>{"after"}; }, 5000));
}

TEST_CASE("runtime: a peer's message of the wrong kind is refused; both sides keep the rest") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  // The same name created concurrently as two kinds: each side refuses the other's push.
  objects::increment(c.at("a"), "x", 1);
  objects::add(c.at("b"), "x", "e");
  objects::add(c.at("a"), "fine", "1");
  c.run(1000);
  CHECK(c.at("a").stats().messagesRejected >= 1);
  CHECK(c.at("b").stats().sendsRejected >= 1);
  CHECK(c.render("a", "x") == std::vector<std::string>{"1"});
  CHECK(c.render("b", "x") == std::vector<std::string>{"e"});
  // Pushes that carry the conflicting object are refused as a whole, so "fine" may wait for the
  // digest path or a push without "x"; membership keeps working regardless.
  CHECK(c.liveMembers("a") == 2);
}

TEST_CASE("runtime: a write stamped an hour ahead is refused, counted, exported and logged; the clocks' honest writes flow") {
  Cluster c;
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  const uint64_t hour = 3'600'000;
  // A write as a node whose clock runs an hour fast stamps it (the HLC takes its own clock).
  c.at("a").update<gossip::Map>("users", [&](gossip::Map& m) {
    return m.set(ReplicaId{1}, "alice", "online", crdt::Timestamp::make(Runtime::wallMs() + hour, 0));
  });
  objects::Clock clock;
  objects::put(c.at("b"), clock, "users", "bob", "away");
  REQUIRE(c.runUntil([&] { return c.at("b").engine().stats().skewRefused >= 1; }, 5000));
  c.run(1000);
  CHECK(c.render("b", "users") == std::vector<std::string>{"bob=away"});  // nothing of it joined
  CHECK(c.at("b").stats().messagesRejected >= 1);
  CHECK(c.at("a").stats().sendsRejected >= 1);  // the sender hears why (and logs it)
  const std::string text = prometheusText(c.at("b"), NodeCounters{});
  CHECK(text.find("deltasync_clock_skew_refused_total 0") == std::string::npos);
  const std::string gauge = "deltasync_peer_clock_ahead_ms{peer=\"1\"} ";
  const size_t at = text.find(gauge);
  REQUIRE(at != std::string::npos);
  const uint64_t ahead = std::stoull(text.substr(at + gauge.size()));
  CHECK(ahead > hour - 60'000);
  CHECK(ahead <= hour);
  // The other direction is unaffected: b's honest write reached a.
  REQUIRE(c.runUntil([&] { return c.render("a", "users") == std::vector<std::string>{"alice=online", "bob=away"}; },
                     5000));
  CHECK(c.at("a").engine().stats().skewRefused == 0);
}

TEST_CASE("runtime: the control interface reads, writes and watches through RPC") {
  Cluster c;
  Runtime& a = c.start(1, "a", {});
  objects::Clock clock;
  ControlService service(clock, [] { return std::string("metrics"); });
  service.attach(&a);
  a.setControl([&](ReplicaId) { return service.client(); });
  a.listen([&](const gossip::Change& c) { service.changed(c.name); });

  // A client (like `deltasync ctl`) over a pipe.
  auto pipe = kj::newTwoWayPipe();
  a.accept(kj::mv(pipe.ends[1]));
  gossip::RpcConnection client(*pipe.ends[0], gossip::Limits{});
  auto auth = gossip::authenticate(client.gatekeeper(), gossip::Secret(kSecret), ReplicaId{77}, "deltasync")
                  .wait(c.ws);
  auto control = auth.replicator.controlRequest().send().wait(c.ws).getControl();

  struct Watcher final : wire::Watcher::Server {
    std::vector<std::vector<std::string>>* seen;
    explicit Watcher(std::vector<std::vector<std::string>>* s) : seen(s) {}
    kj::Promise<void> changed(ChangedContext context) override {
      std::vector<std::string> lines;
      for (auto l : context.getParams().getLines()) lines.emplace_back(l.cStr());
      seen->push_back(lines);
      return kj::READY_NOW;
    }
  };
  std::vector<std::vector<std::string>> seen;
  auto watch = control.watchRequest();
  watch.setName("users");
  watch.setWatcher(kj::heap<Watcher>(&seen));
  auto subscription = watch.send().wait(c.ws).getSubscription();
  c.run(20);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].empty());  // the map does not exist yet

  auto put = control.putRequest();
  put.setName("users");
  put.setKey("alice");
  put.setValue("online");
  put.send().wait(c.ws);
  auto incr = control.incrRequest();
  incr.setName("hits");
  incr.setBy(-4);
  incr.send().wait(c.ws);
  auto add = control.addRequest();
  add.setName("tags");
  add.setElement("t");
  add.send().wait(c.ws);
  c.run(20);
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == std::vector<std::string>{"alice=online"});

  auto get = control.getRequest();
  get.setName("hits");
  auto got = get.send().wait(c.ws);
  CHECK(std::string(got.getKind().cStr()) == "pn-counter");
  REQUIRE(got.getLines().size() == 1);
  CHECK(std::string(got.getLines()[0].cStr()) == "-4");

  // remove works on sets and maps and names its error otherwise.
  auto rmKey = control.removeRequest();
  rmKey.setName("users");
  rmKey.setElement("alice");
  rmKey.send().wait(c.ws);
  c.run(20);
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].empty());
  auto rmBad = control.removeRequest();
  rmBad.setName("hits");
  rmBad.setElement("x");
  CHECK_THROWS_WITH_AS(rmBad.send().wait(c.ws), doctest::Contains("remove takes a set, a map or a map of counters"), kj::Exception);
  auto wrongKind = control.addRequest();
  wrongKind.setName("hits");
  wrongKind.setElement("x");
  CHECK_THROWS_AS(wrongKind.send().wait(c.ws), kj::Exception);
  CHECK(c.render("a", "hits") == std::vector<std::string>{"-4"});

  auto members = control.membersRequest().send().wait(c.ws);
  REQUIRE(members.getMembers().size() == 1);
  CHECK(std::string(members.getMembers()[0].getState().cStr()) == "self");
  CHECK(std::string(control.statsRequest().send().wait(c.ws).getText().cStr()) == "metrics");

  // Dropping the subscription ends the watch.
  CHECK(service.watchCount() == 1);
  subscription = nullptr;
  c.run(20);
  CHECK(service.watchCount() == 0);
  service.attach(nullptr);
}

}  // namespace
}  // namespace deltasync

namespace deltasync {
namespace {

TEST_CASE("clock watch: a wall clock that steps is a jump; drift, slewing and late samples are not") {
  ClockWatch w(1000);
  CHECK(w.sample(5'000, 1'700'000'000'000) == 0);  // the first sample has nothing to compare
  CHECK(w.sample(5'050, 1'700'000'000'050) == 0);  // both advanced 50 ms
  CHECK(w.sample(9'050, 1'700'000'004'050) == 0);  // a late tick (the loop was busy): both 4 s
  CHECK(w.sample(9'100, 1'700'000'004'100 + 999) == 0);  // within the threshold
  CHECK(w.sample(9'150, 1'700'000'005'149 + 3'600'000) == 3'600'000);  // an hour forward
  CHECK(w.sample(9'200, 1'700'000'005'199) == -3'600'000);             // and back again
  uint64_t wall = 1'700'000'005'199;
  int64_t jumps = 0;
  for (uint64_t mono = 9'200; mono < 9'200 + 600'000; mono += 50) {  // 10 min slewing at 500 ppm
    wall += 50;
    if ((mono / 50) % 40 == 0) wall += 1;  // +1 ms every 2 s: 0.5 ms/s
    jumps += w.sample(mono + 50, wall) != 0;
  }
  CHECK(jumps == 0);
}

}  // namespace
}  // namespace deltasync
