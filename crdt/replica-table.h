// ReplicaTable: maps the replica ids of a dot store's live dots to 16-bit local slots, so a dot
// packs into 64 bits (slot << 48 | counter) inside entries.
//
// Invariants: refs_[s] counts the entries using slot s; a slot with refs_[s] == 0 is free (on
// free_) and absent from byId_; byId_ is sorted by id and lists exactly the used slots. So the
// 65535-replica limit applies to replicas with live dots at the same time, not to every replica
// ever seen.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "crdt/dot.h"
#include "crdt/errors.h"

namespace deltasync::crdt::_ {

class ReplicaTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kMaxSlots = 65535;

  uint32_t find(ReplicaId r) const {
    if (byId_.size() <= 8) {
      for (auto& [id, slot] : byId_) {
        if (id == r) return slot;
      }
      return kNone;
    }
    auto it = std::lower_bound(byId_.begin(), byId_.end(), r,
                               [](const auto& e, ReplicaId id) { return e.first < id; });
    return (it != byId_.end() && it->first == r) ? it->second : kNone;
  }

  ReplicaId id(uint32_t slot) const { return ids_[slot]; }

  // Finds or allocates r's slot and counts one more reference to it.
  uint32_t acquire(ReplicaId r) {
    uint32_t s = find(r);
    if (s != kNone) {
      ++refs_[s];
      return s;
    }
    if (free_.empty()) {
      if (ids_.size() >= kMaxSlots) {
        throw LimitError("dot store holds live dots of more than 65535 replicas (adding " +
                         std::to_string(r.value) + ")");
      }
      free_.push_back(static_cast<uint16_t>(ids_.size()));
      ids_.push_back(ReplicaId{});
      refs_.push_back(0);
    }
    s = free_.back();
    free_.pop_back();
    ids_[s] = r;
    refs_[s] = 1;
    auto it = std::lower_bound(byId_.begin(), byId_.end(), r,
                               [](const auto& e, ReplicaId id) { return e.first < id; });
    byId_.insert(it, {r, static_cast<uint16_t>(s)});
    return s;
  }

  void release(uint32_t slot) {
    if (--refs_[slot] != 0) return;
    ReplicaId r = ids_[slot];
    auto it = std::lower_bound(byId_.begin(), byId_.end(), r,
                               [](const auto& e, ReplicaId id) { return e.first < id; });
    byId_.erase(it);
    free_.push_back(static_cast<uint16_t>(slot));
  }

  // Used slots in id order: f(ReplicaId, slot).
  template <typename F>
  void forEach(F&& f) const {
    for (auto& [id, slot] : byId_) f(id, slot);
  }
  size_t slotCount() const { return ids_.size(); }
  size_t usedCount() const { return byId_.size(); }

  size_t memoryBytes() const {
    return ids_.capacity() * sizeof(ReplicaId) + refs_.capacity() * sizeof(uint32_t) +
           free_.capacity() * sizeof(uint16_t) + byId_.capacity() * sizeof(byId_[0]);
  }

 private:
  std::vector<ReplicaId> ids_;
  std::vector<uint32_t> refs_;
  std::vector<uint16_t> free_;
  std::vector<std::pair<ReplicaId, uint16_t>> byId_;
};

}  // namespace deltasync::crdt::_
