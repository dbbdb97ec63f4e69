// presence-web: one node of the presence demo. It embeds a deltasync::Node and serves a page and a
// WebSocket to browsers (who is in a room, across the cluster), plus an admin endpoint on loopback
// that cuts this node off from its peers and heals it. scripts/demo starts three of them.
//
//   presence-web --name N --secret-file F [--listen H:P] [--seed H:P]... [--web H:P]
//                [--admin H:P] [--static DIR] [--log-level L]
//
// Why KJ's HTTP server and not Boost.Beast: the library already runs on KJ (its event loop, its
// timers); KJ's WebSocket bounds each received message (receive(maxSize)) and replies to pings by
// itself, and the example then needs nothing the library does not already link.
//
// Threads: the web loop (this file's main thread) owns every socket. deltasync calls its
// subscription callbacks on the node's notifier thread: they only queue the diff in the Inbox and
// wake the web loop through a cross-thread fulfiller, so a slow browser never holds up the node
// and nothing here blocks the notifier.
//
// The browser protocol (JSON text frames, {"event": ..., "payload": ...}; Phoenix's presence
// messages, so its JavaScript merge rules apply; static/presence.js holds them):
//   server -> browser
//     hello           {node: {id, name}, admin: url|null, limits: {...}, statuses: [...]}
//     joined          {room, name, ref}             after a join (ref: phx_ref of the presence)
//     presence_state  {key: {metas: [meta...]}}     the room's whole state, first after a join
//     presence_diff   {joins: {...}, leaves: {...}} then every change, in order
//     cluster         {self, offline, nodes: [{id, name, web, status, view: {id: status}}]}
//   browser -> server
//     join   {room, name, status}  (again: leaves the previous room first)
//     status {status}              online | away | typing
//     leave  {}
//   A meta is {phx_ref, phx_ref_prev?, status, node, online_at}.
// Anything else (bad JSON, an unknown event, a name or room over the limits, a frame over
// kMaxFrame bytes, more than kRate messages/s) closes the socket with a code and a reason
// (1007/1008/1009) and is logged, rate-limited. The web port serves only the page and the socket:
// the admin endpoint listens on its own loopback port, and needs a custom header (so no other web
// page can post to it) from the demo page's origin.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/compat/http.h>
#include <nlohmann/json.hpp>

#include <deltasync/log.h>
#include <deltasync/node.h>

#ifndef PRESENCE_WEB_STATIC
#define PRESENCE_WEB_STATIC "static"
#endif

using json = nlohmann::json;

namespace {

constexpr size_t kMaxFrame = 4096;     // bytes of one browser message
constexpr size_t kMaxName = 32;        // bytes of a name
constexpr size_t kMaxRoom = 32;        // bytes of a room
constexpr double kRate = 10;           // messages per second a socket may send (sustained)
constexpr double kBurst = 20;          // and at once
constexpr size_t kMaxQueued = 1024;    // frames queued to a browser that does not read
constexpr size_t kMaxClients = 4096;   // sockets at once
const std::vector<std::string> kStatuses = {"online", "away", "typing"};

uint64_t nowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t wallMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string hex(uint64_t v) { return deltasync::PresenceRef{v, 0}.text().substr(0, 16); }

// One line per event on stderr; repeats of a kind beyond 5 per 10 s are counted, not printed.
class RateLog {
 public:
  template <typename... A>
  void warn(const char* format, A... args) {
    const uint64_t now = nowMs();
    if (now >= windowStart_ + 10000) {
      if (suppressed_ > 0) std::fprintf(stderr, "presence-web: (%llu similar lines suppressed)\n",
                                        static_cast<unsigned long long>(suppressed_));
      windowStart_ = now;
      inWindow_ = 0;
      suppressed_ = 0;
    }
    if (++inWindow_ > 5) {
      ++suppressed_;
      return;
    }
    std::fprintf(stderr, "presence-web: ");
    std::fprintf(stderr, format, args...);
    std::fprintf(stderr, "\n");
  }

