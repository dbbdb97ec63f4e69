// write-latency-bench: how long a write that waits for its peers takes, through the public API.
//
// Five nodes in this process (each with its loop and notifier threads) on 127.0.0.1 over TCP,
// default tuning (gossipIntervalMs 100, viewSize 4: every node a neighbour of every other), no
// data directory. One writer on the first node puts a map entry and waits for its future:
//   local      WriteTo::local()          (applied; nothing to wait for: the baseline)
//   one peer   WriteTo::replicas(1)
//   majority   WriteTo::majorityOf()     (2 of the 4 peers in a cluster of 5)
// one write at a time, `samples` writes per mode, after the cluster formed. Reported per mode:
// the first write of the mode in this process, then p50 / p99 / max of the rest, and how many
// did not reach their peers within the timeout (5 s).
//
//   write-latency-bench [--samples 300] [--nodes 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

#include "measure.h"

namespace {

using Clock = std::chrono::steady_clock;
using deltasync::bench::argOr;
using deltasync::bench::ms;
using deltasync::bench::percentile;

}  // namespace

int main(int argc, char** argv) {
  const size_t samples = argOr(argc, argv, "--samples", 300);
  const size_t count = argOr(argc, argv, "--nodes", 5);
  deltasync::log::setLevel(deltasync::log::Level::warn);

  std::vector<std::unique_ptr<deltasync::Node>> nodes;
  deltasync::NodeConfig config;
  config.listen = "127.0.0.1:0";
  config.secret = deltasync::Secret(std::string(40, 'w'));
  nodes.push_back(std::make_unique<deltasync::Node>(config));
  config.seeds = {nodes[0]->address()};
  for (size_t i = 1; i < count; ++i) nodes.push_back(std::make_unique<deltasync::Node>(config));
  const auto formed = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    bool all = true;
    for (auto& n : nodes) {
      size_t alive = 0;
      for (const auto& m : n->members()) alive += m.state == deltasync::MemberState::alive;
      all = all && alive == count;
    }
    if (all) break;
    if (Clock::now() > formed) {
      std::fprintf(stderr, "the cluster did not form within 60 s\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Every node's view holds every other (viewSize 4): wait until the first node's writes are
  // acknowledged by all before measuring, so that a catch-up does not count.
  auto m = nodes[0]->map<std::string, std::string>("latency");
  if (!m.put("warm", "up", deltasync::WriteTo::replicas(static_cast<uint32_t>(count - 1), 30000)).get().reached) {
    std::fprintf(stderr, "the first node's peers did not all acknowledge a write within 30 s\n");
    return 1;
  }

  struct Mode {
    const char* name;
    deltasync::WriteTo to;
  };
  const Mode modes[] = {{"local", deltasync::WriteTo::local()},
                        {"one peer", deltasync::WriteTo::replicas(1)},
                        {"majority", deltasync::WriteTo::majorityOf()}};
  std::printf("%zu nodes, %zu writes per mode, one at a time from the first node\n", count, samples);
  std::printf("%-10s %10s %10s %10s %10s %10s\n", "mode", "first ms", "p50 ms", "p99 ms", "max ms", "missed");
  size_t key = 0;
  for (const Mode& mode : modes) {
    std::vector<double> lat;
    double first = 0;
    size_t missed = 0;
    for (size_t i = 0; i <= samples; ++i) {
      const auto t0 = Clock::now();
      deltasync::WriteResult r = m.put("k" + std::to_string(key++), "v", mode.to).get();
      const double took = ms(Clock::now() - t0);
      missed += !r.reached;
      if (i == 0) {
        first = took;
      } else {
        lat.push_back(took);
      }
    }
    std::printf("%-10s %10.2f %10.2f %10.2f %10.2f %10zu\n", mode.name, first, percentile(lat, 0.5),
                percentile(lat, 0.99), *std::max_element(lat.begin(), lat.end()), missed);
  }
  return 0;
}
