// The anti-entropy engine: causal delta-state replication of one node's objects.
//
// Pure: inputs in (local updates, messages received, ticks, the current neighbour set), messages
// out. No sockets, threads or clocks: time is the count of tick() calls. lib/ drives it over
// Cap'n Proto RPC; tests/sim drives the very same engine over a simulated network.
//
// Algorithm: Almeida, Shoker, Baquero, "Delta state replicated data types" (JPDC 2018),
// Algorithm 2 (delta-intervals with acks), run once over the node's whole lattice
// name -> (kind, CRDT), with Enes et al. (ICDE 2019)'s two refinements:
//   BP  never send a peer the log entries that came from it;
//   RR  on receipt, strip from a delta what the state already has (crdt strip()); join and log
//       only the rest, so what a node forwards is only what was news to it.
//
// State:
//   store_    name -> Value (one kind per name, for ever): gossip/store.h, shared with lib/;
//   log_      entries (seq, origin, name, delta) with consecutive seqs logStart_ .. seq_-1; a
//             local update and every inflating part of a received delta is one entry;
//   per peer  acked: the peer has joined everything of our log below it (its acks, plus entries
//             that came from it: BP); recv: everything of *its* log below recv has been joined
//             here (what we ack).
//
// Protocol (messages in gossip/messages.h, wire in wire.capnp):
//   tick: to each neighbour j with acked(j) < seq_, a DeltaPush of D[from, to) joined per
//         object, minus j's own entries (BP), bounded by maxPushBytes (a longer interval goes
//         in several pushes, pipelined; an unacked push is resent after retransmitTicks). The
//         push carries base = acked(j), what j has acked, so j may count [from, to) as
//         contiguous when from <= max(base, recv): acks stay exact under loss and reordering.
//   lazy push (EngineConfig::offers, the default): instead of the push, an Offer of
//         [from, to) naming, per object, the store dots of the interval (entries' own dots;
//         minus BP, minus dots j is known to hold), with base = acked(j). j answers with a
//         Request for the dots it lacks and has not asked another peer for within claimTicks
//         (its "claims"); the push that answers it (partial) holds only the requested store
//         entries plus everything of the interval that has no dots of its own (removal and
//         superseded context, counters, registers). For an offer marked complete (nothing but
//         announced entries) j owes the ack as soon as it holds every offered dot, whoever
//         delivered them: one it wants nothing of is acked without a push. An interval with
//         nothing to announce is pushed at once. One interval per peer is in flight; the offer
//         is resent after retransmitTicks without an ack, and its requests are answered at most
//         once per tick. At each tick, j asks every peer that offered dots it still lacks once
//         their claims expired (a lost request or push costs about one round, not a timeout);
//         an offer not renewed for 4 x retransmitTicks is forgotten (its sender stopped).
//         A peer that never acked is offered our log from the start while the log still holds
//         it (logStart_ == 0) instead of a digest: it asks only for what it lacks.
//         A backlog (an interval cut at maxPushBytes, or entries flush() asked for while an
//         interval was in flight) is not paced by ticks: the ack that closes such an interval
//         sends the next one at once, so a burst crosses in round trips
//         (10k presences tracked at once: one interval per round trip, not per gossip interval),
//         while small intervals still wait for the tick and batch what accumulates meanwhile.
//         So each new entry crosses to each node about once, whatever the number of paths.
//   catch-up: when j has never acked, or acked(j) < logStart_ (the log was collected), a Digest
//         of per-object content hashes instead; j answers StateRequest(names that differ) or,
//         when nothing differs, Ack(seq); the request is served with StateChunks of at most
//         maxChunkBytes (estimated) holding the current state of those objects (a larger
//         object split into independently joinable parts, gossip/split.h); j acks the
//         digest's seq once it holds every chunk. Lost pieces: the digest is resent after
//         catchupRetryTicks; each round sends only what still differs.
//   units: the store's units (gossip/store.h: a batch of local writes, what one received message
//         joined) are logged as consecutive entries and never split by a cut at maxPushBytes
//         (a push holds at least one whole unit, however large), so what a receiver joins from
//         one push holds every unit of it whole; see "Batch atomicity" below for the receiver.
//   GC:   log entries below min(acked(j)) over the neighbours are dropped; the log never holds
//         more than maxLogEntries, nor more than maxLogBytes of deltas in memory beside its
//         newest entry (neighbours left behind catch up by digest).
//
// Invariants (checked by tests/sim): every delta joined here is logged (unless RR found it
// redundant) until every neighbour acked it; acked(j) <= seq_; recv(j) only counts contiguous
// intervals; an object's kind never changes. With lazy push, also:
//   - only store entries are ever left out of a push, each together with its own dot and
//     nothing else: a removal or superseded dot in the context always travels (a receiver that
//     has *seen* a dot may still hold its entry, which that context dot removes);
//   - an entry is left out for j only if j holds its dot (j offered or pushed it to us) or j's
//     request did not ask for it (j holds it, or asked another peer); a receiver that holds a
//     dot joins the delta with and without that entry to the same state;
//   - j acks an offered interval (after the partial push that answers its request, or, for a
//     complete offer, once it holds the dots) only if that is the offer j tracks for us, and
//     only once j's contexts contain every dot the offer named (when dots
//     were claimed from a third peer the ack waits for them: "deferred ack"); a stale answer
//     is not joined, nor acked. So acked(j) still means "j holds all of our log below it", and
//     log GC stays safe;
//   - a request is answered only for the open offer (its [from, to)), at most once per tick,
//     with at most the entries it names plus the interval's dot-less parts.
//   - knowledge of what j holds (kept for neighbours only) grows only from j's own offers and
//     pushes; it is forgotten (never wrong, only less useful) for objects outside the interval
//     being offered and once j has acked our whole log, so it stays bounded.
//
// Batch atomicity and read safety: no read shows a state that no sequence of the writes could
// produce. A unit (a batch of writes, gossip/store.h) is joined whole or not at all, and a
// delta's removals (context dots that are no entry's: a remove, or the entries a write
// superseded) only together with, or after, the entries that superseded them, so a key that was
// only ever overwritten never vanishes from the store, and no Change reports it gone. Both follow
// from one rule: what a receiver joins of a sender's log is whole intervals [from, to) (cut only
// between units), or what it already holds:
//   - a push joins when it is the whole interval and contiguous with what we hold;
//   - an answer to our request may lack the offered entries we asked another peer for: it is
//     held (with any earlier answer to the same offer) until every offered dot is here, then
//     joined as one unit, just before the ack. Two answers that each wait for the other's dots
//     are resolved when the claims expire: the dots are asked of their offerer again. If the
//     offer is replaced or forgotten, what is held is dropped: no ack covered it, so the sender
//     sends it again;
//   - a push we will not ack (a stale answer, an eager push past a gap) is not joined, for the
//     same reason;
//   - a state transfer of at most maxHeldChunks chunks is held until every chunk is here and
//     joined as one unit; a stale transfer's chunks are dropped. A larger transfer (a node
//     catching up on more than maxHeldChunks x maxChunkBytes of differing state) is joined as
//     it arrives, keeping only its removal-only parts (gossip/split.h's context parts) back until
//     every chunk is here: read-safe, but a batch may show partly applied until the transfer
//     ends (the documented limit; holding a transfer of any size whole would need the whole of
//     it to arrive in one round, which a lossy link may never give).
// tests/sim/read-safety-test checks it under every fault the simulator makes.
//
// Clock skew: last-writer-wins orders writes by hybrid-logical timestamps (crdt/hlc.h), so a
// writer whose clock runs ahead wins every concurrent write until real time catches up. A
// DeltaPush or StateChunk with a timestamp more than maxForwardSkewMs ahead of the receiver's
// wall clock is refused whole, before anything of it is joined (ClockSkewRefused): joining its
// other objects and acking would lose the refused one for good, and joining an object's other
// entries but not its skewed one would break read safety. Not acked, the interval comes again
// and is accepted once our clock is within the bound of the stamp, so the cost of a skewed
// writer is delay of what travels with its writes, never loss. stats().skewRefused counts the
// refusals and clockAhead() the largest skew seen per peer (lib/ logs and exports both).
//
// Errors: a message that contradicts the local state (an object of another kind) throws
// ProtocolError before anything from it is applied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crdt/hlc.h"
#include "gossip/errors.h"
#include "gossip/messages.h"
#include "gossip/split.h"
#include "gossip/store.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

