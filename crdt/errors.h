// Errors raised by crdt/. Only what a caller reacts to differently gets its own type.
#pragma once

#include <stdexcept>
#include <string>

namespace deltasync::crdt {

// A documented capacity limit would be exceeded (dot counter >= 2^48, more than 65535 replicas
// with live dots in one dot store, more than 2^32 - 1 entries). The state is left unchanged.
class LimitError : public std::length_error {
 public:
  using std::length_error::length_error;
};

}  // namespace deltasync::crdt
