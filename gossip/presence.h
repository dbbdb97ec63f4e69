// The presence tracker's replicated state and its indexes: who is present, in which topic, through
// which replica, derived from the object store and from membership. Pure (no threads, no clock,
// no I/O): lib/presence wires it to a node, tests/sim to simulated nodes.
//
// Model (Phoenix.Tracker's semantics, on deltasync's store):
//   - a presence is (topic, key, connection) on the replica that tracked it (its origin) with an
//     opaque meta, a ref (unique in the cluster for ever) and the ref it replaced (update);
//   - each replica's presences are one object of the store, "$presence/<origin id in hex>", an
//     AW-LWW map from entry key (topic, key, connection) to (previous ref, meta); the entry's dot
//     (origin, counter) is its ref. Only the origin writes its object (track, update, untrack,
//     close) with one exception below, so there is no concurrent write to order: a presence's
//     state is a function of its origin's writes, joined in any order, any number of times;
//   - visibility is local: a presence shows when its origin is up here (alive or suspect in this
//     node's membership; always for this node's own). An origin membership has not reported
//     alive (a dead replica whose object a newcomer receives in its catch-up) shows nothing.
//     When membership declares the origin down (or it left, or its address answers as another
//     replica), its presences leave; when it is heard alive again, they join again;
//   - purge (permdown): an origin down for permdownMs, or left, is gone: this node removes every
//     entry of its object (the one write to another replica's object: a remove-all, whose causal
//     context holds only the origin's own dots). The removal replicates like any delta, so every
//     node converges to an empty object. Should the origin come back after all (a partition longer
//     than permdownMs), it sees its live presences removed and tracks them again under new refs
//     (reassert()): they join everywhere, nothing is lost for good.
//
// Phoenix.Tracker failures that cannot happen here, by construction:
//   - a stale full-state transfer overwriting newer presences: states only join; a removal is a
//     causal context, so an old entry arriving after its removal is dropped, and an old state
//     cannot undo a newer write;
//   - concurrent adds of one presence diverging by merge order: one writer per object, and the
//     join is commutative, associative and idempotent;
//   - down replicas kept for ever: gone origins are purged, and their table rows go with them.
//
// Validation (check(), called by the store for every received object under the prefix): the
// object is an AW-LWW map, every dot and every causal-context origin is the owner's, every entry
// key and value decodes and is within the limits. A peer cannot write presences for someone else.
//
// Diffs: every change the store reports on a presence object, and every visibility change, turns
// into joins and leaves per (topic, key) (takeDiffs()). An update is one leave (old ref) and one
// join (new ref) in the same diff. PresenceDiff::add() coalesces: a join and a leave of the same
// ref in one batch cancel.
//
// Cost: track/update/untrack O(log n); a received delta O(its entries + covered rows); list(topic)
// O(answer); get O(log keys + answer); count O(1); hiding or showing an origin O(its presences).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gossip/limits.h"
#include "gossip/membership.h"
#include "gossip/store.h"

namespace deltasync::gossip {

inline constexpr std::string_view kPresencePrefix = "$presence/";

// "$presence/<16 hex digits>"; the owner of such a name (0 for any other name).
std::string presenceObjectName(ReplicaId origin);
ReplicaId presenceOwner(std::string_view name);

struct PresenceConfig {
  uint64_t permdownMs = 20 * 60 * 1000;  // down this long: purged (Phoenix's default)
  uint64_t goneKeepMs = 10 * 60 * 1000;  // a gone replica's row in replicas() stays this long
  size_t maxPresences = 1 << 20;         // tracked on this node (its own)
  size_t maxTopicBytes = 256;
  size_t maxKeyBytes = 1024;
  size_t maxMetaBytes = 4096;
};

struct PresenceRef {
  ReplicaId origin;
  uint64_t counter = 0;  // the entry's dot counter; 0: none
  bool operator==(const PresenceRef&) const = default;
  auto operator<=>(const PresenceRef&) const = default;
};

struct PresenceMeta {
  PresenceRef ref;
  PresenceRef previous;  // the ref this one replaced (update); counter 0 when none
  uint64_t connection = 0;
  std::string meta;
  bool operator==(const PresenceMeta&) const = default;
};

// Joins and leaves of one topic, by key, each key's metas sorted by ref.
struct PresenceDiff {
  std::map<std::string, std::vector<PresenceMeta>> joins, leaves;
  bool empty() const { return joins.empty() && leaves.empty(); }
  // Records a join (leave: false) or a leave of `m` under `key`. A leave of a ref this diff
  // holds as a join (or the reverse) cancels both.
  void add(const std::string& key, const PresenceMeta& m, bool leave);
  // Appends `later` (the order of events: *this, then later), coalescing as add() does.
  void append(const PresenceDiff& later);
};

enum class OriginStatus : uint8_t { up, suspect, down, gone };

struct OriginInfo {
  ReplicaId id;
  OriginStatus status = OriginStatus::up;
  uint64_t sinceMs = 0;  // the caller's clock, when it took this status
  size_t presences = 0;  // entries in its object here (visible or not)
};

class PresenceTracker {
 public:
  // Registers the store listener and the received-object check: the tracker must live as long as
  // `store`. The store must not hold presence objects yet, or call rebuild().
  PresenceTracker(ObjectStore& store, const Limits& limits, PresenceConfig config = {});
  PresenceTracker(const PresenceTracker&) = delete;
  PresenceTracker& operator=(const PresenceTracker&) = delete;

  ReplicaId self() const { return store_.self(); }
  const PresenceConfig& config() const { return config_; }

