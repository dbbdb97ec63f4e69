// The lazy push of gossip/engine.h, message by message: three engines wired by hand, every
// message delivered (or dropped) in an order the test chooses. The simulator tests
// (tests/sim/anti-entropy-test) cover the same engine under random faults; these pin down the
// rules that make it safe.
#include "gossip/compact.h"
#include "gossip/engine.h"
#include "gossip/envelope.h"
#include "gossip/pruning.h"

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "tests/support/property.h"

namespace deltasync::gossip {
namespace {

using Set = crdt::ORSet<std::string>;

// Every node's wall clock, unless a test moves it: received timestamps are held against it.
constexpr uint64_t kWallMs = 1'700'000'000'000;

// An engine with its own store: what gossip::Replica holds, without membership; its wall clock
// is wallMs.
struct Node {
  ObjectStore store;
  Engine engine;
  uint64_t wallMs = kWallMs;
  explicit Node(ReplicaId id, EngineConfig config = {}) : store(id), engine(store, config) {}
  ReplicaId self() const { return store.self(); }
  template <typename T, typename F>
  T update(const std::string& name, F&& mutator) {
    return store.update<T>(name, std::forward<F>(mutator));
  }
  const Value* find(const std::string& name) const { return store.find(name); }
  void setNeighbors(std::vector<ReplicaId> ids) { engine.setNeighbors(std::move(ids)); }
  void tick(std::vector<Outgoing>& out) { engine.tick(out); }
  void receive(ReplicaId from, const Message& m, std::vector<Outgoing>& out) { engine.receive(from, m, wallMs, out); }
  const EngineStats& stats() const { return engine.stats(); }
  uint64_t ackedBy(ReplicaId j) const { return engine.ackedBy(j); }
  uint64_t seq() const { return engine.seq(); }
};

struct Sent {
  ReplicaId from, to;
  Message message;
};

// A hand-driven network: tick() and local updates queue messages; deliver() hands them over in
// order, all of them or those `keep` accepts. Every delivered message is recorded, and every
// one the receiver refused (a ProtocolError, as the transport would report it) too.
struct Net {
  std::map<uint64_t, Node*> nodes;
  std::deque<Sent> queue;
  std::vector<Sent> delivered;
  std::vector<std::string> refused;

