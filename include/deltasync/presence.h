// deltasync::Presence: who is online, across the cluster (Phoenix.Tracker's model, in C++).
//
//   auto presence = node.presence();
//   auto conn = presence.connect();                       // a tab, a device, a socket
//   conn.track("room:lobby", "alice", R"({"status":"online"})");
//   conn.update("room:lobby", "alice", R"({"status":"typing"})");
//   presence.list("room:lobby");                          // every node's presences, by key
//   auto sub = presence.subscribe("room:lobby", [](const deltasync::PresenceDiff& d) { ... });
//   // conn going out of scope (or conn.close()) removes all of its presences at once.
//
// A presence is (topic, key, connection): one key (a user) may be present through many
// connections, one connection may hold many (topic, key) pairs. Its meta is an opaque string
// (JSON by convention). Each has a ref, unique in the cluster for ever; an update gives it a new
// ref and keeps the one it replaced as `previous` (Phoenix's phx_ref and phx_ref_prev).
//
// Across the cluster: presences belong to the node that tracked them and replicate with its
// state. While a node is declared down (failure detector, partition) its presences are hidden
// from every read and reported as leaves; when it is heard again they come back as joins. A
// node down for PresenceSettings::permdownMs, or that left (closed), is gone: its presences are
// purged everywhere. A node restarted under a new id replaces its former self at once (the old id
// is declared down when its address answers as another). A node that was taken for gone but was
// only cut off tracks its live presences again when it is back, under new refs.
//
// Threads: calls are safe from any thread. Writes (track, update, untrack, close) run on the
// caller's thread under the node's state lock (never waiting for its loop) and return when the
// presence is in the node's state (its delta logged for the peers); reads never wait behind
// replication (they read indexes under the same lock, shared: list costs what it returns, count
// is O(1)). Subscriptions run on the node's notifier thread,
// coalesced: the first call holds the topic's presences at the time of subscribing as joins,
// later calls the joins and leaves since the previous one (a join and a leave of one ref in
// between cancel), so the diffs a subscriber saw, applied in order to an empty list, give the
// current list.
//
// Errors: LimitExceeded (topic, key or meta over PresenceSettings' limits, or the node tracks
// maxPresences already); std::invalid_argument (an empty topic; track of a (topic, key) the
// connection already tracks; update of one it does not); NodeClosed after close.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <deltasync/export.h>
#include <deltasync/subscription.h>

namespace deltasync {

struct PresenceSettings {
  uint64_t permdownMs = 20 * 60 * 1000;  // a node down this long is gone: its presences purged
  size_t maxPresences = 1 << 20;         // tracked on this node (its own connections)
  size_t maxTopicBytes = 256;
  size_t maxKeyBytes = 1024;
  size_t maxMetaBytes = 4096;
};

// The node that tracked the presence and its write there. counter 0: none.
struct PresenceRef {
  uint64_t replica = 0;
  uint64_t counter = 0;
  explicit operator bool() const { return counter != 0; }
  bool operator==(const PresenceRef&) const = default;
  // "<replica in hex>.<counter>": what a browser client gets as phx_ref.
  std::string text() const {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (int shift = 60; shift >= 0; shift -= 4) out += hex[(replica >> shift) & 15];
    return out + "." + std::to_string(counter);
  }
};

struct PresenceMeta {
  PresenceRef ref;       // ref.replica: the node it was tracked on
  PresenceRef previous;  // the ref an update replaced; none after a track
  std::string meta;
  bool operator==(const PresenceMeta&) const = default;
};

// One key's presences, metas sorted by ref.
struct PresenceEntry {
  std::string key;
  std::vector<PresenceMeta> metas;
  bool operator==(const PresenceEntry&) const = default;
};

// Joins and leaves of one topic, keys sorted. An update shows as a leave of the old ref and a
// join of the new one under its key, in the same diff.
struct PresenceDiff {
  std::string topic;
  std::vector<PresenceEntry> joins;
  std::vector<PresenceEntry> leaves;
};

// up: alive or never heard down; suspect: missed probes (its presences still show); down: its
// presences hidden; gone: purged (left, or down for permdownMs).
enum class ReplicaStatus : uint8_t { up, suspect, down, gone };

struct PresenceReplica {
  uint64_t id;
  ReplicaStatus status;
  uint64_t sinceMs;   // when it took this status, ms on the node's monotonic clock (0: from start)
  size_t presences;   // its presences this node holds (shown or not)
  bool self;
};

// A client connection's presences; closing it (or destroying it) untracks all of them in one
// write. Move-only.
class DELTASYNC_API PresenceConnection {
 public:
  PresenceConnection(PresenceConnection&& other) noexcept;
  PresenceConnection& operator=(PresenceConnection&& other) noexcept;
  ~PresenceConnection();

  PresenceRef track(const std::string& topic, const std::string& key, const std::string& meta);
  PresenceRef update(const std::string& topic, const std::string& key, const std::string& meta);
  // False when it was not tracked.
  bool untrack(const std::string& topic, const std::string& key);
  // Untracks everything; idempotent. The connection cannot track again.
  void close();
  uint64_t id() const { return id_; }

 private:
  friend class Presence;
  PresenceConnection(std::shared_ptr<detail::NodeCore> core, uint64_t id) : core_(std::move(core)), id_(id) {}
  std::shared_ptr<detail::NodeCore> core_;
  uint64_t id_ = 0;
};

// The node's presence tracker (Node::presence()); cheap to copy.
class DELTASYNC_API Presence {
 public:
  PresenceConnection connect();

  std::vector<PresenceEntry> list(const std::string& topic) const;  // keys sorted
  std::vector<PresenceMeta> get(const std::string& topic, const std::string& key) const;
  size_t count(const std::string& topic) const;  // presences (metas) shown, O(1)
  std::vector<std::string> topics() const;       // with a presence shown, sorted
  std::vector<PresenceReplica> replicas() const;  // sorted by id, this node included

  // Diffs of one topic, or of every topic (subscribeAll); see the top of this file.
  Subscription subscribe(const std::string& topic, std::function<void(const PresenceDiff&)> callback);
  Subscription subscribeAll(std::function<void(const PresenceDiff&)> callback);

 private:
  friend class Node;
  explicit Presence(std::shared_ptr<detail::NodeCore> core) : core_(std::move(core)) {}
  std::shared_ptr<detail::NodeCore> core_;
};

}  // namespace deltasync
