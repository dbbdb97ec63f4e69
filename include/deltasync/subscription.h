// deltasync::Subscription: ends a subscription (to an object, to members, to presence diffs)
// when destroyed or cancelled.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include <deltasync/export.h>

namespace deltasync {

namespace detail {
class NodeCore;
}

// Ends its subscription when destroyed (or by cancel()). After cancel() returns, the callback is
// not running and will not run again (unless cancel() is called from inside the callback).
class DELTASYNC_API Subscription {
 public:
  Subscription() = default;
  Subscription(Subscription&& other) noexcept;
  Subscription& operator=(Subscription&& other) noexcept;
  ~Subscription();
  void cancel();

 private:
  friend class detail::NodeCore;
  Subscription(std::shared_ptr<detail::NodeCore> core, uint64_t id) : core_(std::move(core)), id_(id) {}
  std::shared_ptr<detail::NodeCore> core_;
  uint64_t id_ = 0;
};

}  // namespace deltasync
