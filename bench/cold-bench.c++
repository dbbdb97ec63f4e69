// The crdt targets as a user meets them: the first call in a fresh process, then the warm
// median of the same operation repeated in that process (bench/RESULTS.md, issue "CRDT speed on
// the first call"). One case per process; bench/run-benchmarks runs each case in several fresh
// processes and reports the medians.
//
//   cold-bench CASE [--warm N]      (N warm repetitions after the first call, default 5; with 0
//                                    the warm fields are -1)
//   cold-bench --list
// Instructions where perf is not allowed: the timed call is the function runTimed, so
//   valgrind --tool=callgrind --toggle-collect='*runTimed*' cold-bench CASE --warm 0
// counts the first call alone (bench/run-benchmarks --parts=cold does).
//
// Cases (inputs as in or-set-bench and aw-lww-map-bench, built before anything is timed):
//   orset-add/shuffled, orset-add/sequential   1e6 add() into an empty ORSet<int64_t>
//   orset-join                                  copyOfA.join(B), two half-overlapping 1e5 sets
//   map-set/int, map-set/string                 1e6 set() of distinct string keys (shuffled)
//                                               into an empty AWLWWMap, int64 or string values
//   map-merge                                   both ways (copyOfA.join(B), copyOfB.join(A)) of
//                                               two replicas' 1e5 half-overlapping sets
//   map-encode                                  one encoding of a 1e6-key AWLWWMap<string,
//                                               string> (the compact one, wireSize: as storage
//                                               and an unsplit state chunk carry it)
//   map-chunk                                   the same map split into catch-up parts of at
//                                               most EngineConfig::maxChunkBytes (partsOf), each
//                                               encoded (what serving a request does)
//   prune-scan, prune-apply                     pruning the map's writer (gossip/pruning.h): a
//                                               vote's digest of it; applying the done mark
// The copies a join starts from are made before its timer starts, as in the Google Benchmark
// binaries; destroying results is never timed.
//
// Output: one JSON object per line on stdout:
//   {"case", "ops", "first_ms", "first_faults", "first_instructions",
//    "warm_median_ms", "warm_faults", "warm_instructions"}
// faults = minor page faults (getrusage) during the timed call; instructions = user-space
// instructions retired (perf_event_open), or -1 where the kernel does not allow counting.
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/aw-lww-map.h"
#include "crdt/hlc.h"
#include "crdt/or-set.h"
#include "gossip/engine.h"
#include "gossip/compact.h"
#include "gossip/pruning.h"

namespace deltasync::bench {
namespace {

using crdt::AWLWWMap;
using crdt::HybridLogicalClock;
using crdt::ORSet;
using crdt::Timestamp;
using IntSet = ORSet<int64_t>;

constexpr size_t kAddCount = 1'000'000;
constexpr size_t kJoinCount = 100'000;

// User-space instructions of this thread, or -1 when perf events are not available.
class InstructionCounter {
 public:
  InstructionCounter() {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_HARDWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_HW_INSTRUCTIONS;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    fd_ = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
  }
  ~InstructionCounter() {
    if (fd_ >= 0) close(fd_);
  }
  void start() {
    if (fd_ < 0) return;
    ioctl(fd_, PERF_EVENT_IOC_RESET, 0);
    ioctl(fd_, PERF_EVENT_IOC_ENABLE, 0);
  }
  long long stop() {
    if (fd_ < 0) return -1;
    ioctl(fd_, PERF_EVENT_IOC_DISABLE, 0);
    long long n = 0;
    return read(fd_, &n, sizeof(n)) == sizeof(n) ? n : -1;
  }

