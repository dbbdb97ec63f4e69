#include "gossip/engine.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "gossip/compact.h"
#include "gossip/envelope.h"
#include "gossip/pruning.h"
#include "gossip/split.h"

namespace deltasync::gossip {

std::vector<Bytes> partsOf(const Value& v, size_t maxBytes, ReplicaId sender) {
  auto whole = [&] {
    ColumnWriter w;
    encodeCompact(v, sender, w);
    return w.bytes();
  };
  return std::visit(
      [&](const auto& x) -> std::vector<Bytes> {
        if constexpr (requires { x.store().dotAt(0); }) {  // the dot-store kinds
          // Every entry costs at least two bytes (its writer and counter columns), so a store of
          // more than maxBytes / 2 entries is split without encoding it whole first.
          if (x.store().size() <= maxBytes / 2) {
            if (Bytes b = whole(); b.size() <= maxBytes) return {std::move(b)};
          }
          std::vector<Bytes> out;
          auto parts = splitCausal(
              x, maxBytes,
              [&](Positions at, crdt::CausalContext&& ctx) {
                ColumnWriter w;
                encodeCompactPart(x, at, ctx, sender, w);
                return w.bytes();
              },
              [](const Bytes& b) { return b.size(); });
          for (auto& p : parts) out.push_back(std::move(p.part));
          return out;
        }
        return {whole()};
      },
      v);
}

namespace {

// The causal context of a dot-store kind (sets, maps, registers, flags, or-maps); null for the
// counters and the LWW register, which have no dots.
const crdt::CausalContext* contextOf(const Value& v) {
  return std::visit(
      [](const auto& x) -> const crdt::CausalContext* {
        if constexpr (requires { x.context(); x.store().collectDots(std::declval<crdt::CausalContext&>()); }) {
          return &x.context();
        } else {
          return nullptr;
        }
      },
      v);
}

// The dots of v's store entries (not its removal context); empty for kinds without dots.
crdt::CausalContext storeDots(const Value& v) {
  crdt::CausalContext out;
  std::visit(
      [&](const auto& x) {
        if constexpr (requires { x.store().collectDots(out); }) x.store().collectDots(out);
      },
      v);
  return out;
}

// v without the store entries whose dots are in `drop`, and without those dots in its context;
// every other context dot (removals, superseded writes) stays. Precondition: drop holds only
// store dots of v. A receiver that has seen a dropped dot joins v and the result to the same
// state: its join keeps or discards that entry by its own context either way.
Value dropEntries(const Value& v, const crdt::CausalContext& drop) {
  return std::visit(
      [&](const auto& x) -> Value {
        using T = std::decay_t<decltype(x)>;
        if constexpr (requires { x.store().unseenBy(drop); T::fromParts(x.store().unseenBy(drop), drop); }) {
          return T::fromParts(x.store().unseenBy(drop), x.context().minus(drop));
        } else {
          return x;
        }
      },
      v);
}

// True when v is a dot-store value with a context but no entries: all it does is remove (a
// context part of a split state, gossip/split.h, or an object whose entries were all removed).
bool isRemovalOnly(const Value& v) {
  const crdt::CausalContext* ctx = contextOf(v);
  return ctx != nullptr && !ctx->empty() && storeDots(v).empty();
}

// Keeps `part` of object `name` back, joined with what is held of it already (Engine::joinHeld).
// A part of another kind than the one held (a confused peer) replaces it: the store refuses
// whichever contradicts it when the parts are joined. A tombstone is joined, never replaced.
void hold(std::map<std::string, Value>& held, const std::string& name, Value part) {
  if (isBottom(part)) return;
  auto [it, fresh] = held.try_emplace(name, std::move(part));
  if (fresh) return;
  if (it->second.index() != part.index() && !isTombstone(it->second) && !isTombstone(part)) {
    it->second = std::move(part);
  } else {
    joinInto(it->second, part);
  }
}

}  // namespace

Engine::Engine(ObjectStore& store, EngineConfig config)
    : store_(store), self_(store.self()), config_(config), rng_(crdt::mix64(store.self().value)) {
  if (self_.value == 0) throw std::invalid_argument("Engine: replica id 0 is reserved");
  store_.listen([this](const Change& c) { append(c.origin, c.name, config_.removeRedundant ? c.delta : c.received); });
  store_.listenUnits([this] {
    if (!log_.empty()) log_.back().endUnit();
  });
}

void Engine::resume(uint64_t seq) {
  if (seq_ != 0 || !log_.empty()) throw std::logic_error("Engine::resume after the engine logged changes");
  seq_ = logStart_ = std::max<uint64_t>(seq, 1);
}

namespace {

// An estimate, as memoryBytes(): a hash node (the name, its count, the link and cached hash), a
// bucket, and the name's bytes.
size_t nameMemory(const std::string& name) { return sizeof(std::pair<const std::string, size_t>) + 3 * sizeof(void*) + name.size(); }

// Our own log's bytes read back: valid values when they were logged, so no limit applies (a
// key or value within the limits of whoever wrote it).
const Limits& ownLimits() {
  static const Limits limits = [] {
    Limits l;
    l.maxKeyBytes = SIZE_MAX;
    l.maxValueBytes = SIZE_MAX;
    return l;
  }();
  return limits;
}

}  // namespace

Engine::LogEntry::LogEntry(LogEntry&& o) noexcept
    : origin_(o.origin_), name_(o.name_), size_(o.size_), more_(o.more_), u_(o.u_) {
  o.size_ = 0;  // o holds nothing now (inline: nothing to free)
}

Engine::LogEntry::~LogEntry() {
  if (boxed()) {
    delete u_.boxed;
  } else if (size_ > kInlineBytes) {
    delete[] u_.heap;
  }
}

void Engine::LogEntry::setParts(const std::vector<unsigned char>& parts, unsigned char* heap) {
  unsigned char* to = u_.inline_;
  if (parts.size() > kInlineBytes) to = u_.heap = heap;
  std::memcpy(to, parts.data(), parts.size());
  size_ = static_cast<uint32_t>(parts.size());  // (a key and a value within the limits: < 4 GiB)
}

void Engine::LogEntry::setBoxed(Boxed* box) {
  u_.boxed = box;
  size_ = kBoxedSize;
}

size_t Engine::LogEntry::memory() const {
  if (boxed()) return u_.boxed->memory;
  return sizeof(LogEntry) + (size_ > kInlineBytes ? size_ : 0);
}

Engine::Name* Engine::internName(const std::string& name) {
  if (lastName_ == nullptr || lastName_->first != name) {
    auto [it, fresh] = names_.try_emplace(name, 0);
    if (fresh) logBytes_ += nameMemory(name);
    lastName_ = &*it;
  }
  ++lastName_->second;
  return lastName_;
}

void Engine::releaseName(Name* name) {
  if (--name->second != 0) return;
  if (lastName_ == name) lastName_ = nullptr;
  logBytes_ -= nameMemory(name->first);
  names_.erase(names_.find(name->first));
}

void Engine::append(ReplicaId origin, const std::string& name, const Value& delta) {
  // What may throw (encoding, a copy of the delta) comes before the log grows: a failed append
  // leaves no entry without its delta.
  const bool oneWrite = isOneWrite(delta);
  std::unique_ptr<Boxed> box;
  std::unique_ptr<unsigned char[]> heap;  // a one-write entry's bytes beyond kInlineBytes
  if (oneWrite) {
    scratch_.clear();
    encodeCompact(delta, self_, scratch_);
    if (scratch_.size() > LogEntry::kInlineBytes) heap.reset(new unsigned char[scratch_.size()]);
  } else {
    const size_t kindSize = std::visit([](const auto& x) { return sizeof(x); }, delta);
    box.reset(new Boxed{delta, sizeof(LogEntry) + sizeof(Boxed) - kindSize + memoryBytes(delta), 0});
  }
  LogEntry& e = log_.emplace_back(origin, internName(name));
  ++seq_;
  if (oneWrite) {
    e.setParts(scratch_.bytes(), heap.release());
  } else {
    e.setBoxed(box.release());
  }
  logBytes_ += e.memory();
  // Bounded in entries and in bytes (one entry may be a batch of thousands of writes); the newest
  // entry stays whatever its size.
  while (log_.size() > config_.maxLogEntries || (logBytes_ > config_.maxLogBytes && log_.size() > 1)) dropOldest();
}

void Engine::dropOldest() {
  LogEntry& e = log_.front();
  logBytes_ -= e.memory();
  releaseName(e.nameSlot());
  log_.pop_front();
  ++logStart_;
}

size_t Engine::entrySize(const LogEntry& e) const {
  // As the delta travels in our pushes: compact, with us as the implied writer.
  if (e.boxed()) {
    if (e.box().bytes == 0) e.box().bytes = wireSize(e.box().delta, self_) + e.name().size();
    return e.box().bytes;
  }
  return e.parts().size() + e.name().size();  // (the parts are the compact bytes a push carries)
}

template <typename F>
void Engine::withDelta(const LogEntry& e, F&& f) const {
  if (e.boxed()) {
    f(e.box().delta);
  } else {
    const std::string_view parts = e.parts();
    f(decodeCompact(reinterpret_cast<const unsigned char*>(parts.data()), parts.size(), self_, ownLimits()));
  }
}

void Engine::applyRemote(ReplicaId origin, const std::vector<NamedValue>& objects) {
  JoinStats js = store_.joinRemote(origin, objects);
  stats_.deltasJoined += js.joined;
  stats_.deltasRedundant += js.redundant;
  stats_.deltasRefuted += js.refuted;
}

void Engine::setNeighbors(std::vector<ReplicaId> neighbors) {
  std::sort(neighbors.begin(), neighbors.end());
  neighbors.erase(std::unique(neighbors.begin(), neighbors.end()), neighbors.end());
  std::erase(neighbors, self_);
  // Receive-side tracking of former neighbours is kept only while they are neighbours: it is
  // rebuilt from the next push's base, so forgetting it loses nothing.
  std::erase_if(peers_, [&](const auto& e) { return !std::binary_search(neighbors.begin(), neighbors.end(), e.first); });
  for (ReplicaId j : neighbors) peer(j).neighbor = true;
  neighbors_ = std::move(neighbors);
  collectGarbage();
}

bool Engine::isNeighbor(ReplicaId j) const {
  return std::binary_search(neighbors_.begin(), neighbors_.end(), j);
}

const Engine::Peer* Engine::findPeer(ReplicaId j) const {
  auto it = std::lower_bound(peers_.begin(), peers_.end(), j, [](const auto& e, ReplicaId id) { return e.first < id; });
  return it != peers_.end() && it->first == j ? &it->second : nullptr;
}

Engine::Peer& Engine::peer(ReplicaId j) {
  auto it = std::lower_bound(peers_.begin(), peers_.end(), j, [](const auto& e, ReplicaId id) { return e.first < id; });
  if (it == peers_.end() || it->first != j) it = peers_.insert(it, {j, Peer{}});
  return it->second;
}

uint64_t Engine::ackedBy(ReplicaId j) const {
  for (const auto& [id, p] : peers_) {
    if (id == j) return p.acked;
  }
  return 0;
}

void Engine::tick(std::vector<Outgoing>& out) {
  ++tick_;
  if (config_.offers) requestMissing(out);
  // The neighbours contacted this tick: all of them, or `fanout` drawn at random.
  std::vector<bool> chosen;
  if (config_.fanout != 0 && config_.fanout < neighbors_.size()) {
    chosen.assign(peers_.size(), false);
    std::vector<size_t> idx;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (peers_[i].second.neighbor) idx.push_back(i);
    }
    for (uint32_t k = 0; k < config_.fanout; ++k) {
      rng_ += 0x9e3779b97f4a7c15ULL;
      size_t pick = crdt::mix64(rng_) % (idx.size() - k);
      chosen[idx[pick]] = true;
      std::swap(idx[pick], idx[idx.size() - 1 - k]);
    }
  }
  for (size_t i = 0; i < peers_.size(); ++i) {
    auto& [j, p] = peers_[i];
    if (!p.neighbor || (!chosen.empty() && !chosen[i])) continue;
    if (config_.shipState) {
      if (store_.size() == 0) continue;
      DeltaPushMsg m{self_, 0, 0, 1, {}};
      for (const auto& [name, v] : store_.objects()) m.objects.push_back({name, v});
      ++stats_.pushesSent;
      out.push_back({j, std::move(m)});
      continue;
    }
    contact(j, p, out);
  }
  collectGarbage();
}

