// Hostile peers against a node runtime (lib/runtime.h): raw Cap'n Proto clients with a wrong
// secret, a replayed proof, malformed and oversized messages, connections that never
// authenticate, and forged dots under the node's own id. Each is rejected, nothing from it is
// applied, and the node keeps serving its honest peer throughout.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "crdt/flat-index.h"
#include "gossip/envelope-wire.h"
#include "tests/lib/pipe-cluster.h"

namespace deltasync {
namespace {

using testing::Cluster;
using testing::kSecret;

// A raw client connection to runtime `rt` (as an attacker would open one).
struct RawClient {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<gossip::RpcConnection> rpc;
  RawClient(Runtime& rt, gossip::Limits limits = {}, const std::string& source = {}) {
    auto pipe = kj::newTwoWayPipe();
    rt.accept(kj::mv(pipe.ends[1]), source);
    stream = kj::mv(pipe.ends[0]);
    rpc = kj::heap<gossip::RpcConnection>(*stream, limits);
  }
};

// a and b converged on something, so "keeps serving" can be checked after each attack.
struct Setup {
  Cluster c;
  objects::Clock clock;
  Setup() {
    c.start(1, "a", {});
    c.start(2, "b", {"a"});
    REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 2 && c.liveMembers("b") == 2; }));
  }
  // A fresh write on b reaches a.
  void stillServing(const std::string& element) {
    objects::add(c.at("b"), "honest", element);
    CHECK(c.runUntil(
        [&] {
          auto lines = c.render("a", "honest");
          return std::find(lines.begin(), lines.end(), element) != lines.end();
        },
        3000));
  }
};

TEST_CASE("security: a client with the wrong secret gets no replicator; failures are counted") {
  Setup s;
  RawClient raw(s.c.at("a"));
  auto attempt = gossip::authenticate(raw.rpc->gatekeeper(), gossip::Secret(std::string(40, 'w')), ReplicaId{66},
                                      "deltasync");
  CHECK_THROWS_AS(attempt.wait(s.c.ws), std::exception);  // the client sees the server's proof fail first
  // An attacker who ignores the server's proof and just sends one of its own is refused.
  gossip::AuthClient liar(gossip::Secret(std::string(40, 'w')), ReplicaId{66}, "deltasync");
  auto hello = raw.rpc->gatekeeper().helloRequest();
  gossip::encodeHello(liar.hello(), hello.initHello());
  auto reply = hello.send().wait(s.c.ws);
  gossip::AuthProofMsg forged{};  // all zeros
  auto prove = reply.getHandshake().proveRequest();
  gossip::encodeAuthProof(forged, prove.initProof());
  CHECK_THROWS_WITH_AS(prove.send().wait(s.c.ws), doctest::Contains("authentication failed"), kj::Exception);
  CHECK(s.c.at("a").gatekeeperStats().proofRejected == 1);
  s.stillServing("after-wrong-secret");
}

TEST_CASE("security: a replayed proof is refused (each handshake has a fresh server nonce)") {
  Setup s;
  // Record an honest client's whole handshake (fixed client nonce, so the hello replays too).
  auto fixed = [] { return gossip::Nonce{}; };
  gossip::AuthProofMsg recorded;
  {
    RawClient honest(s.c.at("a"));
    gossip::AuthClient client(gossip::Secret(kSecret), ReplicaId{50}, "deltasync", fixed);
    auto hello = honest.rpc->gatekeeper().helloRequest();
    gossip::encodeHello(client.hello(), hello.initHello());
    auto reply = hello.send().wait(s.c.ws);
    recorded = client.onReply(gossip::decodeHelloReply(reply.getReply(), gossip::Limits{}));
    auto prove = reply.getHandshake().proveRequest();
    gossip::encodeAuthProof(recorded, prove.initProof());
    prove.send().wait(s.c.ws);  // accepted once
  }
  RawClient replay(s.c.at("a"));
  gossip::AuthClient same(gossip::Secret(std::string(40, 'z')), ReplicaId{50}, "deltasync", fixed);
  auto hello = replay.rpc->gatekeeper().helloRequest();
  gossip::encodeHello(same.hello(), hello.initHello());  // byte for byte the recorded hello
  auto reply = hello.send().wait(s.c.ws);
  auto prove = reply.getHandshake().proveRequest();
  gossip::encodeAuthProof(recorded, prove.initProof());
  CHECK_THROWS_WITH_AS(prove.send().wait(s.c.ws), doctest::Contains("authentication failed"), kj::Exception);
  s.stillServing("after-replay");
}

