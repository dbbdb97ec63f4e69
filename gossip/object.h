// The replicated objects of a node: one lattice, name -> (kind, CRDT).
//
// A node's state is a map from object name to one of the CRDT kinds below; the gossip engine
// runs one anti-entropy instance over the whole map (DESIGN.md). Value is the closed set of
// kinds the engine and the wire carry; keys, elements and values are byte strings (std::string),
// which is what a replicated key-value library exposes (applications encode their own types).
//
// The variant's alternative index is the kind tag: 0-7 in the order of wire.capnp's Crdt union,
// then (tag 8 being the compact form) 8 (deleted) its `deleted` member (union tag 9), 9 (a map
// of sets) its `orMapOfSets` (union tag 10) and 10 (a map of counters) its `mapOfCounters` (union
// tag 11). Never reorder; append new kinds at the end.
//
// Deleting an object (Tombstone): a deleted name is retired for good, cluster-wide, as in Akka
// Distributed Data. The tombstone is the top of every kind's lattice for its name: joined into
// an object of any kind it leaves the tombstone, and nothing joined into a tombstone changes it.
// So a delete wins over every write to the object, concurrent or later: a write made on a node
// that had not heard of the delete yet is applied there and dropped once the tombstone arrives,
// everywhere alike (convergence holds: join stays a semilattice join). Writes after the delete
// is known are refused (ObjectDeleted); a tombstone costs its name in memory, for ever.
//
// Invariants the engine relies on:
//   - an object's kind never changes, except to the tombstone, which is final: joining values of
//     different kinds neither of which is a tombstone is a KindMismatch;
//   - contentHash(a) == contentHash(b) whenever a == b (semantic equality), on every platform:
//     it hashes canonical content (sorted or order-independent), never memory layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <deltasync/errors.h>

#include "crdt/aw-lww-map.h"
#include "crdt/counter-map.h"
#include "crdt/ew-flag.h"
#include "crdt/g-counter.h"
#include "crdt/lww-register.h"
#include "crdt/mv-register.h"
#include "crdt/or-map.h"
#include "crdt/or-set.h"
#include "crdt/pn-counter.h"

namespace deltasync::gossip {

using Map = crdt::AWLWWMap<std::string, std::string>;
using MapOfMaps = crdt::ORMap<std::string, Map>;
using MapOfSets = crdt::ORMap<std::string, crdt::ORSet<std::string>>;
using MapOfCounters = crdt::CounterMap<std::string>;

// A deleted object (see above). Never bottom: it is the most that can be known of a name.
struct Tombstone {
  bool empty() const { return false; }
  bool operator==(const Tombstone&) const = default;
};

using Value = std::variant<crdt::GCounter,                          // 0 gCounter
                           crdt::PNCounter,                         // 1 pnCounter
                           crdt::LWWRegister<std::string>,          // 2 lwwRegister
                           crdt::MVRegister<std::string>,           // 3 mvRegister
                           crdt::EWFlag,                            // 4 ewFlag
                           crdt::ORSet<std::string>,                // 5 orSet
                           Map,                                     // 6 awLwwMap
                           MapOfMaps,                               // 7 orMap (of maps)
                           Tombstone,                               // 8 deleted (union tag 9)
                           MapOfSets,                               // 9 orMapOfSets (union tag 10)
                           MapOfCounters>;                          // 10 mapOfCounters (union tag 11)

inline constexpr size_t kKindCount = std::variant_size_v<Value>;
inline constexpr size_t kTombstoneKind = 8;
static_assert(std::is_same_v<std::variant_alternative_t<kTombstoneKind, Value>, Tombstone>);
inline bool isTombstone(const Value& v) { return v.index() == kTombstoneKind; }

// The index of kind T in Value (what Value::index() gives for a T), at compile time.
template <typename T, size_t I = 0>
constexpr size_t kindIndex() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, Value>, T>) {
    return I;
  } else {
    return kindIndex<T, I + 1>();
  }
}

// Containers of values (parts, chunks, pushes) move them when they grow, and copy them if a move
// might throw: a copy of a large state costs as much as building it (crdt/causal-context.h).
static_assert(std::is_nothrow_move_constructible_v<Value> && std::is_nothrow_move_assignable_v<Value>);

// True when `delta` holds a write under `self` that `state` (this replica's object of the same
// kind; nullptr when absent) lacks: a dot or a counter increment this replica never made. Only
// this replica mints under its id, so such a delta is forged, or this replica lost state it once
// had (restarted under its old id without it; its next writes would reuse dots the cluster has
// seen). Such a delta is refuted, or adopted (counters), where refutable() says so (below), and
// refused otherwise. Registers' writer ids are not checked (an overwritten write of ours
// may legitimately come back later).
bool claimsUnminted(const Value& delta, const Value* state, crdt::ReplicaId self);

