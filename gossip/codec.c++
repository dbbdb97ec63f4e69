#include "gossip/codec.h"

namespace deltasync::gossip {

namespace _ {

void writeRuns(const crdt::Intervals& intervals, ColumnWriter& out) {
  uint64_t next = 1;  // the lowest counter the next interval may start at
  for (const crdt::Interval& iv : intervals) {
    out.varint(iv.lo - next);
    out.varint(iv.hi - iv.lo);
    next = iv.hi + 2;
  }
}

void readRun(ColumnReader& in, crdt::ReplicaId replica, uint64_t& next, crdt::CausalContext& c) {
  uint64_t gap = in.varint();
  uint64_t span = in.varint();
  if (gap > crdt::kMaxDotCounter || span > crdt::kMaxDotCounter || next + gap + span > crdt::kMaxDotCounter) {
    in.fail("interval beyond 2^48-1");
  }
  uint64_t lo = next + gap;
  c.addRange(replica, lo, lo + span);
  next = lo + span + 2;
}

}  // namespace _

using _::readRun;
using _::writeRuns;

void encode(const crdt::CausalContext& c, wire::CausalContext::Builder out) {
  auto origins = out.initOrigins(static_cast<unsigned>(c.origins().size()));
  unsigned i = 0;
  for (const auto& o : c.origins()) {
    ColumnWriter runs;
    writeRuns(o.intervals, runs);
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
      readRun(runs, crdt::ReplicaId{o.getReplica()}, next, c);
    }
  }
  return c;
}

void encodeDots(const crdt::CausalContext& c, ColumnWriter& out, crdt::ReplicaId implicit) {
  for (const auto& o : c.origins()) {
    if (o.replica == implicit) {
      out.byte(0);
    } else {
      out.byte(1);
      out.fixed64(o.replica.value);
    }
    out.varint(o.intervals.size());
    writeRuns(o.intervals, out);
  }
}

crdt::CausalContext decodeDots(const unsigned char* data, size_t size, const Limits& limits, crdt::ReplicaId implicit) {
  ColumnReader in(data, size, "dots");
  crdt::CausalContext c;
  uint64_t prevReplica = 0;
  uint32_t origins = 0;
  while (!in.atEnd()) {
    if (++origins > limits.maxOrigins) in.fail("more than limits.maxOrigins origins");
    uint64_t replica = implicit.value;
    const unsigned char marker = in.byte();
    if (marker > 1) in.fail("origin marker neither 0 (the sender) nor 1 (an id follows)");
    if (marker == 1) {
      replica = in.fixed64();
      if (replica == implicit.value) in.fail("the sender's id written out (marker 0 stands for it)");
    }
    if (replica == 0) in.fail("origin replica id 0 (no such replica)");
    if (origins > 1 && !(prevReplica < replica)) in.fail("origin replica ids not strictly increasing");
    prevReplica = replica;
    uint64_t n = in.varint();
    if (n == 0) in.fail("origin without intervals");
    if (n > limits.maxIntervalsPerOrigin) in.fail("more than limits.maxIntervalsPerOrigin intervals");
    uint64_t next = 1;
    for (uint64_t k = 0; k < n; ++k) readRun(in, crdt::ReplicaId{replica}, next, c);
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

void encode(const crdt::CounterMap<std::string>& m, wire::CounterMapState::Builder out) {
  auto slots = out.initSlots(static_cast<unsigned>(m.slotCount()));
  unsigned i = 0;
  for (const auto& [k, s] : m) {
    slots[i].setKey(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(k.data()), k.size()));
    encode(s.totals, slots[i].initTotals());
    encode(s.floors, slots[i].initFloors());
    ++i;
  }
}

crdt::CounterMap<std::string> decode(wire::CounterMapState::Reader in, const Limits& limits) {
  auto slots = in.getSlots();
  if (slots.size() > limits.maxEntries) throw DecodeError("map of counters: more than limits.maxEntries keys");
  crdt::CounterMap<std::string> out;
  std::string previous;
  uint64_t entries = 0;
  for (unsigned i = 0; i < slots.size(); ++i) {
    auto key = slots[i].getKey();
    if (key.size() > limits.maxKeyBytes) throw DecodeError("map of counters: key longer than limits.maxKeyBytes");
    std::string k(reinterpret_cast<const char*>(key.begin()), key.size());
    if (i > 0 && !(previous < k)) throw DecodeError("map of counters: keys not strictly increasing");
    crdt::CounterMap<std::string>::Slot slot{decode(slots[i].getTotals(), limits), decode(slots[i].getFloors(), limits)};
    entries += slot.totals.size() + slot.floors.size();
    if (entries > limits.maxEntries) throw DecodeError("map of counters: more than limits.maxEntries counter entries");
    if (slot.totals.empty()) throw DecodeError("map of counters: a key without totals");
    if (!crdt::CounterMap<std::string>::valid(slot)) {
      throw DecodeError("map of counters: a floor above its writer's totals (floors are observed totals)");
    }
    out.insertSlot(k, std::move(slot));
    previous = std::move(k);
  }
  return out;
}

}  // namespace deltasync::gossip
