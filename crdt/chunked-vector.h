// ChunkedVector<T>: the dense entry array of the dot stores, grown without copying.
//
// A std::vector that doubles copies every element on each growth, and the new buffer's pages
// are touched for the first time while the old buffer is still alive: filling a store of n
// entries writes ~2n entries' worth of fresh memory and moves ~n entries (on the VM the benches
// run on, the first touch of a page costs ~1.8 us; at 1e6 map entries growth was a third of a
// set's time). Here positions [0, kChunk) live in a head that grows by doubling like a vector
// (so a one-entry delta keeps its entry inline and small stores stay small), and every further
// kChunk positions live in one fixed-size chunk allocated when the first of them is pushed.
// Growth past the head copies nothing, and each page is touched once.
//
// Element access is one predictable branch (head or chunk) and, for a chunk, one load from the
// chunk table (a few KiB at 1e6 entries, so it stays cached).
//
// Storage is released on the way down with hysteresis, so alternating push_back/pop_back at a
// boundary never allocates and frees repeatedly: the last chunk is freed once the size falls
// kChunk/2 below its first position, and the head (once no chunk is left) is shrunk to the
// next power of two >= its size once its load falls below 3/8. So a vector that shrank holds
// at most one chunk more than a fresh vector of the same size, and none once it is kChunk/2
// below that chunk; shrink_to_fit() releases all spare storage.
//
// reserve() of more than two chunks' worth on a vector that has no chunk yet (a decoder that
// knows its count, a copy, a bulk join) takes all the chunks it needs as one block: a single
// allocation. Many separate chunk-sized allocations, freed together, land at the top of glibc's
// heap as one free region past its trim threshold, so the heap was given back to the kernel and
// every page faulted in again by the next decode (1.5x slower decoding of a 1e5-entry map); one
// large block instead raises glibc's thresholds to its size, as a std::vector's buffer does, and
// its memory is reused. A block cannot be freed piecewise, so popping never frees its chunks one
// by one; instead, once the size falls below half of the block's positions, the elements move to
// separately allocated chunks and the block is freed (at most once per block, after at least as
// many pops as elements moved: amortized O(1)). shrink_to_fit() does the same whenever the block
// has a spare chunk. So a vector with a block holds at most about twice what it needs.
//
// Invariants: size_ = head_.size() + elements in chunks; head_.size() == min(size_, kChunk);
// chunk i holds positions [(i + 1) * kChunk, (i + 2) * kChunk), elements constructed exactly
// for positions < size_; chunks_ holds every chunk a position < size_ needs, plus empty spares
// (from reserve(), or the one kept by the hysteresis); chunks_[0, blockChunks_) point into
// block_ (consecutively), the rest are separate allocations; blockChunks_ == 0 iff !block_.
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "crdt/causal-context.h"  // InlineVector

namespace deltasync::crdt::_ {

template <typename T, unsigned kChunkBits = 12>
class ChunkedVector {
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

 public:
  static constexpr size_t kChunk = size_t{1} << kChunkBits;

  ChunkedVector() = default;
  ChunkedVector(const ChunkedVector& o) : head_(o.head_), size_(head_.size()) {
    try {  // on a throw, free the chunks built so far (members' destructors would not)
      reserve(o.size_);
      for (size_t p = kChunk; p < o.size_; ++p) push_back(o[p]);
    } catch (...) {
      releaseChunks();
      throw;
    }
  }
  ChunkedVector(ChunkedVector&& o) noexcept
      : head_(std::move(o.head_)),
        chunks_(std::move(o.chunks_)),
        block_(o.block_),
        blockChunks_(o.blockChunks_),
        size_(o.size_) {
    o.chunks_.clear();
    o.head_.clear();
    o.block_ = nullptr;
    o.blockChunks_ = 0;
    o.size_ = 0;
  }
  ChunkedVector& operator=(const ChunkedVector& o) {
    if (this != &o) {
      ChunkedVector tmp(o);
      swap(tmp);
    }
    return *this;
  }
  ChunkedVector& operator=(ChunkedVector&& o) noexcept {
    if (this != &o) {
      ChunkedVector tmp(std::move(o));
      swap(tmp);
    }
    return *this;
  }
  ~ChunkedVector() { releaseChunks(); }

