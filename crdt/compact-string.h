// CompactString: a 16-byte string for dot-store keys.
//
// std::string is 32 bytes in libstdc++ even for short keys. Map and set keys are mostly short
// (ids, names), so the dot stores keep std::string keys as CompactString: up to 15 bytes inline,
// longer ones on the heap. Layout invariant: bytes_[15] is the inline length (0..15), or kHeapTag
// when the string lives at heap_.ptr with length heap_.size.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crdt/errors.h"

namespace deltasync::crdt {

class CompactString {
 public:
  CompactString() { bytes_[15] = 0; }
  explicit CompactString(std::string_view s) { assign(s); }
  CompactString(const CompactString& o) { assign(o.view()); }
  CompactString(CompactString&& o) noexcept {
    std::memcpy(bytes_, o.bytes_, sizeof(bytes_));
    o.bytes_[15] = 0;
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
      o.bytes_[15] = 0;
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
  void assign(std::string_view s) {
    if (s.size() <= 15) {
      std::memcpy(bytes_, s.data(), s.size());
      bytes_[15] = static_cast<unsigned char>(s.size());
      return;
    }
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
      bytes_[15] = 0;
    }
  }
};

static_assert(sizeof(CompactString) == 16);

}  // namespace deltasync::crdt
