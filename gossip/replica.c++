#include "gossip/replica.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace deltasync::gossip {

Replica::Replica(ReplicaId self, std::string address, ReplicaConfig config)
    : config_(std::move(config)),
      store_(self),
      engine_(store_, config_.engine),
      presence_(store_, config_.limits, config_.presence),
      pruner_(store_, config_.pruning, config_.limits.maxValueBytes) {
  if (config_.gossipIntervalMs == 0 || config_.membershipTickMs == 0) {
    throw std::invalid_argument("Replica: gossipIntervalMs and membershipTickMs must be > 0");
  }
  if (config_.membership) {
    membership_ = std::make_unique<Membership>(self, std::move(address), config_.membershipConfig);
  }
  store_.addCheck(std::string(kPruneObject), checkPruneObject);
}

void Replica::resume(uint64_t seq, uint64_t incarnation) {
  store_.learnPruned(false);  // restored state: the marks it holds were applied before the restart
  engine_.resume(seq);
  if (membership_) membership_->resume(incarnation);
}

void Replica::receive(ReplicaId from, const Message& message, uint64_t nowMs, uint64_t wallMs,
                      std::vector<Outgoing>& out) {
  if (store_.forgotten(from)) {
    throw ProtocolError(prunedError(from));
  }
  if (!isMembershipMessage(message)) {
    engine_.receive(from, message, wallMs, out);
    return;
  }
  if (!membership_) throw ProtocolError("a membership message, but this replica runs without membership");
  membership_->receive(from, message, nowMs, out);
  afterMembershipStep();
}

void Replica::tick(uint64_t nowMs, std::vector<Outgoing>& out) {
  if (membership_ && nowMs >= nextMembershipMs_) {
    nextMembershipMs_ = nowMs + config_.membershipTickMs;
    membership_->tick(nowMs, out);
    afterMembershipStep();
  }
  if (nowMs >= nextGossipMs_) {
    nextGossipMs_ = nowMs + config_.gossipIntervalMs;
    engine_.tick(out);
  }
}

uint64_t Replica::nextTickMs() const {
  return membership_ ? std::min(nextGossipMs_, nextMembershipMs_) : nextGossipMs_;
}

void Replica::addSeed(ReplicaId id, const std::string& address, uint64_t nowMs) {
  if (!membership_) throw std::logic_error("Replica::addSeed without membership");
  membership_->addSeed(id, address, nowMs);
  afterMembershipStep();
}

void Replica::retire(ReplicaId id, uint64_t nowMs, std::vector<Outgoing>& out) {
  if (!membership_) return;
  membership_->retire(id, nowMs, out);
  afterMembershipStep();
}

void Replica::leave(std::vector<Outgoing>& out) {
  if (!membership_) return;
  membership_->leave(out);
  afterMembershipStep();
}

void Replica::setNeighbors(std::vector<ReplicaId> neighbors) {
  if (membership_) throw std::logic_error("Replica::setNeighbors: membership chooses the neighbours");
  engine_.setNeighbors(std::move(neighbors));
}

void Replica::afterMembershipStep() {
  for (auto& e : membership_->takeEvents()) {
    presenceEvents_.push_back(e);
    events_.push_back(e);
  }
  const auto& view = membership_->view();
  if (view != engine_.neighbors()) engine_.setNeighbors(view);
}

void Replica::stepMaintenance(uint64_t nowMs, uint64_t wallMs) {
  for (const auto& e : std::exchange(presenceEvents_, {})) presence_.memberEvent(e, nowMs);
  if (nowMs >= nextPresenceMs_) {
    nextPresenceMs_ = nowMs + config_.presenceTickMs;
    presence_.tick(nowMs);
  }
  if (membership_ && nowMs >= nextPruneMs_) {
    nextPruneMs_ = nowMs + std::max<uint64_t>(config_.pruning.checkIntervalMs, 1);
    pruner_.step(*membership_, wallMs);
  }
}

}  // namespace deltasync::gossip
