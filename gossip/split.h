// Splitting a large causal state into parts of bounded encoded size that each join
// independently (state transfers: the engine's partsOf encodes them, serveRequest packs them into
// StateChunks).
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
// Pure crdt/ code plus caller-supplied make and size functions (so no capnp here).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "crdt/causal-context.h"

namespace deltasync::gossip {

// A part and its size as the caller's size function measured it (so that nobody measures twice).
template <typename T>
struct SizedPart {
  T part;
  size_t bytes;
};

namespace _ {

// Calls make(first, count) over items [0, n) in batches whose size(part) stays within maxBytes
// if at all possible, measuring each batch once: the next batch holds as many items as fit in 7/8
// of maxBytes at the bytes per item just measured, and a batch that comes out too large is cut by
// that ratio and made again. Items of even size thus cost about one size() each (halving and
// doubling cost three: bench/RESULTS.md "catch-up chunking").
template <typename Part, typename Make, typename Size>
void emitBatches(size_t n, size_t maxBytes, Make&& make, Size&& size, std::vector<SizedPart<Part>>& out) {
  const double aim = static_cast<double>(maxBytes - maxBytes / 8);
  auto fitting = [&](size_t count, size_t bytes) {  // items at count/bytes per byte in `aim`
    const double f = static_cast<double>(count) * aim / static_cast<double>(std::max<size_t>(bytes, 1));
    return f < 1 ? size_t{1} : f > static_cast<double>(n) ? n : static_cast<size_t>(f);
  };
  size_t batch = 64;
  for (size_t first = 0; first < n;) {
    const size_t count = std::min(batch, n - first);
    Part part = make(first, count);
    const size_t bytes = size(part);
    if (bytes > maxBytes && count > 1) {
      batch = std::min(count - 1, fitting(count, bytes));
      continue;
    }
    out.push_back({std::move(part), bytes});
    first += count;
    batch = fitting(count, bytes);
  }
}

}  // namespace _

// A run of a dot store's entries in its canonical order (DotStore::dotOrder): the entries at
// order positions [first, first + count); order null when the storage order is that order.
struct Positions {
  const uint32_t* order = nullptr;
  uint32_t first = 0;
  uint32_t count = 0;
  uint32_t operator[](uint32_t i) const { return order != nullptr ? order[first + i] : first + i; }
};

// Entry parts are cut from the entries in (writer, counter) order, the order the encodings use
// (gossip/compact.h): each part's entries are then in encoding order already, and its
// context, exactly its dots, is a few intervals (one per writer where counters run on) rather
// than one per dot.
//
// Parts are not built as states: make(Positions at, CausalContext ctx) makes whatever the caller
// sends (the engine encodes the entries at `at` of x's store with context ctx straight into the
// bytes a state chunk carries: gossip/compact.h encodeCompactPart). A context part has no
// entries (at.count == 0). size(part) -> bytes.
//
// T: a causal dot-store type (ORSet, AWLWWMap, MVRegister, EWFlag).
template <typename T, typename Make, typename Size,
          typename Part = std::invoke_result_t<Make&, Positions, crdt::CausalContext&&>>
std::vector<SizedPart<Part>> splitCausal(const T& x, size_t maxBytes, Make&& make, Size&& size) {
  std::vector<SizedPart<Part>> out;
  const auto& store = x.store();
  const auto n = static_cast<uint32_t>(store.size());
  const std::vector<uint32_t> order = store.dotOrder();  // empty: the storage order is that order
  const uint32_t* orderData = order.empty() ? nullptr : order.data();
  _::emitBatches<Part>(n, maxBytes, [&](size_t first, size_t count) {
    const Positions at{orderData, static_cast<uint32_t>(first), static_cast<uint32_t>(count)};
    crdt::CausalContext ctx;
    crdt::Dot run{};  // the current run of counters of one writer: run.replica, [lo, run.counter]
    uint64_t lo = 0;
    for (uint32_t i = 0; i < at.count; ++i) {
      const crdt::Dot d = store.dotAt(at[i]);
      if (i == 0 || d.replica != run.replica || d.counter != run.counter + 1) {
        if (i != 0) ctx.addRange(run.replica, lo, run.counter);
        lo = d.counter;
      }
      run = d;
    }
    if (at.count != 0) ctx.addRange(run.replica, lo, run.counter);
    return make(at, std::move(ctx));
  }, size, out);

  crdt::CausalContext live;  // (by runs of counters, as the parts' contexts above)
  const Positions all{orderData, 0, n};
  for (uint32_t i = 0; i < n;) {
    const crdt::Dot d = store.dotAt(all[i]);
    uint64_t hi = d.counter;
    for (++i; i < n; ++i) {
      const crdt::Dot e = store.dotAt(all[i]);
      if (e.replica != d.replica || e.counter != hi + 1) break;
      hi = e.counter;
    }
    live.addRange(d.replica, d.counter, hi);
  }
  crdt::CausalContext removed = x.context().minus(live);
  std::vector<std::pair<crdt::ReplicaId, crdt::Interval>> intervals;
  removed.forEachInterval([&](crdt::ReplicaId r, crdt::Interval i) { intervals.push_back({r, i}); });
  _::emitBatches<Part>(intervals.size(), maxBytes, [&](size_t first, size_t count) {
    crdt::CausalContext ctx;
    for (size_t i = first; i < first + count; ++i) {
      ctx.addRange(intervals[i].first, intervals[i].second.lo, intervals[i].second.hi);
    }
    return make(Positions{}, std::move(ctx));
  }, size, out);
  return out;
}

}  // namespace deltasync::gossip
