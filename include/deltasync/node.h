// deltasync::Node: what an application embeds. One replica of the cluster's state, replicated
// by gossip over authenticated Cap'n Proto RPC (TCP).
//
//   deltasync::NodeConfig config;
//   config.listen = "127.0.0.1:7000";
//   config.seeds = {"127.0.0.2:7000"};
//   config.secret = deltasync::Secret::fromFile("cluster.secret");
//   deltasync::Node node(config);
//   auto hits = node.counter("hits");                           hits.increment(3); hits.value();
//   auto tags = node.set<std::string>("tags");                  tags.add("x"); tags.contains("x");
//   auto users = node.map<std::string, std::string>("users");   users.put("alice", "online");
//   auto scores = node.map<std::string, int64_t>("scores");     scores.put("alice", 42);
//   auto title = node.lwwRegister<std::string>("title");        title.set("Q4"); title.get();
//   auto draft = node.mvRegister<std::string>("draft");         draft.set("v2"); draft.values();
//   auto beta = node.flag("beta");                              beta.enable(); beta.value();
//   auto rooms = node.mapOfMaps<std::string, std::string, std::string>("rooms");
//                                                               rooms.at("r1").put("topic", "cats");
// (Sets and maps hold any types with a codec: include/deltasync/codec.h.)
//   auto sub = users.subscribe([](const deltasync::MapChange& c) { ... });
//
// Threads: the node runs one event loop thread (gossip engine, membership, peer connections) and
// one notifier thread (subscriptions). Handles are cheap to copy and safe to use from any thread.
//   writes  run on the caller's thread, under the node's state lock (held exclusively for the
//           write alone): when increment()/add()/put() return, the update is in the node's
//           state and its delta in the log that gossip sends to peers (and, in sync durability,
//           on disk). They never wait for the loop or the network;
//   reads   never wait behind gossip: they read the state under the same lock, shared; the loop
//           thread takes it exclusively only for one protocol step (a received message, a
//           gossip round);
//   subscriptions are coalesced (several changes in between give one callback with their net
//           effect; its origin says whether those changes were made here, by peers or both)
//           and run on the notifier thread, off the replication path. A callback may call the
//           node's handles; it must not block for long (it delays later notifications).
//
// Durability: with NodeConfig::dataDir, see Durability (a write in sync mode returns once it is
// on disk, and throws StorageFailed if the commit failed).
//
// Write consistency and non-blocking writes: every write has a form taking a WriteTo that
// returns at once with a std::future<WriteResult>. The write is applied locally before it
// returns (so a read on this node sees it); the future completes once it is durable (sync
// durability) and held by the peers asked for, or when WriteTo::timeoutMs runs out (reached
// false: the write stays applied and replicates as usual). WriteTo{} (local) only waits for
// durability: the non-blocking form of the plain write.
//
// Objects: one kind per name for ever, across the cluster. A handle of another kind for an
// existing name throws KindMismatch (at creation, or at use if a peer created the name
// first with another kind); one of a deleted name throws ObjectDeleted (Node::deleteObject).
// Calls on a closed node throw NodeClosed.
//
// Limits: a subscription to a whole set or map diffs the object against its previous copy per
// notification (O(object size) per coalesced batch); fine for objects of up to some 1e4 entries.
// Subscriptions to one value (a map key, a counter, a register, a flag) read just that value,
// whatever the object's size (bench/RESULTS.md, session 16, "subscriptions on a large object").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <deltasync/codec.h>
#include <deltasync/errors.h>
#include <deltasync/export.h>
#include <deltasync/limits.h>
#include <deltasync/presence.h>
#include <deltasync/secret.h>
#include <deltasync/subscription.h>

