#include "gossip/membership.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace deltasync::gossip {

namespace {

int rank(MemberState s) { return static_cast<int>(s); }  // alive < suspect < down < left

bool overrides(uint64_t inc, MemberState s, uint64_t curInc, MemberState cur) {
  return inc > curInc || (inc == curInc && rank(s) > rank(cur));
}

bool isLive(MemberState s) { return s == MemberState::alive || s == MemberState::suspect; }

}  // namespace

Membership::Membership(ReplicaId self, std::string address, MembershipConfig config)
    : self_(self), address_(std::move(address)), config_(config), rng_(config.seed ^ crdt::mix64(self.value)) {
  if (self.value == 0) throw std::invalid_argument("Membership: replica id 0 is reserved");
  tableHash_ = crdt::mix64(self.value);
}

uint64_t Membership::random() {  // splitmix64: deterministic for a given seed
  rng_ += 0x9e3779b97f4a7c15ULL;
  return crdt::mix64(rng_);
}

size_t Membership::liveCount() const { return live_; }

void Membership::track(const Member& m, int sign) {
  const ReplicaId id = m.info.id;
  if (isLive(m.info.state)) {
    live_ += sign;
    tableHash_ += sign > 0 ? crdt::mix64(id.value) : -crdt::mix64(id.value);
  }
  auto mark = [&](std::set<ReplicaId>& set, bool in) {
    if (in && sign > 0) set.insert(id);
    if (in && sign < 0) set.erase(id);
  };
  mark(suspects_, m.info.state == MemberState::suspect);
  mark(downs_, m.info.state == MemberState::down);
  if (sign > 0 && !isLive(m.info.state) && heard_.erase(id) != 0) viewDirty_ = true;
  mark(pendingRemoval_, !isLive(m.info.state) && !m.info.removed);
}

uint32_t Membership::retransmitLimit() const {
  return config_.retransmitMult * static_cast<uint32_t>(std::ceil(std::log2(static_cast<double>(liveCount()) + 1)));
}

uint64_t Membership::suspicionTimeout(const Member& m) const {
  double n = static_cast<double>(liveCount());
  double lo = config_.suspicionMinMult * std::max(1.0, std::log10(n)) * static_cast<double>(config_.probeIntervalMs);
  double hi = config_.suspicionMaxMult * lo;
  double k = std::max<uint32_t>(1, config_.indirectProbes);
  double c = m.confirmations.empty() ? 0.0 : static_cast<double>(m.confirmations.size() - 1);
  double t = hi - (hi - lo) * std::log(c + 1) / std::log(k + 1);
  return static_cast<uint64_t>(std::max(lo, t));
}

MemberUpdate Membership::recordOf(const Member& m) const {
  ReplicaId reporter = m.info.state != MemberState::alive && !m.confirmations.empty() ? m.confirmations.front() : ReplicaId{};
  return MemberUpdate{m.info.id, m.info.incarnation, m.info.state, m.info.address, reporter};
}

MemberUpdate Membership::selfRecord() const {
  return MemberUpdate{self_, incarnation_, left_ ? MemberState::left : MemberState::alive, address_, ReplicaId{}};
}

void Membership::enqueue(const MemberUpdate& u, bool droppable) {
  std::erase_if(queue_, [&](const Broadcast& b) { return b.update.replica == u.replica; });
  queue_.push_back(Broadcast{u, 0, droppable});
  if (queue_.size() <= config_.maxQueue) return;
  // Too much news: drop the most-sent join (table sync covers joins).
  auto victim = queue_.end();
  for (auto it = queue_.begin(); it + 1 < queue_.end(); ++it) {
    if (it->droppable && (victim == queue_.end() || it->sent > victim->sent)) victim = it;
  }
  if (victim != queue_.end()) queue_.erase(victim);
}

