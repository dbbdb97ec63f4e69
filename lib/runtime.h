// The node's protocol driver: one replica core (gossip/replica.h: store, engine, membership),
// wired to peers over authenticated Cap'n Proto RPC and driven by a timer, on one KJ event loop.
//
// Everything here runs on the loop's thread (lib/node.c++ owns that thread), except local
// writes (update(), withPresence()), which any thread may make under the state lock (below).
// Time and the network come in from outside: a kj::Timer (a real one, or a kj::TimerImpl a test
// advances by hand) and a Dialer that opens streams to addresses (TCP, or in tests pipes between
// runtimes in one loop). So the same code runs in the in-process tests and in `deltasync node`.
//
// Data flow:
//   local update  -> update<T>() -> ObjectStore::update (the caller holds the state lock), which
//                    the engine logs -> pushed on the next gossip round;
//   tick          -> at Replica::nextTickMs(), Replica::tick (membership and engine rounds as
//                    they fall due) -> Outgoing messages -> per-peer queues -> Replicator.deliver();
//   inbound       -> admission (below) -> a Gatekeeper per connection (handshake; gossip/rpc.h)
//                    -> validated Message from the authenticated id -> Replica::receive, under
//                    the state lock; a ProtocolError fails that call only.
//
// Inbound admission: what an unauthenticated connection can cost is bounded, so that a flood of
// them can neither exhaust memory nor lock out ctl and members:
//   - at most maxInbound connections in all, of which at most maxPending not yet authenticated
//     (TLS handshakes included), and at most maxPendingPerSource of those from one source
//     address; a source that is the host of a live member's address may also use memberReserve
//     pending slots beyond maxPending, and is not held to the per-source cap. When the pending
//     slots are full, the connection that has waited longest without authenticating (other than
//     a member's admitted meanwhile) is closed to make room (an honest handshake takes milliseconds): a flood from many addresses slows
//     newcomers but cannot lock them out;
//   - until it authenticates, a connection may send at most preAuthBytes (the handshake takes
//     well under 2 KiB), and must authenticate within handshakeTimeoutMs; then only Limits apply;
//   - a refusal closes the connection at once, is counted per reason (RuntimeStats) and logged,
//     rate-limited, with the source address.
// Sources are IP addresses as lib/node.c++ reads them from the socket (a member advertised under
// a host name is not recognised as one: it gets the common caps); "" (unknown: a pipe in tests)
// is held to the total caps only.
//   member events -> Replica::takeEvents() after each step: links to removed members are
//                    dropped, the rest goes to setMemberListener's listener;
//   maintenance   -> in each step, Replica::stepMaintenance() when it is pending (presence:
//                    member events, permdown time; pruning of removed replicas); the tracker's diffs of the step (and of local presence
//                    operations: withPresence()) go to the presence listener, under the state
//                    lock, so every listener sees the diffs in the order they were made.
//
// Who a peer may be: under the shared secret, any holder of the secret can claim any id. So a
// peer that authenticates as the id of a live (alive or suspect) member whose advertised
// address is an IP literal must connect from that address's host (any loopback address counts as
// the loopback host's): a member restarting under its
// own id on its own host passes, a holder of the secret elsewhere is refused (counted, logged).
// Several nodes on one host, and members advertised under host names, cannot be told apart this
// way; nor can a member whose connections leave from another address than it advertises (NAT,
// several interfaces): set pinMemberHosts false there, or use mutual TLS, where each replica's
// certificate proves its id and this check does not apply.
//
// Peer links (one per remote id we send to; inbound connections only carry what peers send us):
//   idle -> connecting (dial, handshake; the peer must prove the id we expect) -> ready.
//   Under mutual TLS (config.tls) each stream is wrapped first and the certificates prove both
//   ids (Gatekeeper.attach); otherwise the HMAC handshake does.
//   A failed dial, handshake or delivery, a delivery unanswered for deliverTimeoutMs, or a
//   disconnect, returns the link to idle; it retries
//   when it has something to send, after a backoff that doubles from reconnectMinMs to
//   reconnectMaxMs (with jitter) and resets on success. A sign that the peer is back (a message
//   from it, or membership hearing it alive) retries at once (at most every 5 x reconnectMinMs), so a
//   healed link is used without waiting out a backoff that grew while it was cut. Queues are bounded (maxQueuedPerPeer
//   messages each) and cleared when a link breaks: the engine resends unacknowledged intervals
//   and membership probes again, so dropping is safe and keeps a dead peer from holding memory.
//   Return path (gossip/rpc.h): while a link is not ready (down, backing off, connecting), what
//   it holds is handed back on the peer's own deliver() calls to us, urgent first, at most
//   maxUrgentInflight urgent and maxBulkInflight bulk messages per call. So a node that can be
//   reached but cannot reach (one-way network, one-way firewall or NAT) still answers probes,
//   requests and acks, and its peers keep it alive and keep it in sync; and a link that is only
//   connecting hands its first messages over sooner.
//   Two lanes: urgent (probes, acks, digests, requests) and bulk (pushes, state chunks). Urgent
//   messages go first and have their own in-flight budget, so a probe never waits behind more
//   than maxBulkInflight bulk messages (each at most maxPushBytes / maxChunkBytes).
//
// Offline (setOffline): every message to and from peers is dropped, as a cut network would
// (queued ones too), and seeds are not dialled; control connections keep working. Peers see the
// node down after the failure detector's timeout and it sees them down. Back online, links and
// seeds retry at once and the protocols heal as after any partition.
//
// Durability (setPersist, lib/node.c++ with lib/storage.h): before anything is sent, the persist
// hook makes every change so far durable. So whatever a peer learns from us (our writes' dots,
// our sequence numbers, acks of what it sent) survives a crash of this node, and a node that
// restarts under its id never contradicts what it told its peers. While the hook fails (a
// failing disk), nothing is sent: peers see the node down, and it heals once a commit succeeds.
//
// Seeds are addresses: the runtime dials each, learns its id from the handshake and hands it to
// membership (Membership::addSeed); a seed is retried (with backoff) until it answered once.
//
// Dead ids: a member whose address answers as another replica, or whose address is this node's
// own (its former self, restarted under a new id), is retired (Membership::retire: down at once,
// flooded) and never dialled again; neither counts as an authentication failure.
//
// State lock (`stateMutex`, owned by lib/node.c++): it guards the replica (store, engine, presence
// tracker) and what listens to the store, for every thread, the loop's included:
//   - writers hold it exclusively: local writes on the application's threads (the caller of
//     update() and withPresence() holds it; lib/node.c++ Node handles, lib/control.c++ ctl) and
//     every protocol step here (receive, tick, seeds, retire, leave: step());
//   - readers hold it shared: handle reads, subscriptions, ctl get and watch, metrics, storage
//     commits;
//   - membership and the links are written by this thread only; it reads them without the lock.
// Listeners called under it (store changes, presence diffs) must not take it again, and may take
// only locks that are never held while waiting for it.
//
// Include only in lib/ sources: this header pulls in capnp RPC.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include <kj/async-io.h>
#include <kj/timer.h>

