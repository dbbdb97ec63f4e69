// Membership and failure detection: SWIM (Das, Gupta, Motivala 2002) with incarnation numbers,
// suspicion and refutation, a Lifeguard-style suspicion timeout that shrinks with independent
// confirmations (Dadgar et al. 2018), and a bounded partial view.
//
// Pure, like the engine: time is an input (milliseconds, from the caller), messages go out
// through a vector, randomness comes from a seeded generator in the config.
//
// Member table: every member ever heard of, with (incarnation, state, address). An update
// replaces the recorded one iff it has a higher incarnation, or the same incarnation and a
// stronger state (alive < suspect < down < left). Only a member itself raises its incarnation:
// hearing itself suspected, declared down or left (at its current incarnation or above) it
// refutes with alive at a higher one. So no statement by a third party is final: the member
// can always refute, because an incarnation can always grow: a message with an update more than
// kMaxIncarnationLead (2^32) beyond the incarnation known here for that member (0 for one not
// heard of; ours for this node) is refused whole (ProtocolError). A member's incarnation rises
// by one per refutation, so no real update comes near that lead; without it, one forged
// "left at 2^64 - 1" evicted a member for good (its refutation wrapped to 0). With it, reaching
// the top takes 2^31 forged rounds, each refuted by the victim. Down members turn "removed" after removeAfterMs and are kept as
// tombstones (so old alive updates cannot resurrect them) for tombstoneMs.
//
// Partial view (bounded cost per node): out-view = the viewSize alive-or-suspect members with the
// smallest rendezvous hash h(self, m) (a random graph that changes little when members come and
// go), plus in-view = members that probed us within inViewExpiryMs *because we are in their
// out-view* (Ping.outView), so every node is probed by somebody even if nobody picked it, and
// views do not grow by reciprocity. view() = out ∪ in is what this node probes and what the
// gossip engine pushes deltas to; its size does not grow with the cluster.
//
// Probing: every probeIntervalMs, ping the next member of the view (round-robin, reshuffled
// each pass); without an ack after probeTimeoutMs, ping it once more directly and ask
// indirectProbes other view members to ping it (PingReq); without any ack by the end of the
// period, suspect it. (At 10% i.i.d. loss a probe then fails falsely with probability
// ~0.19 * 0.19 * 0.34^4 = 5e-4.) Besides its probe, each period a node pings one member that
// turned suspect in its table (whoever suspected it) and one member that went down less than
// removeAfterMs ago, in turn. Such a ping carries the receiver's record, so a live suspect
// refutes in its ack a round trip after the suspicion reached the pinger (instead of whenever
// somebody happened to write to it: that is what lets the suspicion timeout be short without
// false downs), and after a partition heals the sides find each other within about a period.
// A suspect is declared down when its suspicion timeout expires:
//     min = suspicionMinMult * max(1, log10 N) * probeIntervalMs,  max = suspicionMaxMult * min,
//     timeout = max(min, max - (max - min) * log(C + 1) / log(K + 1))
// with C independent confirmations (distinct members reporting the same suspicion) and K =
// indirectProbes.
//
// Dissemination: every message piggybacks up to maxPiggyback queued updates (fewest sent
// first), each sent about retransmitMult * ceil(log2(N + 1)) times, always led by the sender's
// own record and, when the receiver is suspect or down in the sender's table, the receiver's
// record (so it can refute at once). The queue holds at most maxQueue updates: beyond that, the
// most-sent "alive" updates are dropped first (table sync below covers them); suspicions,
// downs, leaves and refutations are never dropped for space. Down, left, a member back from
// down, and this node's own suspicions and confirmations are also flooded to the view at once
// (so the other members probe the suspect, and confirm or hear its refutation, within a period).
//
// Table sync (push-pull, for joins and after partitions): pings and acks carry a hash of the
// sender's live ids; on a mismatch the receiver of a ping answers with a sample of its table
// (recently changed members first, then a random fill, at most maxSyncMembers), and the pinger,
// seeing a mismatching ack, sends its own sample back. At most one sample per syncIntervalMs
// goes to each member, so what a node sends in samples is bounded by the members that ping it
// (its view, in-view included), not by the cluster. (Before, one sample per syncIntervalMs left a
// node in all: a joiner whose seed had just answered another mismatch learned of the others by
// dissemination only, a probe period or more later.) Samples are applied but not re-gossiped.
// Every syncIntervalMs a node also pings one random down member: after a partition heals, the
// two sides find each other again this way and refute.
//
// Cost per node and probe period: one probe (ping + ack, plus indirect probes on failure) with
// at most maxPiggyback updates; no scan of the member table except when the view is rebuilt
// (a live member joined or left) and a tombstone sweep every tombstone check.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "gossip/errors.h"
#include "gossip/messages.h"