void Engine::flush(std::vector<Outgoing>& out) {
  if (config_.shipState) return;
  for (auto& [j, p] : peers_) {
    if (p.neighbor) contactSoon(j, p, out);
  }
}

void Engine::contactSoon(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  if (p.sentTo > p.acked) {
    if (p.sentTo < seq_) p.sentFull = true;  // the next interval once this one is acked
    return;
  }
  contact(j, p, out);
}

uint64_t Engine::requestSync(std::vector<Outgoing>& out) {
  ++syncId_;
  for (ReplicaId j : neighbors_) out.push_back({j, SyncRequestMsg{self_, syncId_}});
  return syncId_;
}

uint32_t Engine::syncedPeers(uint64_t id) const {
  uint32_t n = 0;
  for (const auto& [j, p] : peers_) n += p.neighbor && p.syncId >= id && p.recv >= p.syncSeq;
  return n;
}

void Engine::skipOwn(ReplicaId j, Peer& p) {
  if (config_.backPropagation && p.known) {
    // Entries that came from j are known to j: step over them without sending (BP).
    while (p.acked < seq_ && p.acked >= logStart_ && log_[p.acked - logStart_].origin() == j) ++p.acked;
  }
}

void Engine::contact(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  skipOwn(j, p);
  if (p.acked >= seq_) {
    p.holds.clear();  // only entries of the log not yet acked are ever filtered by it
    return;
  }
  // A peer that never acked is caught up by digest, unless (lazy push) our log still holds
  // everything from the start: then the offer of it costs dots, and j asks only for what it
  // lacks.
  const bool fromStart = config_.offers && logStart_ == 0;
  if ((!p.known && !fromStart) || p.acked < logStart_) {
    if (!p.digestSent || tick_ - p.digestAt >= config_.catchupRetryTicks) sendDigest(j, p, out);
    return;
  }
  if (config_.offers) {
    sendOffer(j, p, out);
  } else {
    sendPush(j, p, out);
  }
}

