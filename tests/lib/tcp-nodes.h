// Helpers for tests of deltasync::Node through its public API only: nodes in the test's process on
// 127.0.0.1 (ephemeral ports), fast tuning, and a liveness wait that polls (never a timing
// assertion). Public headers only, so these tests link the shared libdeltasync.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <deltasync/node.h>

namespace deltasync::testing {

inline NodeConfig tcpConfig(std::vector<std::string> seeds = {}) {
  NodeConfig c;
  c.listen = "127.0.0.1:0";
  c.seeds = std::move(seeds);
  c.secret = Secret(std::string(40, 'n'));
  c.tuning.gossipIntervalMs = 20;
  c.tuning.probeIntervalMs = 100;
  c.tuning.probeTimeoutMs = 40;
  c.leaveGraceMs = 200;
  return c;
}

// Polls pred every 10 ms until it holds; false if it still does not after `seconds`.
template <typename P>
bool eventually(P pred, int seconds = 30) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// Members n sees alive (itself excluded: it is listed as alive too).
inline size_t alive(const Node& n) {
  size_t k = 0;
  for (const auto& m : n.members()) k += m.state == MemberState::alive;
  return k;
}

}  // namespace deltasync::testing
