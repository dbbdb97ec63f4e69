// deltasync: run a node, or administer one.
//
//   deltasync node --listen HOST:PORT [--seed HOST:PORT]... --secret-file PATH [options]
//   deltasync ctl HOST:PORT [--secret-file PATH] get|put|add|remove|incr|set|enable|disable|delete|watch|objects|
//                                                members|seeds|stats|presence ...
//
// The cluster secret (>= 32 bytes) comes from --secret-file or the DELTASYNC_SECRET environment
// variable; there is no default, and it is never printed. Exit codes: 0 success, 1 failure
// (a message on stderr), 2 usage error.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <deltasync/node.h>

#include "gossip/auth.h"
#include "gossip/rpc.h"
#include "lib/log.h"
#include "lib/objects.h"
#include "lib/tls.h"

namespace {

using deltasync::crdt::ReplicaId;

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kMainHelp =
    "usage: deltasync <command> [options]\n"
    "\n"
    "commands:\n"
    "  node   run a replica: deltasync node --listen HOST:PORT [--seed HOST:PORT]... --secret-file PATH\n"
    "  ctl    administer a running replica: deltasync ctl HOST:PORT <verb> ...\n"
    "\n"
    "Run 'deltasync <command> --help' for the options of a command; 'deltasync --version' prints\n"
    "the version.\n";

const char* kNodeHelp =
    "usage: deltasync node --listen HOST:PORT [options]\n"
    "\n"
    "Runs one replica until SIGINT or SIGTERM, then announces its leave and exits.\n"
    "Prints 'listening on ADDRESS as replica ID' on stdout once it accepts peers.\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT      address to accept peers on (port 0: any free port)\n"
    "  --advertise HOST:PORT   address peers should dial (default: the bound listen address;\n"
    "                          required when listening on a wildcard address)\n"
    "  --seed HOST:PORT        a member to join through (repeatable)\n"
    "  --dns-seed NAME:PORT    a DNS name whose addresses are the members' (a Kubernetes headless\n"
    "                          service); resolved at start and every 10 s, each address a seed\n"
    "                          (repeatable)\n"
    "  --secret-file PATH      the cluster secret, >= 32 bytes (or DELTASYNC_SECRET)\n"
    "  --client-secret-file PATH  the secret 'deltasync ctl' proves instead (>= 32 bytes): it\n"
    "                          grants the control interface only, never replication. Without it,\n"
    "                          ctl proves the cluster secret (and still gets control only)\n"
    "  --tls-cert PATH         mutual TLS instead of the secret: this node's certificate (PEM; CN\n"
    "                          replica-<id>, DNS subjectAltName = the cluster name)\n"
    "  --tls-key PATH          its private key (PEM)\n"
    "  --tls-ca PATH           the cluster CA's certificate (PEM); the three go together\n"
    "  --cluster NAME          cluster name; peers of other clusters are refused (default deltasync)\n"
    "  --id N                  this replica's id, a nonzero 64-bit integer (default: random; with\n"
    "                          TLS, the certificate's). Reuse an id only with the replica's state:\n"
    "                          a node that lost it must start under a new id\n"
    "  --data-dir DIR          keep the replica on disk (SQLite, created if missing): a restart\n"
    "                          goes on as the same replica with its state and members. Without\n"
    "                          it, everything is in memory and every start is a new replica\n"
    "  --durability MODE       with --data-dir: sync (default; a write is acknowledged once on\n"
    "                          disk) or async (committed every --flush-ms; a crash loses at most\n"
    "                          that much, and the node then starts under a new id)\n"
    "  --flush-ms MS           async commit period (default 100)\n"
    "  --gossip-interval MS    one gossip round (default 100)\n"
    "  --probe-interval MS     one failure-detector probe period (default 500)\n"
    "  --prune-after HOURS     a member gone (down and removed, or left) this long is pruned from\n"
    "                          every object's metadata, cluster-wide, and refused if it comes back\n"
    "                          (it must start under a new id); 0 never prunes (default 168: 7 days)\n"
    "  --metrics HOST:PORT     serve Prometheus metrics over HTTP at /metrics\n"
    "  --log-level LEVEL       debug, info, warn, error or off (default info)\n"
    "  --log-format FORMAT     text (default) or json: one JSON object per line on stderr,\n"
    "                          {\"ts\":..., \"level\":..., \"msg\":...}\n"
    "  --help                  this text\n";

const char* kCtlHelp =
    "usage: deltasync ctl HOST:PORT [--secret-file PATH | --tls-cert PATH --tls-key PATH --tls-ca PATH]\n"
    "                     [--cluster NAME] [--timeout SECONDS] [--wait N|majority] [--sync N|majority]\n"
    "                     [--type TYPE] [--key-type TYPE] [--key KEY] <verb> [args]\n"
    "\n"
    "verbs:\n"
    "  get NAME                 print an object (a counter's value, a set's elements, a map's\n"
    "                           key=value lines, a register's value(s), a flag's true/false);\n"
    "                           nothing if it does not exist. With --sync N|majority, first\n"
    "                           until the node holds all that N peers (a majority) held: exit 1\n"
    "                           without printing if they did not answer in time\n"
    "  put NAME KEY VALUE       set a map entry\n"
    "  add NAME ELEMENT...      add set elements (one write each, in order; all acknowledged\n"
    "                           when it exits 0)\n"
    "  remove NAME ITEM         remove a set element, a map key or a map of counters' key (the\n"
    "                           counter resets; counts made concurrently elsewhere survive)\n"
    "  incr NAME [BY]           add BY (default 1; negative decrements) to a counter; with\n"
    "                           --key KEY, to the counter at KEY of a map of counters\n"
    "  set NAME VALUE           set a last-writer-wins register\n"
    "  enable NAME, disable NAME\n"
    "                           switch an enable-wins flag (an enable concurrent with a disable wins)\n"
    "  delete NAME              delete an object for good, cluster-wide, whatever its kind: the\n"
    "                           name is retired (later writes to it fail; it is listed no more)\n"
    "  (a write with --wait N|majority returns once N peers, or a majority of the members,\n"
    "   hold it: then a read on any of them shows it; exit 1 if they did not in time)\n"
    "  (--type TYPE: the type of set elements, map values and register values, as a typed\n"
    "   handle writes and reads them; --key-type TYPE: of map keys; TYPE is string (the\n"
    "   default), bytes (hex), int, uint, double or bool; with get, put, add, remove, set, watch,\n"
    "   incr)\n"
    "  watch NAME               print the object now and after every change, until interrupted\n"
    "  objects                  print the objects the node holds: name, kind\n"
    "  members                  print the member table: id, address, state, incarnation\n"
    "  seeds [add|remove HOST:PORT]\n"
    "                           change the addresses the node dials to join (add dials at once;\n"
    "                           members met through a removed seed stay), then print them\n"
    "  stats                    print the node's metrics (Prometheus text)\n"
    "  presence list TOPIC      print a topic's presences: key, ref, previous ref, meta\n"
    "  presence topics          print the topics with presences and how many each has\n"
    "  presence replicas        print the replicas the tracker knows: id, status (self, up,\n"
    "                           suspect, down, gone), since (ms, node clock), presences held\n"
    "  presence hold TOPIC KEY META\n"
    "                           track a presence, print its ref, and hold it until interrupted\n"
    "                           (or the connection breaks): then it leaves\n"
    "\n"
    "The whole command (connecting, authenticating, the call) must finish within --timeout seconds\n"
    "(default 10; for watch, until it is subscribed); SIGINT or SIGTERM stops it at any point.\n"
    "Either way it exits 1 with one line saying what it was waiting for.\n"
    "\n"
    "The secret comes from --secret-file or DELTASYNC_SECRET: the node's client secret if it has one\n"
    "(node --client-secret-file), else its cluster secret; ctl gets the control interface only.\n"
    "A node under mutual TLS takes a certificate of the cluster CA instead: a client certificate\n"
    "(CN client-<name>) gets the control interface only; a node's own (replica-<id>) works too,\n"
    "but give operators client certificates. 'deltasync ctl <verb> --help' shows this text too.\n";

bool wantsHelp(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

// Options of the form --name VALUE (or --name=VALUE); positional arguments in order.
//
// Why not CLI11 (Debian's 2.1): the grammar is two verbs with --name VALUE options and
// positional arguments, parsed in the 40 lines below; every usage error is one line and exit 2,
// which the cluster tests pin. CLI11 would bring its own help layout and error texts and a build
// dependency for the command line alone. Worth it once options nest (sub-subcommands, config
// files), not before.
struct Parsed {
  std::multimap<std::string, std::string> options;
  std::vector<std::string> positional;
  std::optional<std::string> one(const std::string& name) const {
    auto range = options.equal_range(name);
    if (range.first == range.second) return std::nullopt;
    if (std::next(range.first) != range.second) throw Usage("--" + name + " given more than once");
    return range.first->second;
  }
};

Parsed parse(const std::vector<std::string>& args, const std::vector<std::string>& known) {
  Parsed p;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      std::string value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) throw Usage("--" + name + " needs a value");
        value = args[++i];
      }
      if (std::find(known.begin(), known.end(), name) == known.end()) throw Usage("unknown option --" + name);
      p.options.emplace(name, value);
    } else {
      p.positional.push_back(a);
    }
  }
  return p;
}

