// converge: nodes edit shared state while cut off from each other, then reconnect and converge.
// A small, honest picture of what deltasync does for an application: every node keeps taking
// writes while partitioned (here: every other node offline, alone), and once the network is back
// every node reads the same state, with nothing acknowledged lost.
//
//   examples/converge [--nodes N] [--ops N] [--seed S]
//
// N nodes run in this process, over TCP on 127.0.0.1, through the public API only
// (<deltasync/node.h>). Exits 0 when every node ends with the same presence set, status map and
// message count (the sum of every increment made), 1 when they do not within 60 s.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

namespace {

void usage(std::ostream& os) {
  os << "usage: converge [--nodes N (2..16, default 3)] [--ops N (default 300)] [--seed S (default 1)]\n"
        "Runs N nodes that edit a presence set, a status map and a message counter; for the first\n"
        "half every other node is offline (cut off, still taking writes). Then all come back and\n"
        "the program checks that every node reads the same state, with every increment counted.\n";
}

bool parseUint(const char* s, uint64_t lo, uint64_t hi, uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

// What a reader sees on node n, as one line.
std::string reads(deltasync::Node& n) {
  std::ostringstream out;
  out << "online:";
  for (const auto& u : n.set<std::string>("online").elements()) out << " " << u;
  out << " | status:";
  for (const auto& [u, s] : n.map<std::string, std::string>("status").entries()) out << " " << u << "=" << s;
  out << " | messages: " << n.counter("messages").value();
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t count = 3, ops = 300, seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      return 0;
    }
    uint64_t* target = a == "--nodes" ? &count : a == "--ops" ? &ops : a == "--seed" ? &seed : nullptr;
    const uint64_t lo = a == "--nodes" ? 2 : 0;
    const uint64_t hi = a == "--nodes" ? 16 : UINT64_MAX;
    if (target == nullptr || i + 1 >= argc || !parseUint(argv[i + 1], lo, hi, *target)) {
      std::cerr << "converge: bad argument '" << a << (i + 1 < argc ? " " + std::string(argv[i + 1]) : "") << "'\n";
      usage(std::cerr);
      return 2;
    }
    ++i;
  }
  deltasync::log::setLevel(deltasync::log::Level::warn);
  try {
    deltasync::NodeConfig config;
    config.listen = "127.0.0.1:0";
    config.secret = deltasync::Secret(std::string(40, 'c'));
    std::vector<std::unique_ptr<deltasync::Node>> nodes;
    nodes.push_back(std::make_unique<deltasync::Node>(config));
    config.seeds = {nodes[0]->address()};
    for (uint64_t i = 1; i < count; ++i) nodes.push_back(std::make_unique<deltasync::Node>(config));

    std::mt19937_64 rng(seed);
    auto pick = [&](uint64_t n) { return rng() % n; };  // our own range mapping: portable
    const std::vector<std::string> users = {"ada", "bob", "cyd", "dee", "eve", "fay", "gus", "hal"};
    const std::vector<std::string> moods = {"coding", "lunch", "in a meeting", "away", "reviewing"};
    int64_t sent = 0;
    for (size_t i = 1; i < nodes.size(); i += 2) nodes[i]->setOffline(true);
    std::cout << "converge: " << count << " nodes; every other one offline for the first " << ops / 2 << " of "
              << ops << " writes\n";
    for (uint64_t step = 0; step < ops; ++step) {
      if (step == ops / 2) {
        for (auto& n : nodes) n->setOffline(false);
        std::cout << "converge: all back online\n";
      }
      deltasync::Node& n = *nodes[pick(count)];
      const std::string& user = users[pick(users.size())];
      switch (pick(4)) {
        case 0: n.set<std::string>("online").add(user); break;
        case 1: n.set<std::string>("online").remove(user); break;
        case 2: n.map<std::string, std::string>("status").put(user, moods[pick(moods.size())]); break;
        default: {
          const int64_t k = 1 + static_cast<int64_t>(pick(3));
          n.counter("messages").increment(static_cast<uint64_t>(k));
          sent += k;
        }
      }
    }
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::seconds(60);
    for (;;) {
      bool same = true;
      const std::string first = reads(*nodes[0]);
      for (auto& n : nodes) same = same && reads(*n) == first;
      if (same && nodes[0]->counter("messages").value() == sent) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        std::cout << "converge: every node reads " << first << "\n"
                  << "converge: converged " << ms.count() << " ms after the last write; " << sent
                  << " messages sent, " << sent << " counted\n";
        return 0;
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::cerr << "converge: FAILED: the nodes did not converge within 60 s (" << sent << " messages sent)\n";
    for (size_t i = 0; i < nodes.size(); ++i) std::cerr << "  node " << i + 1 << ": " << reads(*nodes[i]) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "converge: " << e.what() << "\n";
    return 1;
  }
}
