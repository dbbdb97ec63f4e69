#include "crdt/flat-index.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace deltasync::crdt::_ {

uint64_t gHashSeed = 0;  // see setHashSeed

std::vector<uint32_t> FlatIndex::emptySlots(size_t capacity) {
  std::vector<uint32_t> v;
  v.reserve(capacity);
#ifdef MADV_POPULATE_WRITE
  const size_t bytes = capacity * sizeof(uint32_t);
  if (bytes >= (size_t{1} << 20)) {
    // The whole pages inside the array (madvise wants page-aligned bounds; the partial pages at
    // either end fault in as usual). Failure (an older kernel: EINVAL) changes nothing.
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto b = (reinterpret_cast<uintptr_t>(v.data()) + page - 1) & ~(page - 1);
    const auto e = (reinterpret_cast<uintptr_t>(v.data()) + bytes) & ~(page - 1);
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_POPULATE_WRITE);
  }
#endif
  v.assign(capacity, kNone);
  return v;
}

}  // namespace deltasync::crdt::_
