// zlib for state chunks (wire.capnp Compression.zlib) and raw deflate for large compact envelopes
// (wire.capnp Envelope.compact, flag 0x80 of the kind byte). Decompression is bounded: output
// beyond maxOutput fails with DecodeError before it is produced, so a small "zip bomb" cannot
// make us allocate more than the limit.
#pragma once

#include <kj/array.h>

#include <cstddef>

namespace deltasync::gossip {

kj::Array<kj::byte> zlibCompress(kj::ArrayPtr<const kj::byte> in, int level = 6);

// Throws DecodeError on corrupt or truncated input, or output larger than maxOutput.
kj::Array<kj::byte> zlibDecompress(kj::ArrayPtr<const kj::byte> in, size_t maxOutput);

// Raw deflate (RFC 1951: no zlib header or checksum, 6 bytes less; the message that carries it
// is framed and checked already). The compressing stream is kept per thread and reset between
// calls, so a small message does not pay for setting up zlib's ~256 KiB of tables.
kj::Array<kj::byte> deflateRaw(kj::ArrayPtr<const kj::byte> in);

// As zlibDecompress, for deflateRaw's output.
kj::Array<kj::byte> inflateRaw(kj::ArrayPtr<const kj::byte> in, size_t maxOutput);

}  // namespace deltasync::gossip
