#include "lib/runtime.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "gossip/envelope-wire.h"
#include "lib/log.h"

namespace deltasync {

using gossip::Message;

namespace {

// The crdt hash seed (crdt/flat-index.h: crdt/ does no I/O, so it is handed its seed) from the
// OS's random source, when the library loads: before any ordinary static initialiser (priorities
// up to 100 are the implementation's), so no store is built with another seed. Here, beside the
// runtime, so that every program that runs a node links it.
[[gnu::constructor(101)]] void seedCrdtHashes() {
  uint64_t seed = 0;
  try {
    const gossip::Nonce n = gossip::randomNonce();  // getrandom(2)
    for (size_t i = 0; i < 8; ++i) seed = (seed << 8) | n[i];
  } catch (const std::exception&) {
    // No random source: still differs between processes and runs, if less secretly.
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    seed ^= reinterpret_cast<uintptr_t>(&seed);
  }
  crdt::_::setHashSeed(seed);
}

bool isBulk(const Message& m) {
  return std::holds_alternative<gossip::DeltaPushMsg>(m) || std::holds_alternative<gossip::StateChunkMsg>(m);
}

std::string describe(const kj::Exception* e) {
  return e == nullptr ? std::string("disconnected") : std::string(e->getDescription().cStr());
}

// Rate limits for the log, per process (the loop is single-threaded, but tests run several
// runtimes in one loop: sharing is harmless).
log::RateLimit linkLog(1000);
log::RateLimit rejectLog(1000);
log::RateLimit refuteLog(10000);
log::RateLimit authLog(10000);

log::RateLimit admissionLog(10000);
log::RateLimit clockLog(60000);

// An inbound stream that fails once its peer has sent more than `budget` bytes while lift() has
// not been called (the connection has not authenticated). It never returns a short read: a read
// that could take the total past the budget fails before it starts (and every write after it).
class PreAuthStream final : public kj::AsyncIoStream {
 public:
  PreAuthStream(kj::Own<kj::AsyncIoStream> inner, size_t budget, std::function<void()> onOver)
      : inner_(kj::mv(inner)), budget_(budget), onOver_(std::move(onOver)) {}
  void lift() { lifted_ = true; }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    if (lifted_) return inner_->tryRead(buffer, minBytes, maxBytes);
    if (read_ + std::max<size_t>(minBytes, 1) > budget_) return over();
    maxBytes = std::min(maxBytes, std::max(minBytes, budget_ - read_));
    return inner_->tryRead(buffer, minBytes, maxBytes).then([this](size_t n) {
      read_ += n;
      return n;
    });
  }
  // Once over, writes fail too: the RPC system's parting message must not wait on a peer that
  // does not read.
  kj::Promise<void> write(const void* buffer, size_t size) override {
    if (failed_) return KJ_EXCEPTION(DISCONNECTED, "connection closed for sending too much before authenticating");
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    if (failed_) return KJ_EXCEPTION(DISCONNECTED, "connection closed for sending too much before authenticating");
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

 private:
  kj::Promise<size_t> over() {
    if (!failed_) onOver_();
    failed_ = true;
    return KJ_EXCEPTION(DISCONNECTED, "sent more than preAuthBytes before authenticating", budget_);
  }

  kj::Own<kj::AsyncIoStream> inner_;
  size_t budget_;
  std::function<void()> onOver_;
  size_t read_ = 0;
  bool lifted_ = false;
  bool failed_ = false;
};

}  // namespace

struct Runtime::Connection {
  kj::Own<kj::AsyncIoStream> stream;
  gossip::RpcConnection rpc;  // after stream: destroyed first

  Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap, const gossip::Limits& limits)
      : stream(kj::mv(s)), rpc(*stream, kj::mv(bootstrap), limits) {}
  Connection(kj::Own<kj::AsyncIoStream> s, const gossip::Limits& limits) : stream(kj::mv(s)), rpc(*stream, limits) {}
};

struct Runtime::Link {
  enum class State { idle, connecting, ready };
  ReplicaId id;
  std::string address;
  State state = State::idle;
  uint64_t generation = 0;  // bumped whenever a connection attempt starts or ends
  kj::Own<Connection> conn;
  kj::Maybe<wire::Replicator::Client> replicator;
  std::deque<Message> urgent;
  std::deque<Message> bulk;
  uint32_t urgentInflight = 0;
  uint32_t bulkInflight = 0;
  uint64_t backoffMs = 0;
  uint64_t retryAtMs = 0;
  uint64_t lastEarlyRetryMs = 0;  // the last retry a sign of life started (signOfLife)
};

void Runtime::ErrorHandler::taskFailed(kj::Exception&& e) {
  log::debug("background task failed: {}", e.getDescription().cStr());
}

