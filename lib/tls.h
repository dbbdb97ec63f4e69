// Mutual TLS between nodes (kj-tls), the alternative to the shared-secret handshake.
//
// Every certificate is signed by the cluster's CA and has a DNS subjectAltName equal to the
// cluster name (NodeConfig::cluster, default "deltasync"). Its subject CN says its role:
//   "replica-<id>"    a node (the replica id, decimal): replication and control;
//   "client-<name>"   a control client (deltasync ctl; name: 1-64 of [A-Za-z0-9._-]): the control
//                     interface only, never replication (the trust model's "clients are not
//                     replicas", as a client secret gives it in the shared-secret mode).
// Both ends verify each other's chain against the CA only (never the system trust store), the
// client also checks the cluster name, and each learns the other's role (and a replica's id) from
// its CN. A server must be a replica. The server hands a replica a Replicator bound to its id, a
// client one that serves control() only (Gatekeeper.attach): an id is proved by a key only its
// node holds, not by a secret every member shares.
//
// Errors: files that cannot be read or parsed throw std::runtime_error naming the file; a peer
// whose certificate does not verify, or whose CN names no role it may have here, fails its
// connection (kj exception), nothing else.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include "crdt/dot.h"
#include <deltasync/node.h>

namespace deltasync {

// A verified TLS stream and the role its peer's certificate names: a replica (peer: its id) or,
// on an accepted connection only, a control client (client: true, peer 0).
struct TlsStream {
  kj::Own<kj::AsyncIoStream> stream;
  crdt::ReplicaId peer;
  bool client = false;
};

class Tls {
 public:
  Tls(const TlsFiles& files, std::string cluster, kj::Timer& timer, uint64_t handshakeTimeoutMs);
  ~Tls();

  kj::Promise<TlsStream> accept(kj::Own<kj::AsyncIoStream> stream);
  kj::Promise<TlsStream> connect(kj::Own<kj::AsyncIoStream> stream);

  // "replica-<id>" -> id; std::invalid_argument for anything else (or id 0).
  static crdt::ReplicaId idOf(const std::string& commonName);
  // Whether commonName is a control client's: "client-<name>" as above.
  static bool isClientName(const std::string& commonName);
  // The replica id a PEM certificate file names (its subject CN); std::runtime_error naming the
  // file when it cannot be read or names no replica.
  static crdt::ReplicaId idOfCertificateFile(const std::string& path);

 private:
  std::string cluster_;
  kj::TlsKeypair keypair_;
  kj::TlsCertificate ca_;
  kj::Own<kj::TlsContext> context_;  // refers to keypair_ and ca_
};

}  // namespace deltasync
