#include "gossip/codec.h"

namespace deltasync::gossip {

void encode(const crdt::CausalContext& c, wire::CausalContext::Builder out) {
  auto origins = out.initOrigins(static_cast<unsigned>(c.origins().size()));
  unsigned i = 0;
  for (const auto& o : c.origins()) {
    ColumnWriter runs;
    uint64_t next = 1;  // the lowest counter the next interval may start at
    for (const crdt::Interval& iv : o.intervals) {
      runs.varint(iv.lo - next);
      runs.varint(iv.hi - iv.lo);
      next = iv.hi + 2;
    }
    origins[i].setReplica(o.replica.value);
    origins[i].setRuns(_::asData(runs));
    ++i;
  }
}

crdt::CausalContext decode(wire::CausalContext::Reader in, const Limits& limits) {
  auto origins = in.getOrigins();
  if (origins.size() > limits.maxOrigins) throw DecodeError("context: more than limits.maxOrigins origins");
  crdt::CausalContext c;
  uint64_t prevReplica = 0;
  bool first = true;
  for (auto o : origins) {
    if (!first && !(prevReplica < o.getReplica())) {
      throw DecodeError("context: origin replica ids not strictly increasing");
    }
    first = false;
    prevReplica = o.getReplica();
    if (prevReplica == 0) throw DecodeError("context: origin replica id 0 (no such replica)");
    ColumnReader runs = _::reader(o.getRuns(), "context runs");
    if (runs.atEnd()) runs.fail("origin without intervals");
    uint64_t next = 1;
    uint32_t count = 0;
    while (!runs.atEnd()) {
      if (++count > limits.maxIntervalsPerOrigin) runs.fail("more than limits.maxIntervalsPerOrigin intervals");
      uint64_t gap = runs.varint();
      uint64_t span = runs.varint();
      if (gap > crdt::kMaxDotCounter || span > crdt::kMaxDotCounter ||
          next + gap + span > crdt::kMaxDotCounter) {
        runs.fail("interval beyond 2^48-1");
      }
      uint64_t lo = next + gap;
      c.addRange(crdt::ReplicaId{o.getReplica()}, lo, lo + span);
      next = lo + span + 2;
    }
  }
  return c;
}

void encode(const crdt::GCounter& c, wire::GCounter::Builder out) {
  auto entries = out.initEntries(static_cast<unsigned>(c.size()));
  unsigned i = 0;
  for (const auto& e : c) {
    entries[i].setReplica(e.replica.value);
    entries[i].setCount(e.count);
    ++i;
  }
}

crdt::GCounter decode(wire::GCounter::Reader in, const Limits& limits) {
  auto entries = in.getEntries();
  if (entries.size() > limits.maxEntries) throw DecodeError("g-counter: more than limits.maxEntries entries");
  std::vector<crdt::GCounter::Entry> out;
  out.reserve(entries.size());
  for (auto e : entries) {
    if (!out.empty() && !(out.back().replica.value < e.getReplica())) {
      throw DecodeError("g-counter: replica ids not strictly increasing");
    }
    if (e.getReplica() == 0) throw DecodeError("g-counter: replica id 0 (no such replica)");
    if (e.getCount() == 0) throw DecodeError("g-counter: zero count (zero entries are never sent)");
    out.push_back({crdt::ReplicaId{e.getReplica()}, e.getCount()});
  }
  return crdt::GCounter::fromEntries(out);
}

void encode(const crdt::PNCounter& c, wire::PNCounter::Builder out) {
  auto entries = out.initEntries(static_cast<unsigned>(c.size()));
  unsigned i = 0;
  for (const auto& e : c) {
    entries[i].setReplica(e.replica.value);
    entries[i].setIncrements(e.increments);
    entries[i].setDecrements(e.decrements);
    ++i;
  }
}

crdt::PNCounter decode(wire::PNCounter::Reader in, const Limits& limits) {
  auto entries = in.getEntries();
  if (entries.size() > limits.maxEntries) throw DecodeError("pn-counter: more than limits.maxEntries entries");
  std::vector<crdt::PNCounter::Entry> out;
  out.reserve(entries.size());
  for (auto e : entries) {
    if (!out.empty() && !(out.back().replica.value < e.getReplica())) {
      throw DecodeError("pn-counter: replica ids not strictly increasing");
    }
    if (e.getReplica() == 0) throw DecodeError("pn-counter: replica id 0 (no such replica)");
    if (e.getIncrements() == 0 && e.getDecrements() == 0) {
      throw DecodeError("pn-counter: all-zero entry (zero entries are never sent)");
    }
    out.push_back({crdt::ReplicaId{e.getReplica()}, e.getIncrements(), e.getDecrements()});
  }
  return crdt::PNCounter::fromEntries(out);
}

}  // namespace deltasync::gossip