Runtime::Runtime(RuntimeConfig config, std::optional<gossip::Secret> secret, kj::Timer& timer, Dialer& dialer,
                 std::shared_mutex& stateMutex)
    : config_(std::move(config)),
      secret_(std::move(secret)),
      timer_(timer),
      dialer_(dialer),
      start_(timer.now()),
      rng_(config_.id.value * 0x9E3779B97F4A7C15ull + 1),
      stateMutex_(stateMutex),
      replica_(config_.id, config_.address, [&] {
        gossip::ReplicaConfig r;
        r.gossipIntervalMs = config_.gossipIntervalMs;
        r.membershipTickMs = config_.membershipTickMs;
        r.engine = config_.engine;
        r.membershipConfig = config_.membership;
        r.membershipConfig.seed ^= config_.id.value;
        r.presence = config_.presence;
        r.pruning = config_.pruning;
        r.limits = config_.limits;
        return r;
      }()),
      gatekeeperStats_(std::make_shared<gossip::GatekeeperStats>()),
      tasks_(errors_) {
  if (config_.id.value == 0) throw std::invalid_argument("Runtime: replica id must be nonzero");
  if (!secret_ && !config_.tls) throw std::invalid_argument("Runtime: a secret or TLS certificates are required");
  for (const auto& s : config_.seeds) {
    if (s != config_.address) seeds_.push_back(Seed{s});
  }
}

Runtime::~Runtime() = default;

uint64_t Runtime::nowMs() const { return (timer_.now() - start_) / kj::MILLISECONDS; }

uint64_t Runtime::wallMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

uint64_t Runtime::jitter(uint64_t ms) {
  rng_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = rng_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return ms / 2 + (ms > 1 ? z % (ms / 2 + 1) : 0);  // [ms/2, ms]
}

void Runtime::restore(std::vector<std::pair<std::string, gossip::Value>> objects, uint64_t seq,
                      uint64_t incarnation) {
  std::unique_lock lock(stateMutex_);
  for (auto& [name, value] : objects) replica_.store().restore(name, std::move(value));
  replica_.resume(seq, incarnation);
}

void Runtime::start() {
  tasks_.add(tickLoop());
  for (size_t i = 0; i < seeds_.size(); ++i) dialSeed(i);
}

bool Runtime::memberHost(const std::string& source) const {
  if (source.empty() || replica_.membership() == nullptr) return false;
  for (const auto& m : replica_.membership()->members()) {
    if (m.id != config_.id && (m.state == gossip::MemberState::alive || m.state == gossip::MemberState::suspect) &&
        splitHostPort(m.address).bareHost() == source) {
      return true;
    }
  }
  return false;
}

std::string Runtime::vetPeer(ReplicaId peer, const std::string& source) const {
  if (replica_.store().forgotten(peer)) {
    std::string why = gossip::prunedError(peer);
    if (admissionLog.allow(nowMs())) {
      log::warn("refused a peer from {}: {} ({} similar suppressed)", source, why, admissionLog.suppressed());
    }
    return why;
  }
  if (!config_.pinMemberHosts || source.empty() || replica_.membership() == nullptr) return {};
  const gossip::MemberInfo* m = replica_.membership()->member(peer);
  if (m == nullptr || m->removed || !(m->state == gossip::MemberState::alive || m->state == gossip::MemberState::suspect)) {
    return {};
  }
  const std::string host = splitHostPort(m->address).bareHost();
  unsigned char ip[16];
  const bool literal = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
  auto loopback = [](const std::string& h) { return h.rfind("127.", 0) == 0 || h == "::1"; };
  if (!literal || host == source || (loopback(host) && loopback(source))) return {};  // 127/8 is one host
  std::string why = "replica " + std::to_string(peer.value) + " is a live member at " + m->address + ", not at " + source;
  if (admissionLog.allow(nowMs())) {
    log::warn("refused a peer from {} authenticating as {} ({} similar suppressed)", source, why, admissionLog.suppressed());
  }
  return why;
}

void Runtime::closeInbound(uint64_t serial) {
  auto it = inbound_.find(serial);
  if (it == inbound_.end()) return;
  if (!it->second.authenticated) release(it->second.source);
  dropLater(kj::mv(it->second.conn));
  inbound_.erase(it);
}

bool Runtime::evictOldestPending() {
  // Serials grow: the first unauthenticated entry is the oldest (at most maxInbound to skip).
  // A connection admitted as a live member's while the slots were full is never the one to go.
  for (auto& [serial, in] : inbound_) {
    if (!in.authenticated && !in.member) {
      closeInbound(serial);
      return true;
    }
  }
  return false;  // every pending slot is a TLS handshake in flight, or a member's
}

