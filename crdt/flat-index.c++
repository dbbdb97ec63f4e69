#include "crdt/flat-index.h"

#include <chrono>
#include <random>

namespace deltasync::crdt::_ {

uint64_t gHashSeed = 0;

namespace {

uint64_t drawHashSeed() {
  try {
    std::random_device rd;  // getrandom(2) in libstdc++ on Linux
    return (uint64_t{rd()} << 32) ^ rd();
  } catch (const std::exception&) {
    // No random source: still differs between processes and runs, if less secretly.
    auto t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return t ^ reinterpret_cast<uintptr_t>(&t);
  }
}

// Before every ordinary static initialiser (priorities up to 100 are the implementation's), so
// no store is built with another seed.
[[gnu::constructor(101)]] void seedHashes() { gHashSeed = drawHashSeed(); }

}  // namespace

}  // namespace deltasync::crdt::_
