// Errors of gossip/. A DecodeError fails the one call that decoded the bad message; nothing of
// that message has been applied when it is thrown.
#pragma once

#include <stdexcept>
#include <string>

namespace deltasync::gossip {

class DecodeError : public std::runtime_error {
 public:
  explicit DecodeError(const std::string& what) : std::runtime_error("malformed message: " + what) {}
};

}  // namespace deltasync::gossip