bool Runtime::admit(const std::string& source, bool& member) {
  const char* why = nullptr;
  member = false;
  if (stopped_) {
    return false;
  } else if (inbound_.size() + pendingTls_ >= config_.maxInbound) {
    ++stats_.inboundRefused;
    why = "maxInbound connections are open";
  } else if (pending_ >= config_.maxPending || (!source.empty() && pendingBySource_[source] >= config_.maxPendingPerSource)) {
    // Only now is the membership scan worth it: a member's host may go past both caps.
    member = memberHost(source);
    const bool sourceFull = !member && !source.empty() && pendingBySource_[source] >= config_.maxPendingPerSource;
    if (!sourceFull && pending_ >= config_.maxPending + (member ? config_.memberReserve : 0) && evictOldestPending()) {
      // Made room: an honest handshake takes milliseconds, so the connection that has waited
      // longest without authenticating is the likeliest attacker, and a flood cannot keep a
      // newcomer out by holding every slot.
      ++stats_.pendingEvicted;
    } else if (pending_ >= config_.maxPending + (member ? config_.memberReserve : 0)) {
      ++stats_.pendingRefused;
      why = member ? "maxPending + memberReserve connections are authenticating" : "maxPending connections are authenticating";
    } else if (!member && !source.empty() && pendingBySource_[source] >= config_.maxPendingPerSource) {
      ++stats_.sourceRefused;
      why = "maxPendingPerSource connections from this address are authenticating";
    }
  }
  if (why != nullptr) {
    if (pendingBySource_[source] == 0) pendingBySource_.erase(source);
    if (admissionLog.allow(nowMs())) {
      log::warn("refused an inbound connection from {}: {} ({} similar suppressed)", source.empty() ? "?" : source, why,
                admissionLog.suppressed());
    }
    return false;
  }
  ++pending_;
  ++pendingBySource_[source];
  return true;
}

void Runtime::release(const std::string& source) {
  --pending_;
  auto it = pendingBySource_.find(source);
  if (it != pendingBySource_.end() && --it->second == 0) pendingBySource_.erase(it);
}

void Runtime::accept(kj::Own<kj::AsyncIoStream> stream, const std::string& source) {
  bool member = false;
  if (!admit(source, member)) return;  // the stream closes as it goes out of scope
  if (!config_.tls) {
    serve(kj::mv(stream), std::nullopt, source, member);
    return;
  }
  // The TLS handshake first (bounded by the TLS context's accept timeout; it holds its pending
  // slot meanwhile).
  ++pendingTls_;
  tasks_.add(config_.tls->accept(kj::mv(stream))
                 .then(
                     [this, source, member](TlsStream s) {
                       --pendingTls_;
                       serve(kj::mv(s.stream), s.client ? std::nullopt : std::optional(s.peer), source, member,
                             s.client);
                     },
                     [this, source](kj::Exception&& e) {
                       --pendingTls_;
                       release(source);
                       ++gatekeeperStats_->proofRejected;  // counted and logged as a failed authentication
                       log::debug("TLS handshake refused: {}", e.getDescription().cStr());
                     }));
}

void Runtime::serve(kj::Own<kj::AsyncIoStream> stream, std::optional<ReplicaId> tlsPeer, const std::string& source,
                    bool member, bool tlsClient) {
  if (stopped_) {
    release(source);
    return;
  }
  const uint64_t serial = nextSerial_++;
  gossip::GatekeeperOptions options;
  options.control = [this](ReplicaId peer) -> wire::Control::Client {
    if (!control_) throw std::runtime_error("this node serves no control interface");
    return control_(peer);
  };
  options.stats = gatekeeperStats_;
  options.replies = [this](ReplicaId peer) { return takeReplies(peer); };
  options.tlsPeer = tlsPeer;
  options.tlsClient = tlsClient;
  auto gated = kj::heap<PreAuthStream>(kj::mv(stream), config_.preAuthBytes, [this, source] {
    ++stats_.preAuthOversize;
    if (admissionLog.allow(nowMs())) {
      log::warn("closed an inbound connection from {}: it sent more than preAuthBytes ({}) before authenticating "
                "({} similar suppressed)", source.empty() ? "?" : source, config_.preAuthBytes, admissionLog.suppressed());
    }
  });
  PreAuthStream* gate = gated.get();
  options.vetPeer = [this, source](ReplicaId peer) { return vetPeer(peer, source); };
  options.clientSecret = config_.clientSecret;
  options.onAuthenticated = [this, serial, gate](ReplicaId) {
    auto it = inbound_.find(serial);
    if (it == inbound_.end() || it->second.authenticated) return;
    it->second.authenticated = true;
    gate->lift();
    release(it->second.source);
  };
  auto gatekeeper = kj::heap<gossip::Gatekeeper>(
      config_.tls ? std::nullopt : secret_, config_.id, config_.cluster, config_.limits,
      [this](ReplicaId from, Message m) { onMessage(from, std::move(m)); }, std::move(options));
  auto conn = kj::heap<Connection>(kj::mv(gated), kj::mv(gatekeeper), config_.limits);
  auto disconnected = conn->rpc.onDisconnect();
  inbound_.emplace(serial, Inbound{kj::mv(conn), source, member});
  auto close = [this, serial]() { closeInbound(serial); };
  tasks_.add(disconnected.then([close]() { close(); }));  // (then() keeps an lvalue functor by reference)
  // A connection that does not authenticate in time is closed (it holds a pending slot).
  tasks_.add(timer_.afterDelay(config_.handshakeTimeoutMs * kj::MILLISECONDS).then([this, serial, close]() {
    auto it = inbound_.find(serial);
    if (it == inbound_.end() || it->second.authenticated) return;
    ++stats_.handshakeTimeouts;
    close();
  }));
}

