#include "gossip/engine.h"

#include <algorithm>
#include <utility>

#include "gossip/envelope.h"
#include "gossip/split.h"

namespace deltasync::gossip {

size_t encodedSize(const Value& v) { return encodeValue(v).size(); }

std::vector<Value> partsOf(const Value& v, size_t maxBytes) {
  return std::visit(
      [&](const auto& x) -> std::vector<Value> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (requires { x.store().dotAt(0); }) {  // the dot-store kinds
          if (encodedSize(v) > maxBytes) {
            std::vector<Value> out;
            for (T& part : splitCausal(x, maxBytes, [](const T& p) { return encodedSize(Value(p)); })) {
              out.emplace_back(std::move(part));
            }
            return out;
          }
        }
        return {v};
      },
      v);
}

Engine::Engine(ReplicaId self, EngineConfig config) : self_(self), config_(config), rng_(crdt::mix64(self.value)) {
  if (self.value == 0) throw std::invalid_argument("Engine: replica id 0 is reserved");
}

Value& Engine::objectOfKind(const std::string& name, size_t kind) {
  auto it = objects_.find(name);
  if (it == objects_.end()) return objects_.emplace(name, bottomOf(kind)).first->second;
  if (it->second.index() != kind) {
    throw KindMismatch("object '" + name + "' is a " + kindName(it->second) + ", not a " + kindName(kind));
  }
  return it->second;
}

void Engine::append(ReplicaId origin, const std::string& name, Value delta) {
  if (onChange_) onChange_(name);
  size_t bytes = encodedSize(delta) + name.size();
  log_.push_back(LogEntry{seq_++, origin, name, std::move(delta), bytes});
  if (log_.size() > config_.maxLogEntries) {
    log_.pop_front();
    ++logStart_;
  }
}

void Engine::applyLocal(const std::string& name, const Value& delta) {
  Value& v = objectOfKind(name, delta.index());
  joinInto(v, delta);
  if (!isBottom(delta)) append(ReplicaId{}, name, delta);
}

