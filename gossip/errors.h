// Errors of gossip/. A DecodeError fails the one call that decoded the bad message; a
// ProtocolError, a well-formed message that contradicts local state (an object of another kind,
// a forged write, a sender that is not the authenticated peer, a timestamp too far ahead). Nothing of the message has been
// applied when either is thrown.
#pragma once

#include <stdexcept>
#include <string>

namespace deltasync::gossip {

class DecodeError : public std::runtime_error {
 public:
  explicit DecodeError(const std::string& what) : std::runtime_error("malformed message: " + what) {}
};

class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A delta carrying a timestamp further ahead of this node's wall clock than the engine accepts
// (EngineConfig::maxForwardSkewMs): the sender's clock, or ours, is wrong.
class ClockSkewRefused : public ProtocolError {
 public:
  using ProtocolError::ProtocolError;
};

}  // namespace deltasync::gossip