TEST_CASE("security: malformed envelopes fail their call only; the connection and the node go on") {
  Setup s;
  RawClient raw(s.c.at("a"));
  auto auth = gossip::authenticate(raw.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{70}, "deltasync")
                  .wait(s.c.ws);
  // Sender 0 (ids are nonzero), then a sender other than the authenticated id.
  auto bad = auth.replicator.deliverRequest();
  bad.initEnvelope().initSyncRequest().setId(1);
  CHECK_THROWS_WITH_AS(bad.send().wait(s.c.ws), doctest::Contains("invalid envelope"), kj::Exception);
  CHECK_THROWS_WITH_AS(gossip::deliver(auth.replicator, gossip::AckMsg{ReplicaId{2}, 1}).wait(s.c.ws),
                       doctest::Contains("authenticated as"), kj::Exception);
  // The codec's own rules (dots outside their context, limits, ...) are tested message by message
  // in tests/gossip/envelope-test; here: the connection survives the failures above, and a
  // valid push on it is accepted.
  crdt::ORSet<std::string> set;
  auto d = set.add(ReplicaId{70}, "x");
  auto push = auth.replicator.deliverRequest();
  gossip::encodeEnvelope(gossip::DeltaPushMsg{ReplicaId{70}, 0, 0, 1, {{"evil", gossip::Value(d)}}}, push.initEnvelope());
  push.send().wait(s.c.ws);
  CHECK(s.c.render("a", "evil") == std::vector<std::string>{"x"});
  CHECK(s.c.at("a").gatekeeperStats().envelopesRejected == 2);
  s.stillServing("after-malformed");
}

TEST_CASE("security: an oversized message drops that connection only") {
  Setup s;
  // A node whose traversal limit (which also bounds a message's size) is 64 KiB, and a message
  // of several hundred KiB.
  s.c.tune = [](RuntimeConfig& rc) { rc.limits.traversalLimitWords = (64 << 10) / 8; };
  Runtime& small = s.c.start(3, "small", {"a"});
  RawClient raw3(small);
  auto auth3 = gossip::authenticate(raw3.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{72}, "deltasync")
                   .wait(s.c.ws);
  crdt::ORSet<std::string> big;
  crdt::ORSet<std::string> delta;
  // Keys that neither front coding nor deflate shrink much: 16 hex digits of a hash each.
  for (uint64_t i = 0; i < 40000; ++i) {
    char key[17];
    std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>((i + 1) * 0x9E3779B97F4A7C15ULL));
    delta.join(big.add(ReplicaId{72}, key));
  }
  auto huge = auth3.replicator.deliverRequest();
  gossip::encodeEnvelope(gossip::DeltaPushMsg{ReplicaId{72}, 0, 0, 1, {{"big", gossip::Value(delta)}}},
                         huge.initEnvelope());
  CHECK_THROWS_AS(huge.send().wait(s.c.ws), kj::Exception);
  CHECK(small.store().find("big") == nullptr);
  // The node itself is fine: it still joins and serves its peers.
  REQUIRE(s.c.runUntil([&] { return s.c.liveMembers("small") == 3; }));
  objects::add(s.c.at("b"), "after", "oversize");
  CHECK(s.c.runUntil([&] { return s.c.render("small", "after") == std::vector<std::string>{"oversize"}; }, 3000));
}

TEST_CASE("security: a connection that never authenticates is closed after the handshake timeout") {
  Setup s;
  RawClient idle(s.c.at("a"));
  auto gatekeeper = idle.rpc->gatekeeper();  // takes the bootstrap capability, never says hello
  auto disconnected = idle.rpc->onDisconnect();
  const size_t before = s.c.at("a").inboundConnections();
  s.c.run(4000);
  CHECK(s.c.at("a").stats().handshakeTimeouts == 0);
  s.c.run(2000);  // past handshakeTimeoutMs (5 s)
  CHECK(s.c.at("a").stats().handshakeTimeouts == 1);
  CHECK(s.c.at("a").inboundConnections() == before - 1);
  disconnected.wait(s.c.ws);  // the client sees its connection end
  s.stillServing("after-idle");
}