struct EngineConfig {
  size_t maxPushBytes = 64 << 10;   // estimated encoded bytes of one DeltaPush's objects
  size_t maxChunkBytes = 64 << 10;  // estimated encoded bytes of one StateChunk's objects
  uint32_t retransmitTicks = 3;     // resend an unacked push after this many ticks
  uint32_t catchupRetryTicks = 6;   // resend a digest after this many ticks without progress
  size_t maxLogEntries = 1 << 16;   // oldest entries beyond this are dropped
  size_t maxLogBytes = 64 << 20;    // and beyond this many bytes of logged deltas (memoryBytes)
  bool backPropagation = true;      // BP (off only for comparison experiments)
  bool removeRedundant = true;      // RR (off only for comparison experiments)
  // Lazy push (Offer -> Request -> DeltaPush): announce the interval's store dots first and send
  // only the entries the peer asks for. Off: the eager push of session 2 (for comparison).
  bool offers = true;
  // Dots asked of one peer are not asked of another until this many ticks have begun (the
  // answer normally takes one round trip, a fraction of a tick). 1 re-asks soon after a loss,
  // at the price of some requests sent while answers are still in flight; 2 sends fewer
  // requests but spreads slower under loss (bench/RESULTS.md has both).
  uint32_t claimTicks = 1;
  // Peers contacted per tick: 0 = every neighbour; k = k neighbours drawn at random each tick
  // (classic gossip fan-out; acks are still kept for every neighbour).
  uint32_t fanout = 0;
  // Baseline for experiments only: state-based anti-entropy (every tick, the whole state to the
  // contacted neighbours; never quiet). Not a mode to deploy.
  bool shipState = false;
  // Clock skew: a received delta carrying a timestamp more than this far ahead of the receiver's
  // wall clock is refused whole (the HLC's bound, crdt/hlc.h; see "Clock skew" above).
  uint64_t maxForwardSkewMs = crdt::HybridLogicalClock::kDefaultMaxForwardSkewMillis;
  // A state transfer of at most this many chunks is joined whole, once its last chunk is here (a
  // batch is never seen half made); a larger one as it arrives (see "Batch atomicity"). At the
  // defaults, transfers of up to 4 MiB.
  uint32_t maxHeldChunks = 64;
};

