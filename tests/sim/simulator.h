// A deterministic network simulator that runs the real replica core (gossip/replica.h: store,
// engine, membership and their glue, exactly as lib/runtime drives them) (tests/sim, bench/).
//
// Single-threaded, seeded, on simulated milliseconds. Every message an engine emits is encoded
// with the real codec (gossip/envelope.h), so byte counts are real wire sizes, and decoded with
// validation on delivery, exactly as a transport would. Faults: i.i.d. loss, duplication,
// reordering (extra random delay), per-link delay, partitions (groups; one-way blocks),
// crash and restart (with durable state, or as a fresh replica with a new id), slow nodes.
//
// Determinism: one std::mt19937_64 (its output is fixed by the standard) drawn through our own
// integer and real mappings (the standard distributions are implementation-defined); events are
// ordered by (time, insertion number). The trace hash folds in every send, drop and delivery, so
// two runs with the same seed and the same calls produce the same hash, which a test checks.
//
// Neighbours: a fixed random graph (a ring for connectivity plus random chords, made symmetric),
// or, with SimConfig::membership, the views membership chooses; in the fixed graph a node that
// restarts with a new id is swapped in its neighbours' views, as membership would announce.
//
// Ticks: each node's replica is ticked at its own nextTickMs() (its first tick at a random
// offset within one gossip interval), stretched by the node's slow factor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gossip/compact.h"
#include "gossip/envelope.h"
#include "gossip/errors.h"
#include "gossip/replica.h"

namespace deltasync::sim {

using gossip::Bytes;
using gossip::ReplicaId;

struct Faults {
  double loss = 0;         // probability a message is dropped
  double duplicate = 0;    // probability a message is delivered twice
  double reorder = 0;      // probability a message gets an extra delay of up to reorderMs
  uint32_t minDelayMs = 1;
  uint32_t maxDelayMs = 20;
  uint32_t reorderMs = 300;
};

struct SimConfig {
  size_t nodes = 10;
  uint64_t seed = 1;
  uint32_t tickMs = 100;  // gossip period (one engine round)
  uint32_t membershipTickMs = 50;  // membership's timer resolution (the runtime's default)
  size_t chords = 1;      // random extra neighbours per node, besides the ring
  Faults faults;
  gossip::EngineConfig engine;
  gossip::Limits limits;
  // With membership, views come from gossip/membership (SWIM) instead of the fixed graph: node
  // i joins through node 0 and one random earlier node.
  bool membership = false;
  gossip::MembershipConfig membershipConfig;
  gossip::PresenceConfig presence;
  gossip::PruneConfig pruning;
  // Also count the encoded bytes of the CRDT values inside pushes and chunks (costs a second
  // encoding of each; for experiments).
  bool countPayload = false;
};

// A membership event as observed by one node at one time.
struct ObservedEvent {
  uint64_t timeMs;
  size_t observer;
  gossip::MemberEvent event;
};

struct SimStats {
  uint64_t messages = 0, bytes = 0, dropped = 0, delivered = 0, errors = 0;
  uint64_t engineMessages = 0;  // messages other than membership's
  std::map<size_t, uint64_t> bytesByKind;  // Message alternative index -> bytes sent
  std::map<size_t, uint64_t> largestByKind;  // Message alternative index -> largest message
  std::string lastError;
  uint64_t suspicions = 0;  // suspect events observed (membership)
  uint64_t payload = 0;     // with countPayload: value bytes inside pushes and chunks
  uint64_t elements = 0;    // with countPayload: entries (dot-store entries, counter entries) in them
};

class Simulator {
 public:
  explicit Simulator(SimConfig config) : config_(std::move(config)), rng_(config_.seed) {
    const size_t n = config_.nodes;
    nodes_.resize(n);
    for (size_t i = 0; i < n; ++i) startReplica(i, ReplicaId{i + 1});
    adjacency_.assign(n, {});
    auto link = [&](size_t a, size_t b) {
      if (a == b) return;
      adjacency_[a].insert(b);
      adjacency_[b].insert(a);
    };
    for (size_t i = 0; n > 1 && i < n; ++i) link(i, (i + 1) % n);
    for (size_t i = 0; n > 2 && i < n; ++i) {
      for (size_t c = 0; c < config_.chords; ++c) link(i, below(n));
    }
    for (size_t i = 0; i < n; ++i) {
      idToIndex_[id(i).value] = i;
      if (!config_.membership) refreshNeighbors(i);
      schedule(below(config_.tickMs), Event::kTick, i, 0, nullptr);
    }
    group_.assign(n, 0);
  }

