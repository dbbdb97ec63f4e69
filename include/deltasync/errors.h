// The errors deltasync's public API throws besides the standard ones (std::invalid_argument for a
// bad configuration, std::runtime_error for an address that cannot be bound).
#pragma once

#include <stdexcept>

#include <deltasync/export.h>

namespace deltasync {

// An object's kind (counter, set, map) is fixed for ever, across the cluster, by whoever created
// its name first; a handle of another kind throws this (at creation, or at use when a peer
// created the name with another kind).
class DELTASYNC_API KindMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call on a closed node (or one whose event loop has ended).
class DELTASYNC_API NodeClosed : public std::runtime_error {
 public:
  NodeClosed() : std::runtime_error("the node is closed") {}
};

}  // namespace deltasync