void Membership::setState(Member& m, MemberState s, uint64_t incarnation, uint64_t nowMs) {
  bool changed = m.info.state != s || m.info.removed;
  bool wasLive = isLive(m.info.state) && !m.info.removed;
  track(m, -1);
  m.info.state = s;
  m.info.incarnation = incarnation;
  m.info.removed = false;
  m.changedAtMs = nowMs;
  track(m, +1);
  if (changed) {
    recent_.push_back(m.info.id);
    if (recent_.size() > 64) recent_.erase(recent_.begin());
  }
  m.confirmations.clear();
  if (s == MemberState::suspect && changed) urgent_.push_back(m.info.id);
  if (changed) {
    // An alive member that was suspect is "up" again only as far as events go if it had been
    // reported down; suspect -> alive is reported too, so subscribers can clear a warning.
    events_.push_back(MemberEvent{m.info.id, s, false});
  }
  if (wasLive != isLive(s)) outDirty_ = viewDirty_ = true;
}

bool Membership::apply(const MemberUpdate& u, ReplicaId reporter, uint64_t nowMs, std::vector<Outgoing>& out,
                       bool rebroadcast) {
  if (u.replica == self_) {
    if (!left_ && u.state != MemberState::alive && u.incarnation >= incarnation_) {
      incarnation_ = u.incarnation + 1;  // refute
      enqueue(selfRecord());
      return true;
    }
    return false;
  }
  auto it = members_.find(u.replica);
  if (it == members_.end()) {
    Member m;
    m.info = MemberInfo{u.replica, u.incarnation, u.state, u.address, false};
    m.changedAtMs = nowMs;
    m.hash = crdt::mix64(self_.value ^ crdt::mix64(u.replica.value));
    if (u.state != MemberState::alive) m.confirmations.push_back(u.reporter.value != 0 ? u.reporter : reporter);
    track(m, +1);
    members_.emplace(u.replica, std::move(m));
    recent_.push_back(u.replica);
    if (recent_.size() > 64) recent_.erase(recent_.begin());
    if (isLive(u.state)) {
      events_.push_back(MemberEvent{u.replica, u.state, false});
      outDirty_ = viewDirty_ = true;
    }
    if (rebroadcast) enqueue(recordOf(members_.at(u.replica)), u.state == MemberState::alive);
    return true;
  }
  Member& m = it->second;
  if (!overrides(u.incarnation, u.state, m.info.incarnation, m.info.state)) {
    // The same suspicion raised independently by another member is a confirmation (Lifeguard).
    // Re-gossiped, so the others hear of it too.
    if (u.state == MemberState::suspect && m.info.state == MemberState::suspect &&
        u.incarnation == m.info.incarnation && u.reporter.value != 0 &&
        std::find(m.confirmations.begin(), m.confirmations.end(), u.reporter) == m.confirmations.end() &&
        m.confirmations.size() <= config_.indirectProbes) {
      m.confirmations.push_back(u.reporter);
      enqueue(u);
      if (u.reporter == self_) flood(u, out);
    }
    return false;
  }
  if (!u.address.empty()) m.info.address = u.address;
  const bool back = m.info.state == MemberState::down && u.state == MemberState::alive;
  setState(m, u.state, u.incarnation, nowMs);
  if (u.state != MemberState::alive) m.confirmations.push_back(u.reporter.value != 0 ? u.reporter : reporter);
  if (rebroadcast || u.state != MemberState::alive) enqueue(recordOf(m));  // a refutation, rejoin or failure: never dropped for space
  if (u.state == MemberState::down || u.state == MemberState::left || back ||
      (u.state == MemberState::suspect && u.reporter == self_)) {
    flood(u, out);
  }
  return true;
}