struct EngineStats {
  uint64_t pushesSent = 0, acksSent = 0, digestsSent = 0, requestsSent = 0, chunksSent = 0;
  uint64_t deltasJoined = 0;     // received object deltas that inflated the state
  uint64_t deltasRedundant = 0;  // received object deltas RR found fully known
  uint64_t deltasRefuted = 0;    // received object deltas that claimed our dots (object.h, refute)
  uint64_t offersSent = 0, offerRequestsSent = 0;
  uint64_t acksDeferred = 0;     // pushes whose ack waited for dots asked of another peer
  uint64_t heldRefused = 0;      // held-back parts the store refused once released (kind clash)
  uint64_t skewRefused = 0;      // messages refused for a timestamp beyond maxForwardSkewMs
};

// How far ahead of our wall clock one peer's timestamps have been seen (Engine::clockAhead).
struct PeerClockAhead {
  ReplicaId peer;
  uint64_t maxAheadMs;  // the largest (timestamp - wall clock) of any delta it sent, refused or not
};

class Engine {
 public:
  // Replicates `store`: logs every change the store reports (local or remote) and joins what
  // peers send into it. The store must outlive the engine and not change after the engine is
  // destroyed (its listener points here); the replica core (gossip/replica.h) owns both.
  explicit Engine(ObjectStore& store, EngineConfig config = {});
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  ReplicaId self() const { return self_; }
  const EngineConfig& config() const { return config_; }

  // The neighbours this node pushes to (a partial view chosen by membership). Peers that leave
  // the set stop holding back log GC; peers that join it are caught up by digest.
  void setNeighbors(std::vector<ReplicaId> neighbors);
  const std::vector<ReplicaId>& neighbors() const { return neighbors_; }

  // One gossip round: appends the messages to send.
  void tick(std::vector<Outgoing>& out);

