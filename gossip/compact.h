// The compact value encoding: one CRDT value (all kinds but the nested OR-map) as a single
// byte string, for deltas that travel in pushes (wire.capnp: Crdt.compact).
//
// Why: a push usually carries a few entries, and the column encoding (wire.capnp: CausalState)
// then costs more in Cap'n Proto structure (segment pointers of a state, a store, a context,
// six columns, 8-byte replica ids twice) than in content: a one-key map update was 184 bytes.
// Here the same delta costs ~21 bytes: the writer is implied (the push's sender), the context
// travels only as what the store's dots do not already say, and the first timestamp is split
// into milliseconds and logical counter.
//
// Format (varint = unsigned LEB128, zigzag as in wire.capnp):
//   header  u8: bits 0-2 kind (the Crdt union tag: 0 gCounter .. 6 awLwwMap; never 7 orMap),
//               bit 3 W: a writer table follows,
//               bit 4 C: an extra context follows (causal kinds only),
//               bit 5 ONE: exactly one entry, its count omitted,
//               bit 6 F: the context follows whole (only with C),
//               bit 7 zero.
//   if W    varint n >= 1, then n replica ids as 8 bytes little-endian: strictly increasing,
//           nonzero, not the implicit writer, each referenced at least once.
//   unless ONE: varint count of entries (a register: 0 or 1).
//   entries, per kind:
//     ref     writer reference: 0 = the implicit writer (the sender of the message that carries
//             the value), i >= 1 = the writer table's i-th id. Present only if W (without a
//             table every reference is 0 and is not written).
//     gCounter    per entry: ref, varint count >= 1        (entries by strictly increasing id)
//     pnCounter   per entry: ref, varint increments, varint decrements (not both 0; increasing ids)
//     lwwRegister ref, timestamp, value (varint length, bytes)
//     causal      in columns, each over all entries in the same order (for one entry the bytes
//                 are those of ref, dot counter, key, value, timestamp in a row):
//       1. per entry: ref, dot counter. The writer's first entry: varint counter; later ones
//          zigzag(counter - the writer's previous counter). Counters in 1..2^48-1; no dot
//          twice. (Encoders list entries by (writer, counter), so these are mostly 1 byte.)
//       2. keys (orSet, awLwwMap): every varint length, then every key's bytes.
//       3. values (mvRegister, awLwwMap): every varint length, then every value's bytes.
//          mvRegister and ewFlag have no key, ewFlag and orSet no value.
//       4. timestamps (awLwwMap): the first varint (ts >> 16), varint (ts & 0xffff); later
//          ones zigzag(ts - previous ts).
//       Lengths and bytes apart compress better under the envelope's deflate.
//   if C    a context: varint origins >= 1, then per origin, by strictly increasing replica
//           id: ref, varint n >= 1 intervals, n (gap, span) pairs as in wire.capnp's
//           CausalContext.Origin.runs. Without F it holds the dots of the context that no entry
//           carries, and the value's context is that plus every entry's dot (so "every dot of
//           the store lies in the context" holds by construction); with F it is the value's
//           whole context, and every entry's dot must lie in it. Encoders send the form with
//           fewer intervals (F after strided deletes: the removed dots are many intervals, the
//           context one), so the size does not grow with the history of removals.
// The bytes must be consumed exactly. Limits (gossip/limits.h) apply as in the column encoding:
// maxOrigins and maxIntervalsPerOrigin to the whole context (the entries' dots included), so a
// value accepted here is also accepted in a state chunk.
//
// Include cost: no capnp here.
#pragma once

#include <cstddef>

#include "gossip/limits.h"
#include "gossip/object.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

// True for the kinds this encoding carries (everything but the nested OR-map and the tombstone).
bool compactable(const Value& v);

// Appends v's compact encoding. implicitWriter: the id that references 0 stand for (the sender
// of the message; must be nonzero). Requires compactable(v).
void encodeCompact(const Value& v, crdt::ReplicaId implicitWriter, ColumnWriter& out);

// Decodes and validates; throws DecodeError naming what was wrong. implicitWriter 0 means
// "none": a reference to it is then an error.
Value decodeCompact(const unsigned char* data, size_t size, crdt::ReplicaId implicitWriter,
                    const Limits& limits);

// Bytes v takes inside a message: its compact encoding when compactWriter is nonzero (a push by
// compactWriter) and the kind has one, else its column encoding (gossip/envelope.h encodeValue).
size_t wireSize(const Value& v, crdt::ReplicaId compactWriter);

}  // namespace deltasync::gossip