std::vector<MemberUpdate> Membership::piggyback(ReplicaId to) {
  std::vector<MemberUpdate> ups;
  ups.push_back(selfRecord());
  if (auto it = members_.find(to); it != members_.end() && it->second.info.state != MemberState::alive) {
    ups.push_back(recordOf(it->second));  // "you are suspected": let it refute now
  }
  // Fewest sent first; ties by age (the queue is in insertion order; stable sort keeps it).
  std::vector<uint32_t> order;
  order.reserve(queue_.size());
  for (uint32_t i = 0; i < queue_.size(); ++i) {
    if (queue_[i].update.replica != to) order.push_back(i);
  }
  size_t n = std::min<size_t>(order.size(), config_.maxPiggyback);
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(n), order.end(), [&](uint32_t a, uint32_t b) {
    return queue_[a].sent != queue_[b].sent ? queue_[a].sent < queue_[b].sent : a < b;
  });
  const uint32_t limit = retransmitLimit();
  bool spent = false;
  for (size_t i = 0; i < n; ++i) {
    Broadcast& b = queue_[order[i]];
    // Our own record leads already, always the newest (a queued one may be older): a message
    // names each member once (envelope validation refuses duplicates).
    if (b.update.replica != self_) ups.push_back(b.update);
    spent = ++b.sent >= limit || spent;
  }
  if (spent) std::erase_if(queue_, [&](const Broadcast& b) { return b.sent >= limit; });
  return ups;
}

void Membership::flood(const MemberUpdate& u, std::vector<Outgoing>& out) {
  for (ReplicaId v : view()) {
    if (v == u.replica) continue;
    std::vector<MemberUpdate> ups{selfRecord()};
    if (u.replica != self_) ups.push_back(u);  // a leave floods our own record: once
    out.push_back({v, PingAckMsg{self_, 0, self_, std::move(ups), tableHash_, {}}});
  }
}

void Membership::sendPing(ReplicaId to, uint64_t seq, std::vector<Outgoing>& out) {
  bool inOut = std::binary_search(outView_.begin(), outView_.end(), to);
  out.push_back({to, PingMsg{self_, seq, piggyback(to), tableHash_, inOut}});
}

bool Membership::maySample(ReplicaId to, uint64_t nowMs) {
  auto it = members_.find(to);  // the sender's own record leads its message: known by now
  if (it == members_.end()) return false;
  Member& m = it->second;
  if (m.sampled && nowMs < m.sampledAtMs + config_.syncIntervalMs) return false;
  m.sampled = true;
  m.sampledAtMs = nowMs;
  return true;
}

std::vector<MemberUpdate> Membership::sample() {
  std::vector<MemberUpdate> out;
  std::set<ReplicaId> taken;
  auto take = [&](const Member& m) {
    if (out.size() < config_.maxSyncMembers && isLive(m.info.state) && taken.insert(m.info.id).second) {
      out.push_back(recordOf(m));
    }
  };
  for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
    if (auto m = members_.find(*it); m != members_.end()) take(m->second);
  }
  if (members_.empty()) return out;
  // Then a random window of the table, wrapping around.
  auto start = std::next(members_.begin(), static_cast<long>(random() % members_.size()));
  for (size_t i = 0; i < members_.size() && out.size() < config_.maxSyncMembers; ++i) {
    if (start == members_.end()) start = members_.begin();
    take(start->second);
    ++start;
  }
  return out;
}

void Membership::addSeed(ReplicaId id, std::string address, uint64_t nowMs) {
  if (id == self_ || members_.count(id) != 0) return;
  std::vector<Outgoing> ignored;
  apply(MemberUpdate{id, 0, MemberState::alive, std::move(address)}, self_, nowMs, ignored);
  joinPings_.push_back(id);
}

void Membership::suspect(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out) {
  // Already suspect: our own failed probe is an independent confirmation (handled by apply).
  declare(id, MemberState::suspect, nowMs, out);
}

void Membership::declare(ReplicaId id, MemberState s, uint64_t nowMs, std::vector<Outgoing>& out) {
  auto it = members_.find(id);
  if (it == members_.end() || !isLive(it->second.info.state)) return;
  MemberUpdate u = recordOf(it->second);
  u.state = s;
  u.reporter = self_;
  apply(u, self_, nowMs, out);
}

