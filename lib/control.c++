#include "lib/control.h"

#include <stdexcept>

#include "lib/runtime.h"

namespace deltasync {

namespace {

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

const char* stateName(gossip::MemberState s) {
  switch (s) {
    case gossip::MemberState::alive: return "alive";
    case gossip::MemberState::suspect: return "suspect";
    case gossip::MemberState::down: return "down";
    case gossip::MemberState::left: return "left";
  }
  return "?";
}

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

void setLines(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& lines) {
  for (size_t i = 0; i < lines.size(); ++i) out.set(i, capnp::Text::Reader(lines[i].data(), lines[i].size()));
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

class ControlService::Impl final : public wire::Control::Server {
 public:
  explicit Impl(ControlService& service) : service_(service) {}

 protected:
  kj::Promise<void> get(GetContext context) override {
    return guarded([&] {
      const gossip::Value* v = rt().store().find(text(context.getParams().getName()));
      auto results = context.getResults();
      if (v == nullptr) return;
      results.setKind(gossip::kindName(*v));
      auto lines = objects::render(*v);
      setLines(results.initLines(lines.size()), lines);
    });
  }
  kj::Promise<void> put(PutContext context) override {
    auto p = context.getParams();
    return guarded([&] { objects::put(rt(), service_.clock_, text(p.getName()), text(p.getKey()), text(p.getValue())); });
  }
  kj::Promise<void> add(AddContext context) override {
    auto p = context.getParams();
    return guarded([&] { objects::add(rt(), text(p.getName()), text(p.getElement())); });
  }
  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return guarded([&] { objects::removeAny(rt(), text(p.getName()), text(p.getElement())); });
  }
  kj::Promise<void> incr(IncrContext context) override {
    auto p = context.getParams();
    return guarded([&] { objects::increment(rt(), text(p.getName()), p.getBy()); });
  }
  kj::Promise<void> members(MembersContext context) override {
    auto rows = rt().members();
    auto out = context.getResults().initMembers(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      out[i].setId(rows[i].id.value);
      out[i].setAddress(capnp::Text::Reader(rows[i].address.data(), rows[i].address.size()));
      out[i].setState(rows[i].self ? "self" : stateName(rows[i].state));
      out[i].setIncarnation(rows[i].incarnation);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> stats(StatsContext context) override {
    auto s = service_.metrics_();
    context.getResults().setText(capnp::Text::Reader(s.data(), s.size()));
    return kj::READY_NOW;
  }
  kj::Promise<void> watch(WatchContext context) override {
    auto p = context.getParams();
    uint64_t id = service_.addWatch(text(p.getName()), p.getWatcher());
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
    : clock_(clock), metrics_(std::move(metrics)), tasks_(errors_) {}

ControlService::~ControlService() = default;

wire::Control::Client ControlService::client() { return kj::heap<Impl>(*this); }

uint64_t ControlService::addWatch(std::string name, wire::Watcher::Client watcher) {
  uint64_t id = nextWatch_++;
  watches_.emplace(id, Watch{std::move(name), kj::mv(watcher)});
  watches_.at(id).dirty = true;
  flush(id);
  return id;
}

void ControlService::changed(const std::string& name) {
  for (auto& [id, w] : watches_) {
    if (w.name != name) continue;
    w.dirty = true;
    if (!w.busy) {
      // After the current step: several changes in one message make one call.
      w.busy = true;
      tasks_.add(kj::evalLater([this, id = id]() {
        if (auto it = watches_.find(id); it != watches_.end()) {
          it->second.busy = false;
          flush(id);
        }
      }));
    }
  }
}

void ControlService::flush(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end() || it->second.busy || !it->second.dirty || rt_ == nullptr) return;
  Watch& w = it->second;
  w.dirty = false;
  w.busy = true;
  auto request = w.watcher.changedRequest();
  if (const gossip::Value* v = rt_->store().find(w.name)) {
    request.setKind(gossip::kindName(*v));
    auto lines = objects::render(*v);
    setLines(request.initLines(lines.size()), lines);
  }
  tasks_.add(request.send().then(
      [this, id](auto&&) {
        if (auto it = watches_.find(id); it != watches_.end()) {
          it->second.busy = false;
          flush(id);
        }
      },
      [this, id](kj::Exception&&) { watches_.erase(id); }));
}

}  // namespace deltasync