std::map<std::string, Value> Engine::interval(ReplicaId j, uint64_t from, uint64_t& to) const {
  const bool bounded = to == 0;
  const uint64_t end = bounded ? seq_ : to;
  std::map<std::string, Value> joined;
  size_t bytes = 0;
  to = from;
  while (to < end) {
    const LogEntry& e = log_[to - logStart_];
    // (Only between units: to > from here, since bytes > 0.)
    if (bounded && bytes > 0 && bytes + entrySize(e) > config_.maxPushBytes && !log_[to - 1 - logStart_].more()) break;
    ++to;
    if (config_.backPropagation && e.origin() == j) continue;
    bytes += entrySize(e);
    withDelta(e, [&](auto&& delta) {
      auto it = joined.find(e.name());
      if (it == joined.end()) {
        joined.emplace(e.name(), std::forward<decltype(delta)>(delta));
      } else {
        joinInto(it->second, delta);
      }
    });
  }
  return joined;
}

void Engine::sendPush(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  const bool inFlight = p.sentTo > p.acked && tick_ - p.sentAt < config_.retransmitTicks;
  uint64_t from = inFlight ? p.sentTo : p.acked;
  if (from >= seq_) return;
  uint64_t to = 0;
  std::map<std::string, Value> joined = interval(j, from, to);
  DeltaPushMsg m{self_, p.acked, from, to, {}};
  m.objects.reserve(joined.size());
  for (auto& [name, v] : joined) m.objects.push_back({name, std::move(v)});
  p.sentTo = to;
  p.sentAt = tick_;
  p.sentFull = to < seq_;
  ++stats_.pushesSent;
  out.push_back({j, std::move(m)});
}

