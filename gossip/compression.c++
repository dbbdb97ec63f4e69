#include "gossip/compression.h"

#include <zlib.h>

#include <string>
#include <vector>

#include "gossip/errors.h"

namespace deltasync::gossip {

kj::Array<kj::byte> zlibCompress(kj::ArrayPtr<const kj::byte> in, int level) {
  uLongf n = compressBound(in.size());
  auto out = kj::heapArray<kj::byte>(n);
  if (compress2(out.begin(), &n, in.begin(), in.size(), level) != Z_OK) {
    throw std::runtime_error("zlib compression failed");  // only on out-of-memory or bad level
  }
  return kj::heapArray<kj::byte>(out.begin(), n);
}

kj::Array<kj::byte> zlibDecompress(kj::ArrayPtr<const kj::byte> in, size_t maxOutput) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) throw std::runtime_error("zlib: inflateInit failed");
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
      inflateEnd(&zs);
      throw DecodeError(std::string("zlib: corrupt or truncated chunk (") + (zs.msg ? zs.msg : "no data") + ")");
    }
    size_t produced = sizeof buf - zs.avail_out;
    if (out.size() + produced > maxOutput) {
      inflateEnd(&zs);
      throw DecodeError("zlib: chunk inflates beyond " + std::to_string(maxOutput) + " bytes");
    }
    out.insert(out.end(), buf, buf + produced);
    if (rc == Z_OK && zs.avail_in == 0 && produced == 0) {
      inflateEnd(&zs);
      throw DecodeError("zlib: truncated chunk");
    }
  }
  bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) throw DecodeError("zlib: trailing bytes after the compressed stream");
  return kj::heapArray<kj::byte>(out.data(), out.size());
}

}  // namespace deltasync::gossip