  size_t size() const { return nodes_.size(); }
  gossip::Replica& replica(size_t i) { return *nodes_[i].replica; }
  const gossip::Engine& engine(size_t i) const { return nodes_[i].replica->engine(); }
  const gossip::ObjectStore& store(size_t i) const { return nodes_[i].replica->store(); }
  bool alive(size_t i) const { return nodes_[i].alive; }
  ReplicaId id(size_t i) const { return nodes_[i].replica->self(); }
  uint64_t now() const { return now_; }
  const SimStats& stats() const { return stats_; }
  uint64_t traceHash() const { return trace_; }
  const std::set<size_t>& adjacent(size_t i) const { return adjacency_[i]; }

  // Random numbers for workloads, from the same seeded stream (keeps runs reproducible).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  double real() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return real() < p; }

  void setFaults(const Faults& f) { config_.faults = f; }
  // Messages between nodes of different groups are dropped.
  void partition(std::vector<int> groupOf) { group_ = std::move(groupOf); }
  void blockOneWay(size_t from, size_t to) { blocked_.insert({from, to}); }
  void heal() {
    std::fill(group_.begin(), group_.end(), 0);
    blocked_.clear();
    config_.faults = Faults{};
  }
  // Node i's ticks come `factor` times further apart.
  void setSlow(size_t i, uint32_t factor) { nodes_[i].slow = std::max<uint32_t>(1, factor); }

  void crash(size_t i) {
    nodes_[i].alive = false;
    fold(0xC0, i, 0, 0);
  }
  // durable: the node comes back with its state, log and acks (as persisted by lib/).
  // Otherwise it comes back empty, as a new replica (a new id: dots are never reused).
  void restart(size_t i, bool durable) {
    nodes_[i].alive = true;
    fold(0xC1, i, durable, 0);
    if (durable) return;
    ReplicaId old = id(i);
    startReplica(i, ReplicaId{nextId_++});
    idToIndex_.erase(old.value);
    idToIndex_[id(i).value] = i;
    if (config_.membership) return;
    refreshNeighbors(i);
    for (size_t j : adjacency_[i]) refreshNeighbors(j);
  }

  const gossip::Membership& membership(size_t i) const { return *nodes_[i].replica->membership(); }

  // Node i announces that it leaves (Replica::leave); it keeps running until crashed.
  void leave(size_t i) {
    out_.clear();
    nodes_[i].replica->leave(out_);
    collectEvents(i);
    sendAll(i);
  }
  // Node i asks its neighbours to sync it (Replica::requestSync: a read that waits for its
  // peers); the request's id, for engine(i).syncedPeers().
  uint64_t requestSync(size_t i) {
    out_.clear();
    const uint64_t id = nodes_[i].replica->requestSync(out_);
    fold(0xA1, i, id, 0);
    sendAll(i);
    return id;
  }
  // Sends m from node `from` to node `to` over the simulated network, as if `from` had (a
  // holder of the secret forging a message in its name, in the security tests).
  void inject(size_t from, size_t to, const gossip::Message& m) { send(from, to, m); }
  // Membership events (all but suspicions, which are counted in stats) in time order.
  const std::vector<ObservedEvent>& events() const { return events_; }

  // Runs f(store) at node i now (a local operation), folding it into the trace.
  template <typename F>
  void at(size_t i, F&& f) {
    fold(0xA0, i, engine(i).seq(), 0);
    f(nodes_[i].replica->store());
  }

  // Processes events up to now + ms.
  void runFor(uint64_t ms) {
    const uint64_t end = now_ + ms;
    while (!queue_.empty() && queue_.top().time <= end) {
      Event e = queue_.top();
      queue_.pop();
      now_ = e.time;
      handle(e);
    }
    now_ = end;
  }

  // Runs until a window passes in which the engines sent nothing and none of their messages is
  // in flight (membership never falls quiet: it probes for ever); false if that does not happen
  // within maxMs. The window outlasts every engine timer (retransmission, catch-up retry) of the
  // slowest node, so a quiet window means nothing is pending.
  bool runUntilQuiet(uint64_t maxMs) {
    const uint64_t end = now_ + maxMs;
    const uint64_t rounds = std::max(config_.engine.retransmitTicks, config_.engine.catchupRetryTicks) + 1;
    uint64_t window = 0;
    for (const Node& n : nodes_) window = std::max<uint64_t>(window, rounds * config_.tickMs * n.slow);
    while (now_ < end) {
      uint64_t before = stats_.engineMessages;
      runFor(window);
      if (stats_.engineMessages == before && inFlightEngine_ == 0) return true;
    }
    return false;
  }

