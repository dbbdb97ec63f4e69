// subscription-bench: what a subscription costs on a large object, through the public API.
//
// One node (no peers, no data directory) holding a map of `entries` keys (default 1e5). A
// subscription on one key ("watched") and, separately, one on the whole map:
//   key latency   put("watched", i), then wait for the key subscription's callback: the time
//                 from the put's return to the callback, `samples` times, one at a time;
//   map latency   the same through a whole-map subscription (it lists the map: O(size));
//   writes/s      puts to other keys from one thread for `seconds`, with the key subscription
//                 alone, against the same with no subscription (the baseline of the same run):
//                 what the notifier's work per change takes from the writers.
// Reported: first (the first callback in this process), p50, p99; writes/s and the ratio.
//
//   subscription-bench [--entries 100000] [--samples 200] [--seconds 2]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

#include "measure.h"

namespace {

using Clock = std::chrono::steady_clock;
using deltasync::bench::argOr;
using deltasync::bench::ms;
using deltasync::bench::percentile;

// Counts callbacks; wait(n) returns when the n-th has run.
struct Seen {
  std::mutex m;
  std::condition_variable cv;
  uint64_t count = 0;
  Clock::time_point last;
  void hit() {
    std::lock_guard l(m);
    ++count;
    last = Clock::now();
    cv.notify_all();
  }
  Clock::time_point wait(uint64_t n) {
    std::unique_lock l(m);
    cv.wait(l, [&] { return count >= n; });
    return last;
  }
};

double writesPerSecond(deltasync::Map<std::string, std::string>& m, double seconds) {
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t n = 0;
  const auto start = Clock::now();
  while (Clock::now() < end) {
    for (int k = 0; k < 64; ++k) m.put("other-" + std::to_string(n++ % 1000), "x");
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const size_t entries = argOr(argc, argv, "--entries", 100000);
  const size_t samples = argOr(argc, argv, "--samples", 200);
  const double seconds = static_cast<double>(argOr(argc, argv, "--seconds", 2));
  deltasync::log::setLevel(deltasync::log::Level::warn);
  deltasync::NodeConfig config;
  config.listen = "127.0.0.1:0";
  config.secret = deltasync::Secret(std::string(40, 's'));
  deltasync::Node node(config);
  auto m = node.map<std::string, std::string>("big");
  for (size_t i = 0; i < entries; ++i) m.put("key-" + std::to_string(i), "value");

  const double baseline = writesPerSecond(m, seconds);
  std::printf("%zu entries; %zu samples\n", entries, samples);
  std::printf("%-14s %10s %10s %10s\n", "callback", "first ms", "p50 ms", "p99 ms");
  for (bool whole : {false, true}) {
    Seen seen;
    deltasync::Subscription sub =
        whole ? m.subscribe([&](const deltasync::MapChange& c) {
                  for (const auto& [k, v] : c.put) {
                    if (k == "watched") seen.hit();
                  }
                })
              : m.subscribe("watched", [&](const deltasync::KeyChange&) { seen.hit(); });
    std::vector<double> lat;
    double first = 0;
    for (size_t i = 0; i <= samples; ++i) {
      m.put("watched", std::to_string(i) + (whole ? "w" : "k"));
      const auto put = Clock::now();
      const double took = ms(seen.wait(i + 1) - put);
      if (i == 0) {
        first = std::max(0.0, took);  // (the callback may run before the clock is read)
      } else {
        lat.push_back(std::max(0.0, took));
      }
    }
    std::printf("%-14s %10.3f %10.3f %10.3f\n", whole ? "whole map" : "one key", first, percentile(lat, 0.5),
                percentile(lat, 0.99));
  }
  auto keySub = m.subscribe("watched", [](const deltasync::KeyChange&) {});
  const double withKeySub = writesPerSecond(m, seconds);
  keySub.cancel();
  std::printf("writes/s: no subscription %.0f, a key subscription %.0f (%.2fx)\n", baseline, withKeySub,
              withKeySub / baseline);
  return 0;
}