  void add(Node& e) { nodes[e.self().value] = &e; }
  void enqueue(ReplicaId from, std::vector<Outgoing>& out) {
    for (auto& o : out) {
      // A sender's chunk holds its objects encoded already: the receiver gets them decoded, as
      // through the transport.
      if (std::holds_alternative<StateChunkMsg>(o.message)) o.message = decodeMessage(encodeMessage(o.message), Limits{});
      queue.push_back({from, o.to, std::move(o.message)});
    }
    out.clear();
  }
  void tick(Node& e) {
    std::vector<Outgoing> out;
    e.tick(out);
    enqueue(e.self(), out);
  }
  template <typename Keep>
  void deliver(Keep keep) {
    std::deque<Sent> held;
    while (!queue.empty()) {
      Sent s = std::move(queue.front());
      queue.pop_front();
      if (!keep(s)) {
        held.push_back(std::move(s));
        continue;
      }
      std::vector<Outgoing> out;
      try {
        nodes.at(s.to.value)->receive(s.from, s.message, out);
      } catch (const ProtocolError& e) {
        refused.push_back(e.what());
        out.clear();
      }
      delivered.push_back(s);
      enqueue(s.to, out);
    }
    queue = std::move(held);
  }
  void deliverAll() {
    deliver([](const Sent&) { return true; });
  }
  // Store entries of `name` pushed from -> to so far.
  size_t entriesPushed(ReplicaId from, ReplicaId to, const std::string& name) const {
    size_t n = 0;
    for (const auto& s : delivered) {
      const auto* p = std::get_if<DeltaPushMsg>(&s.message);
      if (p == nullptr || s.from != from || s.to != to) continue;
      for (const auto& o : p->objects) {
        if (o.name == name) n += std::get<Set>(o.value).store().size();
      }
    }
    return n;
  }
};

bool has(const Node& e, const std::string& element) {
  const Value* v = e.find("s");
  return v != nullptr && std::get<Set>(*v).contains(element);
}

const ReplicaId kA{1}, kB{2}, kC{3};

// A triangle: every engine the neighbour of the other two.
struct Triangle {
  Node a{kA}, b{kB}, c{kC};
  Net net;
  Triangle() {
    a.setNeighbors({kB, kC});
    b.setNeighbors({kA, kC});
    c.setNeighbors({kA, kB});
    net.add(a);
    net.add(b);
    net.add(c);
  }
  void settle() {
    for (int r = 0; r < 4; ++r) {
      for (Node* e : {&a, &b, &c}) net.tick(*e);
      net.deliverAll();
    }
  }
};

TEST_CASE("engine: the log holds at most maxLogBytes of deltas; a neighbour left behind catches up by digest") {
  EngineConfig config;
  config.maxLogBytes = 16 << 10;
  Node a{kA, config}, b{kB};
  Net net;
  net.add(a);
  net.add(b);
  // Units of 50 writes each (one log entry of a 50-element delta): with no neighbour to ack them,
  // only the byte bound collects them.
  size_t largest = 0;
  for (int u = 0; u < 200; ++u) {
    a.store.beginUnit();
    for (int k = 0; k < 50; ++k) {
      a.update<Set>("s", [&](Set& s) { return s.add(kA, "element-" + std::to_string(u * 50 + k)); });
    }
    a.store.endUnit();
    largest = std::max(largest, a.engine.logBytes());
    CHECK((a.engine.logBytes() <= config.maxLogBytes || a.engine.logSize() == 1));
  }
  CHECK(a.engine.logSize() < 200);
  CHECK(a.engine.logStart() > 0);
  CHECK(largest > config.maxLogBytes / 2);  // (the bound, not something smaller, held it)
  a.setNeighbors({kB});
  b.setNeighbors({kA});
  for (int r = 0; r < 40 && !has(b, "element-9999"); ++r) {
    net.tick(a);
    net.tick(b);
    net.deliverAll();
  }
  CHECK(a.stats().digestsSent > 0);
  for (int i = 0; i < 10000; i += 333) CHECK(has(b, "element-" + std::to_string(i)));
  CHECK(has(b, "element-9999"));
}

TEST_CASE("engine: an element offered by two peers is asked of one; the other's ack waits for it") {
  Triangle t;
  t.a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
  // A offers x to B and C; only B answers for now.
  t.net.tick(t.a);
  t.net.deliver([](const Sent& s) { return s.from == kB || s.to == kB; });
  REQUIRE(has(t.b, "x"));
  // B offers x to C first: C asks B for it.
  t.net.tick(t.b);
  t.net.deliver([](const Sent& s) { return std::holds_alternative<OfferMsg>(s.message) && s.from == kB; });
  // Now A's offer reaches C: x is claimed from B, so C asks A for nothing and does not ack A yet.
  t.net.deliver([](const Sent& s) { return s.from == kA && s.to == kC; });
  CHECK(t.c.stats().acksDeferred == 1);
  CHECK(t.a.ackedBy(kC) < t.a.seq());
  for (const auto& s : t.net.queue) CHECK_FALSE((s.from == kC && s.to == kA));
  // B's answer arrives: C holds x, acks B, and the ack it owed A goes out too.
  t.net.deliverAll();
  CHECK(has(t.c, "x"));
  CHECK(t.a.ackedBy(kC) == t.a.seq());
  CHECK(t.net.entriesPushed(kB, kC, "s") == 1);
  CHECK(t.net.entriesPushed(kA, kC, "s") == 0);  // x crossed to C once
}

// Two engines, each the other's neighbour.
struct Pair {
  Node a, b;
  Net net;
  explicit Pair(EngineConfig config = {}) : a(kA, config), b(kB, config) {
    a.setNeighbors({kB});
    b.setNeighbors({kA});
    net.add(a);
    net.add(b);
  }
  void rounds(int n) {
    for (int r = 0; r < n; ++r) {
      net.tick(a);
      net.tick(b);
      net.deliverAll();
    }
  }
};

TEST_CASE("engine: a sync counts a peer once its log up to the answer is joined") {
  for (bool offers : {true, false}) {
    CAPTURE(offers);
    EngineConfig config;
    config.offers = offers;
    Pair t(config);
    t.a.update<Set>("s", [&](Set& s) { return s.add(kA, "first"); });
    t.b.update<Set>("s", [&](Set& s) { return s.add(kB, "from-b"); });
    t.rounds(3);
    // B writes; before any tick A asks to sync: the answer alone does not count B, the log does.
    t.b.update<Set>("s", [&](Set& s) { return s.add(kB, "late"); });
    std::vector<Outgoing> out;
    const uint64_t id = t.a.engine.requestSync(out);
    t.net.enqueue(kA, out);
    t.net.deliver([](const Sent& s) { return std::holds_alternative<SyncRequestMsg>(s.message) || std::holds_alternative<SyncReplyMsg>(s.message); });
    CHECK(t.a.engine.syncedPeers(id) == 0);
    CHECK_FALSE(has(t.a, "late"));
    t.net.deliverAll();  // B sent its log at once, no tick needed
    CHECK(has(t.a, "late"));
    CHECK(t.a.engine.syncedPeers(id) == 1);
    // What remains of B's log came from A (back propagation): B answers 0, A counts it at once.
    t.a.update<Set>("s", [&](Set& s) { return s.add(kA, "echo"); });
    t.rounds(3);
    const uint64_t again = t.a.engine.requestSync(out);
    t.net.enqueue(kA, out);
    t.net.deliverAll();
    CHECK(t.a.engine.syncedPeers(again) == 1);
    // A reply to a request never made is refused.
    CHECK_THROWS_AS(t.a.engine.receive(kB, SyncReplyMsg{kB, again + 1, 0}, kWallMs, out), ProtocolError);
  }
}

TEST_CASE("engine: a backlog crosses in round trips, not one interval per tick") {
  for (bool offers : {true, false}) {
    CAPTURE(offers);
    EngineConfig config;
    config.maxPushBytes = 1024;
    config.offers = offers;
    Pair t(config);
    Node& a = t.a;
    Node& b = t.b;
    Net& net = t.net;
    // Known to each other first (an ack each), so the backlog goes by offers or pushes.
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "first"); });
    t.rounds(3);
    REQUIRE(has(b, "first"));
    for (int i = 0; i < 500; ++i) {
      a.update<Set>("s", [&](Set& s) { return s.add(kA, "element-" + std::to_string(i)); });
    }
    // One tick: the first interval (about 1 KiB of 500 elements' deltas) goes; each ack sends
    // the next, so the whole backlog arrives without another tick.
    net.tick(a);
    net.deliverAll();
    CHECK(a.ackedBy(kB) == a.seq());
    CHECK(std::get<Set>(*b.find("s")).size() == 501);
    // A small interval still waits for the tick.
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "late"); });
    net.deliverAll();
    CHECK_FALSE(has(b, "late"));
  }
}