void Runtime::dropLater(kj::Own<Connection> connection) {
  if (connection.get() == nullptr) return;
  tasks_.add(kj::evalLater([c = kj::mv(connection)]() mutable { c = nullptr; }));
}

// ---- inbound messages ---------------------------------------------------------------------

void Runtime::onMessage(ReplicaId from, Message message) {
  if (stopped_ || offline_) {
    // Dropped as a cut network would (the peer's protocols retry or learn of the leave); not
    // refused, which would log a warning on every peer that still gossips with a leaving node.
    ++stats_.messagesDropped;
    return;
  }
  const uint64_t refutedBefore = replica_.engine().stats().deltasRefuted;
  try {
    step([&] { replica_.receive(from, message, nowMs(), wallMs(), out_); });
  } catch (const std::exception& e) {
    ++stats_.messagesRejected;
    if (rejectLog.allow(nowMs())) {
      log::warn("rejected a message from {}: {} ({} similar suppressed)", from.value, e.what(), rejectLog.suppressed());
    }
    throw;
  }
  ++stats_.messagesReceived;
  if (const uint64_t n = replica_.engine().stats().deltasRefuted - refutedBefore; n != 0 && refuteLog.allow(nowMs())) {
    log::warn("a message from {} claimed this replica's writes beyond its own in {} object(s): refuted (our entries "
              "re-written under new dots, the claimed ones removed; claimed counts adopted as ours); a holder of the "
              "cluster secret forged it or relayed a forgery, or this replica restarted without its state ({} "
              "similar suppressed)",
              from.value, n, refuteLog.suppressed());
  }
  signOfLife(from);
}

void Runtime::notePruning() {
  const auto& forgotten = replica_.store().forgottenReplicas();
  if (forgotten.size() != forgottenSeen_.size()) {
    std::string ids;  // the new ones only: the set grows by one per replica pruned, for ever
    for (ReplicaId r : forgotten) {
      if (forgottenSeen_.insert(r).second) ids += (ids.empty() ? "" : ", ") + std::to_string(r.value);
    }
    log::info("replicas pruned from the cluster, forgotten here (their entries kept under a live member's id; they "
              "are refused if they come back): {}", ids);
  }
  if (replica_.store().prunedSelf() && !prunedSelfSeen_) {
    prunedSelfSeen_ = true;
    log::error("this replica ({}) was pruned from the cluster while it was away (gone for longer than the pruning "
               "horizon): peers refuse it and will not take its writes; restart it with a new data directory",
               config_.id.value);
  }
  if (replica_.pruner().stats().blocked != blockedSeen_) {
    blockedSeen_ = replica_.pruner().stats().blocked;
    if (!blockedSeen_.empty()) log::info("pruning: {}", blockedSeen_);
  }
}

void Runtime::signOfLife(ReplicaId id) {
  auto it = links_.find(id);
  if (it == links_.end()) return;
  Link& link = *it->second;
  const uint64_t now = nowMs();
  if (link.state != Link::State::idle || now >= link.retryAtMs) return;
  // At most one early retry per 5 x reconnectMinMs (500 ms by default): a peer that reaches us
  // while we cannot reach it (a one-way cut) shows signs of life with every message, and must
  // not set off a dial each time. The backoff itself still ends only with a successful dial.
  if (link.lastEarlyRetryMs != 0 && now < link.lastEarlyRetryMs + 5 * config_.reconnectMinMs) return;
  link.lastEarlyRetryMs = now;
  link.retryAtMs = now;
  pump(link);  // dials now if it holds messages
}

void Runtime::flushPresence() {
  auto& tracker = replica_.presence();
  if (!tracker.hasDiffs()) return;
  if (!onPresence_ || (presenceWanted_ && !presenceWanted_())) {
    tracker.dropDiffs();
    return;
  }
  onPresence_(tracker.takeDiffs());
}

template <typename F>
void Runtime::step(F&& f) {
  out_.clear();
  std::vector<gossip::MemberEvent> events;
  {
    std::unique_lock lock(stateMutex_);
    try {
      f();
    } catch (...) {
      out_.clear();
      throw;
    }
    if (const uint64_t now = nowMs(); replica_.maintenancePending(now)) replica_.stepMaintenance(now, wallMs());
    flushPresence();
    notePruning();
    events = replica_.takeEvents();
  }
  send(out_);
  for (const auto& e : events) {
    if (e.removed) {
      if (auto it = links_.find(e.id); it != links_.end()) {
        dropLater(kj::mv(it->second->conn));
        links_.erase(it);
      }
    }
    if (e.state == gossip::MemberState::suspect && !e.removed) ++stats_.suspicions;
    if (e.state == gossip::MemberState::alive && !e.removed) {
      retired_.erase(e.id);  // it refuted: alive after all, at an address we will learn anew
      signOfLife(e.id);
    }
    if (e.removed) retired_.erase(e.id);
    if (onMember_) onMember_(e);
  }
  if (onStep_) onStep_();
}

