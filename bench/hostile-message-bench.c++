// The worst single messages an authenticated peer can send, and what one costs the receiver:
// how long it holds the loop (decode + Replica::receive, which is what the node's loop thread
// runs for it) and how much memory the receiver keeps afterwards. One message per process run,
// so every number is a first call in a fresh process, as a node meets it.
//
//   hostile-message-bench keys N       a push of one map with N fresh keys (the issue's "1M keys")
//   hostile-message-bench intervals N  a push whose set delta's context holds N intervals for a
//                                      third replica (the issue's "2^20 intervals")
//
// Prints: encoded bytes, decode ms, receive ms, RSS before / after (MiB).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "crdt/hlc.h"
#include "gossip/envelope.h"
#include "gossip/replica.h"

namespace {

using namespace deltasync;
using namespace deltasync::gossip;
using Clock = std::chrono::steady_clock;

double rssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: hostile-message-bench keys|intervals N\n");
    return 2;
  }
  const std::string what = argv[1];
  const uint64_t n = std::strtoull(argv[2], nullptr, 10);
  const ReplicaId sender{2};
  DeltaPushMsg push{sender, 0, 0, 1, {}};
  if (what == "keys") {
    Map m;
    Map delta;
    char key[32];
    for (uint64_t i = 0; i < n; ++i) {
      std::snprintf(key, sizeof key, "key-%012llu", static_cast<unsigned long long>(i));
      delta.join(m.set(sender, key, "v", crdt::Timestamp{1000 + i}));
    }
    push.objects.push_back(NamedValue{"m", Value(delta)});
  } else if (what == "intervals") {
    crdt::CausalContext ctx;
    for (uint64_t i = 0; i < n; ++i) ctx.add(crdt::Dot{ReplicaId{3}, 2 * i + 1});  // odd counters only
    push.objects.push_back(
        NamedValue{"s", Value(crdt::ORSet<std::string>::fromParts(crdt::ORSet<std::string>::Store{}, std::move(ctx)))});
  } else {
    std::fprintf(stderr, "hostile-message-bench: unknown kind '%s' (keys, intervals)\n", what.c_str());
    return 2;
  }
  const Bytes bytes = encodeMessage(Message{push});
  push = {};
  ReplicaConfig config;
  config.membership = false;
  Replica r(ReplicaId{1}, "a:1", config);
  r.setNeighbors({sender});
  std::vector<Outgoing> out;
  const double before = rssMiB();
  auto t = Clock::now();
  Message m = decodeMessage(bytes, Limits{});
  const double decodeMs = msSince(t);
  t = Clock::now();
  try {
    r.receive(sender, m, 1000, 1000, out);
  } catch (const std::exception& e) {
    std::printf("refused: %s\n", e.what());
  }
  const double receiveMs = msSince(t);
  m = {};
  std::printf("%s %llu: %zu bytes encoded; decode %.1f ms, receive %.1f ms (loop held %.1f ms); RSS %.1f -> %.1f MiB\n",
              what.c_str(), static_cast<unsigned long long>(n), bytes.size(), decodeMs, receiveMs, decodeMs + receiveMs,
              before, rssMiB());
  return 0;
}
