#include "gossip/message.h"

#include <capnp/serialize.h>

namespace deltasync::gossip {

IncomingMessage::IncomingMessage(kj::ArrayPtr<const kj::byte> bytes, const Limits& limits) {
  if (bytes.size() > limits.maxMessageBytes) {
    throw DecodeError("message of " + std::to_string(bytes.size()) + " bytes exceeds limits.maxMessageBytes (" +
                      std::to_string(limits.maxMessageBytes) + ")");
  }
  if (bytes.size() < 8 || bytes.size() % 8 != 0) {
    throw DecodeError("message size " + std::to_string(bytes.size()) + " is not a whole number of words");
  }
  auto u32 = [&](size_t i) {
    uint32_t v;
    std::memcpy(&v, bytes.begin() + 4 * i, 4);
    return v;  // capnp framing is little-endian, as are our targets
  };
  uint64_t segments = uint64_t{u32(0)} + 1;
  if (segments > limits.maxSegments) {
    throw DecodeError("message has " + std::to_string(segments) + " segments, limits.maxSegments is " +
                      std::to_string(limits.maxSegments));
  }
  uint64_t tableWords = (segments + 2) / 2;  // (1 + segments) uint32s, padded to a word
  uint64_t totalWords = bytes.size() / 8;
  if (tableWords > totalWords) throw DecodeError("segment table runs past the end of the message");
  uint64_t bodyWords = 0;
  for (uint64_t s = 0; s < segments; ++s) bodyWords += u32(1 + s);
  if (tableWords + bodyWords != totalWords) {
    throw DecodeError("segment sizes (" + std::to_string(bodyWords) + " words) do not match the message (" +
                      std::to_string(totalWords - tableWords) + " words after the table)");
  }
  words_ = kj::heapArray<capnp::word>(totalWords);
  std::memcpy(words_.begin(), bytes.begin(), bytes.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = limits.traversalLimitWords;
  options.nestingLimit = limits.nestingLimit;
  try {
    reader_ = kj::heap<capnp::FlatArrayMessageReader>(words_.asPtr(), options);
  } catch (const kj::Exception& e) {
    throw DecodeError(std::string("capnp: ") + e.getDescription().cStr());
  }
}

kj::Array<kj::byte> frame(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = kj::heapArray<kj::byte>(words.asBytes().size());
  std::memcpy(bytes.begin(), words.asBytes().begin(), bytes.size());
  return bytes;
}

}  // namespace deltasync::gossip
