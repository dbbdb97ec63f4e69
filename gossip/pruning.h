// Pruning removed replicas (Akka Distributed Data's removed-node pruning, made exact for
// removals): every replica that ever wrote to an object leaves an entry in its causal context
// (and in a counter, its totals) for ever. Over months of restarts under new ids and departed
// nodes, every context and every counter would grow by one entry per replica ever seen. Once a
// replica is gone for good, its entries are re-homed under a live replica and every trace of its
// id is removed, cluster-wide.
//
// State: the reserved object "$prune" (an AW-LWW map, replicated like any other) holds
//   gone/<r>        wall-clock ms at which some member first saw r removed (down for longer
//                   than removeAfterMs), or the same and " left" when r left; removed by anyone
//                   that sees r alive again;
//   vote/<r>/<n>    member n's digest of everything it knows of r (traceOf over all objects);
//   done/<r>        r is pruned: the marker (PruneMarker) of the pruner that re-homed it.
// (<r> and <n> are 16 hex digits.)
//
// Protocol (Pruner::step, on every node, every checkIntervalMs):
//   1. A member in this node's table that is removed or left gets a gone mark (if none).
//   2. Once a gone mark is pruneAfterMs old and r is not alive, suspect or down in this node's
//      table, the node votes its digest of r (and votes again whenever it changes).
//   3. The pruner is the lowest id among this node and the members its table holds alive,
//      suspect or down. It prunes r when every one of those voted the digest it has itself, no
//      object holds r where it cannot be re-homed (unprunable()), and no member that went down
//      (rather than left) is marked gone for less than pruneAfterMs. That last rule keeps the
//      two sides of a partition from both pruning (each would re-home r's entries under its own
//      pruner: a counter would count r twice after the heal): while members are cut off they are
//      marked gone, and their marks are young. Members that left do not hold pruning up: a
//      node that restarts without a data directory leaves under its old id (lib/ leaves on
//      stop) and comes back under a new one, and a cluster that restarts more often than
//      pruneAfterMs must still prune. A node killed without leaving holds pruning up for
//      pruneAfterMs.
//   4. Pruning is one unit of local writes (store.h, "Units"), so peers take it whole: the done
//      mark for r, with the gone mark and the votes of r removed. The marker says, for every
//      object that holds r, what becomes of r's share: r's live entries (listed by r's counter,
//      ascending) become the pruner's dots base + 1, base + 2, ... with their keys, values and
//      stamps; r's counter totals are added to the pruner's (the marker holds the sum).
//   5. Every node, the pruner first, that learns of a done mark applies its marker to its own
//      state and then forgets r (ObjectStore::learnPruned): the marker's writes are joined as
//      this node's local change (logged and sent like any write: the same on every node, so
//      idempotent), then r is stripped from every object, and from every object received from
//      then on, and r's messages are refused. Nothing the readers see changes: r's entries are
//      the pruner's now, and r's totals are counted in the pruner's. (An object left with
//      nothing but r's context, every entry of it removed, becomes bottom and leaves the store,
//      as if never written: it reads empty either way. Kept, it would differ from the store of a
//      node that never had it, and catch-up would ask for it for ever.)
//
// Why it is safe:
//   - Agreement: equal digests mean every live member holds the same entries and context of r
//     at that moment. Only r mints r's dots, and r is gone, so no member later gains an entry of
//     r that the marker does not list: dropping r's entries anywhere loses nothing.
//   - Removals concurrent with the pruning are kept, not undone. A member may still remove or
//     overwrite one of r's entries after the votes were counted. Applying the marker, a node
//     re-homes only the listed entries it still holds; for a listed dot it removed itself
//     (covered by its context, absent from its store) it writes the removal of the re-homed dot
//     (a removal of a dot not seen yet is a valid delta: when the dot arrives it is already
//     removed). The store applies a marker before it joins the rest of the message that carries
//     it, so the pruner's own re-homed entries, sent with the mark, never hide such a removal.
//   - Counters: r's totals no longer change and every member had the same ones (digest); the
//     marker's sum joins by maximum, so it counts them once, however often it is applied. The
//     sum is joined and r forgotten in one call, so no reader sees r's totals twice. A counter
//     that already holds the sum (any later state of the pruner's, or of a node that applied
//     the mark) must not be joined where r is not forgotten yet: a push carries the mark's unit
//     before anything that follows it in the sender's log, and a catch-up carries "$prune" in
//     every chunk when the receiver lacks part of it (Engine::serveRequest; only a "$prune"
//     larger than a quarter of a chunk, thousands of marks, goes once like any object: then a
//     transfer too large to be held whole may show such a counter high until its "$prune"
//     part arrives).
//   - A replica that comes back after it was pruned (its id in a done mark) is refused: its
//     messages are refused (ProtocolError naming the cause) and whatever anyone sends of its
//     dots is stripped. It must restart under a new id (a new data directory); what it wrote
//     while it was away is not taken. That is the price of a horizon, as in Akka (a removed node
//     never rejoins under its old identity); pruneAfterMs defaults to 7 days for nodes that go
//     offline for long.
//
// Maps of counters: a key's floors are what removeKeys observed. The marker adds r's floors to the
// pruner's as it adds the totals; a node applying it also adds the r floors it holds itself to
// the pruner's it holds (a removeKey it made concurrently observed r's share: that share stays
// reset). Each is at most the folded totals, so the floors stay below the totals.
//
// Presence objects ("$presence/<owner>", presence.h) hold their owner's dots alone, so r's own
// is never re-homed: r is pruned once the tracker purged its presences (permdownMs after it went
// down; the pruner waits until then), and its emptied object then leaves the store.
//
// Limits (documented in README): an LWW register keeps its writer's id (a tie-break, not
// metadata that grows). A gone mark carries the wall clock of the member that wrote it: one
// whose clock runs days slow makes a mark look that much older everywhere, and the replica is
// pruned that much early (lib/ reports clock jumps; run NTP). A replica whose share would
// overflow the pruner's counter, or whose marker would pass the peers' value limit, is not
// pruned (unprunable(), Pruner::prune say why). Pruning waits while writes that touch r's
// entries keep arriving (each changes the digests); r's entries are finite, so the wait ends.
// Under the shared secret, a done mark is a statement any holder of the secret can forge
// (gossip/README.md, "Trust model").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/membership.h"
#include "gossip/object.h"