TEST_CASE("security: before authenticating, a connection may send at most preAuthBytes") {
  Setup s;
  Runtime& a = s.c.at("a");
  // A message header announcing one segment of 2^24 words (128 MiB, under the traversal limit),
  // then its first 200 KiB: before, all of it was read and held until the handshake timeout.
  auto pipe = kj::newTwoWayPipe();
  a.accept(kj::mv(pipe.ends[1]), "10.1.1.1");
  const size_t before = a.inboundConnections();
  std::vector<kj::byte> flood(200 << 10, 0x5a);
  const uint32_t header[2] = {0, 1u << 24};
  std::memcpy(flood.data(), header, sizeof header);
  auto writing = pipe.ends[0]->write(flood.data(), flood.size()).then([] { return true; }, [](kj::Exception&&) { return false; });
  REQUIRE(s.c.runUntil([&] { return a.stats().preAuthOversize == 1; }, 1000));  // well before the 5 s timeout
  CHECK(!writing.wait(s.c.ws));  // the rest was never read: the connection is gone
  CHECK(a.inboundConnections() == before - 1);
  CHECK(a.pendingInbound() == 0);
  CHECK(a.stats().handshakeTimeouts == 0);
  // An honest handshake fits well within the budget (every other test authenticates through it).
  s.stillServing("after-pre-auth-flood");
}

TEST_CASE("security: unauthenticated connections are capped per source address") {
  Setup s;
  Runtime& a = s.c.at("a");
  const size_t base = a.pendingInbound();
  REQUIRE(base == 0);
  std::vector<std::unique_ptr<RawClient>> flood;
  for (int i = 0; i < 8; ++i) flood.push_back(std::make_unique<RawClient>(a, gossip::Limits{}, "10.9.9.9"));
  CHECK(a.pendingInbound() == 8);
  RawClient ninth(a, {}, "10.9.9.9");  // over maxPendingPerSource (8): closed at once
  CHECK(a.stats().sourceRefused == 1);
  CHECK(a.pendingInbound() == 8);
  // Another address is not held to that source's cap, and authenticating frees a slot.
  RawClient other(a, {}, "10.9.9.8");
  auto authed = gossip::authenticate(other.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{81}, "deltasync")
                    .wait(s.c.ws);
  CHECK(a.pendingInbound() == 8);
  gossip::authenticate(flood[0]->rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{82}, "deltasync").wait(s.c.ws);
  CHECK(a.pendingInbound() == 7);
  RawClient again(a, {}, "10.9.9.9");
  CHECK(a.pendingInbound() == 8);
  CHECK(a.stats().sourceRefused == 1);
}

TEST_CASE("security: at maxPending the oldest pending connection makes room; a live member's host keeps a reserve") {
  // The host of a live member ("b" here) gets memberReserve slots beyond maxPending (and is not
  // held to the per-source cap); past every slot, the connection that has waited longest without
  // authenticating is closed for the newcomer, so a flood cannot lock anyone out.
  Setup t;
  t.c.tune = [](RuntimeConfig& rc) {
    rc.maxPending = 4;
    rc.memberReserve = 3;
  };
  Runtime& small = t.c.start(3, "small", {"a"});
  REQUIRE(t.c.runUntil([&] { return t.c.liveMembers("small") == 3; }));
  std::vector<std::unique_ptr<RawClient>> strangers;
  for (int i = 0; i < 4; ++i) strangers.push_back(std::make_unique<RawClient>(small, gossip::Limits{}, "10.0.0." + std::to_string(i)));
  CHECK(small.pendingInbound() == 4);
  RawClient newcomer(small, {}, "10.0.0.99");
  CHECK(small.stats().pendingEvicted == 1);
  CHECK(small.pendingInbound() == 4);
  // The oldest stranger was closed for it: its handshake can no longer run.
  CHECK_THROWS_AS(gossip::authenticate(strangers[0]->rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{84}, "deltasync")
                      .wait(t.c.ws),
                  kj::Exception);
  // The newcomer still authenticates.
  gossip::authenticate(newcomer.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{83}, "deltasync").wait(t.c.ws);
  CHECK(small.pendingInbound() == 3);
  std::vector<std::unique_ptr<RawClient>> fromMember;
  for (int i = 0; i < 4; ++i) fromMember.push_back(std::make_unique<RawClient>(small, gossip::Limits{}, "b"));
  CHECK(small.pendingInbound() == 7);      // 4 + the member reserve of 3, without evicting
  CHECK(small.stats().pendingEvicted == 1);
  RawClient overReserve(small, {}, "b");
  CHECK(small.stats().pendingEvicted == 2);
  CHECK(small.pendingInbound() == 7);
  CHECK(small.stats().pendingRefused == 0);
  // Strangers keep coming: they evict strangers, never the member's connections admitted
  // under pressure, which still authenticate.
  RawClient late1(small, {}, "10.0.0.77");
  RawClient late2(small, {}, "10.0.0.78");
  CHECK(small.stats().pendingEvicted == 4);
  gossip::authenticate(fromMember[3]->rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{85}, "deltasync").wait(t.c.ws);
  // Unanswered, they all time out and their slots come back.
  REQUIRE(t.c.runUntil([&] { return small.pendingInbound() == 0; }, 10000));
  CHECK(small.stats().handshakeTimeouts > 0);
  objects::add(t.c.at("b"), "after", "caps");
  CHECK(t.c.runUntil([&] { return t.c.render("small", "after") == std::vector<std::string>{"caps"}; }, 3000));
}

