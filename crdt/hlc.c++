#include "crdt/hlc.h"

#include <algorithm>
#include <limits>
#include <string>

#include "crdt/errors.h"

namespace deltasync::crdt {
namespace {

std::string describe(Timestamp t) {
  return std::to_string(t.physical()) + "ms+" + std::to_string(t.logical());
}

Timestamp physicalFloor(uint64_t physicalMillis) {
  if (physicalMillis > Timestamp::kMaxPhysical) {
    throw std::invalid_argument("HybridLogicalClock: physical time " +
                                std::to_string(physicalMillis) +
                                " does not fit in 48 bits; pass milliseconds since the Unix epoch");
  }
  return Timestamp::make(physicalMillis, 0);
}

// t + 1 in packed form: a full logical counter carries into the physical part.
Timestamp successor(Timestamp t) {
  if (t.value == std::numeric_limits<uint64_t>::max()) {
    throw LimitError("HybridLogicalClock: timestamp " + describe(t) +
                     " has no successor (physical time beyond the year 10889?)");
  }
  return Timestamp{t.value + 1};
}

}  // namespace

ClockSkewError::ClockSkewError(Timestamp remote, uint64_t physicalMillis,
                               uint64_t maxForwardSkewMillis)
    : std::runtime_error("HybridLogicalClock: remote timestamp " + describe(remote) + " is " +
                         std::to_string(remote.physical() - physicalMillis) +
                         "ms ahead of local physical time " + std::to_string(physicalMillis) +
                         "ms (tolerated: " + std::to_string(maxForwardSkewMillis) +
                         "ms); reject the message and check both clocks"),
      remote_(remote),
      physicalMillis_(physicalMillis),
      maxForwardSkewMillis_(maxForwardSkewMillis) {}

Timestamp HybridLogicalClock::now(uint64_t physicalMillis) {
  Timestamp next = std::max(physicalFloor(physicalMillis), successor(last_));
  last_ = next;
  return next;
}

Timestamp HybridLogicalClock::update(Timestamp remote, uint64_t physicalMillis) {
  Timestamp floor = physicalFloor(physicalMillis);
  // Written as a subtraction so that a huge tolerance (e.g. UINT64_MAX: "no limit") cannot
  // overflow.
  if (remote.physical() > physicalMillis &&
      remote.physical() - physicalMillis > maxForwardSkewMillis_) {
    throw ClockSkewError(remote, physicalMillis, maxForwardSkewMillis_);
  }
  Timestamp next = std::max({floor, successor(last_), successor(remote)});
  last_ = next;
  return next;
}

}  // namespace deltasync::crdt
