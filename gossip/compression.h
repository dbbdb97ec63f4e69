// zlib for state chunks (wire.capnp Compression.zlib). Decompression is bounded: output beyond
// maxOutput fails with DecodeError before it is produced, so a small "zip bomb" cannot make us
// allocate more than the limit.
#pragma once

#include <kj/array.h>

#include <cstddef>

namespace deltasync::gossip {

kj::Array<kj::byte> zlibCompress(kj::ArrayPtr<const kj::byte> in, int level = 6);

// Throws DecodeError on corrupt or truncated input, or output larger than maxOutput.
kj::Array<kj::byte> zlibDecompress(kj::ArrayPtr<const kj::byte> in, size_t maxOutput);

}  // namespace deltasync::gossip