TEST_CASE("engine: flush sends new entries without a tick, and after the interval in flight") {
  for (bool offers : {true, false}) {
    CAPTURE(offers);
    EngineConfig config;
    config.offers = offers;
    Pair t(config);
    Node& a = t.a;
    Node& b = t.b;
    Net& net = t.net;
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "first"); });
    t.rounds(3);
    REQUIRE(a.ackedBy(kB) == a.seq());
    auto flush = [&] {
      std::vector<Outgoing> out;
      a.engine.flush(out);
      net.enqueue(kA, out);
    };
    // Nothing in flight: the entry goes at once, and is acked, without a tick.
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "now"); });
    flush();
    net.deliverAll();
    CHECK(has(b, "now"));
    CHECK(a.ackedBy(kB) == a.seq());
    flush();  // nothing new: nothing sent
    CHECK(net.queue.empty());
    // An interval in flight is not sent again; the entry flushed meanwhile follows its ack.
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
    flush();
    REQUIRE(net.queue.size() == 1);
    a.update<Set>("s", [&](Set& s) { return s.add(kA, "y"); });
    flush();
    CHECK(net.queue.size() == 1);
    net.deliverAll();
    CHECK(has(b, "x"));
    CHECK(has(b, "y"));
    CHECK(a.ackedBy(kB) == a.seq());
  }
}

TEST_CASE("engine: a removal travels even when the receiver has seen every offered dot") {
  Triangle t;
  t.a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
  t.settle();
  REQUIRE((has(t.b, "x") && has(t.c, "x")));
  // A removes x; B adds y, and y reaches A and C before A's next offer.
  t.a.update<Set>("s", [&](Set& s) { return s.remove("x"); });
  t.b.update<Set>("s", [&](Set& s) { return s.add(kB, "y"); });
  t.net.tick(t.b);
  t.net.deliverAll();
  REQUIRE((has(t.a, "y") && has(t.c, "y") && has(t.c, "x")));
  // A's interval for C: the removal of x (a context dot C has seen: C still holds x) and y (a
  // store dot C holds). C asks for no entry, yet the push must carry the removal.
  const size_t before = t.net.delivered.size();
  t.net.tick(t.a);
  t.net.deliverAll();
  CHECK_FALSE(has(t.c, "x"));
  CHECK(has(t.c, "y"));
  CHECK(t.a.ackedBy(kC) == t.a.seq());
  size_t yEntriesToC = 0;
  for (size_t i = before; i < t.net.delivered.size(); ++i) {
    const Sent& s = t.net.delivered[i];
    if (const auto* p = std::get_if<DeltaPushMsg>(&s.message); p != nullptr && s.from == kA && s.to == kC) {
      CHECK(p->partial);
      for (const auto& o : p->objects) yEntriesToC += std::get<Set>(o.value).store().size();
    }
  }
  CHECK(yEntriesToC == 0);
}

