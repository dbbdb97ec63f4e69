// deltasync::log: the level of the library's log lines and where they go (by default one line
// per event on stderr). Both are process-wide; the default level is info. Secrets are never
// logged.
//
// Why not spdlog (Debian's 1.10, on the same fmt 9): the library needs levels, one sink callback,
// text or JSON lines and rate limits (lib/log.h), about 130 lines. spdlog in the public headers
// would impose its version, and fmt's, on every application that embeds deltasync; a hidden copy
// would duplicate the application's own. An application that logs through spdlog routes these
// lines into it with setSink (one lambda calling its logger).
#pragma once

#include <functional>
#include <string_view>

#include <deltasync/export.h>

namespace deltasync::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

DELTASYNC_API void setLevel(Level level);
DELTASYNC_API Level level();
// "debug" | "info" | "warn" | "error" | "off"; std::invalid_argument otherwise.
DELTASYNC_API Level parseLevel(std::string_view name);

// How a line on stderr looks: text ("2026-11-22T01:02:03.456Z warn  message") or json, one object
// per line for log shippers: {"ts":"2026-11-22T01:02:03.456Z","level":"warn","msg":"message"}
// (the message JSON-escaped; bytes that are not UTF-8 become U+FFFD). Default text.
enum class Format { text = 0, json = 1 };
DELTASYNC_API void setFormat(Format format);
// "text" | "json"; std::invalid_argument otherwise.
DELTASYNC_API Format parseFormat(std::string_view name);

// Where events at or above the level go instead of stderr: an application's own logger. The sink
// gets the level and the message (no timestamp, no newline) on the thread that logged it, one
// call at a time (calls are serialised), so it must be quick and must not wait for a Node. An
// exception it throws is dropped. An empty sink (the default) writes to stderr again.
using Sink = std::function<void(Level level, std::string_view message)>;
DELTASYNC_API void setSink(Sink sink);

}  // namespace deltasync::log
