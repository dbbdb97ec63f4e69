#include "lib/listen.h"

#include "lib/log.h"

namespace deltasync {

namespace {

log::RateLimit acceptLog(10000);

struct Loop {
  kj::ConnectionReceiver& listener;
  kj::Timer& timer;
  std::string what;
  kj::Function<void(kj::Own<kj::AsyncIoStream>)> sink;
  uint64_t& failures;
  uint64_t backoffMs = 0;

  kj::Promise<void> next() {
    // evalNow: accept() may also throw before it returns a promise (it tries the syscall at once).
    return kj::evalNow([this] { return listener.accept(); }).then(
        [this](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<void> {
          backoffMs = 0;
          sink(kj::mv(stream));
          return next();
        },
        [this](kj::Exception&& e) -> kj::Promise<void> {
          ++failures;
          backoffMs = backoffMs == 0 ? kRetryMinMs : std::min(backoffMs * 2, kRetryMaxMs);
          const uint64_t nowMs = (timer.now() - kj::origin<kj::TimePoint>()) / kj::MILLISECONDS;
          if (acceptLog.allow(nowMs)) {
            log::error("accept on the {} failed: {}; retrying in {} ms (if out of descriptors, raise the limit: "
                       "ulimit -n, or LimitNOFILE= under systemd) ({} similar suppressed)",
                       what, e.getDescription().cStr(), backoffMs, acceptLog.suppressed());
          }
          return timer.afterDelay(backoffMs * kj::MILLISECONDS).then([this] { return next(); });
        });
  }
};

}  // namespace

kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener, kj::Timer& timer, std::string what,
                             kj::Function<void(kj::Own<kj::AsyncIoStream>)> sink, uint64_t& failures) {
  auto loop = kj::heap<Loop>(Loop{listener, timer, std::move(what), kj::mv(sink), failures});
  auto promise = loop->next();
  return promise.attach(kj::mv(loop));
}

}  // namespace deltasync
