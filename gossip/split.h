// Splitting a large causal state into parts of bounded encoded size that each join
// independently (state transfers: gossip/chunks.h frames them, the engine's catch-up packs them
// into StateChunks).
//
// Why each part is itself a valid delta below the state: a part that carried the whole context
// but only some entries would, joined alone, remove every entry it does not carry (their dots are
// in its context). So parts are of two kinds:
//   entry parts:   some entries, with a context of exactly their dots;
//   context parts: no entries, a slice of (state context minus the dots of the state's entries),
//                  i.e. the knowledge of what was removed.
// Each part p satisfies state ⊔ p == state, and the join of all parts is the state. A part is
// larger than maxBytes only when one entry alone is.
//
// Pure crdt/ code plus a caller-supplied size function (so no capnp here).
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "crdt/causal-context.h"

namespace deltasync::gossip {

namespace _ {

// Calls make(first, count) over items [0, n) in batches whose size(part) stays within maxBytes
// if at all possible: a batch that comes out too large is halved and retried; after a success
// the next batch may double again.
template <typename Part, typename Make, typename Size>
void emitBatches(size_t n, size_t maxBytes, Make&& make, Size&& size, std::vector<Part>& out) {
  size_t batch = 64;
  for (size_t first = 0; first < n;) {
    size_t count = std::min(batch, n - first);
    Part part = make(first, count);
    if (size(part) > maxBytes && count > 1) {
      batch = std::max<size_t>(1, count / 2);
      continue;
    }
    out.push_back(std::move(part));
    first += count;
    if (count == batch) batch *= 2;
  }
}

}  // namespace _

// T: a causal dot-store type (ORSet, AWLWWMap, MVRegister, EWFlag). size(const T&) -> bytes.
template <typename T, typename Size>
std::vector<T> splitCausal(const T& x, size_t maxBytes, Size&& size) {
  std::vector<T> out;
  const auto& store = x.store();
  _::emitBatches<T>(store.size(), maxBytes, [&](size_t first, size_t count) {
    typename T::Store part;
    crdt::CausalContext ctx;
    for (size_t p = first; p < first + count; ++p) {
      uint32_t pos = static_cast<uint32_t>(p);
      crdt::Dot d = store.dotAt(pos);
      part.insertNew(store.keyAt(pos), d, store.valueAt(pos));
      ctx.add(d);
    }
    return T::fromParts(std::move(part), std::move(ctx));
  }, size, out);

  crdt::CausalContext live;
  store.collectDots(live);
  crdt::CausalContext removed = x.context().minus(live);
  std::vector<std::pair<crdt::ReplicaId, crdt::Interval>> intervals;
  removed.forEachInterval([&](crdt::ReplicaId r, crdt::Interval i) { intervals.push_back({r, i}); });
  _::emitBatches<T>(intervals.size(), maxBytes, [&](size_t first, size_t count) {
    crdt::CausalContext ctx;
    for (size_t i = first; i < first + count; ++i) {
      ctx.addRange(intervals[i].first, intervals[i].second.lo, intervals[i].second.hi);
    }
    return T::fromParts(typename T::Store(), std::move(ctx));
  }, size, out);
  return out;
}

}  // namespace deltasync::gossip
