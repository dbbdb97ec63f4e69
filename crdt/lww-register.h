// LWWRegister<V>: a last-writer-wins register. The state is at most one write
// (timestamp, writer, value); join keeps the greater write.
//
// Writes are ordered by (timestamp, writer): a total order between writes of different replicas,
// so concurrent writes with equal timestamps resolve the same way everywhere (the greater
// ReplicaId wins) rather than by arrival order. Equal (timestamp, writer) with different values
// can only come from a replica reusing a timestamp -- a caller bug, since a HybridLogicalClock
// never hands out the same timestamp twice -- and is then resolved by the value itself (the
// greater value wins), which keeps join commutative. That is why V must be totally ordered.
//
// Invariant: none beyond V's own; every (timestamp, writer, value) is a valid write and
// Timestamp{} is as valid as any other. Bottom is "never written", below every write.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <utility>

#include "crdt/dot.h"
#include "crdt/hlc.h"

namespace deltasync::crdt {
namespace _ {

// Heap bytes owned by `v` beyond sizeof(V), as far as a generic register can tell: a type's own
// memoryBytes() (which, by crdt/'s convention, includes sizeof(V)), or a contiguous container's
// capacity unless its data lives inside the object (std::string's small buffer). Nested
// allocations inside container elements are not counted.
template <typename V>
size_t ownedHeapBytes(const V& v) {
  if constexpr (requires {
                  { v.memoryBytes() } -> std::convertible_to<size_t>;
                }) {
    return v.memoryBytes() - sizeof(V);
  } else if constexpr (requires {
                         v.data();
                         v.capacity();
                       }) {
    const void* data = v.data();
    const char* self = reinterpret_cast<const char*>(&v);
    std::less<const void*> before;
    bool isInline = !before(data, self) && before(data, self + sizeof(V));
    return isInline ? 0 : v.capacity() * sizeof(*v.data());
  } else {
    return 0;
  }
}

}  // namespace _

template <std::totally_ordered V>
class LWWRegister {
 public:
  LWWRegister() = default;

  // Writes `value` at `ts` as replica `self`. If the write beats the current one (greater
  // (timestamp, writer), see above) it becomes the state and the delta is the new register;
  // otherwise the state is unchanged and the delta is bottom, so `d.empty()` tells the caller
  // that the write lost at once (its timestamp was not newer than what this replica has seen;
  // stamping writes with a HybridLogicalClock that is updated on every receive avoids that).
  LWWRegister set(ReplicaId self, V value, Timestamp ts) {
    Write w{ts, self, std::move(value)};
    if (write_.has_value() && !beats(w, *write_)) return LWWRegister{};
    write_ = std::move(w);
    LWWRegister delta;
    delta.write_ = write_;
    return delta;
  }

  // The current value; nullptr if never written. Valid until the register is next modified.
  const V* get() const { return write_.has_value() ? &write_->value : nullptr; }
  // Timestamp and writer of the current value; Timestamp{} and ReplicaId{} if never written.
  Timestamp timestamp() const { return write_.has_value() ? write_->timestamp : Timestamp{}; }
  ReplicaId writer() const { return write_.has_value() ? write_->writer : ReplicaId{}; }

  bool empty() const { return !write_.has_value(); }

  // Keeps the greater write.
  void join(const LWWRegister& other) {
    if (other.write_.has_value() && (!write_.has_value() || beats(*other.write_, *write_))) {
      write_ = other.write_;
    }
  }

  size_t memoryBytes() const {
    return sizeof(*this) + (write_.has_value() ? _::ownedHeapBytes(write_->value) : 0);
  }

  bool operator==(const LWWRegister&) const = default;

 private:
  struct Write {
    Timestamp timestamp;
    ReplicaId writer;
    V value;

    bool operator==(const Write&) const = default;
  };

  std::optional<Write> write_;

  template <std::totally_ordered U>
  friend LWWRegister<U> strip(const LWWRegister<U>& delta, const LWWRegister<U>& state);

  // The total order on writes: (timestamp, writer, value) lexicographically.
  static bool beats(const Write& a, const Write& b) {
    if (a.timestamp != b.timestamp) return a.timestamp > b.timestamp;
    if (a.writer != b.writer) return a.writer > b.writer;
    return b.value < a.value;
  }
};

// `delta` if joining it would change `state`, else bottom.
template <std::totally_ordered V>
LWWRegister<V> strip(const LWWRegister<V>& delta, const LWWRegister<V>& state) {
  using R = LWWRegister<V>;
  bool inflates = delta.write_.has_value() &&
                  (!state.write_.has_value() || R::beats(*delta.write_, *state.write_));
  return inflates ? delta : R{};
}

}  // namespace deltasync::crdt
