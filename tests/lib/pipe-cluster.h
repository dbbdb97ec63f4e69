// Several node runtimes (lib/runtime.h) on one KJ event loop, connected by kj::newTwoWayPipe
// through a fake dialer, on a timer the test advances by hand (tests/lib).
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "lib/objects.h"
#include "lib/runtime.h"

namespace deltasync::testing {

inline const std::string kSecret(40, 's');

// The dialling end of a PipeNet connection: once its address is cut (or its dialler muted),
// every write fails (DISCONNECTED), as a TCP connection's do when the path to the peer is gone.
class CuttableStream final : public kj::AsyncIoStream {
 public:
  CuttableStream(kj::Own<kj::AsyncIoStream> inner, const std::set<std::string>& cut, std::string address,
                 const std::set<std::string>& muted, std::string from)
      : inner_(kj::mv(inner)), cut_(cut), address_(std::move(address)), muted_(muted), from_(std::move(from)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner_->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    if (down()) return KJ_EXCEPTION(DISCONNECTED, "link cut", address_);
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    if (down()) return KJ_EXCEPTION(DISCONNECTED, "link cut", address_);
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

 private:
  bool down() const { return cut_.count(address_) != 0 || muted_.count(from_) != 0; }

  kj::Own<kj::AsyncIoStream> inner_;
  const std::set<std::string>& cut_;
  std::string address_;
  const std::set<std::string>& muted_;
  std::string from_;
};

// Addresses -> runtimes; a dial creates a pipe and hands the far end to the target's accept().
class PipeNet final : public Dialer {
 public:
  std::map<std::string, Runtime*> nodes;
  std::set<std::string> refusing;  // addresses whose dials fail
  // Addresses nobody reaches: dials fail and established connections to them stop carrying
  // writes (while connections they dialled keep working: a one-way cut).
  std::set<std::string> cut;
  // Addresses that reach nobody: their dials fail and connections they dialled stop carrying
  // writes (while connections to them keep working: the other one-way cut).
  std::set<std::string> muted;
  uint64_t dials = 0;
  std::vector<std::string> dialed;  // every address dialled, in order

  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& address) override { return connect({}, address); }

  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& from, const std::string& address) {
    ++dials;
    dialed.push_back(address);
    auto it = nodes.find(address);
    if (it == nodes.end() || refusing.count(address) != 0 || cut.count(address) != 0 || muted.count(from) != 0) {
      return KJ_EXCEPTION(DISCONNECTED, "connection refused", address);
    }
    auto pipe = kj::newTwoWayPipe();
    it->second->accept(kj::mv(pipe.ends[1]));
    return kj::Own<kj::AsyncIoStream>(kj::heap<CuttableStream>(kj::mv(pipe.ends[0]), cut, address, muted, from));
  }
};

// One runtime's way into a PipeNet: its dials come from its address (see PipeNet::muted).
class PipeDialer final : public Dialer {
 public:
  PipeDialer(PipeNet& net, std::string from) : net_(net), from_(std::move(from)) {}
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const std::string& address) override {
    return net_.connect(from_, address);
  }

 private:
  PipeNet& net_;
  std::string from_;
};

struct Cluster {
  // Cluster-wide runtime settings for start(); tests may change them first.
  std::function<void(RuntimeConfig&)> tune;

  kj::EventLoop loop;
  kj::WaitScope ws{loop};
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  PipeNet net;
  struct Slot {
    std::shared_mutex mutex;
    std::unique_ptr<PipeDialer> dialer;
    std::unique_ptr<Runtime> rt;
    std::vector<std::string> changes;
  };
  std::map<std::string, std::unique_ptr<Slot>> slots;  // by address

  Runtime& start(uint64_t id, const std::string& address, std::vector<std::string> seeds,
                 const std::string& secret = kSecret) {
    auto& slot = slots[address];
    if (!slot) slot = std::make_unique<Slot>();
    RuntimeConfig c;
    c.id = ReplicaId{id};
    c.address = address;
    c.seeds = std::move(seeds);
    c.gossipIntervalMs = 100;
    c.membership.probeIntervalMs = 200;
    c.membership.probeTimeoutMs = 80;
    c.membership.removeAfterMs = 3000;
    if (tune) tune(c);
    slot->rt.reset();
    slot->dialer = std::make_unique<PipeDialer>(net, address);
    slot->rt = std::make_unique<Runtime>(c, gossip::Secret(secret), timer, *slot->dialer, slot->mutex);
    Slot* s = slot.get();
    slot->rt->listen([s](const gossip::Change& c) { s->changes.push_back(c.name); });
    net.nodes[address] = slot->rt.get();
    slot->rt->start();
    return *slot->rt;
  }

  void crash(const std::string& address) {
    net.nodes.erase(address);
    slots[address]->rt.reset();  // its connections close: peers see disconnects
  }

  Runtime& at(const std::string& address) { return *slots.at(address)->rt; }

  // Advances simulated time in 5 ms steps, running everything that became ready.
  void run(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 5) {
      timer.advanceTo(timer.now() + 5 * kj::MILLISECONDS);
      ws.poll();  // also what other threads (and lib/wakeup.h) queued for this loop
    }
  }

  // Runs until pred() holds (checked every 50 ms), at most `limitMs`; returns whether it held.
  template <typename P>
  bool runUntil(P pred, uint64_t limitMs = 30000) {
    for (uint64_t t = 0; t <= limitMs; t += 50) {
      if (pred()) return true;
      run(50);
    }
    return pred();
  }

  std::vector<std::string> render(const std::string& address, const std::string& name) {
    const gossip::Value* v = at(address).store().find(name);
    return v ? objects::render(*v) : std::vector<std::string>{};
  }

  size_t liveMembers(const std::string& address) { return at(address).membership().liveMembers().size(); }
};

}  // namespace deltasync::testing