TEST_CASE("engine: a lost answer is asked for again at the next tick, from every peer that offered it") {
  Triangle t;
  t.a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
  t.net.tick(t.a);
  t.net.deliver([](const Sent& s) { return s.from == kB || s.to == kB; });
  t.net.tick(t.b);
  // C asks B for x (B offered first); B's push is lost; A's offer arrives meanwhile.
  t.net.deliver([](const Sent& s) { return std::holds_alternative<OfferMsg>(s.message) && s.from == kB; });
  t.net.deliver([](const Sent& s) { return std::holds_alternative<RequestMsg>(s.message); });
  std::erase_if(t.net.queue, [](const Sent& s) { return std::holds_alternative<DeltaPushMsg>(s.message); });
  t.net.deliverAll();
  REQUIRE_FALSE(has(t.c, "x"));
  // Once the claim expired, C's ticks ask both A and B; x arrives and every ack goes out.
  for (uint32_t k = 0; k < t.c.engine.config().claimTicks && !has(t.c, "x"); ++k) {
    t.net.tick(t.c);
    t.net.deliverAll();
  }
  CHECK(has(t.c, "x"));
  CHECK(t.a.ackedBy(kC) == t.a.seq());
  CHECK(t.b.ackedBy(kC) == t.b.seq());
}

TEST_CASE("engine: a request is answered only for the open offer, at most once per tick") {
  Node a(kA), c(kC);
  a.setNeighbors({kC});
  c.setNeighbors({kA});
  a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
  std::vector<Outgoing> out;
  a.tick(out);
  REQUIRE(out.size() == 1);
  const auto offer = std::get<OfferMsg>(out[0].message);
  out.clear();
  RequestMsg req{kC, offer.fromSeq, offer.toSeq, {{"s", offer.objects[0].dots}}};
  a.receive(kC, req, out);
  CHECK(out.size() == 1);
  a.receive(kC, req, out);  // the same tick: ignored
  CHECK(out.size() == 1);
  RequestMsg stale{kC, offer.fromSeq, offer.toSeq + 1, {{"s", offer.objects[0].dots}}};
  a.receive(kC, stale, out);  // not the open offer
  CHECK(out.size() == 1);
  a.tick(out);  // no ack yet, offer still open: the next tick may answer again
  out.clear();
  a.receive(kC, req, out);
  CHECK(out.size() == 1);
}

// Two engines, each the other's neighbour.
TEST_CASE("engine: a delta stamped beyond the skew bound is refused whole, and accepted once the clocks agree") {
  Pair t;
  Node& a = t.a;
  Node& b = t.b;
  Net& net = t.net;
  const uint64_t hour = 3'600'000;
  const uint64_t bound = b.engine.config().maxForwardSkewMs;
  // A's clock runs an hour fast: its put goes out together with an honest element.
  a.update<Map>("kv", [&](Map& m) { return m.set(kA, "k", "fast", crdt::Timestamp::make(kWallMs + hour, 0)); });
  a.update<Set>("s", [&](Set& s) { return s.add(kA, "x"); });
  t.rounds(8);
  // Refused whole: neither object joined, nothing acked (A keeps offering), counted and reported.
  REQUIRE(!net.refused.empty());
  CHECK(net.refused.front().find("'kv' carries a timestamp 3600000 ms ahead") != std::string::npos);
  CHECK(b.find("kv") == nullptr);
  CHECK(!has(b, "x"));
  CHECK(b.ackedBy(kA) == 0);
  CHECK(a.ackedBy(kB) == 0);
  CHECK(b.stats().skewRefused == net.refused.size());
  REQUIRE(b.engine.clockAhead().size() == 1);
  CHECK(b.engine.clockAhead()[0].peer == kA);
  CHECK(b.engine.clockAhead()[0].maxAheadMs == hour);
  // A stamp exactly at the bound is accepted: once B's clock is within it, the retransmission
  // brings both objects, nothing lost.
  b.wallMs = kWallMs + hour - bound;
  const size_t refusals = net.refused.size();
  t.rounds(8);
  CHECK(net.refused.size() == refusals);
  REQUIRE(b.find("kv") != nullptr);
  CHECK(*std::get<Map>(*b.find("kv")).get("k") == "fast");
  CHECK(has(b, "x"));
  CHECK(a.ackedBy(kB) == a.seq());
}