  void swap(ChunkedVector& o) noexcept {
    // (Not head_.swap: boost's small_vector::swap swaps elements one by one unless both buffers
    // are on the heap, and a fresh vector's is inline, so every move-assignment into an empty
    // vector copied its head. Moves steal heap buffers.)
    InlineVector<T> head(std::move(head_));
    head_ = std::move(o.head_);
    o.head_ = std::move(head);
    chunks_.swap(o.chunks_);
    std::swap(block_, o.block_);
    std::swap(blockChunks_, o.blockChunks_);
    std::swap(size_, o.size_);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Elements the vector can hold before it allocates.
  size_t capacity() const {
    return chunks_.empty() ? head_.capacity() : (chunks_.size() + 1) * kChunk;
  }
  // Heap bytes owned (nothing while the head's one element fits inline).
  size_t heapBytes() const {
    return CausalContext::heapBytes(head_) + chunks_.size() * kChunk * sizeof(T) +
           chunks_.capacity() * sizeof(T*);
  }

  T& operator[](size_t p) {
    return p < kChunk ? head_[p] : chunks_[(p >> kChunkBits) - 1][p & (kChunk - 1)];
  }
  const T& operator[](size_t p) const {
    return p < kChunk ? head_[p] : chunks_[(p >> kChunkBits) - 1][p & (kChunk - 1)];
  }
  T& back() { return (*this)[size_ - 1]; }
  const T& back() const { return (*this)[size_ - 1]; }

  // Strong guarantee: if allocating or constructing throws, nothing changed.
  void push_back(const T& v) { emplace_back(v); }
  void push_back(T&& v) { emplace_back(std::move(v)); }
  // Returns the new element (as std::vector's does; saves a caller the position arithmetic of
  // back()).
  template <typename... A>
  T& emplace_back(A&&... a) {
    // Inline: room in the head or in the last chunk; the rest (growth) out of line.
    if (size_ < kChunk ? head_.size() < head_.capacity() : (size_ & (kChunk - 1)) != 0) {
      T* e;
      if (size_ < kChunk) {
        e = &head_.emplace_back(std::forward<A>(a)...);
      } else {
        e = ::new (static_cast<void*>(chunks_[(size_ >> kChunkBits) - 1] + (size_ & (kChunk - 1))))
            T(std::forward<A>(a)...);
      }
      ++size_;
      return *e;
    }
    return emplaceGrowing(std::forward<A>(a)...);
  }

  // Removes the last element and releases storage as described at the top.
  void pop_back() {
    if (size_ <= kChunk) {
      head_.pop_back();
    } else {
      back().~T();
    }
    --size_;
    if (!chunks_.empty()) {
      if (chunks_.size() > blockChunks_) {
        if (size_ + kChunk / 2 <= chunks_.size() * kChunk) freeLastChunk();
      } else if (size_ < blockChunks_ * kChunk / 2) {
        dissolveBlock();
      }
    } else if (head_.capacity() > 16 && size_ < head_.capacity() / 8 * 3) {
      size_t cap = 1;
      while (cap < size_) cap *= 2;
      resizeHead(cap);
    }
  }

  // Capacity for n elements in total, as pushing up to n would leave it.
  void reserve(size_t n) {
    if (n <= capacity()) return;
    if (head_.capacity() < kChunk) {
      size_t cap = std::max<size_t>(head_.capacity(), 1);
      while (cap < n && cap < kChunk) cap *= 2;
      growHead(std::min(cap, kChunk));
    }
    if (n > kChunk) {
      const size_t want = chunksFor(n);
      chunks_.reserve(want);
      if (chunks_.empty() && want > 2) addBlock(want);
      while (capacity() < n) addChunk();
    }
  }

  // Releases spare storage: afterwards the footprint is that of a vector of the same elements
  // that never shrank nor reserved past its size (the head exactly fits when no chunk is used).
  void shrink_to_fit() {
    if (blockChunks_ > chunksFor(size_)) dissolveBlock();
    while (!chunks_.empty() && chunks_.size() * kChunk >= size_) freeLastChunk();
    if (chunks_.empty()) resizeHead(size_);
    chunks_.shrink_to_fit();
  }

  // Forward iterators (range-for, the standard algorithms that only read). Within the head or
  // a chunk they step a pointer; at a chunk boundary they look the next block up.
  template <typename V, typename Owner>
  class Iter {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = V*;
    using reference = V&;
    Iter(Owner* v, size_t p) : v_(v), p_(p), cur_(p < v->size() ? &(*v)[p] : nullptr) {}
    V& operator*() const { return *cur_; }
    V* operator->() const { return cur_; }
    Iter& operator++() {
      ++p_;
      if ((p_ & (kChunk - 1)) != 0) {
        ++cur_;
      } else {
        cur_ = p_ < v_->size() ? &(*v_)[p_] : nullptr;
      }
      return *this;
    }
    Iter operator++(int) {
      Iter old = *this;
      ++*this;
      return old;
    }
    bool operator==(const Iter& o) const { return p_ == o.p_; }

   private:
    Owner* v_;
    size_t p_;
    V* cur_;  // &(*v_)[p_], or nullptr at the end
  };
  using iterator = Iter<T, ChunkedVector>;
  using const_iterator = Iter<const T, const ChunkedVector>;
  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

 private:
  InlineVector<T> head_;
  std::vector<T*> chunks_;  // owned; elements constructed for positions < size_ only
  T* block_ = nullptr;      // the storage of chunks_[0, blockChunks_), one allocation
  size_t blockChunks_ = 0;
  size_t size_ = 0;

  template <typename... A>
  [[gnu::noinline]] T& emplaceGrowing(A&&... a) {
    T* e;
    if (size_ < kChunk) {
      growHead(std::min(kChunk, 2 * head_.capacity()));
      e = &head_.emplace_back(std::forward<A>(a)...);
    } else {
      const size_t c = (size_ >> kChunkBits) - 1;
      if (c == chunks_.size()) addChunk();  // else a spare chunk is there
      e = ::new (static_cast<void*>(chunks_[c])) T(std::forward<A>(a)...);
    }
    ++size_;
    return *e;
  }

  // Chunks that positions [kChunk, n) need.
  static size_t chunksFor(size_t n) { return n > kChunk ? (n - 1) >> kChunkBits : 0; }
  // Storage for one chunk, elements not constructed.
  static T* allocateChunk() { return static_cast<T*>(::operator new(kChunk * sizeof(T))); }
  void addChunk() {
    chunks_.reserve(chunks_.size() + 1);  // first, so a throw cannot leak the chunk
    chunks_.push_back(allocateChunk());
  }
  // The first m chunks as one block (no chunk yet; chunks_ has room for m).
  void addBlock(size_t m) {
    block_ = static_cast<T*>(::operator new(m * kChunk * sizeof(T)));
    blockChunks_ = m;
    for (size_t i = 0; i < m; ++i) chunks_.push_back(block_ + i * kChunk);
  }
  // Moves the elements out of the block into separately allocated chunks (exactly as many as
  // they need) and frees the block and any chunk beyond it. If memory runs out, nothing changes.
  void dissolveBlock() noexcept {
    static_assert(std::is_nothrow_move_constructible_v<T>);
    if (!block_) return;
    const size_t need = chunksFor(size_);
    std::vector<T*> fresh;
    try {
      fresh.reserve(need);
      while (fresh.size() < need) fresh.push_back(allocateChunk());
    } catch (...) {
      for (T* c : fresh) ::operator delete(c);
      return;
    }
    for (size_t p = kChunk; p < size_; ++p) {
      T& from = (*this)[p];
      ::new (static_cast<void*>(fresh[(p >> kChunkBits) - 1] + (p & (kChunk - 1)))) T(std::move(from));
      from.~T();
    }
    for (size_t i = blockChunks_; i < chunks_.size(); ++i) ::operator delete(chunks_[i]);
    ::operator delete(block_);
    block_ = nullptr;
    blockChunks_ = 0;
    chunks_.swap(fresh);
  }
  // Frees the last chunk, destroying its elements (the size drops to the chunk's first position).
  void freeLastChunk() {
    T* c = chunks_.back();
    const size_t first = chunks_.size() * kChunk;
    for (size_t p = first; p < size_; ++p) c[p - first].~T();
    if (chunks_.size() > blockChunks_) ::operator delete(c);
    chunks_.pop_back();
    size_ = std::min(size_, first);
    if (chunks_.size() < blockChunks_) blockChunks_ = chunks_.size();
    if (blockChunks_ == 0 && block_) {
      ::operator delete(block_);
      block_ = nullptr;
    }
  }
  void releaseChunks() {
    while (!chunks_.empty()) freeLastChunk();
  }
  void growHead(size_t cap) {
    if (cap > head_.capacity()) resizeHead(cap);
  }
  // Gives the head a buffer of exactly cap >= head_.size() elements. (Not by swapping with a
  // new vector: boost's small_vector::swap swaps elements, not buffers.)
  void resizeHead(size_t cap) {
    if (cap < head_.capacity()) head_.shrink_to_fit();
    head_.reserve(cap);
  }
};

}  // namespace deltasync::crdt::_
