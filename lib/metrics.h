// Metrics of a node as Prometheus text (exposition format 0.0.4), and a tiny HTTP endpoint that
// serves them (kj-http; GET /metrics).
//
// Names (all prefixed deltasync_): counters *_total, gauges, and one histogram,
// deltasync_deliver_seconds (round trip of one message to a peer, until it was accepted).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include <kj/async-io.h>

namespace deltasync {

class Runtime;

// Fixed buckets (seconds): 1 ms .. 10 s. Loop thread only.
class Histogram {
 public:
  static constexpr std::array<double, 10> kBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 10};
  void observe(double seconds);
  // Appends the histogram's lines (with # TYPE) under `name`.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::array<uint64_t, kBounds.size()> counts_{};  // per bucket (not cumulative)
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Node-level counts kept outside the runtime (lib/node.c++).
struct NodeCounters {
  uint64_t notifications = 0;  // subscription callbacks delivered
  uint64_t subscriptions = 0;  // live subscriptions
  uint64_t acceptFailures = 0;   // failed accepts on either port (lib/listen.h)
  uint64_t httpRefused = 0;      // metrics connections over MetricsServer::kMaxConnections
  uint64_t httpBadRequests = 0;  // malformed HTTP requests to the metrics port
  // Durable storage (lib/storage.h); zero without a data directory.
  uint64_t storageCommits = 0;
  uint64_t storageChanges = 0;
  uint64_t storageBytes = 0;
  uint64_t storageCompactions = 0;
  uint64_t storageFailures = 0;
};

std::string prometheusText(const Runtime& rt, const NodeCounters& node);

// The process metrics Prometheus' client libraries export (process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes, process_start_time_seconds,
// process_open_fds, process_max_fds), read from Linux's /proc; "" where it cannot be read.
std::string processText();

// Serves, on the connections handed to serve() (from lib/listen.h's accept loop):
//   GET /metrics (and /)  the text `render` returns (called on the loop thread);
//   GET /healthz          200 "ok": the node's loop answers (it serves this very request);
//   GET /readyz           200 "ready", or 503 with the reason `ready` returns (non-empty: not
//                         ready, e.g. not joined yet, or commits failing);
// anything else gets 404.
// Hardened for an endpoint any local process may reach:
//   - at most kMaxConnections at once; more are closed at once (counted in refused());
//   - a connection must send its request head within kHeadTimeoutMs, and is closed when idle as
//     long after a response;
//   - a malformed request gets its 4xx status with the bare reason as body, a failure while
//     answering a 500 "Internal Server Error": never kj's exception text or stack addresses;
//     each is logged in the project's format, rate-limited.
// Loop thread only. Destroying it closes every connection it serves.
class MetricsServer {
 public:
  static constexpr size_t kMaxConnections = 32;
  static constexpr uint64_t kHeadTimeoutMs = 5000;

  MetricsServer(kj::Timer& timer, std::function<std::string()> render, std::function<std::string()> ready);
  ~MetricsServer();
  void serve(kj::Own<kj::AsyncIoStream> connection);
  uint64_t refused() const { return refused_; }
  uint64_t badRequests() const;

 private:
  struct Impl;
  kj::Own<Impl> impl_;
  uint64_t refused_ = 0;
};

}  // namespace deltasync
