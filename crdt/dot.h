// Replica identities and dots: the atoms of causality in deltasync.
//
// A ReplicaId names one replica (one durable identity of one node) for its whole life. It is a
// random 64-bit value minted once and persisted by lib/. A replica that lost its storage must mint
// a new id, because its dots would otherwise be reused for different data, which breaks every
// causal CRDT silently.
//
// A Dot (replica, counter) names one event of that replica. Counters start at 1 and grow by one
// per event, so a replica's own dots are always a contiguous range 1..n.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace deltasync::crdt {

struct ReplicaId {
  uint64_t value = 0;

  constexpr ReplicaId() = default;
  constexpr explicit ReplicaId(uint64_t v) : value(v) {}

  constexpr auto operator<=>(const ReplicaId&) const = default;
};

// Counters are at most kMaxDotCounter (2^48 - 1): dot stores pack a dot into 64 bits
// (16-bit local replica slot + 48-bit counter). At a sustained million events per second a
// replica needs ~9 years to exhaust it; mutators throw LimitError before that happens.
inline constexpr uint64_t kMaxDotCounter = (uint64_t{1} << 48) - 1;

struct Dot {
  ReplicaId replica;
  uint64_t counter = 0;  // >= 1 for a real dot

  constexpr auto operator<=>(const Dot&) const = default;
};

// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash used by the dot stores' indexes.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace deltasync::crdt

template <>
struct std::hash<deltasync::crdt::ReplicaId> {
  size_t operator()(deltasync::crdt::ReplicaId r) const noexcept {
    return deltasync::crdt::mix64(r.value);
  }
};

template <>
struct std::hash<deltasync::crdt::Dot> {
  size_t operator()(const deltasync::crdt::Dot& d) const noexcept {
    return deltasync::crdt::mix64(d.replica.value * 0x9e3779b97f4a7c15ULL + d.counter);
  }
};
