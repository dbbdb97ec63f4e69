// CompactString: a 16-byte string for dot-store keys.
//
// std::string is 32 bytes in libstdc++ even for short keys. Map and set keys are mostly short
// (ids, names), so the dot stores keep std::string keys as CompactString: up to 15 bytes inline,
// longer ones on the heap. Layout invariant: bytes_[15] is the inline length (0..15), or kHeapTag
// when the string lives at heap_.ptr with length heap_.size. An inline string's unused bytes are
// zero, so its 16 bytes are a canonical form that hashes without a byte loop (inlineBytes()).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crdt/errors.h"

namespace deltasync::crdt {

class CompactString {
 public:
  CompactString() { clearBytes(); }
  explicit CompactString(std::string_view s) { assign(s); }
  CompactString(const CompactString& o) {
    if (o.isInline()) {
      std::memcpy(bytes_, o.bytes_, sizeof(bytes_));  // the canonical form: copy it as is
    } else {
      assign(o.view());
    }
  }
  CompactString(CompactString&& o) noexcept {
    std::memcpy(bytes_, o.bytes_, sizeof(bytes_));
    o.clearBytes();
  }
  CompactString& operator=(const CompactString& o) {
    if (this != &o) {
      CompactString tmp(o);
      swap(tmp);
    }
    return *this;
  }
  CompactString& operator=(CompactString&& o) noexcept {
    if (this != &o) {
      release();
      std::memcpy(bytes_, o.bytes_, sizeof(bytes_));
      o.clearBytes();
    }
    return *this;
  }
  ~CompactString() { release(); }

  std::string_view view() const {
    if (isHeap()) {
      char* p;
      uint32_t n;
      std::memcpy(&p, bytes_, sizeof(p));
      std::memcpy(&n, bytes_ + 8, sizeof(n));
      return {p, n};
    }
    return {reinterpret_cast<const char*>(bytes_), bytes_[15]};
  }
  size_t heapBytes() const { return isHeap() ? view().size() : 0; }

  // Strings of up to 15 bytes are stored inline; their canonical 16 bytes are the string, zero
  // padding, and the length in the last byte.
  bool isInline() const { return !isHeap(); }
  const unsigned char* inlineBytes() const { return bytes_; }
  // Writes the canonical inline form of s (s.size() <= 15) to out[0..16). Keys are copied and
  // hashed once per write, and a call to memcpy with a variable size costs more than these
  // few overlapping fixed-size moves.
  static void inlineForm(std::string_view s, unsigned char* out) {
    const size_t n = s.size();
    const char* p = s.data();
    std::memset(out, 0, 16);
    if (n >= 8) {
      std::memcpy(out, p, 8);
      std::memcpy(out + n - 8, p + n - 8, 8);
    } else if (n >= 4) {
      std::memcpy(out, p, 4);
      std::memcpy(out + n - 4, p + n - 4, 4);
    } else if (n > 0) {
      out[0] = static_cast<unsigned char>(p[0]);
      out[n / 2] = static_cast<unsigned char>(p[n / 2]);
      out[n - 1] = static_cast<unsigned char>(p[n - 1]);
    }
    out[15] = static_cast<unsigned char>(n);
  }

  // Makes this the string whose canonical inline form (see inlineForm) is the little-endian words
  // w0, w1 (the form's bytes 0..7 and 8..15). Precondition: they are such a form (length byte <=
  // 15, bytes past the length zero). Decoders that build keys in registers store them this way.
  void assignInlineWords(uint64_t w0, uint64_t w1) {
    release();
    std::memcpy(bytes_, &w0, 8);
    std::memcpy(bytes_ + 8, &w1, 8);
  }

  void swap(CompactString& o) noexcept {
    unsigned char t[16];
    std::memcpy(t, bytes_, 16);
    std::memcpy(bytes_, o.bytes_, 16);
    std::memcpy(o.bytes_, t, 16);
  }

 private:
  static constexpr unsigned char kHeapTag = 0xFF;
  alignas(8) unsigned char bytes_[16];

  bool isHeap() const { return bytes_[15] == kHeapTag; }
  void clearBytes() { std::memset(bytes_, 0, sizeof(bytes_)); }
  void assign(std::string_view s) {
    if (s.size() <= 15) {
      inlineForm(s, bytes_);
    } else {
      assignHeap(s);
    }
  }
  // Out of line: keeps assign() small enough to inline for the common short key.
  [[gnu::noinline]] void assignHeap(std::string_view s) {
    if (s.size() > UINT32_MAX) throw LimitError("key longer than 4 GiB");
    char* p = new char[s.size()];
    std::memcpy(p, s.data(), s.size());
    uint32_t n = static_cast<uint32_t>(s.size());
    std::memcpy(bytes_, &p, sizeof(p));
    std::memcpy(bytes_ + 8, &n, sizeof(n));
    bytes_[15] = kHeapTag;
  }
  void release() {
    if (isHeap()) {
      char* p;
      std::memcpy(&p, bytes_, sizeof(p));
      delete[] p;
      clearBytes();
    }
  }
};

static_assert(sizeof(CompactString) == 16);

}  // namespace deltasync::crdt
