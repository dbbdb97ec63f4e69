// Message <-> wire.capnp Envelope, framed (capnp standard framing, unpacked), validating on
// decode. Everything gossip/codec.h checks for CRDT values applies to the objects inside; on top
// of that, decodeMessage() checks:
//   - replica ids (sender, target, members) are nonzero (0 means "nobody");
//   - push: base <= fromSeq < toSeq; object names unique, non-empty, <= limits.maxNameBytes;
//   - digest / state request: names strictly increasing; counts <= limits.maxObjectsPerMessage;
//   - state chunk: 1 <= total <= limits.maxChunksPerTransfer, index < total, known compression,
//     the payload (decompressed at most to limits.maxMessageBytes) a valid ObjectList;
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
#include "gossip/split.h"

namespace deltasync::gossip {

using Bytes = std::vector<unsigned char>;

// State-chunk payloads at least this large are zlib-compressed when that makes them smaller.
inline constexpr size_t kCompressChunkAbove = 512;

Bytes encodeMessage(const Message& m);
Message decodeMessage(const unsigned char* data, size_t size, const Limits& limits);
inline Message decodeMessage(const Bytes& b, const Limits& limits) {
  return decodeMessage(b.data(), b.size(), limits);
}

// One object value alone, framed as a wire Crdt (for sizes, tests and fuzzing).
Bytes encodeValue(const Value& v);
Value decodeValue(const unsigned char* data, size_t size, const Limits& limits);

// encodeValue(...).size() without making the bytes; the template takes one kind of Value (T is
// one of its alternatives) without wrapping it in a Value.
size_t encodedSize(const Value& v);
template <typename T>
size_t encodedSize(const T& x);

// A catch-up part of a causal state x (gossip/split.h): the entries of x's store at `at` with
// context ctx, framed as encodeValue frames a value. The same bytes as encodeValue of that part
// built as a value of T, without building it. T: ORSet, AWLWWMap, MVRegister or EWFlag of Value.
template <typename T>
Bytes encodeCausalPart(const T& x, Positions at, const crdt::CausalContext& ctx);

}  // namespace deltasync::gossip