 private:
  uint64_t windowStart_ = 0, inWindow_ = 0, suppressed_ = 0;
};
RateLog rateLog;

// ---- options ------------------------------------------------------------------------------

struct Options {
  std::string name;
  std::string listen = "127.0.0.1:0";
  std::vector<std::string> seeds;
  std::string secretFile;
  std::string web = "127.0.0.1:8080";
  std::string admin;  // "" = no admin endpoint
  std::string staticDir = PRESENCE_WEB_STATIC;
  std::string logLevel = "warn";
};

const char* kUsage =
    "usage: presence-web --name NAME --secret-file FILE [options]\n"
    "One node of the deltasync presence demo: a web page and a WebSocket showing who is in a room\n"
    "across the cluster.\n"
    "  --name NAME          this node's name on the page (1-32 bytes)\n"
    "  --secret-file FILE   the cluster secret (at least 32 bytes)\n"
    "  --listen HOST:PORT   where peers reach this node (default 127.0.0.1:0, a free port)\n"
    "  --seed HOST:PORT     a peer to join through (repeatable)\n"
    "  --web HOST:PORT      the page and its WebSocket (default 127.0.0.1:8080; port 0: a free one)\n"
    "  --admin HOST:PORT    cut/heal endpoint, loopback only (default: none)\n"
    "  --static DIR         the page's files (default: the source tree's)\n"
    "  --log-level LEVEL    the library's: debug|info|warn|error|off (default warn)\n"
    "Prints 'web URL', 'admin URL' and 'gossip ADDRESS' lines once listening; runs until SIGINT\n"
    "or SIGTERM.\n";

[[noreturn]] void usageError(const std::string& what) {
  std::fprintf(stderr, "presence-web: %s\n%s", what.c_str(), kUsage);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usageError(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--name") o.name = v;
    else if (a == "--listen") o.listen = v;
    else if (a == "--seed") o.seeds.push_back(v);
    else if (a == "--secret-file") o.secretFile = v;
    else if (a == "--web") o.web = v;
    else if (a == "--admin") o.admin = v;
    else if (a == "--static") o.staticDir = v;
    else if (a == "--log-level") o.logLevel = v;
    else usageError("unknown option " + a);
  }
  if (o.name.empty() || o.name.size() > kMaxName) usageError("--name must be 1-32 bytes");
  if (o.secretFile.empty()) usageError("--secret-file is required");
  if (!o.admin.empty()) {
    const std::string host = o.admin.substr(0, o.admin.rfind(':'));
    if (host != "127.0.0.1" && host != "localhost" && host != "[::1]") {
      usageError("--admin must listen on loopback (127.0.0.1, localhost or [::1]), not " + host);
    }
  }
  return o;
}

// ---- the inbox: notifier thread -> web loop -----------------------------------------------

struct Delivery {
  uint64_t client;
  uint64_t generation;  // the client's join it belongs to (diffs of a room left are dropped)
  deltasync::PresenceDiff diff;
};

class Inbox {
 public:
  void push(Delivery d) {
    std::lock_guard lock(mutex_);
    items_.push_back(std::move(d));
    if (wake_) {
      wake_->fulfill();
      wake_ = nullptr;
    }
  }
  // On the web loop: resolves when something is queued.
  kj::Promise<void> ready() {
    std::lock_guard lock(mutex_);
    if (!items_.empty()) return kj::READY_NOW;
    auto pair = kj::newPromiseAndCrossThreadFulfiller<void>();
    wake_ = kj::mv(pair.fulfiller);
    return kj::mv(pair.promise);
  }
  std::deque<Delivery> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(items_, {});
  }

 private:
  std::mutex mutex_;
  std::deque<Delivery> items_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;
};

// ---- JSON of presences --------------------------------------------------------------------

json metaJson(const deltasync::PresenceMeta& m) {
  json j = json::parse(m.meta, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) j = json{{"raw", m.meta}};
  j["phx_ref"] = m.ref.text();
  if (m.previous) j["phx_ref_prev"] = m.previous.text();
  return j;
}