// ---- timers -------------------------------------------------------------------------------

kj::Promise<void> Runtime::tickLoop() {
  return timer_.atTime(start_ + replica_.nextTickMs() * kj::MILLISECONDS).then([this]() -> kj::Promise<void> {
    if (stopped_) return kj::READY_NOW;
    const uint64_t now = nowMs();
    step([&] { replica_.tick(now, out_); });
    maintain(now);
    watchClock();
    return tickLoop();
  });
}

void Runtime::flush() {
  if (stopped_) return;
  step([&] { replica_.flush(out_); });
}

uint64_t Runtime::requestSync() {
  if (stopped_) return 0;
  uint64_t id = 0;
  step([&] { id = replica_.requestSync(out_); });
  return id;
}

void Runtime::watchClock() {
  // The real monotonic clock, not the timer's (a test's timer runs on simulated time).
  const auto steady = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now().time_since_epoch());
  const int64_t jump = clockWatch_.sample(static_cast<uint64_t>(steady.count()), wallMs());
  if (jump == 0) return;
  ++stats_.clockJumps;
  stats_.lastClockJumpMs = jump;
  if (clockLog.allow(nowMs())) {
    log::warn("this node's wall clock jumped {} by {} ms (an NTP step, a manual change, a resumed VM?): its writes "
              "are stamped with it, and peers refuse stamps more than {} ms ahead of theirs ({} similar suppressed)",
              jump > 0 ? "forward" : "back", jump > 0 ? jump : -jump, config_.engine.maxForwardSkewMs,
              clockLog.suppressed());
  }
}

void Runtime::maintain(uint64_t now) {
  // Seeds not answered yet; and again when this node knows no live member (say, it started
  // before every seed, or all its members were removed while it was cut off).
  bool alone = membership().liveMembers().size() <= 1;
  for (size_t i = 0; i < seeds_.size(); ++i) {
    Seed& s = seeds_[i];
    if (s.removed) continue;
    if (alone && s.answered && now >= s.retryAtMs) s.answered = false;
    if (!s.answered && !s.dialing && now >= s.retryAtMs && !offline_) dialSeed(i);
  }
  // Failed authentications: one line per period at most, never anything secret.
  const uint64_t failures = gatekeeperStats_->helloRejected + gatekeeperStats_->proofRejected;
  if (failures > authFailuresLogged_ && authLog.allow(now)) {
    log::warn("{} failed peer authentication(s) (wrong secret or cluster, or a replayed proof)",
              failures - authFailuresLogged_);
    authFailuresLogged_ = failures;
  }
  // Links that hold messages and whose backoff is over.
  for (auto& [id, link] : links_) {
    if (link->state == Link::State::idle && (!link->urgent.empty() || !link->bulk.empty())) pump(*link);
  }
}

// ---- seeds --------------------------------------------------------------------------------

HostPort splitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  const size_t close = address.rfind(']');  // "[fd00::5]": the colons are the host's
  if (colon == std::string::npos || (close != std::string::npos && close > colon)) return {address, ""};
  return {address.substr(0, colon), address.substr(colon + 1)};
}

void checkSeedAddress(const std::string& address) {
  const auto [host, port] = splitHostPort(address);
  const bool digits = !port.empty() && port.size() <= 5 &&
                      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (host.empty() || !digits || std::stoul(port) == 0 || std::stoul(port) > 65535) {
    throw std::invalid_argument("seed \"" + address + "\" is not HOST:PORT (a port 1-65535)");
  }
}

bool Runtime::addSeed(const std::string& address) {
  checkSeedAddress(address);
  if (address == config_.address) return false;
  auto it = std::find_if(seeds_.begin(), seeds_.end(), [&](const Seed& s) { return s.address == address; });
  if (it != seeds_.end() && !it->removed) return false;
  if (it == seeds_.end()) {
    seeds_.push_back(Seed{address});
    it = seeds_.end() - 1;
  }
  *it = Seed{address, it->dialing};  // a re-added seed starts afresh (a dial in flight goes on)
  log::info("seed {} added", address);
  if (!it->dialing && !offline_) dialSeed(static_cast<size_t>(it - seeds_.begin()));
  return true;
}

bool Runtime::removeSeed(const std::string& address) {
  for (Seed& s : seeds_) {
    if (s.address == address && !s.removed) {
      s.removed = true;
      log::info("seed {} removed", address);
      return true;
    }
  }
  return false;
}

std::vector<std::string> Runtime::seeds() const {
  std::vector<std::string> out;
  for (const Seed& s : seeds_) {
    if (!s.removed) out.push_back(s.address);
  }
  return out;
}

