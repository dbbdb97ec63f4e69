// The RPC transport (gossip/rpc.h) in process, over kj::newTwoWayPipe: authentication gates the
// replication capability, envelopes arrive validated and attributed to the authenticated peer,
// and bad input fails only the call that carried it.
#include <doctest/doctest.h>

#include <kj/async-io.h>

#include <string>
#include <vector>

#include "gossip/envelope-wire.h"
#include "gossip/rpc.h"

namespace deltasync::gossip {
namespace {

const std::string kSecret(40, 's');

// A server node and a client on the two ends of an in-memory pipe.
struct Pair {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::TwoWayPipe pipe = io.provider->newTwoWayPipe();
  std::vector<std::pair<ReplicaId, Message>> received;
  Gatekeeper* gate = nullptr;
  kj::Own<RpcConnection> server, client;

  explicit Pair(std::string serverSecret = kSecret, Limits limits = {}) {
    auto g = kj::heap<Gatekeeper>(Secret(serverSecret), ReplicaId{2}, "prod", limits, [this](ReplicaId from, Message m) {
      if (std::holds_alternative<PingMsg>(m) && std::get<PingMsg>(m).seq == 666) {
        throw std::runtime_error("the node refused it");
      }
      received.emplace_back(from, std::move(m));
    });
    gate = g.get();
    server = kj::heap<RpcConnection>(*pipe.ends[1], kj::mv(g), limits);
    client = kj::heap<RpcConnection>(*pipe.ends[0], Limits{});
  }

