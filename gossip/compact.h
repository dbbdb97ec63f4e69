// The compact value encoding: one CRDT value of any kind as a single byte string. Pushes carry
// their objects so (the compact envelope, gossip/envelope.c++), and lib/storage stores them so.
//
// Why: a push usually carries a few entries, and the column encoding (wire.capnp: CausalState)
// then costs more in Cap'n Proto structure (segment pointers of a state, a store, a context,
// six columns, 8-byte replica ids twice) than in content: a one-key map update was 184 bytes.
// Here the same delta costs ~21 bytes: the writer is implied (the push's sender), the context
// travels only as what the store's dots do not already say, and the first timestamp is split
// into milliseconds and logical counter.
//
// Format (varint = unsigned LEB128, zigzag as in wire.capnp):
//   header  u8: bits 0-2 and 7 the kind, Value's index in gossip/object.h (bits 0-2 its low three
//               bits, bit 7 its fourth: 0 gCounter .. 6 awLwwMap, 7 map of maps, 8 tombstone,
//               9 map of sets, 10 map of counters; higher kinds are unknown),
//               bit 3 W: a writer table follows,
//               bit 4 C: an extra context follows (causal kinds only),
//               bit 5 ONE: exactly one entry, its count omitted,
//               bit 6 F: the context follows whole (only with C).
//           A tombstone is its header alone, 0xA0 (kind 8 with ONE); nothing follows.
//   if W    varint n >= 1, then n replica ids as 8 bytes little-endian: strictly increasing,
//           nonzero, not the implicit writer, each referenced at least once.
//   unless ONE: varint count of entries (a register: 0 or 1; the maps: keys).
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
//       2. keys (orSet, awLwwMap), front-coded: for every key but the first, varint the length
//          of the prefix it shares with the previous key (at most that key's length); then for
//          every key varint the length of the rest; then every key's rest. (One key: its length
//          and bytes.) The keys of one value expand to at most limits.maxMessageBytes in all.
//       3. values (mvRegister, awLwwMap): every varint length, then every value's bytes.
//          mvRegister and ewFlag have no key, ewFlag and orSet no value.
//       4. timestamps (awLwwMap): the first varint (ts >> 16), varint (ts & 0xffff); later
//          ones zigzag(ts - previous ts).
//       Lengths and bytes apart compress better under the envelope's deflate.
//     map of maps, map of sets (the or-maps; causal, one context for the whole map)
//                 keys as in column 2 above (front-coded), strictly increasing (byte order).
//                 Then per key: varint n >= 1, its nested store's n entries in the
//                 columns of `causal` above (an aw-lww map's, a set's). The dot counters and
//                 timestamps run on across the keys (a writer's first counter of the whole value
//                 is absolute, every later one relative to its previous). No dot twice in the map.
//     map of counters keys as for the or-maps; then per key: varint n >= 1 and n entries of its
//                 totals, varint m and m entries of its floors, each entry as pnCounter's
//                 (ref, increments, decrements; increasing ids, not both 0). Floors at most their
//                 writer's totals; at most limits.maxEntries counter entries in all.
//   if C    a context (causal kinds and the or-maps): varint origins >= 1, then per origin, by
//           strictly increasing replica id: ref, varint n >= 1 intervals, n (gap, span) pairs as in wire.capnp's
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
#include "gossip/split.h"
#include "gossip/varint.h"

namespace deltasync::gossip {

// True when v is one write: a set, map, register or flag holding one entry whose dot is its whole
// context (a new key or element: most pushes, every presence track). Such a value encodes and
// decodes on a fast path, to the same bytes.
bool isOneWrite(const Value& v);

// Appends v's compact encoding. implicitWriter: the id that references 0 stand for (the sender
// of the message; must be nonzero).
void encodeCompact(const Value& v, crdt::ReplicaId implicitWriter, ColumnWriter& out);

// A catch-up part of x (gossip/split.h): the entries of x's store at `at` (in its dot order), with
// context ctx (which holds their dots), in x's kind's compact form: the bytes encodeCompact makes
// of that part built as a value.
// T: a dot-store kind (ORSet, AWLWWMap, MVRegister, EWFlag).
template <typename T>
void encodeCompactPart(const T& x, Positions at, const crdt::CausalContext& ctx, crdt::ReplicaId implicitWriter,
                       ColumnWriter& out);

// Decodes and validates; throws DecodeError naming what was wrong. implicitWriter 0 means
// "none": a reference to it is then an error.
Value decodeCompact(const unsigned char* data, size_t size, crdt::ReplicaId implicitWriter,
                    const Limits& limits);

// Bytes v takes inside a push or state chunk sent by compactWriter: its compact encoding's size.
size_t wireSize(const Value& v, crdt::ReplicaId compactWriter);

}  // namespace deltasync::gossip
