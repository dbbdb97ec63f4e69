#include "gossip/compression.h"

#include <zlib.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "gossip/errors.h"

namespace deltasync::gossip {

namespace {

constexpr int kZlibWindow = 15;      // windowBits: zlib format, 32 KiB window
constexpr int kRawWindow = -15;      // raw deflate, 32 KiB window
constexpr int kRawLevel = 6;

// Deflates all of `in` with an initialized stream, then leaves it ready for reuse.
kj::Array<kj::byte> deflateAll(z_stream& zs, kj::ArrayPtr<const kj::byte> in) {
  auto out = kj::heapArray<kj::byte>(deflateBound(&zs, in.size()));
  zs.next_in = const_cast<Bytef*>(in.begin());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.begin();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);  // the bound guarantees one call suffices
  const size_t n = out.size() - zs.avail_out;
  deflateReset(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate failed");
  return kj::heapArray<kj::byte>(out.begin(), n);
}

// `what` names the input in errors ("chunk", "compact envelope").
kj::Array<kj::byte> inflateBounded(kj::ArrayPtr<const kj::byte> in, size_t maxOutput, int windowBits,
                                   const std::string& what) {
  z_stream zs{};
  if (inflateInit2(&zs, windowBits) != Z_OK) throw std::runtime_error("zlib: inflateInit failed");
  std::vector<kj::byte> out;
  kj::byte buf[16384];
  zs.next_in = const_cast<Bytef*>(in.begin());
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      std::string why = zs.msg ? zs.msg : "no data";
      inflateEnd(&zs);
      throw DecodeError("zlib: corrupt or truncated " + what + " (" + why + ")");
    }
    size_t produced = sizeof buf - zs.avail_out;
    if (out.size() + produced > maxOutput) {
      inflateEnd(&zs);
      throw DecodeError("zlib: " + what + " inflates beyond " + std::to_string(maxOutput) + " bytes");
    }
    out.insert(out.end(), buf, buf + produced);
    if (rc == Z_OK && zs.avail_in == 0 && produced == 0) {
      inflateEnd(&zs);
      throw DecodeError("zlib: truncated " + what);
    }
  }
  bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) throw DecodeError("zlib: trailing bytes after the compressed stream");
  return kj::heapArray<kj::byte>(out.data(), out.size());
}

// One reusable raw-deflate stream per thread.
struct RawDeflater {
  z_stream zs{};
  RawDeflater() {
    if (deflateInit2(&zs, kRawLevel, Z_DEFLATED, kRawWindow, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      throw std::runtime_error("zlib: deflateInit2 failed");
    }
  }
  ~RawDeflater() { deflateEnd(&zs); }
  RawDeflater(const RawDeflater&) = delete;
  RawDeflater& operator=(const RawDeflater&) = delete;
};

}  // namespace

kj::Array<kj::byte> zlibCompress(kj::ArrayPtr<const kj::byte> in, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, kZlibWindow, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("zlib: deflateInit2 failed");  // only on out-of-memory or bad level
  }
  try {
    auto out = deflateAll(zs, in);
    deflateEnd(&zs);
    return out;
  } catch (...) {
    deflateEnd(&zs);
    throw;
  }
}

kj::Array<kj::byte> zlibDecompress(kj::ArrayPtr<const kj::byte> in, size_t maxOutput) {
  return inflateBounded(in, maxOutput, kZlibWindow, "chunk");
}

kj::Array<kj::byte> deflateRaw(kj::ArrayPtr<const kj::byte> in) {
  thread_local RawDeflater d;
  return deflateAll(d.zs, in);
}

kj::Array<kj::byte> inflateRaw(kj::ArrayPtr<const kj::byte> in, size_t maxOutput) {
  return inflateBounded(in, maxOutput, kRawWindow, "compact envelope");
}

}  // namespace deltasync::gossip
