// deltasync::Limits: every limit a node enforces on what its peers send it, in one place.
// Defaults suit a cluster of ~1000 nodes exchanging objects of up to a few million entries; raise
// them deliberately. A message over a limit fails that message only (the peer is logged). A
// local write is held to the same limits (keys, values, names) and throws LimitExceeded, so a
// node never takes a write its peers would refuse; a cluster's nodes should share one Limits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace deltasync {

struct Limits {
  // Whole message, before Cap'n Proto reads it (segment table included).
  size_t maxMessageBytes = 64 << 20;
  uint32_t maxSegments = 64;
  // Cap'n Proto's traversal limit (words read through pointers) and nesting limit.
  uint64_t traversalLimitWords = (64 << 20) / 8 * 2;
  int nestingLimit = 32;
  // Per decoded value.
  uint32_t maxEntries = 16u << 20;        // dot-store entries, counter entries
  uint32_t maxOrigins = 65535;            // origins of one causal context / writers of one store
  // Entries under one key of one dot store (for flags and registers: of the whole store). A key
  // has one entry per concurrent write not yet superseded, so real stores stay near their
  // writer count: a presence flag enabled concurrently by every node of a 1000-node cluster has
  // 1000. Decoding is linear whatever the keys, but afterwards local operations (joins, strip,
  // writes) walk a key's entries, one probe cluster, once per entry of that key they insert:
  // m entries under a key cost ~m^2/2 steps. So both the entries of one key and the sum of
  // m(m-1)/2 over a store's keys are bounded: 4096 and 2^24 keep a joined value's cost within
  // ~2e7 probe steps (at the defaults, a value can have two keys of 4096 entries, or any number of
  // keys of two).
  uint32_t maxEntriesPerKey = 4096;
  uint64_t maxSameKeyPairs = uint64_t{1} << 24;
  uint32_t maxIntervalsPerOrigin = 1u << 20;
  size_t maxKeyBytes = 64 << 10;
  size_t maxValueBytes = 1 << 20;
  size_t maxNameBytes = 1024;             // object names
  // A compressed message or chunk inflates to at most max(inflateFloorBytes, maxInflateRatio x its
  // compressed size) (and never past maxMessageBytes): what real pushes reach (compact encoding
  // then deflate: well under 16x) with a wide margin, while a small deflate bomb (~1000x) cannot
  // cost a node more than a few MiB and a few ms. Senders compress only within that bound (at
  // the defaults): a message that would compress further travels uncompressed.
  uint32_t maxInflateRatio = 64;
  size_t inflateFloorBytes = 1 << 20;
  // Per message envelope.
  uint32_t maxObjectsPerMessage = 1u << 16;  // objects of a push or chunk, names of a digest
  uint32_t maxChunksPerTransfer = 1u << 20;  // chunks of one state transfer
  uint32_t maxMemberUpdates = 1024;          // piggybacked membership updates per message
  size_t maxAddressBytes = 255;              // a member's address
  size_t maxClusterNameBytes = 255;          // the cluster name in a handshake
};

}  // namespace deltasync
