// Detects jumps of this node's wall clock: between two samples the wall clock should advance as
// the monotonic clock does. A difference of at least thresholdMs is a jump: an NTP step, a manual
// change, a virtual machine resumed with a stale clock. Gradual corrections (NTP slewing, at most
// 0.5 ms per second) never add up to a jump between samples taken every few tens of ms.
//
// Why it matters: local writes are stamped with the wall clock (hybrid logical clocks,
// crdt/hlc.h), so a node whose clock jumped forward wins every concurrent last-writer-wins write
// until real time catches up, and its peers refuse stamps more than 60 s ahead of theirs
// (gossip/engine.h "Clock skew"). lib/runtime samples at every tick, counts and logs each jump.
//
// Pure: the caller passes both clocks' readings (tests feed it made-up ones).
#pragma once

#include <cstdint>

namespace deltasync {

class ClockWatch {
 public:
  explicit ClockWatch(uint64_t thresholdMs = 1000) : thresholdMs_(static_cast<int64_t>(thresholdMs)) {}

  // A sample of the monotonic and the wall clock (ms). Returns the jump since the previous
  // sample (ms: positive forward, negative back), or 0 when the clocks agree within thresholdMs.
  int64_t sample(uint64_t monotonicMs, uint64_t wallMs) {
    int64_t jump = 0;
    if (sampled_) {
      const int64_t drift = (static_cast<int64_t>(wallMs) - static_cast<int64_t>(wallMs_)) -
                            (static_cast<int64_t>(monotonicMs) - static_cast<int64_t>(monotonicMs_));
      if (drift >= thresholdMs_ || drift <= -thresholdMs_) jump = drift;
    }
    sampled_ = true;
    monotonicMs_ = monotonicMs;
    wallMs_ = wallMs;
    return jump;
  }

 private:
  int64_t thresholdMs_;
  bool sampled_ = false;
  uint64_t monotonicMs_ = 0;
  uint64_t wallMs_ = 0;
};

}  // namespace deltasync
