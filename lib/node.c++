#include <deltasync/node.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <kj/async-io.h>

#include "gossip/auth.h"
#include "lib/control.h"
#include "lib/listen.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/objects.h"
#include "lib/runtime.h"
#include "lib/storage.h"
#include "lib/tls.h"
#include "lib/wakeup.h"

namespace deltasync {

namespace {

class TcpDialer final : public Dialer {
 public:
  explicit TcpDialer(kj::Network& network) : network_(network) {}
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& address) override {
    return network_.parseAddress(address).then([](kj::Own<kj::NetworkAddress> a) {
      auto connecting = a->connect();
      return connecting.attach(kj::mv(a));
    });
  }

 private:
  kj::Network& network_;
};

ReplicaId randomId() {
  for (;;) {
    gossip::Nonce n = gossip::randomNonce();
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) v = (v << 8) | n[i];
    if (v != 0) return ReplicaId{v};
  }
}

// The addresses "NAME:PORT" resolves to, as seeds ("10.0.0.5:7000", "[fd00::5]:7000"), sorted;
// throws std::runtime_error saying why it did not resolve. Blocks (getaddrinfo).
std::vector<std::string> resolveSeeds(const std::string& spec) {
  const HostPort hp = splitHostPort(spec);
  const std::string name = hp.bareHost(), port = hp.port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(name.c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error("DNS seed " + spec + ": " + gai_strerror(rc));
  }
  std::set<std::string> out;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char host[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, host, sizeof host);
      out.insert(std::string(host) + ":" + port);
    } else if (a->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr, host, sizeof host);
      out.insert("[" + std::string(host) + "]:" + port);
    }
  }
  freeaddrinfo(found);
  return {out.begin(), out.end()};
}

// ---- the one translation between the public types and gossip's ----------------------------

MemberState publicState(gossip::MemberState s) {
  switch (s) {
    case gossip::MemberState::alive: return MemberState::alive;
    case gossip::MemberState::suspect: return MemberState::suspect;
    case gossip::MemberState::down: return MemberState::down;
    case gossip::MemberState::left: return MemberState::left;
  }
  throw std::logic_error("unknown gossip::MemberState");
}

MemberEvent publicEvent(const gossip::MemberEvent& e) { return MemberEvent{e.id.value, publicState(e.state), e.removed}; }

Member publicMember(const MemberRow& r) {
  return Member{r.id.value, r.address, publicState(r.state), r.incarnation, r.self};
}

// Tuning's defaults are the engine's and membership's: one set of numbers for a node and for the
// protocol tests.
constexpr Tuning kTuning{};
constexpr gossip::EngineConfig kEngine{};
constexpr gossip::MembershipConfig kMembership{};
static_assert(kTuning.maxPushBytes == kEngine.maxPushBytes && kTuning.maxChunkBytes == kEngine.maxChunkBytes &&
              kTuning.maxLogEntries == kEngine.maxLogEntries && kTuning.maxLogBytes == kEngine.maxLogBytes);
static_assert(kTuning.probeIntervalMs == kMembership.probeIntervalMs &&
              kTuning.probeTimeoutMs == kMembership.probeTimeoutMs && kTuning.viewSize == kMembership.viewSize &&
              kTuning.removeAfterMs == kMembership.removeAfterMs);
static_assert(kTuning.pruneAfterMs == gossip::PruneConfig{}.pruneAfterMs);

// The runtime's configuration for a node: the tuning an operator sets over the protocol's
// defaults (the engine's experiment switches keep theirs).
void applyTuning(const Tuning& t, RuntimeConfig& rc) {
  rc.gossipIntervalMs = t.gossipIntervalMs;
  rc.engine.maxPushBytes = t.maxPushBytes;
  rc.engine.maxChunkBytes = t.maxChunkBytes;
  rc.engine.maxLogEntries = t.maxLogEntries;
  rc.engine.maxLogBytes = t.maxLogBytes;
  rc.membership.probeIntervalMs = t.probeIntervalMs;
  rc.membership.probeTimeoutMs = t.probeTimeoutMs;
  rc.membership.viewSize = t.viewSize;
  rc.membership.removeAfterMs = t.removeAfterMs;
  rc.pruning.pruneAfterMs = t.pruneAfterMs;
}

gossip::PresenceConfig presenceConfig(const PresenceSettings& p) {
  gossip::PresenceConfig c;
  c.permdownMs = p.permdownMs;
  c.maxPresences = p.maxPresences;
  c.maxTopicBytes = p.maxTopicBytes;
  c.maxKeyBytes = p.maxKeyBytes;
  c.maxMetaBytes = p.maxMetaBytes;
  return c;
}

PresenceRef publicRef(const gossip::PresenceRef& r) { return PresenceRef{r.origin.value, r.counter}; }

PresenceMeta publicMeta(const gossip::PresenceMeta& m) {
  return PresenceMeta{publicRef(m.ref), m.previous.counter == 0 ? PresenceRef{} : publicRef(m.previous), m.meta};
}

// (key, metas) pairs, as the tracker's list() and its diffs hold them.
template <typename ByKey>
std::vector<PresenceEntry> publicEntries(const ByKey& byKey) {
  std::vector<PresenceEntry> out;
  out.reserve(byKey.size());
  for (const auto& [key, metas] : byKey) {
    PresenceEntry e{key, {}};
    e.metas.reserve(metas.size());
    for (const auto& m : metas) e.metas.push_back(publicMeta(m));
    out.push_back(std::move(e));
  }
  return out;
}

ReplicaStatus publicStatus(gossip::OriginStatus s) {
  switch (s) {
    case gossip::OriginStatus::up: return ReplicaStatus::up;
    case gossip::OriginStatus::suspect: return ReplicaStatus::suspect;
    case gossip::OriginStatus::down: return ReplicaStatus::down;
    case gossip::OriginStatus::gone: return ReplicaStatus::gone;
  }
  throw std::logic_error("unknown gossip::OriginStatus");
}

}  // namespace

namespace {

// The IP address of a TCP stream's peer, as Runtime's admission counts sources; "" if unknown.
std::string peerHost(kj::AsyncIoStream& stream) {
  sockaddr_storage ss{};
  kj::uint length = sizeof ss;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { stream.getpeername(reinterpret_cast<sockaddr*>(&ss), &length); })) {
    return {};
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, text, sizeof text);
  }
  std::string host = text;
  if (host.rfind("::ffff:", 0) == 0 && host.find('.') != std::string::npos) host = host.substr(7);  // IPv4-mapped
  return host;
}

}  // namespace

namespace detail {

// Shared by the Node and its handles; owns the loop and notifier threads.
class NodeCore : public std::enable_shared_from_this<NodeCore> {
 public:
  explicit NodeCore(NodeConfig config) : config_(std::move(config)) {
    if (!config_.secret && !config_.tls) {
      throw std::invalid_argument("NodeConfig: a cluster secret (or TLS certificates) is required; there is no default");
    }
    if (config_.tuning.gossipIntervalMs == 0) throw std::invalid_argument("NodeConfig: tuning.gossipIntervalMs must be > 0");
    for (const std::string& seed : config_.seeds) checkSeedAddress(seed);
    for (const std::string& name : config_.dnsSeeds) checkSeedAddress(name);
    if (!config_.dnsSeeds.empty() && config_.dnsRefreshMs == 0) {
      throw std::invalid_argument("NodeConfig: dnsRefreshMs must be > 0");
    }
    id_ = config_.id != 0 ? ReplicaId{config_.id} : randomId();
    if (config_.tls) {
      const ReplicaId certified = Tls::idOfCertificateFile(config_.tls->certificate);
      if (config_.id != 0 && config_.id != certified.value) {
        throw std::invalid_argument("NodeConfig: id " + std::to_string(config_.id) +
                                    " differs from the certificate's replica-" + std::to_string(certified.value));
      }
      id_ = certified;
    }
    if (!config_.dataDir.empty()) openStorage();
    std::promise<void> ready;
    auto started = ready.get_future();
    loop_ = std::thread([this, &ready] { run(ready); });
    try {
      started.get();
    } catch (...) {
      loop_.join();
      throw;
    }
    notifier_ = std::thread([this] { notify(); });
    if (!config_.dnsSeeds.empty()) discovery_ = std::thread([this] { discover(); });
  }

  ~NodeCore() { close(); }

  void close() {
    std::call_once(closeOnce_, [this] {
      if (std::this_thread::get_id() == notifier_.get_id() || std::this_thread::get_id() == loop_.get_id()) {
        throw std::logic_error("Node::close() from a subscription callback or the node's own thread");
      }
      {
        std::lock_guard lock(discoveryMutex_);
        discoveryStop_ = true;
      }
      discoveryCv_.notify_all();
      if (discovery_.joinable()) discovery_.join();  // (waits for a lookup in progress)
      try {
        executor_->executeSync([this] { KJ_IF_MAYBE(f, stop_) { (*f)->fulfill(); } });
      } catch (const kj::Exception&) {
        // The loop already ended.
      }
      loop_.join();
      {
        std::lock_guard lock(notifyMutex_);
        stopping_ = true;
      }
      notifyCv_.notify_all();
      if (notifier_.joinable()) notifier_.join();
    });
  }

  ReplicaId id() const { return id_; }
  const Limits& limits() const { return config_.limits; }
  const std::string& address() const { return address_; }
  const std::string& metricsAddress() const { return metricsAddress_; }

  // Runs f(Runtime&) on the loop thread and waits for it; rethrows what f threw.
  template <typename F>
  auto onLoop(F&& f) -> decltype(f(std::declval<Runtime&>())) {
    using R = decltype(f(std::declval<Runtime&>()));
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
    try {
      executor_->executeSync([&] {
        if (runtime_ == nullptr) {
          error = std::make_exception_ptr(NodeClosed());
          return;
        }
        try {
          if constexpr (std::is_void_v<R>) {
            f(*runtime_);
            result.emplace(0);
          } else {
            result.emplace(f(*runtime_));
          }
        } catch (...) {
          error = std::current_exception();
        }
      });
    } catch (const kj::Exception&) {
      throw NodeClosed();  // the loop has ended
    }
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) return std::move(*result);
  }

  // A local write: f(Runtime&) on the caller's thread under the unique state lock (the writer
  // never waits for the loop, only for the lock, which readers and the loop's steps hold briefly);
  // rethrows what f threw, with nothing applied.
  template <typename F>
  auto exclusive(F&& f) {
    std::unique_lock lock(stateMutex_);
    if (runtime_ == nullptr) throw NodeClosed();
    return f(*runtime_);
  }

