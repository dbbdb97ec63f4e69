// Mutual TLS between runtimes (lib/tls.h), in process over pipes: certificates from
// tests/lib/tls (test-only keys, signed by a test CA, valid for a century). Certified replicas
// converge; a certificate from another CA, one that names no replica, and a client without TLS
// are all refused, and nothing of theirs is applied.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "tests/lib/pipe-cluster.h"

#ifndef DELTASYNC_TLS_DIR
#error "DELTASYNC_TLS_DIR (tests/lib/tls) must be defined by the build"
#endif

namespace deltasync {
namespace {

using testing::Cluster;

const std::string kDir = DELTASYNC_TLS_DIR;

TlsFiles files(const std::string& name, const std::string& ca = "cluster-ca") {
  return TlsFiles{kDir + "/" + name + ".pem", kDir + "/" + name + "-key.pem", kDir + "/" + ca + ".pem"};
}

// Every runtime of the cluster uses the certificate file that `certOf(id)` names.
void useTls(Cluster& c, std::function<TlsFiles(uint64_t)> certOf) {
  c.tune = [&c, certOf](RuntimeConfig& rc) {
    rc.tls = std::make_shared<Tls>(certOf(rc.id.value), "deltasync", c.timer, rc.handshakeTimeoutMs);
  };
}

TEST_CASE("tls: replica ids come from certificate names") {
  CHECK(Tls::idOf("replica-42") == ReplicaId{42});
  CHECK(Tls::idOf("replica-18446744073709551615") == ReplicaId{UINT64_MAX});
  CHECK_THROWS_AS(Tls::idOf("replica-0"), std::invalid_argument);
  CHECK_THROWS_AS(Tls::idOf("replica-18446744073709551616"), std::invalid_argument);
  CHECK_THROWS_AS(Tls::idOf("replica-"), std::invalid_argument);
  CHECK_THROWS_AS(Tls::idOf("replica-4x"), std::invalid_argument);
  CHECK_THROWS_AS(Tls::idOf("someone"), std::invalid_argument);
  CHECK(Tls::idOfCertificateFile(kDir + "/replica-3.pem") == ReplicaId{3});
  CHECK_THROWS_WITH_AS(Tls::idOfCertificateFile(kDir + "/not-a-replica.pem"), doctest::Contains("replica-<id>"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(Tls::idOfCertificateFile(kDir + "/missing.pem"), doctest::Contains("cannot read"),
                       std::runtime_error);
  kj::EventLoop loop;
  kj::WaitScope ws(loop);
  kj::TimerImpl timer(kj::origin<kj::TimePoint>());
  CHECK_THROWS_WITH_AS(Tls(TlsFiles{kDir + "/replica-1.pem", kDir + "/replica-2-key.pem", kDir + "/cluster-ca.pem"},
                           "deltasync", timer, 5000),
                       doctest::Contains("does the key match"), std::runtime_error);
}

TEST_CASE("tls: certified replicas join and converge without a shared secret") {
  Cluster c;
  useTls(c, [](uint64_t id) { return files("replica-" + std::to_string(id)); });
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(3, "c", {"a"});
  REQUIRE(c.runUntil([&] { return c.liveMembers("a") == 3 && c.liveMembers("b") == 3 && c.liveMembers("c") == 3; }));
  objects::add(c.at("b"), "s", "over-tls");
  objects::increment(c.at("c"), "n", 4);
  REQUIRE(c.runUntil([&] {
    return c.render("a", "s") == std::vector<std::string>{"over-tls"} && c.render("a", "n") == std::vector<std::string>{"4"};
  }, 5000));
  CHECK(c.at("a").gatekeeperStats().authenticated >= 2);
  CHECK(c.at("a").gatekeeperStats().helloRejected == 0);
}

TEST_CASE("tls: another CA's certificate and a certificate naming no replica are refused") {
  Cluster c;
  useTls(c, [](uint64_t id) {
    if (id == 9) return files("rogue-9", "cluster-ca");   // trusts our CA, but its own cert is rogue
    if (id == 7) return files("not-a-replica");           // our CA, but CN "someone"
    return files("replica-" + std::to_string(id));
  });
  c.start(1, "a", {});
  c.start(2, "b", {"a"});
  c.start(9, "rogue", {"a", "b"});
  c.start(7, "nobody", {"a", "b"});
  objects::add(c.at("rogue"), "s", "rogue");
  objects::add(c.at("nobody"), "s", "nobody");
  c.run(3000);
  CHECK(c.liveMembers("a") == 2);
  CHECK(c.at("a").membership().member(ReplicaId{9}) == nullptr);
  CHECK(c.at("a").membership().member(ReplicaId{7}) == nullptr);
  CHECK(c.at("a").store().find("s") == nullptr);
  CHECK(c.at("a").gatekeeperStats().proofRejected >= 1);  // TLS handshakes refused, counted
  objects::add(c.at("b"), "s", "honest");
  CHECK(c.runUntil([&] { return c.render("a", "s") == std::vector<std::string>{"honest"}; }, 3000));
}

TEST_CASE("tls: a control client's certificate opens the control interface only") {
  Cluster c;
  useTls(c, [](uint64_t id) { return files("replica-" + std::to_string(id)); });
  Runtime& a = c.start(1, "a", {});
  CHECK(Tls::isClientName("client-admin"));
  CHECK(Tls::isClientName("client-ops.eu_1"));
  CHECK_FALSE(Tls::isClientName("client-"));
  CHECK_FALSE(Tls::isClientName("client-a b"));
  CHECK_FALSE(Tls::isClientName("client-" + std::string(65, 'x')));
  CHECK_FALSE(Tls::isClientName("replica-3"));
  // A node will not run under a client's certificate: it names no replica.
  CHECK_THROWS_WITH_AS(Tls::idOfCertificateFile(kDir + "/admin.pem"), doctest::Contains("replica-<id>"),
                       std::runtime_error);

  auto connectAs = [&](const std::string& cert) {
    auto pipe = kj::newTwoWayPipe();
    a.accept(kj::mv(pipe.ends[1]));
    auto tls = std::make_shared<Tls>(files(cert), "deltasync", c.timer, 5000);
    auto secured = tls->connect(kj::mv(pipe.ends[0])).eagerlyEvaluate(nullptr);
    REQUIRE(c.runUntil([&] { return secured.poll(c.ws); }, 5000));
    TlsStream s = secured.wait(c.ws);
    CHECK(s.peer == ReplicaId{1});  // the server is a replica, and says which
    auto conn = std::make_shared<gossip::RpcConnection>(*s.stream, gossip::Limits{});
    auto attached = gossip::attach(conn->gatekeeper(), s.peer).eagerlyEvaluate(nullptr);
    REQUIRE(c.runUntil([&] { return attached.poll(c.ws); }, 5000));
    return std::make_tuple(tls, kj::mv(s.stream), conn, attached.wait(c.ws));
  };
  auto [tls, stream, conn, auth] = connectAs("admin");
  // The call reaches the node's control hook (these runtimes have none: that is its answer).
  auto control = auth.replicator.controlRequest().send().eagerlyEvaluate(nullptr);
  c.run(100);
  CHECK_THROWS_WITH_AS(control.wait(c.ws), doctest::Contains("this node serves no control interface"), kj::Exception);
  crdt::ORSet<std::string> set;
  auto push = gossip::deliver(auth.replicator, gossip::DeltaPushMsg{ReplicaId{5}, 0, 0, 1,
                                                                    {{"s", gossip::Value(set.add(ReplicaId{5}, "x"))}}})
                  .eagerlyEvaluate(nullptr);
  c.run(100);
  CHECK_THROWS_WITH_AS(push.wait(c.ws), doctest::Contains("a control client cannot replicate"), kj::Exception);
  CHECK(a.store().find("s") == nullptr);
  CHECK(a.gatekeeperStats().authenticated == 1);
}

TEST_CASE("tls: a client without TLS gets nothing from a TLS node") {
  Cluster c;
  useTls(c, [](uint64_t id) { return files("replica-" + std::to_string(id)); });
  Runtime& a = c.start(1, "a", {});
  auto pipe = kj::newTwoWayPipe();
  a.accept(kj::mv(pipe.ends[1]));
  gossip::RpcConnection plain(*pipe.ends[0], gossip::Limits{});
  auto attempt = gossip::authenticate(plain.gatekeeper(), gossip::Secret(testing::kSecret), ReplicaId{5}, "deltasync");
  bool failed = false;
  auto done = attempt.then([](gossip::Authenticated) {}, [&failed](kj::Exception&&) { failed = true; })
                  .eagerlyEvaluate(nullptr);
  c.run(6000);  // the server's TLS handshake fails on the plain bytes (or times out)
  CHECK(failed);
  CHECK(a.gatekeeperStats().authenticated == 0);
  CHECK(a.inboundConnections() == 0);
}

}  // namespace
}  // namespace deltasync