uint64_t parseNumber(const std::string& what, const std::string& text) {
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(text, &used, 10);
    if (used != text.size() || text.empty() || text[0] == '-') throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    throw Usage(what + " must be a non-negative integer, not '" + text + "'");
  }
}

std::optional<deltasync::TlsFiles> tlsFrom(const Parsed& p) {
  auto cert = p.one("tls-cert");
  auto key = p.one("tls-key");
  auto ca = p.one("tls-ca");
  if (!cert && !key && !ca) return std::nullopt;
  if (!cert || !key || !ca) throw Usage("--tls-cert, --tls-key and --tls-ca go together");
  return deltasync::TlsFiles{*cert, *key, *ca};
}

deltasync::Secret secretFrom(const Parsed& p) {
  if (auto file = p.one("secret-file")) return deltasync::Secret::fromFile(*file);
  if (const char* env = std::getenv("DELTASYNC_SECRET"); env != nullptr && *env != '\0') {
    return deltasync::Secret(env);
  }
  throw Usage("no cluster secret: pass --secret-file PATH or set DELTASYNC_SECRET");
}

// ---- node ---------------------------------------------------------------------------------

int runNode(const std::vector<std::string>& args) {
  if (wantsHelp(args)) {
    std::fputs(kNodeHelp, stdout);
    return 0;
  }
  Parsed p = parse(args, {"listen", "advertise", "seed", "dns-seed", "secret-file", "cluster", "id", "gossip-interval",
                          "probe-interval", "metrics", "log-level", "log-format", "tls-cert", "tls-key", "tls-ca",
                          "client-secret-file", "data-dir", "durability", "flush-ms", "prune-after"});
  if (!p.positional.empty()) throw Usage("unexpected argument '" + p.positional[0] + "'");
  try {
    if (auto level = p.one("log-level")) deltasync::log::setLevel(deltasync::log::parseLevel(*level));
    if (auto format = p.one("log-format")) deltasync::log::setFormat(deltasync::log::parseFormat(*format));
  } catch (const std::invalid_argument& e) {
    throw Usage(e.what());
  }
  deltasync::NodeConfig config;
  auto listen = p.one("listen");
  if (!listen) throw Usage("--listen HOST:PORT is required");
  config.listen = *listen;
  if (auto a = p.one("advertise")) config.advertise = *a;
  if (config.advertise.empty() && (config.listen.rfind("0.0.0.0:", 0) == 0 || config.listen.rfind("*:", 0) == 0 ||
                                   config.listen.rfind("[::]:", 0) == 0)) {
    throw Usage("--advertise HOST:PORT is required when listening on a wildcard address");
  }
  auto seeds = p.options.equal_range("seed");
  for (auto it = seeds.first; it != seeds.second; ++it) config.seeds.push_back(it->second);
  auto names = p.options.equal_range("dns-seed");
  for (auto it = names.first; it != names.second; ++it) config.dnsSeeds.push_back(it->second);
  if (auto c = p.one("cluster")) config.cluster = *c;
  if (auto id = p.one("id")) {
    config.id = parseNumber("--id", *id);
    if (config.id == 0) throw Usage("--id must be nonzero");
  }
  if (auto g = p.one("gossip-interval")) {
    config.tuning.gossipIntervalMs = parseNumber("--gossip-interval", *g);
    if (config.tuning.gossipIntervalMs == 0) throw Usage("--gossip-interval must be > 0");
  }
  if (auto g = p.one("probe-interval")) {
    config.tuning.probeIntervalMs = parseNumber("--probe-interval", *g);
    if (config.tuning.probeIntervalMs < 10) throw Usage("--probe-interval must be >= 10");
    config.tuning.probeTimeoutMs = std::max<uint64_t>(5, config.tuning.probeIntervalMs * 2 / 5);
  }
  if (auto h = p.one("prune-after")) {
    const uint64_t hours = parseNumber("--prune-after", *h);
    if (hours > 1000000) throw Usage("--prune-after must be at most 1000000 hours");
    config.tuning.pruneAfterMs = hours * 3600 * 1000;
  }
  if (auto m = p.one("metrics")) config.metricsListen = *m;
  if (auto d = p.one("data-dir")) {
    if (d->empty()) throw Usage("--data-dir needs a directory");
    config.dataDir = *d;
  }
  if (auto d = p.one("durability")) {
    if (config.dataDir.empty()) throw Usage("--durability needs --data-dir");
    if (*d == "sync") {
      config.durability = deltasync::Durability::sync;
    } else if (*d == "async") {
      config.durability = deltasync::Durability::async;
    } else {
      throw Usage("--durability must be sync or async, not '" + *d + "'");
    }
  }
  if (auto f = p.one("flush-ms")) {
    if (config.durability != deltasync::Durability::async) throw Usage("--flush-ms needs --durability async");
    config.flushMs = parseNumber("--flush-ms", *f);
    if (config.flushMs == 0) throw Usage("--flush-ms must be > 0");
  }
  config.tls = tlsFrom(p);
  if (!config.tls || p.one("secret-file") || std::getenv("DELTASYNC_SECRET") != nullptr) config.secret = secretFrom(p);
  if (auto f = p.one("client-secret-file")) {
    if (config.tls && !config.secret) throw Usage("--client-secret-file needs the shared-secret mode (--secret-file)");
    config.clientSecret = deltasync::Secret::fromFile(*f);
  }

  // Block the stop signals in every thread (the node's threads inherit this mask); wait here.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  deltasync::Node node(std::move(config));
  std::printf("listening on %s as replica %llu\n", node.address().c_str(),
              static_cast<unsigned long long>(node.id()));
  if (!node.metricsAddress().empty()) std::printf("metrics on http://%s/metrics\n", node.metricsAddress().c_str());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stopSignals, &signal);
  deltasync::log::info("signal {}: leaving", signal);
  node.close();
  return 0;
}