namespace deltasync {

// Mutual TLS between nodes instead of the shared secret: certificates with CN "replica-<id>", a
// DNS subjectAltName equal to the cluster name, signed by the cluster CA.
struct TlsFiles {
  std::string certificate;  // PEM file: this node's certificate (then any intermediates)
  std::string privateKey;   // PEM file: its private key
  std::string ca;           // PEM file: the cluster CA's certificate
};

// What an operator tunes. The defaults suit a LAN cluster of up to ~1000 nodes.
struct Tuning {
  uint64_t gossipIntervalMs = 100;    // one anti-entropy round (> 0)
  size_t maxPushBytes = 64 << 10;     // estimated encoded bytes of one delta push
  size_t maxChunkBytes = 64 << 10;    // estimated encoded bytes of one state-transfer chunk
  size_t maxLogEntries = 1 << 16;     // delta log entries kept for peers that lag; beyond, a
                                      // lagging peer catches up by state transfer
  size_t maxLogBytes = 64 << 20;      // and at most this many bytes of them in memory
  // Failure detector (SWIM): every probeIntervalMs one member of the view is pinged; without an
  // ack after probeTimeoutMs it is probed indirectly, then suspected. At these defaults, with 8
  // nodes under 10% loss, the far side of a partition is declared down everywhere within about
  // 2.7 s (median) and is back within about 0.3 s of the heal, with no healthy node ever declared
  // down (bench/RESULTS.md, presence-bench). On a WAN raise probeTimeoutMs above the round trip
  // (and probeIntervalMs to at least twice that).
  uint64_t probeIntervalMs = 500;
  uint64_t probeTimeoutMs = 200;
  uint32_t viewSize = 4;              // members each node probes and gossips with (partial view)
  uint64_t removeAfterMs = 30000;     // a down member is forgotten (reported removed) after this
  // A member removed or left this long ago is pruned: its id leaves every object's metadata,
  // cluster-wide, its entries kept under a live member's id (README, "Pruning removed replicas").
  // It is refused if it comes back later: it must start under a new id. 0: never prune.
  uint64_t pruneAfterMs = 7ULL * 24 * 3600 * 1000;
};

// When a write returns, with a data directory (NodeConfig::dataDir):
//   sync   it is committed to disk (fsync); concurrent writers share one commit (group commit);
//   async  it is in memory and committed within flushMs: a crash (kill -9, power loss) loses at
//          most the writes of the last flushMs. After such a crash the node starts under a new
//          replica id (the old run may have sent peers writes it never stored; going on under
//          its id could mint their dots again), with everything that was committed.
enum class Durability : uint8_t { sync, async };

struct NodeConfig {
  std::string listen = "127.0.0.1:0";  // host:port to accept peers on; port 0 picks a free one
  std::string advertise;                // the address peers dial; "" = the bound listen address
  std::vector<std::string> seeds;       // addresses of members to join through
  // DNS discovery: NAME:PORT names that resolve to the members' addresses (a Kubernetes headless
  // service, or any name with several A/AAAA records). Each is resolved at start and every
  // dnsRefreshMs; every address it gives is a seed (Node::seeds), and one it stops giving is
  // dropped as a seed (members met through it stay). A name that does not resolve is logged
  // (warn, at most once a minute) and keeps its last addresses.
  std::vector<std::string> dnsSeeds;
  uint64_t dnsRefreshMs = 10000;
  std::string cluster = "deltasync";    // nodes of other clusters are refused at the handshake
  std::optional<Secret> secret;         // no default; required unless tls is set
  // What control clients (`deltasync ctl`) prove, so that holding it grants the control interface
  // only, never replication; none: they prove `secret` (still control only). Shared-secret mode.
  std::optional<Secret> clientSecret;
  std::optional<TlsFiles> tls;          // mutual TLS; the id then comes from the certificate
  uint64_t id = 0;                      // 0: a random id (with tls: must match the certificate)
  std::string metricsListen;            // host:port for Prometheus text over HTTP; "" = off
  uint64_t leaveGraceMs = 500;          // how long close() waits to announce the leave
  Tuning tuning;
  Limits limits;
  PresenceSettings presence;
  // Durable storage: a directory this node alone uses (created if missing; an SQLite database in
  // WAL mode). The node restarts from it as the same replica, with its state and its last known
  // members (so it rejoins without seeds), serves reads at once, and catches up what the cluster
  // did meanwhile. "" keeps everything in memory: every start is a new replica. A lost directory
  // means a new replica; what the old one wrote stays in the cluster.
  std::string dataDir;
  Durability durability = Durability::sync;
  uint64_t flushMs = 100;  // async: how often writes are committed (> 0)
};

// alive -> suspect (missed probes) -> down (suspicion not refuted in time); left: announced its
// leave. A suspect member refutes by a higher incarnation and is alive again.
enum class MemberState : uint8_t { alive, suspect, down, left };

struct Member {
  uint64_t id;
  std::string address;
  MemberState state;
  uint64_t incarnation;
  bool self;
};

// A member changed state; removed: a down (or left) member was forgotten.
struct MemberEvent {
  uint64_t id;
  MemberState state;
  bool removed = false;
  bool operator==(const MemberEvent&) const = default;
};

// How far a write must go before its future completes (Akka Distributed Data's WriteLocal,
// WriteTo(n) and WriteMajority).
//   peers     other replicas that must hold the write (have joined it);
//   majority  a majority of the live members (alive or suspect, this node included) must hold
//             it: floor(live / 2) peers, counted when the write is made; with both, the larger.
// A write that waits for peers is sent to them at once, not at the next gossip round (about two
// round trips for a majority on a LAN: bench/RESULTS.md, session 16, "write consistency").
// A peer counts once it acknowledged the write to this node directly: the node's neighbours
// (Tuning::viewSize members, plus those that chose it). In a cluster larger than about
// 2 x viewSize + 1, a majority can therefore not be confirmed and times out: ask for at most
// viewSize peers there.
struct WriteTo {
  uint32_t peers = 0;
  bool majority = false;
  uint64_t timeoutMs = 5000;

  static WriteTo local() { return {}; }
  static WriteTo replicas(uint32_t n, uint64_t timeoutMs = 5000) { return {n, false, timeoutMs}; }
  static WriteTo majorityOf(uint64_t timeoutMs = 5000) { return {0, true, timeoutMs}; }
};

struct WriteResult {
  bool reached = false;  // held by `wanted` peers (and durable) within the timeout
  uint32_t heldBy = 0;   // peers known to hold it when the future completed
  uint32_t wanted = 0;   // peers it waited for
};

// How much of the cluster a read must have seen (Akka Distributed Data's ReadLocal, ReadFrom(n)
// and ReadMajority), for Node::sync:
//   peers     other replicas whose state this node must hold, as of the call: each is asked
//             how far its log goes and to send it now, and counts once this node has joined
//             its log up to there;
//   majority  a majority of the live members (alive or suspect, this node included): floor(live
//             / 2) peers, counted when the sync starts; with both, the larger.
// As for WriteTo, only the node's neighbours (Tuning::viewSize members, plus those that chose
// it) can count: in a cluster larger than about 2 x viewSize + 1 ask for at most viewSize peers.
struct ReadFrom {
  uint32_t peers = 0;
  bool majority = false;
  uint64_t timeoutMs = 5000;