 private:
  int fd_ = -1;
};

long minorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

struct Sample {
  double ms = 0;
  long faults = 0;
  long long instructions = 0;
};

// "v<i>" (appended, not "v" + std::to_string(i): see keyName in bench-inputs.h).
std::string valueName(size_t i) {
  std::string s = "v";
  s += std::to_string(i);
  return s;
}

// A case: prepare() runs untimed before each call (fresh copies), run() is timed, check()
// untimed after it (and frees the result).
struct Case {
  size_t ops;
  std::function<void()> prepare;
  std::function<void()> run;
  std::function<bool()> check;
};

template <typename Map>
void fillMap(Map& m, crdt::ReplicaId self, const std::vector<std::string>& keys,
             const std::function<typename Map::Value(size_t)>& value) {
  HybridLogicalClock clock;
  for (size_t i = 0; i < keys.size(); ++i) {
    m.set(self, keys[i], value(i), clock.now(syntheticMillis(i)));
  }
}

Case orsetAdd(Order order) {
  auto keys = std::make_shared<std::vector<int64_t>>(intKeys(kAddCount, order));
  auto set = std::make_shared<std::unique_ptr<IntSet>>();
  return {kAddCount, [set] { *set = std::make_unique<IntSet>(); },
          [set, keys] {
            for (int64_t k : *keys) {
              IntSet delta = (*set)->add(kReplicaA, k);
              asm volatile("" : : "r"(&delta) : "memory");
            }
          },
          [set] {
            bool ok = (*set)->size() == kAddCount;
            set->reset();
            return ok;
          }};
}

Case orsetJoin() {
  struct In {
    IntSet a, b;
    std::unique_ptr<IntSet> copy;
  };
  auto in = std::make_shared<In>();
  for (int64_t k : intKeys(kJoinCount, Order::kSequential, 0)) in->a.add(kReplicaA, k);
  for (int64_t k : intKeys(kJoinCount, Order::kSequential, kJoinCount / 2)) in->b.add(kReplicaB, k);
  return {kJoinCount, [in] { in->copy = std::make_unique<IntSet>(in->a); },
          [in] { in->copy->join(in->b); },
          [in] {
            bool ok = in->copy->size() == kJoinCount + kJoinCount / 2;
            in->copy.reset();
            return ok;
          }};
}

template <typename V>
Case mapSet(std::function<V(size_t)> value) {
  using Map = AWLWWMap<std::string, V>;
  auto keys = std::make_shared<std::vector<std::string>>(stringKeys(kAddCount, Order::kShuffled));
  auto values = std::make_shared<std::vector<V>>();
  values->reserve(kAddCount);
  for (size_t i = 0; i < kAddCount; ++i) values->push_back(value(i));
  auto map = std::make_shared<std::unique_ptr<Map>>();
  return {kAddCount, [map] { *map = std::make_unique<Map>(); },
          [map, keys, values] {
            HybridLogicalClock clock;
            for (size_t i = 0; i < keys->size(); ++i) {
              Map delta = (*map)->set(kReplicaA, (*keys)[i], (*values)[i], clock.now(syntheticMillis(i)));
              asm volatile("" : : "r"(&delta) : "memory");
            }
          },
          [map] {
            bool ok = (*map)->size() == kAddCount;
            map->reset();
            return ok;
          }};
}

Case mapMerge() {
  using Map = AWLWWMap<std::string, int64_t>;
  struct In {
    Map a, b;
    std::unique_ptr<Map> ca, cb;
  };
  auto in = std::make_shared<In>();
  fillMap<Map>(in->a, kReplicaA, stringKeys(kJoinCount, Order::kSequential, 0),
               [](size_t i) { return static_cast<int64_t>(kReplicaA.value ^ i); });
  fillMap<Map>(in->b, kReplicaB, stringKeys(kJoinCount, Order::kSequential, kJoinCount / 2),
               [](size_t i) { return static_cast<int64_t>(kReplicaB.value ^ i); });
  return {2 * kJoinCount,
          [in] {
            in->ca = std::make_unique<Map>(in->a);
            in->cb = std::make_unique<Map>(in->b);
          },
          [in] {
            in->ca->join(in->b);
            in->cb->join(in->a);
          },
          [in] {
            bool ok = in->ca->size() == kJoinCount + kJoinCount / 2 && *in->ca == *in->cb;
            in->ca.reset();
            in->cb.reset();
            return ok;
          }};
}

// The 1e6-key map of the encoding cases: string values, as the node's maps hold.
std::shared_ptr<gossip::Value> bigMap() {
  gossip::Map m;
  fillMap<gossip::Map>(m, kReplicaA, stringKeys(kAddCount, Order::kShuffled),
                       [](size_t i) { return valueName(i % 1000); });
  return std::make_shared<gossip::Value>(std::move(m));
}

Case mapEncode() {
  auto v = bigMap();
  auto bytes = std::make_shared<size_t>(0);
  return {kAddCount, [] {}, [v, bytes] { *bytes = gossip::wireSize(*v, kReplicaA); },
          [bytes] { return *bytes > kAddCount; }};
}

Case mapChunk() {
  auto v = bigMap();
  auto parts = std::make_shared<std::vector<std::vector<unsigned char>>>();
  const size_t max = gossip::EngineConfig{}.maxChunkBytes;
  return {kAddCount, [] {},
          [v, parts, max] { *parts = gossip::partsOf(*v, max, kReplicaA); },
          [v, parts, max] {
            size_t entries = 0;
            bool ok = parts->size() > 1;
            for (const auto& p : *parts) {
              ok = ok && p.size() <= max;
              entries += std::get<gossip::Map>(gossip::decodeCompact(p.data(), p.size(), kReplicaA, gossip::Limits{})).size();
            }
            parts->clear();
            return ok && entries == kAddCount;
          }};
}

// Pruning the replica that wrote the 1e6-key map (gossip/pruning.h): a pruning vote's digest of
// what the map holds of it (each look while a replica awaits pruning), and applying the done
// mark on a copy (the marker's part, its write joined, the id forgotten: each node does it once).
Case pruneScan() {
  auto v = bigMap();
  auto digest = std::make_shared<uint64_t>(0);
  return {kAddCount, [] {}, [v, digest] { *digest = gossip::traceOf(*v, kReplicaA); },
          [digest] { return *digest != 0; }};
}

Case pruneApply() {
  auto v = bigMap();
  auto copy = std::make_shared<std::unique_ptr<gossip::Value>>();
  const crdt::ReplicaId pruner{kReplicaA.value + 1};
  return {kAddCount, [v, copy] { *copy = std::make_unique<gossip::Value>(*v); },
          [copy, pruner] {
            gossip::Value& x = **copy;
            auto part = gossip::markerPart("m", x, kReplicaA, pruner);
            gossip::joinInto(x, gossip::applyPart(*part, x, kReplicaA, pruner));
            gossip::forget(x, kReplicaA);
          },
          [copy, pruner] {
            const auto& m = std::get<gossip::Map>(**copy);
            bool ok = m.size() == kAddCount && !gossip::mentions(**copy, kReplicaA) &&
                      m.context().max(pruner) == kAddCount;
            copy->reset();
            return ok;
          }};
}

const std::vector<std::pair<std::string, std::function<Case()>>>& cases() {
  static const std::vector<std::pair<std::string, std::function<Case()>>> all = {
      {"orset-add/shuffled", [] { return orsetAdd(Order::kShuffled); }},
      {"orset-add/sequential", [] { return orsetAdd(Order::kSequential); }},
      {"orset-join", orsetJoin},
      {"map-set/int", [] { return mapSet<int64_t>([](size_t i) { return static_cast<int64_t>(i); }); }},
      {"map-set/string", [] { return mapSet<std::string>([](size_t i) { return valueName(i); }); }},
      {"map-merge", mapMerge},
      {"map-encode", mapEncode},
      {"map-chunk", mapChunk},
      {"prune-scan", pruneScan},
      {"prune-apply", pruneApply},
  };
  return all;
}

// The timed call, by a name callgrind can be told to collect (see the top of this file).
[[gnu::noinline]] void runTimed(Case& c) { c.run(); }

Sample timed(Case& c, InstructionCounter& counter) {
  c.prepare();
  Sample s;
  long f0 = minorFaults();
  counter.start();
  auto t0 = std::chrono::steady_clock::now();
  runTimed(c);
  auto t1 = std::chrono::steady_clock::now();
  s.instructions = counter.stop();
  s.faults = minorFaults() - f0;
  s.ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  if (!c.check()) {
    std::fprintf(stderr, "cold-bench: wrong result\n");
    std::exit(1);
  }
  return s;
}

int usage(FILE* to, int code) {
  std::fprintf(to, "usage: cold-bench CASE [--warm N] | --list\ncases:");
  for (const auto& [name, make] : cases()) std::fprintf(to, " %s", name.c_str());
  std::fprintf(to, "\n");
  return code;
}

int main(int argc, char** argv) {
  std::string name;
  int warm = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout, 0);
    if (a == "--list") {
      for (const auto& [n, make] : cases()) std::printf("%s\n", n.c_str());
      return 0;
    }
    if (a == "--warm" && i + 1 < argc) {
      warm = std::max(0, std::atoi(argv[++i]));
    } else if (name.empty() && a[0] != '-') {
      name = a;
    } else {
      return usage(stderr, 2);
    }
  }
  auto it = std::find_if(cases().begin(), cases().end(), [&](const auto& p) { return p.first == name; });
  if (it == cases().end()) return usage(stderr, 2);
  Case c = it->second();
  InstructionCounter counter;
  Sample first = timed(c, counter);
  std::vector<Sample> rest;
  for (int i = 0; i < warm; ++i) rest.push_back(timed(c, counter));
  std::sort(rest.begin(), rest.end(), [](const Sample& x, const Sample& y) { return x.ms < y.ms; });
  const Sample med = rest.empty() ? Sample{-1, -1, -1} : rest[rest.size() / 2];
  std::printf(
      "{\"case\": \"%s\", \"ops\": %zu, \"first_ms\": %.3f, \"first_faults\": %ld, "
      "\"first_instructions\": %lld, \"warm_median_ms\": %.3f, \"warm_faults\": %ld, "
      "\"warm_instructions\": %lld}\n",
      name.c_str(), c.ops, first.ms, first.faults, first.instructions, med.ms, med.faults,
      med.instructions);
  return 0;
}

}  // namespace
}  // namespace deltasync::bench

int main(int argc, char** argv) { return deltasync::bench::main(argc, argv); }