json entriesJson(const std::vector<deltasync::PresenceEntry>& entries) {
  json out = json::object();
  for (const auto& e : entries) {
    json metas = json::array();
    for (const auto& m : e.metas) metas.push_back(metaJson(m));
    out[e.key] = json{{"metas", std::move(metas)}};
  }
  return out;
}

std::string frame(const char* event, json payload) {
  return json{{"event", event}, {"payload", std::move(payload)}}.dump();
}

const char* statusName(deltasync::ReplicaStatus s) {
  switch (s) {
    case deltasync::ReplicaStatus::up: return "up";
    case deltasync::ReplicaStatus::suspect: return "suspect";
    case deltasync::ReplicaStatus::down: return "down";
    case deltasync::ReplicaStatus::gone: return "gone";
  }
  return "?";
}

// ---- the server ---------------------------------------------------------------------------

class Client;

struct Server {
  Options options;
  deltasync::Node& node;
  deltasync::Presence presence;
  deltasync::Map<std::string, std::string> nodes;  // node id hex -> {name, web, view}
  kj::Timer& timer;
  Inbox inbox;
  std::map<uint64_t, Client*> clients;
  uint64_t nextClient = 1;
  std::string webUrl, adminUrl;
  std::string cluster;  // the last cluster frame sent

  Server(Options o, deltasync::Node& n, kj::Timer& t)
      : options(std::move(o)), node(n), presence(n.presence()),
        nodes(n.map<std::string, std::string>("presence-web:nodes")), timer(t) {}

  json hello() const {
    return json{{"node", {{"id", hex(node.id())}, {"name", options.name}}},
                {"admin", adminUrl.empty() ? json(nullptr) : json(adminUrl)},
                {"limits", {{"name", kMaxName}, {"room", kMaxRoom}, {"frame", kMaxFrame}, {"rate", kRate}}},
                {"statuses", kStatuses}};
  }

  // This node's view of the others, published for the other nodes' pages; and the panel.
  std::string clusterFrame() {
    const bool offline = node.offline();
    json view = json::object();
    std::map<std::string, std::string> status;  // as this node sees them
    for (const auto& r : presence.replicas()) {
      if (r.status == deltasync::ReplicaStatus::gone) continue;
      status[hex(r.id)] = r.self ? (offline ? "offline" : "up") : statusName(r.status);
      if (!r.self) view[hex(r.id)] = statusName(r.status);
    }
    const std::string self = hex(node.id());
    const std::string mine = json{{"name", options.name}, {"web", webUrl}, {"view", view}}.dump();
    if (nodes.get(self) != mine) nodes.put(self, mine);
    std::vector<std::pair<std::string, json>> shown;  // by name
    for (const auto& [id, text] : nodes.entries()) {
      auto it = status.find(id);
      if (it == status.end()) continue;  // gone, or never heard: not part of the cluster now
      json n = json::parse(text, nullptr, false);
      if (!n.is_object()) continue;
      shown.emplace_back(n.value("name", "?"), json{{"id", id}, {"name", n.value("name", "?")}, {"web", n.value("web", "")},
                                                   {"status", it->second}, {"view", n.value("view", json::object())}});
    }
    std::stable_sort(shown.begin(), shown.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    json list = json::array();
    for (auto& [name, n] : shown) list.push_back(std::move(n));
    return frame("cluster", json{{"self", self}, {"offline", offline}, {"nodes", std::move(list)}});
  }

  kj::Promise<void> deliverLoop();
  kj::Promise<void> clusterLoop();
};

// One browser socket. Frames out go through one send chain (a WebSocket takes one send at a
// time); a close is the chain's last frame.
class Client {
 public:
  Client(Server& server, uint64_t id, kj::Own<kj::WebSocket> ws, std::string from)
      : server_(server), id_(id), ws_(kj::mv(ws)), from_(std::move(from)), tokens_(kBurst), refilledMs_(nowMs()) {
    server_.clients.emplace(id_, this);
  }
  ~Client() {
    server_.clients.erase(id_);
    sub_.reset();   // no more diffs for this socket
    conn_.reset();  // its presence leaves, in one write
  }

