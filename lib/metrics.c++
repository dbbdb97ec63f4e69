#include "lib/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <kj/compat/http.h>

#include <fmt/format.h>

#include "lib/log.h"
#include "lib/runtime.h"

namespace deltasync {

void Histogram::observe(double seconds) {
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++counts_[i];
      break;
    }
  }
  ++count_;
  sum_ += seconds;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

namespace {

template <typename N>
void metric(std::string& out, const char* type, const std::string& name, const std::string& help, N value) {
  out += fmt::format("# HELP deltasync_{} {}\n# TYPE deltasync_{} {}\ndeltasync_{} {}\n", name, help, name, type, name,
                     value);
}

}  // namespace

std::string prometheusText(const Runtime& rt, const NodeCounters& node) {
  std::string out;
  const RuntimeStats s = rt.stats();
  const gossip::EngineStats& e = rt.engine().stats();
  const gossip::GatekeeperStats& g = rt.gatekeeperStats();
  auto counter = [&](const std::string& name, const std::string& help, uint64_t v) { metric(out, "counter", name, help, v); };
  auto gauge = [&](const std::string& name, const std::string& help, uint64_t v) { metric(out, "gauge", name, help, v); };
  // What is running where: one series, value 1, the facts in its labels (Prometheus' info idiom).
  out += fmt::format("# HELP deltasync_build_info The deltasync version and this node's replica id.\n"
                     "# TYPE deltasync_build_info gauge\ndeltasync_build_info{{version=\"{}\",replica=\"{}\"}} 1\n",
                     DELTASYNC_VERSION, rt.id().value);
  counter("local_updates_total", "Local updates applied.", s.localUpdates);
  counter("deltas_joined_total", "Received deltas that changed the state.", e.deltasJoined);
  counter("deltas_redundant_total", "Received deltas the state already held.", e.deltasRedundant);
  counter("deltas_refuted_total", "Received deltas that claimed this replica's dots beyond its own (refuted).",
          e.deltasRefuted);
  counter("pushes_sent_total", "Delta-interval pushes sent.", e.pushesSent);
  counter("replicas_pruned_total", "Removed replicas this node pruned from the cluster's metadata (as the pruner).",
          rt.pruneStats().pruned);
  gauge("replicas_forgotten", "Replicas pruned from the cluster that this node has forgotten.", rt.forgottenReplicas());
  counter("messages_sent_total", "Messages delivered to peers.", s.messagesSent);
  counter("messages_received_total", "Messages accepted from peers.", s.messagesReceived);
  counter("messages_rejected_total", "Messages from peers refused as invalid.", s.messagesRejected);
  counter("sends_rejected_total", "Messages peers refused.", s.sendsRejected);
  counter("messages_dropped_total", "Messages dropped (full queue, broken link, unknown address).", s.messagesDropped);
  counter("bytes_sent_total", "Encoded bytes of messages delivered to peers.", s.bytesSent);
  counter("connects_total", "Outbound peer connections established.", s.connects);
  counter("connect_failures_total", "Failed dials or handshakes.", s.connectFailures);
  counter("disconnects_total", "Established peer connections that broke.", s.disconnects);
  out += "# HELP deltasync_inbound_refused_total Inbound connections refused or closed before authenticating, by reason.\n"
         "# TYPE deltasync_inbound_refused_total counter\n";
  out += fmt::format("deltasync_inbound_refused_total{{reason=\"max_inbound\"}} {}\n", s.inboundRefused);
  out += fmt::format("deltasync_inbound_refused_total{{reason=\"max_pending\"}} {}\n", s.pendingRefused);
  out += fmt::format("deltasync_inbound_refused_total{{reason=\"per_source\"}} {}\n", s.sourceRefused);
  out += fmt::format("deltasync_inbound_refused_total{{reason=\"evicted_oldest_pending\"}} {}\n", s.pendingEvicted);
  out += fmt::format("deltasync_inbound_refused_total{{reason=\"pre_auth_bytes\"}} {}\n", s.preAuthOversize);
  counter("handshake_timeouts_total", "Inbound connections closed for not authenticating in time.",
          s.handshakeTimeouts);
  counter("auth_failures_total", "Failed peer authentications (bad hello or proof).", g.helloRejected + g.proofRejected);
  counter("peer_id_refused_total",
          "Peers that proved the secret but claimed the id of a live member on another host (refused).", g.peerRefused);
  counter("auth_successes_total", "Successful peer authentications.", g.authenticated);
  counter("envelopes_rejected_total", "Invalid envelopes from authenticated peers.", g.envelopesRejected);
  counter("suspicions_total", "Members this node saw become suspect.", s.suspicions);
  counter("replies_sent_total", "Messages handed back on a peer's delivery because this node's link to it was down.",
          s.repliesSent);
  counter("replies_received_total", "Messages peers handed back on this node's deliveries.", s.repliesReceived);
  counter("clock_jumps_total", "Jumps of this node's wall clock against its monotonic clock (1 s or more).",
          s.clockJumps);
  metric(out, "gauge", "clock_last_jump_ms", "The last jump of this node's wall clock, ms (positive: forward).",
         s.lastClockJumpMs);
  counter("clock_skew_refused_total",
          "Peers' messages refused for a timestamp too far ahead of this node's clock (each also logged).",
          e.skewRefused);
  counter("notifications_total", "Subscription callbacks delivered.", node.notifications);
  counter("accept_failures_total", "Failed accepts on the peer or metrics port (out of descriptors, say; retried).",
          node.acceptFailures);
  counter("http_refused_total", "Metrics connections closed at once (too many open).", node.httpRefused);
  counter("http_bad_requests_total", "Malformed HTTP requests to the metrics port.", node.httpBadRequests);
  counter("storage_commits_total", "Transactions committed to the data directory (one fsync each in sync durability).",
          node.storageCommits);
  counter("storage_changes_total", "Object changes written to the data directory.", node.storageChanges);
  counter("storage_bytes_total", "Value bytes written to the data directory (changes and snapshots).", node.storageBytes);
  counter("storage_compactions_total", "Object snapshots rewritten to drop their logged changes.",
          node.storageCompactions);
  counter("storage_failures_total", "Failed commits (each also logged; nothing is sent to peers meanwhile).",
          node.storageFailures);
  size_t live = 0;
  std::array<size_t, 4> byState{};  // by gossip::MemberState
  for (const auto& m : rt.members()) {
    if (m.self) continue;
    live += m.state == gossip::MemberState::alive || m.state == gossip::MemberState::suspect;
    ++byState[static_cast<size_t>(m.state)];
  }
  gauge("members_live", "Live members known, self excluded.", live);
  out += "# HELP deltasync_members Members in the member table, self excluded, by state.\n"
         "# TYPE deltasync_members gauge\n";
  for (size_t i = 0; i < byState.size(); ++i) {
    out += fmt::format("deltasync_members{{state=\"{}\"}} {}\n", gossip::stateName(static_cast<gossip::MemberState>(i)),
                       byState[i]);
  }
  gauge("peers_connected", "Outbound peer links ready.", rt.readyLinks());
  gauge("inbound_connections", "Inbound connections held.", rt.inboundConnections());
  gauge("inbound_pending", "Inbound connections not yet authenticated.", rt.pendingInbound());
  gauge("objects", "Replicated objects held.", rt.store().size());
  gauge("log_entries", "Delta-log entries held.", rt.engine().logSize());
  gauge("log_bytes", "Bytes of deltas the delta log holds in memory (estimated).", rt.engine().logBytes());
  gauge("replication_lag_entries", "Log entries the slowest neighbour has not acked.", rt.replicationLag());
  gauge("subscriptions", "Live subscriptions.", node.subscriptions);
  // One series per peer whose timestamps were ever ahead of our clock (a peer known to the engine).
  out += "# HELP deltasync_peer_clock_ahead_ms The largest amount a peer's timestamps were seen ahead of this node's clock.\n"
         "# TYPE deltasync_peer_clock_ahead_ms gauge\n";
  for (const auto& a : rt.engine().clockAhead()) {
    out += fmt::format("deltasync_peer_clock_ahead_ms{{peer=\"{}\"}} {}\n", a.peer.value, a.maxAheadMs);
  }
  rt.deliverLatency().render(out, "deltasync_deliver_seconds", "Round trip of one message to a peer.");
  return out;
}

