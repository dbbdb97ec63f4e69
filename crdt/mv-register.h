// MVRegister<V>: multi-value register. A write supersedes every value this replica has seen;
// concurrent writes all survive until a later write observes them. values() returns them all
// (one value when there is no conflict); the application resolves conflicts by writing.
#pragma once

#include <variant>
#include <vector>

#include "crdt/causal.h"

namespace deltasync::crdt {

template <typename V>
class MVRegister : public Causal<MVRegister<V>, DotStore<std::monostate, V>> {
 public:
  MVRegister write(ReplicaId self, V v) { return this->writeKey(self, std::monostate{}, std::move(v)); }
  // Clears the register as observed here (concurrent writes survive).
  MVRegister reset() { return this->removeAll(); }

  // The surviving concurrent values, ordered by their writer's dot (deterministic everywhere).
  std::vector<V> values() const {
    std::vector<std::pair<Dot, const V*>> all;
    this->store_.forEach([&](const std::monostate&, Dot d, const V& v) { all.push_back({d, &v}); });
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<V> out;
    out.reserve(all.size());
    for (auto& [d, v] : all) out.push_back(*v);
    return out;
  }
  size_t size() const { return this->store_.size(); }
};

}  // namespace deltasync::crdt