  // Resolves when the socket is done: the browser left, or it was closed with a reason (given
  // at most 5 s to take the close frame).
  kj::Promise<void> run() {
    post(frame("hello", server_.hello()));
    if (!server_.cluster.empty()) post(server_.cluster);
    auto failed = kj::newPromiseAndFulfiller<void>();
    failed_ = kj::mv(failed.fulfiller);
    auto deadline = failed.promise.then([this] { return server_.timer.afterDelay(5 * kj::SECONDS); });
    return receiveLoop().exclusiveJoin(sendLoop()).exclusiveJoin(kj::mv(deadline));
  }

  void post(std::string text) {
    if (closing_) return;
    if (out_.size() >= kMaxQueued) {
      fail(1008, "too slow: over " + std::to_string(kMaxQueued) + " frames waiting to be read");
      return;
    }
    out_.push_back(std::move(text));
    wake();
  }

  void deliver(uint64_t generation, const deltasync::PresenceDiff& d) {
    if (generation != generation_ || closing_) return;
    if (!stateSent_) {  // the subscription's first call: the whole room
      stateSent_ = true;
      post(frame("presence_state", entriesJson(d.joins)));
      return;
    }
    post(frame("presence_diff", json{{"joins", entriesJson(d.joins)}, {"leaves", entriesJson(d.leaves)}}));
  }

 private:
  void wake() {
    KJ_IF_MAYBE(f, wakeSender_) {
      (*f)->fulfill();
      wakeSender_ = nullptr;
    }
  }

  void fail(uint16_t code, std::string reason) {
    if (closing_) return;
    rateLog.warn("closed the socket of %s: %s", from_.c_str(), reason.c_str());
    if (reason.size() > 120) reason.resize(120);  // a close frame's reason is at most 123 bytes
    closing_ = std::make_pair(code, std::move(reason));
    wake();
    if (failed_) failed_->fulfill();
  }

  kj::Promise<void> sendLoop() {
    if (!out_.empty()) {
      auto text = kj::heapString(out_.front().data(), out_.front().size());
      out_.pop_front();
      auto sent = ws_->send(text.asArray());
      return sent.attach(kj::mv(text)).then([this] { return sendLoop(); });
    }
    if (closing_) {  // then the receive loop waits for the reply (or the deadline ends it)
      return ws_->close(closing_->first, closing_->second).then([]() -> kj::Promise<void> { return kj::NEVER_DONE; },
                                                                [](kj::Exception&&) {});
    }
    auto pair = kj::newPromiseAndFulfiller<void>();
    wakeSender_ = kj::mv(pair.fulfiller);
    return pair.promise.then([this] { return sendLoop(); });
  }

  // After a close was sent, goes on reading (and dropping) what the browser still sends until its
  // close reply: a socket closed with unread data would be reset, and the browser would lose the
  // close frame and its reason.
  kj::Promise<void> receiveLoop() {
    return ws_->receive(kMaxFrame).then(
        [this](kj::WebSocket::Message&& m) -> kj::Promise<void> {
          if (m.is<kj::WebSocket::Close>()) return kj::READY_NOW;  // the browser went away, or replied
          if (closing_) return receiveLoop();
          if (m.is<kj::Array<kj::byte>>()) {
            fail(1003, "binary frames are not part of this protocol");
          } else if (!allow()) {
            fail(1008, "rate limit: more than " + std::to_string(static_cast<int>(kRate)) + " messages/s");
          } else {
            auto& text = m.get<kj::String>();
            if (auto problem = handle(std::string(text.cStr(), text.size())); !problem.empty()) {
              fail(problem.rfind("malformed JSON", 0) == 0 ? 1007 : 1008, problem);
            }
          }
          return receiveLoop();
        },
        [this](kj::Exception&& e) -> kj::Promise<void> {
          if (e.getType() == kj::Exception::Type::DISCONNECTED || closing_) return kj::READY_NOW;
          const std::string what = e.getDescription().cStr();
          if (what.find("too large") != std::string::npos) {
            fail(1009, "message too big: the limit is " + std::to_string(kMaxFrame) + " bytes");
          } else {
            fail(1002, "protocol error: " + what);
          }
          return kj::NEVER_DONE;  // the stream is unusable: the close frame goes out, then the deadline
        });
  }

