// Hybrid logical clocks (Kulkarni, Demirbas, Madeppa, Avva, Leone: "Logical Physical Clocks",
// OPODIS 2014) and the timestamps last-writer-wins types order writes by.
//
// An HLC timestamp stays close to physical time (so "last writer" means roughly what a user
// expects) while still respecting causality: a replica that has seen a write stamps its own later
// writes strictly after it, even when its physical clock is behind the other replica's.
//
// The clock never reads time itself: every call takes the caller's physical time in milliseconds
// since the Unix epoch (crdt/ has no clocks; tests and the simulator pass time by hand).
#pragma once

#include <compare>
#include <cstdint>
#include <stdexcept>

namespace deltasync::crdt {

// 48 bits of physical time (milliseconds since the Unix epoch, enough until the year 10889) above
// a 16-bit logical counter. Comparing the packed value compares (physical, logical)
// lexicographically, and the wire carries one integer. Every 64-bit value is a valid Timestamp;
// Timestamp{} (0) sorts before every timestamp a clock hands out.
struct Timestamp {
  static constexpr unsigned kLogicalBits = 16;
  static constexpr uint64_t kMaxLogical = (uint64_t{1} << kLogicalBits) - 1;
  static constexpr uint64_t kMaxPhysical = (uint64_t{1} << (64 - kLogicalBits)) - 1;

  uint64_t value = 0;

  constexpr Timestamp() = default;
  constexpr explicit Timestamp(uint64_t packed) : value(packed) {}

  // Throws std::invalid_argument if physicalMillis > kMaxPhysical or logical > kMaxLogical.
  static constexpr Timestamp make(uint64_t physicalMillis, uint64_t logical) {
    if (physicalMillis > kMaxPhysical) {
      throw std::invalid_argument(
          "Timestamp: physical time does not fit in 48 bits; pass milliseconds since the epoch");
    }
    if (logical > kMaxLogical) {
      throw std::invalid_argument("Timestamp: logical counter does not fit in 16 bits");
    }
    return Timestamp{(physicalMillis << kLogicalBits) | logical};
  }

  constexpr uint64_t physical() const { return value >> kLogicalBits; }
  constexpr uint64_t logical() const { return value & kMaxLogical; }

  constexpr auto operator<=>(const Timestamp&) const = default;
};

// A remote timestamp lies further ahead of our physical time than the clock tolerates. Accepting
// it would drag this clock (and every clock it talks to) into the future, where a bogus or
// malicious peer's writes would win every LWW comparison for that long. The caller should
// reject the message carrying it (and look at the sender's clock, or at ours).
class ClockSkewError : public std::runtime_error {
 public:
  ClockSkewError(Timestamp remote, uint64_t physicalMillis, uint64_t maxForwardSkewMillis);

  Timestamp remote() const { return remote_; }
  uint64_t physicalMillis() const { return physicalMillis_; }
  uint64_t maxForwardSkewMillis() const { return maxForwardSkewMillis_; }

 private:
  Timestamp remote_;
  uint64_t physicalMillis_;
  uint64_t maxForwardSkewMillis_;
};

// One replica's clock. A value type holding only the last timestamp handed out (persist it with
// the replica's state and pass it back to the constructor after a restart, so timestamps stay
// unique even if physical time went backwards across the restart).
//
// Invariants: every timestamp returned by now() or update() is strictly greater than every
// timestamp this clock returned before, than `last` passed to the constructor, and (for update)
// than the remote timestamp; and it is >= Timestamp::make(physicalMillis, 0).
//
// Error behaviour: every throwing call leaves the clock unchanged.
class HybridLogicalClock {
 public:
  static constexpr uint64_t kDefaultMaxForwardSkewMillis = 60'000;

  explicit HybridLogicalClock(uint64_t maxForwardSkewMillis = kDefaultMaxForwardSkewMillis,
                              Timestamp last = Timestamp{})
      : last_(last), maxForwardSkewMillis_(maxForwardSkewMillis) {}

  // A timestamp for a local event (a write, or a message being sent): the greater of
  // (physicalMillis, 0) and last() + 1. When the logical counter is full, last() + 1 carries into
  // the physical part, i.e. the clock runs one millisecond ahead of physical time, which is how it
  // stays strictly increasing when more than 65536 events share a millisecond or physical time
  // stalls or goes backwards.
  //
  // Throws std::invalid_argument if physicalMillis > Timestamp::kMaxPhysical and LimitError if
  // last() is already the greatest Timestamp.
  Timestamp now(uint64_t physicalMillis);

  // A receive event: the greatest of (physicalMillis, 0), last() + 1 and remote + 1.
  //
  // Throws ClockSkewError when remote.physical() > physicalMillis + maxForwardSkewMillis(); a
  // remote timestamp exactly at the limit is accepted. Other errors as for now().
  Timestamp update(Timestamp remote, uint64_t physicalMillis);

  // The last timestamp handed out (or the one passed to the constructor).
  Timestamp last() const { return last_; }
  uint64_t maxForwardSkewMillis() const { return maxForwardSkewMillis_; }

 private:
  Timestamp last_;
  uint64_t maxForwardSkewMillis_;
};

}  // namespace deltasync::crdt
