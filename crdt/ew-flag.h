// EWFlag: enable-wins flag. enable() mints a dot; disable() removes the dots it has seen, so an
// enable concurrent with a disable wins.
#pragma once

#include <variant>

#include "crdt/causal.h"

namespace deltasync::crdt {

class EWFlag : public Causal<EWFlag, DotStore<std::monostate>> {
 public:
  EWFlag enable(ReplicaId self) { return writeKey(self, std::monostate{}, Empty{}); }
  EWFlag disable() { return removeAll(); }
  bool read() const { return !store_.empty(); }
};

}  // namespace deltasync::crdt