  bool allow() {
    const uint64_t now = nowMs();
    tokens_ = std::min(kBurst, tokens_ + static_cast<double>(now - refilledMs_) * kRate / 1000.0);
    refilledMs_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  static std::string checkText(const json& v, const char* what, size_t max) {
    if (!v.is_string()) return std::string(what) + " must be a string";
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > max) {
      return std::string(what) + " must be 1-" + std::to_string(max) + " bytes (got " + std::to_string(s.size()) + ")";
    }
    for (unsigned char c : s) {
      if (c < 0x20 || c == 0x7f) return std::string(what) + " holds a control character";
    }
    return {};
  }

  static std::string checkStatus(const json& v) {
    if (!v.is_string() || std::find(kStatuses.begin(), kStatuses.end(), v.get<std::string>()) == kStatuses.end()) {
      return "status must be one of online, away, typing";
    }
    return {};
  }

  std::string meta(const std::string& status) const {
    return json{{"status", status}, {"node", server_.options.name}, {"online_at", joinedAt_}}.dump();
  }

  // One browser message; "" or what was wrong with it.
  std::string handle(const std::string& text) {
    json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (m.is_discarded()) return "malformed JSON";
    if (!m.is_object() || !m.contains("event") || !m["event"].is_string()) return "a message is {event, payload}";
    const std::string event = m["event"];
    const json payload = m.value("payload", json::object());
    if (!payload.is_object()) return "payload must be an object";
    try {
      if (event == "join") {
        for (auto problem : {checkText(payload.value("room", json()), "room", kMaxRoom),
                             checkText(payload.value("name", json()), "name", kMaxName),
                             checkStatus(payload.value("status", json("online")))}) {
          if (!problem.empty()) return problem;
        }
        leave();
        room_ = payload["room"];
        name_ = payload["name"];
        status_ = payload.value("status", "online");
        joinedAt_ = wallMs();
        const std::string topic = "room:" + room_;
        conn_.emplace(server_.presence.connect());
        const auto ref = conn_->track(topic, name_, meta(status_));
        const uint64_t generation = ++generation_;
        stateSent_ = false;
        post(frame("joined", json{{"room", room_}, {"name", name_}, {"ref", ref.text()}}));
        Inbox* inbox = &server_.inbox;
        const uint64_t id = id_;
        sub_.emplace(server_.presence.subscribe(topic, [inbox, id, generation](const deltasync::PresenceDiff& d) {
          inbox->push(Delivery{id, generation, d});
        }));
        return {};
      }
      if (event == "status") {
        if (auto problem = checkStatus(payload.value("status", json())); !problem.empty()) return problem;
        if (!conn_) return "status before join";
        const std::string status = payload["status"];
        if (status != status_) {
          status_ = status;
          conn_->update("room:" + room_, name_, meta(status_));
        }
        return {};
      }
      if (event == "leave") {
        leave();
        return {};
      }
    } catch (const std::exception& e) {  // limits of the tracker (LimitExceeded), a closed node
      return std::string("refused: ") + e.what();
    }
    return "unknown event '" + event.substr(0, 32) + "'";
  }

  void leave() {
    if (!conn_) return;
    ++generation_;  // diffs of the old room still queued are dropped
    sub_.reset();
    conn_.reset();  // untracks
    post(frame("left", json{{"room", room_}}));
  }

