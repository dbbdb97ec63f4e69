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
std::atomic<Format> currentFormat{Format::text};
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

// s as a JSON string, quotes included: ", \\ and control characters escaped, valid UTF-8 kept,
// any other byte replaced by U+FFFD (log messages may quote what a peer sent).
std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", c);
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      // The length of a well-formed UTF-8 sequence starting here (RFC 3629), or 0.
      const size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
      bool ok = n != 0 && i + n <= s.size();
      for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      if (ok && n >= 3) {  // no overlong forms, surrogates, or code points past U+10FFFF
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0) && !(c == 0xf0 && c1 < 0x90) &&
             !(c == 0xf4 && c1 >= 0x90);
      }
      if (ok) {
        out.append(s.substr(i, n));
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out += '"';
  return out;
}

}  // namespace

void setFormat(Format format) { currentFormat.store(format, std::memory_order_relaxed); }

Format parseFormat(std::string_view name) {
  if (name == "text") return Format::text;
  if (name == "json") return Format::json;
  throw std::invalid_argument("unknown log format '" + std::string(name) + "' (text, json)");
}

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
  std::string line;
  if (currentFormat.load(std::memory_order_relaxed) == Format::json) {
    std::string_view name = nameOf(level);
    name = name.substr(0, name.find(' '));  // ("info " is padded for the text form)
    line = fmt::format("{{\"ts\":\"{}.{:03}Z\",\"level\":\"{}\",\"msg\":{}}}\n", stamp, ms % 1000, name,
                       jsonString(message));
  } else {
    line = fmt::format("{}.{:03}Z {} {}\n", stamp, ms % 1000, nameOf(level), message);
  }
  std::lock_guard lock(writeMutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace deltasync::log
