// Logging for lib/: one line per event on stderr, through fmt, safe from any thread.
//
//   2026-11-22T01:02:03.456Z warn  peer 42 at 127.0.0.2:7000: connection refused
//
// The level is process-wide (default info; `deltasync node --log-level`); applications set it
// through the public include/deltasync/log.h. Secrets are never passed here: deltasync::Secret
// has no formatter.
// RateLimit keeps a noisy condition (failed authentications, a dead peer) to one line per period
// and reports how many were suppressed in between.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <deltasync/log.h>
#include <fmt/format.h>

namespace deltasync::log {

void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::error) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

// At most one event per `periodMs`; the others are counted. Not thread-safe (one per loop).
class RateLimit {
 public:
  explicit RateLimit(uint64_t periodMs) : periodMs_(periodMs) {}
  // True when the event at nowMs may be logged; then suppressed() tells how many were not since.
  bool allow(uint64_t nowMs) {
    if (primed_ && nowMs < lastMs_ + periodMs_) {
      ++pending_;
      return false;
    }
    primed_ = true;
    lastMs_ = nowMs;
    suppressed_ = pending_;
    pending_ = 0;
    return true;
  }
  uint64_t suppressed() const { return suppressed_; }

 private:
  uint64_t periodMs_;
  uint64_t lastMs_ = 0;
  uint64_t pending_ = 0;
  uint64_t suppressed_ = 0;
  bool primed_ = false;
};

}  // namespace deltasync::log
