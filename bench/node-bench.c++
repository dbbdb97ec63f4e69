// node-bench: real `deltasync node` processes on 127.0.0.1, measured from outside through their
// administration interface (the Control capability that `deltasync ctl` uses).
//
//   node-bench --deltasync PATH [--nodes 3,16] [--seconds 5] [--inflight 32] [--samples 100]
//              [--idle-seconds 20] [--gossip-interval 100]
//
// For each cluster size N:
//   throughput  every node receives set adds from this process, `inflight` pipelined per node,
//               for `seconds`; an add counts when the node acknowledged it (applied and logged).
//               Reported: acknowledged updates/s per node (median over nodes) and in total, and
//               the time until every node holds every element after the load.
//   latency     a counter is incremented on one node (round robin) while every other node is
//               watched (Control.watch pushes the object on each change); latency = from the
//               increment's acknowledgement to the last watcher's notification. p50 / p99.
//   idle        after the load, nodes sit idle: CPU time over `idle-seconds` from /proc
//               (utime + stime, % of one core per node) and resident memory (VmRSS).
// The load generator shares the machine with the nodes (2 cores here): numbers are for the
// system as a whole, conditions belong next to them in bench/RESULTS.md.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "measure.h"
#include "gossip/rpc.h"

namespace {

using namespace deltasync;
using SteadyClock = std::chrono::steady_clock;

struct Options {
  std::string binary;
  std::vector<int> sizes{3, 16};
  int seconds = 5;
  int inflight = 32;
  int samples = 100;
  int idleSeconds = 20;
  int gossipIntervalMs = 100;
};

using deltasync::bench::percentile;

uint64_t cpuTicks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return utime + stime;
}