TEST_CASE("security: a holder of the secret cannot authenticate as a live member from another host") {
  Setup s;
  // A member whose advertised address is an IP literal (PipeNet addresses are any strings).
  Runtime& c = s.c.start(3, "10.0.0.3:7000", {"a"});
  REQUIRE(s.c.runUntil([&] { return s.c.liveMembers("a") == 3 && s.c.liveMembers("10.0.0.3:7000") == 3; }));
  Runtime& a = s.c.at("a");
  RawClient impostor(a, {}, "10.6.6.6");
  CHECK_THROWS_WITH_AS(
      gossip::authenticate(impostor.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{3}, "deltasync").wait(s.c.ws),
      doctest::Contains("replica 3 is a live member at 10.0.0.3:7000, not at 10.6.6.6"), kj::Exception);
  CHECK(a.gatekeeperStats().peerRefused == 1);
  // From the member's own host (a restart under its own id) it is admitted; so is an id that is
  // no live member's, from anywhere.
  RawClient restarted(a, {}, "10.0.0.3");
  gossip::authenticate(restarted.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{3}, "deltasync").wait(s.c.ws);
  RawClient stranger(a, {}, "10.6.6.6");
  gossip::authenticate(stranger.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{77}, "deltasync").wait(s.c.ws);
  CHECK(a.gatekeeperStats().peerRefused == 1);
  CHECK(c.membership().member(ReplicaId{1})->state == gossip::MemberState::alive);
  s.stillServing("after-impostor");
}

TEST_CASE("security: the hash seed of every dot store is drawn from the OS when the library loads") {
  // crdt/ is handed its seed (crdt/flat-index.h); the runtime draws it before main. Unseeded (0),
  // a peer could send keys that share one probe cluster of the key index.
  CHECK(crdt::_::hashSeed() != 0);  // 0 only with probability 2^-64
}

TEST_CASE("security: a control client gets the control interface only; with a client secret, only that secret") {
  Setup s;
  Runtime& a = s.c.at("a");
  // Without a client secret, ctl proves the cluster secret, as a client: control yes, replication no.
  RawClient ctl(a);
  auto auth = gossip::authenticate(ctl.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{91}, "deltasync",
                                   gossip::randomNonce, /*client=*/true)
                  .wait(s.c.ws);
  // The call reaches the node's control hook (these runtimes have none: that is its answer).
  CHECK_THROWS_WITH_AS(auth.replicator.controlRequest().send().wait(s.c.ws),
                       doctest::Contains("this node serves no control interface"), kj::Exception);
  crdt::ORSet<std::string> set;
  CHECK_THROWS_WITH_AS(gossip::deliver(auth.replicator, gossip::DeltaPushMsg{ReplicaId{91}, 0, 0, 1,
                                                                             {{"s", gossip::Value(set.add(ReplicaId{91}, "x"))}}})
                           .wait(s.c.ws),
                       doctest::Contains("a control client cannot replicate"), kj::Exception);
  CHECK(a.store().find("s") == nullptr);

  // A node with a client secret: clients must prove it, and it opens nothing else.
  const std::string clientSecret(40, 'c');
  s.c.tune = [&](RuntimeConfig& rc) { rc.clientSecret = gossip::Secret(clientSecret); };
  Runtime& guarded = s.c.start(4, "guarded", {"a"});
  REQUIRE(s.c.runUntil([&] { return s.c.liveMembers("guarded") == 3; }));  // peers prove the cluster secret
  auto tryAuth = [&](const std::string& secret, bool client) {
    RawClient raw(guarded);
    return gossip::authenticate(raw.rpc->gatekeeper(), gossip::Secret(secret), ReplicaId{92}, "deltasync",
                                gossip::randomNonce, client)
        .then([](gossip::Authenticated) { return true; }, [](kj::Exception&&) { return false; })
        .wait(s.c.ws);
  };
  CHECK(tryAuth(clientSecret, true));
  CHECK_FALSE(tryAuth(kSecret, true));       // the cluster secret no longer opens control
  CHECK_FALSE(tryAuth(clientSecret, false));  // nor does the client secret open replication
  CHECK(tryAuth(kSecret, false));
  s.stillServing("after-clients");
}