#include "gossip/auth.h"
#include "gossip/limits.h"
#include "gossip/replica.h"
#include "gossip/rpc.h"
#include "lib/clock-watch.h"
#include "lib/metrics.h"
#include "lib/tls.h"

namespace deltasync {

using crdt::ReplicaId;

// Opens a byte stream to a peer's address ("host:port" for TCP).
class Dialer {
 public:
  virtual ~Dialer() = default;
  virtual kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& address) = 0;
};

struct RuntimeConfig {
  ReplicaId id;               // nonzero
  std::string address;        // where peers reach this node (told to them through membership)
  std::string cluster = "deltasync";
  std::vector<std::string> seeds;
  uint64_t gossipIntervalMs = 100;   // one engine round
  uint64_t membershipTickMs = 50;    // resolution of probe timeouts
  gossip::EngineConfig engine;
  gossip::MembershipConfig membership;
  gossip::PresenceConfig presence;
  gossip::PruneConfig pruning;
  gossip::Limits limits;
  uint32_t maxQueuedPerPeer = 4096;  // messages per lane
  uint32_t maxUrgentInflight = 16;
  uint32_t maxBulkInflight = 2;
  uint64_t reconnectMinMs = 100;
  uint64_t reconnectMaxMs = 10000;
  uint64_t handshakeTimeoutMs = 5000;  // dial + handshake (outbound); to authenticate (inbound)
  uint64_t deliverTimeoutMs = 5000;    // a delivery not answered by then breaks its link
  uint32_t maxInbound = 512;           // inbound connections held at once; more are closed
  uint32_t maxPending = 128;           // of those, not yet authenticated (see "Inbound admission")
  uint32_t maxPendingPerSource = 8;    // unauthenticated ones from one source address
  uint32_t memberReserve = 32;         // extra pending slots for sources that are live members' hosts
  size_t preAuthBytes = 64 << 10;      // what a connection may send before it authenticates
  bool pinMemberHosts = true;          // see "Who a peer may be"
  // What control clients (deltasync ctl) prove instead of the cluster secret (shared-secret
  // mode); none: they prove the cluster secret. Either way they get the control interface only.
  std::optional<gossip::Secret> clientSecret;
  // Mutual TLS (lib/tls.h) for every connection, instead of the shared-secret handshake; null:
  // plain TCP with the HMAC handshake.
  std::shared_ptr<Tls> tls;
};