  // A write: exclusive(f), then, in sync durability, waits until a commit holds it.
  // Group commit: the first writer since the last commit rings the loop, which commits whatever
  // was recorded by then; writers meanwhile wait for the next one (anything sent to peers is
  // committed first anyway: Runtime's persist hook).
  template <typename F>
  void commit(F&& f) {
    const uint64_t ticket = exclusive([&](Runtime& rt) -> uint64_t {
      f(rt);
      return storage_ ? storage_->recorded() : 0;
    });
    if (!storage_ || config_.durability != Durability::sync) return;
    if (!commitRequested_.exchange(true)) wakeup_.ring();
    storage_->waitCommitted(ticket);
  }

  // A write with a future (WriteTo, commitTo): exclusive(f) now; the future completes on the loop thread
  // once the write is durable and held by the peers asked for, or at the timeout (see Waiter).
  // The waiter is registered under the state lock, so the loop's shutdown (which clears runtime_
  // under it, then fails every waiter) cannot miss it.
  template <typename F>
  std::future<WriteResult> commitTo(F&& f, WriteTo to) {
    if (to.peers == 0 && !to.majority && !(storage_ && config_.durability == Durability::sync)) {
      // Nothing to wait for (no peers asked, no commit to wait for): complete at once, without a
      // trip to the loop thread (bench/RESULTS.md, session 16, "handle writes").
      exclusive([&](Runtime& rt) { f(rt); });
      std::promise<WriteResult> done;
      done.set_value(WriteResult{true, 0, 0});
      return done.get_future();
    }
    auto w = std::make_shared<Waiter>();
    w->to = to;
    auto promise = std::make_shared<std::promise<WriteResult>>();
    auto future = promise->get_future();
    w->complete = [promise](WriteResult r, std::exception_ptr e) {
      if (e) {
        promise->set_exception(e);
      } else {
        promise->set_value(r);
      }
    };
    exclusive([&](Runtime& rt) {
      f(rt);
      w->ticket = storage_ ? storage_->recorded() : 0;
      w->seq = rt.engine().seq();
      std::lock_guard lock(waitersMutex_);
      incoming_.push_back(std::move(w));
    });
    if (storage_ && config_.durability == Durability::sync) commitRequested_ = true;
    wakeup_.ring();
    return future;
  }

  // A handle's write: inside a batch this thread records for this node (Node::batch), recorded
  // for it (and held to the limits now); otherwise applied now.
  void write(const objects::Write& w) {
    if (Batch* b = openBatch()) return b->add(w, config_.limits);
    commit([&](Runtime& rt) { objects::apply(rt, clock_, w); });
  }
  std::future<WriteResult> writeTo(const objects::Write& w, WriteTo to) {
    if (openBatch() != nullptr) {
      throw std::logic_error("a write with a WriteTo inside Node::batch: pass the WriteTo to batch() instead");
    }
    return commitTo([&](Runtime& rt) { objects::apply(rt, clock_, w); }, to);
  }

  // Node::sync: a future that completes on the loop thread once the neighbours asked for have
  // answered a sync request and we joined their logs up to their answers (or at the timeout).
  std::future<SyncResult> sync(ReadFrom from) {
    auto w = std::make_shared<Waiter>();
    w->to = WriteTo{from.peers, from.majority, from.timeoutMs};
    w->sync = true;
    auto promise = std::make_shared<std::promise<SyncResult>>();
    auto future = promise->get_future();
    w->complete = [promise](WriteResult r, std::exception_ptr e) {
      if (e) {
        promise->set_exception(e);
      } else {
        promise->set_value(SyncResult{r.reached, r.heldBy, r.wanted});
      }
    };
    exclusive([&](Runtime&) {  // (registered under the state lock, as writeTo's: see there)
      std::lock_guard lock(waitersMutex_);
      incoming_.push_back(std::move(w));
    });
    wakeup_.ring();
    return future;
  }

  // Node::batch: runs f with a batch open on this thread for this node, then applies what it
  // recorded as one unit through commit(apply) (commit or commitTo). (Node::batch inside a batch
  // of this node runs f in that one instead.)
  template <typename Commit>
  decltype(auto) batch(const std::function<void()>& f, Commit&& commit) {
    Batch b;
    b.core = this;
    b.outer = openBatches;
    openBatches = &b;
    try {
      f();
    } catch (...) {
      openBatches = b.outer;
      throw;  // nothing was applied
    }
    openBatches = b.outer;
    return commit([&](Runtime& rt) { applyBatch(rt, b); });
  }
  bool inBatch() { return openBatch() != nullptr; }

  // Runs f(const gossip::Value* object) with the object (nullptr if absent) under the shared
  // state lock: never waits behind more than one write or one protocol step.
  template <typename F>
  auto read(const std::string& name, F&& f) const {
    std::shared_lock lock(stateMutex_);
    if (runtime_ == nullptr) throw NodeClosed();
    return f(runtime_->store().find(name));
  }

  objects::Clock& clock() { return clock_; }

  // A subscription to object `name`, in one of two forms (the notifier thread runs both; a
  // deleted object is shown to them as absent, nullptr):
  //   subscribe        prepare(object, origin) runs under the shared state lock and returns the
  //                    call to make once it is released (empty: nothing to report). For what is
  //                    cheap to derive from the live object (a counter, a key, a register): no
  //                    copy of the object is made.
  //   subscribeCopies  deliver(object, origin) runs outside the lock on a copy of the object,
  //                    made once per notification round for all such subscriptions of it: for
  //                    what compares whole objects (a set's, a map's listing).
  using Prepare = std::function<std::function<void()>(const gossip::Value*, ChangeOrigin)>;
  Subscription subscribe(std::string name, Prepare prepare) {
    auto sub = std::make_shared<Sub>();
    sub->name = std::move(name);
    sub->prepare = std::move(prepare);
    return add(std::move(sub));
  }
  Subscription subscribeCopies(std::string name, std::function<void(const gossip::Value*, ChangeOrigin)> deliver) {
    auto sub = std::make_shared<Sub>();
    sub->name = std::move(name);
    sub->deliver = std::move(deliver);
    return add(std::move(sub));
  }
  Subscription subscribeMembers(std::function<void(const MemberEvent&)> deliver) {
    auto sub = std::make_shared<Sub>();
    sub->members = true;
    sub->onMember = std::move(deliver);
    return add(std::move(sub));
  }
  // Presence diffs of `topic` ("" with all: every topic). Registered under the state lock, under
  // which diffs are made: the first delivery holds the presences at that moment as joins, and
  // every later diff reaches this subscription and no earlier one does.
  Subscription subscribePresence(std::string topic, bool all, std::function<void(const PresenceDiff&)> deliver) {
    auto sub = std::make_shared<Sub>();
    sub->presence = true;
    sub->topic = std::move(topic);
    sub->allTopics = all;
    sub->onPresence = std::move(deliver);
    // Under the shared state lock: diffs reach the listener under the unique one, so none falls
    // between the snapshot and the registration.
    std::shared_lock lock(stateMutex_);
    if (runtime_ == nullptr) throw NodeClosed();
    {
      const auto& tracker = runtime_->presence();
      auto snapshot = [&](const std::string& t) {
        gossip::PresenceDiff d;
        for (auto& [key, metas] : tracker.list(t)) d.joins.emplace(std::move(key), std::move(metas));
        if (!d.empty()) sub->pending.emplace(t, std::move(d));
      };
      if (all) {
        for (const auto& t : tracker.topics()) snapshot(t);
      } else {
        snapshot(sub->topic);
      }
      Subscription s = add(sub);
      if (!sub->pending.empty()) {
        std::lock_guard notifyLock(notifyMutex_);
        presenceDirty_ = true;
        notifyCv_.notify_one();
      }
      return s;
    }
  }

  // Runs f(const gossip::ObjectStore&) under the shared state lock.
  template <typename F>
  auto readStore(F&& f) const {
    std::shared_lock lock(stateMutex_);
    if (runtime_ == nullptr) throw NodeClosed();
    return f(runtime_->store());
  }

  // Runs f(const gossip::PresenceTracker&) under the shared state lock.
  template <typename F>
  auto readPresence(F&& f) const {
    std::shared_lock lock(stateMutex_);
    if (runtime_ == nullptr) throw NodeClosed();
    return f(runtime_->presence());
  }

  uint64_t newConnection() { return nextConnection_.fetch_add(1); }

  void unsubscribe(uint64_t id) {
    std::unique_lock lock(notifyMutex_);
    auto it = subs_.find(id);
    if (it == subs_.end()) return;
    if (it->second->presence) {
      --presenceSubs_;
    } else if (!it->second->members) {
      if (--watched_[it->second->name] == 0) watched_.erase(it->second->name);
    } else {
      --memberSubs_;
    }
    subs_.erase(it);
    --counters_.subscriptions;
    if (std::this_thread::get_id() != notifier_.get_id()) {
      idleCv_.wait(lock, [&] { return calling_ != id; });
    }
  }

  std::string metrics() {
    return onLoop([this](Runtime& rt) { return metricsText(rt); });
  }

 private:
  // A batch being recorded (Node::batch): copies of the writes its function made through this
  // node's handles. Bounded so that the unit it becomes always fits one message to peers (the
  // engine never cuts a push inside a unit): at most a quarter of Limits::maxObjectsPerMessage
  // objects and of Limits::maxMessageBytes in keys and values.
  struct Batch {
    struct Entry {
      std::string key, inner, value;
      objects::Write w;  // its name points into `names`, the rest into this entry
    };
    NodeCore* core = nullptr;
    Batch* outer = nullptr;          // the batch open on this thread before this one (another node's)
    std::deque<Entry> writes;        // (a deque: the writes point into their entries)
    std::set<std::string, std::less<>> names;  // the objects written
    const std::string* last = nullptr;         // the name of the last write (most repeat it)
    size_t bytes = 0;