namespace deltasync::gossip {

inline constexpr uint64_t kMaxIncarnationLead = uint64_t{1} << 32;

struct MembershipConfig {
  uint64_t probeIntervalMs = 500;
  uint64_t probeTimeoutMs = 200;
  uint32_t indirectProbes = 4;
  uint32_t viewSize = 4;
  double suspicionMinMult = 1;
  double suspicionMaxMult = 2;
  uint32_t retransmitMult = 3;
  uint32_t maxPiggyback = 8;
  uint32_t maxQueue = 64;
  uint32_t maxSyncMembers = 1024;
  uint64_t inViewExpiryMs = 20000;
  uint64_t removeAfterMs = 30000;
  uint64_t tombstoneMs = 3600000;
  uint64_t syncIntervalMs = 2000;
  uint64_t seed = 1;
};

struct MemberInfo {
  ReplicaId id;
  uint64_t incarnation = 0;
  MemberState state = MemberState::alive;
  std::string address;
  bool removed = false;
};

// A lifecycle event for lib/ and the presence tracker. removed: a down member was dropped.
struct MemberEvent {
  ReplicaId id;
  MemberState state;
  bool removed = false;
  bool operator==(const MemberEvent&) const = default;
};

class Membership {
 public:
  Membership(ReplicaId self, std::string address, MembershipConfig config = {});

  ReplicaId self() const { return self_; }
  uint64_t incarnation() const { return incarnation_; }

  // Start-up only (durable storage): this replica ran before under its id and reached
  // `incarnation`. It starts above it, so that its first alive overrides whatever the cluster
  // last heard of it (suspect, down, left) without a round of refutation.
  void resume(uint64_t incarnation) { incarnation_ = std::max(incarnation_, incarnation + 1); }

  // A member to join through (its id known from the transport handshake); pinged at the next
  // tick, so its ack's table sample reaches this node without waiting for the first probe.
  void addSeed(ReplicaId id, std::string address, uint64_t nowMs);

  void tick(uint64_t nowMs, std::vector<Outgoing>& out);
  // Ping, PingReq and PingAck; throws ProtocolError for anything else or a sender mismatch.
  void receive(ReplicaId from, const Message& message, uint64_t nowMs, std::vector<Outgoing>& out);

  // Announces a voluntary leave (flooded to the view); the node should stop shortly after.
  void leave(std::vector<Outgoing>& out);
  // The transport found id's address answering as another replica (id restarted under a new
  // one, or its address was given to another node): id is declared down now, and flooded, rather
  // than probed until its suspicion times out. A member still alive elsewhere refutes as usual.
  void retire(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out);

  // Sorted; see the top of this file.
  const std::vector<ReplicaId>& view();
  // Alive or suspect members, self included, sorted by id.
  std::vector<ReplicaId> liveMembers() const;
  const MemberInfo* member(ReplicaId id) const;
  // Every member this node knows of (self excluded), removed ones included, sorted by id.
  std::vector<MemberInfo> members() const;
  // The same, unsorted and not copied: f(const MemberInfo&).
  template <typename F>
  void forEachMember(F&& f) const {
    for (const auto& [id, m] : members_) f(m.info);
  }
  size_t memberCount() const { return members_.size(); }
  // Events since the last call.
  std::vector<MemberEvent> takeEvents() { return std::exchange(events_, {}); }