  // ---- this node's presences (the caller holds the store exclusively) ----
  // Connection ids are the caller's (unique on this replica while it lives).
  // Throws LimitExceeded (topic, key or meta too long; maxPresences reached) and
  // std::invalid_argument (already tracked on that connection); nothing changes then.
  PresenceRef track(uint64_t connection, const std::string& topic, const std::string& key, const std::string& meta);
  // A new ref, the old one kept as `previous`. std::invalid_argument when not tracked.
  PresenceRef update(uint64_t connection, const std::string& topic, const std::string& key, const std::string& meta);
  // False when it was not tracked.
  bool untrack(uint64_t connection, const std::string& topic, const std::string& key);
  // Every presence of the connection, in one write; how many there were.
  size_t close(uint64_t connection);
  bool tracked(uint64_t connection, const std::string& topic, const std::string& key) const;

  // ---- membership and time (the caller holds the store exclusively) ----
  void memberEvent(const MemberEvent& e, uint64_t nowMs);
  // Purges origins down for permdownMs (and gone ones whose objects refilled), tracks again this
  // node's live presences that another node purged, forgets old gone rows. Costs what is due,
  // not the number of origins (a node of a 1000-member cluster ticks every second).
  void tick(uint64_t nowMs);

  // ---- reads (the caller holds the store at least shared) ----
  // Keys sorted, metas by ref.
  std::vector<std::pair<std::string, std::vector<PresenceMeta>>> list(const std::string& topic) const;
  std::vector<PresenceMeta> get(const std::string& topic, const std::string& key) const;
  size_t count(const std::string& topic) const;  // visible presences (metas), O(1)
  size_t keyCount(const std::string& topic) const;
  std::vector<std::string> topics() const;  // with a visible presence, sorted
  std::vector<OriginInfo> origins() const;  // sorted by id, self included
  size_t localCount() const { return localCount_; }

  // Diffs since the last call, by topic (coalesced here, from the joins and leaves recorded in
  // order: recording one costs a push onto a vector, so writes nobody listens to pay no more).
  std::map<std::string, PresenceDiff> takeDiffs();
  bool hasDiffs() const { return !events_.empty(); }
  // Forgets the diffs since the last call (nobody listens).
  void dropDiffs() { events_.clear(); }

  // The check the store runs on a received presence object (throws ProtocolError).
  void check(const std::string& name, const Value& delta) const;

 private:
  struct Entry {  // a decoded entry key
    std::string topic, key;
    uint64_t connection = 0;
  };
  struct Row {
    ReplicaId origin;
    uint64_t ref = 0;
    uint64_t previous = 0;
    uint64_t connection = 0;
    std::string meta;
  };
  struct Topic {
    size_t count = 0;
    std::map<std::string, std::vector<Row>, std::less<>> keys;
  };
  struct Origin {
    OriginStatus status = OriginStatus::up;
    uint64_t sinceMs = 0;
    bool known = false;                    // reported by membership (else hidden)
    std::map<uint64_t, Entry> shown;       // ref -> entry, while visible
  };

  static std::string encodeKey(const std::string& topic, const std::string& key, uint64_t connection);
  static Entry decodeKey(std::string_view bytes);
  static std::string encodeValue(uint64_t previous, const std::string& meta);
  static std::pair<uint64_t, std::string> decodeValue(std::string_view bytes);

  std::string sizeProblem(std::string_view topic, std::string_view key, std::string_view meta) const;
  // Local writes: std::invalid_argument (empty topic) or LimitExceeded; check() holds received
  // entries to the same sizeProblem().
  void checkSizes(const std::string& topic, const std::string& key, const std::string& meta) const;
  static PresenceMeta metaOf(const Row& r);
  // The store's report of a change to a presence object.
  void onChange(const Change& c);
  bool visible(const Origin& o, ReplicaId id) const;
  void show(ReplicaId id, Origin& o, uint64_t ref, Entry entry, uint64_t previous, std::string meta);
  // byOther: removed by another node's write (a purge of ours: see lost_).
  void hide(ReplicaId id, Origin& o, std::map<uint64_t, Entry>::iterator it, bool byOther);
  void showAll(ReplicaId id, Origin& o);
  void hideAll(ReplicaId id, Origin& o);
  void setStatus(ReplicaId id, OriginStatus s, uint64_t nowMs);
  std::optional<uint64_t> deadline(const Origin& o) const;
  void arm(ReplicaId id, const Origin& o);
  void disarm(ReplicaId id, const Origin& o);
  void purge(ReplicaId id);
  const Map* object(ReplicaId id) const;
  // Writes this node's entry (entryKey: encodeKey's) with a new dot: its ref.
  PresenceRef write(const std::string& entryKey, const std::string& meta, uint64_t previous);

  ObjectStore& store_;
  Limits limits_;
  PresenceConfig config_;
  std::string selfName_;  // presenceObjectName(self())
  bool skipOwnChange_ = false;  // inside track()'s write of a new entry (see there)
  std::map<std::string, Topic, std::less<>> topics_;  // visible presences only
  std::map<ReplicaId, Origin> origins_;
  std::set<std::pair<uint64_t, ReplicaId>> timers_;  // (deadline, origin): see arm()
  std::set<ReplicaId> refilled_;                     // gone origins whose objects got entries again
  // This node's live presences: connection -> entry keys.
  std::unordered_map<uint64_t, std::set<std::string>> local_;
  size_t localCount_ = 0;
  // This node's entries another node removed while their connection lives (entry key -> meta):
  // tracked again by tick().
  std::map<std::string, std::string> lost_;
  struct DiffEvent {  // a join or leave, as PresenceDiff::add takes it
    std::string topic, key;
    PresenceMeta meta;
    bool leave = false;
  };
  std::vector<DiffEvent> events_;  // since takeDiffs / dropDiffs, in order
};

}  // namespace deltasync::gossip
