// Framing of whole messages: capnp's standard (unpacked) stream framing, read from untrusted
// bytes with every size checked before Cap'n Proto follows a single pointer.
//
// readMessage() checks, in order: total size <= limits.maxMessageBytes; size a whole number of
// 8-byte words; segment count (from the first word) <= limits.maxSegments; the segment table fits;
// the segment sizes add up to exactly the bytes given (no trailing garbage). Only then does a
// FlatArrayMessageReader see the words, with limits.traversalLimitWords and limits.nestingLimit.
// Errors Cap'n Proto raises later while the caller reads (a pointer out of bounds, the traversal
// limit) are kj::Exceptions: decodeRoot() turns them into DecodeError as well.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <cstring>
#include <string>
#include <utility>

#include "gossip/errors.h"
#include "gossip/limits.h"

namespace deltasync::gossip {

class IncomingMessage {
 public:
  // Validates the framing (see above) and keeps an aligned copy of the words.
  IncomingMessage(kj::ArrayPtr<const kj::byte> bytes, const Limits& limits);

  // Runs decode(root) and converts Cap'n Proto's errors into DecodeError.
  template <typename Wire, typename F>
  auto decodeRoot(F&& decode) {
    try {
      return decode(reader_->getRoot<Wire>());
    } catch (const kj::Exception& e) {
      throw DecodeError(std::string("capnp: ") + e.getDescription().cStr());
    }
  }

 private:
  kj::Array<capnp::word> words_;
  kj::Own<capnp::FlatArrayMessageReader> reader_;
};

// The framed bytes of a built message.
kj::Array<kj::byte> frame(capnp::MessageBuilder& message);

}  // namespace deltasync::gossip