 private:
  struct Member {
    MemberInfo info;
    uint64_t changedAtMs = 0;
    std::vector<ReplicaId> confirmations;
    uint64_t hash = 0;  // rendezvous hash for the out-view
    bool sampled = false;  // a table sample went to it, at sampledAtMs
    uint64_t sampledAtMs = 0;
  };
  struct Broadcast {
    MemberUpdate update;
    uint32_t sent = 0;
    bool droppable = false;  // a join: may give way to more urgent news
  };
  struct Relay {
    ReplicaId requester;
    uint64_t requesterSeq;
    ReplicaId target;
    uint64_t expiresAtMs;
  };

  uint64_t random();
  size_t liveCount() const;
  uint32_t retransmitLimit() const;
  uint64_t suspicionTimeout(const Member& m) const;
  // Throws ProtocolError if an update's incarnation is more than kMaxIncarnationLead ahead.
  void checkIncarnations(const std::vector<MemberUpdate>& ups) const;
  // Applies an update; returns true if the table changed.
  bool apply(const MemberUpdate& u, ReplicaId reporter, uint64_t nowMs, std::vector<Outgoing>& out,
             bool rebroadcast = true);
  void setState(Member& m, MemberState s, uint64_t incarnation, uint64_t nowMs);
  // Adds (sign = +1) or removes (-1) m's contribution to the live count, table hash and the
  // suspect / pending-removal sets, according to its current state.
  void track(const Member& m, int sign);
  std::vector<MemberUpdate> sample();
  bool maySample(ReplicaId to, uint64_t nowMs);  // at most one table sample per syncIntervalMs to each member
  void enqueue(const MemberUpdate& u, bool droppable = false);
  MemberUpdate recordOf(const Member& m) const;
  MemberUpdate selfRecord() const;
  std::vector<MemberUpdate> piggyback(ReplicaId to);
  void flood(const MemberUpdate& u, std::vector<Outgoing>& out);
  void sendPing(ReplicaId to, uint64_t seq, std::vector<Outgoing>& out);
  void suspect(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out);
  // Reports a live member as `s` on this node's own authority (suspect, retire).
  void declare(ReplicaId id, MemberState s, uint64_t nowMs, std::vector<Outgoing>& out);
  void rebuildView(uint64_t nowMs);
  ReplicaId nextProbeTarget();

  ReplicaId self_;
  std::string address_;
  MembershipConfig config_;
  uint64_t incarnation_ = 0;
  bool left_ = false;
  uint64_t rng_;
  std::unordered_map<ReplicaId, Member> members_;  // excludes self
  std::vector<Broadcast> queue_;  // at most maxQueue (+1 while adding), one per member
  std::vector<MemberEvent> events_;
  std::vector<ReplicaId> view_;
  bool viewDirty_ = true;
  size_t live_ = 1;          // alive or suspect, self included
  uint64_t tableHash_ = 0;   // sum of mix64(id) over those
  std::set<ReplicaId> suspects_, pendingRemoval_, downs_;
  std::map<ReplicaId, uint64_t> heard_;  // in-view: member -> when it last probed us
  std::vector<ReplicaId> outView_;
  bool outDirty_ = true;
  uint64_t nextExpiryAtMs_ = 0;
  std::vector<ReplicaId> recent_;  // recently changed members, newest last (at most 64)
  uint64_t nextSweepAtMs_ = 0;
  uint64_t lastNow_ = 0;
  // probing
  std::vector<ReplicaId> probeOrder_;
  size_t probeNext_ = 0;
  uint64_t nextProbeAtMs_ = 0;
  bool started_ = false;
  uint64_t nextSyncAtMs_ = 0;
  uint64_t seq_ = 0;
  struct Probe {
    bool active = false;
    ReplicaId target;
    uint64_t seq = 0;
    uint64_t sentAtMs = 0;
    bool indirect = false;
  } probe_;
  std::map<uint64_t, Relay> relays_;
  ReplicaId lastDownPinged_;      // recent downs are pinged in turn (tick)
  std::deque<ReplicaId> urgent_;  // turned suspect: probed before the round-robin (tick)
  std::vector<ReplicaId> joinPings_;  // seeds added since the last tick: pinged at once
};

}  // namespace deltasync::gossip