    void add(const objects::Write& w, const Limits& limits) {
      objects::check(limits, w);
      const size_t size = (w.key ? w.key->size() : 0) + (w.inner ? w.inner->size() : 0) +
                          (w.value ? w.value->size() : 0) + 16;
      const std::string* name = last != nullptr && *last == *w.name ? last : nullptr;
      if (name == nullptr) {
        auto it = names.find(*w.name);
        if (it == names.end()) {
          if (names.size() + 1 > limits.maxObjectsPerMessage / 4) {
            throw LimitExceeded("a batch may write at most " + std::to_string(limits.maxObjectsPerMessage / 4) +
                                " objects (it travels to peers as one message): split it");
          }
          if (bytes + size + w.name->size() > limits.maxMessageBytes / 4) throw tooLarge(limits);
          bytes += w.name->size();
          it = names.insert(*w.name).first;
        }
        name = &*it;
      }
      if (bytes + size > limits.maxMessageBytes / 4) throw tooLarge(limits);
      Entry& e = writes.emplace_back();
      e.w = w;
      e.w.name = name;
      if (w.key) e.w.key = &(e.key = *w.key);
      if (w.inner) e.w.inner = &(e.inner = *w.inner);
      if (w.value) e.w.value = &(e.value = *w.value);
      bytes += size;
      last = name;
    }
    static LimitExceeded tooLarge(const Limits& limits) {
      return LimitExceeded("a batch may hold at most " + std::to_string(limits.maxMessageBytes / 4) +
                           " bytes of names, keys and values (it travels to peers as one message): split it");
    }
  };
  static thread_local Batch* openBatches;
  Batch* openBatch() {
    for (Batch* b = openBatches; b != nullptr; b = b->outer) {
      if (b->core == this) return b;
    }
    return nullptr;
  }

  // Applies a batch as one unit (gossip/store.h "Units"), all or nothing: first checks every
  // write against its object's kind (as left by the batch's earlier writes), so that a kind
  // mismatch or a deleted object throws before anything is applied; the limits were checked as
  // the writes were recorded. (Only running out of memory can stop it part-way; what was applied
  // is then reported and replicated like any write.)
  void applyBatch(Runtime& rt, Batch& b) {
    std::map<const std::string*, size_t> kinds;  // each object's kind as the batch leaves it
    const std::string* lastName = nullptr;
    size_t* kind = nullptr;
    for (const Batch::Entry& e : b.writes) {
      const std::string& name = *e.w.name;
      if (e.w.name != lastName) {
        auto [it, fresh] = kinds.try_emplace(e.w.name, kAbsent);
        if (fresh) {
          if (const gossip::Value* v = rt.store().find(name)) it->second = v->index();
        }
        lastName = e.w.name;
        kind = &it->second;
      }
      const size_t want = objects::kindOf(e.w);
      if (*kind == gossip::kTombstoneKind) {
        if (want == gossip::kTombstoneKind) continue;  // deleting twice does nothing more
        throw ObjectDeleted("object '" + name + "' was deleted");
      }
      if (want != gossip::kTombstoneKind && *kind != kAbsent && *kind != want) {
        throw KindMismatch("object '" + name + "' is a " + gossip::kindName(*kind) + ", not a " +
                           gossip::kindName(want));
      }
      *kind = want;
    }
    rt.unit([&] {
      for (const Batch::Entry& e : b.writes) objects::applyChecked(rt, clock_, e.w);  // (checked by add())
    });
  }
  static constexpr size_t kAbsent = SIZE_MAX;

  struct Sub {
    std::string name;
    bool members = false;
    Prepare prepare;                                                   // subscribe()
    std::function<void(const gossip::Value*, ChangeOrigin)> deliver;  // subscribeCopies()
    std::function<void(const MemberEvent&)> onMember;
    // Presence subscriptions: their topic (or all), and the diffs not yet delivered (under
    // notifyMutex_).
    bool presence = false;
    bool allTopics = false;
    std::string topic;
    std::map<std::string, gossip::PresenceDiff> pending;
    std::function<void(const PresenceDiff&)> onPresence;
  };

  Subscription add(std::shared_ptr<Sub> sub) {
    std::lock_guard lock(notifyMutex_);
    uint64_t id = nextSub_++;
    if (sub->members) {
      ++memberSubs_;
    } else if (sub->presence) {
      ++presenceSubs_;
    } else {
      ++watched_[sub->name];
    }
    subs_.emplace(id, std::move(sub));
    ++counters_.subscriptions;
    return Subscription(shared_from_this(), id);
  }

  std::string metricsText(Runtime& rt) {
    NodeCounters c;
    {
      std::lock_guard lock(notifyMutex_);
      c = counters_;
    }
    c.acceptFailures = acceptFailures_;
    if (storage_) {
      const StorageStats st = storage_->stats();
      c.storageCommits = st.commits;
      c.storageChanges = st.changes;
      c.storageBytes = st.bytes;
      c.storageCompactions = st.compactions;
      c.storageFailures = st.failures;
    }
    if (metricsServer_ != nullptr) {
      c.httpRefused = metricsServer_->refused();
      c.httpBadRequests = metricsServer_->badRequests();
    }
    std::string out;
    {
      std::shared_lock lock(stateMutex_);
      out = prometheusText(rt, c);
    }
    out += processText();
    return out;
  }

  // An object changed (under the state lock: on the loop thread, or a writer's).
  void changed(const gossip::Change& c) {
    if (control_) control_->changed(c.name);
    bool wake = false;
    {
      std::lock_guard lock(notifyMutex_);
      if (watched_.count(c.name) == 0) return;
      // Only the first change of a round wakes the notifier: later ones find it woken (it
      // checks for changes before it sleeps again).
      wake = dirty_.empty();
      dirty_[c.name] |= c.local() ? kLocal : kPeers;
    }
    if (wake) notifyCv_.notify_one();
  }
  // Loop thread: a membership event.
  void memberEvent(const gossip::MemberEvent& e) {
    std::lock_guard lock(notifyMutex_);
    if (memberSubs_ == 0) return;
    memberEvents_.push_back(publicEvent(e));
    notifyCv_.notify_one();
  }

  // Loop thread: the presence diffs of one step, to each subscription that wants them.
  void presenceChanged(std::map<std::string, gossip::PresenceDiff> diffs) {
    std::lock_guard lock(notifyMutex_);
    bool any = false;
    for (auto& [id, sub] : subs_) {
      if (!sub->presence) continue;
      for (const auto& [topic, d] : diffs) {
        if (!sub->allTopics && topic != sub->topic) continue;
        auto& pending = sub->pending[topic];
        pending.append(d);
        if (pending.empty()) sub->pending.erase(topic);
        any = true;
      }
    }
    if (any) {
      presenceDirty_ = true;
      notifyCv_.notify_one();
    }
  }