  Server& server_;
  uint64_t id_;
  kj::Own<kj::WebSocket> ws_;
  std::string from_;
  std::deque<std::string> out_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> wakeSender_;
  std::optional<std::pair<uint16_t, std::string>> closing_;
  kj::Own<kj::PromiseFulfiller<void>> failed_;
  double tokens_;
  uint64_t refilledMs_;
  std::optional<deltasync::PresenceConnection> conn_;
  std::optional<deltasync::Subscription> sub_;
  uint64_t generation_ = 0;
  bool stateSent_ = false;
  std::string room_, name_, status_;
  uint64_t joinedAt_ = 0;
};

kj::Promise<void> Server::deliverLoop() {
  return inbox.ready().then([this] {
    for (auto& d : inbox.take()) {
      if (auto it = clients.find(d.client); it != clients.end()) it->second->deliver(d.generation, d.diff);
    }
    return deliverLoop();
  });
}

kj::Promise<void> Server::clusterLoop() {
  std::string now = clusterFrame();
  if (now != cluster) {
    cluster = std::move(now);
    for (auto& [id, c] : clients) c->post(cluster);
  }
  return timer.afterDelay(250 * kj::MILLISECONDS).then([this] { return clusterLoop(); });
}

// ---- HTTP ---------------------------------------------------------------------------------

struct Headers {
  kj::Own<kj::HttpHeaderTable> table;
  kj::HttpHeaderId origin, cacheControl, nosniff, csp, allowOrigin, allowHeaders, allowMethods, adminHeader;
  Headers() {
    kj::HttpHeaderTable::Builder b;
    origin = b.add("Origin");
    cacheControl = b.add("Cache-Control");
    nosniff = b.add("X-Content-Type-Options");
    csp = b.add("Content-Security-Policy");
    allowOrigin = b.add("Access-Control-Allow-Origin");
    allowHeaders = b.add("Access-Control-Allow-Headers");
    allowMethods = b.add("Access-Control-Allow-Methods");
    adminHeader = b.add("X-Demo-Admin");
    table = b.build();
  }
};

kj::Promise<void> reply(kj::HttpService::Response& response, const Headers& h, uint status, kj::StringPtr statusText,
                        const std::string& type, const std::string& body, kj::HttpHeaders headers) {
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, kj::heapString(type.c_str()));
  headers.set(h.cacheControl, "no-store");
  headers.set(h.nosniff, "nosniff");
  auto stream = response.send(status, statusText, headers, body.size());
  auto copy = kj::heapString(body.data(), body.size());
  auto write = stream->write(copy.begin(), copy.size());
  return write.attach(kj::mv(stream), kj::mv(copy));
}

class WebService final : public kj::HttpService {
 public:
  WebService(Server& server, const Headers& h, std::map<std::string, std::pair<std::string, std::string>> files)
      : server_(server), h_(h), files_(std::move(files)) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream&, Response& response) override {
    kj::HttpHeaders out(*h_.table);
    std::string path(url.cStr());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    if (method != kj::HttpMethod::GET) return reply(response, h_, 405, "Method Not Allowed", "text/plain", "GET only\n", kj::mv(out));
    if (path == "/ws") {
      if (!headers.isWebSocket()) return reply(response, h_, 400, "Bad Request", "text/plain", "a WebSocket upgrade\n", kj::mv(out));
      // A page of another origin must not open sockets here in a visitor's name.
      KJ_IF_MAYBE(origin, headers.get(h_.origin)) {
        KJ_IF_MAYBE(host, headers.get(kj::HttpHeaderId::HOST)) {
          if (std::string(origin->cStr()) != "http://" + std::string(host->cStr())) {
            rateLog.warn("refused a WebSocket from origin %s", origin->cStr());
            return reply(response, h_, 403, "Forbidden", "text/plain", "cross-origin WebSocket refused\n", kj::mv(out));
          }
        }
      }
      if (server_.clients.size() >= kMaxClients) {
        rateLog.warn("refused a WebSocket: %zu sockets open already", server_.clients.size());
        return reply(response, h_, 503, "Service Unavailable", "text/plain", "too many sockets\n", kj::mv(out));
      }
      auto ws = response.acceptWebSocket(out);
      auto client = kj::heap<Client>(server_, server_.nextClient++, kj::mv(ws), "a browser");
      auto done = client->run();
      return done.attach(kj::mv(client));
    }
    auto it = files_.find(path == "/" ? "/index.html" : path);
    if (it == files_.end()) return reply(response, h_, 404, "Not Found", "text/plain", "not found\n", kj::mv(out));
    out.set(h_.csp, kj::heapString(csp_.c_str()));
    return reply(response, h_, 200, "OK", it->second.first, it->second.second, kj::mv(out));
  }

  void setCsp(std::string csp) { csp_ = std::move(csp); }

 private:
  Server& server_;
  const Headers& h_;
  std::map<std::string, std::pair<std::string, std::string>> files_;  // path -> (type, body)
  std::string csp_;
};