void Engine::sendOffer(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  // One interval at a time: the next offer waits for the ack (or the retransmission timeout).
  if (p.sentTo > p.acked && tick_ - p.sentAt < config_.retransmitTicks) return;
  const uint64_t from = p.acked;
  uint64_t to = 0;
  std::map<std::string, Value> joined = interval(j, from, to);
  // What j holds matters only for the objects of the interval: forget the rest (it keeps the
  // knowledge bounded; losing it costs at most bytes of an offer, never an entry).
  std::erase_if(p.holds, [&](const auto& h) { return joined.count(h.first) == 0; });
  OfferMsg offer{self_, from, to, {}, p.acked, true};
  for (auto& [name, v] : joined) {
    crdt::CausalContext dots = storeDots(v);
    // Complete: without its store entries the object is nothing (no removal or superseded
    // context, not a counter or register).
    if (offer.complete && !isBottom(dots.empty() ? v : dropEntries(v, dots))) offer.complete = false;
    if (dots.empty()) continue;
    auto h = p.holds.find(name);
    if (h != p.holds.end()) dots = dots.minus(h->second);
    if (!dots.empty()) offer.objects.push_back({name, std::move(dots)});
  }
  p.sentTo = to;
  p.sentAt = tick_;
  p.sentFull = to < seq_;
  if (offer.objects.empty()) {
    // Nothing to announce (counters, registers, removals, or dots j holds): push at once, less
    // the entries j is known to hold.
    DeltaPushMsg m{self_, p.acked, from, to, {}};
    for (auto& [name, v] : joined) {
      auto h = p.holds.find(name);
      if (h != p.holds.end()) {
        crdt::CausalContext drop = storeDots(v).intersect(h->second);
        if (!drop.empty()) v = dropEntries(v, drop);
      }
      if (!isBottom(v)) m.objects.push_back({name, std::move(v)});
    }
    p.offerOpen = false;
    ++stats_.pushesSent;
    out.push_back({j, std::move(m)});
    return;
  }
  p.offerOpen = true;
  p.offerFrom = from;
  p.offerServed = false;
  ++stats_.offersSent;
  out.push_back({j, std::move(offer)});
}

void Engine::serveOfferRequest(ReplicaId j, const RequestMsg& m, std::vector<Outgoing>& out) {
  Peer* p = findPeer(j);
  // Answer only requests for the open offer, at most one per tick: a duplicate is ignored, and a
  // peer cannot make us send more than it asks for once per round. A lost push is asked for
  // again (the requester's tick) or offered again (our retransmission).
  if (p == nullptr || !p->offerOpen || m.fromSeq != p->offerFrom || m.toSeq != p->sentTo) return;
  if (p->offerServed && p->offerServedAt == tick_) return;
  p->offerServed = true;
  p->offerServedAt = tick_;
  if (m.fromSeq < logStart_) return;  // collected meanwhile (maxLogEntries/Bytes): j catches up by digest
  uint64_t to = m.toSeq;
  std::map<std::string, Value> joined = interval(j, m.fromSeq, to);
  std::map<std::string_view, const crdt::CausalContext*> want;
  for (const auto& o : m.objects) want.emplace(o.name, &o.dots);
  DeltaPushMsg push{self_, std::min(p->acked, m.fromSeq), m.fromSeq, m.toSeq, {}, true};
  for (auto& [name, v] : joined) {
    // Store entries j did not ask for: it holds them, or has asked another peer (and acks this
    // push only once they are there). Everything else of the interval travels.
    crdt::CausalContext drop = storeDots(v);
    auto w = want.find(name);
    if (w != want.end()) drop = drop.minus(*w->second);
    if (!drop.empty()) v = dropEntries(v, drop);
    if (!isBottom(v)) push.objects.push_back({name, std::move(v)});
  }
  p->sentAt = tick_;
  ++stats_.pushesSent;
  out.push_back({j, std::move(push)});
}