  // The discovery thread (NodeConfig::dnsSeeds): resolves each name now and every dnsRefreshMs,
  // and makes the seeds follow what the names give.
  void discover() {
    std::map<std::string, std::vector<std::string>> byName;  // the last addresses of each name
    std::set<std::string> added;                              // the seeds this thread added
    log::RateLimit failures(60'000);
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(discoveryMutex_);
    while (!discoveryStop_) {
      lock.unlock();
      for (const std::string& name : config_.dnsSeeds) {
        try {
          byName[name] = resolveSeeds(name);
        } catch (const std::exception& e) {
          const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
          if (failures.allow(static_cast<uint64_t>(ms.count()))) {
            log::warn("{} (keeping its last {} address(es); {} similar suppressed)", e.what(), byName[name].size(),
                      failures.suppressed());
          }
        }
      }
      std::set<std::string> now;
      for (const auto& [name, addresses] : byName) now.insert(addresses.begin(), addresses.end());
      try {
        onLoop([&](Runtime& rt) {
          for (const std::string& a : now) {
            if (added.count(a) == 0 && rt.addSeed(a)) added.insert(a);
          }
          for (auto it = added.begin(); it != added.end();) {
            if (now.count(*it) == 0) {
              rt.removeSeed(*it);
              it = added.erase(it);
            } else {
              ++it;
            }
          }
        });
      } catch (const std::exception&) {
        return;  // the node is closing
      }
      lock.lock();
      discoveryCv_.wait_for(lock, std::chrono::milliseconds(config_.dnsRefreshMs), [&] { return discoveryStop_; });
    }
  }

  // The notifier thread: coalesced changes -> callbacks.
  void notify() {
    std::unique_lock lock(notifyMutex_);
    auto lastRound = std::chrono::steady_clock::now() - kNotifyRound;
    for (;;) {
      notifyCv_.wait(lock, [&] { return stopping_ || !dirty_.empty() || !memberEvents_.empty() || presenceDirty_; });
      if (stopping_) return;
      // At most one round per kNotifyRound: under a stream of writes, what comes in meanwhile
      // is coalesced into the next round instead of costing every write a wake-up (a change after
      // a quiet spell is still reported at once).
      if (notifyCv_.wait_until(lock, lastRound + kNotifyRound, [&] { return stopping_; })) return;
      lastRound = std::chrono::steady_clock::now();
      lock.unlock();
      // This round's changes, and the state they are shown from, are taken together under the
      // state lock (changed() marks a change under it): whatever a subscription is shown has its
      // origin counted in this round. (Marks taken first and the state read later showed a
      // change that landed in between under the other changes' origins: a local write reported as
      // made by peers.) prepare() runs here too; callbacks run after, outside both locks.
      struct Changed {
        ChangeOrigin origin;
        bool copied = false;
        std::optional<gossip::Value> copy;
      };
      std::map<std::string, Changed> changed;
      std::map<uint64_t, std::function<void()>> calls;  // subscribe(): what prepare() returned
      std::vector<std::pair<uint64_t, std::shared_ptr<Sub>>> targets;
      decltype(memberEvents_) events;
      bool open = true;
      {
        std::shared_lock state(stateMutex_);
        lock.lock();
        presenceDirty_ = false;
        auto dirty = std::exchange(dirty_, {});
        events = std::exchange(memberEvents_, {});
        targets.assign(subs_.begin(), subs_.end());
        lock.unlock();
        for (const auto& [name, origins] : dirty) {
          changed[name].origin = origins == kLocal ? ChangeOrigin::local : origins == kPeers ? ChangeOrigin::peers : ChangeOrigin::both;
        }
        open = runtime_ != nullptr;  // (closing: nothing more is reported)
        for (auto& [id, sub] : targets) {
          if (!open || sub->presence || sub->members) continue;
          auto c = changed.find(sub->name);
          if (c == changed.end()) continue;
          const gossip::Value* v = runtime_->store().find(sub->name);
          // A deleted object looks absent: its subscribers see everything go, then nothing.
          if (v != nullptr && gossip::isTombstone(*v)) v = nullptr;
          if (sub->prepare) {
            try {
              calls[id] = sub->prepare(v, c->second.origin);
            } catch (const std::exception& e) {
              log::error("a subscription callback threw: {}", e.what());
            }
          } else if (!c->second.copied) {
            c->second.copied = true;
            if (v != nullptr) c->second.copy = *v;
          }
        }
      }
      lock.lock();
      for (auto& [id, sub] : targets) {
        if (subs_.count(id) == 0) continue;  // cancelled meanwhile
        const bool wanted = sub->presence  ? !sub->pending.empty()
                            : sub->members ? !events.empty()
                                           : changed.count(sub->name) != 0;
        if (!wanted) continue;
        calling_ = id;
        auto diffs = std::exchange(sub->pending, {});
        lock.unlock();
        try {
          if (sub->presence) {
            for (const auto& [topic, d] : diffs) {
              sub->onPresence(PresenceDiff{topic, publicEntries(d.joins), publicEntries(d.leaves)});
            }
          } else if (sub->members) {
            for (const auto& e : events) sub->onMember(e);
          } else if (open) {
            const Changed& c = changed.at(sub->name);
            if (auto call = calls.find(id); call != calls.end() && call->second) call->second();
            if (sub->deliver) sub->deliver(c.copy ? &*c.copy : nullptr, c.origin);
          }
        } catch (const std::exception& e) {
          log::error("a subscription callback threw: {}", e.what());
        }
        lock.lock();
        calling_ = 0;
        ++counters_.notifications;
        idleCv_.notify_all();
      }
    }
  }

  // Opens the data directory and decides under which id this run goes on (NodeConfig::dataDir,
  // Durability): the stored one, unless the previous run crashed in async durability.
  void openStorage() {
    if (config_.flushMs == 0) throw std::invalid_argument("NodeConfig: flushMs must be > 0");
    storage_ = Storage::open(config_.dataDir, config_.durability == Durability::sync);
    stored_ = storage_->load();
    if (stored_.id.value == 0) return;  // a new directory: this run's id
    const bool fixed = config_.id != 0 || config_.tls;
    if (!stored_.clean && config_.durability == Durability::async) {
      if (fixed) {
        throw StorageFailed("data directory '" + config_.dataDir + "': replica " + std::to_string(stored_.id.value) +
                            " did not close cleanly in async durability: it may have sent peers writes it never "
                            "stored, so it cannot go on under the same id (configure no id to take a new one, "
                            "or use sync durability)");
      }
      id_ = randomId();
      log::warn("data directory '{}': replica {} did not close cleanly in async durability; going on as replica {} "
                "with what it committed", config_.dataDir, stored_.id.value, id_.value);
      return;
    }
    if (fixed && id_ != stored_.id) {
      throw StorageFailed("data directory '" + config_.dataDir + "' holds replica " + std::to_string(stored_.id.value) +
                          ", but this node is configured as replica " + std::to_string(id_.value));
    }
    id_ = stored_.id;
  }

  // Loop thread: restores the stored state into rt and connects storage to it.
  void attachStorage(Runtime& rt) {
    std::vector<std::pair<std::string, gossip::Value>> objects;
    const std::string ownPresence = gossip::presenceObjectName(id_);
    for (auto& [name, value] : stored_.objects) {
      if (gossip::presenceOwner(name).value != 0 && name != ownPresence) continue;  // another run's id
      if (name == ownPresence) {
        // The previous run's connections are gone: its presences leave (peers learn it by
        // catch-up), while its dots stay in the context and are never minted again.
        if (auto* m = std::get_if<gossip::Map>(&value)) m->clear();
      }
      objects.emplace_back(std::move(name), std::move(value));
    }
    const size_t restored = objects.size();
    rt.restore(std::move(objects), stored_.seq, stored_.incarnation);
    storage_->begin(id_);
    rt.listen([s = storage_.get()](const gossip::Change& c) { s->record(c); });
    rt.setPersist([this, &rt] { return config_.durability == Durability::async || commitNow(rt); });
    if (stored_.id.value != 0) {
      log::info("data directory '{}': replica {} restored {} objects{}", config_.dataDir, id_.value, restored,
                stored_.clean ? "" : " (the previous run did not close cleanly)");
    }
    stored_ = StoredState{};
  }

  // Loop thread: commits what is pending; false (logged, rate-limited) when the commit failed.
  // Writers go on while it is written (Storage::take under the shared state lock, then commit).
  bool commitNow(Runtime& rt) {
    if (!storage_->dirty() && !storageFailing_) return true;
    try {
      Storage::Batch batch;
      {
        std::shared_lock lock(stateMutex_);
        batch = storage_->take(rt.store(), rt.engine().seq(), rt.membership().incarnation());
      }
      storage_->commit(std::move(batch));
      if (storageFailing_) log::info("data directory '{}': commits succeed again", config_.dataDir);
      storageFailing_ = false;
      return true;
    } catch (const StorageFailed& e) {
      storageFailing_ = true;
      if (storageLog_.allow(rt.nowMs())) {
        log::error("{}; nothing is sent to peers until a commit succeeds ({} similar suppressed)", e.what(),
                   storageLog_.suppressed());
      }
      return false;
    }
  }

  // Loop thread: what writers ring for: a commit (sync durability: every write recorded by then)
  // and write futures to watch.
  kj::Promise<void> wakeLoop(Runtime& rt, kj::Timer& timer, kj::TaskSet& tasks) {
    return wakeup_.next().then([this, &rt, &timer, &tasks] {
      if (storage_ && commitRequested_.exchange(false)) commitNow(rt);
      adoptWaiters(rt, timer, tasks);
      checkWaiters(rt);
      return wakeLoop(rt, timer, tasks);
    });
  }

  // Loop thread (ctl's confirm): like a write's future, for everything this node logged so far;
  // with `sync`, like Node::sync's (ctl get --sync).
  kj::Promise<WriteResult> confirm(Runtime& rt, kj::Timer& timer, kj::TaskSet& tasks, WriteTo to, bool sync = false) {
    auto paf = kj::newPromiseAndFulfiller<WriteResult>();
    auto w = std::make_shared<Waiter>();
    w->to = to;
    w->sync = sync;
    {
      std::shared_lock lock(stateMutex_);
      w->seq = rt.engine().seq();
    }
    w->ticket = storage_ ? storage_->recorded() : 0;
    auto fulfiller = std::make_shared<kj::Own<kj::PromiseFulfiller<WriteResult>>>(kj::mv(paf.fulfiller));
    w->complete = [fulfiller](WriteResult r, std::exception_ptr e) {
      auto& f = *fulfiller;
      if (!f->isWaiting()) return;  // the client went away
      if (!e) return f->fulfill(kj::mv(r));
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        f->reject(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(x.what())));
      }
    };
    {
      std::lock_guard lock(waitersMutex_);
      incoming_.push_back(std::move(w));
    }
    adoptWaiters(rt, timer, tasks);
    checkWaiters(rt);
    return kj::mv(paf.promise);
  }

  // Loop thread: the futures writers registered since the last call; majority is counted now.
  void adoptWaiters(Runtime& rt, kj::Timer& timer, kj::TaskSet& tasks) {
    std::vector<std::shared_ptr<Waiter>> fresh;
    {
      std::lock_guard lock(waitersMutex_);
      fresh.swap(incoming_);
    }
    if (fresh.empty()) return;
    uint32_t live = 0;
    for (const auto& m : rt.members()) {
      live += m.state == gossip::MemberState::alive || m.state == gossip::MemberState::suspect;
    }
    bool urgent = false;
    uint64_t syncId = 0;  // one request serves every read adopted now
    for (auto& w : fresh) {
      w->wanted = std::max(w->to.peers, w->to.majority ? live / 2 : 0);
      w->deadlineMs = rt.nowMs() + w->to.timeoutMs;
      if (w->sync) {
        if (w->wanted != 0 && syncId == 0) syncId = rt.requestSync();
        w->syncId = syncId;
      } else {
        urgent = urgent || w->wanted != 0;
      }
      tasks.add(timer.afterDelay(w->to.timeoutMs * kj::MILLISECONDS).then([this, &rt] { checkWaiters(rt); }));
      waiters_.push_back(std::move(w));
    }
    // A write that waits for peers goes out now, not at the next gossip round (up to
    // gossipIntervalMs later: bench/RESULTS.md, session 16, "write consistency").
    if (urgent) rt.flush();
  }

  // Loop thread: completes the futures whose writes are durable and held by enough peers, and
  // those whose time ran out. A peer holds a write once it acknowledged our log past it.
  void checkWaiters(Runtime& rt) {
    if (waiters_.empty()) return;
    const uint64_t now = rt.nowMs();
    std::vector<uint64_t> acked;
    std::map<uint64_t, uint32_t> synced;  // by sync request
    {
      std::shared_lock lock(stateMutex_);
      for (ReplicaId j : rt.engine().neighbors()) acked.push_back(rt.engine().ackedBy(j));
      for (const auto& w : waiters_) {
        if (w->sync && w->syncId != 0 && synced.count(w->syncId) == 0) synced[w->syncId] = rt.engine().syncedPeers(w->syncId);
      }
    }
    std::erase_if(waiters_, [&](const std::shared_ptr<Waiter>& w) {
      std::string error;
      if (w->sync) {
        const uint32_t held = w->syncId != 0 ? synced[w->syncId] : 0;
        if (held < w->wanted && now < w->deadlineMs) return false;
        w->complete(WriteResult{held >= w->wanted, held, w->wanted}, nullptr);
        return true;
      }
      const auto state = storage_ && config_.durability == Durability::sync ? storage_->ticket(w->ticket, &error)
                                                                            : Storage::Ticket::committed;
      if (state == Storage::Ticket::failed) {
        w->complete({}, std::make_exception_ptr(StorageFailed(error)));
        return true;
      }
      const auto held = static_cast<uint32_t>(std::count_if(acked.begin(), acked.end(), [&](uint64_t a) { return a >= w->seq; }));
      const bool reached = state == Storage::Ticket::committed && held >= w->wanted;
      if (!reached && now < w->deadlineMs) return false;
      w->complete(WriteResult{reached, held, w->wanted}, nullptr);
      return true;
    });
  }

  // Loop thread: commits every flushMs (async durability; in sync mode, retries a failed commit
  // every second) and saves the live members' addresses every 10 s.
  kj::Promise<void> flushLoop(kj::Timer& timer, Runtime& rt) {
    const uint64_t period = config_.durability == Durability::async ? config_.flushMs : 1000;
    return timer.afterDelay(period * kj::MILLISECONDS).then([this, &timer, &rt, period] {
      sinceMembersMs_ += period;
      if (sinceMembersMs_ >= 10000) {
        sinceMembersMs_ = 0;
        saveMembers(rt);
      }
      commitNow(rt);
      return flushLoop(timer, rt);
    });
  }

  // Loop thread (/readyz): why the node is not ready to serve, "" when it is: it has joined (a
  // live member besides itself, when it has seeds or stored members to join through) and its
  // commits succeed.
  std::string notReady() {
    if (runtime_ == nullptr) return "the node is stopping";
    if (storageFailing_) return "commits to the data directory fail (see the log)";
    if (runtime_->offline()) return "offline (Node::setOffline)";
    if (!runtime_->seeds().empty() || !config_.dnsSeeds.empty() || joinedBefore_) {
      bool joined = false;
      for (const auto& m : runtime_->members()) {
        joined |= !m.self && (m.state == gossip::MemberState::alive || m.state == gossip::MemberState::suspect);
      }
      if (!joined) return "no live member yet (joining through the seeds)";
    }
    return {};
  }

  // Loop thread, at the end: every future still waiting throws NodeClosed.
  void failWaiters() {
    {
      std::lock_guard lock(waitersMutex_);
      for (auto& w : incoming_) waiters_.push_back(std::move(w));
      incoming_.clear();
    }
    for (auto& w : waiters_) w->complete({}, std::make_exception_ptr(NodeClosed()));
    waiters_.clear();
  }

  void saveMembers(Runtime& rt) {
    std::vector<std::string> live;
    for (const auto& m : rt.members()) {
      if (!m.self && (m.state == gossip::MemberState::alive || m.state == gossip::MemberState::suspect)) {
        live.push_back(m.address);
      }
    }
    std::sort(live.begin(), live.end());
    storage_->saveMembers(std::move(live));
  }

  // The loop thread.
  void run(std::promise<void>& ready) {
    bool started = false;
    try {
      auto io = kj::setupAsyncIo();
      auto& network = io.provider->getNetwork();
      auto& timer = io.provider->getTimer();
      kj::Own<kj::ConnectionReceiver> listener;
      try {
        listener = network.parseAddress(config_.listen).wait(io.waitScope)->listen();
      } catch (const kj::Exception& e) {
        throw std::runtime_error("cannot listen on '" + config_.listen + "': " + e.getDescription().cStr());
      }
      address_ = config_.advertise.empty() ? splitHostPort(config_.listen).host + ":" + std::to_string(listener->getPort())
                                           : config_.advertise;
      kj::Own<kj::ConnectionReceiver> metricsListener;
      if (!config_.metricsListen.empty()) {
        try {
          metricsListener = network.parseAddress(config_.metricsListen).wait(io.waitScope)->listen();
        } catch (const kj::Exception& e) {
          throw std::runtime_error("cannot listen on '" + config_.metricsListen + "' (metrics): " +
                                   e.getDescription().cStr());
        }
        metricsAddress_ = splitHostPort(config_.metricsListen).host + ":" + std::to_string(metricsListener->getPort());
      }

      TcpDialer dialer(network);
      RuntimeConfig rc;
      rc.id = id_;
      rc.address = address_;
      rc.cluster = config_.cluster;
      rc.seeds = config_.seeds;
      joinedBefore_ = !stored_.members.empty();
      for (const auto& a : stored_.members) {  // rejoin through the members of the last run too
        if (a != address_ && std::find(rc.seeds.begin(), rc.seeds.end(), a) == rc.seeds.end()) rc.seeds.push_back(a);
      }
      applyTuning(config_.tuning, rc);
      rc.limits = config_.limits;
      rc.presence = presenceConfig(config_.presence);
      rc.clientSecret = config_.clientSecret;
      if (config_.tls) rc.tls = std::make_shared<Tls>(*config_.tls, config_.cluster, timer, rc.handshakeTimeoutMs);
      auto metricsNow = [this] {
        if (runtime_ == nullptr) throw std::runtime_error("the node is stopping");
        return metricsText(*runtime_);
      };
      ControlService control(clock_, metricsNow);
      auto rt = kj::heap<Runtime>(rc, config_.secret, timer, dialer, stateMutex_);
      control.attach(rt.get());
      control_ = &control;
      rt->setControl([&control](ReplicaId) { return control.client(); });
      rt->listen([this](const gossip::Change& c) { changed(c); });
      rt->setMemberListener([this](const gossip::MemberEvent& e) { memberEvent(e); });
      rt->setPresenceListener([this](std::map<std::string, gossip::PresenceDiff> d) { presenceChanged(std::move(d)); },
                              [this] { return presenceSubs_.load() != 0; });
      {
        std::unique_lock lock(stateMutex_);
        runtime_ = rt.get();
      }
      auto stop = kj::newPromiseAndFulfiller<void>();
      stop_ = kj::mv(stop.fulfiller);
      executor_ = kj::getCurrentThreadExecutor().addRef();

      struct Errors : kj::TaskSet::ErrorHandler {
        void taskFailed(kj::Exception&& e) override { log::warn("node task failed: {}", e.getDescription().cStr()); }
      } errors;
      kj::Own<MetricsServer> metricsServer;  // before tasks: outlives the accept loop
      kj::TaskSet tasks(errors);
      if (storage_) {
        attachStorage(*rt);
        control.setAfterWrite([this, &rt = *rt] {
          if (config_.durability == Durability::sync && !commitNow(rt)) {
            throw StorageFailed("the write is applied in memory but could not be committed (see the node's log)");
          }
        });
        tasks.add(flushLoop(timer, *rt));
      }
      tasks.add(acceptLoop(*listener, timer, "peer port",
                           [&rt = *rt](kj::Own<kj::AsyncIoStream> s) {
                             const std::string source = peerHost(*s);
                             rt.accept(kj::mv(s), source);
                           },
                           acceptFailures_));
      if (metricsListener) {
        metricsServer = kj::heap<MetricsServer>(timer, metricsNow, [this] { return notReady(); });
        MetricsServer* server = metricsServer_ = metricsServer.get();
        tasks.add(acceptLoop(*metricsListener, timer, "metrics port",
                             [server](kj::Own<kj::AsyncIoStream> s) { server->serve(kj::mv(s)); }, acceptFailures_));
      }
      tasks.add(wakeLoop(*rt, timer, tasks));
      control.setConfirm([this, &rt = *rt, &timer, &tasks](uint32_t peers, bool majority, uint64_t timeoutMs) {
        return confirm(rt, timer, tasks, WriteTo{peers, majority, timeoutMs});
      });
      control.setSync([this, &rt = *rt, &timer, &tasks](uint32_t peers, bool majority, uint64_t timeoutMs) {
        return confirm(rt, timer, tasks, WriteTo{peers, majority, timeoutMs}, /*sync=*/true);
      });
      rt->setStepListener([this, &rt = *rt] { checkWaiters(rt); });
      rt->start();
      log::info("replica {} listening on {} (cluster '{}')", id_.value, address_, config_.cluster);
      started = true;
      ready.set_value();

      stop.promise.wait(io.waitScope);
      rt->leave(config_.leaveGraceMs).wait(io.waitScope);
      {
        std::unique_lock lock(stateMutex_);
        runtime_ = nullptr;  // from here on, writers get NodeClosed: the close commits the last
      }
      adoptWaiters(*rt, timer, tasks);
      if (storage_) {
        try {
          saveMembers(*rt);
          storage_->close(rt->store(), rt->engine().seq(), rt->membership().incarnation());
        } catch (const StorageFailed& e) {
          log::error("{} (at close; the next start treats this run as not closed cleanly)", e.what());
          storage_->abandon(std::string("the node closed before its writes were committed: ") + e.what());
        }
      }
      control.attach(nullptr);
      checkWaiters(*rt);  // the last commit may have made some durable
      failWaiters();
      stop_ = nullptr;
      control_ = nullptr;
      metricsServer_ = nullptr;
      // tasks, the runtime (its connections), then the control service go, in that order.
    } catch (...) {
      if (!started) {
        ready.set_exception(std::current_exception());
      } else {
        try {
          throw;
        } catch (const std::exception& e) {
          log::error("the node's loop failed: {}", e.what());
        } catch (const kj::Exception& e) {
          log::error("the node's loop failed: {}", e.getDescription().cStr());
        }
        std::unique_lock lock(stateMutex_);
        runtime_ = nullptr;
      }
      if (storage_) storage_->abandon("the node's loop ended");
      failWaiters();
    }
  }

  NodeConfig config_;
  ReplicaId id_;
  std::string address_;
  std::string metricsAddress_;
  std::thread loop_;
  std::thread notifier_;
  std::thread discovery_;  // NodeConfig::dnsSeeds only
  std::mutex discoveryMutex_;
  std::condition_variable discoveryCv_;
  bool discoveryStop_ = false;  // under discoveryMutex_
  std::once_flag closeOnce_;
  kj::Own<const kj::Executor> executor_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> stop_;  // loop thread only
  mutable std::shared_mutex stateMutex_;
  Runtime* runtime_ = nullptr;         // written under the unique state lock
  ControlService* control_ = nullptr;  // set around runtime_'s life; changed() is thread-safe
  std::unique_ptr<Storage> storage_;   // null without a data directory
  StoredState stored_;                 // read by openStorage(), consumed by attachStorage()
  Wakeup wakeup_;                      // writers -> the loop: commit (sync durability), futures
  std::atomic<bool> commitRequested_{false};
  bool joinedBefore_ = false;  // stored members to rejoin through (a durable restart)
  // A write's future (writeTo): the storage ticket and engine sequence number after it.
  struct Waiter {
    WriteTo to;
    bool sync = false;        // a read's (Node::sync): waits for syncId's answers, not for acks
    uint64_t syncId = 0;      // (set on the loop)
    uint64_t ticket = 0;
    uint64_t seq = 0;
    uint32_t wanted = 0;      // peers (set on the loop: majority counts the members then)
    uint64_t deadlineMs = 0;  // Runtime::nowMs()
    std::function<void(WriteResult, std::exception_ptr)> complete;  // once, on the loop thread
  };
  std::mutex waitersMutex_;
  std::vector<std::shared_ptr<Waiter>> incoming_;  // under waitersMutex_, from writers
  std::vector<std::shared_ptr<Waiter>> waiters_;   // loop thread only
  bool storageFailing_ = false;        // loop thread only
  uint64_t sinceMembersMs_ = 0;        // loop thread only
  log::RateLimit storageLog_{10000};
  objects::Clock clock_;               // under the unique state lock

  std::mutex notifyMutex_;
  std::condition_variable notifyCv_;
  std::condition_variable idleCv_;
  std::map<uint64_t, std::shared_ptr<Sub>> subs_;
  std::map<std::string, int> watched_;
  size_t memberSubs_ = 0;
  // Presence subscriptions (changed under notifyMutex_; read by the loop under the state lock).
  std::atomic<size_t> presenceSubs_{0};
  static constexpr uint8_t kLocal = 1, kPeers = 2;
  static constexpr std::chrono::milliseconds kNotifyRound{1};
  std::map<std::string, uint8_t> dirty_;  // objects changed since the last notification: kLocal | kPeers
  std::vector<MemberEvent> memberEvents_;
  bool presenceDirty_ = false;
  std::atomic<uint64_t> nextConnection_{1};
  uint64_t nextSub_ = 1;
  uint64_t calling_ = 0;
  bool stopping_ = false;
  NodeCounters counters_;              // under notifyMutex_
  uint64_t acceptFailures_ = 0;        // loop thread only
  MetricsServer* metricsServer_ = nullptr;  // loop thread only
};

