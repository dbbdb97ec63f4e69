#include "gossip/rpc.h"

#include <capnp/message.h>

#include <optional>
#include <utility>

#include "gossip/envelope-wire.h"
#include "gossip/errors.h"

namespace deltasync::gossip {

namespace {

kj::Exception failed(const std::string& what) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(what.data(), what.size()));
}

std::optional<ReplicaId> senderOf(const Message& m) {
  return std::visit(
      [](const auto& x) -> std::optional<ReplicaId> {
        if constexpr (requires { x.sender; }) {
          return x.sender;
        } else {
          return std::nullopt;
        }
      },
      m);
}

}  // namespace

// Delivers validated envelopes from one authenticated peer.
class ReplicatorImpl final : public wire::Replicator::Server {
 public:
  // controlOnly: a control client's, which may not replicate.
  ReplicatorImpl(std::shared_ptr<Gatekeeper::Shared> shared, std::shared_ptr<GatekeeperStats> stats, ReplicaId peer,
                 bool controlOnly = false)
      : shared_(std::move(shared)), stats_(std::move(stats)), peer_(peer), controlOnly_(controlOnly) {}

 protected:
  kj::Promise<void> deliver(DeliverContext context) override {
    if (controlOnly_) return reject("a control client cannot replicate: it authenticated for the control interface only");
    Message m;
    try {
      m = acceptEnvelope(context.getParams().getEnvelope(), shared_->limits, peer_);
    } catch (const std::exception& e) {
      return reject(e.what());
    }
    try {
      shared_->deliver(peer_, std::move(m));
    } catch (const std::exception& e) {
      return reject(std::string("rejected: ") + e.what());
    }
    if (shared_->options.replies) {
      std::vector<Message> back = shared_->options.replies(peer_);
      if (!back.empty()) {
        auto out = context.getResults().initReplies(static_cast<unsigned>(back.size()));
        for (size_t i = 0; i < back.size(); ++i) encodeEnvelope(back[i], out[static_cast<unsigned>(i)]);
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> control(ControlContext context) override {
    if (!shared_->options.control) return failed("this node serves no control interface");
    context.getResults().setControl(shared_->options.control(peer_));
    return kj::READY_NOW;
  }

 private:
  kj::Promise<void> reject(const std::string& why) {
    ++stats_->envelopesRejected;
    return failed(why);
  }

  std::shared_ptr<Gatekeeper::Shared> shared_;
  std::shared_ptr<GatekeeperStats> stats_;
  ReplicaId peer_;
  bool controlOnly_;
};

// The second step of one connection's handshake.
class HandshakeImpl final : public wire::Handshake::Server {
 public:
  HandshakeImpl(std::shared_ptr<Gatekeeper::Shared> shared, std::shared_ptr<GatekeeperStats> stats,
                std::unique_ptr<AuthServer> auth, bool client)
      : shared_(std::move(shared)), stats_(std::move(stats)), auth_(std::move(auth)), client_(client) {}

 protected:
  kj::Promise<void> prove(ProveContext context) override {
    ReplicaId peer;
    try {
      peer = auth_->onProof(decodeAuthProof(context.getParams().getProof(), shared_->limits));
    } catch (const std::exception&) {
      ++stats_->proofRejected;
      // One attempt per handshake: a failed proof ends it (a new hello gets a new nonce).
      return failed("authentication failed");
    }
    if (shared_->options.vetPeer && !client_) {  // a control client publishes nothing
      if (std::string why = shared_->options.vetPeer(peer); !why.empty()) {
        ++stats_->peerRefused;
        return failed("refused: " + why);
      }
    }
    ++stats_->authenticated;
    if (shared_->options.onAuthenticated) shared_->options.onAuthenticated(peer);
    context.getResults().setReplicator(kj::heap<ReplicatorImpl>(shared_, stats_, peer, client_));
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<Gatekeeper::Shared> shared_;
  std::shared_ptr<GatekeeperStats> stats_;
  std::unique_ptr<AuthServer> auth_;
  bool client_;
};

Gatekeeper::Gatekeeper(std::optional<Secret> secret, ReplicaId self, std::string cluster, Limits limits, DeliverFn deliver,
                       GatekeeperOptions options)
    : stats_(options.stats ? options.stats : std::make_shared<GatekeeperStats>()) {
  shared_ = std::make_shared<Shared>(
      Shared{std::move(secret), self, std::move(cluster), limits, std::move(deliver), std::move(options)});
}

kj::Promise<void> Gatekeeper::attach(AttachContext context) {
  if (shared_->options.tlsClient) {  // a control client's certificate: control only
    ++stats_->authenticated;
    if (shared_->options.onAuthenticated) shared_->options.onAuthenticated(ReplicaId{});
    context.getResults().setReplicator(kj::heap<ReplicatorImpl>(shared_, stats_, ReplicaId{}, true));
    return kj::READY_NOW;
  }
  const auto& peer = shared_->options.tlsPeer;
  if (!peer) return failed("attach needs a connection under mutual TLS with a client certificate");
  if (*peer == shared_->self) return failed("the client's certificate names this node's own id");
  ++stats_->authenticated;
  if (shared_->options.onAuthenticated) shared_->options.onAuthenticated(*peer);
  context.getResults().setReplicator(kj::heap<ReplicatorImpl>(shared_, stats_, *peer));
  return kj::READY_NOW;
}

kj::Promise<void> Gatekeeper::hello(HelloContext context) {
  HelloMsg hello;
  try {
    hello = decodeHello(context.getParams().getHello(), shared_->limits);
  } catch (const std::exception& e) {
    ++stats_->helloRejected;
    return failed(e.what());
  }
  // A control client proves the client secret if there is one, else the cluster secret.
  const std::optional<Secret>& secret =
      hello.client && shared_->options.clientSecret ? shared_->options.clientSecret : shared_->secret;
  if (!secret) {
    ++stats_->helloRejected;
    return failed("this node authenticates peers by TLS certificates only");
  }
  auto auth = std::make_unique<AuthServer>(*secret, shared_->self, shared_->cluster, shared_->options.nonces, hello.client);
  HelloReplyMsg reply;
  try {
    reply = auth->onHello(hello);
  } catch (const std::exception& e) {
    ++stats_->helloRejected;
    return failed(e.what());  // wrong cluster/version or a malformed hello: no secret involved
  }
  auto results = context.getResults();
  encodeHelloReply(reply, results.initReply());
  results.setHandshake(kj::heap<HandshakeImpl>(shared_, stats_, std::move(auth), hello.client));
  return kj::READY_NOW;
}

kj::Promise<Authenticated> authenticate(wire::Gatekeeper::Client gatekeeper, Secret secret, ReplicaId self,
                                        std::string cluster, NonceSource nonces, bool client) {
  auto auth = kj::heap<AuthClient>(std::move(secret), self, std::move(cluster), std::move(nonces), client);
  auto request = gatekeeper.helloRequest();
  encodeHello(auth->hello(), request.initHello());
  return request.send().then([auth = kj::mv(auth)](capnp::Response<wire::Gatekeeper::HelloResults>&& response) mutable {
    // Throws (and so fails the promise) when the server cannot prove the secret.
    AuthProofMsg proof = auth->onReply(decodeHelloReply(response.getReply(), Limits{}));
    ReplicaId peer = *auth->peer();
    auto prove = response.getHandshake().proveRequest();
    encodeAuthProof(proof, prove.initProof());
    return prove.send().then([peer](capnp::Response<wire::Handshake::ProveResults>&& r) {
      return Authenticated{r.getReplicator(), peer};
    });
  });
}

kj::Promise<Authenticated> attach(wire::Gatekeeper::Client gatekeeper, ReplicaId server) {
  return gatekeeper.attachRequest().send().then([server](capnp::Response<wire::Gatekeeper::AttachResults>&& r) {
    return Authenticated{r.getReplicator(), server};
  });
}

Message acceptEnvelope(wire::Envelope::Reader envelope, const Limits& limits, ReplicaId from) {
  Message m;
  try {
    m = decodeEnvelope(envelope, limits);
  } catch (const DecodeError& e) {
    throw DecodeError(std::string("invalid envelope: ") + e.what());
  } catch (const kj::Exception& e) {
    throw DecodeError(std::string("invalid envelope: ") + e.getDescription().cStr());
  }
  if (std::holds_alternative<HelloMsg>(m) || std::holds_alternative<HelloReplyMsg>(m) ||
      std::holds_alternative<AuthProofMsg>(m)) {
    throw ProtocolError("handshake messages are not delivered after authentication");
  }
  if (auto s = senderOf(m); s && *s != from) {
    throw ProtocolError("envelope names sender " + std::to_string(s->value) + ", the peer authenticated as " +
                        std::to_string(from.value));
  }
  return m;
}

kj::Promise<void> deliver(wire::Replicator::Client& replicator, const Message& message) {
  auto request = replicator.deliverRequest();
  encodeEnvelope(message, request.initEnvelope());
  return request.send().ignoreResult();
}

capnp::ReaderOptions RpcConnection::options(const Limits& limits) {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = limits.traversalLimitWords;  // also bounds each message's size
  o.nestingLimit = limits.nestingLimit;
  return o;
}

RpcConnection::RpcConnection(kj::AsyncIoStream& stream, capnp::Capability::Client bootstrap, const Limits& limits)
    : network_(stream, capnp::rpc::twoparty::Side::SERVER, options(limits)),
      rpc_(capnp::makeRpcServer(network_, kj::mv(bootstrap))) {}

RpcConnection::RpcConnection(kj::AsyncIoStream& stream, const Limits& limits)
    : network_(stream, capnp::rpc::twoparty::Side::CLIENT, options(limits)), rpc_(capnp::makeRpcClient(network_)) {}

wire::Gatekeeper::Client RpcConnection::gatekeeper() {
  capnp::MallocMessageBuilder message(8);
  auto vat = message.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
  return rpc_.bootstrap(vat).castAs<wire::Gatekeeper>();
}

}  // namespace deltasync::gossip
