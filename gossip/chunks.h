// Chunked state transfer: a large causal state split into framed messages of bounded size that
// decode and join independently, in any order.
//
// Why each chunk is itself a valid delta below the state: a chunk that carried the whole context
// but only some entries would, joined alone, remove every entry it does not carry (their dots are
// in its context). So chunks are of two kinds:
//   entry chunks:   some entries, with a context of exactly their dots;
//   context chunks: no entries, a slice of (state context minus the dots of the state's entries),
//                   i.e. the knowledge of what was removed.
// Each chunk c satisfies state ⊔ c == state, and the join of all chunks is the state. A chunk is
// larger than maxChunkBytes only when one entry alone is.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "gossip/codec.h"
#include "gossip/message.h"

namespace deltasync::gossip {

inline constexpr size_t kDefaultChunkBytes = 64 << 10;

namespace _ {

template <typename T>
kj::Array<kj::byte> frameCausal(const T& x) {
  capnp::MallocMessageBuilder mb;
  encodeCausal(x, mb.initRoot<wire::CausalState>());
  return frame(mb);
}

// Emits pieces built by make(first, count) over items [0, n), each framed within maxBytes if at
// all possible: a batch that comes out too large is halved and retried; after a success the next
// batch may double again.
template <typename Make>
void emitBatches(size_t n, size_t maxBytes, Make&& make, std::vector<kj::Array<kj::byte>>& out) {
  size_t batch = 64;
  for (size_t first = 0; first < n;) {
    size_t count = std::min(batch, n - first);
    auto bytes = make(first, count);
    if (bytes.size() > maxBytes && count > 1) {
      batch = std::max<size_t>(1, count / 2);
      continue;
    }
    out.push_back(std::move(bytes));
    first += count;
    if (count == batch) batch *= 2;
  }
}

}  // namespace _

// Causal dot-store types: ORSet, AWLWWMap, MVRegister, EWFlag.
template <typename T>
std::vector<kj::Array<kj::byte>> encodeChunks(const T& x, size_t maxChunkBytes = kDefaultChunkBytes) {
  std::vector<kj::Array<kj::byte>> out;
  const auto& store = x.store();
  _::emitBatches(store.size(), maxChunkBytes, [&](size_t first, size_t count) {
    typename T::Store part;
    crdt::CausalContext ctx;
    for (size_t p = first; p < first + count; ++p) {
      uint32_t pos = static_cast<uint32_t>(p);
      crdt::Dot d = store.dotAt(pos);
      part.insertNew(store.keyAt(pos), d, store.valueAt(pos));
      ctx.add(d);
    }
    return _::frameCausal(T::fromParts(std::move(part), std::move(ctx)));
  }, out);

  crdt::CausalContext live;
  store.collectDots(live);
  crdt::CausalContext removed = x.context().minus(live);
  std::vector<std::pair<crdt::ReplicaId, crdt::Interval>> intervals;
  removed.forEachInterval([&](crdt::ReplicaId r, crdt::Interval i) { intervals.push_back({r, i}); });
  _::emitBatches(intervals.size(), maxChunkBytes, [&](size_t first, size_t count) {
    crdt::CausalContext ctx;
    for (size_t i = first; i < first + count; ++i) {
      ctx.addRange(intervals[i].first, intervals[i].second.lo, intervals[i].second.hi);
    }
    return _::frameCausal(T::fromParts(typename T::Store(), std::move(ctx)));
  }, out);
  return out;
}

// Decodes one chunk (any framed CausalState message) under the given limits.
template <typename T>
T decodeChunk(kj::ArrayPtr<const kj::byte> bytes, const Limits& limits) {
  IncomingMessage in(bytes, limits);
  return in.decodeRoot<wire::CausalState>(
      [&](wire::CausalState::Reader r) { return decodeCausal<T>(r, limits); });
}

}  // namespace deltasync::gossip
