// Peer authentication (gossip/auth.h): the handshake succeeds only with the same secret and
// cluster, binds both ids, and rejects replays, reflections, tampering and misuse.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gossip/auth.h"

namespace deltasync::gossip {
namespace {

const std::string kSecret(40, 'k');
const std::string kOther(40, 'x');

NonceSource counting(uint8_t start) {
  return [n = start]() mutable {
    Nonce x{};
    x.fill(n++);
    return x;
  };
}

TEST_CASE("auth: both sides authenticate each other with the same secret and cluster") {
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod", counting(1));
  AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  auto reply = s.onHello(c.hello());
  auto proof = c.onReply(reply);
  CHECK(c.peer() == ReplicaId{2});
  CHECK(s.onProof(proof) == ReplicaId{1});
  CHECK(s.peer() == ReplicaId{1});
}

TEST_CASE("auth: real random nonces differ") { CHECK(randomNonce() != randomNonce()); }

TEST_CASE("auth: a different secret fails on both sides") {
  {
    AuthClient c(Secret(kOther), ReplicaId{1}, "prod", counting(1));
    AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
    CHECK_THROWS_WITH_AS(c.onReply(s.onHello(c.hello())), doctest::Contains("server's proof is wrong"), AuthError);
  }
  {
    // A client that skips checking the server still cannot produce a valid proof.
    AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
    AuthClient c(Secret(kOther), ReplicaId{1}, "prod", counting(1));
    auto hello = c.hello();
    auto reply = s.onHello(hello);
    AuthProofMsg forged{authProof(Secret(kOther), "ds-auth-v1 client", reply.nonce, hello.nonce, ReplicaId{1}, ReplicaId{2})};
    CHECK_THROWS_WITH_AS(s.onProof(forged), doctest::Contains("proof is wrong"), AuthError);
    CHECK(!s.peer());
  }
}

TEST_CASE("auth: a recorded exchange cannot be replayed on a new connection") {
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod", counting(1));
  AuthServer s1(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  auto hello = c.hello();
  auto proof = c.onReply(s1.onHello(hello));
  REQUIRE(s1.onProof(proof) == ReplicaId{1});
  // The attacker replays hello and proof; the new connection's server nonce differs.
  AuthServer s2(Secret(kSecret), ReplicaId{2}, "prod", counting(200));
  s2.onHello(hello);
  CHECK_THROWS_WITH_AS(s2.onProof(proof), doctest::Contains("replay"), AuthError);
}

TEST_CASE("auth: the server's proof cannot be reflected as a client proof") {
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod", counting(1));
  AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  auto reply = s.onHello(c.hello());
  CHECK_THROWS_AS(s.onProof(AuthProofMsg{reply.proof}), AuthError);
}

TEST_CASE("auth: proofs bind the ids: a peer cannot claim another id") {
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod", counting(1));
  AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  auto hello = c.hello();
  auto reply = s.onHello(hello);
  // A tampered reply (another server id) is rejected by the client.
  auto tampered = reply;
  tampered.replica = ReplicaId{3};
  CHECK_THROWS_AS(c.onReply(tampered), AuthError);
  // A flipped bit anywhere in the proof is rejected.
  auto flipped = reply;
  flipped.proof[17] ^= 1;
  CHECK_THROWS_AS(c.onReply(flipped), AuthError);
}

TEST_CASE("auth: wrong cluster, wrong version, own id and out-of-order calls are refused") {
  AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  HelloMsg h{ReplicaId{1}, "staging", Nonce{}, kProtocolVersion};
  CHECK_THROWS_WITH_AS(s.onHello(h), doctest::Contains("another cluster"), AuthError);
  h.cluster = "prod";
  h.protocolVersion = 99;
  CHECK_THROWS_WITH_AS(s.onHello(h), doctest::Contains("version"), AuthError);
  h.protocolVersion = kProtocolVersion;
  h.replica = ReplicaId{2};
  CHECK_THROWS_WITH_AS(s.onHello(h), doctest::Contains("own replica id"), AuthError);
  CHECK_THROWS_WITH_AS(s.onProof(AuthProofMsg{}), doctest::Contains("unexpected proof"), AuthError);
  AuthClient c(Secret(kSecret), ReplicaId{1}, "prod", counting(1));
  CHECK_THROWS_WITH_AS(c.onReply(HelloReplyMsg{}), doctest::Contains("unexpected"), AuthError);
  c.hello();
  CHECK_THROWS_WITH_AS(c.hello(), doctest::Contains("twice"), AuthError);
}

TEST_CASE("auth: secrets shorter than 32 bytes are refused, and messages never contain the secret") {
  CHECK_THROWS_WITH_AS(Secret(std::string(31, 's')), doctest::Contains("too short"), std::invalid_argument);
  const std::string path = "auth-test-secret.tmp";
  {
    std::ofstream f(path);
    f << std::string(32, 'q') << "\n";
  }
  CHECK(Secret::fromFile(path).bytes() == std::string(32, 'q'));
  {
    std::ofstream f(path);
    f << "short-secret\n";
  }
  try {
    Secret::fromFile(path);
    FAIL("a short secret file was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("short-secret") == std::string::npos);
    CHECK(std::string(e.what()).find("too short") != std::string::npos);
  }
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(Secret::fromFile("no/such/file"), doctest::Contains("cannot read"), std::runtime_error);
  // Failure messages of the handshake carry no secret bytes either.
  AuthClient c(Secret(kOther), ReplicaId{1}, "prod", counting(1));
  AuthServer s(Secret(kSecret), ReplicaId{2}, "prod", counting(100));
  try {
    c.onReply(s.onHello(c.hello()));
  } catch (const AuthError& e) {
    CHECK(std::string(e.what()).find(kOther) == std::string::npos);
    CHECK(std::string(e.what()).find(kSecret) == std::string::npos);
  }
}

}  // namespace
}  // namespace deltasync::gossip
