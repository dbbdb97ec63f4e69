// deltasync::Codec<T>: how a Set's elements and a Map's keys and values become the bytes that
// replicate, and back.
//
// Built in: std::string (its bytes as they are), deltasync::Bytes (a byte string), int64_t,
// uint64_t, double and bool. A user type is made storable by specialising one trait:
//
//   template <> struct deltasync::Codec<Point> {
//     static std::string encode(const Point& p) { ... }       // any bytes
//     static Point decode(std::string_view bytes) { ... }      // throws on bytes it cannot read
//   };
//
// Invariants the node relies on, which a user codec must keep:
//   - decode(encode(x)) == x, and encode is deterministic: equal values give equal bytes (an
//     element or key IS its bytes: two encodings of one value would be two elements);
//   - decode throws (any std::exception) on bytes it does not accept, and never crashes: bytes
//     come from peers and from `deltasync ctl`, which may hold anything.
// The encoded form is subject to the node's limits (include/deltasync/limits.h) like any value.
//
// The built-in codecs preserve order: their bytes sort (as unsigned bytes, which is how
// elements() and entries() sort) as the values do, so an integer map lists its keys
// numerically. Integers are 8 bytes big-endian (int64_t with its sign bit flipped); a double is
// its IEEE 754 bits, made to sort (every bit flipped for a negative number, the sign bit only
// otherwise; -0.0 and 0.0 are two values); a bool is one byte, 0 or 1.
//
// A stored value that does not decode as the handle's type (written by a handle of another
// type, or by `ctl`) makes the read that meets it throw CodecError naming the object; see
// Set and Map for subscriptions.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <deltasync/errors.h>

namespace deltasync {

using Bytes = std::vector<std::byte>;

template <typename T>
struct Codec;  // specialise for a user type: static encode(const T&) -> std::string, static decode(std::string_view) -> T

// A type the handles can store: Codec<T> has an encode to bytes and a decode back.
template <typename T>
concept Encodable = requires(const T& x, std::string_view bytes) {
  { Codec<T>::encode(x) } -> std::convertible_to<const std::string&>;
  { Codec<T>::decode(bytes) } -> std::same_as<T>;
};

template <>
struct Codec<std::string> {
  static const std::string& encode(const std::string& s) { return s; }  // no copy on the write path
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

template <>
struct Codec<Bytes> {
  static std::string encode(const Bytes& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }
  static Bytes decode(std::string_view bytes) {
    const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
    return Bytes(p, p + bytes.size());
  }
};

namespace detail {

inline std::string bigEndian64(uint64_t x) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, x >>= 8) out[static_cast<size_t>(i)] = static_cast<char>(x & 0xff);
  return out;
}

inline uint64_t fromBigEndian64(std::string_view bytes, const char* type) {
  if (bytes.size() != 8) {
    throw CodecError(std::string(type) + " takes 8 bytes, not " + std::to_string(bytes.size()));
  }
  uint64_t x = 0;
  for (char c : bytes) x = x << 8 | static_cast<unsigned char>(c);
  return x;
}

inline constexpr uint64_t kSignBit = uint64_t{1} << 63;

}  // namespace detail

template <>
struct Codec<uint64_t> {
  static std::string encode(uint64_t x) { return detail::bigEndian64(x); }
  static uint64_t decode(std::string_view bytes) { return detail::fromBigEndian64(bytes, "uint64_t"); }
};

template <>
struct Codec<int64_t> {
  static std::string encode(int64_t x) { return detail::bigEndian64(static_cast<uint64_t>(x) ^ detail::kSignBit); }
  static int64_t decode(std::string_view bytes) {
    return static_cast<int64_t>(detail::fromBigEndian64(bytes, "int64_t") ^ detail::kSignBit);
  }
};

template <>
struct Codec<double> {
  static std::string encode(double x) {
    uint64_t bits = 0;
    std::memcpy(&bits, &x, sizeof bits);
    return detail::bigEndian64((bits & detail::kSignBit) != 0 ? ~bits : bits ^ detail::kSignBit);
  }
  static double decode(std::string_view bytes) {
    uint64_t key = detail::fromBigEndian64(bytes, "double");
    uint64_t bits = (key & detail::kSignBit) != 0 ? key ^ detail::kSignBit : ~key;
    double x = 0;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  }
};

template <>
struct Codec<bool> {
  static std::string encode(bool x) { return std::string(1, x ? '\1' : '\0'); }
  static bool decode(std::string_view bytes) {
    if (bytes.size() != 1 || static_cast<unsigned char>(bytes[0]) > 1) {
      throw CodecError("bool takes one byte, 0 or 1");
    }
    return bytes[0] == '\1';
  }
};

namespace detail {

// Codec<T>::decode, its failure rethrown as a CodecError that names the object and what was read.
template <typename T>
T decodeStored(std::string_view bytes, const std::string& object, const char* what) {
  try {
    return Codec<T>::decode(bytes);
  } catch (const std::exception& e) {
    throw CodecError("object '" + object + "': a stored " + what + " (" + std::to_string(bytes.size()) +
                     " bytes) does not decode: " + e.what());
  }
}

}  // namespace detail

}  // namespace deltasync
