#include "crdt/causal-context.h"

#include <limits>
#include <stdexcept>
#include <string>

#include "crdt/errors.h"

namespace deltasync::crdt {
namespace {

// Merges two canonical interval lists into a canonical union.
Intervals unite(const Intervals& a, const Intervals& b) {
  Intervals out;
  out.reserve(a.size() + b.size());
  size_t i = 0, j = 0;
  auto push = [&out](Interval iv) {
    if (!out.empty() && out.back().hi != std::numeric_limits<uint64_t>::max() &&
        iv.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, iv.hi);
    } else {
      out.push_back(iv);
    }
  };
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].lo <= b[j].lo)) {
      push(a[i++]);
    } else {
      push(b[j++]);
    }
  }
  return out;
}

// a \ b, both canonical.
Intervals subtract(const Intervals& a, const Intervals& b) {
  Intervals out;
  size_t j = 0;
  for (Interval cur : a) {
    while (j < b.size() && b[j].hi < cur.lo) ++j;
    size_t k = j;
    bool alive = true;
    while (k < b.size() && b[k].lo <= cur.hi) {
      if (b[k].lo > cur.lo) out.push_back({cur.lo, b[k].lo - 1});
      if (b[k].hi >= cur.hi) {
        alive = false;
        break;
      }
      cur.lo = b[k].hi + 1;
      ++k;
    }
    if (alive) out.push_back(cur);
  }
  return out;
}

Intervals intersection(const Intervals& a, const Intervals& b) {
  Intervals out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint64_t lo = std::max(a[i].lo, b[j].lo);
    uint64_t hi = std::min(a[i].hi, b[j].hi);
    if (lo <= hi) out.push_back({lo, hi});
    if (a[i].hi < b[j].hi) {
      ++i;
    } else {
      ++j;
    }
  }
  return out;
}

}  // namespace

Dot CausalContext::nextDot(ReplicaId r) const {
  uint64_t m = max(r);
  if (m >= kMaxDotCounter) {
    throw LimitError("dot counter of replica " + std::to_string(r.value) +
                     " is exhausted (limit 2^48 - 1); mint a new replica id");
  }
  return Dot{r, m + 1};
}

void CausalContext::addOther(Dot d) {
  // Fast path: the first dot of an empty context (every mutator's delta).
  if (origins_.empty() && d.counter != 0 && d.counter <= kMaxDotCounter) {
    Origin& o = origins_.emplace_back();  // built in place: moving an Origin is not cheap
    o.replica = d.replica;
    o.intervals.push_back(Interval{d.counter, d.counter});
    return;
  }
  addRange(d.replica, d.counter, d.counter);
}

CausalContext::Origin& CausalContext::findOrInsert(ReplicaId r) {
  auto it = std::lower_bound(origins_.begin(), origins_.end(), r,
                             [](const Origin& o, ReplicaId id) { return o.replica < id; });
  if (it != origins_.end() && it->replica == r) return *it;
  return *origins_.insert(it, Origin{r, {}});
}

void CausalContext::addRange(ReplicaId r, uint64_t lo, uint64_t hi) {
  if (lo == 0 || lo > hi || hi > kMaxDotCounter) {
    throw std::invalid_argument("CausalContext::addRange: need 1 <= lo <= hi <= 2^48-1, got " +
                                std::to_string(lo) + ".." + std::to_string(hi));
  }
  Origin& o = findOrInsert(r);
  auto& iv = o.intervals;
  // Fast path: extending the last interval (a replica's own next dot).
  if (!iv.empty() && lo >= iv.back().lo) {
    if (lo <= iv.back().hi + 1) {
      iv.back().hi = std::max(iv.back().hi, hi);
      return;
    }
    iv.push_back({lo, hi});
    return;
  }
  // General case: first interval that could touch [lo, hi] is the first with hi + 1 >= lo.
  auto first = std::lower_bound(iv.begin(), iv.end(), lo,
                                [](const Interval& i, uint64_t v) { return i.hi + 1 < v; });
  auto last = first;
  uint64_t nlo = lo, nhi = hi;
  while (last != iv.end() && last->lo <= hi + 1) {
    nlo = std::min(nlo, last->lo);
    nhi = std::max(nhi, last->hi);
    ++last;
  }
  if (first == last) {
    iv.insert(first, Interval{lo, hi});
  } else {
    *first = Interval{nlo, nhi};
    iv.erase(first + 1, last);
  }
}

void CausalContext::erase(Dot d) {
  auto it = std::lower_bound(origins_.begin(), origins_.end(), d.replica,
                             [](const Origin& o, ReplicaId id) { return o.replica < id; });
  if (it == origins_.end() || it->replica != d.replica) return;
  auto& iv = it->intervals;
  auto pos = std::lower_bound(iv.begin(), iv.end(), d.counter,
                              [](const Interval& i, uint64_t v) { return i.hi < v; });
  if (pos == iv.end() || pos->lo > d.counter) return;
  if (pos->lo == pos->hi) {
    iv.erase(pos);
  } else if (pos->lo == d.counter) {
    ++pos->lo;
  } else if (pos->hi == d.counter) {
    --pos->hi;
  } else {
    Interval right{d.counter + 1, pos->hi};
    pos->hi = d.counter - 1;
    iv.insert(pos + 1, right);
  }
  if (iv.empty()) origins_.erase(it);
}

