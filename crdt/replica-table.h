// ReplicaTable: maps the replica ids of a dot store's live dots to 16-bit local slots, so a dot
// packs into 64 bits (slot << 48 | counter) inside entries.
//
// Invariants: slots_[s].refs counts the entries using slot s; a slot with refs == 0 is free, and
// none is below free_;
// byId_ is either empty (lookups scan slots_; always so while there are at most kLinear slots)
// or lists exactly the used slots sorted by id. So the 65535-replica limit applies to replicas with
// live dots at the same time, not to every replica ever seen. A store with one writer (every delta)
// keeps its single slot inline and allocates nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "crdt/causal-context.h"
#include "crdt/dot.h"
#include "crdt/errors.h"

namespace deltasync::crdt::_ {

class ReplicaTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kMaxSlots = 65535;

  ReplicaTable() = default;
  ReplicaTable(const ReplicaTable&) = default;
  ReplicaTable& operator=(const ReplicaTable&) = default;
  // Moves never throw (see CausalContext's moves: the same small_vector).
  ReplicaTable(ReplicaTable&&) noexcept = default;
  ReplicaTable& operator=(ReplicaTable&&) noexcept = default;

  uint32_t find(ReplicaId r) const {
    if (isLast(r)) return last_;
    if (byId_.empty()) {
      for (uint32_t s = 0; s < slots_.size(); ++s) {
        if (slots_[s].id == r && slots_[s].refs != 0) return s;
      }
      return kNone;
    }
    auto it = lowerBound(r);
    return (it != byId_.end() && it->first == r) ? it->second : kNone;
  }

  ReplicaId id(uint32_t slot) const { return slots_[slot].id; }

  // Finds or allocates r's slot and counts one more reference to it. Throws LimitError (no
  // change) when 65535 replicas already have live dots here.
  uint32_t acquire(ReplicaId r) {
    // Fast path: the slot of the previous acquire (a store's writes mostly come from one replica).
    if (isLast(r)) {
      ++slots_[last_].refs;
      return last_;
    }
    uint32_t s = find(r);
    if (s != kNone) {
      ++slots_[s].refs;
      last_ = s;
      return s;
    }
    // A new replica: the first free slot, searched from free_ (every slot below it is used). A
    // store may get tens of thousands of writers at once (a decoded flag, maxOrigins in gossip),
    // and searching from 0 each time made that quadratic. The search passes each used slot once
    // between releases, so its cost is amortized O(1).
    for (s = free_; s < slots_.size() && slots_[s].refs != 0; ++s) {
    }
    if (s == slots_.size()) {
      if (slots_.size() >= kMaxSlots) {
        throw LimitError("dot store holds live dots of more than 65535 replicas (adding " +
                         std::to_string(r.value) + ")");
      }
      slots_.push_back(Slot{});
    }
    slots_[s] = Slot{r, 1};
    free_ = s + 1;
    if (!byId_.empty()) {
      byId_.insert(lowerBound(r), {r, static_cast<uint16_t>(s)});
    } else if (slots_.size() > kLinear) {
      for (uint32_t t = 0; t < slots_.size(); ++t) {
        if (slots_[t].refs != 0) byId_.push_back({slots_[t].id, static_cast<uint16_t>(t)});
      }
      std::sort(byId_.begin(), byId_.end());
    }
    last_ = s;
    return s;
  }

  // acquire() for a table that has no slot yet (a write's one-entry delta): returns slot 0.
  uint32_t acquireFirst(ReplicaId r) {
    slots_.push_back(Slot{r, 1});
    last_ = 0;  // (free_ stays 0, still a lower bound: a write's delta pays no store for it)
    return 0;
  }

  // One more reference to a used slot.
  void addRef(uint32_t slot) { ++slots_[slot].refs; }

  void release(uint32_t slot) {
    if (--slots_[slot].refs != 0) return;
    free_ = std::min(free_, slot);
    if (byId_.empty()) return;
    byId_.erase(lowerBound(slots_[slot].id));
  }

  // Used slots: f(ReplicaId, slot).
  template <typename F>
  void forEach(F&& f) const {
    for (uint32_t s = 0; s < slots_.size(); ++s) {
      if (slots_[s].refs != 0) f(slots_[s].id, s);
    }
  }
  size_t slotCount() const { return slots_.size(); }
  size_t usedCount() const {
    if (!byId_.empty()) return byId_.size();
    size_t n = 0;
    for (const Slot& s : slots_) n += s.refs != 0;
    return n;
  }

  size_t memoryBytes() const {
    return CausalContext::heapBytes(slots_) + byId_.capacity() * sizeof(byId_[0]);
  }

 private:
  static constexpr size_t kLinear = 8;
  struct Slot {
    ReplicaId id;
    uint32_t refs = 0;
  };
  InlineVector<Slot> slots_;
  std::vector<std::pair<ReplicaId, uint16_t>> byId_;
  uint32_t last_ = 0;  // the slot acquire() returned last (a hint; checked before use)
  uint32_t free_ = 0;  // no free slot below it (a lower bound for acquire()'s search)

  bool isLast(ReplicaId r) const {
    return last_ < slots_.size() && slots_[last_].id == r && slots_[last_].refs != 0;
  }

  std::vector<std::pair<ReplicaId, uint16_t>>::iterator lowerBound(ReplicaId r) {
    return std::lower_bound(byId_.begin(), byId_.end(), r,
                            [](const auto& e, ReplicaId id) { return e.first < id; });
  }
  std::vector<std::pair<ReplicaId, uint16_t>>::const_iterator lowerBound(ReplicaId r) const {
    return std::lower_bound(byId_.begin(), byId_.end(), r,
                            [](const auto& e, ReplicaId id) { return e.first < id; });
  }
};

}  // namespace deltasync::crdt::_