  // "" when every live node holds the same objects; else which object differs where.
  std::string divergence() const {
    size_t first = size();
    for (size_t i = 0; i < size(); ++i) {
      if (!alive(i)) continue;
      if (first == size()) {
        first = i;
        continue;
      }
      const auto& a = store(first).objects();
      const auto& b = store(i).objects();
      if (a == b) continue;
      std::string what = "node " + std::to_string(first) + " and node " + std::to_string(i) + " differ";
      for (const auto& [name, v] : a) {
        auto it = b.find(name);
        if (it == b.end()) return what + ": '" + name + "' missing at the second";
        if (!(it->second == v)) return what + " in '" + name + "'";
      }
      return what + ": the second has more objects";
    }
    return "";
  }
  bool converged() const { return divergence().empty(); }

 private:
  struct Event {
    enum Kind : uint8_t { kTick, kDeliver };
    uint64_t time;
    uint64_t order;
    Kind kind;
    size_t node;
    size_t from;
    uint64_t fromId, toId;  // the incarnations at send time (a restart makes a new id)
    bool engine;            // an engine message (not membership)
    std::shared_ptr<const Bytes> bytes;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : order > o.order; }
  };
  struct Node {
    std::unique_ptr<gossip::Replica> replica;
    bool alive = true;
    uint32_t slow = 1;
  };

  void schedule(uint64_t delay, Event::Kind kind, size_t node, size_t from, std::shared_ptr<const Bytes> bytes) {
    uint64_t fromId = bytes ? id(from).value : 0, toId = bytes ? id(node).value : 0;
    queue_.push(Event{now_ + delay, order_++, kind, node, from, fromId, toId, nextIsEngine_, std::move(bytes)});
  }

  void fold(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    trace_ = crdt::mix64(trace_ ^ crdt::mix64(a + 0x9e3779b97f4a7c15ULL * (b + 1)) ^ crdt::mix64(c * 31 + d));
  }

  // A fresh replica with id `self` at node i; with membership, it joins through node 0 and one
  // random earlier node.
  void startReplica(size_t i, ReplicaId self) {
    gossip::ReplicaConfig rc;
    rc.gossipIntervalMs = config_.tickMs;
    rc.membershipTickMs = config_.membershipTickMs;
    rc.membership = config_.membership;
    rc.engine = config_.engine;
    rc.membershipConfig = config_.membershipConfig;
    rc.membershipConfig.seed = config_.seed * 1000003 + self.value;
    rc.presence = config_.presence;
    rc.pruning = config_.pruning;
    rc.limits = config_.limits;
    nodes_[i].replica = std::make_unique<gossip::Replica>(self, "", rc);
    if (!config_.membership) return;
    if (i != 0) {
      nodes_[i].replica->addSeed(id(0), "", now_);
      size_t other = below(i);
      if (other != 0) nodes_[i].replica->addSeed(id(other), "", now_);
    }
    collectEvents(i);
  }

  // Records node i's member events (suspicions are only counted), and steps its presence
  // tracker as lib/runtime does after every step.
  void collectEvents(size_t i) {
    if (nodes_[i].replica->maintenancePending(now_)) nodes_[i].replica->stepMaintenance(now_, now_);
    for (auto& e : nodes_[i].replica->takeEvents()) {
      if (e.state == gossip::MemberState::suspect && !e.removed) {
        ++stats_.suspicions;
      } else {
        events_.push_back(ObservedEvent{now_, i, e});
      }
    }
  }

  void refreshNeighbors(size_t i) {
    idToIndex_[id(i).value] = i;
    std::vector<ReplicaId> ids;
    for (size_t j : adjacency_[i]) ids.push_back(id(j));
    nodes_[i].replica->setNeighbors(std::move(ids));
  }