void Engine::receiveOffer(ReplicaId from, const OfferMsg& m, std::vector<Outgoing>& out) {
  for (const auto& o : m.objects) {
    const Value* v = store_.find(o.name);
    if (v != nullptr && contextOf(*v) == nullptr && !isTombstone(*v)) {
      throw ProtocolError("offer of dots for object '" + o.name + "', a " + kindName(*v) + " here (no dots)");
    }
  }
  Peer& p = peer(from);
  p.offered.clear();
  p.held.clear();  // the new offer covers it again (we never acked it)
  for (const auto& o : m.objects) {
    if (p.neighbor) p.holds[o.name].join(o.dots);  // the offerer holds them (kept if we offer to it)
    p.offered[o.name] = o.dots;
  }
  p.offeredFrom = m.fromSeq;
  p.offeredTo = m.toSeq;
  p.offeredAt = tick_;
  p.ackDeferred = false;
  p.claimed.clear();
  p.recv = std::max(p.recv, m.base);
  DotsByName want = missingOf(from, p.offered);
  if (m.complete) {
    // Nothing in the interval but the offered entries: we owe the ack as soon as we hold every
    // offered dot, whoever delivers them (now, if we already do).
    const uint64_t upTo = m.fromSeq <= p.recv ? std::max(p.recv, m.toSeq) : p.recv;
    if (want.empty() && holdsOffered(p, nullptr)) {
      p.offered.clear();
      p.recv = upTo;
      ++stats_.acksSent;
      out.push_back({from, AckMsg{self_, p.recv}});
      return;
    }
    p.ackDeferred = true;
    p.deferredRecv = upTo;
    if (want.empty()) {
      ++stats_.acksDeferred;  // all asked of other peers
      return;
    }
  }
  sendRequest(from, p, std::move(want), out);
}

void Engine::receivePush(ReplicaId from, const DeltaPushMsg& m, std::vector<Outgoing>& out) {
  Peer& p = peer(from);
  const uint64_t recv = std::max(p.recv, m.base);  // p.recv moves only once the push is joined
  const bool contiguous = m.fromSeq <= recv;
  const uint64_t upTo = contiguous ? std::max(recv, m.toSeq) : recv;
  const bool tracked = m.partial && !p.offered.empty() && m.fromSeq == p.offeredFrom && m.toSeq == p.offeredTo;
  // Batch atomicity and read safety (engine.h): what we join of a sender's interval is the whole
  // interval, so every unit in it (and every removal with its successors) is joined whole. A
  // push we will not ack (a stale answer, an eager push past a gap) is not joined at all: the
  // sender sends the interval again, since no ack covers it.
  if (m.partial ? !tracked : !contiguous) {
    store_.check(m.objects);  // refused if it contradicts us, all the same
    p.recv = recv;
    releaseDeferredAcks(out);
    return;
  }
  if (config_.offers && p.neighbor) {
    for (const auto& o : m.objects) {
      crdt::CausalContext dots = storeDots(o.value);
      if (!dots.empty()) p.holds[o.name].join(dots);
    }
  }
  if (!m.partial) {
    applyRemote(from, m.objects);
    p.recv = upTo;
    ++stats_.acksSent;
    out.push_back({from, AckMsg{self_, p.recv}});
    releaseDeferredAcks(out);
    return;
  }
  // The answer to our request: it left out the offered entries we asked another peer for. It is
  // joined (with any earlier answer to the same offer) once we hold every dot of the offer; until
  // then it is held, and the ack waits.
  p.recv = recv;
  p.claimed.clear();  // whatever it lacks will be asked again
  if (p.held.empty() && holdsOffered(p, &m.objects)) {
    applyRemote(from, m.objects);
  } else {
    store_.check(m.objects);
    for (const auto& o : m.objects) hold(p.held, o.name, o.value);
    if (!holdsOffered(p, nullptr)) {
      if (!p.ackDeferred) ++stats_.acksDeferred;
      p.ackDeferred = true;
      p.deferredRecv = std::max(p.deferredRecv, upTo);
      releaseDeferredAcks(out);
      return;
    }
    joinHeld(from, p.held);
  }
  p.offered.clear();
  p.ackDeferred = false;
  p.recv = upTo;
  ++stats_.acksSent;
  out.push_back({from, AckMsg{self_, p.recv}});
  releaseDeferredAcks(out);
}