  static ReadFrom local() { return {}; }
  static ReadFrom replicas(uint32_t n, uint64_t timeoutMs = 5000) { return {n, false, timeoutMs}; }
  static ReadFrom majorityOf(uint64_t timeoutMs = 5000) { return {0, true, timeoutMs}; }
};

struct SyncResult {
  bool reached = false;     // `wanted` peers' state was joined within the timeout
  uint32_t syncedWith = 0;  // peers whose state (as of the sync) this node held at the end
  uint32_t wanted = 0;      // peers it waited for
};

// An object this node holds: its name and its kind as the wire names it ("pn-counter",
// "or-set", "aw-lww-map", "lww-register", "mv-register", "ew-flag", "or-map" (a map of maps),
// "or-map-of-sets", "map-of-counters", and the one kind peers may create that has no handle yet:
// "g-counter").
struct ObjectInfo {
  std::string name;
  std::string kind;
  bool operator==(const ObjectInfo&) const = default;
};

// Where the changes an event reports were made: on this node (its handles, `ctl`), on peers
// (received), or both (an event coalesces what happened since the last one).
enum class ChangeOrigin : uint8_t { local, peers, both };

struct CounterChange {
  int64_t before;
  int64_t after;
  ChangeOrigin origin = ChangeOrigin::local;
};
template <typename E>
struct SetChange {
  std::vector<E> added;    // sorted
  std::vector<E> removed;  // sorted
  ChangeOrigin origin = ChangeOrigin::local;
};
template <typename K, typename V>
struct MapChangeOf {
  std::vector<std::pair<K, V>> put;  // new keys and changed values, sorted by key
  std::vector<K> removed;            // sorted
  ChangeOrigin origin = ChangeOrigin::local;
};
// One value before and after (nullopt: absent): a map key's, or a register's (Register::subscribe).
template <typename V>
struct KeyChangeOf {
  std::optional<V> before;
  std::optional<V> after;
  ChangeOrigin origin = ChangeOrigin::local;
};
// A multi-value register's values before and after (concurrent writes are all values until a
// later write observes them).
template <typename T>
struct MultiRegisterChange {
  std::vector<T> before;
  std::vector<T> after;
  ChangeOrigin origin = ChangeOrigin::local;
};
// A map of maps' entries put (new or changed, with their values) and removed, each named by
// its key and inner key; sorted.
template <typename K, typename IK, typename V>
struct MapOfMapsChange {
  std::vector<std::tuple<K, IK, V>> put;
  std::vector<std::pair<K, IK>> removed;
  ChangeOrigin origin = ChangeOrigin::local;
};
// A map of sets' elements added and removed, as (key, element) pairs.
template <typename K, typename E>
struct MapOfSetsChange {
  std::vector<std::pair<K, E>> added;
  std::vector<std::pair<K, E>> removed;
  ChangeOrigin origin = ChangeOrigin::local;
};
// A map of counters' keys whose value changed: (key, before, after), sorted; a key that is
// absent on one side counts as 0 there (a removed key goes to 0).
template <typename K>
struct MapOfCountersChange {
  std::vector<std::tuple<K, int64_t, int64_t>> changed;
  ChangeOrigin origin = ChangeOrigin::local;
};
struct FlagChange {
  bool before;
  bool after;
  ChangeOrigin origin = ChangeOrigin::local;
};
using MapChange = MapChangeOf<std::string, std::string>;
using KeyChange = KeyChangeOf<std::string>;

// A PN-counter.
class DELTASYNC_API Counter {
 public:
  void increment(uint64_t n = 1);
  void decrement(uint64_t n = 1);
  std::future<WriteResult> increment(uint64_t n, WriteTo to);
  std::future<WriteResult> decrement(uint64_t n, WriteTo to);
  int64_t value() const;
  Subscription subscribe(std::function<void(const CounterChange&)> callback);
  const std::string& name() const { return name_; }