  void handle(const Event& e) {
    Node& node = nodes_[e.node];
    if (e.kind == Event::kTick) {
      gossip::Replica& r = *node.replica;
      out_.clear();
      if (node.alive) {
        r.tick(now_, out_);
        collectEvents(e.node);
      }
      // A crashed node's timer keeps running at the gossip interval (its replica is not
      // ticked): the restarted one picks it up.
      const uint64_t next = node.alive ? std::max(r.nextTickMs(), now_ + 1) : now_ + config_.tickMs;
      schedule((next - now_) * node.slow, Event::kTick, e.node, 0, nullptr);
      sendAll(e.node);
      return;
    }
    --inFlight_;
    if (e.engine) --inFlightEngine_;
    if (!node.alive || id(e.node).value != e.toId) return;  // down, or addressed to a former self
    fold(0xD0, e.node, e.from, hashBytes(*e.bytes));
    ++stats_.delivered;
    out_.clear();
    try {
      gossip::Message m = gossip::decodeMessage(*e.bytes, config_.limits);
      // Simulated time is every node's wall clock too (the workloads stamp writes with it).
      node.replica->receive(ReplicaId{e.fromId}, m, now_, now_, out_);
      collectEvents(e.node);
    } catch (const std::exception& ex) {
      ++stats_.errors;
      stats_.lastError = ex.what();
    }
    sendAll(e.node);
  }

  void sendAll(size_t from) {
    std::vector<gossip::Outgoing> out = std::move(out_);
    for (auto& o : out) {
      auto it = idToIndex_.find(o.to.value);
      if (it == idToIndex_.end()) continue;  // an id that no longer exists
      send(from, it->second, o.message);
    }
  }

  void send(size_t from, size_t to, const gossip::Message& m) {
    auto bytes = std::make_shared<const Bytes>(gossip::encodeMessage(m));
    const bool engine = !gossip::isMembershipMessage(m);
    ++stats_.messages;
    stats_.engineMessages += engine ? 1 : 0;
    stats_.bytes += bytes->size();
    stats_.bytesByKind[m.index()] += bytes->size();
    stats_.largestByKind[m.index()] = std::max<uint64_t>(stats_.largestByKind[m.index()], bytes->size());
    if (config_.countPayload) {
      // Value bytes as they travel: compact, the sender implied.
      auto count = [&](const std::vector<gossip::NamedValue>& objects, gossip::ReplicaId sender) {
        for (const auto& o : objects) {
          stats_.payload += gossip::wireSize(o.value, sender) + o.name.size();
          stats_.elements += std::visit([](const auto& x) -> uint64_t {
            if constexpr (requires { x.store().size(); }) return x.store().size();
            else if constexpr (requires { x.size(); }) return x.size();
            else if constexpr (requires { x.get(); }) return x.get() != nullptr ? 1 : 0;
            else return 1;  // a tombstone
          }, o.value);
        }
      };
      if (auto* p = std::get_if<gossip::DeltaPushMsg>(&m)) count(p->objects, p->sender);
      if (std::holds_alternative<gossip::StateChunkMsg>(m)) {  // its objects are encoded already
        const gossip::Message decoded = gossip::decodeMessage(*bytes, gossip::Limits{});
        const auto& chunk = std::get<gossip::StateChunkMsg>(decoded);
        count(chunk.objects, chunk.sender);
      }
    }
    const Faults& f = config_.faults;
    if (group_[from] != group_[to] || blocked_.count({from, to}) != 0 || chance(f.loss)) {
      ++stats_.dropped;
      fold(0xE0, from, to, bytes->size());
      return;
    }
    int copies = chance(f.duplicate) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      uint64_t delay = f.minDelayMs + below(f.maxDelayMs - f.minDelayMs + 1);
      if (chance(f.reorder)) delay += below(f.reorderMs + 1);
      fold(0xF0, from, to, delay);
      ++inFlight_;
      inFlightEngine_ += engine ? 1 : 0;
      nextIsEngine_ = engine;
      schedule(delay, Event::kDeliver, to, from, bytes);
      nextIsEngine_ = false;
    }
  }

  static uint64_t hashBytes(const Bytes& b) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ULL;
    return h;
  }

  SimConfig config_;
  std::mt19937_64 rng_;
  std::vector<Node> nodes_;
  std::vector<std::set<size_t>> adjacency_;
  std::map<uint64_t, size_t> idToIndex_;
  std::vector<int> group_;
  std::set<std::pair<size_t, size_t>> blocked_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::vector<gossip::Outgoing> out_;
  uint64_t now_ = 0, order_ = 0, trace_ = 0, inFlight_ = 0, inFlightEngine_ = 0;
  bool nextIsEngine_ = false;
  uint64_t nextId_ = 1u << 20;
  SimStats stats_;
  std::vector<ObservedEvent> events_;
};

}  // namespace deltasync::sim
