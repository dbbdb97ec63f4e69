// storage-bench: durable nodes (NodeConfig::dataDir) through the public API, on this machine's
// disk (the data directory is made under $TMPDIR, default /tmp; say which disk in RESULTS.md).
//
//   writes    acknowledged map puts per second with 1, 16 and 256 writer threads in sync
//             durability (each put returns once committed), and the commits (fsyncs) per second
//             that took; the same with 256 writers in async durability; a memory-only node as the
//             baseline of the same run (256, 1 and 4 writers); sync with 4 writers using the
//             non-blocking form (WriteTo::local() futures, 256 in flight per writer).
//   restart   a node holding N map entries (default 1e6) is closed and reopened: the time until
//             the Node constructor returns and a read is served; the first open in a fresh
//             process is what a user meets (each run is a fresh directory, the page cache warm).
//   size      database bytes per entry against the compact wire size of the same state.
//
//   storage-bench [--runs 3] [--seconds 2] [--entries 1000000]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

#include "gossip/compact.h"
#include "gossip/object.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "deltasync-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

deltasync::NodeConfig config(const std::string& dir, deltasync::Durability d) {
  deltasync::NodeConfig c;
  c.listen = "127.0.0.1:0";
  c.secret = deltasync::Secret(std::string(40, 's'));
  c.dataDir = dir;
  c.durability = d;
  c.leaveGraceMs = 0;
  return c;
}

uint64_t metric(const std::string& text, const std::string& name) {
  const std::string key = "deltasync_" + name + " ";
  auto at = text.find("\n" + key);
  if (at == std::string::npos) return 0;
  return std::stoull(text.substr(at + 1 + key.size()));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Puts/s with `threads` writers for `secs`, and commits/s.
// nonBlocking: put(key, value, WriteTo::local()), up to 256 futures in flight per writer (a write
// counts when its future completed).
std::pair<double, double> writes(bool durable, deltasync::Durability d, int threads, double secs, bool nonBlocking) {
  TempDir dir;
  deltasync::Node node(config(durable ? dir.path.string() : "", d));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0};
  const uint64_t commits0 = metric(node.metrics(), "storage_commits_total");
  std::vector<std::thread> ws;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ws.emplace_back([&, t] {
      auto m = node.map<std::string, std::string>("m");
      uint64_t k = 0;
      std::deque<std::future<deltasync::WriteResult>> inflight;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::string key = std::to_string(t) + "/" + std::to_string(k++ % 1000);
        if (!nonBlocking) {
          m.put(key, "value-of-some-bytes");
          done.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        inflight.push_back(m.put(key, "value-of-some-bytes", deltasync::WriteTo::local()));
        while (inflight.size() >= 256 ||
               (!inflight.empty() && inflight.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready)) {
          inflight.front().get();
          inflight.pop_front();
          done.fetch_add(1, std::memory_order_relaxed);
        }
      }
      for (auto& f : inflight) f.get();
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  stop = true;
  for (auto& w : ws) w.join();
  const double elapsed = seconds(Clock::now() - start);
  const uint64_t commits = metric(node.metrics(), "storage_commits_total") - commits0;
  return {static_cast<double>(done.load()) / elapsed, static_cast<double>(commits) / elapsed};
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  double secs = 2;
  size_t entries = 1000000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--runs")) runs = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--seconds")) secs = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--entries")) entries = std::strtoull(argv[i + 1], nullptr, 10);
  }
  deltasync::log::setLevel(deltasync::log::Level::warn);
  std::printf("storage-bench: %d runs, %.1f s each, data under %s\n", runs, secs,
              std::filesystem::temp_directory_path().c_str());

  struct Case {
    const char* name;
    bool durable;
    deltasync::Durability d;
    int threads;
    bool nonBlocking = false;
  };
  const Case cases[] = {
      {"memory only, 256 writers (baseline)", false, deltasync::Durability::sync, 256},
      {"memory only, 1 writer", false, deltasync::Durability::sync, 1},
      {"memory only, 4 writers", false, deltasync::Durability::sync, 4},
      {"sync, 1 writer", true, deltasync::Durability::sync, 1},
      {"sync, 16 writers", true, deltasync::Durability::sync, 16},
      {"sync, 256 writers", true, deltasync::Durability::sync, 256},
      {"async, 256 writers", true, deltasync::Durability::async, 256},
      {"sync, 4 writers, non-blocking (futures)", true, deltasync::Durability::sync, 4, true},
  };
  for (const Case& c : cases) {
    std::vector<double> rate, commits;
    for (int r = 0; r < runs; ++r) {
      auto [w, f] = writes(c.durable, c.d, c.threads, secs, c.nonBlocking);
      rate.push_back(w);
      commits.push_back(f);
    }
    std::printf("writes  %-38s first %9.0f/s  median %9.0f/s  commits median %7.0f/s\n", c.name, rate[0],
                median(rate), median(commits));
  }

  // Restart with `entries` map entries, and bytes per entry.
  std::vector<double> opens;
  double perEntry = 0, wirePerEntry = 0;
  for (int r = 0; r < runs; ++r) {
    TempDir dir;
    {
      deltasync::Node node(config(dir.path.string(), deltasync::Durability::async));
      // Writers in parallel so the load is quick; async: one commit per flush.
      std::vector<std::thread> ws;
      const int threads = 8;
      for (int t = 0; t < threads; ++t) {
        ws.emplace_back([&, t] {
          auto m = node.map<std::string, std::string>("m");
          for (size_t k = t; k < entries; k += threads) m.put("user:" + std::to_string(k), "online");
        });
      }
      for (auto& w : ws) w.join();
    }
    const auto start = Clock::now();
    deltasync::Node node(config(dir.path.string(), deltasync::Durability::sync));
    auto m = node.map<std::string, std::string>("m");
    const bool served = m.get("user:0").has_value();
    opens.push_back(seconds(Clock::now() - start));
    if (!served) {
      std::printf("restart: the restored node lacks user:0\n");
      return 1;
    }
    if (r == 0) {
      uint64_t bytes = 0;
      for (const auto& f : std::filesystem::directory_iterator(dir.path)) {
        if (f.path().filename().string().rfind("deltasync.db", 0) == 0) bytes += f.file_size();
      }
      // The compact wire size of the same state: what a state transfer's compact form takes.
      deltasync::gossip::Map state;
      deltasync::crdt::ReplicaId self{node.id()};
      for (const auto& [k, v] : m.entries()) state.set(self, k, v, deltasync::crdt::Timestamp{1 << 16});
      const size_t wire = deltasync::gossip::wireSize(deltasync::gossip::Value(state), self);
      perEntry = static_cast<double>(bytes) / static_cast<double>(entries);
      wirePerEntry = static_cast<double>(wire) / static_cast<double>(entries);
    }
  }
  std::printf("restart %zu entries: first %.3f s  median %.3f s (open + first read)\n", entries, opens[0],
              median(opens));
  std::printf("size    %.1f database bytes/entry vs %.1f compact wire bytes/entry: %.2fx\n", perEntry, wirePerEntry,
              perEntry / wirePerEntry);
  return 0;
}
