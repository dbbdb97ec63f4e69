#include "lib/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace deltasync::log {

namespace {

std::atomic<Level> currentLevel{Level::info};
std::mutex writeMutex;  // serialises lines on stderr and calls to the sink
Sink sink;              // guarded by writeMutex

const char* nameOf(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info ";
    case Level::warn: return "warn ";
    case Level::error: return "error";
    case Level::off: break;
  }
  return "";
}

}  // namespace

void setLevel(Level level) { currentLevel.store(level, std::memory_order_relaxed); }
Level level() { return currentLevel.load(std::memory_order_relaxed); }

Level parseLevel(std::string_view name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  throw std::invalid_argument("unknown log level '" + std::string(name) + "' (debug, info, warn, error, off)");
}

void setSink(Sink s) {
  std::lock_guard lock(writeMutex);
  sink = std::move(s);
}

void write(Level level, std::string_view message) {
  if (level < log::level() || level == Level::off) return;
  {
    std::lock_guard lock(writeMutex);
    if (sink) {
      try {
        sink(level, message);
      } catch (...) {  // (an application's logger failing must not fail the node)
      }
      return;
    }
  }
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line = fmt::format("{}.{:03}Z {} {}\n", stamp, ms % 1000, nameOf(level), message);
  std::lock_guard lock(writeMutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace deltasync::log
