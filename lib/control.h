// The node's administration interface (wire.capnp's Control), what `deltasync ctl` talks to.
// Served to authenticated peers only (gossip/rpc.h: Replicator.control). Runs on the loop
// thread; every write goes through lib/objects.h like the handles' writes do.
//
// Watches: watch(name, watcher) sends the object's lines now and after every change, coalesced:
// at most one changed() call per watcher in flight; changes meanwhile are sent once it returns.
// A watch ends when its Subscription capability is dropped (ctl exits or disconnects) or a call
// to the watcher fails. A held presence (hold) likewise ends, and leaves, when its Subscription
// is dropped.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include <kj/async.h>

#include <deltasync/node.h>

#include "gossip/wire.capnp.h"
#include "lib/objects.h"
#include "lib/wakeup.h"

namespace deltasync {

class Runtime;

class ControlService {
 public:
  // `rt` is set later (the service is made before the runtime and outlives it).
  ControlService(objects::Clock& clock, std::function<std::string()> metrics);
  ~ControlService();
  void attach(Runtime* rt) { rt_ = rt; }
  // Run after every write (put, add, remove, incr), before it is answered: durable storage makes
  // it durable there (sync durability) or throws, and the client sees the error.
  void setAfterWrite(std::function<void()> f) { afterWrite_ = std::move(f); }
  // Serves Control.confirm (lib/node.c++: a write future's wait, for all that was logged so far);
  // unset: confirm fails.
  using ConfirmFn = std::function<kj::Promise<WriteResult>(uint32_t peers, bool majority, uint64_t timeoutMs)>;
  void setConfirm(ConfirmFn f) { confirm_ = std::move(f); }
  // Serves Control.sync (lib/node.c++: Node::sync's wait; the result's heldBy is the peers synced
  // with); unset: sync fails.
  void setSync(ConfirmFn f) { sync_ = std::move(f); }

  wire::Control::Client client();
  // From the node's change listener (any thread, under the state lock): `name` changed. The
  // watches of it are sent from the loop's thread, after the change.
  void changed(const std::string& name);
  size_t watchCount() const { return watches_.size(); }

 private:
  class Impl;
  class SubscriptionImpl;
  class HoldImpl;
  // Presence connection ids of held presences (Control.hold): the top bit set, so they never
  // meet the ids the node's handles hand out (counting up from 1).
  static constexpr uint64_t kHeldConnections = uint64_t{1} << 63;
  struct Watch {
    std::string name;
    wire::Watcher::Client watcher;
    const objects::TextType* keys;    // how to show the object (ctl --key-type, --type)
    const objects::TextType* values;
    // A flush is scheduled (after the current step) or a call to the watcher is outstanding;
    // changes meanwhile only set `dirty`, and the end of either flushes again.
    bool busy = false;
    bool dirty = false;  // changed since the last call
  };
  class ErrorHandler : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&&) override {}
  };

  uint64_t addWatch(std::string name, wire::Watcher::Client watcher, const objects::TextType& keys,
                    const objects::TextType& values);
  void removeWatch(uint64_t id);
  void flush(uint64_t id);
  kj::Promise<void> takeChanges();  // loop thread: the names changed() reported -> flush

  Runtime* rt_ = nullptr;
  objects::Clock& clock_;
  std::function<std::string()> metrics_;
  std::function<void()> afterWrite_;
  ConfirmFn confirm_;
  ConfirmFn sync_;
  std::map<uint64_t, Watch> watches_;
  std::atomic<size_t> watching_{0};  // watches_.size(), for changed() on other threads
  std::mutex changedMutex_;
  std::set<std::string> changed_;    // under changedMutex_
  Wakeup changes_;
  uint64_t nextWatch_ = 1;
  uint64_t nextHold_ = 1;
  ErrorHandler errors_;
  kj::TaskSet tasks_;
};

}  // namespace deltasync
