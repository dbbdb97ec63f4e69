// Message <-> wire.capnp Envelope, framed (capnp standard framing, unpacked), validating on
// decode. Everything gossip/compact.h's decoder checks for CRDT values applies to the objects
// inside; on top of that, decodeMessage() checks:
//   - replica ids (sender, target, members) are nonzero (0 means "nobody");
//   - push: base <= fromSeq < toSeq; object names unique, non-empty, <= limits.maxNameBytes;
//   - digest / state request: names strictly increasing; counts <= limits.maxObjectsPerMessage;
//   - state chunk: 1 <= total <= limits.maxChunksPerTransfer, index < total, known compression,
//     the payload (decompressed at most to limits.maxMessageBytes) a valid object list, as a
//     push's (names unique);
//   - text (names, addresses, cluster): no NUL byte (and text is encoded with its exact length);
//   - membership: known member states, addresses <= limits.maxAddressBytes, at most
//     limits.maxMemberUpdates updates and as many sample records (PingAck.sample), no member
//     twice in one list, a ping-req's target is not its sender;
//   - handshake: nonces and proofs exactly 32 bytes, a non-empty cluster name <=
//     maxClusterNameBytes, protocol version >= 1.
// A violation throws DecodeError naming what was wrong; nothing partial is returned.
#pragma once

#include <cstddef>
#include <vector>

#include "gossip/errors.h"
#include "gossip/limits.h"
#include "gossip/messages.h"

namespace deltasync::gossip {

using Bytes = std::vector<unsigned char>;

// State-chunk payloads at least this large are zlib-compressed when that makes them smaller.
inline constexpr size_t kCompressChunkAbove = 512;

Bytes encodeMessage(const Message& m);
Message decodeMessage(const unsigned char* data, size_t size, const Limits& limits);
inline Message decodeMessage(const Bytes& b, const Limits& limits) {
  return decodeMessage(b.data(), b.size(), limits);
}

// One object value alone in the column encoding, framed as a wire Crdt: what lib/storage reads
// from rows of format 2 and older (no message carries it since protocol version 8); encodeValue
// for tests, fuzzing and the sizes benchmarks.
Bytes encodeValue(const Value& v);
Value decodeValue(const unsigned char* data, size_t size, const Limits& limits);

}  // namespace deltasync::gossip