  // Sends what the log holds beyond what each neighbour was sent, now rather than at the next
  // round: at once to neighbours with nothing in flight, and to the others as soon as the
  // interval in flight is acked (as a backlog's next one). What a write that waits for its
  // peers calls (lib/: WriteTo), so that it does not wait up to a gossip interval. Time does not
  // advance (retransmissions and claims still count ticks), and nothing already in flight is
  // sent again.
  void flush(std::vector<Outgoing>& out);

  // Reads that wait for their peers (lib: ReadFrom): asks every neighbour how far its log goes
  // and to send it now (SyncRequest); returns the request's id. syncedPeers(id) counts the
  // neighbours that answered it (or a later request) and whose log we have joined up to their
  // answer: we hold everything they held when they answered. A neighbour that is not ours to
  // push to does not answer (we would never get its log); an answer from a peer that is not our
  // neighbour is ignored (we do not track what we joined of its log).
  uint64_t requestSync(std::vector<Outgoing>& out);
  uint32_t syncedPeers(uint64_t id) const;

  // A message from `from` (the transport's authenticated peer); wallMs is this node's wall clock
  // (ms since the epoch: the time its own writes are stamped with). Throws ProtocolError when
  // the message's sender is not `from`, it contradicts local state or it carries a timestamp
  // beyond maxForwardSkewMs (ClockSkewRefused); nothing is applied then.
  void receive(ReplicaId from, const Message& message, uint64_t wallMs, std::vector<Outgoing>& out);

  // Peers whose timestamps were seen ahead of our wall clock, by id.
  std::vector<PeerClockAhead> clockAhead() const;

  // Start-up only, before anything was logged (durable storage): the store holds state restored
  // from disk and the previous run's log is gone. Sequence numbers go on from `seq`, at least the
  // last one any peer was sent (lib/storage commits seq before anything is sent), so no peer's
  // ack runs ahead of our log; the log starts there, so every neighbour catches up by digest.
  void resume(uint64_t seq);

  const ObjectStore& store() const { return store_; }
  uint64_t seq() const { return seq_; }
  uint64_t logStart() const { return logStart_; }
  size_t logSize() const { return log_.size(); }
  size_t logBytes() const { return logBytes_; }
  uint64_t ackedBy(ReplicaId peer) const;
  const EngineStats& stats() const { return stats_; }

 private:
  // A logged object name, shared by every entry of the object in the log (names_).
  using Name = std::pair<const std::string, size_t>;  // name, entries that hold it
  // A delta held out of line: every delta but one write (LogEntry).
  struct Boxed {
    Value delta;
    size_t memory;         // what the entry holds in memory (counted against maxLogBytes)
    mutable size_t bytes;  // entrySize(), 0 until first asked
  };
  // One log entry: 88 bytes, 5 to a deque node. The delta of one write (gossip/compact.h
  // isOneWrite: a new key or element) is held as its compact encoding, references 0 standing for
  // this replica (the bytes a push of ours carries), inline when they fit in kInlineBytes, else in
  // an exact-size heap buffer: a Value is 360 bytes whatever it holds, so such a write logged as a
  // Value took a 512-byte deque node and heap copies of its strings. Every other delta is boxed
  // (a Value out of line), where the Value's fixed size is small beside its content.
  class LogEntry {
   public:
    static constexpr size_t kInlineBytes = 64;
    LogEntry(ReplicaId origin, Name* name) : origin_(origin), name_(name) {}
    LogEntry(LogEntry&& o) noexcept;
    LogEntry& operator=(LogEntry&&) = delete;
    ~LogEntry();
    // heap: a buffer of parts.size() bytes when they do not fit inline (taken), else null.
    void setParts(const std::vector<unsigned char>& parts, unsigned char* heap);
    void setBoxed(Boxed* box);  // takes it
    const std::string& name() const { return name_->first; }
    Name* nameSlot() const { return name_; }
    bool boxed() const { return size_ == kBoxedSize; }
    const Boxed& box() const { return *u_.boxed; }
    std::string_view parts() const { return {reinterpret_cast<const char*>(size_ <= kInlineBytes ? u_.inline_ : u_.heap), size_}; }
    size_t memory() const;
    ReplicaId origin() const { return origin_; }  // 0: local
    // More entries of the same unit follow (gossip/store.h "Units": a batch, or what one message
    // joined): a push is never cut after such an entry, so a receiver joins the unit whole.
    bool more() const { return more_; }
    void endUnit() { more_ = false; }

