// Wakes a KJ event loop from any thread: writers on an application's threads asking the node's
// loop for a commit (lib/node.c++), or for a ctl watch to be sent (lib/control.c++).
//
// ring() from any thread, any number of times; the loop waits on next(), which resolves once
// after one or more rings (rings while nobody waits are kept as one). A ring costs a mutex, and
// a write to the loop's event fd only when the loop is waiting.
#pragma once

#include <mutex>

#include <kj/async.h>

namespace deltasync {

class Wakeup {
 public:
  void ring() {
    std::lock_guard lock(mutex_);
    if (waiting_) {
      waiting_->fulfill();
      waiting_ = nullptr;
    } else {
      rung_ = true;
    }
  }

  // On the loop's thread: resolves at the next ring, or at once if rung since the last call.
  kj::Promise<void> next() {
    std::lock_guard lock(mutex_);
    if (rung_) {
      rung_ = false;
      return kj::READY_NOW;
    }
    auto pair = kj::newPromiseAndCrossThreadFulfiller<void>();
    waiting_ = kj::mv(pair.fulfiller);
    return kj::mv(pair.promise);
  }

 private:
  std::mutex mutex_;
  bool rung_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> waiting_;
};

}  // namespace deltasync