TEST_CASE("security: dots and counts under the node's own id that it never minted are refuted") {
  Setup s;
  objects::add(s.c.at("a"), "s", "mine");  // a minted dot (1, 1)
  REQUIRE(s.c.runUntil([&] { return s.c.render("b", "s") == std::vector<std::string>{"mine"}; }, 3000));
  RawClient raw(s.c.at("a"));
  auto auth = gossip::authenticate(raw.rpc->gatekeeper(), gossip::Secret(kSecret), ReplicaId{73}, "deltasync")
                  .wait(s.c.ws);
  // A delta claiming dot (1, 7): a never made it. Refuted (gossip/object.h): joined (a's counter
  // moves past the claim, so its next write is not swallowed anywhere as already seen), and a's
  // entries it removed written again (none here: it claims (1, 6..7) only).
  crdt::ORSet<std::string> forger;
  crdt::ORSet<std::string> d;
  for (int i = 0; i < 7; ++i) d = forger.add(ReplicaId{1}, "forged");
  gossip::deliver(auth.replicator, gossip::DeltaPushMsg{ReplicaId{73}, 0, 0, 1, {{"s", gossip::Value(d)}}})
      .wait(s.c.ws);
  CHECK(s.c.render("a", "s") == std::vector<std::string>{"forged", "mine"});
  CHECK(s.c.at("a").engine().stats().deltasRefuted == 1);
  objects::add(s.c.at("a"), "s", "after");
  CHECK(std::get<crdt::ORSet<std::string>>(*s.c.at("a").store().find("s")).context().max(ReplicaId{1}) == 8);
  REQUIRE(s.c.runUntil(
      [&] { return s.c.render("b", "s") == std::vector<std::string>{"after", "forged", "mine"}; }, 3000));
  // A counter increment under a's id: adopted (gossip/object.h): a counts on from the claimed
  // total, so its next increment reaches b, which holds the claim too, instead of being swallowed.
  crdt::PNCounter pn;
  const gossip::Value claim(pn.increment(ReplicaId{1}, 5));
  gossip::deliver(auth.replicator, gossip::DeltaPushMsg{ReplicaId{73}, 0, 1, 2, {{"n", claim}}}).wait(s.c.ws);
  CHECK(s.c.at("a").engine().stats().deltasRefuted == 2);
  REQUIRE(s.c.runUntil([&] { return s.c.render("b", "n") == std::vector<std::string>{"5"}; }, 3000));
  objects::increment(s.c.at("a"), "n", 1);
  REQUIRE(s.c.runUntil([&] { return s.c.render("b", "n") == std::vector<std::string>{"6"}; }, 3000));
  // The same in a map of maps: refuted, so a's next write there (past the claim) reaches b.
  gossip::MapOfMaps om;
  const gossip::Value orMapClaim(om.update("k", [](gossip::Map& m) { return m.set(ReplicaId{1}, "x", "1", crdt::Timestamp{}); }));
  gossip::deliver(auth.replicator, gossip::DeltaPushMsg{ReplicaId{73}, 0, 2, 3, {{"om", orMapClaim}}}).wait(s.c.ws);
  CHECK(s.c.at("a").engine().stats().deltasRefuted == 3);
  CHECK(std::get<gossip::MapOfMaps>(*s.c.at("a").store().find("om")).context().max(ReplicaId{1}) == 1);
  s.stillServing("after-forgery");
}

}  // namespace
}  // namespace deltasync