void Runtime::dialSeed(size_t index) {
  Seed& seed = seeds_[index];
  seed.dialing = true;
  auto conn = std::make_shared<kj::Own<Connection>>();
  auto attempt = connectSecure(seed.address).then([this, conn](TlsStream s) {
    *conn = kj::heap<Connection>(kj::mv(s.stream), config_.limits);
    return authenticateOn(**conn, s.peer);
  });
  tasks_.add(timer_.timeoutAfter(config_.handshakeTimeoutMs * kj::MILLISECONDS, kj::mv(attempt))
                 .then(
                     [this, index, conn](gossip::Authenticated a) {
                       Seed& s = seeds_[index];
                       s.dialing = false;
                       s.answered = true;
                       s.backoffMs = 0;
                       s.retryAtMs = nowMs() + config_.reconnectMaxMs;  // re-seed no sooner when alone
                       dropLater(kj::mv(*conn));  // membership dials the member itself
                       if (a.peer == config_.id) return;
                       log::debug("seed {} is replica {}", s.address, a.peer.value);
                       step([&] { replica_.addSeed(a.peer, s.address, nowMs()); });
                     },
                     [this, index, conn](kj::Exception&& e) {
                       Seed& s = seeds_[index];
                       s.dialing = false;
                       s.backoffMs = s.backoffMs == 0 ? config_.reconnectMinMs
                                                      : std::min(2 * s.backoffMs, config_.reconnectMaxMs);
                       s.retryAtMs = nowMs() + jitter(s.backoffMs);
                       dropLater(kj::mv(*conn));
                       if (linkLog.allow(nowMs())) {
                         log::info("seed {}: {} (retrying; {} similar suppressed)", s.address,
                                   e.getDescription().cStr(), linkLog.suppressed());
                       }
                     }));
}

// ---- outbound links -----------------------------------------------------------------------

Runtime::Link* Runtime::linkFor(ReplicaId id) {
  const gossip::MemberInfo* member = membership().member(id);
  auto it = links_.find(id);
  if (it != links_.end()) {
    Link& link = *it->second;
    if (member != nullptr && !member->address.empty() && member->address != link.address &&
        link.state == Link::State::idle) {
      link.address = member->address;  // the member moved (restarted elsewhere with its id)
    }
    return &link;
  }
  if (member == nullptr || member->address.empty()) return nullptr;
  auto link = std::make_unique<Link>();
  link->id = id;
  link->address = member->address;
  return links_.emplace(id, std::move(link)).first->second.get();
}

void Runtime::send(std::vector<gossip::Outgoing>& out) {
  if (out.empty()) return;
  if (persist_ && !persist_()) {
    stats_.messagesDropped += out.size();  // not durable: a peer must not learn of it yet
    out.clear();
    return;
  }
  for (auto& o : out) enqueue(o.to, std::move(o.message));
  out.clear();
}

void Runtime::enqueue(ReplicaId to, Message message) {
  if (offline_ || retired_.count(to) != 0) {
    ++stats_.messagesDropped;  // cut off, or its address answers as another replica (never dialled again)
    return;
  }
  Link* link = linkFor(to);
  if (link == nullptr) {
    ++stats_.messagesDropped;  // no address known (yet): the protocols retry
    return;
  }
  auto& queue = isBulk(message) ? link->bulk : link->urgent;
  if (queue.size() >= config_.maxQueuedPerPeer) {
    ++stats_.messagesDropped;
    return;
  }
  queue.push_back(std::move(message));
  pump(*link);
}

void Runtime::pump(Link& link) {
  if (link.state == Link::State::idle) {
    if ((!link.urgent.empty() || !link.bulk.empty()) && nowMs() >= link.retryAtMs) dial(link);
    return;
  }
  if (link.state != Link::State::ready) return;
  auto& replicator = KJ_ASSERT_NONNULL(link.replicator);
  for (;;) {
    const bool urgent = !link.urgent.empty() && link.urgentInflight < config_.maxUrgentInflight;
    const bool bulk = !urgent && !link.bulk.empty() && link.bulkInflight < config_.maxBulkInflight;
    if (!urgent && !bulk) return;
    auto& queue = urgent ? link.urgent : link.bulk;
    auto request = replicator.deliverRequest();
    gossip::encodeEnvelope(queue.front(), request.initEnvelope());
    queue.pop_front();
    const uint64_t bytes = request.totalSize().wordCount * 8;
    (urgent ? link.urgentInflight : link.bulkInflight)++;
    const ReplicaId id = link.id;
    const uint64_t generation = link.generation;
    auto done = [this, id, generation, urgent]() -> Link* {
      auto it = links_.find(id);
      if (it == links_.end() || it->second->generation != generation) return nullptr;
      Link& l = *it->second;
      (urgent ? l.urgentInflight : l.bulkInflight)--;
      return &l;
    };
    const kj::TimePoint sentAt = timer_.now();
    // A delivery that does not complete in deliverTimeoutMs breaks the link: a connection whose
    // packets are dropped (a one-way cut, a dead host) would otherwise hold its messages until TCP
    // gives up, minutes later, with the link looking ready (so nothing took the return path).
    tasks_.add(timer_.timeoutAfter(config_.deliverTimeoutMs * kj::MILLISECONDS, request.send()).then(
        [this, done, bytes, sentAt, id](capnp::Response<wire::Replicator::DeliverResults>&& r) {
          deliverLatency_.observe(static_cast<double>((timer_.now() - sentAt) / kj::MICROSECONDS) / 1e6);
          ++stats_.messagesSent;
          stats_.bytesSent += bytes;
          if (r.hasReplies()) takeRepliesFrom(id, r.getReplies());
          if (Link* l = done()) pump(*l);
        },
        [this, done, id, generation](kj::Exception&& e) {
          if (e.getType() == kj::Exception::Type::DISCONNECTED || e.getType() == kj::Exception::Type::OVERLOADED) {
            broken(id, generation, &e);  // gone, or a delivery timed out
            return;
          }
          ++stats_.sendsRejected;
          if (rejectLog.allow(nowMs())) {
            log::warn("peer {} refused a message: {} ({} similar suppressed)", id.value, e.getDescription().cStr(),
                      rejectLog.suppressed());
          }
          if (Link* l = done()) pump(*l);
        }));
  }
}