thread_local NodeCore::Batch* NodeCore::openBatches = nullptr;

}  // namespace detail

// ---- Subscription -------------------------------------------------------------------------

Subscription::Subscription(Subscription&& other) noexcept
    : core_(std::move(other.core_)), id_(std::exchange(other.id_, 0)) {}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    cancel();
    core_ = std::move(other.core_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

Subscription::~Subscription() { cancel(); }

void Subscription::cancel() {
  if (core_ && id_ != 0) core_->unsubscribe(id_);
  core_.reset();
  id_ = 0;
}

// ---- handles ------------------------------------------------------------------------------

namespace {

using W = objects::Write;

template <typename T>
const T* as(const gossip::Value* v, const std::string& name) {
  if (v == nullptr) return nullptr;
  if (const T* x = std::get_if<T>(v)) return x;
  if (gossip::isTombstone(*v)) throw ObjectDeleted("object '" + name + "' was deleted");
  throw KindMismatch("object '" + name + "' is a " + gossip::kindName(*v) + ", not a " +
                             gossip::kindName(gossip::Value(std::in_place_type<T>)));
}

// What changed between two sorted listings of an object (the whole-object subscriptions): `added`
// gets the items of `now` not in `last` (new or changed), `gone` the items of `last` whose key
// `now` no longer has (keyLess: the listings' order on keys alone).
template <typename T, typename KeyLess = std::less<T>>
void diffListings(const std::vector<T>& last, const std::vector<T>& now, std::vector<T>& added, std::vector<T>& gone,
                  KeyLess keyLess = {}) {
  std::set_difference(now.begin(), now.end(), last.begin(), last.end(), std::back_inserter(added));
  std::set_difference(last.begin(), last.end(), now.begin(), now.end(), std::back_inserter(gone), keyLess);
}

// A subscription to one value derived from object `name` of kind K (a counter's value, a
// register's, a flag's, a map key's): derive(const K* object) gives it (nullptr: absent or
// deleted); callback(before, after, origin) runs each time it changes. Objects of another kind
// are ignored (the handle's reads report the mismatch).
template <typename K, typename T, typename Derive, typename Callback>
Subscription watchValue(detail::NodeCore& core, const std::string& name, T initial, Derive derive, Callback callback) {
  // (derive runs under the shared state lock, on the live object; the callback after it.)
  auto last = std::make_shared<T>(std::move(initial));
  auto call = std::make_shared<Callback>(std::move(callback));
  return core.subscribe(name, [last, derive = std::move(derive), call](const gossip::Value* v,
                                                                       ChangeOrigin origin) -> std::function<void()> {
    if (v != nullptr && !std::holds_alternative<K>(*v)) return {};
    T now = derive(v != nullptr ? &std::get<K>(*v) : nullptr);
    if (now == *last) return {};
    T before = std::exchange(*last, now);
    return [call, before = std::move(before), now = std::move(now), origin] { (*call)(before, now, origin); };
  });
}

// Loop-side checks shared by the handle writes: the kind must match before anything changes.
std::vector<std::string> sortedElements(const crdt::ORSet<std::string>* s) {
  std::vector<std::string> out = s ? s->elements() : std::vector<std::string>{};
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> sortedEntries(const gossip::Map* m) {
  std::vector<std::pair<std::string, std::string>> out;
  if (m) {
    out.reserve(m->size());
    m->forEach([&](std::string_view k, const std::string& v) { out.emplace_back(std::string(k), v); });
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A counter step of n up or down as the signed `by` of a write (n at most INT64_MAX).
int64_t countBy(uint64_t n, bool up, const char* what) {
  if (n > static_cast<uint64_t>(INT64_MAX)) throw std::invalid_argument(std::string(what) + ": n > INT64_MAX");
  return up ? static_cast<int64_t>(n) : -static_cast<int64_t>(n);
}

}  // namespace

void Counter::increment(uint64_t n) {
  core_->write(W{.op = W::Op::increment, .name = &name_, .by = countBy(n, true, "Counter::increment")});
}

void Counter::decrement(uint64_t n) {
  core_->write(W{.op = W::Op::increment, .name = &name_, .by = countBy(n, false, "Counter::decrement")});
}

std::future<WriteResult> Counter::increment(uint64_t n, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::increment, .name = &name_, .by = countBy(n, true, "Counter::increment")}, to);
}

std::future<WriteResult> Counter::decrement(uint64_t n, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::increment, .name = &name_, .by = countBy(n, false, "Counter::decrement")}, to);
}