   private:
    static constexpr uint32_t kBoxedSize = UINT32_MAX;
    ReplicaId origin_;
    Name* name_;
    uint32_t size_ = 0;  // bytes of the parts, or kBoxedSize
    bool more_ = true;
    union {
      unsigned char inline_[kInlineBytes];  // size_ <= kInlineBytes
      unsigned char* heap;                  // size_ > kInlineBytes, not boxed
      Boxed* boxed;                         // boxed
    } u_;
  };
  static_assert(sizeof(LogEntry) == 88);
  using DotsByName = std::map<std::string, crdt::CausalContext>;
  struct Peer {
    bool neighbor = false;    // in neighbors_ (others are senders we only track receipt for)
    bool known = false;       // has acked at least once
    uint64_t acked = 0;
    uint64_t sentTo = 0;      // end of the last push sent
    uint64_t sentAt = 0;      // tick of that push
    bool sentFull = false;    // the log holds more, wanted at once: the push was cut at
                              // maxPushBytes, or flush() came while it was in flight (the ack
                              // sends the next interval)
    uint64_t recv = 0;
    // catch-up, as sender
    uint64_t digestSeq = 0;
    uint64_t digestAt = 0;
    bool digestSent = false;
    bool served = false;      // digestSeq's request already answered
    // catch-up, as receiver
    uint64_t inTransfer = 0;
    std::vector<bool> inChunks;
    uint32_t inMissing = 0;
    std::map<std::string, Value> inHeld;  // what inTransfer's chunks hold until the last one is here
    // lazy push, as sender
    bool offerOpen = false;   // the offer of [offerFrom, sentTo) awaits its ack
    bool offerServed = false;  // a request for it was answered, at tick offerServedAt
    uint64_t offerServedAt = 0;
    uint64_t offerFrom = 0;
    DotsByName holds;         // store dots the peer is known to hold (its offers and pushes)
    // lazy push, as receiver
    uint64_t offeredFrom = 0, offeredTo = 0, offeredAt = 0;
    DotsByName offered;       // the dots of the peer's last offer; the ack waits until all are here
    DotsByName claimed;       // dots asked of this peer and not yet delivered
    uint64_t claimedAt = 0;   // tick of that request
    bool ackDeferred = false;
    uint64_t deferredRecv = 0;
    std::map<std::string, Value> held;  // answers to the tracked offer, until it is complete
    uint64_t maxAheadMs = 0;  // clock skew seen (clockAhead)
    // sync, as requester: the latest request it answered and its log end then
    uint64_t syncId = 0, syncSeq = 0;
  };