bool Engine::holdsOffered(const Peer& p, const std::vector<NamedValue>* arriving) const {
  for (const auto& [name, dots] : p.offered) {
    const Value* v = store_.find(name);
    if (v != nullptr && isTombstone(*v)) continue;  // a tombstone holds everything there is
    const crdt::CausalContext* ctx = v != nullptr ? contextOf(*v) : nullptr;
    crdt::CausalContext lacking = ctx != nullptr ? dots.minus(*ctx) : dots;
    if (lacking.empty()) continue;
    if (auto h = p.held.find(name); h != p.held.end()) lacking = lacking.minus(storeDots(h->second));
    if (arriving != nullptr && !lacking.empty()) {
      for (const auto& o : *arriving) {
        if (o.name == name) lacking = lacking.minus(storeDots(o.value));
      }
    }
    if (!lacking.empty()) return false;
  }
  return true;
}

void Engine::joinHeld(ReplicaId from, std::map<std::string, Value>& held) {
  std::vector<NamedValue> objects;
  objects.reserve(held.size());
  for (auto& [name, v] : held) objects.push_back({name, std::move(v)});
  held.clear();
  try {
    applyRemote(from, objects);  // one unit
  } catch (const ProtocolError&) {
    // Each part was checked when it arrived, but the store may have changed since (another peer
    // created an object with another kind): join the rest one by one, and drop and count what
    // the store refuses, rather than throw at whoever sent the message that released them.
    for (auto& o : objects) {
      try {
        applyRemote(from, {o});
      } catch (const ProtocolError&) {
        ++stats_.heldRefused;
      }
    }
  }
}

Engine::DotsByName Engine::missingOf(ReplicaId from, const DotsByName& offered) const {
  DotsByName want;
  for (const auto& [name, dots] : offered) {
    const Value* v = store_.find(name);
    if (v != nullptr && isTombstone(*v)) continue;  // deleted here: it wants nothing more
    const crdt::CausalContext* ctx = v != nullptr ? contextOf(*v) : nullptr;
    crdt::CausalContext missing = ctx != nullptr ? dots.minus(*ctx) : dots;
    // Not what `from` sent already (held until its offer is complete).
    if (const Peer* f = findPeer(from); f != nullptr && !missing.empty()) {
      if (auto h = f->held.find(name); h != f->held.end()) missing = missing.minus(storeDots(h->second));
    }
    // Not what another peer was asked for a moment ago: that is on its way.
    for (const auto& [k, q] : peers_) {
      if (missing.empty()) break;
      if (k == from || q.claimed.empty() || tick_ - q.claimedAt >= config_.claimTicks) continue;
      auto c = q.claimed.find(name);
      if (c != q.claimed.end()) missing = missing.minus(c->second);
    }
    if (!missing.empty()) want.emplace(name, std::move(missing));
  }
  return want;
}

void Engine::sendRequest(ReplicaId to, Peer& p, DotsByName want, std::vector<Outgoing>& out) {
  RequestMsg req{self_, p.offeredFrom, p.offeredTo, {}};
  for (const auto& [name, dots] : want) req.objects.push_back({name, dots});
  p.claimed = std::move(want);
  p.claimedAt = tick_;
  ++stats_.offerRequestsSent;
  out.push_back({to, std::move(req)});
}

void Engine::requestMissing(std::vector<Outgoing>& out) {
  // Dots offered to us that are still missing once the claims on them expired (a request or
  // its push was lost): ask every peer that offered them, at once, rather than one after another
  // or after the offerers' retransmission timeouts. Duplicates happen only after a loss.
  std::vector<std::pair<size_t, DotsByName>> asks;
  for (size_t i = 0; i < peers_.size(); ++i) {
    auto& [k, q] = peers_[i];
    if (!q.offered.empty() && tick_ - q.offeredAt > 4 * config_.retransmitTicks) {
      // A live offerer offers again every retransmitTicks until we ack: this one stopped (we
      // left its view, or it restarted). Stop asking; its next offer starts afresh.
      q.offered.clear();
      q.held.clear();  // its next offer sends it again (nothing of it was acked)
      q.ackDeferred = false;
    }
    if (q.offered.empty() || (!q.claimed.empty() && tick_ - q.claimedAt < config_.claimTicks)) continue;
    DotsByName want = missingOf(k, q.offered);
    if (!want.empty()) asks.emplace_back(i, std::move(want));
  }
  for (auto& [i, want] : asks) sendRequest(peers_[i].first, peers_[i].second, std::move(want), out);
}

void Engine::releaseDeferredAcks(std::vector<Outgoing>& out) {
  for (auto& [k, q] : peers_) {
    if (!q.ackDeferred || !holdsOffered(q, nullptr)) continue;
    joinHeld(k, q.held);
    q.ackDeferred = false;
    q.offered.clear();
    q.recv = std::max(q.recv, q.deferredRecv);
    ++stats_.acksSent;
    out.push_back({k, AckMsg{self_, q.recv}});
  }
}

