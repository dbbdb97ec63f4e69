// kv: a replicated key-value map on several nodes in this process, over real TCP on 127.0.0.1.
// Nodes write concurrently (the same keys too), one node goes offline and misses writes, comes
// back with empty state and catches up; every node ends with the same map. (A node that lost its
// state comes back under a new replica id: reusing an id without its state would mint dots the
// cluster has already seen. A node with a data directory keeps both: examples/offline.)
//
//   examples/kv [--nodes N] [--writes N]
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
using Clock = std::chrono::steady_clock;

namespace {

NodeConfig configFor(uint64_t id, const std::string& listen, std::vector<std::string> seeds) {
  NodeConfig c;
  c.id = id;
  c.listen = listen;
  c.seeds = std::move(seeds);
  c.secret = Secret("an example secret of at least thirty-two bytes");  // use a file in real life
  c.tuning.gossipIntervalMs = 50;
  c.tuning.probeIntervalMs = 250;
  c.tuning.probeTimeoutMs = 100;
  return c;
}

template <typename P>
double waitFor(P pred) {
  auto start = Clock::now();
  while (!pred()) {
    if (Clock::now() - start > std::chrono::seconds(30)) {
      std::fprintf(stderr, "kv: no convergence within 30 s\n");
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void print(const char* title, Node& node) {
  auto users = node.map<std::string, std::string>("users");
  std::printf("  %s (replica %llu):", title, static_cast<unsigned long long>(node.id()));
  for (const auto& [k, v] : users.entries()) std::printf(" %s=%s", k.c_str(), v.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 3;
  int writes = 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--nodes" || a == "--writes") && i + 1 < argc) {
      (a == "--nodes" ? nodes : writes) = std::atoi(argv[++i]);
    } else {
      std::printf("usage: kv [--nodes N (2..20)] [--writes N (1..10000)]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  if (nodes < 2 || nodes > 20 || writes < 1 || writes > 10000) {
    std::fprintf(stderr, "kv: --nodes must be 2..20 and --writes 1..10000\n");
    return 2;
  }
  log::setLevel(log::Level::warn);
  std::vector<std::unique_ptr<Node>> cluster;
  cluster.push_back(std::make_unique<Node>(configFor(1, "127.0.0.1:0", {})));
  const std::string seed = cluster[0]->address();
  for (int i = 1; i < nodes; ++i) {
    cluster.push_back(std::make_unique<Node>(configFor(uint64_t(i) + 1, "127.0.0.1:0", {seed})));
  }
  std::printf("%d nodes on 127.0.0.1, seed %s\n", nodes, seed.c_str());

  // Everyone writes at once: its own keys, and one key everybody fights over.
  std::vector<std::thread> writers;
  for (int i = 0; i < nodes; ++i) {
    writers.emplace_back([&, i] {
      auto users = cluster[i]->map<std::string, std::string>("users");
      for (int k = 0; k < writes; ++k) users.put("n" + std::to_string(i + 1) + "-key" + std::to_string(k), "v" + std::to_string(k));
      users.put("contested", "from node " + std::to_string(i + 1));
    });
  }
  for (auto& w : writers) w.join();
  auto allEqual = [&] {
    auto first = cluster[0]->map<std::string, std::string>("users").entries();
    for (auto& n : cluster) {
      if (n->map<std::string, std::string>("users").entries() != first) return false;
    }
    return true;
  };
  double ms = waitFor([&] {
    return allEqual() && cluster[0]->map<std::string, std::string>("users").size() == size_t(nodes) * writes + 1;
  });
  std::printf("%d concurrent puts on %d nodes: all equal %.0f ms after the last put; 'contested' = '%s' everywhere\n",
              nodes * (writes + 1), nodes, ms,
              cluster[0]->map<std::string, std::string>("users").get("contested").value_or("?").c_str());

  // The last node goes offline; the others keep writing; it comes back (empty state, new id).
  cluster.back().reset();
  std::printf("node %d offline\n", nodes);
  cluster[0]->map<std::string, std::string>("users").put("while-away", "written on node 1");
  cluster[0]->map<std::string, std::string>("users").remove("contested");
  cluster.back() = std::make_unique<Node>(configFor(uint64_t(nodes) + 1, "127.0.0.1:0", {seed}));
  print("back online, before catching up", *cluster.back());
  ms = waitFor([&] {
    auto m = cluster.back()->map<std::string, std::string>("users");
    return allEqual() && m.get("while-away").has_value() && !m.get("contested").has_value();
  });
  std::printf("node %d caught up in %.0f ms: %zu keys everywhere, 'contested' removed, 'while-away' present\n", nodes, ms,
              cluster[0]->map<std::string, std::string>("users").size());
  return 0;
}
