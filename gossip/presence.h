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
// Layout (the tracker's own indexes; the store holds every entry once more, in the objects):
//   - rows_: every visible presence, in one ordered map from its place, varint(topic bytes) topic
//     key (a CompactString: inline up to 15 bytes), to the place's rows sorted by (origin, ref).
//     The usual single row (40 bytes, see Row) lives in the map node; several (one key on several
//     connections or replicas) move to a heap vector. Byte order on places keeps each topic's
//     places contiguous with its keys in std::string order, so list() walks one range;
//   - topics_: per topic with a visible presence, its rows and places (count, keyCount, topics);
//   - origins_: per origin, its slot (rows name their origin by it: originIds_) and shown, its
//     visible refs -> their node in rows_ (std::map nodes do not move), in an open-addressing
//     table. Invariant: a row is in rows_ iff its ref is in its origin's shown, iff the origin is
//     visible here and its object here holds the row's dot;
//   - local_: per connection of this node with a live presence, how many it has and the refs
//     written for them, stale ones included (the live refs are those the own object holds). The
//     own object holds exactly the entries this node tracks, except the purged ones in lost_ (a
//     restart clears it before restoring it, lib/node.c++, and the only other writer removes),
//     so tracked() asks the object, and no entry key is copied here.
//   About 125 bytes a presence besides the store's (1e5 presences, 15-byte metas, short keys,
//   4 a connection: bench/presence-bench): the map node 88 (32 of it std::map's), the ref slot
//   ~20 (16 bytes, 4/5 full at most), the connection's share ~17.
//
// Cost: track/update/untrack O(log n); a received delta O(its entries + min(covered counters,
// the origin's visible rows)); list(topic) O(log n + answer); get O(log n + answer); count O(1)
// after the topic's lookup; hiding or showing an origin O(its presences); close(connection)
// O(its refs) (plus lost_ when some of its presences were purged).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crdt/compact-string.h"
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
  // `store`. The store must not hold presence objects yet. This node's own object, when restored
  // into the store later, must be empty (lib/node.c++ clears it): tracked() reads it as the list
  // of what this node tracks.
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
  static constexpr uint64_t kCounterBits = crdt::kMaxDotCounter;  // the low 48 bits
  // One visible presence, as list() shows it (its topic and key are its place in rows_), in 40
  // bytes: its ref and the ref it replaced, each a 48-bit counter (crdt::kMaxDotCounter) with a
  // half of its origin's 32-bit slot (originIds_) above it, its connection and its meta. A
  // received previous counter of 48 bits or more (never a real ref) is kept in bigPrevious_,
  // its field holding kCounterBits.
  struct Row {
    uint64_t refWord = 0;  // ref | slot's low half << 48; never 0 (refs start at 1): see Rows
    uint64_t previousWord = 0;  // previous | slot's high half << 48
    uint64_t connection = 0;
    crdt::CompactString meta;
    uint64_t ref() const { return refWord & kCounterBits; }
    uint32_t slot() const {
      return static_cast<uint32_t>(refWord >> 48) | static_cast<uint32_t>(previousWord >> 48) << 16;
    }
  };
  // A place's rows, sorted by (origin, ref), in 40 bytes: the usual single row inline, or (its
  // refWord 0) a heap vector of two or more, its address in the connection field.
  class Rows {
   public:
    explicit Rows(Row r) : row_(std::move(r)) {}
    Rows(const Rows&) = delete;
    Rows& operator=(const Rows&) = delete;
    ~Rows() { delete many(); }
    Row* begin() { return many() != nullptr ? many()->data() : &row_; }
    Row* end() { return many() != nullptr ? many()->data() + many()->size() : &row_ + 1; }
    const Row* begin() const { return const_cast<Rows*>(this)->begin(); }
    const Row* end() const { return const_cast<Rows*>(this)->end(); }
    size_t size() const { return many() != nullptr ? many()->size() : 1; }
    // Adds r where less(a, b) (the rows' order) puts it.
    template <typename Less>
    void insert(Row r, Less&& less);
    // Removes *which (one of the rows); true when it was the only one (the place is then to be
    // erased, *this unchanged).
    bool erase(const Row* which);

   private:
    std::vector<Row>* many() const {
      return row_.refWord == 0 ? reinterpret_cast<std::vector<Row>*>(row_.connection) : nullptr;
    }
    Row row_;
  };
  struct ViewLess {
    using is_transparent = void;
    static std::string_view view(const crdt::CompactString& s) { return s.view(); }
    static std::string_view view(std::string_view s) { return s; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const { return view(a) < view(b); }
  };
  // Place (see rowPlace()) -> rows.
  using RowMap = std::map<crdt::CompactString, Rows, ViewLess>;
  // An origin's visible refs -> their place in rows_: open addressing (linear probing), 16 bytes
  // a slot, at most 4/5 full; a ref of 0 marks a free slot (refs start at 1).
  class RefIndex {
   public:
    size_t size() const { return size_; }
    bool contains(uint64_t ref) const { return find(ref) != nullptr; }
    const RowMap::iterator* find(uint64_t ref) const;
    void insert(uint64_t ref, RowMap::iterator at);  // ref is absent
    void erase(uint64_t ref);
    // Calls f(ref, place) for every ref (in slot order, no particular one).
    template <typename F>
    void forEach(F&& f) const {
      for (const Slot& s : slots_) {
        if (s.ref != 0) f(s.ref, s.at);
      }
    }

   private:
    struct Slot {
      uint64_t ref = 0;
      RowMap::iterator at{};
    };
    size_t home(uint64_t ref) const;
    void resize(size_t slots);
    std::vector<Slot> slots_;  // empty, or a power of two
    size_t size_ = 0;
  };
  struct TopicCount {
    size_t count = 0;  // rows
    size_t keys = 0;   // places
  };
  struct Origin {
    OriginStatus status = OriginStatus::up;
    uint64_t sinceMs = 0;
    bool known = false;  // reported by membership (else hidden)
    uint32_t slot = 0;   // its index in originIds_, for its rows
    RefIndex shown;      // its visible rows
  };
  // This node's presences on one connection: the refs written for them, some of them stale
  // (replaced by update(), untracked, or purged: whatever the own object no longer holds), in
  // 40 bytes: up to 4 refs inline (a connection usually holds a few presences), more on the heap.
  class Connection {
   public:
    Connection() = default;
    Connection(Connection&& o) noexcept;
    Connection& operator=(Connection&&) = delete;
    ~Connection() { free(); }
    const uint64_t* begin() const { return heap_ ? u_.heap.refs : u_.refs; }
    const uint64_t* end() const { return begin() + size_; }
    size_t size() const { return size_; }
    void push(uint64_t ref);
    // Keeps the refs for which keep(ref) holds.
    template <typename P>
    void keepIf(P&& keep) {
      uint64_t* r = heap_ ? u_.heap.refs : u_.refs;
      uint32_t n = 0;
      for (uint32_t i = 0; i < size_; ++i) {
        if (keep(r[i])) r[n++] = r[i];
      }
      size_ = n;
    }
    size_t capacity() const { return heap_ ? u_.heap.capacity : kInline; }

    uint32_t live = 0;  // presences tracked on it (lost_ ones included)

   private:
    static constexpr uint32_t kInline = 4;
    void free();
    uint32_t size_ : 31 = 0;
    uint32_t heap_ : 1 = 0;
    union {
      uint64_t refs[kInline];
      struct {
        uint64_t* refs;
        size_t capacity;
      } heap;
    } u_;
  };

  static std::string encodeKey(const std::string& topic, const std::string& key, uint64_t connection);
  static std::string encodeValue(uint64_t previous, const std::string& meta);
  // An entry key (encodeKey) read in place: views into `bytes`. Throws DecodeError.
  struct KeyParts {
    std::string_view topic, key;
    uint64_t connection = 0;
  };
  static KeyParts keyParts(std::string_view bytes);
  // A row's place in rows_: varint(topic bytes) topic key (rowPlace(topic, {}) starts every place
  // of the topic). Byte order sorts places by topic length,
  // topic, then key (std::string's order), so a topic's places are contiguous, keys sorted.
  static std::string rowPlace(std::string_view topic, std::string_view key);

  std::string sizeProblem(std::string_view topic, std::string_view key, std::string_view meta) const;
  // Local writes: std::invalid_argument (empty topic) or LimitExceeded; check() holds received
  // entries to the same sizeProblem().
  void checkSizes(const std::string& topic, const std::string& key, const std::string& meta) const;
  Row makeRow(uint32_t slot, uint64_t ref, uint64_t previous, uint64_t connection, std::string_view meta);
  PresenceMeta metaOf(const Row& r) const;
  // origins_[id], made with a slot when new.
  Origin& originOf(ReplicaId id);
  // The store's report of a change to a presence object.
  void onChange(const Change& c);
  bool visible(const Origin& o, ReplicaId id) const;
  // Shows the entry (entryKey: encodeKey's) with dot (id, ref).
  void show(ReplicaId id, Origin& o, uint64_t ref, const KeyParts& entry, uint64_t previous, std::string_view meta);
  // byOther: removed by another node's write (a purge of ours: see lost_).
  void hide(ReplicaId id, Origin& o, uint64_t ref, RowMap::iterator at, bool byOther);
  void showAll(ReplicaId id, Origin& o);
  void hideAll(ReplicaId id, Origin& o);
  void setStatus(ReplicaId id, OriginStatus s, uint64_t nowMs);
  std::optional<uint64_t> deadline(const Origin& o) const;
  void arm(ReplicaId id, const Origin& o);
  void disarm(ReplicaId id, const Origin& o);
  void purge(ReplicaId id);
  const Map* object(ReplicaId id) const;
  // Whether this node tracks the entry (entryKey: encodeKey's); mine: object(self()).
  bool isTracked(const Map* mine, const std::string& entryKey) const;
  // Writes this node's entry (entryKey: encodeKey's) with a new dot: its ref.
  PresenceRef write(const std::string& entryKey, const std::string& meta, uint64_t previous);
  // Notes a ref written for a presence on `connection` (its `live` count is the caller's).
  Connection& remember(uint64_t connection, uint64_t ref);

  ObjectStore& store_;
  Limits limits_;
  PresenceConfig config_;
  std::string selfName_;  // presenceObjectName(self())
  bool skipOwnChange_ = false;  // inside track()'s write of a new entry (see there)
  RowMap rows_;  // visible presences only
  std::map<std::string, TopicCount, std::less<>> topics_;  // those with a visible presence
  std::map<ReplicaId, Origin> origins_;
  std::vector<ReplicaId> originIds_;  // slot -> id (of an origin in origins_, or free)
  std::vector<uint32_t> freeSlots_;
  std::map<std::pair<uint32_t, uint64_t>, uint64_t> bigPrevious_;  // (slot, ref) -> previous: see Row
  std::set<std::pair<uint64_t, ReplicaId>> timers_;  // (deadline, origin): see arm()
  std::set<ReplicaId> refilled_;                     // gone origins whose objects got entries again
  // This node's connections with a live presence.
  std::unordered_map<uint64_t, Connection> local_;
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