void Membership::rebuildView(uint64_t) {
  if (outDirty_) {  // O(N): only when the live set changed
    std::vector<std::pair<uint64_t, ReplicaId>> candidates;
    for (const auto& [id, m] : members_) {
      if (isLive(m.info.state)) candidates.push_back({m.hash, id});
    }
    size_t k = std::min<size_t>(config_.viewSize, candidates.size());
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<long>(k), candidates.end());
    outView_.clear();
    for (size_t i = 0; i < k; ++i) outView_.push_back(candidates[i].second);
    std::sort(outView_.begin(), outView_.end());
    outDirty_ = false;
  }
  std::vector<ReplicaId> v = outView_;
  for (const auto& [id, at] : heard_) v.push_back(id);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  view_ = std::move(v);
  viewDirty_ = false;
}

const std::vector<ReplicaId>& Membership::view() {
  if (viewDirty_) rebuildView(lastNow_);
  return view_;
}

std::vector<ReplicaId> Membership::liveMembers() const {
  std::vector<ReplicaId> out{self_};
  for (const auto& [id, m] : members_) {
    if (isLive(m.info.state)) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<MemberInfo> Membership::members() const {
  std::vector<MemberInfo> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(m.info);
  std::sort(out.begin(), out.end(), [](const MemberInfo& a, const MemberInfo& b) { return a.id < b.id; });
  return out;
}

const MemberInfo* Membership::member(ReplicaId id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second.info;
}

// The view, round-robin, reshuffled each pass.
ReplicaId Membership::nextProbeTarget() {
  if (probeNext_ >= probeOrder_.size()) {
    probeOrder_ = view();
    for (size_t i = probeOrder_.size(); i > 1; --i) std::swap(probeOrder_[i - 1], probeOrder_[random() % i]);
    probeNext_ = 0;
  }
  while (probeNext_ < probeOrder_.size()) {
    const ReplicaId id = probeOrder_[probeNext_++];
    auto it = members_.find(id);
    if (it != members_.end() && isLive(it->second.info.state)) return id;
  }
  return {};
}

void Membership::tick(uint64_t nowMs, std::vector<Outgoing>& out) {
  lastNow_ = nowMs;
  if (left_) return;
  // Seeds added since the last tick are pinged now, not at the first probe (a random point of
  // the first period): the ack carries the seed's table sample, so a joiner knows the cluster
  // one round trip after its handshake.
  for (ReplicaId id : std::exchange(joinPings_, {})) {
    if (auto it = members_.find(id); it != members_.end() && isLive(it->second.info.state)) sendPing(id, ++seq_, out);
  }
  // In-view expiry (once a second is plenty): members that stopped probing us leave the view.
  if (nowMs >= nextExpiryAtMs_) {
    nextExpiryAtMs_ = nowMs + 1000;
    std::erase_if(heard_, [&](const auto& h) {
      bool expired = nowMs - h.second > config_.inViewExpiryMs;
      viewDirty_ = viewDirty_ || expired;
      return expired;
    });
  }
  // The running probe.
  if (probe_.active) {
    if (!probe_.indirect && nowMs >= probe_.sentAtMs + config_.probeTimeoutMs) {
      probe_.indirect = true;
      sendPing(probe_.target, probe_.seq, out);  // a second direct try (memberlist's TCP fallback)
      std::vector<ReplicaId> helpers;
      for (ReplicaId v : view()) {
        if (v != probe_.target) helpers.push_back(v);
      }
      for (uint32_t i = 0; i < config_.indirectProbes && !helpers.empty(); ++i) {
        size_t pick = random() % helpers.size();
        out.push_back({helpers[pick], PingReqMsg{self_, probe_.seq, probe_.target, piggyback(helpers[pick])}});
        helpers.erase(helpers.begin() + static_cast<long>(pick));
      }
    }
    if (nowMs >= probe_.sentAtMs + config_.probeIntervalMs) {
      probe_.active = false;
      suspect(probe_.target, nowMs, out);
    }
  }
  // Suspicion timeouts.
  std::vector<ReplicaId> expired;
  for (ReplicaId id : suspects_) {
    const Member& m = members_.at(id);
    if (nowMs >= m.changedAtMs + suspicionTimeout(m)) expired.push_back(id);
  }
  for (ReplicaId id : expired) {
    MemberUpdate u = recordOf(members_.at(id));
    u.state = MemberState::down;
    u.reporter = self_;
    apply(u, self_, nowMs, out);
  }
  // Removals.
  for (auto it = pendingRemoval_.begin(); it != pendingRemoval_.end();) {
    Member& m = members_.at(*it);
    if (nowMs >= m.changedAtMs + config_.removeAfterMs) {
      m.info.removed = true;
      events_.push_back(MemberEvent{m.info.id, m.info.state, true});
      it = pendingRemoval_.erase(it);
    } else {
      ++it;
    }
  }
  // Tombstones, swept now and then.
  if (nowMs >= nextSweepAtMs_) {
    nextSweepAtMs_ = nowMs + config_.removeAfterMs;
    for (auto it = members_.begin(); it != members_.end();) {
      if (it->second.info.removed && nowMs >= it->second.changedAtMs + config_.tombstoneMs) {
        std::erase_if(queue_, [&](const Broadcast& b) { return b.update.replica == it->first; });
        downs_.erase(it->first);
        it = members_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Next probe. The first one comes at a random point of the first period, so that nodes
  // started together do not probe in lockstep (bursts of traffic every period).
  if (!started_) {
    started_ = true;
    nextProbeAtMs_ = nowMs + random() % std::max<uint64_t>(1, config_.probeIntervalMs);
  }
  if (!probe_.active && nowMs >= nextProbeAtMs_) {
    nextProbeAtMs_ = nowMs + config_.probeIntervalMs;
    if (ReplicaId target = nextProbeTarget(); target.value != 0) {
      probe_ = Probe{true, target, ++seq_, nowMs, false};
      sendPing(target, probe_.seq, out);
    }
    // A member that turned suspect (whoever suspected it) gets a ping of its own beside the probe:
    // the ping tells it so (piggyback), and a live one refutes in its ack one round trip after
    // the suspicion reached us, instead of whenever somebody happens to write to it.
    while (!urgent_.empty()) {
      const ReplicaId id = urgent_.front();
      urgent_.pop_front();
      auto it = members_.find(id);
      if (it == members_.end() || it->second.info.state != MemberState::suspect || (probe_.active && id == probe_.target)) {
        continue;  // (the probe pings it already)
      }
      sendPing(id, ++seq_, out);
      break;
    }
    // A member down for less than removeAfterMs is pinged too, one per period in turn: after a
    // partition heals, the sides find each other within about a period (the ping tells it that
    // it is down here; it refutes in its ack) instead of one random down member per syncIntervalMs.
    if (!downs_.empty()) {
      auto it = downs_.upper_bound(lastDownPinged_);
      for (size_t n = 0; n < downs_.size(); ++n, ++it) {
        if (it == downs_.end()) it = downs_.begin();
        if (!members_.at(*it).info.removed) {
          lastDownPinged_ = *it;
          sendPing(*it, ++seq_, out);
          break;
        }
      }
    }
  }
  // Reconnect: ping one random down member now and then (partition healing).
  if (nowMs >= nextSyncAtMs_) {
    nextSyncAtMs_ = nowMs + config_.syncIntervalMs;
    if (!downs_.empty()) sendPing(*std::next(downs_.begin(), static_cast<long>(random() % downs_.size())), ++seq_, out);
  }
  // Relays that never got their ack.
  std::erase_if(relays_, [&](const auto& r) { return nowMs >= r.second.expiresAtMs; });
}

void Membership::checkIncarnations(const std::vector<MemberUpdate>& ups) const {
  for (const auto& u : ups) {
    uint64_t known = incarnation_;
    if (u.replica != self_) {
      auto it = members_.find(u.replica);
      known = it == members_.end() ? 0 : it->second.info.incarnation;
    }
    if (u.incarnation > known && u.incarnation - known > kMaxIncarnationLead) {
      throw ProtocolError("membership: member " + std::to_string(u.replica.value) + " at incarnation " +
                          std::to_string(u.incarnation) + ", more than 2^32 beyond the " + std::to_string(known) +
                          " known here: incarnations grow by one per refutation (forged?)");
    }
  }
}

void Membership::receive(ReplicaId from, const Message& message, uint64_t nowMs, std::vector<Outgoing>& out) {
  lastNow_ = nowMs;
  // Whole message or nothing: every update's incarnation is checked before any is applied.
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, PingMsg> || std::is_same_v<M, PingReqMsg>) {
          checkIncarnations(m.updates);
        } else if constexpr (std::is_same_v<M, PingAckMsg>) {
          checkIncarnations(m.updates);
          checkIncarnations(m.sample);
        }
      },
      message);
  auto applyAll = [&](const std::vector<MemberUpdate>& ups) {
    bool knew = members_.count(from) != 0;
    for (const auto& u : ups) apply(u, from, nowMs, out);
    return knew;
  };
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, PingMsg> || std::is_same_v<M, PingReqMsg> || std::is_same_v<M, PingAckMsg>) {
          if (m.sender != from) throw ProtocolError("message sender differs from the peer it came from");
        }
        if constexpr (std::is_same_v<M, PingMsg>) {
          applyAll(m.updates);
          if (auto it = members_.find(from); m.outView && it != members_.end() && isLive(it->second.info.state)) {
            auto [h, fresh] = heard_.insert_or_assign(from, nowMs);
            viewDirty_ = viewDirty_ || fresh;
          }
          PingAckMsg ack{self_, m.seq, self_, piggyback(from), tableHash_, {}};
          if (m.tableHash != tableHash_ && maySample(from, nowMs)) ack.sample = sample();
          out.push_back({from, std::move(ack)});
        } else if constexpr (std::is_same_v<M, PingReqMsg>) {
          applyAll(m.updates);
          if (m.target == self_) return;
          uint64_t seq = ++seq_;
          relays_[seq] = Relay{from, m.seq, m.target, nowMs + config_.probeIntervalMs};
          sendPing(m.target, seq, out);
        } else if constexpr (std::is_same_v<M, PingAckMsg>) {
          applyAll(m.updates);
          for (const auto& u : m.sample) apply(u, from, nowMs, out, false);
          if (m.seq == 0) return;  // a flood or the pull half of a sync, not an answer
          if (m.target == from && m.tableHash != tableHash_ && maySample(from, nowMs)) {
            out.push_back({from, PingAckMsg{self_, 0, self_, {selfRecord()}, tableHash_, sample()}});
          }
          if (probe_.active && m.seq == probe_.seq && m.target == probe_.target) {
            probe_.active = false;
            return;
          }
          auto r = relays_.find(m.seq);
          if (r != relays_.end() && r->second.target == from) {
            out.push_back({r->second.requester,
                           PingAckMsg{self_, r->second.requesterSeq, from, piggyback(r->second.requester), 0, {}}});
            relays_.erase(r);
          }
        } else {
          throw ProtocolError("not a membership message");
        }
      },
      message);
}

void Membership::retire(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out) {
  declare(id, MemberState::down, nowMs, out);
}

void Membership::leave(std::vector<Outgoing>& out) {
  left_ = true;
  flood(selfRecord(), out);
}

}  // namespace deltasync::gossip
