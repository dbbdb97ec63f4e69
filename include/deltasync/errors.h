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

// A write its peers would refuse (include/deltasync/limits.h): an element, key or value longer than
// its limit, or an object name that is empty, longer than maxNameBytes or holds a NUL byte. The
// node refuses it as peers would, so nothing of it is applied and replication of the node's
// other writes is unaffected. what() says which limit and by how much.
class DELTASYNC_API LimitExceeded : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Bytes that do not decode as the type asked for (include/deltasync/codec.h): a stored element,
// key or value read through a handle of another type than the one that wrote it, or written by
// `deltasync ctl`. what() names the object and what did not decode.
class DELTASYNC_API CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A write to (or a handle for) an object that was deleted (Node::deleteObject, `deltasync ctl
// delete`, here or on any node this one has heard from): a deleted name is retired for good,
// cluster-wide. what() names the object.
class DELTASYNC_API ObjectDeleted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call on a closed node (or one whose event loop has ended).
class DELTASYNC_API NodeClosed : public std::runtime_error {
 public:
  NodeClosed() : std::runtime_error("the node is closed") {}
};

// The node's data directory (NodeConfig::dataDir) cannot be used or written: in use by another
// process, unreadable, read-only or full, a corrupt or truncated database, a newer format.
// what() says which and where. Thrown by the Node constructor, and by a write in sync
// durability whose commit failed: that write is applied in memory (and written, and sent to
// peers, once a commit succeeds), but it is not durable and not acknowledged; while commits
// fail the node sends nothing to its peers.
class DELTASYNC_API StorageFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace deltasync
