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
};

std::string prometheusText(const Runtime& rt, const NodeCounters& node);

// Serves GET /metrics on `port` with the text `render` returns (called on the loop thread);
// anything else gets 404. Runs until the promise is dropped.
kj::Promise<void> serveMetrics(kj::Timer& timer, kj::ConnectionReceiver& port, std::function<std::string()> render);

}  // namespace deltasync
