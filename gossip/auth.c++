#include "gossip/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace deltasync::gossip {

namespace {

void appendId(std::string& s, ReplicaId id) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((id.value >> (8 * i)) & 0xff));  // little-endian
}

}  // namespace

Nonce randomNonce() {
  Nonce n;
  size_t got = 0;
  while (got < n.size()) {
    ssize_t r = getrandom(n.data() + got, n.size() - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw AuthError(std::string("getrandom failed: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return n;
}

Proof authProof(const Secret& secret, std::string_view label, const Nonce& first, const Nonce& second,
                ReplicaId a, ReplicaId b) {
  std::string msg(label);
  msg.append(reinterpret_cast<const char*>(first.data()), first.size());
  msg.append(reinterpret_cast<const char*>(second.data()), second.size());
  appendId(msg, a);
  appendId(msg, b);
  Proof out;
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.bytes().data(), static_cast<int>(secret.bytes().size()),
           reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    throw AuthError("HMAC-SHA256 failed");
  }
  return out;
}

bool proofsEqual(const Proof& a, const Proof& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

std::string_view serverLabel(bool client) { return client ? "ds-auth-v1 ctl-server" : "ds-auth-v1 server"; }
std::string_view clientLabel(bool client) { return client ? "ds-auth-v1 ctl-client" : "ds-auth-v1 client"; }

HelloMsg AuthClient::hello() {
  if (nonce_) throw AuthError("auth: hello sent twice on one connection");
  nonce_ = nonces_();
  return HelloMsg{self_, cluster_, *nonce_, kProtocolVersion, client_};
}

AuthProofMsg AuthClient::onReply(const HelloReplyMsg& reply) {
  if (!nonce_ || peer_) throw AuthError("auth: unexpected hello reply");
  if (reply.replica == self_) throw AuthError("auth: the server claims our own replica id");
  Proof expected = authProof(secret_, serverLabel(client_), *nonce_, reply.nonce, reply.replica, self_);
  if (!proofsEqual(expected, reply.proof)) {
    throw AuthError("auth: the server's proof is wrong (different cluster secret?)");
  }
  peer_ = reply.replica;
  return AuthProofMsg{authProof(secret_, clientLabel(client_), reply.nonce, *nonce_, self_, reply.replica)};
}

HelloReplyMsg AuthServer::onHello(const HelloMsg& hello) {
  if (hello_) throw AuthError("auth: hello received twice on one connection");
  if (hello.protocolVersion != kProtocolVersion) {
    throw AuthError("auth: unsupported protocol version " + std::to_string(hello.protocolVersion));
  }
  if (hello.cluster != cluster_) throw AuthError("auth: peer belongs to another cluster");
  if (hello.replica == self_) throw AuthError("auth: peer claims our own replica id");
  if (hello.client != client_) throw AuthError("auth: a control client's hello where a replica's was expected, or the reverse");
  hello_ = hello;
  nonce_ = nonces_();
  return HelloReplyMsg{self_, *nonce_, authProof(secret_, serverLabel(client_), hello.nonce, *nonce_, self_, hello.replica)};
}

ReplicaId AuthServer::onProof(const AuthProofMsg& proof) {
  if (!hello_ || peer_) throw AuthError("auth: unexpected proof");
  Proof expected = authProof(secret_, clientLabel(client_), *nonce_, hello_->nonce, hello_->replica, self_);
  if (!proofsEqual(expected, proof.proof)) {
    throw AuthError("auth: the peer's proof is wrong (different cluster secret, or a replay)");
  }
  peer_ = hello_->replica;
  return *peer_;
}

}  // namespace deltasync::gossip

// The public value type (include/deltasync/secret.h) lives here, next to its only user.
namespace deltasync {

Secret::Secret(std::string bytes) : bytes_(std::move(bytes)) {
  if (bytes_.size() < kMinBytes) {
    throw std::invalid_argument("cluster secret too short: " + std::to_string(bytes_.size()) +
                                " bytes, at least " + std::to_string(kMinBytes) + " required");
  }
}

Secret Secret::fromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the secret file '" + path + "': " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  try {
    return Secret(std::move(s));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("secret file '" + path + "': " + e.what());
  }
}

}  // namespace deltasync