void Engine::applyRemote(ReplicaId origin, const std::vector<NamedValue>& objects) {
  for (const auto& o : objects) {
    auto it = objects_.find(o.name);
    if (it != objects_.end() && it->second.index() != o.value.index()) {
      throw ProtocolError("object '" + o.name + "' is a " + kindName(it->second) + " here, the peer sent a " +
                          kindName(o.value));
    }
    if (claimsUnminted(o.value, it == objects_.end() ? nullptr : &it->second, self_)) {
      throw ProtocolError("object '" + o.name + "' carries writes under this replica's id (" +
                          std::to_string(self_.value) +
                          ") that it never made: forged, or this replica restarted without its state under its "
                          "old id (start it under a new id)");
    }
  }
  for (const auto& o : objects) {
    auto it = objects_.find(o.name);
    if (it == objects_.end()) {
      if (isBottom(o.value)) continue;
      objects_.emplace(o.name, o.value);
      append(origin, o.name, o.value);
      ++stats_.deltasJoined;
      continue;
    }
    Value news = strip(o.value, it->second);
    if (isBottom(news)) {
      ++stats_.deltasRedundant;
      continue;
    }
    joinInto(it->second, news);
    ++stats_.deltasJoined;
    append(origin, o.name, config_.removeRedundant ? std::move(news) : o.value);
  }
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

Engine::Peer* Engine::findPeer(ReplicaId j) {
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

const Value* Engine::find(const std::string& name) const {
  auto it = objects_.find(name);
  return it == objects_.end() ? nullptr : &it->second;
}

void Engine::tick(std::vector<Outgoing>& out) {
  ++tick_;
  // The neighbours contacted this tick: all of them, or `fanout` drawn at random.
  std::vector<bool> contact;
  if (config_.fanout != 0 && config_.fanout < neighbors_.size()) {
    contact.assign(peers_.size(), false);
    std::vector<size_t> idx;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (peers_[i].second.neighbor) idx.push_back(i);
    }
    for (uint32_t k = 0; k < config_.fanout; ++k) {
      rng_ += 0x9e3779b97f4a7c15ULL;
      size_t pick = crdt::mix64(rng_) % (idx.size() - k);
      contact[idx[pick]] = true;
      std::swap(idx[pick], idx[idx.size() - 1 - k]);
    }
  }
  for (size_t i = 0; i < peers_.size(); ++i) {
    auto& [j, p] = peers_[i];
    if (!p.neighbor || (!contact.empty() && !contact[i])) continue;
    if (config_.shipState) {
      if (objects_.empty()) continue;
      DeltaPushMsg m{self_, 0, 0, 1, {}};
      for (const auto& [name, v] : objects_) m.objects.push_back({name, v});
      ++stats_.pushesSent;
      out.push_back({j, std::move(m)});
      continue;
    }
    if (config_.backPropagation && p.known) {
      // Entries that came from j are known to j: step over them without sending (BP).
      while (p.acked < seq_ && p.acked >= logStart_ && log_[p.acked - logStart_].origin == j) ++p.acked;
    }
    if (p.acked >= seq_) continue;
    if (!p.known || p.acked < logStart_) {
      if (!p.digestSent || tick_ - p.digestAt >= config_.catchupRetryTicks) sendDigest(j, p, out);
      continue;
    }
    sendPush(j, p, out);
  }
  collectGarbage();
}

void Engine::sendPush(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  const bool inFlight = p.sentTo > p.acked && tick_ - p.sentAt < config_.retransmitTicks;
  uint64_t from = inFlight ? p.sentTo : p.acked;
  if (from >= seq_) return;
  std::map<std::string, Value> joined;
  size_t bytes = 0;
  uint64_t to = from;
  while (to < seq_) {
    const LogEntry& e = log_[to - logStart_];
    if (bytes > 0 && bytes + e.bytes > config_.maxPushBytes) break;
    ++to;
    if (config_.backPropagation && e.origin == j) continue;
    bytes += e.bytes;
    auto [it, fresh] = joined.try_emplace(e.name, e.delta);
    if (!fresh) joinInto(it->second, e.delta);
  }
  DeltaPushMsg m{self_, p.acked, from, to, {}};
  m.objects.reserve(joined.size());
  for (auto& [name, v] : joined) m.objects.push_back({name, std::move(v)});
  p.sentTo = to;
  p.sentAt = tick_;
  ++stats_.pushesSent;
  out.push_back({j, std::move(m)});
}

void Engine::sendDigest(ReplicaId j, Peer& p, std::vector<Outgoing>& out) {
  DigestMsg m{self_, seq_, {}};
  m.entries.reserve(objects_.size());
  for (const auto& [name, v] : objects_) m.entries.emplace_back(name, contentHash(v));
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
  std::vector<std::vector<NamedValue>> chunks(1);
  size_t bytes = 0;
  for (const std::string& name : m.names) {
    const Value* v = find(name);
    if (v == nullptr) continue;  // never ours (a confused or hostile peer): nothing to send
    for (Value& part : partsOf(*v, config_.maxChunkBytes)) {
      size_t size = encodedSize(part) + name.size();
      bool named = std::any_of(chunks.back().begin(), chunks.back().end(),
                               [&](const NamedValue& o) { return o.name == name; });
      if (!chunks.back().empty() && (named || bytes + size > config_.maxChunkBytes)) {
        chunks.emplace_back();
        bytes = 0;
      }
      bytes += size;
      chunks.back().push_back({name, std::move(part)});
    }
  }
  const auto total = static_cast<uint32_t>(chunks.size());
  for (uint32_t i = 0; i < total; ++i) {
    ++stats_.chunksSent;
    out.push_back({j, StateChunkMsg{self_, m.seq, i, total, std::move(chunks[i])}});
  }
}

void Engine::receive(ReplicaId from, const Message& message, std::vector<Outgoing>& out) {
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (requires { m.sender; }) {
          if (m.sender != from) throw ProtocolError("message sender differs from the peer it came from");
        }
        if constexpr (std::is_same_v<M, DeltaPushMsg>) {
          applyRemote(from, m.objects);
          Peer& p = peer(from);
          p.recv = std::max(p.recv, m.base);
          if (m.fromSeq <= p.recv) p.recv = std::max(p.recv, m.toSeq);
          ++stats_.acksSent;
          out.push_back({from, AckMsg{self_, p.recv}});
        } else if constexpr (std::is_same_v<M, AckMsg>) {
          if (m.seq > seq_) throw ProtocolError("ack beyond our log's end");
          Peer* found = findPeer(from);
          if (found == nullptr) return;  // no longer a neighbour
          Peer& p = *found;
          p.known = true;
          p.acked = std::max(p.acked, m.seq);
          if (p.acked >= p.digestSeq) p.digestSent = false;
          collectGarbage();
        } else if constexpr (std::is_same_v<M, DigestMsg>) {
          StateRequestMsg req{self_, m.seq, {}};
          for (const auto& [name, hash] : m.entries) {
            const Value* v = find(name);
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
        } else if constexpr (std::is_same_v<M, StateChunkMsg>) {
          applyRemote(from, m.objects);
          Peer& p = peer(from);
          if (m.transfer != p.inTransfer) return;  // a stale transfer: joined, but not counted
          if (p.inChunks.size() != m.total) {
            p.inChunks.assign(m.total, false);
            p.inMissing = m.total;
          }
          if (!p.inChunks[m.index]) {
            p.inChunks[m.index] = true;
            --p.inMissing;
          }
          if (p.inMissing == 0) {
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
  if (neighbors_.empty()) return;  // nobody to serve: keep the log (bounded by maxLogEntries)
  uint64_t low = seq_;
  for (const auto& [j, p] : peers_) {
    if (p.neighbor) low = std::min(low, p.acked);
  }
  while (logStart_ < low && !log_.empty()) {
    log_.pop_front();
    ++logStart_;
  }
}

}  // namespace deltasync::gossip
