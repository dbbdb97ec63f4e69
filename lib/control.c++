#include "lib/control.h"

#include <mutex>
#include <shared_mutex>
#include <stdexcept>

#include <deltasync/presence.h>

#include "lib/log.h"
#include "lib/runtime.h"

namespace deltasync {

namespace {

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// Runs f, turning a std::exception into a failed call that names the problem.
template <typename F>
kj::Promise<void> guarded(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(e.what()));
  }
  return kj::READY_NOW;
}

const objects::TextType& typeOf(capnp::Text::Reader t) { return objects::textType(text(t)); }

// objects::render, its CodecError naming the object and what to check.
std::vector<std::string> shown(const std::string& name, const gossip::Value& v, const objects::TextType& keys,
                               const objects::TextType& values) {
  try {
    return objects::render(v, keys, values);
  } catch (const CodecError& e) {
    throw CodecError("object '" + name + "' does not read as keys of type " + keys.name + " and values of type " +
                     values.name + " (--key-type, --type): " + e.what());
  }
}

void setLines(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& lines) {
  for (size_t i = 0; i < lines.size(); ++i) out.set(i, capnp::Text::Reader(lines[i].data(), lines[i].size()));
}

const char* statusName(gossip::OriginStatus s) {
  switch (s) {
    case gossip::OriginStatus::up: return "up";
    case gossip::OriginStatus::suspect: return "suspect";
    case gossip::OriginStatus::down: return "down";
    case gossip::OriginStatus::gone: return "gone";
  }
  return "?";
}

// As applications see refs (PresenceRef::text()); "-" for none.
std::string refText(const gossip::PresenceRef& r) {
  return r.counter == 0 ? "-" : PresenceRef{r.origin.value, r.counter}.text();
}

// Under the shared state lock.
std::vector<std::string> presenceLines(const gossip::PresenceTracker& t, const std::string& what,
                                       const std::string& topic) {
  std::vector<std::string> lines;
  if (what == "list") {
    if (topic.empty()) throw std::invalid_argument("presence list needs a topic");
    for (const auto& [key, metas] : t.list(topic)) {
      for (const auto& m : metas) lines.push_back(key + " " + refText(m.ref) + " " + refText(m.previous) + " " + m.meta);
    }
  } else if (what == "topics") {
    for (const auto& name : t.topics()) lines.push_back(name + " " + std::to_string(t.count(name)));
  } else if (what == "replicas") {
    for (const auto& o : t.origins()) {
      lines.push_back(std::to_string(o.id.value) + " " + (o.id == t.self() ? "self" : statusName(o.status)) + " " +
                      std::to_string(o.sinceMs) + " " + std::to_string(o.presences));
    }
  } else {
    throw std::invalid_argument("presence: '" + what + "' is not one of list, topics, replicas");
  }
  return lines;
}

}  // namespace

class ControlService::SubscriptionImpl final : public wire::Subscription::Server {
 public:
  SubscriptionImpl(ControlService& service, uint64_t id) : service_(service), id_(id) {}
  ~SubscriptionImpl() { service_.removeWatch(id_); }

 private:
  ControlService& service_;
  uint64_t id_;
};

// A presence held for a client (Control.hold): its tracker connection closes with it.
class ControlService::HoldImpl final : public wire::Subscription::Server {
 public:
  HoldImpl(ControlService& service, uint64_t connection) : service_(service), connection_(connection) {}
  ~HoldImpl() {
    if (service_.rt_ == nullptr) return;  // the node is stopping: its presences go with it
    try {
      std::unique_lock lock(service_.rt_->stateMutex());
      service_.rt_->withPresence([&](gossip::PresenceTracker& t) { return t.close(connection_); });
    } catch (const std::exception& e) {
      log::warn("releasing a held presence: {}", e.what());
    }
  }

 private:
  ControlService& service_;
  uint64_t connection_;
};

class ControlService::Impl final : public wire::Control::Server {
  // A write: f(Runtime&) under the unique state lock, then the after-write hook (without it).
  template <typename F>
  kj::Promise<void> write(F&& f) {
    return guarded([&] {
      {
        std::unique_lock lock(rt().stateMutex());
        f(rt());
      }
      if (service_.afterWrite_) service_.afterWrite_();
    });
  }
  // A read: f(const Runtime&) under the shared state lock.
  template <typename F>
  kj::Promise<void> read(F&& f) {
    return guarded([&] {
      std::shared_lock lock(rt().stateMutex());
      f(rt());
    });
  }

 public:
  explicit Impl(ControlService& service) : service_(service) {}

