// The limits the decoder enforces on untrusted input are the public deltasync::Limits
// (include/deltasync/limits.h documents each); the protocol code names them gossip::Limits.
#pragma once

#include <deltasync/limits.h>

namespace deltasync::gossip {

using Limits = deltasync::Limits;

}  // namespace deltasync::gossip
