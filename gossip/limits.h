// The limits the decoder enforces on untrusted input are the public deltasync::Limits
// (include/deltasync/limits.h documents each); the protocol code names them gossip::Limits.
//
// The rules for what one write may put into an object are stated here once, and asked both by
// the decoders (what peers send) and by lib/objects (what is written on this node): a write a
// node accepts locally is one its peers, under the same Limits, accept. A write that breaks them
// would otherwise be refused by every peer inside each push that carries it, and with it every
// later write of that node.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include <deltasync/limits.h>

namespace deltasync::gossip {

using Limits = deltasync::Limits;

// What is wrong with an object name ("" when nothing): non-empty, at most maxNameBytes, no NUL
// byte (names travel as Cap'n Proto text).
inline std::string nameProblem(std::string_view name, const Limits& limits) {
  if (name.empty()) return "empty object name";
  if (name.size() > limits.maxNameBytes) {
    return "object name longer than limits.maxNameBytes (" + std::to_string(name.size()) + " > " +
           std::to_string(limits.maxNameBytes) + " bytes)";
  }
  if (name.find('\0') != std::string_view::npos) return "object name contains a NUL byte";
  return {};
}

// Set elements and map keys: at most maxKeyBytes (any bytes).
inline std::string keyProblem(size_t bytes, const Limits& limits) {
  if (bytes <= limits.maxKeyBytes) return {};
  return "key longer than limits.maxKeyBytes (" + std::to_string(bytes) + " > " + std::to_string(limits.maxKeyBytes) +
         " bytes)";
}

// Map and register values: at most maxValueBytes (any bytes).
inline std::string valueProblem(size_t bytes, const Limits& limits) {
  if (bytes <= limits.maxValueBytes) return {};
  return "value longer than limits.maxValueBytes (" + std::to_string(bytes) + " > " +
         std::to_string(limits.maxValueBytes) + " bytes)";
}

// How far `compressed` bytes may inflate (see Limits::maxInflateRatio).
inline size_t inflateBound(size_t compressed, const Limits& limits) {
  const size_t ratio = compressed > limits.maxMessageBytes / limits.maxInflateRatio ? limits.maxMessageBytes
                                                                                     : compressed * limits.maxInflateRatio;
  return std::min(limits.maxMessageBytes, std::max(limits.inflateFloorBytes, ratio));
}

}  // namespace deltasync::gossip