std::vector<Message> Runtime::takeReplies(ReplicaId peer) {
  std::vector<Message> out;
  if (offline_ || stopped_) return out;
  auto it = links_.find(peer);
  if (it == links_.end() || it->second->state == Link::State::ready) return out;
  Link& link = *it->second;
  // Urgent first (acks, requests, probes), then at most as many bulk messages as one link has in
  // flight: a reply stays about as large as what a link sends at once.
  while (!link.urgent.empty() && out.size() < config_.maxUrgentInflight) {
    out.push_back(std::move(link.urgent.front()));
    link.urgent.pop_front();
  }
  for (uint32_t k = 0; k < config_.maxBulkInflight && !link.bulk.empty(); ++k) {
    out.push_back(std::move(link.bulk.front()));
    link.bulk.pop_front();
  }
  stats_.repliesSent += out.size();
  return out;
}

void Runtime::takeRepliesFrom(ReplicaId peer, capnp::List<wire::Envelope>::Reader replies) {
  // What an honest peer hands back at most (takeReplies); the rest is refused, not read.
  const size_t most = size_t{config_.maxUrgentInflight} + config_.maxBulkInflight;
  if (replies.size() > most) {
    stats_.messagesRejected += replies.size() - most;
    if (rejectLog.allow(nowMs())) {
      log::warn("peer {} handed back {} replies, more than the {} a peer may: the rest refused ({} similar suppressed)",
                peer.value, replies.size(), most, rejectLog.suppressed());
    }
  }
  size_t taken = 0;
  for (auto e : replies) {
    if (taken++ == most) break;
    Message m;
    try {
      m = gossip::acceptEnvelope(e, config_.limits, peer);
    } catch (const std::exception& ex) {
      ++stats_.messagesRejected;
      if (rejectLog.allow(nowMs())) {
        log::warn("rejected a reply from {}: {} ({} similar suppressed)", peer.value, ex.what(), rejectLog.suppressed());
      }
      continue;
    }
    ++stats_.repliesReceived;
    try {
      onMessage(peer, std::move(m));
    } catch (const std::exception&) {
      // Counted and logged by onMessage, as for a deliver() that failed.
    }
  }
}

void Runtime::dropQueued(Link& link) {
  stats_.messagesDropped += link.urgent.size() + link.bulk.size();
  link.urgent.clear();
  link.bulk.clear();
}

void Runtime::setOffline(bool offline) {
  if (offline == offline_) return;
  offline_ = offline;
  log::info("{}", offline ? "offline: no messages to or from peers until back online" : "back online");
  const uint64_t now = nowMs();
  for (auto& [id, link] : links_) {
    if (offline) {
      dropQueued(*link);
    } else {
      link->backoffMs = 0;  // the backoff grew while nothing could pass
      link->retryAtMs = now;
    }
  }
  if (!offline) {
    for (Seed& s : seeds_) s.retryAtMs = std::min(s.retryAtMs, now);
    maintain(now);
  }
}

void Runtime::retireLater(ReplicaId id) {
  retired_.insert(id);
  // The membership step later, on its own turn of the loop: the callers are inside loops over
  // links_, which member events may change.
  tasks_.add(kj::evalLater([this, id]() {
    if (stopped_) return;
    step([&] { replica_.retire(id, nowMs(), out_); });
  }));
}