int64_t Counter::value() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* c = as<crdt::PNCounter>(v, name_);
    return c ? c->value() : int64_t{0};
  });
}

Subscription Counter::subscribe(std::function<void(const CounterChange&)> callback) {
  return watchValue<crdt::PNCounter>(
      *core_, name_, value(), [](const crdt::PNCounter* c) { return c ? c->value() : int64_t{0}; },
      [callback = std::move(callback)](int64_t before, int64_t after, ChangeOrigin origin) {
        callback(CounterChange{before, after, origin});
      });
}

namespace detail {

void BytesSet::add(const std::string& element) {
  core_->write(W{.op = W::Op::add, .name = &name_, .key = &element});
}

void BytesSet::remove(const std::string& element) {
  core_->write(W{.op = W::Op::remove, .name = &name_, .key = &element});
}

std::future<WriteResult> BytesSet::add(const std::string& element, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::add, .name = &name_, .key = &element}, to);
}

std::future<WriteResult> BytesSet::remove(const std::string& element, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::remove, .name = &name_, .key = &element}, to);
}

bool BytesSet::contains(const std::string& element) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* s = as<crdt::ORSet<std::string>>(v, name_);
    return s != nullptr && s->contains(element);
  });
}

std::vector<std::string> BytesSet::elements() const {
  return core_->read(name_, [&](const gossip::Value* v) { return sortedElements(as<crdt::ORSet<std::string>>(v, name_)); });
}

size_t BytesSet::size() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* s = as<crdt::ORSet<std::string>>(v, name_);
    return s ? s->size() : size_t{0};
  });
}

Subscription BytesSet::subscribe(std::function<void(const SetChange<std::string>&)> callback) {
  auto last = std::make_shared<std::vector<std::string>>(elements());
  return core_->subscribeCopies(name_, [last, callback = std::move(callback)](const gossip::Value* v, ChangeOrigin origin) {
    if (v != nullptr && !std::holds_alternative<crdt::ORSet<std::string>>(*v)) return;
    auto now = sortedElements(v ? &std::get<crdt::ORSet<std::string>>(*v) : nullptr);
    SetChange<std::string> change;
    change.origin = origin;
    diffListings(*last, now, change.added, change.removed);
    *last = std::move(now);
    if (!change.added.empty() || !change.removed.empty()) callback(change);
  });
}

void BytesMap::put(const std::string& key, const std::string& value) {
  core_->write(W{.op = W::Op::put, .name = &name_, .key = &key, .value = &value});
}

void BytesMap::remove(const std::string& key) {
  core_->write(W{.op = W::Op::removeKey, .name = &name_, .key = &key});
}

std::future<WriteResult> BytesMap::put(const std::string& key, const std::string& value, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::put, .name = &name_, .key = &key, .value = &value}, to);
}

std::future<WriteResult> BytesMap::remove(const std::string& key, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::removeKey, .name = &name_, .key = &key}, to);
}

std::optional<std::string> BytesMap::get(const std::string& key) const {
  return core_->read(name_, [&](const gossip::Value* v) -> std::optional<std::string> {
    const auto* m = as<gossip::Map>(v, name_);
    if (m == nullptr) return std::nullopt;
    const std::string* x = m->get(key);
    return x ? std::optional<std::string>(*x) : std::nullopt;
  });
}

std::vector<std::pair<std::string, std::string>> BytesMap::entries() const {
  return core_->read(name_, [&](const gossip::Value* v) { return sortedEntries(as<gossip::Map>(v, name_)); });
}

size_t BytesMap::size() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<gossip::Map>(v, name_);
    return m ? m->size() : size_t{0};
  });
}

Subscription BytesMap::subscribe(std::function<void(const MapChangeOf<std::string, std::string>&)> callback) {
  auto last = std::make_shared<std::vector<std::pair<std::string, std::string>>>(entries());
  return core_->subscribeCopies(name_, [last, callback = std::move(callback)](const gossip::Value* v, ChangeOrigin origin) {
    if (v != nullptr && !std::holds_alternative<gossip::Map>(*v)) return;
    auto now = sortedEntries(v ? &std::get<gossip::Map>(*v) : nullptr);
    MapChangeOf<std::string, std::string> change;
    change.origin = origin;
    std::vector<std::pair<std::string, std::string>> gone;
    diffListings(*last, now, change.put, gone, [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [k, value] : gone) change.removed.push_back(std::move(k));
    *last = std::move(now);
    if (!change.put.empty() || !change.removed.empty()) callback(change);
  });
}

Subscription BytesMap::subscribe(const std::string& key, std::function<void(const KeyChangeOf<std::string>&)> callback) {
  return watchValue<gossip::Map>(
      *core_, name_, get(key),
      [key](const gossip::Map* m) {
        const std::string* v = m ? m->get(key) : nullptr;
        return v ? std::optional<std::string>(*v) : std::nullopt;
      },
      [callback = std::move(callback)](std::optional<std::string> before, std::optional<std::string> after,
                                       ChangeOrigin origin) { callback({std::move(before), std::move(after), origin}); });
}

using LWW = crdt::LWWRegister<std::string>;
using MV = crdt::MVRegister<std::string>;

void BytesRegister::set(const std::string& value) {
  core_->write(W{.op = W::Op::setRegister, .name = &name_, .value = &value});
}

std::future<WriteResult> BytesRegister::set(const std::string& value, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setRegister, .name = &name_, .value = &value}, to);
}

std::optional<std::string> BytesRegister::get() const {
  return core_->read(name_, [&](const gossip::Value* v) -> std::optional<std::string> {
    const auto* r = as<LWW>(v, name_);
    return r != nullptr && r->get() != nullptr ? std::optional<std::string>(*r->get()) : std::nullopt;
  });
}

Subscription BytesRegister::subscribe(std::function<void(const KeyChangeOf<std::string>&)> callback) {
  return watchValue<LWW>(
      *core_, name_, get(),
      [](const LWW* r) { return r && r->get() ? std::optional<std::string>(*r->get()) : std::nullopt; },
      [callback = std::move(callback)](std::optional<std::string> before, std::optional<std::string> after,
                                       ChangeOrigin origin) { callback({std::move(before), std::move(after), origin}); });
}