  void append(ReplicaId origin, const std::string& name, const Value& delta);
  void dropOldest();  // the log's first entry
  // Estimated size in a push: the compact encoding (wireSize) plus the name. For a boxed delta
  // measured when an interval first needs it, on the loop thread, not on the writer's (it was a
  // third of a handle write's cost), and never for entries collected before anything was sent.
  size_t entrySize(const LogEntry& e) const;
  // Calls f with e's delta: a Value&& decoded from its parts, or the boxed const Value&.
  template <typename F>
  void withDelta(const LogEntry& e, F&& f) const;
  // The shared copy of `name` for a new entry (one more entry holds it), and its release.
  Name* internName(const std::string& name);
  void releaseName(Name* name);
  // Joins a message's objects into the store (which validates them all first and reports what
  // inflated it: append() logs that).
  void applyRemote(ReplicaId origin, const std::vector<NamedValue>& objects);
  // What a round sends j: nothing (all acked), a digest (catch-up), an offer or a push.
  void contact(ReplicaId j, Peer& p, std::vector<Outgoing>& out);
  // contact() now if nothing is in flight to j; otherwise the next interval goes as soon as the
  // one in flight is acked (flush()).
  void contactSoon(ReplicaId j, Peer& p, std::vector<Outgoing>& out);
  // Steps over the entries at the start of what j has not acked that came from j (BP).
  void skipOwn(ReplicaId j, Peer& p);
  void sendPush(ReplicaId j, Peer& p, std::vector<Outgoing>& out);
  void sendOffer(ReplicaId j, Peer& p, std::vector<Outgoing>& out);
  // D[from, to) minus j's entries (BP), joined per object. With to == 0: as far as
  // maxPushBytes allows from `from`; the end reached is returned in `to`.
  std::map<std::string, Value> interval(ReplicaId j, uint64_t from, uint64_t& to) const;
  void receiveOffer(ReplicaId from, const OfferMsg& m, std::vector<Outgoing>& out);
  void serveOfferRequest(ReplicaId j, const RequestMsg& m, std::vector<Outgoing>& out);
  void receivePush(ReplicaId from, const DeltaPushMsg& m, std::vector<Outgoing>& out);
  // True when every dot p offered is here: in the store, in what p's answers left held, or (when
  // not null) in the objects arriving now.
  bool holdsOffered(const Peer& p, const std::vector<NamedValue>* arriving) const;
  // The offered dots we lack and have not asked another peer for within claimTicks.
  DotsByName missingOf(ReplicaId from, const DotsByName& offered) const;
  void sendRequest(ReplicaId to, Peer& p, DotsByName want, std::vector<Outgoing>& out);
  void requestMissing(std::vector<Outgoing>& out);
  void releaseDeferredAcks(std::vector<Outgoing>& out);
  // Throws ClockSkewRefused if an object carries a timestamp beyond the skew bound.
  void checkClock(ReplicaId from, const std::vector<NamedValue>& objects, uint64_t wallMs);
  // Joins what was held back (batch atomicity, read safety) as one unit, then empties `held`.
  void joinHeld(ReplicaId from, std::map<std::string, Value>& held);
  void sendDigest(ReplicaId j, Peer& p, std::vector<Outgoing>& out);
  void serveRequest(ReplicaId j, const StateRequestMsg& m, std::vector<Outgoing>& out);
  void collectGarbage();
  bool isNeighbor(ReplicaId j) const;
  const Peer* findPeer(ReplicaId j) const;
  // (The one lookup, const; called on a non-const engine its result may be written.)
  Peer* findPeer(ReplicaId j) { return const_cast<Peer*>(std::as_const(*this).findPeer(j)); }
  Peer& peer(ReplicaId j);  // inserted if absent

  ObjectStore& store_;
  ReplicaId self_;
  EngineConfig config_;
  // Entry i has seq logStart_ + i.
  std::deque<LogEntry> log_;
  // The names of the log's entries, each held once, with the count of entries holding it; a
  // name goes when its last entry does. (Not the store's own keys: the store erases an object
  // that pruning leaves bottom (learnPruned), and a unit's changes are named by its pending map,
  // which endUnit() destroys.) Elements do not move when the table grows.
  std::unordered_map<std::string, size_t> names_;
  Name* lastName_ = nullptr;  // the name of the latest append (a run of writes to one object)
  uint64_t logStart_ = 0;
  size_t logBytes_ = 0;  // sum of the entries' memory, and the names' (nameMemory)
  ColumnWriter scratch_;  // append()'s buffer for a one-write entry's bytes: cleared, not freed
  uint64_t seq_ = 0;
  uint64_t tick_ = 0;
  uint64_t rng_;  // splitmix64 state for the fan-out draw
  uint64_t syncId_ = 0;  // the last requestSync()'s
  std::vector<ReplicaId> neighbors_;  // sorted, unique
  std::vector<std::pair<ReplicaId, Peer>> peers_;  // sorted by id; small (a view)
  EngineStats stats_;
};

// What a state transfer sends of v, in the compact encoding (gossip/compact.h, references 0
// standing for `sender`, the chunk's): v itself, or (a dot-store kind encoding to more than
// maxBytes) parts of at most maxBytes each that join to v and each join independently
// (gossip/split.h), encoded straight from v's entries. Counters, registers and or-maps are never
// split.
std::vector<std::vector<unsigned char>> partsOf(const Value& v, size_t maxBytes, ReplicaId sender);

}  // namespace deltasync::gossip