  Authenticated login(std::string secret = kSecret, ReplicaId self = ReplicaId{1}, std::string cluster = "prod") {
    return authenticate(client->gatekeeper(), Secret(secret), self, cluster).wait(io.waitScope);
  }
};

TEST_CASE("rpc: an authenticated peer delivers envelopes, attributed to its id") {
  Pair p;
  auto a = p.login();
  CHECK(a.peer == ReplicaId{2});
  deliver(a.replicator, AckMsg{ReplicaId{1}, 42}).wait(p.io.waitScope);
  PingMsg ping{ReplicaId{1}, 7, {{ReplicaId{9}, 3, MemberState::suspect, "10.0.0.9:7000", ReplicaId{1}}}, 5, true};
  deliver(a.replicator, ping).wait(p.io.waitScope);
  REQUIRE(p.received.size() == 2);
  CHECK(p.received[0].first == ReplicaId{1});
  CHECK(p.received[0].second == Message{AckMsg{ReplicaId{1}, 42}});
  CHECK(p.received[1].second == Message{ping});
  CHECK(p.gate->stats().authenticated == 1);
}

TEST_CASE("rpc: a client with the wrong secret gets no replicator") {
  Pair p;
  // The client rejects the server's proof first (it cannot be the same secret)...
  CHECK_THROWS_WITH(p.login(std::string(40, 'w')), doctest::Contains("server's proof is wrong"));
  CHECK(p.gate->stats().authenticated == 0);
  // ...and a client that sends a proof anyway is refused by the server.
  auto hello = p.client->gatekeeper().helloRequest();
  AuthClient liar(Secret(std::string(40, 'w')), ReplicaId{1}, "prod");
  encodeHello(liar.hello(), hello.initHello());
  auto response = hello.send().wait(p.io.waitScope);
  auto prove = response.getHandshake().proveRequest();
  prove.initProof().setProof(kj::heapArray<kj::byte>(32).asPtr());
  CHECK_THROWS_WITH(prove.send().wait(p.io.waitScope), doctest::Contains("authentication failed"));
  CHECK(p.gate->stats().proofRejected == 1);
  CHECK(p.received.empty());
}

TEST_CASE("rpc: a server with the wrong secret is not trusted by the client") {
  Pair p(std::string(40, 'x'));
  CHECK_THROWS_WITH(p.login(), doctest::Contains("server's proof is wrong"));
}

TEST_CASE("rpc: another cluster's peer is refused at hello") {
  Pair p;
  CHECK_THROWS_WITH(p.login(kSecret, ReplicaId{1}, "staging"), doctest::Contains("another cluster"));
  CHECK(p.gate->stats().helloRejected == 1);
}

TEST_CASE("rpc: a replayed proof does not open a second handshake") {
  Pair p;
  auto gk = p.client->gatekeeper();
  // Record a successful exchange...
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod");
  HelloMsg recorded = c.hello();
  auto h1 = gk.helloRequest();
  encodeHello(recorded, h1.initHello());
  auto r1 = h1.send().wait(p.io.waitScope);
  AuthProofMsg proof = c.onReply(decodeHelloReply(r1.getReply(), Limits{}));
  auto p1 = r1.getHandshake().proveRequest();
  encodeAuthProof(proof, p1.initProof());
  p1.send().wait(p.io.waitScope);
  REQUIRE(p.gate->stats().authenticated == 1);
  // ...then replay the same hello and proof: the server chose a new nonce, so the proof fails.
  auto h2 = gk.helloRequest();
  encodeHello(recorded, h2.initHello());
  auto r2 = h2.send().wait(p.io.waitScope);
  auto p2 = r2.getHandshake().proveRequest();
  encodeAuthProof(proof, p2.initProof());
  CHECK_THROWS_WITH(p2.send().wait(p.io.waitScope), doctest::Contains("authentication failed"));
  CHECK(p.gate->stats().authenticated == 1);
  CHECK(p.gate->stats().proofRejected == 1);
}

TEST_CASE("rpc: invalid envelopes fail their own call only; the connection keeps serving") {
  Pair p;
  auto a = p.login();
  // A sender other than the authenticated id.
  CHECK_THROWS_WITH(deliver(a.replicator, AckMsg{ReplicaId{5}, 1}).wait(p.io.waitScope),
                    doctest::Contains("the peer authenticated as 1"));
  // A malformed envelope (a push in the struct form, which no sender writes), built by hand.
  {
    auto req = a.replicator.deliverRequest();
    auto push = req.initEnvelope().initPush();
    push.setSender(1);
    push.setFromSeq(1);
    push.setToSeq(2);
    CHECK_THROWS_WITH(req.send().wait(p.io.waitScope), doctest::Contains("they travel compact only"));
  }
  // Handshake messages are not deliverable.
  CHECK_THROWS_WITH(deliver(a.replicator, AuthProofMsg{}).wait(p.io.waitScope), doctest::Contains("handshake"));
  // The node's own refusal (e.g. the engine's ProtocolError) reaches the caller too.
  CHECK_THROWS_WITH(deliver(a.replicator, PingMsg{ReplicaId{1}, 666, {}, 0, false}).wait(p.io.waitScope),
                    doctest::Contains("the node refused it"));
  CHECK(p.gate->stats().envelopesRejected == 4);
  CHECK(p.received.empty());
  // Still serving.
  deliver(a.replicator, AckMsg{ReplicaId{1}, 3}).wait(p.io.waitScope);
  CHECK(p.received.size() == 1);
}

TEST_CASE("rpc: a message beyond the traversal limit is refused before our code reads it, and ends that connection") {
  Limits tight;
  tight.traversalLimitWords = 1024;  // 8 KiB
  Pair p(kSecret, tight);
  auto a = p.login();
  DigestMsg big{ReplicaId{1}, 1, {}};
  for (int i = 0; i < 2000; ++i) big.entries.emplace_back("object-" + std::to_string(100000 + i), i);
  CHECK_THROWS_WITH(deliver(a.replicator, big).wait(p.io.waitScope), doctest::Contains("Message is too large"));
  CHECK(p.received.empty());
  // Cap'n Proto drops a stream that sent an oversized message: the peer must reconnect.
  CHECK_THROWS(deliver(a.replicator, AckMsg{ReplicaId{1}, 3}).wait(p.io.waitScope));
}

}  // namespace
}  // namespace deltasync::gossip