void BytesMultiRegister::set(const std::string& value) {
  core_->write(W{.op = W::Op::writeMulti, .name = &name_, .value = &value});
}

std::future<WriteResult> BytesMultiRegister::set(const std::string& value, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::writeMulti, .name = &name_, .value = &value}, to);
}

void BytesMultiRegister::clear() {
  core_->write(W{.op = W::Op::clearMulti, .name = &name_});
}

std::future<WriteResult> BytesMultiRegister::clear(WriteTo to) {
  return core_->writeTo(W{.op = W::Op::clearMulti, .name = &name_}, to);
}

std::vector<std::string> BytesMultiRegister::values() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* r = as<MV>(v, name_);
    return r != nullptr ? r->values() : std::vector<std::string>{};
  });
}

Subscription BytesMultiRegister::subscribe(std::function<void(const MultiRegisterChange<std::string>&)> callback) {
  return watchValue<MV>(
      *core_, name_, values(), [](const MV* r) { return r ? r->values() : std::vector<std::string>{}; },
      [callback = std::move(callback)](std::vector<std::string> before, std::vector<std::string> after,
                                       ChangeOrigin origin) { callback({std::move(before), std::move(after), origin}); });
}

using Nested = crdt::ORMap<std::string, gossip::Map>;

void BytesMapOfMaps::put(const std::string& key, const std::string& inner, const std::string& value) {
  core_->write(W{.op = W::Op::nestedPut, .name = &name_, .key = &key, .inner = &inner, .value = &value});
}

std::future<WriteResult> BytesMapOfMaps::put(const std::string& key, const std::string& inner, const std::string& value,
                                             WriteTo to) {
  return core_->writeTo(W{.op = W::Op::nestedPut, .name = &name_, .key = &key, .inner = &inner, .value = &value}, to);
}

void BytesMapOfMaps::remove(const std::string& key, const std::string& inner) {
  core_->write(W{.op = W::Op::nestedRemove, .name = &name_, .key = &key, .inner = &inner});
}

std::future<WriteResult> BytesMapOfMaps::remove(const std::string& key, const std::string& inner, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::nestedRemove, .name = &name_, .key = &key, .inner = &inner}, to);
}

void BytesMapOfMaps::removeKey(const std::string& key) {
  core_->write(W{.op = W::Op::nestedRemoveKey, .name = &name_, .key = &key});
}

std::future<WriteResult> BytesMapOfMaps::removeKey(const std::string& key, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::nestedRemoveKey, .name = &name_, .key = &key}, to);
}

std::optional<std::string> BytesMapOfMaps::get(const std::string& key, const std::string& inner) const {
  return core_->read(name_, [&](const gossip::Value* v) -> std::optional<std::string> {
    const auto* m = as<Nested>(v, name_);
    if (m == nullptr || !m->contains(key)) return std::nullopt;
    const gossip::Map in = m->get(key);  // (a copy of the inner map: the map's own winner rule)
    const std::string* x = in.get(inner);
    return x != nullptr ? std::optional<std::string>(*x) : std::nullopt;
  });
}

std::vector<std::pair<std::string, std::string>> BytesMapOfMaps::entries(const std::string& key) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Nested>(v, name_);
    if (m == nullptr || !m->contains(key)) return std::vector<std::pair<std::string, std::string>>{};
    const gossip::Map inner = m->get(key);
    return sortedEntries(&inner);
  });
}

std::vector<std::string> BytesMapOfMaps::keys() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    std::vector<std::string> out;
    if (const auto* m = as<Nested>(v, name_)) m->forEachKey([&](const std::string& k) { out.push_back(k); });
    std::sort(out.begin(), out.end());
    return out;
  });
}

Subscription BytesMapOfMaps::subscribe(
    std::function<void(const MapOfMapsChange<std::string, std::string, std::string>&)> callback) {
  using Entry = std::tuple<std::string, std::string, std::string>;
  auto listed = [](const gossip::Value* v) {
    std::vector<Entry> out;
    if (const auto* m = v != nullptr ? std::get_if<Nested>(v) : nullptr) {
      m->forEachKey([&](const std::string& k) {
        const gossip::Map inner = m->get(k);
        inner.forEach([&](std::string_view ik, const std::string& x) { out.emplace_back(k, std::string(ik), x); });
      });
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  auto last = std::make_shared<std::vector<Entry>>(core_->read(name_, [&](const gossip::Value* v) {
    as<Nested>(v, name_);
    return listed(v);
  }));
  return core_->subscribeCopies(name_, [last, listed, callback = std::move(callback)](const gossip::Value* v, ChangeOrigin origin) {
    if (v != nullptr && !std::holds_alternative<Nested>(*v)) return;
    auto now = listed(v);
    MapOfMapsChange<std::string, std::string, std::string> change;
    change.origin = origin;
    std::vector<Entry> gone;
    diffListings(*last, now, change.put, gone, [](const Entry& a, const Entry& b) {
      return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
    });
    for (auto& [k, ik, x] : gone) change.removed.emplace_back(std::move(k), std::move(ik));
    *last = std::move(now);
    if (!change.put.empty() || !change.removed.empty()) callback(change);
  });
}

size_t BytesMapOfMaps::size() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Nested>(v, name_);
    return m ? m->size() : size_t{0};
  });
}

using Sets = gossip::MapOfSets;

void BytesMapOfSets::add(const std::string& key, const std::string& element) {
  core_->write(W{.op = W::Op::setsAdd, .name = &name_, .key = &key, .inner = &element});
}

std::future<WriteResult> BytesMapOfSets::add(const std::string& key, const std::string& element, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setsAdd, .name = &name_, .key = &key, .inner = &element}, to);
}

void BytesMapOfSets::remove(const std::string& key, const std::string& element) {
  core_->write(W{.op = W::Op::setsRemove, .name = &name_, .key = &key, .inner = &element});
}

std::future<WriteResult> BytesMapOfSets::remove(const std::string& key, const std::string& element, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setsRemove, .name = &name_, .key = &key, .inner = &element}, to);
}

void BytesMapOfSets::removeKey(const std::string& key) {
  core_->write(W{.op = W::Op::setsRemoveKey, .name = &name_, .key = &key});
}

std::future<WriteResult> BytesMapOfSets::removeKey(const std::string& key, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setsRemoveKey, .name = &name_, .key = &key}, to);
}

bool BytesMapOfSets::contains(const std::string& key, const std::string& element) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Sets>(v, name_);
    const auto* set = m != nullptr ? m->store().find(key) : nullptr;  // (read in place: no copy)
    return set != nullptr && set->containsKey(element);
  });
}

std::vector<std::string> BytesMapOfSets::elements(const std::string& key) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    std::vector<std::string> out;
    const auto* m = as<Sets>(v, name_);
    if (const auto* set = m != nullptr ? m->store().find(key) : nullptr) {
      set->forEachKey([&](std::string_view e) { out.emplace_back(e); });
    }
    std::sort(out.begin(), out.end());
    return out;
  });
}

std::vector<std::string> BytesMapOfSets::keys() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    std::vector<std::string> out;
    if (const auto* m = as<Sets>(v, name_)) m->forEachKey([&](const std::string& k) { out.push_back(k); });
    std::sort(out.begin(), out.end());
    return out;
  });
}

size_t BytesMapOfSets::size() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Sets>(v, name_);
    return m ? m->size() : size_t{0};
  });
}

Subscription BytesMapOfSets::subscribe(std::function<void(const MapOfSetsChange<std::string, std::string>&)> callback) {
  using Entry = std::pair<std::string, std::string>;
  auto listed = [](const gossip::Value* v) {
    std::vector<Entry> out;
    if (const auto* m = v != nullptr ? std::get_if<Sets>(v) : nullptr) {
      m->store().forEach([&](const std::string& k, const auto& set) {
        set.forEachKey([&](std::string_view e) { out.emplace_back(k, std::string(e)); });
      });
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  auto last = std::make_shared<std::vector<Entry>>(core_->read(name_, [&](const gossip::Value* v) {
    as<Sets>(v, name_);
    return listed(v);
  }));
  return core_->subscribeCopies(name_, [last, listed, callback = std::move(callback)](const gossip::Value* v, ChangeOrigin origin) {
    if (v != nullptr && !std::holds_alternative<Sets>(*v)) return;
    auto now = listed(v);
    MapOfSetsChange<std::string, std::string> change;
    change.origin = origin;
    diffListings(*last, now, change.added, change.removed);
    *last = std::move(now);
    if (!change.added.empty() || !change.removed.empty()) callback(change);
  });
}

using Counters = gossip::MapOfCounters;

void BytesMapOfCounters::increment(const std::string& key, uint64_t n) {
  core_->write(W{.op = W::Op::countersAdd, .name = &name_, .key = &key, .by = countBy(n, true, "MapOfCounters::increment")});
}

void BytesMapOfCounters::decrement(const std::string& key, uint64_t n) {
  core_->write(W{.op = W::Op::countersAdd, .name = &name_, .key = &key, .by = countBy(n, false, "MapOfCounters::decrement")});
}

std::future<WriteResult> BytesMapOfCounters::increment(const std::string& key, uint64_t n, WriteTo to) {
  return core_->writeTo(
      W{.op = W::Op::countersAdd, .name = &name_, .key = &key, .by = countBy(n, true, "MapOfCounters::increment")}, to);
}

std::future<WriteResult> BytesMapOfCounters::decrement(const std::string& key, uint64_t n, WriteTo to) {
  return core_->writeTo(
      W{.op = W::Op::countersAdd, .name = &name_, .key = &key, .by = countBy(n, false, "MapOfCounters::decrement")}, to);
}

void BytesMapOfCounters::removeKey(const std::string& key) {
  core_->write(W{.op = W::Op::countersRemoveKey, .name = &name_, .key = &key});
}

std::future<WriteResult> BytesMapOfCounters::removeKey(const std::string& key, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::countersRemoveKey, .name = &name_, .key = &key}, to);
}

int64_t BytesMapOfCounters::value(const std::string& key) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Counters>(v, name_);
    return m != nullptr ? m->value(key) : int64_t{0};
  });
}

bool BytesMapOfCounters::contains(const std::string& key) const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Counters>(v, name_);
    return m != nullptr && m->contains(key);
  });
}

std::vector<std::pair<std::string, int64_t>> BytesMapOfCounters::entries() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Counters>(v, name_);
    return m != nullptr ? m->entries() : std::vector<std::pair<std::string, int64_t>>{};
  });
}