 protected:
  kj::Promise<void> get(GetContext context) override {
    return read([&](const Runtime& rt) {
      const gossip::Value* v = rt.store().find(text(context.getParams().getName()));
      auto results = context.getResults();
      if (v == nullptr) return;
      results.setKind(gossip::kindName(*v));
      auto lines = shown(text(context.getParams().getName()), *v, typeOf(context.getParams().getKeyType()),
                         typeOf(context.getParams().getValueType()));
      setLines(results.initLines(lines.size()), lines);
    });
  }
  kj::Promise<void> put(PutContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) {
      objects::put(rt, service_.clock_, text(p.getName()), typeOf(p.getKeyType()).fromText(text(p.getKey())),
                   typeOf(p.getValueType()).fromText(text(p.getValue())));
    });
  }
  kj::Promise<void> add(AddContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) {
      objects::add(rt, text(p.getName()), typeOf(p.getValueType()).fromText(text(p.getElement())));
    });
  }
  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) {
      // A set's element is a value, a map's (or a map of counters') key a key: the node knows
      // which `name` is.
      const gossip::Value* v = rt.store().find(text(p.getName()));
      const bool map = v != nullptr && (std::holds_alternative<gossip::Map>(*v) ||
                                        std::holds_alternative<gossip::MapOfCounters>(*v));
      const auto& type = typeOf(map ? p.getKeyType() : p.getValueType());
      objects::removeAny(rt, text(p.getName()), type.fromText(text(p.getElement())));
    });
  }
  kj::Promise<void> deleteObject(DeleteObjectContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) { objects::erase(rt, text(p.getName())); });
  }
  kj::Promise<void> setRegister(SetRegisterContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) {
      objects::setRegister(rt, service_.clock_, text(p.getName()), typeOf(p.getValueType()).fromText(text(p.getValue())));
    });
  }
  kj::Promise<void> setFlag(SetFlagContext context) override {
    auto p = context.getParams();
    return write([&](Runtime& rt) { objects::setFlag(rt, text(p.getName()), p.getOn()); });
  }
  kj::Promise<void> incr(IncrContext context) override {
    auto p = context.getParams();
    if (p.hasKey()) {
      return write([&](Runtime& rt) {
        objects::countersAdd(rt, text(p.getName()), typeOf(p.getKeyType()).fromText(text(p.getKey())), p.getBy());
      });
    }
    return write([&](Runtime& rt) { objects::increment(rt, text(p.getName()), p.getBy()); });
  }
  kj::Promise<void> members(MembersContext context) override {
    auto rows = rt().members();
    auto out = context.getResults().initMembers(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      out[i].setId(rows[i].id.value);
      out[i].setAddress(capnp::Text::Reader(rows[i].address.data(), rows[i].address.size()));
      out[i].setState(rows[i].self ? "self" : gossip::stateName(rows[i].state));
      out[i].setIncarnation(rows[i].incarnation);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> seeds(SeedsContext context) override {
    return guarded([&] {
      auto p = context.getParams();
      const std::string op = text(p.getOp());
      bool changed = false;
      if (op == "add") {
        changed = rt().addSeed(text(p.getAddress()));
      } else if (op == "remove") {
        changed = rt().removeSeed(text(p.getAddress()));
      } else if (op != "list") {
        throw std::invalid_argument("seeds: op must be list, add or remove, not \"" + op + "\"");
      }
      auto out = context.getResults();
      out.setChanged(changed);
      setLines(out.initSeeds(static_cast<unsigned>(rt().seeds().size())), rt().seeds());
    });
  }
  kj::Promise<void> stats(StatsContext context) override {
    auto s = service_.metrics_();
    context.getResults().setText(capnp::Text::Reader(s.data(), s.size()));
    return kj::READY_NOW;
  }
  kj::Promise<void> presence(PresenceContext context) override {
    auto p = context.getParams();
    return read([&](const Runtime& rt) {
      auto lines = presenceLines(rt.presence(), text(p.getWhat()), text(p.getTopic()));
      setLines(context.getResults().initLines(lines.size()), lines);
    });
  }
  kj::Promise<void> confirm(ConfirmContext context) override {
    if (!service_.confirm_) return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString("this node cannot confirm writes"));
    auto p = context.getParams();
    return service_.confirm_(p.getPeers(), p.getMajority(), p.getTimeoutMs()).then([context](WriteResult r) mutable {
      auto out = context.getResults();
      out.setReached(r.reached);
      out.setHeldBy(r.heldBy);
      out.setWanted(r.wanted);
    });
  }
  kj::Promise<void> sync(SyncContext context) override {
    if (!service_.sync_) return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString("this node cannot sync"));
    auto p = context.getParams();
    return service_.sync_(p.getPeers(), p.getMajority(), p.getTimeoutMs()).then([context](WriteResult r) mutable {
      auto out = context.getResults();
      out.setReached(r.reached);
      out.setSyncedWith(r.heldBy);
      out.setWanted(r.wanted);
    });
  }
  kj::Promise<void> objects(ObjectsContext context) override {
    return read([&](const Runtime& rt) {
      std::vector<std::string> lines;
      for (const auto& [name, value] : objects::listed(rt.store())) lines.push_back(name + " " + gossip::kindName(*value));
      setLines(context.getResults().initLines(lines.size()), lines);
    });
  }
  kj::Promise<void> hold(HoldContext context) override {
    auto p = context.getParams();
    return guarded([&] {
      const uint64_t connection = kHeldConnections | service_.nextHold_++;
      std::unique_lock lock(rt().stateMutex());
      auto ref = rt().withPresence(
          [&](gossip::PresenceTracker& t) { return t.track(connection, text(p.getTopic()), text(p.getKey()), text(p.getMeta())); });
      lock.unlock();
      auto results = context.getResults();
      const std::string r = refText(ref);
      results.setRef(capnp::Text::Reader(r.data(), r.size()));
      results.setSubscription(kj::heap<HoldImpl>(service_, connection));
    });
  }
  kj::Promise<void> watch(WatchContext context) override {
    auto p = context.getParams();
    uint64_t id = service_.addWatch(text(p.getName()), p.getWatcher(), typeOf(p.getKeyType()), typeOf(p.getValueType()));
    context.getResults().setSubscription(kj::heap<SubscriptionImpl>(service_, id));
    return kj::READY_NOW;
  }

 private:
  Runtime& rt() {
    if (service_.rt_ == nullptr) throw std::runtime_error("the node is stopping");
    return *service_.rt_;
  }
  ControlService& service_;
};

