// Seeded inputs shared by the benchmarks, so every binary (timing, memory, callgrind) measures
// exactly the same key sequences.
//
// Randomness follows the simulator's rule (shared/STYLE.md, example 9): raw std::mt19937_64
// output with our own range mapping, because the standard distributions differ between library
// implementations and the inputs must be the same everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "crdt/dot.h"

namespace deltasync::bench {

inline constexpr uint64_t kSeed = 20240611;
inline constexpr crdt::ReplicaId kReplicaA{0x0a0a0a0a0a0a0a0aULL};
inline constexpr crdt::ReplicaId kReplicaB{0x0b0b0b0b0b0b0b0bULL};

// Synthetic physical time for HybridLogicalClock: 2024-01-01T00:00:00Z in ms, advanced by one
// millisecond every kOpsPerMilli operations (so the logical counter is exercised too, without
// ever overflowing its 16 bits).
inline constexpr uint64_t kBasePhysicalMillis = 1'704'067'200'000ULL;
inline constexpr uint64_t kOpsPerMilli = 1024;
inline uint64_t syntheticMillis(size_t op) { return kBasePhysicalMillis + op / kOpsPerMilli; }

// Uniform in [0, n) by rejection (no modulo bias), from raw engine output.
inline uint64_t below(std::mt19937_64& rng, uint64_t n) {
  uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

template <typename T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(rng, i)]);
}

enum class Order { kSequential, kShuffled };

inline const char* orderName(Order o) { return o == Order::kSequential ? "sequential" : "shuffled"; }

// first, first+1, ..., first+n-1, in that order or shuffled with kSeed.
inline std::vector<int64_t> intKeys(size_t n, Order order, int64_t first = 0) {
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = first + static_cast<int64_t>(i);
  if (order == Order::kShuffled) {
    std::mt19937_64 rng(kSeed);
    shuffle(v, rng);
  }
  return v;
}

// "k<i>". Appends rather than writing "k" + std::to_string(i), which trips GCC 12's bogus
// -Wrestrict warning (GCC bug 105329).
inline std::string keyName(uint64_t i) {
  std::string s = "k";
  s += std::to_string(i);
  return s;
}

// "k<first>", ..., "k<first+n-1>" (at most 15 chars for n <= 1e14: CompactString keeps them
// inline), in that order or shuffled with kSeed.
inline std::vector<std::string> stringKeys(size_t n, Order order, size_t first = 0) {
  std::vector<std::string> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(keyName(first + i));
  if (order == Order::kShuffled) {
    std::mt19937_64 rng(kSeed);
    shuffle(v, rng);
  }
  return v;
}

}  // namespace deltasync::bench