// Refutation (the dot-store kinds: set, map, multi-value register, flag, and the or-maps, whose
// nested stores are refuted key by key). A replica is the only
// authority on its own dots, as a member is on its incarnation (membership.h). A delta that
// claims dots under this replica's id beyond what it minted, by at most kMaxDotLead, is refuted
// rather than refused: refusing it left the claim in the rest of the cluster (a holder of the
// secret can send it anywhere), where it removed this replica's entries and swallowed its next
// writes as already seen, and every later message that carried it was refused here, so
// replication to this replica stalled for good. Refuting:
//   - the delta is joined as it came. Joining it moves this replica's dot counter past the claim,
//     so no later write of its reuses a claimed dot and none is taken anywhere as already seen.
//     Entries it holds under this replica's id stay: the rest of the cluster has taken them
//     already, and they may be this replica's own writes from before it lost its state (restarted
//     under its id without it); removing them could lose acknowledged data, and keeping them
//     converges. (Under the shared secret a forger can write in any replica's name anywhere else
//     too: see gossip/README.md, "Trust model".)
//   - refute() returns this replica's write, applied after the join: its entries the delta removes, re-written
//     under fresh dots past the claim with their keys, values and stamps (an LWW winner stays the
//     winner), so they come back wherever the claim removed them.
// After both have spread, every replica holds this replica's entries as before (under new dots)
// and its next writes are accepted everywhere.
// Counters (g-, pn-counters, maps of counters) adopt the claim instead: a count cannot be taken
// back (entries join by max), so refusing it fixed nothing elsewhere and only stalled replication
// to this replica, as above. Joined, the claimed totals become this replica's, and its next
// increments count on from them, so none is swallowed anywhere as already counted. If this
// replica lost its state, that is exactly its old count coming back; if the claim is forged, the
// count is inflated everywhere, which a holder of the secret can do under its own id as well.
// (A claim near 2^64 leaves no room: this replica's later increments there throw
// std::overflow_error to the caller rather than wrap.) Nothing is written (refute() returns
// bottom); it is counted and logged as a refutation.
// The price, under attack only: a removal of one of those entries that was still on its way to
// this replica when it refuted does not cover the re-written entry (a concurrent re-add, and adds
// win), so the entry stays; a concurrent newer write to a map key still wins by its stamp.
inline constexpr uint64_t kMaxDotLead = uint64_t{1} << 32;
bool refutable(const Value& delta, const Value* state, crdt::ReplicaId self);
// True for the counter kinds, which adopt every claim (refutable() then equals claimsUnminted()):
// a claim of theirs is never refused, and a check can skip looking for one. O(1).
bool adoptsClaims(const Value& delta);
// The refutation of `delta` by this replica, whose object is `state` (before the join); bottom
// when the claim removes nothing of ours. Requires refutable(delta, state, self).
Value refute(const Value& delta, const Value* state, crdt::ReplicaId self);

// Empty, or why `delta` is refused whatever this replica holds: its context claims some replica's
// dots more than kMaxDotLead beyond the greatest known here for that replica (in `state`, this
// replica's object of the same kind; nullptr when absent). No honest replica writes 2^32 times to
// one object between two deltas a receiver sees; a forged claim beyond that could not be refuted
// by its victim (its counters would run out), so it is not taken anywhere.
std::string claimTooFar(const Value& delta, const Value* state);

// The greatest write timestamp in v (an LWW register's, every AW-LWW-map entry's, nested ones
// included); Timestamp{} for kinds without timestamps. The engine holds it against the
// forward-skew bound (EngineConfig::maxForwardSkewMs) before joining a received delta.
crdt::Timestamp latestStamp(const Value& v);

// "g-counter", "pn-counter", ..., "or-map", "deleted", "or-map-of-sets", "map-of-counters": for
// errors and logs.
const char* kindName(size_t kind);
inline const char* kindName(const Value& v) { return kindName(v.index()); }

// The public errors (include/deltasync/errors.h): lib/'s handles let them through unchanged.
using KindMismatch = deltasync::KindMismatch;
using ObjectDeleted = deltasync::ObjectDeleted;

// Bottom of the given kind (kind < kKindCount); for kTombstoneKind the tombstone, which has no
// bottom.
Value bottomOf(size_t kind);

bool isBottom(const Value& v);

// Bytes the value holds in memory (the kinds' memoryBytes(), which count their containers and
// string keys; an estimate, not an allocator's measure).
size_t memoryBytes(const Value& v);

// state ⊔= delta. Throws KindMismatch (state unchanged) when the kinds differ and neither is a
// tombstone, and whatever the CRDT's join throws (crdt::LimitError, state unchanged).
void joinInto(Value& state, const Value& delta);

// The part of delta that would inflate state (RR); bottom when delta adds nothing (always, when
// state is a tombstone). Same kinds required unless one is a tombstone (KindMismatch otherwise).
Value strip(const Value& delta, const Value& state);

// Order-independent hash of the value's content (see the invariant above).
uint64_t contentHash(const Value& v);

// The hashes contentHash() is made of, stable across platforms and standard libraries: FNV-1a
// over bytes finished by mix64, and an order-dependent combination of two hashes.
uint64_t hashBytes(std::string_view s);
uint64_t hashCombine(uint64_t a, uint64_t b);

}  // namespace deltasync::gossip