struct RuntimeStats {
  uint64_t messagesSent = 0;       // delivered and accepted by the peer
  uint64_t messagesReceived = 0;   // accepted from peers
  uint64_t messagesRejected = 0;   // peers' messages we refused (ProtocolError)
  uint64_t sendsRejected = 0;      // our messages a peer refused
  uint64_t messagesDropped = 0;    // full queues, broken links, unknown addresses
  uint64_t bytesSent = 0;          // encoded envelope bytes of delivered messages
  uint64_t bytesReceived = 0;
  uint64_t connects = 0;           // outbound links that reached ready
  uint64_t connectFailures = 0;    // failed dials or handshakes
  uint64_t disconnects = 0;        // ready links that broke
  uint64_t inboundRefused = 0;     // over maxInbound
  uint64_t pendingRefused = 0;     // over maxPending (+ memberReserve) with nothing to evict
  uint64_t pendingEvicted = 0;     // the oldest pending connection closed to admit a new one
  uint64_t sourceRefused = 0;      // over maxPendingPerSource
  uint64_t preAuthOversize = 0;    // closed for sending more than preAuthBytes unauthenticated
  uint64_t handshakeTimeouts = 0;  // inbound connections closed for not authenticating in time
  uint64_t localUpdates = 0;
  uint64_t suspicions = 0;         // members seen becoming suspect
  uint64_t repliesSent = 0;        // messages handed back on a peer's deliver() (return path)
  uint64_t repliesReceived = 0;    // messages a peer handed back on ours
  uint64_t clockJumps = 0;         // jumps of this node's wall clock (lib/clock-watch.h)
  int64_t lastClockJumpMs = 0;     // the last one (+ forward, - back)
};

// One row of the member table, for lib/ and `deltasync ctl members`.
struct MemberRow {
  ReplicaId id;
  std::string address;
  gossip::MemberState state;
  uint64_t incarnation;
  bool self;
};

// An address HOST:PORT split at its last ':' (the one place addresses are taken apart). A
// bracketed IPv6 host ("[fd00::5]:7000") keeps its brackets in `host`, as an address is built
// again from it; bareHost() drops them (the IP to resolve, or to compare with a peer's). Without a
// port (no ':', or only the colons of "[fd00::5]") the whole text is the host and the port is "".
struct HostPort {
  std::string host;
  std::string port;
  std::string bareHost() const {
    return host.size() >= 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  }
};
HostPort splitHostPort(const std::string& address);

// A TCP seed's address: HOST:PORT with a host and a port 1-65535 (anything else would only be
// dialled, failed and logged for ever). Throws std::invalid_argument saying what is wrong.
void checkSeedAddress(const std::string& address);

