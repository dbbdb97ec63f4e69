// counter: a replicated counter on several nodes in this process, over real TCP on 127.0.0.1.
// Every node counts "hits" from several threads at once; a subscription on the last node
// watches the total arrive; every node ends with the exact sum.
//
//   examples/counter [--nodes N] [--hits N]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

using namespace deltasync;

int main(int argc, char** argv) {
  int nodes = 4;
  int hits = 250;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--nodes" || a == "--hits") && i + 1 < argc) {
      (a == "--nodes" ? nodes : hits) = std::atoi(argv[++i]);
    } else {
      std::printf("usage: counter [--nodes N (2..20)] [--hits N per thread (1..100000)]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  if (nodes < 2 || nodes > 20 || hits < 1 || hits > 100000) {
    std::fprintf(stderr, "counter: --nodes must be 2..20 and --hits 1..100000\n");
    return 2;
  }
  log::setLevel(log::Level::warn);
  auto config = [](std::vector<std::string> seeds) {
    NodeConfig c;
    c.listen = "127.0.0.1:0";
    c.seeds = std::move(seeds);
    c.secret = Secret("an example secret of at least thirty-two bytes");  // use a file in real life
    c.tuning.gossipIntervalMs = 50;
    return c;
  };
  std::vector<std::unique_ptr<Node>> cluster;
  cluster.push_back(std::make_unique<Node>(config({})));
  for (int i = 1; i < nodes; ++i) cluster.push_back(std::make_unique<Node>(config({cluster[0]->address()})));

  std::atomic<int> notifications{0};
  std::atomic<int64_t> seen{0};
  auto sub = cluster.back()->counter("hits").subscribe([&](const CounterChange& c) {
    ++notifications;
    seen = c.after;
  });

  const int threadsPerNode = 2;
  const int64_t expected = int64_t(nodes) * threadsPerNode * hits;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (auto& node : cluster) {
    for (int t = 0; t < threadsPerNode; ++t) {
      threads.emplace_back([&, n = node.get()] {
        auto counter = n->counter("hits");
        for (int k = 0; k < hits; ++k) counter.increment();
      });
    }
  }
  for (auto& t : threads) t.join();
  double writeMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  auto converged = [&] {
    for (auto& n : cluster) {
      if (n->counter("hits").value() != expected) return false;
    }
    return true;
  };
  while (!converged()) {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(30)) {
      std::fprintf(stderr, "counter: no convergence within 30 s\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double totalMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d nodes x %d threads x %d increments: %.0f ms to write, every node reads %lld after %.0f ms\n", nodes,
              threadsPerNode, hits, writeMs, static_cast<long long>(expected), totalMs);
  while (seen.load() != expected) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::printf("node %d's subscription saw the total arrive in %d coalesced notifications\n", nodes,
              notifications.load());
  return 0;
}