// POST /cut, POST /heal, GET /status: JSON {offline}. Only the demo page's origins (or none: curl),
// and with the X-Demo-Admin header, so that no other page a visitor opens can post here.
class AdminService final : public kj::HttpService {
 public:
  AdminService(Server& server, const Headers& h) : server_(server), h_(h) {}
  std::vector<std::string> origins;

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream&, Response& response) override {
    kj::HttpHeaders out(*h_.table);
    std::string origin;
    KJ_IF_MAYBE(o, headers.get(h_.origin)) { origin = o->cStr(); }
    if (!origin.empty()) {
      if (std::find(origins.begin(), origins.end(), origin) == origins.end()) {
        rateLog.warn("admin: refused a request from origin %s", origin.c_str());
        return reply(response, h_, 403, "Forbidden", "text/plain", "origin not allowed\n", kj::mv(out));
      }
      out.set(h_.allowOrigin, kj::heapString(origin.c_str()));
    }
    const std::string path = url.cStr();
    if (method == kj::HttpMethod::OPTIONS) {
      out.set(h_.allowHeaders, "X-Demo-Admin");
      out.set(h_.allowMethods, "GET, POST");
      return reply(response, h_, 204, "No Content", "text/plain", "", kj::mv(out));
    }
    if (method == kj::HttpMethod::GET && path == "/status") {
      return reply(response, h_, 200, "OK", "application/json", json{{"offline", server_.node.offline()}}.dump(), kj::mv(out));
    }
    if (method == kj::HttpMethod::POST && (path == "/cut" || path == "/heal")) {
      if (headers.get(h_.adminHeader) == nullptr) {
        return reply(response, h_, 403, "Forbidden", "text/plain", "the X-Demo-Admin header is required\n", kj::mv(out));
      }
      server_.node.setOffline(path == "/cut");
      std::fprintf(stderr, "presence-web %s: %s\n", server_.options.name.c_str(),
                   path == "/cut" ? "cut off from its peers" : "healed");
      return reply(response, h_, 200, "OK", "application/json", json{{"offline", server_.node.offline()}}.dump(), kj::mv(out));
    }
    return reply(response, h_, 404, "Not Found", "text/plain", "POST /cut, POST /heal, GET /status\n", kj::mv(out));
  }

 private:
  Server& server_;
  const Headers& h_;
};

// Accepts until the process ends: an accept error (out of descriptors) waits and goes on.
kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener, kj::HttpServer& http, kj::Timer& timer,
                             kj::TaskSet& tasks) {
  return listener.accept().then(
      [&](kj::Own<kj::AsyncIoStream> stream) {
        tasks.add(http.listenHttp(kj::mv(stream)));
        return acceptLoop(listener, http, timer, tasks);
      },
      [&](kj::Exception&& e) {
        rateLog.warn("accept: %s (retrying)", e.getDescription().cStr());
        return timer.afterDelay(100 * kj::MILLISECONDS).then([&] { return acceptLoop(listener, http, timer, tasks); });
      });
}

class Quiet final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    if (e.getType() != kj::Exception::Type::DISCONNECTED) rateLog.warn("connection: %s", e.getDescription().cStr());
  }
};