void CausalContext::eraseReplica(ReplicaId r) {
  auto it = std::lower_bound(origins_.begin(), origins_.end(), r,
                             [](const Origin& o, ReplicaId id) { return o.replica < id; });
  if (it != origins_.end() && it->replica == r) origins_.erase(it);
}

void CausalContext::join(const CausalContext& other) {
  if (other.origins_.empty()) return;
  if (origins_.empty()) {
    origins_ = other.origins_;
    return;
  }
  InlineVector<Origin> out;
  out.reserve(origins_.size() + other.origins_.size());
  size_t i = 0, j = 0;
  while (i < origins_.size() || j < other.origins_.size()) {
    if (j == other.origins_.size() ||
        (i < origins_.size() && origins_[i].replica < other.origins_[j].replica)) {
      out.push_back(std::move(origins_[i++]));
    } else if (i == origins_.size() || other.origins_[j].replica < origins_[i].replica) {
      out.push_back(other.origins_[j++]);
    } else {
      Origin& mine = origins_[i++];
      const Origin& theirs = other.origins_[j++];
      // Fast path: both contiguous-from-anywhere single intervals that overlap or touch.
      if (mine.intervals.size() == 1 && theirs.intervals.size() == 1) {
        Interval a = mine.intervals[0], b = theirs.intervals[0];
        if (a.lo <= b.hi + 1 && b.lo <= a.hi + 1) {
          mine.intervals[0] = Interval{std::min(a.lo, b.lo), std::max(a.hi, b.hi)};
          out.push_back(std::move(mine));
          continue;
        }
      }
      out.push_back(Origin{mine.replica, unite(mine.intervals, theirs.intervals)});
    }
  }
  origins_ = std::move(out);
}

bool CausalContext::includes(const CausalContext& other) const {
  for (const Origin& theirs : other.origins_) {
    const Origin* mine = find(theirs.replica);
    if (mine == nullptr) return false;
    for (const Interval& t : theirs.intervals) {
      auto it = std::lower_bound(mine->intervals.begin(), mine->intervals.end(), t.lo,
                                 [](const Interval& i, uint64_t v) { return i.hi < v; });
      if (it == mine->intervals.end() || it->lo > t.lo || it->hi < t.hi) return false;
    }
  }
  return true;
}

CausalContext CausalContext::minus(const CausalContext& other) const {
  CausalContext out;
  for (const Origin& mine : origins_) {
    const Origin* theirs = other.find(mine.replica);
    if (theirs == nullptr) {
      out.origins_.push_back(mine);
      continue;
    }
    auto rest = subtract(mine.intervals, theirs->intervals);
    if (!rest.empty()) out.origins_.push_back(Origin{mine.replica, std::move(rest)});
  }
  return out;
}

CausalContext CausalContext::intersect(const CausalContext& other) const {
  CausalContext out;
  for (const Origin& mine : origins_) {
    const Origin* theirs = other.find(mine.replica);
    if (theirs == nullptr) continue;
    auto both = intersection(mine.intervals, theirs->intervals);
    if (!both.empty()) out.origins_.push_back(Origin{mine.replica, std::move(both)});
  }
  return out;
}

uint64_t CausalContext::dotCount() const {
  uint64_t n = 0;
  for (const Origin& o : origins_) {
    for (const Interval& i : o.intervals) {
      uint64_t len = i.length();
      if (n > std::numeric_limits<uint64_t>::max() - len) return std::numeric_limits<uint64_t>::max();
      n += len;
    }
  }
  return n;
}

size_t CausalContext::intervalCount() const {
  size_t n = 0;
  for (const Origin& o : origins_) n += o.intervals.size();
  return n;
}

size_t CausalContext::memoryBytes() const {
  size_t n = sizeof(*this) + heapBytes(origins_);
  for (const Origin& o : origins_) n += heapBytes(o.intervals);
  return n;
}

bool CausalContext::valid() const {
  for (size_t k = 0; k < origins_.size(); ++k) {
    const Origin& o = origins_[k];
    if (k > 0 && !(origins_[k - 1].replica < o.replica)) return false;
    if (o.intervals.empty()) return false;
    for (size_t i = 0; i < o.intervals.size(); ++i) {
      const Interval& iv = o.intervals[i];
      if (iv.lo == 0 || iv.lo > iv.hi || iv.hi > kMaxDotCounter) return false;
      if (i > 0 && o.intervals[i - 1].hi + 1 >= iv.lo) return false;
    }
  }
  return true;
}

}  // namespace deltasync::crdt