 private:
  friend class Node;
  Counter(std::shared_ptr<detail::NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  std::shared_ptr<detail::NodeCore> core_;
  std::string name_;
};

namespace detail {

// The byte-level handles behind Set<E> and Map<K, V>: elements, keys and values as their codecs'
// bytes (include/deltasync/codec.h), sorted as unsigned bytes. Applications use Set and Map.
class DELTASYNC_API BytesSet {
 public:
  BytesSet(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void add(const std::string& element);
  void remove(const std::string& element);
  std::future<WriteResult> add(const std::string& element, WriteTo to);
  std::future<WriteResult> remove(const std::string& element, WriteTo to);
  bool contains(const std::string& element) const;
  std::vector<std::string> elements() const;
  size_t size() const;
  Subscription subscribe(std::function<void(const SetChange<std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesMap {
 public:
  BytesMap(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void put(const std::string& key, const std::string& value);
  void remove(const std::string& key);
  std::future<WriteResult> put(const std::string& key, const std::string& value, WriteTo to);
  std::future<WriteResult> remove(const std::string& key, WriteTo to);
  std::optional<std::string> get(const std::string& key) const;
  std::vector<std::pair<std::string, std::string>> entries() const;
  size_t size() const;
  Subscription subscribe(std::function<void(const MapChangeOf<std::string, std::string>&)> callback);
  Subscription subscribe(const std::string& key, std::function<void(const KeyChangeOf<std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesRegister {
 public:
  BytesRegister(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void set(const std::string& value);
  std::future<WriteResult> set(const std::string& value, WriteTo to);
  std::optional<std::string> get() const;
  Subscription subscribe(std::function<void(const KeyChangeOf<std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesMultiRegister {
 public:
  BytesMultiRegister(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void set(const std::string& value);
  std::future<WriteResult> set(const std::string& value, WriteTo to);
  void clear();
  std::future<WriteResult> clear(WriteTo to);
  std::vector<std::string> values() const;
  Subscription subscribe(std::function<void(const MultiRegisterChange<std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesMapOfSets {
 public:
  BytesMapOfSets(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void add(const std::string& key, const std::string& element);
  std::future<WriteResult> add(const std::string& key, const std::string& element, WriteTo to);
  void remove(const std::string& key, const std::string& element);
  std::future<WriteResult> remove(const std::string& key, const std::string& element, WriteTo to);
  void removeKey(const std::string& key);
  std::future<WriteResult> removeKey(const std::string& key, WriteTo to);
  bool contains(const std::string& key, const std::string& element) const;
  std::vector<std::string> elements(const std::string& key) const;
  std::vector<std::string> keys() const;
  size_t size() const;
  Subscription subscribe(std::function<void(const MapOfSetsChange<std::string, std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesMapOfCounters {
 public:
  BytesMapOfCounters(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void increment(const std::string& key, uint64_t n);
  void decrement(const std::string& key, uint64_t n);
  std::future<WriteResult> increment(const std::string& key, uint64_t n, WriteTo to);
  std::future<WriteResult> decrement(const std::string& key, uint64_t n, WriteTo to);
  void removeKey(const std::string& key);
  std::future<WriteResult> removeKey(const std::string& key, WriteTo to);
  int64_t value(const std::string& key) const;
  bool contains(const std::string& key) const;
  std::vector<std::pair<std::string, int64_t>> entries() const;
  size_t size() const;
  Subscription subscribe(std::function<void(const MapOfCountersChange<std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API BytesMapOfMaps {
 public:
  BytesMapOfMaps(std::shared_ptr<NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  void put(const std::string& key, const std::string& inner, const std::string& value);
  std::future<WriteResult> put(const std::string& key, const std::string& inner, const std::string& value, WriteTo to);
  void remove(const std::string& key, const std::string& inner);
  std::future<WriteResult> remove(const std::string& key, const std::string& inner, WriteTo to);
  void removeKey(const std::string& key);
  std::future<WriteResult> removeKey(const std::string& key, WriteTo to);
  std::optional<std::string> get(const std::string& key, const std::string& inner) const;
  std::vector<std::pair<std::string, std::string>> entries(const std::string& key) const;
  std::vector<std::string> keys() const;
  size_t size() const;
  Subscription subscribe(std::function<void(const MapOfMapsChange<std::string, std::string, std::string>&)> callback);
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<NodeCore> core_;
  std::string name_;
};

template <typename T>
std::vector<T> decodeAllStored(std::vector<std::string> bytes, const std::string& object, const char* what) {
  if constexpr (std::is_same_v<T, std::string>) {
    return bytes;
  } else {
    std::vector<T> out;
    out.reserve(bytes.size());
    for (const std::string& b : bytes) out.push_back(decodeStored<T>(b, object, what));
    return out;
  }
}

}  // namespace detail

// An add-wins set of elements of any type with a codec (include/deltasync/codec.h).
// elements() and change events list elements sorted by their encoded bytes (for the built-in
// codecs: by value). A read that meets an element that does not decode as E throws CodecError;
// a change event holding one is not delivered (the notifier logs the CodecError).
template <typename E>
class Set {
  static_assert(Encodable<E>, "deltasync::Set<E>: E needs a codec: specialise deltasync::Codec<E> "
                              "(include/deltasync/codec.h)");

 public:
  void add(const E& element) { raw_.add(Codec<E>::encode(element)); }
  void remove(const E& element) { raw_.remove(Codec<E>::encode(element)); }
  std::future<WriteResult> add(const E& element, WriteTo to) { return raw_.add(Codec<E>::encode(element), to); }
  std::future<WriteResult> remove(const E& element, WriteTo to) { return raw_.remove(Codec<E>::encode(element), to); }
  bool contains(const E& element) const { return raw_.contains(Codec<E>::encode(element)); }
  std::vector<E> elements() const { return detail::decodeAllStored<E>(raw_.elements(), raw_.name(), "element"); }
  size_t size() const { return raw_.size(); }
  Subscription subscribe(std::function<void(const SetChange<E>&)> callback) {
    if constexpr (std::is_same_v<E, std::string>) {
      return raw_.subscribe(std::move(callback));
    } else {
      return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const SetChange<std::string>& c) {
        callback(SetChange<E>{detail::decodeAllStored<E>(c.added, name, "element"),
                              detail::decodeAllStored<E>(c.removed, name, "element"), c.origin});
      });
    }
  }
  const std::string& name() const { return raw_.name(); }

 private:
  friend class Node;
  explicit Set(detail::BytesSet raw) : raw_(std::move(raw)) {}
  detail::BytesSet raw_;
};

// An add-wins map with last-writer-wins values (hybrid logical clock timestamps; a put always
// wins over the value it replaced here, whatever the clocks say), of keys and values of any
// types with codecs (include/deltasync/codec.h). entries() and change events are sorted by the
// keys' encoded bytes (for the built-in codecs: by key). A read that meets a key or value that
// does not decode throws CodecError; a change event holding one is not delivered (the notifier
// logs the CodecError).
template <typename K, typename V>
class Map {
  static_assert(Encodable<K>, "deltasync::Map<K, V>: K needs a codec: specialise deltasync::Codec<K> "
                              "(include/deltasync/codec.h)");
  static_assert(Encodable<V>, "deltasync::Map<K, V>: V needs a codec: specialise deltasync::Codec<V> "
                              "(include/deltasync/codec.h)");

 public:
  void put(const K& key, const V& value) { raw_.put(Codec<K>::encode(key), Codec<V>::encode(value)); }
  void remove(const K& key) { raw_.remove(Codec<K>::encode(key)); }
  std::future<WriteResult> put(const K& key, const V& value, WriteTo to) {
    return raw_.put(Codec<K>::encode(key), Codec<V>::encode(value), to);
  }
  std::future<WriteResult> remove(const K& key, WriteTo to) { return raw_.remove(Codec<K>::encode(key), to); }
  std::optional<V> get(const K& key) const { return decodeValue(raw_.get(Codec<K>::encode(key)), raw_.name()); }
  std::vector<std::pair<K, V>> entries() const { return decodeEntries(raw_.entries(), raw_.name()); }
  size_t size() const { return raw_.size(); }
  Subscription subscribe(std::function<void(const MapChangeOf<K, V>&)> callback) {
    if constexpr (std::is_same_v<K, std::string> && std::is_same_v<V, std::string>) {
      return raw_.subscribe(std::move(callback));
    } else {
      return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const MapChangeOf<std::string, std::string>& c) {
        callback(MapChangeOf<K, V>{decodeEntries(c.put, name), detail::decodeAllStored<K>(c.removed, name, "key"), c.origin});
      });
    }
  }
  // Changes of one key only (its callback looks the key up instead of comparing the whole map).
  Subscription subscribe(const K& key, std::function<void(const KeyChangeOf<V>&)> callback) {
    if constexpr (std::is_same_v<V, std::string>) {
      return raw_.subscribe(Codec<K>::encode(key), std::move(callback));
    } else {
      return raw_.subscribe(Codec<K>::encode(key),
                            [name = raw_.name(), callback = std::move(callback)](const KeyChangeOf<std::string>& c) {
                              callback(KeyChangeOf<V>{decodeValue(c.before, name), decodeValue(c.after, name), c.origin});
                            });
    }
  }
  const std::string& name() const { return raw_.name(); }

 private:
  friend class Node;
  explicit Map(detail::BytesMap raw) : raw_(std::move(raw)) {}

  static std::optional<V> decodeValue(std::optional<std::string> bytes, const std::string& name) {
    if (!bytes) return std::nullopt;
    if constexpr (std::is_same_v<V, std::string>) {
      return bytes;
    } else {
      return detail::decodeStored<V>(*bytes, name, "value");
    }
  }
  static std::vector<std::pair<K, V>> decodeEntries(std::vector<std::pair<std::string, std::string>> bytes,
                                                    const std::string& name) {
    if constexpr (std::is_same_v<K, std::string> && std::is_same_v<V, std::string>) {
      return bytes;
    } else {
      std::vector<std::pair<K, V>> out;
      out.reserve(bytes.size());
      for (auto& [k, v] : bytes) {
        out.emplace_back(detail::decodeStored<K>(k, name, "key"), detail::decodeStored<V>(v, name, "value"));
      }
      return out;
    }
  }

  detail::BytesMap raw_;
};

// A last-writer-wins register of a value of any type with a codec (include/deltasync/codec.h):
// the write with the greatest hybrid-logical timestamp wins (ties: the greater replica id); a
// set always wins over the value it replaced here, whatever the clocks say. A value that does
// not decode as T makes get() throw CodecError.
template <typename T>
class Register {
  static_assert(Encodable<T>, "deltasync::Register<T>: T needs a codec: specialise deltasync::Codec<T> "
                              "(include/deltasync/codec.h)");

 public:
  void set(const T& value) { raw_.set(Codec<T>::encode(value)); }
  std::future<WriteResult> set(const T& value, WriteTo to) { return raw_.set(Codec<T>::encode(value), to); }
  std::optional<T> get() const { return decodeOne(raw_.get(), raw_.name()); }  // nullopt: never set
  Subscription subscribe(std::function<void(const KeyChangeOf<T>&)> callback) {
    return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const KeyChangeOf<std::string>& c) {
      callback(KeyChangeOf<T>{decodeOne(c.before, name), decodeOne(c.after, name), c.origin});
    });
  }
  const std::string& name() const { return raw_.name(); }

 private:
  friend class Node;
  explicit Register(detail::BytesRegister raw) : raw_(std::move(raw)) {}
  static std::optional<T> decodeOne(const std::optional<std::string>& bytes, const std::string& name) {
    if (!bytes) return std::nullopt;
    return detail::decodeStored<T>(*bytes, name, "value");
  }
  detail::BytesRegister raw_;
};

// A multi-value register: a set supersedes every value this node has seen; sets made
// concurrently (on nodes that had not seen each other's) all survive, as values(), until a later
// set observes them: the application resolves the conflict by setting. clear() removes the values
// seen here (concurrent sets survive). values() are in the order of their writes' dots, the same
// on every node.
template <typename T>
class MultiRegister {
  static_assert(Encodable<T>, "deltasync::MultiRegister<T>: T needs a codec: specialise deltasync::Codec<T> "
                              "(include/deltasync/codec.h)");

 public:
  void set(const T& value) { raw_.set(Codec<T>::encode(value)); }
  std::future<WriteResult> set(const T& value, WriteTo to) { return raw_.set(Codec<T>::encode(value), to); }
  void clear() { raw_.clear(); }
  std::future<WriteResult> clear(WriteTo to) { return raw_.clear(to); }
  std::vector<T> values() const { return detail::decodeAllStored<T>(raw_.values(), raw_.name(), "value"); }
  Subscription subscribe(std::function<void(const MultiRegisterChange<T>&)> callback) {
    return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const MultiRegisterChange<std::string>& c) {
      callback(MultiRegisterChange<T>{detail::decodeAllStored<T>(c.before, name, "value"),
                                      detail::decodeAllStored<T>(c.after, name, "value"), c.origin});
    });
  }
  const std::string& name() const { return raw_.name(); }

 private:
  friend class Node;
  explicit MultiRegister(detail::BytesMultiRegister raw) : raw_(std::move(raw)) {}
  detail::BytesMultiRegister raw_;
};

// A map of maps: keys K, each holding an add-wins map of IK -> V with last-writer-wins values
// (as Map). A key is present while its inner map has entries. removeKey(k) removes the inner
// map as seen here: a put into it made concurrently elsewhere survives (add wins), with only
// what that put wrote. at(k) is a handle to one inner map (it exists once something is put).
// keys() and entries() are sorted by encoded bytes (for the built-in codecs: by value). A write
// costs O(size of the inner map it touches); keep inner maps small (thousands of entries), and
// use one Map with compound keys for large ones.
namespace detail {

// What every map of nested values offers (MapOfMaps, MapOfSets): its keys, removing one, and the
// nested value at a key (at(), whose handle keeps the raw handle and the key: KeyedBase).
template <typename K, typename Raw>
class NestedMapBase {
 public:
  void removeKey(const K& key) { raw_.removeKey(Codec<K>::encode(key)); }
  std::future<WriteResult> removeKey(const K& key, WriteTo to) { return raw_.removeKey(Codec<K>::encode(key), to); }
  std::vector<K> keys() const { return decodeAllStored<K>(raw_.keys(), raw_.name(), "key"); }
  size_t size() const { return raw_.size(); }
  const std::string& name() const { return raw_.name(); }

 protected:
  explicit NestedMapBase(Raw raw) : raw_(std::move(raw)) {}
  Raw raw_;
};

template <typename K, typename Raw>
class KeyedBase {
 public:
  const K& key() const { return key_; }

 protected:
  KeyedBase(Raw raw, K key) : raw_(std::move(raw)), key_(std::move(key)) {}
  std::string encodedKey() const { return Codec<K>::encode(key_); }
  Raw raw_;
  K key_;
};

}  // namespace detail

template <typename K, typename IK, typename V>
class MapOfMaps : public detail::NestedMapBase<K, detail::BytesMapOfMaps> {
  static_assert(Encodable<K> && Encodable<IK> && Encodable<V>,
                "deltasync::MapOfMaps<K, IK, V>: every type needs a codec: specialise deltasync::Codec "
                "(include/deltasync/codec.h)");

 public:
  class Inner : public detail::KeyedBase<K, detail::BytesMapOfMaps> {
    using Base = detail::KeyedBase<K, detail::BytesMapOfMaps>;
    using Base::raw_;
    using Base::key_;

   public:
    void put(const IK& key, const V& value) { raw_.put(Codec<K>::encode(key_), Codec<IK>::encode(key), Codec<V>::encode(value)); }
    std::future<WriteResult> put(const IK& key, const V& value, WriteTo to) {
      return raw_.put(Codec<K>::encode(key_), Codec<IK>::encode(key), Codec<V>::encode(value), to);
    }
    void remove(const IK& key) { raw_.remove(Codec<K>::encode(key_), Codec<IK>::encode(key)); }
    std::future<WriteResult> remove(const IK& key, WriteTo to) {
      return raw_.remove(Codec<K>::encode(key_), Codec<IK>::encode(key), to);
    }
    std::optional<V> get(const IK& key) const {
      auto bytes = raw_.get(Codec<K>::encode(key_), Codec<IK>::encode(key));
      if (!bytes) return std::nullopt;
      return detail::decodeStored<V>(*bytes, raw_.name(), "value");
    }
    std::vector<std::pair<IK, V>> entries() const {
      std::vector<std::pair<IK, V>> out;
      for (auto& [k, v] : raw_.entries(Codec<K>::encode(key_))) {
        out.emplace_back(detail::decodeStored<IK>(k, raw_.name(), "key"), detail::decodeStored<V>(v, raw_.name(), "value"));
      }
      return out;
    }
    size_t size() const { return raw_.entries(Codec<K>::encode(key_)).size(); }

   private:
    friend class MapOfMaps;
    Inner(detail::BytesMapOfMaps raw, K key) : Base(std::move(raw), std::move(key)) {}
  };

  Inner at(const K& key) const { return Inner(this->raw_, key); }
  // Entries put and removed, in every inner map (O(size of the whole map) per notification).
  Subscription subscribe(std::function<void(const MapOfMapsChange<K, IK, V>&)> callback) {
    using Bytes3 = MapOfMapsChange<std::string, std::string, std::string>;
    return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const Bytes3& c) {
      MapOfMapsChange<K, IK, V> out{{}, {}, c.origin};
      for (const auto& [k, ik, v] : c.put) {
        out.put.emplace_back(detail::decodeStored<K>(k, name, "key"), detail::decodeStored<IK>(ik, name, "key"),
                             detail::decodeStored<V>(v, name, "value"));
      }
      for (const auto& [k, ik] : c.removed) {
        out.removed.emplace_back(detail::decodeStored<K>(k, name, "key"), detail::decodeStored<IK>(ik, name, "key"));
      }
      callback(out);
    });
  }

 private:
  friend class Node;
  using detail::NestedMapBase<K, detail::BytesMapOfMaps>::raw_;
  explicit MapOfMaps(detail::BytesMapOfMaps raw) : detail::NestedMapBase<K, detail::BytesMapOfMaps>(std::move(raw)) {}
};

// A map of add-wins sets (Riak's map of sets): m.at("alice").add("admin"); m.at("alice").contains(...).
// Removing a key removes its set as seen here: elements added concurrently on other nodes
// survive (add wins), so the key comes back with just those. Reads look at the set in place.
template <typename K, typename E>
class MapOfSets : public detail::NestedMapBase<K, detail::BytesMapOfSets> {
  static_assert(Encodable<K> && Encodable<E>,
                "deltasync::MapOfSets<K, E>: both types need a codec: specialise deltasync::Codec "
                "(include/deltasync/codec.h)");

 public:
  class Inner : public detail::KeyedBase<K, detail::BytesMapOfSets> {
    using Base = detail::KeyedBase<K, detail::BytesMapOfSets>;
    using Base::raw_;
    using Base::key_;

   public:
    void add(const E& element) { raw_.add(Codec<K>::encode(key_), Codec<E>::encode(element)); }
    std::future<WriteResult> add(const E& element, WriteTo to) {
      return raw_.add(Codec<K>::encode(key_), Codec<E>::encode(element), to);
    }
    void remove(const E& element) { raw_.remove(Codec<K>::encode(key_), Codec<E>::encode(element)); }
    std::future<WriteResult> remove(const E& element, WriteTo to) {
      return raw_.remove(Codec<K>::encode(key_), Codec<E>::encode(element), to);
    }
    bool contains(const E& element) const { return raw_.contains(Codec<K>::encode(key_), Codec<E>::encode(element)); }
    std::vector<E> elements() const {
      return detail::decodeAllStored<E>(raw_.elements(Codec<K>::encode(key_)), raw_.name(), "element");
    }
    size_t size() const { return raw_.elements(Codec<K>::encode(key_)).size(); }

   private:
    friend class MapOfSets;
    Inner(detail::BytesMapOfSets raw, K key) : Base(std::move(raw), std::move(key)) {}
  };

  Inner at(const K& key) const { return Inner(this->raw_, key); }
  // Elements added and removed, in every set (O(size of the whole map) per notification).
  Subscription subscribe(std::function<void(const MapOfSetsChange<K, E>&)> callback) {
    using Raw = MapOfSetsChange<std::string, std::string>;
    return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const Raw& c) {
      MapOfSetsChange<K, E> out{{}, {}, c.origin};
      for (const auto& [k, e] : c.added) {
        out.added.emplace_back(detail::decodeStored<K>(k, name, "key"), detail::decodeStored<E>(e, name, "element"));
      }
      for (const auto& [k, e] : c.removed) {
        out.removed.emplace_back(detail::decodeStored<K>(k, name, "key"), detail::decodeStored<E>(e, name, "element"));
      }
      callback(out);
    });
  }

 private:
  friend class Node;
  using detail::NestedMapBase<K, detail::BytesMapOfSets>::raw_;
  explicit MapOfSets(detail::BytesMapOfSets raw) : detail::NestedMapBase<K, detail::BytesMapOfSets>(std::move(raw)) {}
};

// A map of counters (Akka's PNCounterMap; Riak's map of counters): m.increment("alice", 3),
// m.value("alice"). removeKey resets a counter to what was counted after the removal, wherever
// that happened: increments made concurrently with it survive, never the old total (as an
// add-wins set keeps a concurrent add; crdt/counter-map.h). A removed key stays in the object's
// metadata (a few bytes per writer that counted on it), so that old copies of its counts cannot
// bring them back. Keys of any type with a codec; entries() and events sorted by the keys' bytes.
template <typename K>
class MapOfCounters {
  static_assert(Encodable<K>, "deltasync::MapOfCounters<K>: K needs a codec: specialise deltasync::Codec<K> "
                              "(include/deltasync/codec.h)");

 public:
  // n at most INT64_MAX (std::invalid_argument otherwise).
  void increment(const K& key, uint64_t n = 1) { raw_.increment(Codec<K>::encode(key), n); }
  void decrement(const K& key, uint64_t n = 1) { raw_.decrement(Codec<K>::encode(key), n); }
  std::future<WriteResult> increment(const K& key, uint64_t n, WriteTo to) { return raw_.increment(Codec<K>::encode(key), n, to); }
  std::future<WriteResult> decrement(const K& key, uint64_t n, WriteTo to) { return raw_.decrement(Codec<K>::encode(key), n, to); }
  void removeKey(const K& key) { raw_.removeKey(Codec<K>::encode(key)); }
  std::future<WriteResult> removeKey(const K& key, WriteTo to) { return raw_.removeKey(Codec<K>::encode(key), to); }
  // 0 for an absent key.
  int64_t value(const K& key) const { return raw_.value(Codec<K>::encode(key)); }
  bool contains(const K& key) const { return raw_.contains(Codec<K>::encode(key)); }
  std::vector<std::pair<K, int64_t>> entries() const { return decodeKeys(raw_.entries(), raw_.name()); }
  size_t size() const { return raw_.size(); }
  Subscription subscribe(std::function<void(const MapOfCountersChange<K>&)> callback) {
    if constexpr (std::is_same_v<K, std::string>) {
      return raw_.subscribe(std::move(callback));
    } else {
      return raw_.subscribe([name = raw_.name(), callback = std::move(callback)](const MapOfCountersChange<std::string>& c) {
        MapOfCountersChange<K> out{{}, c.origin};
        for (const auto& [k, before, after] : c.changed) {
          out.changed.emplace_back(detail::decodeStored<K>(k, name, "key"), before, after);
        }
        callback(out);
      });
    }
  }
  const std::string& name() const { return raw_.name(); }

 private:
  friend class Node;
  explicit MapOfCounters(detail::BytesMapOfCounters raw) : raw_(std::move(raw)) {}
  static std::vector<std::pair<K, int64_t>> decodeKeys(std::vector<std::pair<std::string, int64_t>> bytes,
                                                       const std::string& name) {
    if constexpr (std::is_same_v<K, std::string>) {
      return bytes;
    } else {
      std::vector<std::pair<K, int64_t>> out;
      out.reserve(bytes.size());
      for (auto& [k, v] : bytes) out.emplace_back(detail::decodeStored<K>(k, name, "key"), v);
      return out;
    }
  }
  detail::BytesMapOfCounters raw_;
};

// An enable-wins flag: an enable concurrent with a disable wins.
class DELTASYNC_API Flag {
 public:
  void enable();
  void disable();
  std::future<WriteResult> enable(WriteTo to);
  std::future<WriteResult> disable(WriteTo to);
  bool value() const;
  Subscription subscribe(std::function<void(const FlagChange&)> callback);
  const std::string& name() const { return name_; }

 private:
  friend class Node;
  Flag(std::shared_ptr<detail::NodeCore> core, std::string name) : core_(std::move(core)), name_(std::move(name)) {}
  std::shared_ptr<detail::NodeCore> core_;
  std::string name_;
};

class DELTASYNC_API Node {
 public:
  // Binds the listen address and starts; throws std::invalid_argument for a bad configuration
  // (no secret, bad address) and std::runtime_error when the address cannot be bound.
  explicit Node(NodeConfig config);
  // close()s.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Nonzero; random unless configured. The number logs, metrics and `deltasync ctl` show.
  uint64_t id() const;
  std::string address() const;          // as advertised to peers
  std::string metricsAddress() const;   // "" when off

  Counter counter(const std::string& name);
  template <typename E>
  Set<E> set(const std::string& name) {
    checkKind(name, Kind::set);
    return Set<E>(detail::BytesSet(core_, name));
  }
  template <typename K, typename V>
  Map<K, V> map(const std::string& name) {
    checkKind(name, Kind::map);
    return Map<K, V>(detail::BytesMap(core_, name));
  }

  template <typename T>
  Register<T> lwwRegister(const std::string& name) {
    checkKind(name, Kind::lwwRegister);
    return Register<T>(detail::BytesRegister(core_, name));
  }
  template <typename T>
  MultiRegister<T> mvRegister(const std::string& name) {
    checkKind(name, Kind::mvRegister);
    return MultiRegister<T>(detail::BytesMultiRegister(core_, name));
  }
  Flag flag(const std::string& name);
  template <typename K, typename IK, typename V>
  MapOfMaps<K, IK, V> mapOfMaps(const std::string& name) {
    checkKind(name, Kind::mapOfMaps);
    return MapOfMaps<K, IK, V>(detail::BytesMapOfMaps(core_, name));
  }
  template <typename K, typename E>
  MapOfSets<K, E> mapOfSets(const std::string& name) {
    checkKind(name, Kind::mapOfSets);
    return MapOfSets<K, E>(detail::BytesMapOfSets(core_, name));
  }
  template <typename K>
  MapOfCounters<K> mapOfCounters(const std::string& name) {
    checkKind(name, Kind::mapOfCounters);
    return MapOfCounters<K>(detail::BytesMapOfCounters(core_, name));
  }

  // The presence tracker (include/deltasync/presence.h).
  Presence presence();

  // A read that waits for its peers (Akka's ReadMajority): the future completes once this node
  // holds everything `from.peers` (or a majority) of its neighbours held when sync() was called,
  // or when the timeout runs out (`reached` false: reads then show what this node has, which
  // may lack what the unreachable peers hold). Read after it, from any handle:
  //   node.sync(ReadFrom::majorityOf(2000)).get();  auto v = users.get("alice");
  // ReadFrom::local() completes at once. The call returns at once; the future throws NodeClosed
  // if the node closes first.
  std::future<SyncResult> sync(ReadFrom from);

  // Batches (as a transaction in Yjs or a change in Automerge): f runs at once, on this thread;
  // the writes it makes through this node's handles (and deleteObject) are recorded, not applied,
  // and applied together when f returns, as one unit:
  //   - local readers see all of it or none of it, and each subscription hears of it once;
  //   - each object it writes changes by one delta, and peers join the batch whole, never half
  //     (gossip/engine.h "Batch atomicity"; the one exception, documented there: a node catching
  //     up by a state transfer larger than 4 MiB may show it part-applied until the transfer ends);
  //   - in sync durability it is committed in one transaction: after a crash, all or none of it.
  // Reads inside f see the state before the batch. A write breaking a limit throws at the call,
  // inside f (LimitExceeded: not recorded; the batch goes on if f catches it). If f throws,
  // nothing is applied. When f returns, every write is checked against its object's kind first:
  // KindMismatch or ObjectDeleted then, with nothing applied. A batch writes at most
  // Limits::maxObjectsPerMessage / 4 objects and Limits::maxMessageBytes / 4 bytes of names,
  // keys and values (LimitExceeded at the write that would pass either: it must fit one message
  // to peers). Writes through other nodes' handles inside f are their own (or their own node's
  // batch); presence operations are not batched. A batch inside a batch of the same node joins
  // it. The blocking form returns once applied (and, in sync durability, committed); the WriteTo
  // form returns once applied, with a future that completes as a single write's does (WriteTo).
  // A WriteTo write inside f throws std::logic_error: pass the WriteTo to batch().
  void batch(const std::function<void()>& f);
  std::future<WriteResult> batch(const std::function<void()>& f, WriteTo to);

  // The objects this node holds, by name (deltasync's own, named "$...", and deleted ones left
  // out).
  std::vector<ObjectInfo> objects() const;

  // Deletes an object for good, cluster-wide, whatever its kind (as Akka Distributed Data's
  // Delete): the name is retired. Handles of it then throw ObjectDeleted on every call, new ones
  // at creation, and its subscribers see everything removed, then nothing more; objects() no
  // longer lists it. The delete wins over every write to the object: one made concurrently on
  // a node that had not heard of the delete yet is applied there, then dropped when the delete
  // arrives (everywhere alike: the nodes still converge). Deleting an absent name retires it
  // too; deleting twice does nothing more. A deleted name costs its bytes in memory for ever.
  // std::invalid_argument for a name starting with '$' (deltasync's own), LimitExceeded for one
  // peers would refuse. The WriteTo form returns at once (see WriteTo).
  void deleteObject(const std::string& name);
  std::future<WriteResult> deleteObject(const std::string& name, WriteTo to);

  std::vector<Member> members() const;
  // Member events (up, suspect, down, left, removed) on the notifier thread.
  Subscription onMembers(std::function<void(const MemberEvent&)> callback);
  // The node's metrics as Prometheus text.
  std::string metrics() const;

  // Offline: no messages to or from peers, as if the network were cut (an app's offline switch,
  // or a partition to try things on). Reads and writes go on locally; peers see this node down
  // after the failure detector's timeout (and its presences leave), it sees them down. Back
  // online, it converges with the cluster in both directions, as after any partition.
  // Control connections (`deltasync ctl`) keep working.
  void setOffline(bool offline);
  bool offline() const;

  // Seeds at run time. addSeed(address) dials it at once and retries it (with backoff) until it
  // answers, as a configured seed (and again whenever this node knows no live member); false when
  // it is a seed already or this node's own address; std::invalid_argument unless HOST:PORT.
  // removeSeed stops dialling it (members met through it stay members); false when it was not a
  // seed. seeds() lists what is dialled: NodeConfig::seeds, those added, the addresses the
  // dnsSeeds names resolve to, and (with a data directory) the members stored at the last run.
  bool addSeed(const std::string& address);
  bool removeSeed(const std::string& address);
  std::vector<std::string> seeds() const;

  // Announces the leave to the view (waiting at most leaveGraceMs), then stops both threads.
  // Idempotent. Handles then throw NodeClosed.
  void close();

 private:
  enum class Kind { counter, set, map, lwwRegister, mvRegister, flag, mapOfMaps, mapOfSets, mapOfCounters };
  void checkKind(const std::string& name, Kind kind);
  std::shared_ptr<detail::NodeCore> core_;
};

}  // namespace deltasync