// ---- ctl ----------------------------------------------------------------------------------

class PrintingWatcher final : public deltasync::wire::Watcher::Server {
 protected:
  kj::Promise<void> changed(ChangedContext context) override {
    auto p = context.getParams();
    std::string out;
    for (auto line : p.getLines()) {
      out.append(line.cStr(), line.size());
      out += '\n';
    }
    out += "--\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return kj::READY_NOW;
  }
};

void printLines(capnp::List<capnp::Text>::Reader lines) {
  for (auto line : lines) {
    std::fwrite(line.cStr(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
  }
}

// ctl's waits: each settles with its promise, or fails once the command's deadline has passed or
// on SIGINT/SIGTERM (captured by the caller), saying what it was waiting for.
class Waits {
 public:
  Waits(kj::AsyncIoContext& io, uint64_t timeoutMs)
      : io_(io), timeoutMs_(timeoutMs), deadline_(io.provider->getTimer().now() + timeoutMs * kj::MILLISECONDS) {}

  template <typename T>
  T operator()(kj::Promise<T> promise, const std::string& what) {
    auto fail = [](std::string why) { return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(why)); };
    auto late = io_.provider->getTimer().atTime(deadline_).then([=, this]() -> kj::Promise<T> {
      return fail("timed out after " + std::to_string(timeoutMs_ / 1000) + " s waiting " + what + " (--timeout)");
    });
    return promise.exclusiveJoin(kj::mv(late)).exclusiveJoin(interrupted<T>(what)).wait(io_.waitScope);
  }

  // Resolves on SIGINT or SIGTERM (for watch, which ends there).
  kj::Promise<void> stopSignal() {
    return io_.unixEventPort.onSignal(SIGINT).ignoreResult().exclusiveJoin(io_.unixEventPort.onSignal(SIGTERM).ignoreResult());
  }

 private:
  template <typename T>
  kj::Promise<T> interrupted(const std::string& what) {
    return stopSignal().then([what]() -> kj::Promise<T> {
      return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString("interrupted while waiting " + what));
    });
  }

  kj::AsyncIoContext& io_;
  uint64_t timeoutMs_;
  kj::TimePoint deadline_;
};

