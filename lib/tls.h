// Mutual TLS between nodes (kj-tls), the alternative to the shared-secret handshake.
//
// Every node holds a certificate signed by the cluster's CA, with
//   subject CN = "replica-<id>"    (the node's replica id, decimal), and
//   a DNS subjectAltName equal to the cluster name (NodeConfig::cluster, default "deltasync").
// Both ends verify each other's chain against the CA only (never the system trust store), the
// client also checks the cluster name, and each learns the other's replica id from its CN. The
// server then hands the client a Replicator bound to that id (Gatekeeper.attach): an id is proved
// by a key only its node holds, not by a secret every member shares.
//
// Errors: files that cannot be read or parsed throw std::runtime_error naming the file; a peer
// whose certificate does not verify, or whose CN is not "replica-<nonzero id>", fails its
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

// A verified TLS stream and the replica id its peer's certificate names.
struct TlsStream {
  kj::Own<kj::AsyncIoStream> stream;
  crdt::ReplicaId peer;
};

class Tls {
 public:
  Tls(const TlsFiles& files, std::string cluster, kj::Timer& timer, uint64_t handshakeTimeoutMs);
  ~Tls();

  kj::Promise<TlsStream> accept(kj::Own<kj::AsyncIoStream> stream);
  kj::Promise<TlsStream> connect(kj::Own<kj::AsyncIoStream> stream);

  // "replica-<id>" -> id; std::invalid_argument for anything else (or id 0).
  static crdt::ReplicaId idOf(const std::string& commonName);
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