ControlService::ControlService(objects::Clock& clock, std::function<std::string()> metrics)
    : clock_(clock), metrics_(std::move(metrics)), tasks_(errors_) {
  tasks_.add(takeChanges());
}

kj::Promise<void> ControlService::takeChanges() {
  return changes_.next().then([this] {
    std::set<std::string> names;
    {
      std::lock_guard lock(changedMutex_);
      names.swap(changed_);
    }
    for (auto& [id, w] : watches_) {
      if (names.count(w.name) == 0) continue;
      w.dirty = true;
      flush(id);  // busy: flushed again when the outstanding call returns
    }
    return takeChanges();
  });
}

ControlService::~ControlService() = default;

wire::Control::Client ControlService::client() { return kj::heap<Impl>(*this); }

uint64_t ControlService::addWatch(std::string name, wire::Watcher::Client watcher, const objects::TextType& keys,
                                  const objects::TextType& values) {
  uint64_t id = nextWatch_++;
  watches_.emplace(id, Watch{std::move(name), kj::mv(watcher), &keys, &values});
  watching_.store(watches_.size());
  watches_.at(id).dirty = true;
  flush(id);
  return id;
}

void ControlService::removeWatch(uint64_t id) {
  watches_.erase(id);
  watching_.store(watches_.size());
}

void ControlService::changed(const std::string& name) {
  if (watching_.load() == 0) return;
  bool first;
  {
    std::lock_guard lock(changedMutex_);
    first = changed_.empty();
    changed_.insert(name);
  }
  if (first) changes_.ring();
}

void ControlService::flush(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end() || it->second.busy || !it->second.dirty || rt_ == nullptr) return;
  Watch& w = it->second;
  w.dirty = false;
  w.busy = true;
  auto request = w.watcher.changedRequest();
  {
    std::shared_lock lock(rt_->stateMutex());
    if (const gossip::Value* v = rt_->store().find(w.name)) {
      request.setKind(gossip::kindName(*v));
      std::vector<std::string> lines;
      try {
        lines = shown(w.name, *v, *w.keys, *w.values);
      } catch (const CodecError& e) {
        lines = {std::string("error: ") + e.what()};  // (the watch goes on: a later change may fit)
      }
      setLines(request.initLines(lines.size()), lines);
    }
  }
  tasks_.add(request.send().then(
      [this, id](auto&&) {
        if (auto it = watches_.find(id); it != watches_.end()) {
          it->second.busy = false;
          flush(id);
        }
      },
      [this, id](kj::Exception&&) { removeWatch(id); }));
}

}  // namespace deltasync