std::string processText() {
  std::ifstream statFile("/proc/self/stat");
  const std::string stat((std::istreambuf_iterator<char>(statFile)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');  // (the command name may hold spaces and parentheses)
  if (close == std::string::npos) return {};
  std::istringstream in(stat.substr(close + 1));
  std::vector<std::string> field;  // field[0] is proc(5)'s field 3 (state): field k is field[k - 3]
  for (std::string f; in >> f;) field.push_back(f);
  if (field.size() < 22) return {};
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double cpu = static_cast<double>(std::stoull(field[11]) + std::stoull(field[12])) / ticks;  // utime + stime
  uint64_t bootSeconds = 0;  // btime in /proc/stat
  std::ifstream procStat("/proc/stat");
  for (std::string line; std::getline(procStat, line);) {
    if (line.rfind("btime ", 0) == 0) bootSeconds = std::stoull(line.substr(6));
  }
  const double start = static_cast<double>(bootSeconds) + static_cast<double>(std::stoull(field[19])) / ticks;
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    ++fds;
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  std::string out;
  auto one = [&](const char* name, const char* type, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  one("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.", cpu);
  one("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.",
      static_cast<double>(std::stoull(field[21]) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE))));
  one("process_virtual_memory_bytes", "gauge", "Virtual memory size, in bytes.", static_cast<double>(std::stoull(field[20])));
  one("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.", start);
  one("process_open_fds", "gauge", "Open file descriptors.", static_cast<double>(fds));
  one("process_max_fds", "gauge", "The limit on open file descriptors.", static_cast<double>(limit.rlim_cur));
  return out;
}

namespace {

log::RateLimit httpLog(10000);

uint64_t nowMs(kj::Timer& timer) { return (timer.now() - kj::origin<kj::TimePoint>()) / kj::MILLISECONDS; }

class MetricsService final : public kj::HttpService {
 public:
  MetricsService(const kj::HttpHeaderTable& table, std::function<std::string()> render,
                 std::function<std::string()> ready)
      : table_(table), render_(std::move(render)), ready_(std::move(ready)) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&, kj::AsyncInputStream&,
                            Response& response) override {
    if (method != kj::HttpMethod::GET) return response.sendError(404, "Not Found", table_);
    if (url == "/metrics" || url == "/") return send(response, 200, "OK", "text/plain; version=0.0.4", render_());
    if (url == "/healthz") return send(response, 200, "OK", "text/plain", "ok\n");
    if (url == "/readyz") {
      const std::string why = ready_();
      return why.empty() ? send(response, 200, "OK", "text/plain", "ready\n")
                         : send(response, 503, "Service Unavailable", "text/plain", "not ready: " + why + "\n");
    }
    return response.sendError(404, "Not Found", table_);
  }

 private:
  kj::Promise<void> send(Response& response, uint32_t status, kj::StringPtr statusText, kj::StringPtr type,
                         const std::string& content) {
    auto text = kj::heapString(content.data(), content.size());
    kj::HttpHeaders headers(table_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, type);
    auto body = response.send(status, statusText, headers, text.size());
    auto write = body->write(text.begin(), text.size());
    return write.attach(kj::mv(body), kj::mv(text));
  }

  const kj::HttpHeaderTable& table_;
  std::function<std::string()> render_;
  std::function<std::string()> ready_;
};

// Answers in plain words and logs in ours; kj's default puts the exception text (with stack
// addresses) in the body and its own lines on stderr.
class HttpErrors final : public kj::HttpServerErrorHandler {
 public:
  HttpErrors(kj::Timer& timer, const kj::HttpHeaderTable& table) : timer_(timer), table_(table) {}

  kj::Promise<void> handleClientProtocolError(kj::HttpHeaders::ProtocolError error,
                                              kj::HttpService::Response& response) override {
    ++bad;
    note("malformed request: {}", error.description.cStr());
    return response.sendError(error.statusCode, error.statusMessage, table_);
  }
  kj::Promise<void> handleApplicationError(kj::Exception exception,
                                           kj::Maybe<kj::HttpService::Response&> response) override {
    if (exception.getType() == kj::Exception::Type::DISCONNECTED) return kj::READY_NOW;  // the client left
    note("request failed: {}", exception.getDescription().cStr());
    KJ_IF_MAYBE (r, response) { return r->sendError(500, "Internal Server Error", table_); }
    return kj::READY_NOW;
  }
  kj::Promise<void> handleNoResponse(kj::HttpService::Response& response) override {
    return response.sendError(500, "Internal Server Error", table_);
  }

  uint64_t bad = 0;

 private:
  template <typename... Args>
  void note(fmt::format_string<Args...> f, Args&&... args) {
    if (!httpLog.allow(nowMs(timer_))) return;
    log::warn("metrics endpoint: {} ({} similar suppressed)", fmt::format(f, std::forward<Args>(args)...),
              httpLog.suppressed());
  }

  kj::Timer& timer_;
  const kj::HttpHeaderTable& table_;
};

}  // namespace

