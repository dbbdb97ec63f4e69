// Accept loops that outlive resource exhaustion: the one way lib/ accepts connections (the
// gossip/ctl port and the metrics port).
//
// accept() fails when the process is out of descriptors (EMFILE), the system is (ENFILE), or
// memory is short; such a failure is a state, not an end: the pending connection stays in the
// listen backlog, and descriptors come back as connections close. So a failed accept is counted,
// logged (rate-limited, with how to raise the limit), and retried after a back-off that doubles
// from kRetryMinMs to kRetryMaxMs (a retry at once would spin: the listener stays readable) and
// starts over after the next success. The loop ends only when its promise is dropped.
#pragma once

#include <cstdint>
#include <string>

#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/timer.h>

namespace deltasync {

inline constexpr uint64_t kRetryMinMs = 20;
inline constexpr uint64_t kRetryMaxMs = 1000;

// Accepts on `listener` for ever, handing each connection to `sink`; `what` names the port in the
// log ("peer port", "metrics port"); `failures` counts failed accepts (loop thread).
kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener, kj::Timer& timer, std::string what,
                             kj::Function<void(kj::Own<kj::AsyncIoStream>)> sink, uint64_t& failures);

}  // namespace deltasync
