// Varint (unsigned LEB128) and zigzag column encoding for gossip/wire.capnp's Data columns.
// Pure byte handling: no capnp here, so the format is testable on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/errors.h"

namespace deltasync::gossip {

inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t unzigzag(uint64_t u) { return static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1); }

// Bytes appendVarint takes for v.
inline size_t varintSize(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// Appends v as a varint to any byte container (a std::string or ColumnWriter's vector).
template <typename Bytes>
void appendVarint(Bytes& out, uint64_t v) {
  using Byte = typename Bytes::value_type;
  while (v >= 0x80) {
    out.push_back(static_cast<Byte>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<Byte>(v));
}

class ColumnWriter {
 public:
  void varint(uint64_t v) { appendVarint(bytes_, v); }
  void signedVarint(int64_t v) { varint(zigzag(v)); }
  void raw(std::string_view s) { bytes_.insert(bytes_.end(), s.begin(), s.end()); }
  void byte(unsigned char b) { bytes_.push_back(b); }
  // 8 bytes, little-endian (replica ids: random, so a varint would only be longer).
  void fixed64(uint64_t v) {
    for (int b = 0; b < 8; ++b) bytes_.push_back(static_cast<unsigned char>(v >> (8 * b)));
  }
  const std::vector<unsigned char>& bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  void reserve(size_t n) { bytes_.reserve(n); }
  // Empties the writer and keeps its buffer (a writer reused for many small values allocates once).
  void clear() { bytes_.clear(); }

 private:
  std::vector<unsigned char> bytes_;
};

// Reads a column; every malformed input throws DecodeError naming the column.
//
// Every member that runs per value is inline, and nothing out of line takes the reader's address
// (the slow varint path and the failures get plain values), so a reader that is a local variable
// lives in registers. Decoders store bytes into what they build, and a store through a char
// pointer may alias any object in memory, so a reader kept in memory has its position reloaded
// after every such store (and holds back whatever decodes next to it; bench/RESULTS.md,
// session 6).
class ColumnReader {
 public:
  ColumnReader(const unsigned char* data, size_t size, const char* column)
      : begin_(data), p_(data), end_(data + size), column_(column) {}

  uint64_t varint() {
    // Most column values (indexes, small deltas, lengths) take one or two bytes: read those
    // without the loop's per-byte checks; the loop decodes the rest (and every error).
    if (end_ - p_ >= 2) {
      const uint64_t b0 = p_[0];
      if (b0 < 0x80) {
        p_ += 1;
        return b0;
      }
      const uint64_t b1 = p_[1];
      if (b1 < 0x80) {
        p_ += 2;
        return (b0 & 0x7f) | (b1 << 7);
      }
    }
    Slow r = varintLoop(p_, end_, column_);
    p_ = r.p;
    return r.v;
  }
  int64_t signedVarint() { return unzigzag(varint()); }
  std::string_view raw(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) fail("length runs past the end of the column");
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  unsigned char byte() {
    if (p_ == end_) fail("truncated");
    return *p_++;
  }
  uint64_t fixed64() {
    if (end_ - p_ < 8) fail("truncated 8-byte value");
    uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= uint64_t(p_[b]) << (8 * b);
    p_ += 8;
    return v;
  }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  size_t consumed() const { return static_cast<size_t>(p_ - begin_); }
  bool atEnd() const { return p_ == end_; }
  void expectEnd() const {
    if (p_ != end_) fail("trailing bytes after the last value");
  }
  const char* column() const { return column_; }
  [[noreturn]] void fail(const std::string& what) const { failIn(column_, what); }
  // Throws the DecodeError that a reader of `column` throws for `what`.
  [[noreturn, gnu::cold, gnu::noinline]] static void failIn(const char* column, const std::string& what) {
    throw DecodeError(std::string("column '") + column + "': " + what);
  }

 private:
  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
  const char* column_;

  struct Slow {
    uint64_t v;
    const unsigned char* p;
  };
  // Out of line so that varint() inlines; takes and returns plain values (see the class comment).
  [[gnu::noinline]] static Slow varintLoop(const unsigned char* p, const unsigned char* end,
                                           const char* column) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (p == end) failIn(column, "truncated varint");
      unsigned char b = *p++;
      if (shift == 63 && (b & 0x7e) != 0) failIn(column, "varint overflows 64 bits");
      v |= uint64_t(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return {v, p};
    }
    failIn(column, "varint longer than 10 bytes");
  }
};

}  // namespace deltasync::gossip