uint64_t rssKiB(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

struct Process {
  pid_t pid = -1;
  std::string address;
};

Process spawn(const Options& o, const std::string& secretFile, const std::string& address, const std::string& seed) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    std::vector<std::string> args{o.binary, "node", "--listen", address, "--secret-file", secretFile,
                                  "--gossip-interval", std::to_string(o.gossipIntervalMs), "--log-level", "error"};
    if (!seed.empty()) {
      args.push_back("--seed");
      args.push_back(seed);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
  close(out[0]);
  if (line.rfind("listening on ", 0) != 0) throw std::runtime_error("node did not start: " + line);
  return Process{pid, line.substr(13, line.find(' ', 13) - 13)};
}

struct Client {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<gossip::RpcConnection> rpc;
  wire::Control::Client control = nullptr;
};

class LatencyWatcher final : public wire::Watcher::Server {
 public:
  LatencyWatcher(std::vector<SteadyClock::time_point>& seen, size_t index) : seen_(seen), index_(index) {}

 protected:
  kj::Promise<void> changed(ChangedContext context) override {
    if (context.getParams().getLines().size() > 0) seen_[index_] = SteadyClock::now();
    return kj::READY_NOW;
  }

 private:
  std::vector<SteadyClock::time_point>& seen_;
  size_t index_;
};

void runSize(const Options& o, int n, kj::AsyncIoContext& io) {
  char dir[] = "/tmp/node-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
  const std::string secretFile = std::string(dir) + "/secret";
  {
    std::ofstream f(secretFile);
    std::random_device rd;
    for (int i = 0; i < 48; ++i) f << char('a' + rd() % 26);
  }
  std::vector<Process> procs;
  struct Reaper {  // every node process ends with this function, however it ends
    std::vector<Process>& procs;
    ~Reaper() {
      for (auto& p : procs) kill(p.pid, SIGTERM);
      for (auto& p : procs) waitpid(p.pid, nullptr, 0);
    }
  } reaper{procs};
  std::mt19937 rng(std::random_device{}());
  const int base = 20000 + static_cast<int>(rng() % 30000);
  for (int i = 0; i < n; ++i) {
    procs.push_back(spawn(o, secretFile, "127.0.0.1:" + std::to_string(base + i), i == 0 ? "" : procs[0].address));
  }
  auto& ws = io.waitScope;
  std::vector<Client> clients(n);
  for (int i = 0; i < n; ++i) {
    clients[i].stream = io.provider->getNetwork().parseAddress(procs[i].address).wait(ws)->connect().wait(ws);
    clients[i].rpc = kj::heap<gossip::RpcConnection>(*clients[i].stream, gossip::Limits{});
    std::string secret;
    std::ifstream(secretFile) >> secret;
    auto a = gossip::authenticate(clients[i].rpc->gatekeeper(), gossip::Secret(secret), crdt::ReplicaId{0xB0000 + uint64_t(i)},
                                  "deltasync")
                 .wait(ws);
    clients[i].control = a.replicator.controlRequest().send().wait(ws).getControl();
  }
  auto timer = [&](int ms) { io.provider->getTimer().afterDelay(ms * kj::MILLISECONDS).wait(ws); };
  // Membership formed: every node lists n live members.
  auto start = SteadyClock::now();
  for (;;) {
    bool all = true;
    for (auto& c : clients) {
      auto r = c.control.membersRequest().send().wait(ws);
      size_t live = 0;
      for (auto m : r.getMembers()) live += std::string(m.getState().cStr()) != "down";
      all &= live == size_t(n);
    }
    if (all) break;
    if (SteadyClock::now() - start > std::chrono::seconds(60)) throw std::runtime_error("membership did not form");
    timer(50);
  }

  // Throughput.
  std::vector<uint64_t> acked(n, 0);
  bool running = true;
  kj::TaskSet::ErrorHandler* handler = nullptr;
  struct Errors : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override { std::fprintf(stderr, "load: %s\n", e.getDescription().cStr()); }
  } errors;
  handler = &errors;
  kj::TaskSet tasks(*handler);
  uint64_t nextElement = 0;
  std::function<kj::Promise<void>(int)> one = [&](int i) -> kj::Promise<void> {
    if (!running) return kj::READY_NOW;
    auto req = clients[i].control.addRequest();
    req.setName("load");
    auto e = std::to_string(nextElement++);
    req.setElement(e);
    return req.send().then([&, i](auto&&) {
      ++acked[i];
      return one(i);
    });
  };
  auto loadStart = SteadyClock::now();
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < o.inflight; ++k) tasks.add(one(i));
  }
  timer(o.seconds * 1000);
  running = false;
  double loadSeconds = std::chrono::duration<double>(SteadyClock::now() - loadStart).count();
  tasks.onEmpty().wait(ws);
  uint64_t total = 0;
  std::vector<double> perNode;
  for (auto a : acked) {
    total += a;
    perNode.push_back(double(a) / loadSeconds);
  }
  auto lastAck = SteadyClock::now();
  for (;;) {
    bool all = true;
    for (auto& c : clients) {
      auto req = c.control.getRequest();
      req.setName("load");
      all &= req.send().wait(ws).getLines().size() == total;
    }
    if (all) break;
    if (SteadyClock::now() - lastAck > std::chrono::seconds(120)) throw std::runtime_error("no convergence after load");
    timer(20);
  }
  double convergeMs = std::chrono::duration<double, std::milli>(SteadyClock::now() - lastAck).count();
  std::printf("N=%d throughput: %.0f acknowledged updates/s per node (median; min %.0f, max %.0f), %.0f/s in total;"
              " %llu elements on every node %.0f ms after the last ack\n",
              n, percentile(perNode, 0.5), percentile(perNode, 0), percentile(perNode, 1), double(total) / loadSeconds,
              static_cast<unsigned long long>(total), convergeMs);
  std::fflush(stdout);
  timer(2000);  // let the load's gossip settle

  // Latency.
  std::vector<double> latencies;
  for (int s = 0; s < o.samples; ++s) {
    const int src = s % n;
    const std::string name = "lat" + std::to_string(s);
    std::vector<SteadyClock::time_point> seen(n);
    std::vector<wire::Subscription::Client> subs;
    for (int i = 0; i < n; ++i) {
      if (i == src) continue;
      auto w = clients[i].control.watchRequest();
      w.setName(name);
      w.setWatcher(kj::heap<LatencyWatcher>(seen, size_t(i)));
      subs.push_back(w.send().wait(ws).getSubscription());
    }
    // A random pause, so writes land at random points of the nodes' gossip rounds (otherwise the
    // previous sample's end aligns each write with the same phase).
    timer(10 + static_cast<int>(rng() % uint32_t(o.gossipIntervalMs)));
    auto incr = clients[src].control.incrRequest();
    incr.setName(name);
    incr.setBy(1);
    incr.send().wait(ws);
    auto t0 = SteadyClock::now();
    for (;;) {
      bool all = true;
      for (int i = 0; i < n; ++i) all &= i == src || seen[i] != SteadyClock::time_point{};
      if (all) break;
      if (SteadyClock::now() - t0 > std::chrono::seconds(30)) throw std::runtime_error("latency sample lost");
      io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(ws);
    }
    auto last = t0;
    for (int i = 0; i < n; ++i) {
      if (i != src) last = std::max(last, seen[i]);
    }
    latencies.push_back(std::chrono::duration<double, std::milli>(last - t0).count());
  }
  std::printf("N=%d propagation (write acknowledged -> visible on all %d others): p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              " over %d samples (gossip interval %d ms; target p99 <= %d ms)\n",
              n, n - 1, percentile(latencies, 0.5), percentile(latencies, 0.99), percentile(latencies, 1), o.samples,
              o.gossipIntervalMs, 2 * o.gossipIntervalMs + 10);
  std::fflush(stdout);

  // Idle.
  clients.clear();  // no ctl connections during the idle measurement
  timer(3000);
  std::vector<uint64_t> before;
  for (auto& p : procs) before.push_back(cpuTicks(p.pid));
  auto idleStart = SteadyClock::now();
  timer(o.idleSeconds * 1000);
  double idleSeconds = std::chrono::duration<double>(SteadyClock::now() - idleStart).count();
  std::vector<double> cpu;
  std::vector<double> rss;
  const double hz = double(sysconf(_SC_CLK_TCK));
  for (size_t i = 0; i < procs.size(); ++i) {
    cpu.push_back(100.0 * double(cpuTicks(procs[i].pid) - before[i]) / hz / idleSeconds);
    rss.push_back(double(rssKiB(procs[i].pid)) / 1024.0);
  }
  std::printf("N=%d idle over %.0f s: CPU %.2f%% of a core per node (median; max %.2f%%; target <= 0.5%%), RSS %.1f MiB"
              " per node (median; max %.1f MiB)\n",
              n, idleSeconds, percentile(cpu, 0.5), percentile(cpu, 1), percentile(rss, 0.5), percentile(rss, 1));
  std::fflush(stdout);

  unlink(secretFile.c_str());
  rmdir(dir);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--deltasync") {
        o.binary = value();
      } else if (a == "--nodes") {
        o.sizes.clear();
        std::stringstream ss(value());
        std::string part;
        while (std::getline(ss, part, ',')) o.sizes.push_back(std::stoi(part));
      } else if (a == "--seconds") {
        o.seconds = std::stoi(value());
      } else if (a == "--inflight") {
        o.inflight = std::stoi(value());
      } else if (a == "--samples") {
        o.samples = std::stoi(value());
      } else if (a == "--idle-seconds") {
        o.idleSeconds = std::stoi(value());
      } else if (a == "--gossip-interval") {
        o.gossipIntervalMs = std::stoi(value());
      } else {
        std::printf("usage: node-bench --deltasync PATH [--nodes 3,16] [--seconds 5] [--inflight 32] [--samples 100]"
                    " [--idle-seconds 20] [--gossip-interval 100]\n");
        return a == "--help" ? 0 : 2;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "node-bench: %s: %s\n", a.c_str(), e.what());
      return 2;
    }
  }
  if (o.binary.empty()) {
    std::fprintf(stderr, "node-bench: --deltasync PATH is required\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  auto io = kj::setupAsyncIo();
  try {
    for (int n : o.sizes) runSize(o, n, io);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "node-bench: %s\n", e.what());
    return 1;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "node-bench: %s\n", e.getDescription().cStr());
    return 1;
  }
  return 0;
}