TEST_CASE("engine: stamps within the skew bound are accepted, and the largest seen is reported") {
  Pair t;
  Node& a = t.a;
  Node& b = t.b;
  a.update<Map>("kv", [&](Map& m) { return m.set(kA, "k", "v", crdt::Timestamp::make(kWallMs + 5'000, 0)); });
  a.update<Map>("kv", [&](Map& m) { return m.set(kA, "j", "w", crdt::Timestamp::make(kWallMs - 5'000, 0)); });
  t.rounds(6);
  CHECK(t.net.refused.empty());
  REQUIRE(b.find("kv") != nullptr);
  CHECK(std::get<Map>(*b.find("kv")).size() == 2);
  REQUIRE(b.engine.clockAhead().size() == 1);
  CHECK(b.engine.clockAhead()[0].maxAheadMs == 5'000);
  CHECK(b.stats().skewRefused == 0);
}

TEST_CASE("engine: a large map is served in parts that are full, encoded once, and join to it") {
  // partsOf encodes each part as it cuts it, straight from the map's entries (serveRequest packs
  // chunks by those sizes): each part decodes to a state below the map, within the bound, and
  // the parts are close to it (not halved). Three writers, values of uneven length, a third
  // deleted with a stride (storage order is no longer dot order).
  const uint64_t n = 20000;
  Map m;
  for (uint64_t i = 1; i <= n; ++i) {
    m.set(ReplicaId{1 + i % 3}, "key-" + std::to_string(i * 7919 % 100003), std::string(i % 40, 'v'),
          crdt::Timestamp::make(i, 0));
  }
  for (uint64_t i = 1; i <= n; i += 3) m.remove("key-" + std::to_string(i * 7919 % 100003));
  const Value v(m);
  for (size_t maxBytes : {2000, 9000, 65536}) {
    CAPTURE(maxBytes);
    auto parts = partsOf(v, maxBytes, ReplicaId{2});
    REQUIRE(parts.size() > 1);
    Map joined;
    size_t bytes = 0, entryParts = 0;
    for (const auto& p : parts) {
      REQUIRE(p.size() <= maxBytes);
      const Map piece = std::get<Map>(decodeCompact(p.data(), p.size(), ReplicaId{2}, Limits{}));
      ColumnWriter asValue;
      encodeCompact(Value(piece), ReplicaId{2}, asValue);
      REQUIRE(asValue.bytes() == p);  // the bytes of the part built as a value
      Map again = m;
      again.join(piece);
      REQUIRE(again == m);  // each part joins alone without removing anything
      joined.join(piece);
      if (!piece.store().empty()) {
        bytes += p.size();
        ++entryParts;
      }
    }
    CHECK(joined == m);
    // Every entry part but the last is at least 5/8 of the bound (the cut aims at 7/8).
    CHECK(bytes >= (entryParts - 1) * maxBytes * 5 / 8);
  }
}

TEST_CASE("engine: pruning's marks ride in every chunk of a catch-up that lacks them") {
  // A chunk of a large transfer is joined as it arrives: a counter that a pruner's share was
  // folded into must not land where the pruned replica's own share is still counted.
  EngineConfig cfg;
  cfg.maxLogEntries = 1;  // b catches up by digest
  cfg.maxChunkBytes = 4096;
  Node a(kA, cfg), b(kB, cfg);
  Net net;
  net.add(a);
  net.add(b);
  for (int i = 0; i < 3000; ++i) a.update<Set>("s", [&](Set& x) { return x.add(kA, "element-" + std::to_string(i)); });
  a.update<Map>(std::string(kPruneObject), [&](Map& m) { return m.set(kA, goneKey(kC), "1", {}); });
  a.setNeighbors({kB});
  b.setNeighbors({kA});
  for (int round = 0; round < 10; ++round) {
    net.tick(a);
    net.tick(b);
    net.deliverAll();
  }
  size_t chunks = 0, withMarks = 0;
  for (const auto& sent : net.delivered) {
    const auto* c = std::get_if<StateChunkMsg>(&sent.message);
    if (c == nullptr) continue;
    ++chunks;
    withMarks += std::count_if(c->objects.begin(), c->objects.end(), [](const NamedValue& o) { return o.name == kPruneObject; });
  }
  CHECK(chunks >= 3);
  CHECK(withMarks == chunks);
  REQUIRE(b.find("s") != nullptr);
  CHECK(std::get<Set>(*b.find("s")).size() == 3000);
  CHECK(*b.find(std::string(kPruneObject)) == *a.find(std::string(kPruneObject)));
}

}  // namespace
}  // namespace deltasync::gossip