int runCtl(const std::vector<std::string>& args) {
  if (wantsHelp(args) || args.empty()) {
    std::fputs(kCtlHelp, stdout);
    return args.empty() ? 2 : 0;
  }
  Parsed p = parse(args, {"secret-file", "cluster", "tls-cert", "tls-key", "tls-ca", "timeout", "wait", "sync", "type", "key-type",
                          "key"});
  if (p.positional.size() < 2) throw Usage("ctl needs an address and a verb (deltasync ctl --help)");
  const std::string address = p.positional[0];
  const std::string verb = p.positional[1];
  const std::vector<std::string> rest(p.positional.begin() + 2, p.positional.end());
  auto need = [&](size_t n, const char* shape) {
    if (rest.size() != n) throw Usage("usage: deltasync ctl ADDRESS " + verb + " " + shape);
  };
  static const std::vector<std::string> verbs{"get",    "put",     "add",     "remove",  "incr",  "set",
                                              "enable", "disable", "delete",  "watch",   "objects", "members",
                                              "seeds",  "stats",   "presence"};
  if (std::find(verbs.begin(), verbs.end(), verb) == verbs.end()) {
    throw Usage("unknown verb '" + verb +
                "' (get, put, add, remove, incr, set, enable, disable, delete, watch, objects, members, seeds, stats, "
                "presence)");
  }
  if (verb == "seeds" && !rest.empty() && (rest.size() != 2 || (rest[0] != "add" && rest[0] != "remove"))) {
    throw Usage("usage: deltasync ctl ADDRESS seeds [add|remove HOST:PORT]");
  }
  if (verb == "presence") {
    const size_t args = rest.empty() ? 0 : rest[0] == "list" ? 2 : rest[0] == "hold" ? 4 : 1;
    if (rest.empty() || rest.size() != args ||
        (args == 1 && rest[0] != "topics" && rest[0] != "replicas")) {
      throw Usage("usage: deltasync ctl ADDRESS presence list TOPIC | topics | replicas | hold TOPIC KEY META");
    }
  }
  if (verb == "get" || verb == "watch" || verb == "delete" || verb == "enable" || verb == "disable") need(1, "NAME");
  if (verb == "set") need(2, "NAME VALUE");
  if (verb == "put") need(3, "NAME KEY VALUE");
  if (verb == "add" && rest.size() < 2) need(2, "NAME ELEMENT...");
  if (verb == "remove") need(2, "NAME ITEM");
  if (verb == "incr" && rest.size() != 1 && rest.size() != 2) need(1, "NAME [BY]");
  if (verb == "members" || verb == "stats" || verb == "objects") need(0, "");
  int64_t by = 1;
  if (verb == "incr" && rest.size() == 2) {
    try {
      size_t used = 0;
      by = std::stoll(rest[1], &used, 10);
      if (used != rest[1].size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw Usage("incr: BY must be an integer, not '" + rest[1] + "'");
    }
  }
  const auto tls = tlsFrom(p);
  std::optional<deltasync::Secret> secret;
  if (!tls) secret = secretFrom(p);
  const std::string cluster = p.one("cluster").value_or("deltasync");

  const uint64_t timeoutS = parseNumber("--timeout", p.one("timeout").value_or("10"));
  if (timeoutS == 0 || timeoutS > 86400) throw Usage("--timeout must be 1..86400 seconds");
  // N|majority (--wait, --sync): N peers, or 0 for a majority.
  auto peersOf = [](const char* flag, const std::string& v) -> uint32_t {
    if (v == "majority") return 0;
    const uint64_t n = parseNumber(flag, v);
    if (n == 0 || n > 1000) throw Usage(std::string(flag) + " must be 1..1000 peers or 'majority', not '" + v + "'");
    return static_cast<uint32_t>(n);
  };
  // --wait N|majority: after a write, until N peers (a majority of the members) hold it.
  const std::optional<std::string> waitFor = p.one("wait");
  uint32_t waitPeers = 0;
  if (waitFor) {
    static const std::vector<std::string> writes{"put", "add", "remove", "incr", "set", "enable", "disable", "delete"};
    if (std::find(writes.begin(), writes.end(), verb) == writes.end()) {
      throw Usage("--wait goes with a write (put, add, remove, incr, set, enable, disable, delete)");
    }
    waitPeers = peersOf("--wait", *waitFor);
  }
  // --type TYPE, --key-type TYPE: how set elements, map and register values (--type) and map keys
  // (--key-type) are spelled (lib/objects.h TextType); the node turns them into typed bytes.
  const std::string valueType = p.one("type").value_or("string");
  const std::string keyType = p.one("key-type").value_or("string");
  if (p.one("type") || p.one("key-type")) {
    static const std::vector<std::string> typed{"get", "put", "add", "remove", "set", "watch", "incr"};
    if (std::find(typed.begin(), typed.end(), verb) == typed.end()) {
      throw Usage("--type and --key-type go with get, put, add, remove, set, watch or incr");
    }
    for (const auto& [flag, type] : {std::pair{"--type", valueType}, std::pair{"--key-type", keyType}}) {
      try {
        deltasync::objects::textType(type);
      } catch (const std::invalid_argument& e) {
        throw Usage(std::string(flag) + ": " + e.what());
      }
    }
  }
  if (p.one("key") && verb != "incr") throw Usage("--key goes with incr (the key of a map of counters)");
  // --sync N|majority: before a get, until the node holds what N peers (a majority) held.
  const std::optional<std::string> syncWith = p.one("sync");
  uint32_t syncPeers = 0;
  if (syncWith) {
    if (verb != "get") throw Usage("--sync goes with get");
    syncPeers = peersOf("--sync", *syncWith);
  }

  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  auto io = kj::setupAsyncIo();
  Waits wait(io, timeoutS * 1000);
  kj::Own<kj::AsyncIoStream> stream;
  try {
    auto target = wait(io.provider->getNetwork().parseAddress(address), "to resolve " + address);
    stream = wait(target->connect(), "to connect to " + address);
  } catch (const kj::Exception& e) {
    throw std::runtime_error("cannot connect to " + address + ": " + e.getDescription().cStr());
  }
  std::unique_ptr<deltasync::Tls> tlsContext;
  ReplicaId server{};
  if (tls) {
    tlsContext = std::make_unique<deltasync::Tls>(*tls, cluster, io.provider->getTimer(), timeoutS * 1000);
    auto secured = wait(tlsContext->connect(kj::mv(stream)), "for the TLS handshake with " + address);
    stream = kj::mv(secured.stream);
    server = secured.peer;
  }
  deltasync::gossip::RpcConnection connection(*stream, deltasync::gossip::Limits{});
  deltasync::gossip::Authenticated auth = [&] {
    const std::string what = "for " + address + " to authenticate";
    if (tls) return wait(deltasync::gossip::attach(connection.gatekeeper(), server), what);
    // ctl authenticates under a fresh random id: it never publishes anything under it.
    deltasync::gossip::Nonce n = deltasync::gossip::randomNonce();
    uint64_t id = 0;
    for (size_t i = 0; i < 8; ++i) id = (id << 8) | n[i];
    return wait(deltasync::gossip::authenticate(connection.gatekeeper(), *secret, ReplicaId{id | 1}, cluster,
                                                deltasync::gossip::randomNonce, /*client=*/true),
                what);
  }();
  const std::string answer = "for " + address + " to answer '" + verb + "'";
  auto control = wait(auth.replicator.controlRequest().send(), answer).getControl();
  auto text = [](const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); };
  // --wait and --sync: how many peers, or a majority; answered within --timeout, so that the
  // answer says how far it got.
  auto askPeers = [&](auto req, uint32_t peers, const std::string& spelled, const std::string& what) {
    req.setPeers(peers);
    req.setMajority(spelled == "majority");
    req.setTimeoutMs(timeoutS * 900);
    return wait(req.send(), what);
  };

  if (verb == "get") {
    if (syncWith) {
      auto r = askPeers(control.syncRequest(), syncPeers, *syncWith, "for " + address + " to sync with its peers (--sync)");
      if (!r.getReached()) {
        throw std::runtime_error(address + " synced with " + std::to_string(r.getSyncedWith()) + " of the " +
                                 std::to_string(r.getWanted()) + " peers asked for within " +
                                 std::to_string(timeoutS * 900 / 1000) + " s (--sync, --timeout)");
      }
    }
    auto req = control.getRequest();
    req.setName(text(rest[0]));
    req.setKeyType(text(keyType));
    req.setValueType(text(valueType));
    auto r = wait(req.send(), answer);
    printLines(r.getLines());
  } else if (verb == "put") {
    auto req = control.putRequest();
    req.setName(text(rest[0]));
    req.setKey(text(rest[1]));
    req.setValue(text(rest[2]));
    req.setKeyType(text(keyType));
    req.setValueType(text(valueType));
    wait(req.send(), answer);
  } else if (verb == "add" || verb == "remove") {
    if (verb == "add") {
      for (size_t i = 1; i < rest.size(); ++i) {
        auto req = control.addRequest();
        req.setName(text(rest[0]));
        req.setElement(text(rest[i]));
        req.setValueType(text(valueType));
        wait(req.send(), answer);
      }
    } else {
      auto req = control.removeRequest();
      req.setName(text(rest[0]));
      req.setElement(text(rest[1]));
      req.setKeyType(text(keyType));
      req.setValueType(text(valueType));
      wait(req.send(), answer);
    }
  } else if (verb == "incr") {
    auto req = control.incrRequest();
    req.setName(text(rest[0]));
    req.setBy(by);
    if (const auto key = p.one("key")) {
      req.setKey(text(*key));
      req.setKeyType(text(keyType));
    }
    wait(req.send(), answer);
  } else if (verb == "set") {
    auto req = control.setRegisterRequest();
    req.setName(text(rest[0]));
    req.setValue(text(rest[1]));
    req.setValueType(text(valueType));
    wait(req.send(), answer);
  } else if (verb == "enable" || verb == "disable") {
    auto req = control.setFlagRequest();
    req.setName(text(rest[0]));
    req.setOn(verb == "enable");
    wait(req.send(), answer);
  } else if (verb == "delete") {
    auto req = control.deleteObjectRequest();
    req.setName(text(rest[0]));
    wait(req.send(), answer);
  } else if (verb == "objects") {
    printLines(wait(control.objectsRequest().send(), answer).getLines());
  } else if (verb == "seeds") {
    auto req = control.seedsRequest();
    req.setOp(rest.empty() ? "list" : rest[0]);
    if (!rest.empty()) req.setAddress(text(rest[1]));
    printLines(wait(req.send(), answer).getSeeds());
  } else if (verb == "members") {
    auto r = wait(control.membersRequest().send(), answer);
    for (auto m : r.getMembers()) {
      std::printf("%llu %s %s %llu\n", static_cast<unsigned long long>(m.getId()), m.getAddress().cStr(),
                  m.getState().cStr(), static_cast<unsigned long long>(m.getIncarnation()));
    }
  } else if (verb == "presence" && rest[0] == "hold") {
    auto req = control.holdRequest();
    req.setTopic(text(rest[1]));
    req.setKey(text(rest[2]));
    req.setMeta(text(rest[3]));
    auto held = wait(req.send(), answer);
    std::printf("%s\n", held.getRef().cStr());
    std::fflush(stdout);
    auto subscription = held.getSubscription();
    wait.stopSignal().exclusiveJoin(connection.onDisconnect()).wait(io.waitScope);
  } else if (verb == "presence") {
    auto req = control.presenceRequest();
    req.setWhat(text(rest[0]));
    req.setTopic(text(rest.size() > 1 ? rest[1] : std::string()));
    printLines(wait(req.send(), answer).getLines());
  } else if (verb == "stats") {
    auto r = wait(control.statsRequest().send(), answer);
    std::fwrite(r.getText().cStr(), 1, r.getText().size(), stdout);
  } else if (verb == "watch") {
    auto req = control.watchRequest();
    req.setName(text(rest[0]));
    req.setKeyType(text(keyType));
    req.setValueType(text(valueType));
    req.setWatcher(kj::heap<PrintingWatcher>());
    auto subscription = wait(req.send(), answer).getSubscription();
    wait.stopSignal().exclusiveJoin(connection.onDisconnect()).wait(io.waitScope);
  }
  if (waitFor) {
    auto r = askPeers(control.confirmRequest(), waitPeers, *waitFor, "for " + address + " to confirm the write (--wait)");
    if (!r.getReached()) {
      throw std::runtime_error("the write is applied on " + address + ", but " + std::to_string(r.getHeldBy()) + " of the " +
                               std::to_string(r.getWanted()) + " peers asked for confirmed it within " +
                               std::to_string(timeoutS * 900 / 1000) + " s (--wait, --timeout)");
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      std::fputs(kMainHelp, args.empty() ? stderr : stdout);
      return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version" || args[0] == "version") {
      std::printf("deltasync %s\n", DELTASYNC_VERSION);
      return 0;
    }
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "node") return runNode(args);
    if (command == "ctl") return runCtl(args);
    throw Usage("unknown command '" + command + "' (node, ctl)");
  } catch (const Usage& e) {
    std::fprintf(stderr, "deltasync: %s\n", e.what());
    return 2;
  } catch (const kj::Exception& e) {
    // A remote failure reads "remote exception: <what the node said>".
    std::string what = e.getDescription().cStr();
    const std::string remote = "remote exception: ";
    if (what.rfind(remote, 0) == 0) what = what.substr(remote.size());
    std::fprintf(stderr, "deltasync: %s\n", what.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deltasync: %s\n", e.what());
    return 1;
  }
}
