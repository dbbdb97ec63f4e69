// Peer authentication: mutual HMAC-SHA256 challenge-response over the cluster secret, as pure
// state machines (the transport in lib/ carries the three messages; wire.capnp documents them).
//
//   client -> server  Hello       {id_c, cluster, nonce_c, version}
//   server -> client  HelloReply  {id_s, nonce_s, proof_s = HMAC(K, "ds-auth-v1 server" | nonce_c |
//                                   nonce_s | id_s | id_c)}
//   client -> server  AuthProof   {proof_c = HMAC(K, "ds-auth-v1 client" | nonce_s | nonce_c |
//                                   id_c | id_s)}
//
// A control client (deltasync ctl; Hello.client) runs the same exchange under its own labels
// ("ds-auth-v1 ctl-server" / "ds-auth-v1 ctl-client") and over the node's client secret when it
// has one: a proof made for one role is worth nothing in the other, and what a control client is
// handed serves the control interface only, never replication (gossip/rpc.h).
//
// Each side proves knowledge of K over a nonce the other side chose fresh for this connection,
// so a recorded exchange cannot be replayed (the server's nonce differs), a proof cannot be
// reflected (the labels differ by role), and both ids are bound into it (a peer authenticates
// as exactly one replica id, the one lib/ then lets it publish dots under). Proofs are compared
// in constant time. The secret is held in the public deltasync::Secret, which never prints its
// bytes.
//
// Errors: AuthError with a message that says what failed and never contains secret material.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <deltasync/secret.h>

#include "gossip/messages.h"

namespace deltasync::gossip {

class AuthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The wire protocol a node speaks; the handshake refuses any other. 2: pushes carry values in the
// compact encoding (wire.capnp Crdt.compact), which version-1 nodes cannot read. 3: compact
// envelopes may be deflated (kind flag 0x80), which version-2 nodes refuse, and compact values
// of several entries are laid out in columns. 4: compact values may carry their context whole
// (header bit F), which version-3 nodes refuse. 5: a deleted object travels as a tombstone
// (Crdt.deleted), which version-4 nodes cannot read. 6: reads that wait for their peers exchange
// SyncRequest / SyncReply, and maps of sets travel (Crdt.orMapOfSets): version-5 nodes read neither.
// 7: maps of counters travel (Crdt.mapOfCounters), which version-6 nodes cannot read.
// 8: every kind has a compact form (header bit 7 extends the kind), and every push travels in
// the compact envelope; the struct push (Envelope.push, Crdt.compact) is refused.
inline constexpr uint32_t kProtocolVersion = 8;

using Secret = deltasync::Secret;

// A source of nonces (lib/: the OS's random generator; tests: a seeded one).
using NonceSource = std::function<Nonce()>;
Nonce randomNonce();  // from the OS (getrandom); throws AuthError if that fails

Proof authProof(const Secret& secret, std::string_view label, const Nonce& first, const Nonce& second,
                ReplicaId a, ReplicaId b);

// Constant-time comparison.
bool proofsEqual(const Proof& a, const Proof& b);

// What both ends of a handshake hold: the secret, their own id, the cluster, a nonce source, and
// (once the other side's proof checked out) the peer's id.
class AuthParty {
 public:
  AuthParty(Secret secret, ReplicaId self, std::string cluster, NonceSource nonces, bool client)
      : secret_(std::move(secret)), self_(self), cluster_(std::move(cluster)), nonces_(std::move(nonces)), client_(client) {}
  // The other side's id, once its proof was verified.
  std::optional<ReplicaId> peer() const { return peer_; }

 protected:
  Secret secret_;
  ReplicaId self_;
  std::string cluster_;
  NonceSource nonces_;
  std::optional<Nonce> nonce_;  // ours, for this connection
  std::optional<ReplicaId> peer_;
  bool client_;  // the handshake of a control client
};

class AuthClient : public AuthParty {
 public:
  // client: authenticate as a control client (Hello.client), not as a replica.
  AuthClient(Secret secret, ReplicaId self, std::string cluster, NonceSource nonces = randomNonce, bool client = false)
      : AuthParty(std::move(secret), self, std::move(cluster), std::move(nonces), client) {}
  HelloMsg hello();
  // Verifies the server's proof; returns our proof. Throws AuthError on a bad proof or when
  // called out of order.
  AuthProofMsg onReply(const HelloReplyMsg& reply);
};

class AuthServer : public AuthParty {
 public:
  // client: this server expects a control client's hello (the Gatekeeper picks the secret and
  // this from Hello.client).
  AuthServer(Secret secret, ReplicaId self, std::string cluster, NonceSource nonces = randomNonce, bool client = false)
      : AuthParty(std::move(secret), self, std::move(cluster), std::move(nonces), client) {}
  // Throws AuthError for another cluster, an unsupported version, our own id, a role other than
  // expected, or out of order.
  HelloReplyMsg onHello(const HelloMsg& hello);
  // Verifies the client's proof; returns the client's authenticated id. AuthError otherwise.
  ReplicaId onProof(const AuthProofMsg& proof);

 private:
  std::optional<HelloMsg> hello_;
};

}  // namespace deltasync::gossip
