// The replica core: one node's protocol as one pure state machine. It owns the object store
// (gossip/store.h), the anti-entropy engine (gossip/engine.h) and membership
// (gossip/membership.h), and is the only place that steps them together:
//   - a received message goes to membership (Ping, PingReq, PingAck) or to the engine (the
//     rest); the sender is the transport's authenticated peer;
//   - tick(now) runs each protocol's round when it is due: membership every membershipTickMs
//     (the resolution of its probe timers), the engine every gossipIntervalMs;
//   - after every membership step, its view becomes the engine's neighbour set, and its member
//     events queue for takeEvents().
// Inputs: local changes (through store()), received messages, ticks, seeds, leave. Outputs:
// messages to send (appended to `out`), member events, and the store's change reports.
// The presence tracker (gossip/presence.h) and pruning (gossip/pruning.h) ride on the store and
// on membership, stepped by stepMaintenance() (see there). Messages from a replica the cluster
// pruned are refused (ProtocolError).
//
// No sockets, threads or clocks: time comes in as milliseconds from the driver (its monotonic
// time for the protocol's timers; its wall clock, where received timestamps are checked). lib/runtime
// drives it with a kj::Timer and Cap'n Proto RPC; tests/sim drives the very same class on
// simulated time over a simulated network. Drivers call tick() at nextTickMs() (or later: a
// late tick runs each due round once, it never bursts to catch up).
//
// Without membership (ReplicaConfig::membership false: the simulator's fixed graphs and the
// engine tests), neighbours come from setNeighbors() instead.
//
// Errors: receive() throws ProtocolError or DecodeError-derived errors for a message that does
// not fit (nothing of it applied); KindMismatch comes from the store's local mutators.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gossip/engine.h"
#include "gossip/limits.h"
#include "gossip/membership.h"
#include "gossip/presence.h"
#include "gossip/pruning.h"
#include "gossip/store.h"

namespace deltasync::gossip {

struct ReplicaConfig {
  uint64_t gossipIntervalMs = 100;  // one engine round
  uint64_t membershipTickMs = 50;   // resolution of membership's probe and suspicion timers
  bool membership = true;           // false: fixed neighbours through setNeighbors()
  EngineConfig engine;
  MembershipConfig membershipConfig;
  PresenceConfig presence;
  Limits limits;  // the peers' rules that the presence tracker holds its own writes to
  uint64_t presenceTickMs = 1000;  // resolution of permdown
  PruneConfig pruning;             // removed replicas' metadata (gossip/pruning.h; needs membership)
};

class Replica {
 public:
  // `address` is where peers reach this replica (told to them through membership).
  Replica(ReplicaId self, std::string address, ReplicaConfig config = {});
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  ReplicaId self() const { return store_.self(); }
  const ReplicaConfig& config() const { return config_; }

  // Local writes go through the store (update(), applyLocal()); it reports them to the engine.
  ObjectStore& store() { return store_; }
  const ObjectStore& store() const { return store_; }
  const Engine& engine() const { return engine_; }
  // Null without membership.
  const Membership* membership() const { return membership_.get(); }

  // A message from `from`, the peer the transport authenticated. wallMs: this node's wall clock
  // (ms since the epoch), which received timestamps are held against (Engine::receive).
  void receive(ReplicaId from, const Message& message, uint64_t nowMs, uint64_t wallMs, std::vector<Outgoing>& out);
  // Runs the rounds that are due at nowMs.
  void tick(uint64_t nowMs, std::vector<Outgoing>& out);
  // When tick() next has a round to run.
  uint64_t nextTickMs() const;
  // Sends the log's new entries to the neighbours now, not at the next gossip round
  // (Engine::flush): for writes that wait for their peers.
  void flush(std::vector<Outgoing>& out) { engine_.flush(out); }
  // Asks the neighbours to sync us (Engine::requestSync): for reads that wait for their peers.
  uint64_t requestSync(std::vector<Outgoing>& out) { return engine_.requestSync(out); }

  // Start-up only (durable storage), after the store's restore() calls and before any step: the
  // previous run under this id reached engine sequence `seq` and membership incarnation
  // `incarnation` (Engine::resume, Membership::resume).
  void resume(uint64_t seq, uint64_t incarnation);

  // A member to join through (its id learnt from the transport's handshake with its address).
  void addSeed(ReplicaId id, const std::string& address, uint64_t nowMs);
  // Announces a voluntary leave; the driver stops ticking shortly after.
  void leave(std::vector<Outgoing>& out);
  // id's address answers as another replica (Membership::retire; nothing without membership).
  void retire(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out);
  // Fixed neighbours (only without membership: std::logic_error otherwise).
  void setNeighbors(std::vector<ReplicaId> neighbors);

  // Member events since the last call (empty without membership).
  std::vector<MemberEvent> takeEvents() { return std::exchange(events_, {}); }

  // The presence tracker (gossip/presence.h) over this replica's store.
  PresenceTracker& presence() { return presence_; }
  const PresenceTracker& presence() const { return presence_; }
  // Pruning of removed replicas (gossip/pruning.h; it runs only with membership).
  const Pruner& pruner() const { return pruner_; }

  // Maintenance: the steps that write the store on this node's own behalf, driven by membership's
  // events and by time: the presence tracker (member events, permdown) and pruning (votes, marks).
  // They do not run inside receive() and tick(): those run while other threads may read the store
  // (lib/runtime ticks without its state lock), and these write the store and the tracker's
  // indexes. So a driver calls stepMaintenance() after each step when maintenancePending(),
  // holding the store exclusively. wallMs: the driver's wall clock (pruning's gone marks).
  bool maintenancePending(uint64_t nowMs) const {
    return !presenceEvents_.empty() || nowMs >= nextPresenceMs_ || (membership_ && nowMs >= nextPruneMs_);
  }
  void stepMaintenance(uint64_t nowMs, uint64_t wallMs);

 private:
  void afterMembershipStep();

  ReplicaConfig config_;
  ObjectStore store_;  // before engine_ and presence_: they listen to it
  Engine engine_;
  PresenceTracker presence_;
  Pruner pruner_;
  uint64_t nextPruneMs_ = 0;
  std::vector<MemberEvent> presenceEvents_;
  uint64_t nextPresenceMs_ = 0;
  std::unique_ptr<Membership> membership_;
  std::vector<MemberEvent> events_;
  uint64_t nextGossipMs_ = 0;
  uint64_t nextMembershipMs_ = 0;
};

}  // namespace deltasync::gossip
