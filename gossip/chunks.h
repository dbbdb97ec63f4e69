// Chunked state transfer of one causal value: the parts of gossip/split.h, each framed as its own
// CausalState message of bounded size, decoding and joining independently, in any order.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "gossip/codec.h"
#include "gossip/message.h"
#include "gossip/split.h"

namespace deltasync::gossip {

inline constexpr size_t kDefaultChunkBytes = 64 << 10;

namespace _ {

template <typename T>
kj::Array<kj::byte> frameCausal(const T& x) {
  capnp::MallocMessageBuilder mb;
  encodeCausal(x, mb.initRoot<wire::CausalState>());
  return frame(mb);
}

}  // namespace _

// Causal dot-store types: ORSet, AWLWWMap, MVRegister, EWFlag.
template <typename T>
std::vector<kj::Array<kj::byte>> encodeChunks(const T& x, size_t maxChunkBytes = kDefaultChunkBytes) {
  std::vector<kj::Array<kj::byte>> out;
  for (const SizedPart<T>& p : splitCausal(x, maxChunkBytes, [](const T& p) { return _::frameCausal(p).size(); })) {
    out.push_back(_::frameCausal(p.part));
  }
  return out;
}

// Decodes one chunk (any framed CausalState message) under the given limits.
template <typename T>
T decodeChunk(kj::ArrayPtr<const kj::byte> bytes, const Limits& limits) {
  IncomingMessage in(bytes, limits);
  return in.decodeRoot<wire::CausalState>(
      [&](wire::CausalState::Reader r) { return decodeCausal<T>(r, limits); });
}

}  // namespace deltasync::gossip