struct MetricsServer::Impl final : kj::TaskSet::ErrorHandler {
  Impl(kj::Timer& timer, std::function<std::string()> render, std::function<std::string()> ready)
      : service(table, std::move(render), std::move(ready)), errors(timer, table), server(timer, table, service, settings()), tasks(*this) {}

  kj::HttpServerSettings settings() {
    kj::HttpServerSettings s;
    s.headerTimeout = kHeadTimeoutMs * kj::MILLISECONDS;
    s.pipelineTimeout = kHeadTimeoutMs * kj::MILLISECONDS;
    s.errorHandler = errors;
    return s;
  }
  // A connection's end, failed or not, is nothing to report: the error handler logged what matters.
  void taskFailed(kj::Exception&&) override {}

  kj::HttpHeaderTable table;
  MetricsService service;
  HttpErrors errors;
  kj::HttpServer server;
  size_t open = 0;
  kj::TaskSet tasks;  // last: its connections go first
};

MetricsServer::MetricsServer(kj::Timer& timer, std::function<std::string()> render,
                             std::function<std::string()> ready)
    : impl_(kj::heap<Impl>(timer, std::move(render), std::move(ready))) {}

MetricsServer::~MetricsServer() = default;

void MetricsServer::serve(kj::Own<kj::AsyncIoStream> connection) {
  if (impl_->open >= kMaxConnections) {
    ++refused_;
    return;  // closed as it goes out of scope
  }
  ++impl_->open;
  Impl& impl = *impl_;
  impl.tasks.add(impl.server.listenHttp(kj::mv(connection)).attach(kj::defer([&impl] { --impl.open; })));
}

uint64_t MetricsServer::badRequests() const { return impl_->errors.bad; }

}  // namespace deltasync
