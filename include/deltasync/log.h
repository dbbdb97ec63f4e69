// deltasync::log: the level of the library's log lines (one line per event on stderr). The level
// is process-wide; the default is info. Secrets are never logged.
#pragma once

#include <string_view>

#include <deltasync/export.h>

namespace deltasync::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

DELTASYNC_API void setLevel(Level level);
DELTASYNC_API Level level();
// "debug" | "info" | "warn" | "error" | "off"; std::invalid_argument otherwise.
DELTASYNC_API Level parseLevel(std::string_view name);

}  // namespace deltasync::log