void Runtime::dial(Link& link) {
  if (link.address == config_.address) {
    // Our own address under another id: this node's former self (restarted under a new id).
    // Never dialled (it would fail our own authentication); retired instead.
    dropQueued(link);
    retireLater(link.id);
    return;
  }
  link.state = Link::State::connecting;
  const uint64_t generation = ++link.generation;
  const ReplicaId id = link.id;
  auto attempt = connectSecure(link.address).then([this, id, generation](TlsStream s) {
    auto it = links_.find(id);
    if (it == links_.end() || it->second->generation != generation) {
      return kj::Promise<void>(KJ_EXCEPTION(DISCONNECTED, "link superseded"));
    }
    Link& l = *it->second;
    l.conn = kj::heap<Connection>(kj::mv(s.stream), config_.limits);
    return authenticateOn(*l.conn, s.peer)
        .then([this, id, generation](gossip::Authenticated a) {
          auto it = links_.find(id);
          if (it == links_.end() || it->second->generation != generation) return;
          Link& l = *it->second;
          if (a.peer != id) {
            retireLater(id);  // it restarted under a new id, or its address went to another node
            KJ_FAIL_REQUIRE("the address answered as another replica", l.address, a.peer.value, id.value);
          }
          l.replicator = kj::mv(a.replicator);
          l.state = Link::State::ready;
          l.backoffMs = 0;
          ++stats_.connects;
          log::debug("connected to {} at {}", id.value, l.address);
          tasks_.add(l.conn->rpc.onDisconnect().then([this, id, generation]() { broken(id, generation, nullptr); }));
          pump(l);
        });
  });
  tasks_.add(timer_.timeoutAfter(config_.handshakeTimeoutMs * kj::MILLISECONDS, kj::mv(attempt))
                 .catch_([this, id, generation](kj::Exception&& e) { broken(id, generation, &e); }));
}

kj::Promise<TlsStream> Runtime::connectSecure(const std::string& address) {
  return dialer_.connect(address).then([this](kj::Own<kj::AsyncIoStream> stream) { return secure(kj::mv(stream)); });
}

kj::Promise<TlsStream> Runtime::secure(kj::Own<kj::AsyncIoStream> stream) {
  if (config_.tls) return config_.tls->connect(kj::mv(stream));
  return TlsStream{kj::mv(stream), ReplicaId{}};
}

kj::Promise<gossip::Authenticated> Runtime::authenticateOn(Connection& conn, ReplicaId tlsPeer) {
  if (tlsPeer.value != 0) return gossip::attach(conn.rpc.gatekeeper(), tlsPeer);
  if (!secret_) return KJ_EXCEPTION(FAILED, "no cluster secret, and the connection is not under TLS");
  return gossip::authenticate(conn.rpc.gatekeeper(), *secret_, config_.id, config_.cluster);
}

void Runtime::broken(ReplicaId id, uint64_t generation, const kj::Exception* why) {
  auto it = links_.find(id);
  if (it == links_.end() || it->second->generation != generation) return;
  Link& link = *it->second;
  if (link.state == Link::State::ready) {
    ++stats_.disconnects;
  } else {
    ++stats_.connectFailures;
  }
  dropQueued(link);
  link.urgentInflight = 0;
  link.bulkInflight = 0;
  link.replicator = nullptr;
  dropLater(kj::mv(link.conn));
  link.state = Link::State::idle;
  ++link.generation;  // completions of the old attempt are ignored from now on
  link.backoffMs = link.backoffMs == 0 ? config_.reconnectMinMs : std::min(2 * link.backoffMs, config_.reconnectMaxMs);
  link.retryAtMs = nowMs() + jitter(link.backoffMs);
  if (linkLog.allow(nowMs())) {
    log::info("link to {} at {}: {} ({} similar suppressed)", id.value, link.address, describe(why),
              linkLog.suppressed());
  }
}

size_t Runtime::readyLinks() const {
  size_t n = 0;
  for (const auto& [id, link] : links_) n += link->state == Link::State::ready;
  return n;
}

uint64_t Runtime::replicationLag() const {
  uint64_t lag = 0;
  const gossip::Engine& e = engine();
  for (ReplicaId j : e.neighbors()) lag = std::max(lag, e.seq() - std::min(e.seq(), e.ackedBy(j)));
  return lag;
}

// ---- leaving ------------------------------------------------------------------------------

kj::Promise<void> Runtime::leave(uint64_t graceMs) {
  if (stopped_) return kj::READY_NOW;
  step([&] { replica_.leave(out_); });
  stopped_ = true;
  const uint64_t deadline = nowMs() + graceMs;
  // Wait until every link has handed over its urgent messages (the announcement), or the grace
  // period ends.
  struct Waiter {
    static kj::Promise<void> loop(Runtime& rt, uint64_t deadline) {
      bool flushed = true;
      for (const auto& [id, link] : rt.links_) {
        if (link->state != Link::State::idle && (!link->urgent.empty() || link->urgentInflight > 0)) flushed = false;
      }
      if (flushed || rt.nowMs() >= deadline) return kj::READY_NOW;
      return rt.timer_.afterDelay(5 * kj::MILLISECONDS).then([&rt, deadline]() { return loop(rt, deadline); });
    }
  };
  return Waiter::loop(*this, deadline);
}

std::vector<MemberRow> Runtime::members() const {
  std::vector<MemberRow> rows;
  rows.push_back(MemberRow{config_.id, config_.address, gossip::MemberState::alive, membership().incarnation(), true});
  for (const auto& m : membership().members()) {
    if (m.removed) continue;
    rows.push_back(MemberRow{m.id, m.address, m.state, m.incarnation, false});
  }
  std::sort(rows.begin(), rows.end(), [](const MemberRow& a, const MemberRow& b) { return a.id < b.id; });
  return rows;
}

}  // namespace deltasync