void Engine::sendDigest(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  DigestMsg m{self_, seq_, {}};
  m.entries.reserve(store_.size());
  for (const auto& [name, v] : store_.objects()) m.entries.emplace_back(name, contentHash(v));
  p.digestSeq = seq_;
  p.digestAt = tick_;
  p.digestSent = true;
  p.served = false;
  ++stats_.digestsSent;
  out.push_back({j, std::move(m)});
}

void Engine::serveRequest(ReplicaId j, const StateRequestMsg& m, std::vector<Outgoing>& out) {
  Peer* p = findPeer(j);
  // Serve only the answer to our latest digest, once: a peer cannot make us send our state
  // again and again by repeating requests.
  if (p == nullptr || !p->digestSent || m.seq != p->digestSeq || p->served) return;
  p->served = true;
  // Pack whole objects into chunks of at most maxChunkBytes (estimated); an object larger than
  // that is split into parts that join independently (gossip/split.h), one part per chunk at
  // most, since a chunk names each object once.
  std::vector<std::vector<EncodedObject>> chunks(1);
  size_t bytes = 0;
  // Pruning's marks ride in every chunk when the peer lacks some and they are small: a chunk of a
  // large transfer is joined as it arrives, and a counter the pruner's share was folded into must
  // never be joined where the pruned replica's own share is not forgotten yet (gossip/pruning.h).
  std::vector<EncodedObject> marks;
  if (std::find(m.names.begin(), m.names.end(), kPruneObject) != m.names.end()) {
    if (const Value* v = store_.find(std::string(kPruneObject))) {
      auto parts = partsOf(*v, config_.maxChunkBytes, self_);
      if (parts.size() == 1 && parts[0].size() <= config_.maxChunkBytes / 4) {
        marks.push_back({std::string(kPruneObject), std::move(parts[0])});
        bytes = marks[0].value.size() + marks[0].name.size();
        chunks.back() = marks;
      }
    }
  }
  for (const std::string& name : m.names) {
    const Value* v = store_.find(name);
    if (v == nullptr) continue;  // never ours (a confused or hostile peer): nothing to send
    if (!marks.empty() && name == kPruneObject) continue;  // in every chunk already
    for (Bytes& part : partsOf(*v, config_.maxChunkBytes, self_)) {
      size_t size = part.size() + name.size();
      bool named = std::any_of(chunks.back().begin(), chunks.back().end(),
                               [&](const EncodedObject& o) { return o.name == name; });
      if (chunks.back().size() > marks.size() && (named || bytes + size > config_.maxChunkBytes)) {
        chunks.push_back(marks);
        bytes = marks.empty() ? 0 : marks[0].value.size() + marks[0].name.size();
      }
      bytes += size;
      chunks.back().push_back({name, std::move(part)});
    }
  }
  const auto total = static_cast<uint32_t>(chunks.size());
  for (uint32_t i = 0; i < total; ++i) {
    ++stats_.chunksSent;
    out.push_back({j, StateChunkMsg{self_, m.seq, i, total, {}, std::move(chunks[i])}});
  }
}

void Engine::checkClock(ReplicaId from, const std::vector<NamedValue>& objects, uint64_t wallMs) {
  const NamedValue* worst = nullptr;
  uint64_t latest = 0;
  for (const auto& o : objects) {
    const uint64_t t = latestStamp(o.value).physical();
    if (t > latest) {
      latest = t;
      worst = &o;
    }
  }
  if (worst == nullptr || latest <= wallMs) return;
  const uint64_t ahead = latest - wallMs;
  Peer& p = peer(from);
  p.maxAheadMs = std::max(p.maxAheadMs, ahead);
  if (ahead <= config_.maxForwardSkewMs) return;
  ++stats_.skewRefused;
  throw ClockSkewRefused("object '" + worst->name + "' carries a timestamp " + std::to_string(ahead) +
                         " ms ahead of this node's clock (the limit is " + std::to_string(config_.maxForwardSkewMs) +
                         " ms): the message is refused until the clocks agree; check the sender's clock, or this one's");
}

std::vector<PeerClockAhead> Engine::clockAhead() const {
  std::vector<PeerClockAhead> out;
  for (const auto& [id, p] : peers_) {
    if (p.maxAheadMs != 0) out.push_back({id, p.maxAheadMs});
  }
  return out;
}