size_t BytesMapOfCounters::size() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* m = as<Counters>(v, name_);
    return m != nullptr ? m->size() : size_t{0};
  });
}

Subscription BytesMapOfCounters::subscribe(std::function<void(const MapOfCountersChange<std::string>&)> callback) {
  using Entry = std::pair<std::string, int64_t>;
  auto listed = [](const gossip::Value* v) {
    const auto* m = v != nullptr ? std::get_if<Counters>(v) : nullptr;
    return m != nullptr ? m->entries() : std::vector<Entry>{};  // sorted by key
  };
  auto last = std::make_shared<std::vector<Entry>>(core_->read(name_, [&](const gossip::Value* v) {
    as<Counters>(v, name_);
    return listed(v);
  }));
  return core_->subscribeCopies(name_, [last, listed, callback = std::move(callback)](const gossip::Value* v, ChangeOrigin origin) {
    if (v != nullptr && !std::holds_alternative<Counters>(*v)) return;
    auto now = listed(v);
    MapOfCountersChange<std::string> change;
    change.origin = origin;
    std::vector<Entry> put, gone;
    auto keyLess = [](const Entry& a, const Entry& b) { return a.first < b.first; };
    diffListings(*last, now, put, gone, keyLess);
    for (auto& [key, after] : put) {
      auto was = std::lower_bound(last->begin(), last->end(), Entry{key, 0}, keyLess);
      const int64_t before = was != last->end() && was->first == key ? was->second : 0;
      change.changed.emplace_back(std::move(key), before, after);
    }
    for (auto& [key, before] : gone) change.changed.emplace_back(std::move(key), before, 0);
    std::sort(change.changed.begin(), change.changed.end());
    *last = std::move(now);
    if (!change.changed.empty()) callback(change);
  });
}

}  // namespace detail

void Flag::enable() {
  core_->write(W{.op = W::Op::setFlag, .name = &name_, .on = true});
}

void Flag::disable() {
  core_->write(W{.op = W::Op::setFlag, .name = &name_, .on = false});
}

std::future<WriteResult> Flag::enable(WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setFlag, .name = &name_, .on = true}, to);
}

std::future<WriteResult> Flag::disable(WriteTo to) {
  return core_->writeTo(W{.op = W::Op::setFlag, .name = &name_, .on = false}, to);
}

bool Flag::value() const {
  return core_->read(name_, [&](const gossip::Value* v) {
    const auto* f = as<crdt::EWFlag>(v, name_);
    return f != nullptr && f->read();
  });
}

Subscription Flag::subscribe(std::function<void(const FlagChange&)> callback) {
  return watchValue<crdt::EWFlag>(
      *core_, name_, value(), [](const crdt::EWFlag* f) { return f != nullptr && f->read(); },
      [callback = std::move(callback)](bool before, bool after, ChangeOrigin origin) {
        callback(FlagChange{before, after, origin});
      });
}

// ---- presence -----------------------------------------------------------------------------

PresenceConnection::PresenceConnection(PresenceConnection&& other) noexcept
    : core_(std::move(other.core_)), id_(std::exchange(other.id_, 0)) {}

PresenceConnection& PresenceConnection::operator=(PresenceConnection&& other) noexcept {
  if (this != &other) {
    try {
      close();
    } catch (const std::exception& e) {
      log::warn("closing a presence connection: {}", e.what());
    }
    core_ = std::move(other.core_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

PresenceConnection::~PresenceConnection() {
  try {
    close();
  } catch (const NodeClosed&) {
    // The node is gone, and its presences with it.
  } catch (const std::exception& e) {
    log::warn("closing a presence connection: {}", e.what());
  }
}

namespace {
void requireOpen(const std::shared_ptr<detail::NodeCore>& core) {
  if (!core) throw std::logic_error("PresenceConnection: closed (or moved from)");
}
}  // namespace

PresenceRef PresenceConnection::track(const std::string& topic, const std::string& key, const std::string& meta) {
  requireOpen(core_);
  return publicRef(core_->exclusive([&](Runtime& rt) {
    return rt.withPresence([&](gossip::PresenceTracker& t) { return t.track(id_, topic, key, meta); });
  }));
}

PresenceRef PresenceConnection::update(const std::string& topic, const std::string& key, const std::string& meta) {
  requireOpen(core_);
  return publicRef(core_->exclusive([&](Runtime& rt) {
    return rt.withPresence([&](gossip::PresenceTracker& t) { return t.update(id_, topic, key, meta); });
  }));
}

bool PresenceConnection::untrack(const std::string& topic, const std::string& key) {
  requireOpen(core_);
  return core_->exclusive([&](Runtime& rt) {
    return rt.withPresence([&](gossip::PresenceTracker& t) { return t.untrack(id_, topic, key); });
  });
}

void PresenceConnection::close() {
  if (!core_) return;
  auto core = std::move(core_);
  core->exclusive([&](Runtime& rt) {
    return rt.withPresence([&](gossip::PresenceTracker& t) { return t.close(id_); });
  });
}

PresenceConnection Presence::connect() { return PresenceConnection(core_, core_->newConnection()); }

std::vector<PresenceEntry> Presence::list(const std::string& topic) const {
  return core_->readPresence([&](const gossip::PresenceTracker& t) { return publicEntries(t.list(topic)); });
}

std::vector<PresenceMeta> Presence::get(const std::string& topic, const std::string& key) const {
  return core_->readPresence([&](const gossip::PresenceTracker& t) {
    std::vector<PresenceMeta> out;
    for (const auto& m : t.get(topic, key)) out.push_back(publicMeta(m));
    return out;
  });
}

size_t Presence::count(const std::string& topic) const {
  return core_->readPresence([&](const gossip::PresenceTracker& t) { return t.count(topic); });
}

std::vector<std::string> Presence::topics() const {
  return core_->readPresence([&](const gossip::PresenceTracker& t) { return t.topics(); });
}

std::vector<PresenceReplica> Presence::replicas() const {
  return core_->readPresence([&](const gossip::PresenceTracker& t) {
    std::vector<PresenceReplica> out;
    for (const auto& o : t.origins()) {
      out.push_back(PresenceReplica{o.id.value, publicStatus(o.status), o.sinceMs, o.presences, o.id == t.self()});
    }
    return out;
  });
}

Subscription Presence::subscribe(const std::string& topic, std::function<void(const PresenceDiff&)> callback) {
  return core_->subscribePresence(topic, false, std::move(callback));
}

Subscription Presence::subscribeAll(std::function<void(const PresenceDiff&)> callback) {
  return core_->subscribePresence({}, true, std::move(callback));
}

// ---- Node ---------------------------------------------------------------------------------

Node::Node(NodeConfig config) : core_(std::make_shared<detail::NodeCore>(std::move(config))) {}

Node::~Node() {
  try {
    close();
  } catch (const std::exception& e) {
    log::error("closing the node: {}", e.what());
  }
}

uint64_t Node::id() const { return core_->id().value; }
std::string Node::address() const { return core_->address(); }
std::string Node::metricsAddress() const { return core_->metricsAddress(); }

void Node::checkKind(const std::string& name, Kind kind) {
  objects::checkName(core_->limits(), name);
  core_->read(name, [&](const gossip::Value* v) {
    switch (kind) {
      case Kind::counter: as<crdt::PNCounter>(v, name); break;
      case Kind::set: as<crdt::ORSet<std::string>>(v, name); break;
      case Kind::map: as<gossip::Map>(v, name); break;
      case Kind::lwwRegister: as<crdt::LWWRegister<std::string>>(v, name); break;
      case Kind::mvRegister: as<crdt::MVRegister<std::string>>(v, name); break;
      case Kind::flag: as<crdt::EWFlag>(v, name); break;
      case Kind::mapOfMaps: as<crdt::ORMap<std::string, gossip::Map>>(v, name); break;
      case Kind::mapOfSets: as<gossip::MapOfSets>(v, name); break;
      case Kind::mapOfCounters: as<gossip::MapOfCounters>(v, name); break;
    }
    return 0;
  });
}

Counter Node::counter(const std::string& name) {
  checkKind(name, Kind::counter);
  return Counter(core_, name);
}

Flag Node::flag(const std::string& name) {
  checkKind(name, Kind::flag);
  return Flag(core_, name);
}

void Node::batch(const std::function<void()>& f) {
  if (core_->inBatch()) return f();  // joins the batch open on this thread
  core_->batch(f, [&](auto&& apply) { core_->commit(apply); });
}

std::future<WriteResult> Node::batch(const std::function<void()>& f, WriteTo to) {
  if (core_->inBatch()) throw std::logic_error("Node::batch with a WriteTo inside a batch of the same node");
  return core_->batch(f, [&](auto&& apply) { return core_->commitTo(apply, to); });
}

std::future<SyncResult> Node::sync(ReadFrom from) { return core_->sync(from); }

void Node::deleteObject(const std::string& name) {
  core_->write(W{.op = W::Op::erase, .name = &name});
}

std::future<WriteResult> Node::deleteObject(const std::string& name, WriteTo to) {
  return core_->writeTo(W{.op = W::Op::erase, .name = &name}, to);
}

Presence Node::presence() { return Presence(core_); }

std::vector<ObjectInfo> Node::objects() const {
  return core_->readStore([](const gossip::ObjectStore& store) {
    std::vector<ObjectInfo> out;
    for (const auto& [name, value] : objects::listed(store)) out.push_back(ObjectInfo{name, gossip::kindName(*value)});
    return out;
  });
}

std::vector<Member> Node::members() const {
  return core_->onLoop([](Runtime& rt) {
    std::vector<Member> out;
    for (const auto& r : rt.members()) out.push_back(publicMember(r));
    return out;
  });
}

Subscription Node::onMembers(std::function<void(const MemberEvent&)> callback) {
  return core_->subscribeMembers(std::move(callback));
}

std::string Node::metrics() const { return core_->metrics(); }

void Node::setOffline(bool offline) {
  core_->onLoop([offline](Runtime& rt) { rt.setOffline(offline); });
}

bool Node::offline() const {
  return core_->onLoop([](Runtime& rt) { return rt.offline(); });
}

bool Node::addSeed(const std::string& address) {
  return core_->onLoop([&](Runtime& rt) { return rt.addSeed(address); });
}

bool Node::removeSeed(const std::string& address) {
  return core_->onLoop([&](Runtime& rt) { return rt.removeSeed(address); });
}

std::vector<std::string> Node::seeds() const {
  return core_->onLoop([](Runtime& rt) { return rt.seeds(); });
}

void Node::close() { core_->close(); }

}  // namespace deltasync
