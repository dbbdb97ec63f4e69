// The Cap'n Proto RPC transport: authenticated peer connections that carry Envelopes.
//
// Server side: a Gatekeeper is a node's bootstrap capability. hello() runs the server half of
// the HMAC handshake (gossip/auth.h) and hands out a Handshake for that connection; a correct
// prove() returns a Replicator bound to the client's authenticated id. Replicator::deliver
// validates the Envelope (gossip/envelope-wire.h), checks that its sender is that id, and passes
// the message to the node. An invalid envelope fails that call only, with a message naming the
// problem; the connection and every other peer are unaffected. Authentication failures are
// counted (and the caller of a failed prove() learns nothing but "authentication failed").
//
// Return path: deliver()'s result may carry replies, the messages the receiver holds for the
// caller while it cannot reach the caller itself (GatekeeperOptions::replies): so a node that
// can be reached but cannot reach (a one-way network, a firewall or NAT that lets connections in
// one way only) still answers every peer that talks to it. The caller checks each reply with
// acceptEnvelope(), the very rule deliver() applies, as sent by the peer it authenticated.
//
// Client side: authenticate() runs the client half over a Gatekeeper capability and yields the
// Replicator to deliver() to; it rejects a server that cannot prove the secret.
//
// Connection limits: RpcConnection applies gossip/limits.h to everything Cap'n Proto reads from
// the stream (traversal limit, which also bounds a message's size, and nesting limit) before
// any of our code sees it. A message over the limit makes Cap'n Proto drop that connection (the
// peer has to reconnect); other connections are unaffected.
//
// Include only in transport code: this header pulls in capnp RPC.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>

#include "gossip/auth.h"
#include "gossip/limits.h"
#include "gossip/messages.h"
#include "gossip/wire.capnp.h"

namespace deltasync::gossip {

// What a node does with a validated message from an authenticated peer. May throw (e.g. the
// engine's ProtocolError): the peer's deliver() call then fails with that message.
using DeliverFn = std::function<void(ReplicaId from, Message message)>;

// The administration capability (wire.capnp's Control) handed to an authenticated peer that asks
// for it (Replicator.control); empty: the node serves none.
using ControlFn = std::function<wire::Control::Client(ReplicaId peer)>;

struct GatekeeperStats {
  uint64_t helloRejected = 0;   // wrong cluster or version, a claim of our own id
  uint64_t proofRejected = 0;   // wrong secret or a replay
  uint64_t peerRefused = 0;     // a valid proof for an id vetPeer refused
  uint64_t authenticated = 0;
  uint64_t envelopesRejected = 0;
};

// Optional parts of a Gatekeeper.
struct GatekeeperOptions {
  NonceSource nonces = randomNonce;
  ControlFn control;  // empty: no administration interface
  // Counts shared with other gatekeepers (lib/ makes one per inbound connection); null: its own.
  std::shared_ptr<GatekeeperStats> stats;
  // Asked once a client has proved it holds the secret (not under TLS, where the certificate
  // proves the id): "" admits it as `peer`, anything else refuses the handshake with that reason
  // (counted in peerRefused). lib/ refuses the id of a live member claimed from another host.
  std::function<std::string(ReplicaId peer)> vetPeer;
  // Called when a client authenticated (lib/ closes connections that never do).
  std::function<void(ReplicaId peer)> onAuthenticated;
  // The secret control clients (Hello.client: deltasync ctl) prove instead of the cluster secret;
  // none: they prove the cluster secret. Either way they get the control interface only.
  std::optional<Secret> clientSecret;
  // Set when the connection runs under mutual TLS and the client's certificate proved this id:
  // attach() then hands out its Replicator (no secret needed).
  std::optional<ReplicaId> tlsPeer;
  // Set when the connection runs under mutual TLS and the client's certificate is a control
  // client's (lib/tls.h): attach() hands out a Replicator that serves control() only.
  bool tlsClient = false;
  // Asked after each message delivered from `peer`: what to send back on this connection (the
  // return path above); empty: nothing.
  std::function<std::vector<Message>(ReplicaId peer)> replies;
};

// The rule for an envelope from the authenticated peer `from` (deliver(), and the replies that
// come back from a deliver()): it decodes within `limits`, is no handshake message, and names
// `from` as its sender. Throws DecodeError or ProtocolError saying what was wrong.
Message acceptEnvelope(wire::Envelope::Reader envelope, const Limits& limits, ReplicaId from);

class Gatekeeper final : public wire::Gatekeeper::Server {
 public:
  // Without a secret, hello() is refused (a node that authenticates by TLS certificates only).
  Gatekeeper(std::optional<Secret> secret, ReplicaId self, std::string cluster, Limits limits, DeliverFn deliver,
             GatekeeperOptions options = {});

  const GatekeeperStats& stats() const { return *stats_; }

 protected:
  kj::Promise<void> hello(HelloContext context) override;
  kj::Promise<void> attach(AttachContext context) override;

 private:
  struct Shared {
    std::optional<Secret> secret;
    ReplicaId self;
    std::string cluster;
    Limits limits;
    DeliverFn deliver;
    GatekeeperOptions options;
  };
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<GatekeeperStats> stats_;

  friend class HandshakeImpl;
  friend class ReplicatorImpl;
};

// Runs the client half of the handshake; the promise yields the peer's Replicator and the id it
// proved, or fails with AuthError-derived text when the server's proof is wrong.
struct Authenticated {
  wire::Replicator::Client replicator;
  ReplicaId peer;
};
// client: as a control client (gossip/auth.h), whose Replicator serves control() only.
kj::Promise<Authenticated> authenticate(wire::Gatekeeper::Client gatekeeper, Secret secret, ReplicaId self,
                                        std::string cluster, NonceSource nonces = randomNonce, bool client = false);

// The client side of attach() on a mutual-TLS connection whose server certificate proved
// `server` (lib/tls.h).
kj::Promise<Authenticated> attach(wire::Gatekeeper::Client gatekeeper, ReplicaId server);

// Sends one message; the promise fails if the peer rejected it. Its replies (the return path) are
// not read: lib/runtime reads them from the response itself.
kj::Promise<void> deliver(wire::Replicator::Client& replicator, const Message& message);

// One two-party RPC connection over a stream, with our limits applied to what it reads.
class RpcConnection {
 public:
  // Server side: `bootstrap` is what the other end gets (our Gatekeeper).
  RpcConnection(kj::AsyncIoStream& stream, capnp::Capability::Client bootstrap, const Limits& limits);
  // Client side.
  RpcConnection(kj::AsyncIoStream& stream, const Limits& limits);

  wire::Gatekeeper::Client gatekeeper();  // the other end's bootstrap
  kj::Promise<void> onDisconnect() { return network_.onDisconnect(); }

 private:
  static capnp::ReaderOptions options(const Limits& limits);
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
};

}  // namespace deltasync::gossip