class Runtime {
 public:
  // `stateMutex` guards the engine's objects against readers on other threads (see above).
  // Peers authenticate by `secret` (HMAC), or by certificates when config.tls is set (then the
  // secret is optional: without it, peers without certificates are refused).
  Runtime(RuntimeConfig config, std::optional<gossip::Secret> secret, kj::Timer& timer, Dialer& dialer,
          std::shared_mutex& stateMutex);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Start-up only, before start() (durable storage): puts restored objects in the store (not
  // reported to listeners) and resumes the engine and membership (gossip::Replica::resume).
  void restore(std::vector<std::pair<std::string, gossip::Value>> objects, uint64_t seq, uint64_t incarnation);
  // See "Durability" above; called on this thread, without the state lock.
  void setPersist(std::function<bool()> persist) { persist_ = std::move(persist); }

  // Starts the timers and dials the seeds.
  void start();
  // Serves one inbound connection (its other end sees our Gatekeeper) from `source` (its IP
  // address; "" if unknown), if admitted (see "Inbound admission").
  void accept(kj::Own<kj::AsyncIoStream> stream, const std::string& source = {});
  size_t pendingInbound() const { return pending_; }
  // Announces that this node leaves (membership "left"), then stops gossiping. The promise
  // resolves once the announcement was delivered or after `graceMs`.
  kj::Promise<void> leave(uint64_t graceMs);

  // A local update (see ObjectStore::update); the caller holds the unique state lock (any thread).
  template <typename T, typename F>
  T update(const std::string& name, F&& mutator) {
    T delta = replica_.store().update<T>(name, std::forward<F>(mutator));
    ++stats_.localUpdates;
    return delta;
  }

  // Local updates made by f() as one unit (ObjectStore::beginUnit: one delta per object, one
  // log unit that peers join whole); the caller holds the unique state lock (any thread). If f
  // throws, what it applied is still reported (and the exception goes on).
  template <typename F>
  void unit(F&& f) {
    gossip::ObjectStore& store = replica_.store();
    store.beginUnit();
    try {
      f();
    } catch (...) {
      store.endUnit();
      throw;
    }
    store.endUnit();
  }

  // ObjectStore::updateInto, as update().
  template <typename T, typename F>
  void updateInto(const std::string& name, F&& mutator) {
    replica_.store().updateInto<T>(name, std::forward<F>(mutator));
    ++stats_.localUpdates;
  }

  // Loop thread: sends what the log holds to the neighbours now rather than at the next round
  // (Replica::flush), for writes whose futures wait for peers.
  void flush();
  // Loop thread: asks the neighbours to sync this node (Replica::requestSync); the request's id,
  // for engine().syncedPeers(). 0 when stopped.
  uint64_t requestSync();

  // Deletes object `name` for good (ObjectStore::erase); the caller holds the unique state lock.
  void erase(const std::string& name) {
    replica_.store().erase(name);
    ++stats_.localUpdates;
  }

  const RuntimeConfig& config() const { return config_; }
  // See "Offline" above.
  void setOffline(bool offline);
  bool offline() const { return offline_; }

  // Seeds at run time. addSeed dials `address` at once (online) and retries it as a configured
  // seed; false when it is a seed already or this node's own address; checkSeedAddress's error
  // when it is not HOST:PORT. removeSeed stops dialling it (members met through it stay
  // members); false when it was not a seed. seeds(): the addresses dialled, in the order given.
  bool addSeed(const std::string& address);
  bool removeSeed(const std::string& address);
  std::vector<std::string> seeds() const;
  ReplicaId id() const { return config_.id; }
  uint64_t nowMs() const;
  // This node's wall clock, ms since the epoch: what its writes are stamped with (lib/objects.h)
  // and received timestamps are held against (the engine's skew bound).
  static uint64_t wallMs();
  // Under the state lock (shared at least).
  const gossip::ObjectStore& store() const { return replica_.store(); }
  const gossip::Engine& engine() const { return replica_.engine(); }
  // Pruning of removed replicas (gossip/pruning.h): what this node did, and how many it forgot.
  const gossip::PruneStats& pruneStats() const { return replica_.pruner().stats(); }
  size_t forgottenReplicas() const { return replica_.store().forgottenReplicas().size(); }
  const gossip::Membership& membership() const { return *replica_.membership(); }
  std::shared_mutex& stateMutex() { return stateMutex_; }
  std::vector<MemberRow> members() const;
  // Under the shared state lock (localUpdates is counted by writers on any thread).
  RuntimeStats stats() const { return stats_; }
  const gossip::GatekeeperStats& gatekeeperStats() const { return *gatekeeperStats_; }
  size_t readyLinks() const;
  // Log entries the slowest neighbour has not acknowledged (under the shared state lock).
  uint64_t replicationLag() const;
  const Histogram& deliverLatency() const { return deliverLatency_; }
  size_t inboundConnections() const { return inbound_.size(); }

  // A local presence operation: f(PresenceTracker&), then the diffs it made go to the presence
  // listener. The caller holds the unique state lock (any thread).
  template <typename F>
  auto withPresence(F&& f) {
    auto flush = kj::defer([this] { flushPresence(); });
    return f(replica_.presence());
  }
  // Reads: under at least the shared state lock.
  const gossip::PresenceTracker& presence() const { return replica_.presence(); }
  // Called with the presence diffs of each step and local operation, under the unique state lock
  // (on whichever thread made them).
  // `wanted` says whether anyone listens now (read under the unique state lock; a listener that
  // registers takes a snapshot under the state lock first, so dropping the diffs made before
  // loses it nothing): when not, the diffs are dropped instead of coalesced.
  using PresenceListener = std::function<void(std::map<std::string, gossip::PresenceDiff>)>;
  void setPresenceListener(PresenceListener f, std::function<bool()> wanted) {
    onPresence_ = std::move(f);
    presenceWanted_ = std::move(wanted);
  }

  // Called with every change of the store (inside the change, under the unique state lock, on
  // whichever thread made it; see gossip/store.h). Register before start().
  void listen(gossip::ObjectStore::Listener f) { replica_.store().listen(std::move(f)); }
  // Called after every protocol step (on this thread, without the state lock): acks may have
  // arrived (lib/node.c++ completes write futures waiting for peers).
  void setStepListener(std::function<void()> f) { onStep_ = std::move(f); }
  // Called with each membership event (on this thread).
  void setMemberListener(std::function<void(const gossip::MemberEvent&)> f) { onMember_ = std::move(f); }
  // The administration capability served to authenticated peers (lib/control.h).
  void setControl(gossip::ControlFn control) { control_ = std::move(control); }

 private:
  struct Connection;
  struct Link;
  class ErrorHandler : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&& e) override;
  };

  // member: admitted as a live member's host while the pending slots were full (never evicted).
  // tlsPeer / tlsClient: what the peer's TLS certificate proved (a replica, or a control client).
  void serve(kj::Own<kj::AsyncIoStream> stream, std::optional<ReplicaId> tlsPeer, const std::string& source,
             bool member, bool tlsClient = false);
  // Admission of an unauthenticated connection from `source`: takes a pending slot, or counts,
  // logs and returns false. release() gives the slot back (authenticated, or gone).
  bool admit(const std::string& source, bool& member);
  void release(const std::string& source);
  bool memberHost(const std::string& source) const;
  void closeInbound(uint64_t serial);
  // Closes the unauthenticated inbound connection that has waited longest (not a member's
  // admitted under pressure); false if none.
  bool evictOldestPending();
  // Refuses (non-empty reason) a shared-secret peer from `source` authenticating as the id of a
  // live member whose address is an IP literal on another host (see "Who a peer may be").
  std::string vetPeer(ReplicaId peer, const std::string& source) const;
  // The stream under TLS (and the peer's id from its certificate) when configured; as is (id 0)
  // otherwise.
  // Dials address and, under TLS, runs the handshake (a seed and a member link open alike).
  kj::Promise<TlsStream> connectSecure(const std::string& address);
  kj::Promise<TlsStream> secure(kj::Own<kj::AsyncIoStream> stream);
  // The client half of authentication on `conn`: attach (TLS, peer known) or the HMAC handshake.
  kj::Promise<gossip::Authenticated> authenticateOn(Connection& conn, ReplicaId tlsPeer);
  void onMessage(ReplicaId from, gossip::Message message);
  void send(std::vector<gossip::Outgoing>& out);
  void enqueue(ReplicaId to, gossip::Message message);
  Link* linkFor(ReplicaId id);
  void pump(Link& link);
  void dropQueued(Link& link);  // its queued messages, counted as dropped
  // The return path (gossip/rpc.h): what we hold for `peer` while our link to it is not ready,
  // handed back on its deliver(); and the replies to our deliver() (as delivered by `peer`).
  std::vector<gossip::Message> takeReplies(ReplicaId peer);
  void takeRepliesFrom(ReplicaId peer, capnp::List<wire::Envelope>::Reader replies);
  void dial(Link& link);
  void broken(ReplicaId id, uint64_t generation, const kj::Exception* why);
  void dialSeed(size_t index);
  // A protocol step: f() (which appends to out_) under the unique state lock, with the presence
  // step that falls due and the diffs to the listener; then out_ is sent and the member events
  // go to links and the listener. If f throws, nothing is sent and the error propagates.
  template <typename F>
  void step(F&& f);
  void flushPresence();  // under the unique state lock
  // Logs what pruning did in a step: replicas forgotten, this replica pruned, why a candidate
  // waits (on change only).
  void notePruning();
  std::set<ReplicaId> forgottenSeen_;
  bool prunedSelfSeen_ = false;
  std::string blockedSeen_;
  // Its address answers as another replica: Replica::retire, and nothing more is sent to it.
  void retireLater(ReplicaId id);
  void signOfLife(ReplicaId id);  // the peer shows it is up: retry its idle link now (rate-limited)
  kj::Promise<void> tickLoop();
  void maintain(uint64_t now);  // seeds, idle links, the auth-failure log
  void watchClock();            // ClockWatch against the real monotonic clock: count, log
  uint64_t jitter(uint64_t ms);
  void dropLater(kj::Own<Connection> connection);

  RuntimeConfig config_;
  std::optional<gossip::Secret> secret_;
  kj::Timer& timer_;
  Dialer& dialer_;
  std::set<ReplicaId> retired_;  // ids whose address answers as another replica; until heard alive
  kj::TimePoint start_;
  uint64_t rng_;
  std::shared_mutex& stateMutex_;
  gossip::Replica replica_;
  std::shared_ptr<gossip::GatekeeperStats> gatekeeperStats_;  // of every inbound connection's gatekeeper
  uint64_t authFailuresLogged_ = 0;
  gossip::ControlFn control_;
  std::map<ReplicaId, std::unique_ptr<Link>> links_;
  struct Seed {
    std::string address;
    bool dialing = false;
    bool answered = false;
    uint64_t retryAtMs = 0;
    uint64_t backoffMs = 0;
    bool removed = false;  // by removeSeed: never dialled again (kept: a dial in flight holds its index)
  };
  std::vector<Seed> seeds_;
  struct Inbound {
    kj::Own<Connection> conn;
    std::string source;
    bool member = false;  // see serve()
    bool authenticated = false;
  };
  std::map<uint64_t, Inbound> inbound_;  // by serial
  size_t pendingTls_ = 0;                 // inbound TLS handshakes in flight
  size_t pending_ = 0;                    // admitted, not yet authenticated (TLS included)
  std::map<std::string, uint32_t> pendingBySource_;
  uint64_t nextSerial_ = 1;
  std::vector<gossip::Outgoing> out_;  // scratch
  bool stopped_ = false;
  bool offline_ = false;
  RuntimeStats stats_;
  ClockWatch clockWatch_;
  Histogram deliverLatency_;
  std::function<void(const gossip::MemberEvent&)> onMember_;
  PresenceListener onPresence_;
  std::function<bool()> presenceWanted_;
  std::function<void()> onStep_;
  std::function<bool()> persist_;
  ErrorHandler errors_;
  kj::TaskSet tasks_;
};

}  // namespace deltasync