namespace deltasync::gossip {

class ObjectStore;

inline constexpr std::string_view kPruneObject = "$prune";

// Order-independent hash of what v holds of replica r: its context intervals and live entries
// (key, counter, value) in dot stores, nested ones included, its totals (and floors) in
// counters. 0 when v holds nothing of r.
uint64_t traceOf(const Value& v, ReplicaId r);

// Whether v mentions r at all (cheap: a context lookup, or a counter entry).
bool mentions(const Value& v, ReplicaId r);

// Empty when r's trace in v can be pruned by `pruner`; otherwise why not (see "Limits").
std::string unprunable(const Value& v, ReplicaId r, ReplicaId pruner);

// done/<r>'s value: what becomes of r's share of each object that holds it.
struct PruneMarker {
  // Maps of counters, per key r counted in: the pruner's totals and floors with r's added.
  struct Slot {
    std::string key;
    uint64_t increments = 0, decrements = 0, floorIncrements = 0, floorDecrements = 0;
    bool operator==(const Slot&) const = default;
  };
  struct Object {
    std::string name;
    uint64_t base = 0;           // dot stores, or-maps: dots[i] becomes (pruner, base + i + 1)
    std::vector<uint64_t> dots;  // r's live entries' counters, ascending
    uint64_t increments = 0;     // counters: the pruner's totals with r's added
    uint64_t decrements = 0;
    std::vector<Slot> slots;     // maps of counters, keys ascending
    bool operator==(const Object&) const = default;
  };
  ReplicaId pruner;
  std::vector<Object> objects;
  bool operator==(const PruneMarker&) const = default;
};
std::string encodePruneMarker(const PruneMarker& m);
// Throws DecodeError for bytes that are not a marker, or list more than maxDots dots in an
// object (a run of n dots takes a few bytes: the bound is what a store may hold, Limits::maxEntries).
inline constexpr uint64_t kMaxMarkerDots = uint64_t{16} << 20;
PruneMarker decodePruneMarker(std::string_view bytes, uint64_t maxDots = kMaxMarkerDots);

// The marker's part for object `name` (v at the pruner `self`); nullopt when v holds no live
// entry or totals of r. Requires unprunable(v, r, self) empty.
std::optional<PruneMarker::Object> markerPart(const std::string& name, const Value& v, ReplicaId r, ReplicaId self);

// The write that applies `part` (of a marker by `pruner`) to this node's object v (see "Why it
// is safe"); bottom when v has nothing left to apply.
Value applyPart(const PruneMarker::Object& part, const Value& v, ReplicaId r, ReplicaId pruner);

// Removes every trace of r from v (entries under r's dots, r's context, r's counter totals).
void forget(Value& v, ReplicaId r);

// Why a message or a connection from pruned replica r is refused.
std::string prunedError(ReplicaId r);

// The keys of "$prune".
std::string goneKey(ReplicaId r);
std::string voteKey(ReplicaId r, ReplicaId voter);
std::string doneKey(ReplicaId r);
// A key of "$prune", parsed: the one reader of the three forms above (the check, the pruner and
// the store all go through it).
struct PruneKey {
  enum Kind : uint8_t { gone, vote, done } kind = gone;
  ReplicaId replica;  // the replica the key is about
  ReplicaId voter;    // vote keys only
};
// nullopt for anything but exactly one of the three forms (ids as 16 lowercase hex digits).
std::optional<PruneKey> parsePruneKey(std::string_view key);
// r of a "done/<r>" key; nullopt for any other key.
std::optional<ReplicaId> doneOf(std::string_view key);

// Checks a received "$prune" delta (ObjectStore::addCheck): an AW-LWW map whose keys are gone,
// vote or done keys and whose done values are markers. Throws ProtocolError.
void checkPruneObject(const std::string& name, const Value& delta);

struct PruneConfig {
  uint64_t pruneAfterMs = 7ULL * 24 * 3600 * 1000;  // gone this long: pruned (0: never prune)
  uint64_t checkIntervalMs = 10000;                 // how often a node looks (each look costs a scan
                                                    // of the state while a replica awaits pruning)
};

struct PruneStats {
  uint64_t pruned = 0;   // replicas this node pruned as the pruner (ObjectStore counts the forgotten)
  std::string blocked;   // why the pruner's last candidate waits (empty: none)
};

// Steps 1-4 of the protocol for one node. Writes go through the store (votes, marks, the unit).
class Pruner {
 public:
  // maxValueBytes: the peers' limit on a map value (Limits), which a marker must keep to.
  Pruner(ObjectStore& store, PruneConfig config, size_t maxValueBytes)
      : store_(store), config_(config), maxValueBytes_(maxValueBytes) {}
  const PruneConfig& config() const { return config_; }
  // One look (the replica core calls it every checkIntervalMs). wallMs: the wall clock, which
  // gone marks are stamped with and aged by.
  void step(const Membership& membership, uint64_t wallMs);
  const PruneStats& stats() const { return stats_; }

 private:
  // Empty when pruned; else why not (the marker would break the peers' limits).
  std::string prune(ReplicaId r, const std::vector<std::string>& cleanup);
  void write(const std::string& key, const std::string* value);  // value nullptr: remove

  ObjectStore& store_;
  PruneConfig config_;
  size_t maxValueBytes_;
  PruneStats stats_;
};

}  // namespace deltasync::gossip
