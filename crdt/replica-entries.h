// Helpers for small vectors of per-replica entries kept sorted by strictly increasing
// `.replica` (the counters' representation). Internal to crdt/.
#pragma once

#include <algorithm>
#include <vector>

#include "crdt/dot.h"

namespace deltasync::crdt::_ {

// First entry whose replica is not less than r.
template <typename Vec>
auto lowerBoundByReplica(Vec& entries, ReplicaId r) {
  return std::lower_bound(entries.begin(), entries.end(), r,
                          [](const auto& e, ReplicaId id) { return e.replica < id; });
}

// The union of two sorted entry vectors: an entry of one side only is copied, entries of the
// same replica on both sides are combined by both(a, b). The result is sorted the same way.
template <typename Entry, typename Both>
std::vector<Entry> mergeByReplica(const std::vector<Entry>& x, const std::vector<Entry>& y, Both both) {
  std::vector<Entry> out;
  out.reserve(x.size() + y.size());
  auto a = x.begin(), b = y.begin();
  while (a != x.end() || b != y.end()) {
    if (b == y.end() || (a != x.end() && a->replica < b->replica)) {
      out.push_back(*a++);
    } else if (a == x.end() || b->replica < a->replica) {
      out.push_back(*b++);
    } else {
      out.push_back(both(*a++, *b++));
    }
  }
  return out;
}

}  // namespace deltasync::crdt::_