std::map<std::string, std::pair<std::string, std::string>> loadFiles(const std::string& dir) {
  const std::vector<std::pair<std::string, std::string>> names = {
      {"index.html", "text/html; charset=utf-8"},
      {"app.js", "text/javascript; charset=utf-8"},
      {"presence.js", "text/javascript; charset=utf-8"},
      {"style.css", "text/css; charset=utf-8"}};
  std::map<std::string, std::pair<std::string, std::string>> files;
  for (const auto& [name, type] : names) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + dir + "/" + name + " (set --static)");
    std::ostringstream body;
    body << in.rdbuf();
    files["/" + name] = {type, body.str()};
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse(argc, argv);
  try {
    deltasync::log::setLevel(deltasync::log::parseLevel(options.logLevel));
    auto files = loadFiles(options.staticDir);

    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    auto io = kj::setupAsyncIo();
    auto& network = io.provider->getNetwork();
    auto& timer = io.provider->getTimer();

    deltasync::NodeConfig config;
    config.listen = options.listen;
    config.seeds = options.seeds;
    config.secret = deltasync::Secret::fromFile(options.secretFile);
    // A demo on one machine: a cut shows within about a second, not after the LAN defaults.
    config.tuning.gossipIntervalMs = 50;
    config.tuning.probeIntervalMs = 250;
    config.tuning.probeTimeoutMs = 100;
    deltasync::Node node(config);

    Server server(options, node, timer);
    Headers headers;
    WebService web(server, headers, std::move(files));
    AdminService admin(server, headers);
    Quiet quiet;
    auto tasksOwner = kj::heap<kj::TaskSet>(quiet);
    kj::TaskSet& tasks = *tasksOwner;
    kj::HttpServerSettings settings;
    settings.headerTimeout = 10 * kj::SECONDS;
    kj::HttpServer webHttp(timer, *headers.table, web, settings);
    kj::HttpServer adminHttp(timer, *headers.table, admin, settings);

    auto webListener = network.parseAddress(options.web).wait(io.waitScope)->listen();
    const std::string webHost = options.web.substr(0, options.web.rfind(':'));
    server.webUrl = "http://" + webHost + ":" + std::to_string(webListener->getPort());
    kj::Own<kj::ConnectionReceiver> adminListener;
    std::string adminConnect;
    if (!options.admin.empty()) {
      adminListener = network.parseAddress(options.admin).wait(io.waitScope)->listen();
      const std::string adminHost = options.admin.substr(0, options.admin.rfind(':'));
      server.adminUrl = "http://" + adminHost + ":" + std::to_string(adminListener->getPort());
      adminConnect = " " + server.adminUrl;
      const std::string port = std::to_string(webListener->getPort());
      admin.origins = {server.webUrl, "http://127.0.0.1:" + port, "http://localhost:" + port};
    }
    web.setCsp("default-src 'self'; connect-src 'self' ws://" + webHost + ":" + std::to_string(webListener->getPort()) +
               adminConnect + "; img-src 'self' data:");

    tasks.add(acceptLoop(*webListener, webHttp, timer, tasks));
    if (adminListener) tasks.add(acceptLoop(*adminListener, adminHttp, timer, tasks));
    tasks.add(server.deliverLoop());
    tasks.add(server.clusterLoop());

    std::printf("web %s/\n", server.webUrl.c_str());
    if (!server.adminUrl.empty()) std::printf("admin %s\n", server.adminUrl.c_str());
    std::printf("gossip %s\n", node.address().c_str());
    std::fflush(stdout);

    auto stop = io.unixEventPort.onSignal(SIGINT).exclusiveJoin(io.unixEventPort.onSignal(SIGTERM));
    stop.wait(io.waitScope);
    std::fprintf(stderr, "presence-web %s: stopping\n", options.name.c_str());
    // Sockets go first (their presences leave), then the node announces its leave.
    tasksOwner = nullptr;
    node.close();
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "presence-web: %s\n", e.getDescription().cStr());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "presence-web: %s\n", e.what());
    return 1;
  }
  return 0;
}
