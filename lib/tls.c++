#include "lib/tls.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <kj/debug.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace deltasync {

namespace {

std::string readFile(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot read the TLS ") + what + " file '" + path + "'");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

template <typename T>
T parse(const std::string& path, const char* what) {
  std::string pem = readFile(path, what);
  try {
    return T(kj::StringPtr(pem.c_str()));
  } catch (const kj::Exception& e) {
    throw std::runtime_error(std::string("the TLS ") + what + " file '" + path + "' is not valid PEM: " +
                             e.getDescription().cStr());
  }
}

// clients: whether a control client's certificate is accepted (the server side) or only a
// replica's (the client side: a server is always a node).
TlsStream verified(kj::AuthenticatedStream s, bool clients) {
  auto* identity = dynamic_cast<kj::TlsPeerIdentity*>(s.peerIdentity.get());
  if (identity == nullptr || !identity->hasCertificate()) {
    KJ_FAIL_REQUIRE("the peer presented no certificate");
  }
  std::string cn = identity->getCommonName().cStr();
  if (clients && Tls::isClientName(cn)) return TlsStream{kj::mv(s.stream), crdt::ReplicaId{}, true};
  crdt::ReplicaId id;
  try {
    id = Tls::idOf(cn);
  } catch (const std::invalid_argument&) {
    if (clients) KJ_FAIL_REQUIRE("the peer's certificate names neither a replica nor a control client", cn);
    KJ_FAIL_REQUIRE("the server's certificate does not name a replica", cn);
  }
  return TlsStream{kj::mv(s.stream), id};
}

// OpenSSL: does the private key belong to the (first) certificate?
bool keyMatches(const std::string& certPem, const std::string& keyPem) {
  BIO* cb = BIO_new_mem_buf(certPem.data(), static_cast<int>(certPem.size()));
  BIO* kb = BIO_new_mem_buf(keyPem.data(), static_cast<int>(keyPem.size()));
  X509* cert = cb ? PEM_read_bio_X509(cb, nullptr, nullptr, nullptr) : nullptr;
  EVP_PKEY* key = kb ? PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr) : nullptr;
  const bool ok = cert != nullptr && key != nullptr && X509_check_private_key(cert, key) == 1;
  if (key) EVP_PKEY_free(key);
  if (cert) X509_free(cert);
  if (kb) BIO_free(kb);
  if (cb) BIO_free(cb);
  return ok;
}

}  // namespace

Tls::Tls(const TlsFiles& files, std::string cluster, kj::Timer& timer, uint64_t handshakeTimeoutMs)
    : cluster_(std::move(cluster)),
      keypair_{parse<kj::TlsPrivateKey>(files.privateKey, "private key"),
               parse<kj::TlsCertificate>(files.certificate, "certificate")},
      ca_(parse<kj::TlsCertificate>(files.ca, "CA certificate")) {
  if (!keyMatches(readFile(files.certificate, "certificate"), readFile(files.privateKey, "private key"))) {
    throw std::runtime_error("TLS setup failed: the private key '" + files.privateKey +
                             "' does not match the certificate '" + files.certificate + "' (does the key match?)");
  }
  kj::TlsContext::Options options;
  options.useSystemTrustStore = false;
  options.verifyClients = true;
  options.trustedCertificates = kj::arrayPtr(&ca_, 1);
  options.defaultKeypair = keypair_;
  options.timer = timer;
  options.acceptTimeout = handshakeTimeoutMs * kj::MILLISECONDS;
  try {
    context_ = kj::heap<kj::TlsContext>(kj::mv(options));
  } catch (const kj::Exception& e) {
    throw std::runtime_error(std::string("TLS setup failed (does the key match the certificate?): ") +
                             e.getDescription().cStr());
  }
}

Tls::~Tls() = default;

crdt::ReplicaId Tls::idOf(const std::string& commonName) {
  const std::string prefix = "replica-";
  if (commonName.rfind(prefix, 0) != 0 || commonName.size() == prefix.size() || commonName.size() > prefix.size() + 20) {
    throw std::invalid_argument("not a replica name: '" + commonName + "'");
  }
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < commonName.size(); ++i) {
    const char c = commonName[i];
    if (c < '0' || c > '9') throw std::invalid_argument("not a replica name: '" + commonName + "'");
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) throw std::invalid_argument("replica id out of range: '" + commonName + "'");
    v = v * 10 + d;
  }
  if (v == 0) throw std::invalid_argument("replica id 0 in '" + commonName + "'");
  return crdt::ReplicaId{v};
}

bool Tls::isClientName(const std::string& commonName) {
  const std::string prefix = "client-";
  if (commonName.rfind(prefix, 0) != 0 || commonName.size() == prefix.size() || commonName.size() > prefix.size() + 64) {
    return false;
  }
  return std::all_of(commonName.begin() + static_cast<long>(prefix.size()), commonName.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

crdt::ReplicaId Tls::idOfCertificateFile(const std::string& path) {
  std::string pem = readFile(path, "certificate");
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  if (bio) BIO_free(bio);
  if (cert == nullptr) throw std::runtime_error("the TLS certificate file '" + path + "' is not valid PEM");
  char cn[256] = {0};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  if (n <= 0) throw std::runtime_error("the TLS certificate '" + path + "' has no subject CN");
  try {
    return idOf(std::string(cn, static_cast<size_t>(n)));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("the TLS certificate '" + path + "': " + e.what() + " (expected CN replica-<id>)");
  }
}

kj::Promise<TlsStream> Tls::accept(kj::Own<kj::AsyncIoStream> stream) {
  return context_->wrapServer(kj::AuthenticatedStream{kj::mv(stream), kj::UnknownPeerIdentity::newInstance()})
      .then([](kj::AuthenticatedStream s) { return verified(kj::mv(s), true); });
}

kj::Promise<TlsStream> Tls::connect(kj::Own<kj::AsyncIoStream> stream) {
  return context_
      ->wrapClient(kj::AuthenticatedStream{kj::mv(stream), kj::UnknownPeerIdentity::newInstance()},
                   kj::StringPtr(cluster_.c_str()))
      .then([](kj::AuthenticatedStream s) { return verified(kj::mv(s), false); });
}

}  // namespace deltasync