void Engine::receive(ReplicaId from, const Message& message, uint64_t wallMs, std::vector<Outgoing>& out) {
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (requires { m.sender; }) {
          if (m.sender != from) throw ProtocolError("message sender differs from the peer it came from");
        }
        if constexpr (std::is_same_v<M, DeltaPushMsg> || std::is_same_v<M, StateChunkMsg>) {
          checkClock(from, m.objects, wallMs);
        }
        if constexpr (std::is_same_v<M, DeltaPushMsg>) {
          receivePush(from, m, out);
        } else if constexpr (std::is_same_v<M, OfferMsg>) {
          receiveOffer(from, m, out);
        } else if constexpr (std::is_same_v<M, RequestMsg>) {
          serveOfferRequest(from, m, out);
        } else if constexpr (std::is_same_v<M, AckMsg>) {
          if (m.seq > seq_) throw ProtocolError("ack beyond our log's end");
          Peer* found = findPeer(from);
          if (found == nullptr) return;  // no longer a neighbour
          Peer& p = *found;
          p.known = true;
          p.acked = std::max(p.acked, m.seq);
          if (p.acked >= p.sentTo) p.offerOpen = false;
          if (p.acked >= p.digestSeq) p.digestSent = false;
          if (p.acked >= p.sentTo && p.sentFull && p.neighbor && !config_.shipState) {
            p.sentFull = false;
            contact(from, p, out);  // a backlog: the next interval now, not at the next tick
          }
          collectGarbage();
        } else if constexpr (std::is_same_v<M, DigestMsg>) {
          StateRequestMsg req{self_, m.seq, {}};
          for (const auto& [name, hash] : m.entries) {
            const Value* v = store_.find(name);
            if (v == nullptr || contentHash(*v) != hash) req.names.push_back(name);
          }
          Peer& p = peer(from);
          if (req.names.empty()) {
            p.recv = std::max(p.recv, m.seq);
            ++stats_.acksSent;
            out.push_back({from, AckMsg{self_, p.recv}});
          } else {
            p.inTransfer = m.seq;
            p.inChunks.clear();
            ++stats_.requestsSent;
            out.push_back({from, std::move(req)});
          }
        } else if constexpr (std::is_same_v<M, StateRequestMsg>) {
          serveRequest(from, m, out);
        } else if constexpr (std::is_same_v<M, SyncRequestMsg>) {
          Peer* p = findPeer(from);
          if (p == nullptr || !p->neighbor || config_.shipState) return;  // we do not send it our log
          skipOwn(from, *p);
          out.push_back({from, SyncReplyMsg{self_, m.id, p->acked >= seq_ ? 0 : seq_}});
          contactSoon(from, *p, out);
        } else if constexpr (std::is_same_v<M, SyncReplyMsg>) {
          if (m.id > syncId_) throw ProtocolError("sync reply to a request never made");
          Peer* p = findPeer(from);
          if (p == nullptr || !p->neighbor || m.id < p->syncId) return;
          p->syncId = m.id;
          p->syncSeq = m.seq;
        } else if constexpr (std::is_same_v<M, StateChunkMsg>) {
          // Batch atomicity and read safety (engine.h): a transfer of several chunks is held
          // until every chunk is here and joined as one unit, if it has at most maxHeldChunks;
          // a larger one is joined as it arrives, except its removal-only parts (gossip/split.h's
          // context parts: joined before the entry parts of their chunk set, they would remove
          // entries whose successors are still on their way), which wait for the last chunk.
          // What is held of a stale transfer is dropped (the current one brings the state again).
          Peer& p = peer(from);
          const bool current = m.transfer == p.inTransfer;
          if (current && p.inChunks.size() != m.total) {
            p.inChunks.assign(m.total, false);
            p.inMissing = m.total;
            p.inHeld.clear();
          }
          const bool holdAll = m.total > 1 && m.total <= config_.maxHeldChunks;
          if (m.total > 1 && (holdAll || std::any_of(m.objects.begin(), m.objects.end(),
                                                     [](const NamedValue& o) { return isRemovalOnly(o.value); }))) {
            store_.check(m.objects);
            if (!holdAll) {
              std::vector<NamedValue> now;
              for (const auto& o : m.objects) {
                if (!isRemovalOnly(o.value)) now.push_back(o);
              }
              applyRemote(from, now);
            }
            if (current) {
              for (const auto& o : m.objects) {
                if (holdAll || isRemovalOnly(o.value)) hold(p.inHeld, o.name, o.value);
              }
            }
          } else {
            applyRemote(from, m.objects);
          }
          releaseDeferredAcks(out);
          if (!current) return;  // a stale transfer: not counted
          if (!p.inChunks[m.index]) {
            p.inChunks[m.index] = true;
            --p.inMissing;
          }
          if (p.inMissing == 0) {
            joinHeld(from, p.inHeld);
            p.recv = std::max(p.recv, m.transfer);
            p.inChunks.clear();
            ++stats_.acksSent;
            out.push_back({from, AckMsg{self_, p.recv}});
          }
        } else {
          // Membership and handshake messages are not the engine's.
          throw ProtocolError("not an anti-entropy message");
        }
      },
      message);
}

void Engine::collectGarbage() {
  if (neighbors_.empty()) return;  // nobody to serve: keep the log (bounded by maxLogEntries/Bytes)
  uint64_t low = seq_;
  for (const auto& [j, p] : peers_) {
    if (p.neighbor) low = std::min(low, p.acked);
  }
  while (logStart_ < low && !log_.empty()) dropOldest();
}

}  // namespace deltasync::gossip
