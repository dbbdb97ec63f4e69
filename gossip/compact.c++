#include "gossip/compact.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gossip/codec.h"  // writeRuns, readRun

namespace deltasync::gossip {

namespace {

constexpr unsigned kKindBits = 0x07;
constexpr unsigned kHasWriters = 0x08;
constexpr unsigned kHasContext = 0x10;
constexpr unsigned kOne = 0x20;
constexpr unsigned kWholeContext = 0x40;
constexpr unsigned kKindHigh = 0x80;  // the kind's bit 3 (kinds 8..15)
constexpr size_t kMapOfMapsKind = kindIndex<MapOfMaps>();
constexpr size_t kMapOfSetsKind = kindIndex<MapOfSets>();
constexpr size_t kMapOfCountersKind = kindIndex<MapOfCounters>();
static_assert(kKindCount <= 16, "the compact header has four bits of kind");
// The kinds with a causal context (header bits C and F may be set).
constexpr bool causalKind(size_t kind) {
  return (kind >= kindIndex<crdt::MVRegister<std::string>>() && kind <= kMapOfMapsKind) || kind == kMapOfSetsKind;
}
// How a causal value's context travels (header bits C and F).
enum class ContextForm { kNone, kExtra, kWhole };
constexpr size_t kMaxReserve = size_t{1} << 20;  // entries reserved before they are read

// ---- writers -----------------------------------------------------------------------------

// The writer table of one value: every id the value names except the implicit writer.
class WriterTable {
 public:
  explicit WriterTable(crdt::ReplicaId implicit) : implicit_(implicit) {}

  void collect(crdt::ReplicaId r) {
    if (r != implicit_) ids_.push_back(r);
  }
  void finish() {
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
  }
  bool present() const { return !ids_.empty(); }
  void write(ColumnWriter& out) const {
    if (!present()) return;
    out.varint(ids_.size());
    for (crdt::ReplicaId r : ids_) out.fixed64(r.value);
  }
  // The reference of r (0 for the implicit writer; r must have been collected).
  size_t index(crdt::ReplicaId r) const {
    if (r == implicit_) return 0;
    return 1 + static_cast<size_t>(std::lower_bound(ids_.begin(), ids_.end(), r) - ids_.begin());
  }
  // Writes r's reference (only when the table is present) and returns it.
  size_t ref(ColumnWriter& out, crdt::ReplicaId r) const {
    size_t i = index(r);
    if (present()) out.varint(i);
    return i;
  }
  size_t size() const { return ids_.size() + 1; }  // references 0..size()-1
  crdt::ReplicaId id(size_t ref) const { return ref == 0 ? implicit_ : ids_[ref - 1]; }

 private:
  crdt::ReplicaId implicit_;
  std::vector<crdt::ReplicaId> ids_;
};

// The decoder's view: resolves references and checks that every listed id is used.
class WriterRefs {
 public:
  WriterRefs(ColumnReader& in, bool present, crdt::ReplicaId implicit, const Limits& limits)
      : implicit_(implicit), present_(present) {
    if (!present) return;
    uint64_t n = in.varint();
    if (n == 0) in.fail("empty writer table (the flag says there is one)");
    if (n > limits.maxOrigins) in.fail("more than limits.maxOrigins writers");
    if (n * 8 > in.remaining()) in.fail("writer table runs past the end");
    ids_.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t id = in.fixed64();
      if (id == 0) in.fail("writer id 0 (no such replica)");
      if (id == implicit.value) in.fail("the implicit writer listed in the writer table");
      if (!ids_.empty() && !(ids_.back().value < id)) in.fail("writer ids not strictly increasing");
      ids_.push_back(crdt::ReplicaId{id});
    }
    used_.assign(n, false);
  }

  size_t size() const { return ids_.size() + 1; }

  // Reads a reference (or takes 0 when there is no table); returns the reference.
  size_t read(ColumnReader& in) {
    uint64_t r = present_ ? in.varint() : 0;
    if (r > ids_.size()) in.fail("writer reference out of range");
    if (r == 0 && implicit_.value == 0) in.fail("writer reference to the sender, but the message has none");
    if (r > 0) used_[r - 1] = true;
    return r;
  }
  crdt::ReplicaId id(size_t ref) const { return ref == 0 ? implicit_ : ids_[ref - 1]; }

  void requireAllUsed(ColumnReader& in) const {
    if (std::find(used_.begin(), used_.end(), false) != used_.end()) in.fail("a listed writer is never referenced");
  }

 private:
  crdt::ReplicaId implicit_;
  bool present_;
  std::vector<crdt::ReplicaId> ids_;
  std::vector<bool> used_;
};

void writeHeader(ColumnWriter& out, size_t kind, const WriterTable& w, bool context, bool whole, size_t count) {
  out.byte(static_cast<unsigned char>((kind & kKindBits) | (kind > kKindBits ? kKindHigh : 0) |
                                      (w.present() ? kHasWriters : 0) | (context ? kHasContext : 0) |
                                      (whole ? kWholeContext : 0) | (count == 1 ? kOne : 0)));
  w.write(out);
  if (count != 1) out.varint(count);
}

// ---- scalars -----------------------------------------------------------------------------

void writeBytes(ColumnWriter& out, std::string_view s) {
  out.varint(s.size());
  out.raw(s);
}
std::string_view readBytes(ColumnReader& in, size_t max, const char* what) {
  uint64_t n = in.varint();
  if (n > max) in.fail(std::string(what) + " longer than its limit");
  return in.raw(n);
}

// Values of the causal kinds: byte strings, or nothing (std::monostate, crdt::Empty). (Keys:
// writeKeys below.)
// Strings go as two columns: every length, then every string's bytes. Under deflate the lengths
// of like strings cost almost nothing and like bytes sit together (15% smaller than length and
// bytes interleaved, on a batch of short keys); a single entry's bytes are the same either way.
template <typename Item, typename Get>
void writeStrings(ColumnWriter& out, const std::vector<Item>& items, Get get) {
  using S = std::decay_t<decltype(get(items.front()))>;
  if constexpr (std::is_convertible_v<S, std::string_view>) {
    for (const Item& it : items) out.varint(std::string_view(get(it)).size());
    for (const Item& it : items) out.raw(get(it));
  } else {
    static_assert(std::is_same_v<S, std::monostate> || std::is_same_v<S, crdt::Empty>);
  }
}

// Reads a column pair of writeStrings for T = std::string (for monostate and Empty: nothing).
template <typename T>
std::vector<std::string_view> readStrings(ColumnReader& in, uint64_t count, size_t reserve, size_t max,
                                          const char* what) {
  std::vector<std::string_view> out;
  if constexpr (std::is_same_v<T, std::string>) {
    std::vector<uint64_t> lengths;
    lengths.reserve(reserve);
    for (uint64_t i = 0; i < count; ++i) {
      lengths.push_back(in.varint());
      if (lengths.back() > max) in.fail(std::string(what) + " longer than its limit");
    }
    out.reserve(reserve);
    for (uint64_t n : lengths) out.push_back(in.raw(n));
  } else {
    static_assert(std::is_same_v<T, std::monostate> || std::is_same_v<T, crdt::Empty>);
  }
  return out;
}
// Keys: front-coded against the previous key of the column (keys in encoding order often share
// their beginnings: sequential ids, one topic's presences, an or-map's sorted keys; deflate alone
// gets little of sequential numbers). Three columns: for every key but the first, varint the
// length of the prefix it shares with the previous key (at most that key's length); for every
// key, varint the length of the rest; then every key's rest. A single key is its length and bytes,
// as any string.
template <typename Item, typename Get>
void writeKeys(ColumnWriter& out, const std::vector<Item>& items, Get get) {
  using S = std::decay_t<decltype(get(items.front()))>;
  if constexpr (std::is_convertible_v<S, std::string_view>) {
    // The prefix key i shares with key i - 1 (0 for the first), worked out once: three passes
    // of comparisons cost a 1e6-key map 60 M instructions more than this vector.
    std::vector<uint32_t> shared(items.size(), 0);
    for (size_t i = 1; i < items.size(); ++i) {
      const std::string_view a(get(items[i - 1])), b(get(items[i]));
      const size_t most = std::min(a.size(), b.size());
      shared[i] = static_cast<uint32_t>(std::mismatch(a.begin(), a.begin() + most, b.begin()).first - a.begin());
      out.varint(shared[i]);
    }
    for (size_t i = 0; i < items.size(); ++i) out.varint(std::string_view(get(items[i])).size() - shared[i]);
    for (size_t i = 0; i < items.size(); ++i) out.raw(std::string_view(get(items[i])).substr(shared[i]));
  } else {
    static_assert(std::is_same_v<S, std::monostate> || std::is_same_v<S, crdt::Empty>);
  }
}

// The keys of a writeKeys column, rebuilt: views into `arena` (one allocation for them all).
struct Keys {
  std::string arena;
  std::vector<std::string_view> views;
};
// Reads a writeKeys column for T = std::string (for monostate and Empty: nothing). The keys of one
// value expand to at most limits.maxMessageBytes in all (three bytes of input may say a key of
// limits.maxKeyBytes: the bound keeps that amplification to what a message may carry).
template <typename T>
Keys readKeys(ColumnReader& in, uint64_t count, size_t reserve, const Limits& limits, const char* what) {
  Keys out;
  if constexpr (std::is_same_v<T, std::string>) {
    std::vector<uint64_t> shared, length;
    shared.reserve(reserve);
    length.reserve(reserve);
    if (count > 0) shared.push_back(0);
    for (uint64_t i = 1; i < count; ++i) shared.push_back(in.varint());
    uint64_t total = 0, previous = 0;
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t rest = in.varint();
      if (shared[i] > previous) in.fail(std::string(what) + " shares more than the previous key holds");
      if (rest > limits.maxKeyBytes - shared[i]) in.fail(std::string(what) + " longer than its limit");
      previous = shared[i] + rest;
      length.push_back(previous);
      total += previous;
      if (total > limits.maxMessageBytes) in.fail(std::string(what) + "s expand beyond limits.maxMessageBytes");
    }
    out.arena.resize(total);
    out.views.reserve(reserve);
    char* at = out.arena.data();
    const char* before = at;
    for (uint64_t i = 0; i < count; ++i) {
      const std::string_view rest = in.raw(length[i] - shared[i]);
      std::memcpy(at, before, shared[i]);
      std::memcpy(at + shared[i], rest.data(), rest.size());
      out.views.emplace_back(at, length[i]);
      before = at;
      at += length[i];
    }
  } else {
    static_assert(std::is_same_v<T, std::monostate> || std::is_same_v<T, crdt::Empty>);
  }
  return out;
}

// The i-th string of a readStrings column: a view for T = std::string (no copy: keys go
// straight into the store's own key storage), else T's one value.
template <typename T>
auto viewAt(const std::vector<std::string_view>& column, size_t i) {
  if constexpr (std::is_same_v<T, std::string>) {
    return column[i];
  } else {
    return T{};
  }
}

// Timestamps: the first as (ts >> 16, ts & 0xffff), later ones relative to the previous.
class TimestampWriter {
 public:
  void write(ColumnWriter& out, crdt::Timestamp ts) {
    if (first_) {
      out.varint(ts.value >> 16);
      out.varint(ts.value & 0xffff);
      first_ = false;
    } else {
      out.varint(zigzag(static_cast<int64_t>(ts.value - prev_)));
    }
    prev_ = ts.value;
  }

 private:
  bool first_ = true;
  uint64_t prev_ = 0;
};

class TimestampReader {
 public:
  crdt::Timestamp read(ColumnReader& in) {
    if (first_) {
      uint64_t high = in.varint();
      uint64_t low = in.varint();
      if (high >> 48 != 0 || low > 0xffff) in.fail("timestamp out of range");
      prev_ = high << 16 | low;
      first_ = false;
    } else {
      prev_ += static_cast<uint64_t>(in.signedVarint());
    }
    return crdt::Timestamp{prev_};
  }

 private:
  bool first_ = true;
  uint64_t prev_ = 0;
};

// Dot counters: per writer reference, the first absolute, later ones relative.
class CounterColumn {
 public:
  explicit CounterColumn(size_t refs) : prev_(refs, 0) {}

  void write(ColumnWriter& out, size_t ref, uint64_t counter) {
    if (prev_[ref] == 0) {
      out.varint(counter);
    } else {
      out.varint(zigzag(static_cast<int64_t>(counter - prev_[ref])));
    }
    prev_[ref] = counter;
  }
  uint64_t read(ColumnReader& in, size_t ref) {
    uint64_t c = prev_[ref] == 0 ? in.varint() : prev_[ref] + static_cast<uint64_t>(in.signedVarint());
    if (c == 0 || c > crdt::kMaxDotCounter) in.fail("dot counter outside 1..2^48-1");
    prev_[ref] = c;
    return c;
  }

 private:
  std::vector<uint64_t> prev_;
};

// ---- causal kinds ------------------------------------------------------------------------

// The positions of a store's entries in the order they go out: by (writer, counter), the
// implicit writer's first (its references are 0): then each counter is 1-2 bytes after the
// writer's first, and timestamps, which grow with a writer's counter, differ little from the
// previous entry's (store order, which follows arrival and swap-removes, made them 3-4 bytes). It
// also makes the bytes independent of the order the entries arrived and were erased in
// (DotStore::dotOrder). `order`: the positions to write, in (writer, counter) order.
template <typename Store>
std::vector<uint32_t> sendOrder(const Store& store, std::vector<uint32_t> order, crdt::ReplicaId implicit) {
  auto byImplicit = [&](uint32_t p) { return store.dotAt(p).replica == implicit; };
  auto implicitFirst = std::find_if(order.begin(), order.end(), byImplicit);
  std::rotate(order.begin(), implicitFirst, std::find_if_not(implicitFirst, order.end(), byImplicit));
  return order;
}
template <typename Store>
std::vector<uint32_t> sendOrder(const Store& store, crdt::ReplicaId implicit) {
  std::vector<uint32_t> order = store.dotOrder();
  if (order.empty()) {
    order.resize(store.size());
    std::iota(order.begin(), order.end(), 0u);
  }
  return sendOrder(store, std::move(order), implicit);
}

// Adds the dots of the entries at `order` (in sendOrder's order) to ctx, a run of consecutive
// counters at a time: appends, never shifts.
template <typename Store>
void addDots(const Store& store, const std::vector<uint32_t>& order, crdt::CausalContext& ctx) {
  for (size_t i = 0; i < order.size();) {
    const crdt::Dot d = store.dotAt(order[i]);
    uint64_t hi = d.counter;
    for (++i; i < order.size(); ++i) {
      const crdt::Dot e = store.dotAt(order[i]);
      if (e.replica != d.replica || e.counter != hi + 1) break;
      hi = e.counter;
    }
    ctx.addRange(d.replica, d.counter, hi);
  }
}

// The columns of a store's entries at `order` (the count is written by the caller): dots, keys,
// values, timestamps. `counters` and `stamps` continue across the stores of one value (an
// or-map's).
template <typename Store>
void writeEntries(const Store& store, const std::vector<uint32_t>& order, const WriterTable& w,
                  CounterColumn& counters, TimestampWriter& stamps, ColumnWriter& out) {
  for (uint32_t p : order) {
    const crdt::Dot d = store.dotAt(p);
    const size_t ref = w.index(d.replica);
    if (w.present()) out.varint(ref);
    counters.write(out, ref, d.counter);
  }
  writeKeys(out, order, [&](uint32_t p) { return store.keyAt(p); });
  using StoreValue = typename Store::Value;
  if constexpr (std::is_same_v<StoreValue, crdt::Stamped<std::string>>) {
    writeStrings(out, order, [&](uint32_t p) { return std::string_view(store.valueAt(p).value); });
    for (uint32_t p : order) stamps.write(out, store.valueAt(p).ts);
  } else {
    writeStrings(out, order, [&](uint32_t p) -> const auto& { return store.valueAt(p); });
  }
}

// How a value's context goes out: as what the entries' dots do not say (extra), or whole when
// that is shorter (after strided deletes the removed dots are many intervals, the context one).
struct ContextOut {
  crdt::CausalContext extra;
  bool whole = false;

  // carried: every entry's dot.
  ContextOut(const crdt::CausalContext& ctx, const crdt::CausalContext& carried)
      : extra(ctx.minus(carried)), whole(ctx.intervalCount() < extra.intervalCount()) {}
  bool present() const { return !extra.empty(); }

  void write(const crdt::CausalContext& ctx, const WriterTable& w, ColumnWriter& out) const {
    if (!present()) return;
    const crdt::CausalContext& context = whole ? ctx : extra;
    out.varint(context.origins().size());
    for (const auto& o : context.origins()) {
      w.ref(out, o.replica);
      out.varint(o.intervals.size());
      _::writeRuns(o.intervals, out);
    }
  }
};

// Every writer a causal value names is an origin of its context (store dots lie in it).
WriterTable writersOf(const crdt::CausalContext& ctx, crdt::ReplicaId implicit) {
  WriterTable w(implicit);
  for (const auto& o : ctx.origins()) w.collect(o.replica);
  w.finish();
  return w;
}

// A dot-store kind's value made of the store's entries at `order` (sendOrder's) and context ctx,
// which holds their dots.
template <typename Store>
void encodeCausalEntries(size_t kind, const Store& store, const std::vector<uint32_t>& order,
                         const crdt::CausalContext& ctx, crdt::ReplicaId implicit, ColumnWriter& out) {
  const WriterTable w = writersOf(ctx, implicit);
  crdt::CausalContext carried;
  addDots(store, order, carried);
  const ContextOut context(ctx, carried);
  writeHeader(out, kind, w, context.present(), context.whole, order.size());
  CounterColumn counters(w.size());
  TimestampWriter stamps;
  writeEntries(store, order, w, counters, stamps, out);
  context.write(ctx, w, out);
}

// One write (isOneWrite): the bytes encodeCausalEntries makes of it, written straight (a one-write
// delta is what most pushes and every presence track carry: no order, context or table to build).
template <typename T>
void encodeOneWrite(const T& x, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  const auto& store = x.store();
  const crdt::Dot d = store.dotAt(0);
  const bool listed = d.replica != implicit;
  size_t strings = 0;  // (one allocation for the value's bytes, not one per doubling)
  if constexpr (std::is_same_v<typename T::Store::Key, std::string>) strings += store.keyAt(0).size();
  if constexpr (std::is_same_v<typename T::Store::Value, crdt::Stamped<std::string>>) strings += store.valueAt(0).value.size();
  if constexpr (std::is_same_v<typename T::Store::Value, std::string>) strings += store.valueAt(0).size();
  out.reserve(out.size() + 64 + strings);
  out.byte(static_cast<unsigned char>(kind | kOne | (listed ? kHasWriters : 0)));
  if (listed) {
    out.varint(1);
    out.fixed64(d.replica.value);
    out.varint(1);  // its reference
  }
  out.varint(d.counter);
  if constexpr (std::is_same_v<typename T::Store::Key, std::string>) writeBytes(out, store.keyAt(0));
  const auto& value = store.valueAt(0);
  if constexpr (std::is_same_v<std::decay_t<decltype(value)>, crdt::Stamped<std::string>>) {
    writeBytes(out, value.value);
    TimestampWriter().write(out, value.ts);
  } else if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>) {
    writeBytes(out, value);
  }
}

template <typename T>
bool oneWrite(const T& x) {
  if (x.store().size() != 1) return false;
  const crdt::Dot d = x.store().dotAt(0);
  const auto& origins = x.context().origins();
  return origins.size() == 1 && origins[0].replica == d.replica && origins[0].intervals.size() == 1 &&
         origins[0].intervals[0].lo == d.counter && origins[0].intervals[0].hi == d.counter;
}

template <typename T>
void encodeCausal(const T& x, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  if (oneWrite(x)) return encodeOneWrite(x, kind, implicit, out);
  encodeCausalEntries(kind, x.store(), sendOrder(x.store(), implicit), x.context(), implicit, out);
}

// An or-map: its keys (strictly increasing, writeKeys), then per key the entry count of
// its nested store (>= 1) and that store's entry columns, then the one context of the map.
template <typename M>
void encodeOrMap(const M& m, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  using Inner = typename M::Store::Inner;
  WriterTable w(implicit);
  for (const auto& o : m.context().origins()) w.collect(o.replica);
  w.finish();
  std::vector<std::pair<std::string_view, const Inner*>> keys;
  keys.reserve(m.store().size());
  m.store().forEach([&](const std::string& k, const Inner& inner) { keys.emplace_back(k, &inner); });
  std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::vector<uint32_t>> orders;
  orders.reserve(keys.size());
  std::vector<crdt::Dot> dots;
  for (const auto& [k, inner] : keys) {
    orders.push_back(sendOrder(*inner, implicit));
    for (uint32_t p : orders.back()) dots.push_back(inner->dotAt(p));
  }
  std::sort(dots.begin(), dots.end());
  crdt::CausalContext carried;
  for (crdt::Dot d : dots) carried.add(d);
  const ContextOut context(m.context(), carried);
  writeHeader(out, kind, w, context.present(), context.whole, keys.size());
  writeKeys(out, keys, [](const auto& k) { return k.first; });
  CounterColumn counters(w.size());
  TimestampWriter stamps;
  for (size_t i = 0; i < keys.size(); ++i) {
    out.varint(orders[i].size());
    writeEntries(*keys[i].second, orders[i], w, counters, stamps, out);
  }
  context.write(m.context(), w, out);
}

// Reads `count` entries (writeEntries' columns) into a store; appends their dots to `dots`.
template <typename Store>
Store readEntries(ColumnReader& in, WriterRefs& w, uint64_t count, CounterColumn& counters, TimestampReader& stamps,
                  std::vector<crdt::Dot>& dots, const Limits& limits) {
  using K = typename Store::Key;
  using StoreValue = typename Store::Value;
  // Every entry takes at least one byte, so the bytes bound what may be reserved; and never
  // more than kMaxReserve for a count nobody has checked yet. Entries go into a Loader, as in
  // the column decoder, so both encodings index them alike and enforce the same rules.
  const size_t reserve = std::min<size_t>({count, in.remaining(), kMaxReserve});
  typename Store::Loader load(reserve);
  std::vector<uint32_t> slots(w.size(), UINT32_MAX);  // load's handle per writer reference
  std::vector<uint32_t> writers;                      // load's handle per entry
  writers.reserve(reserve);
  const size_t first = dots.size();
  dots.reserve(first + reserve);
  for (uint64_t i = 0; i < count; ++i) {
    size_t ref = w.read(in);
    dots.push_back(crdt::Dot{w.id(ref), counters.read(in, ref)});
    if (slots[ref] == UINT32_MAX) slots[ref] = load.writer(dots.back().replica);
    writers.push_back(slots[ref]);
  }
  const Keys keys = readKeys<K>(in, count, reserve, limits, "key");
  using Scalar = std::conditional_t<std::is_same_v<StoreValue, crdt::Stamped<std::string>>, std::string, StoreValue>;
  const auto values = readStrings<Scalar>(in, count, reserve, limits.maxValueBytes, "value");
  for (uint64_t i = 0; i < count; ++i) {
    StoreValue value;
    if constexpr (std::is_same_v<StoreValue, crdt::Stamped<std::string>>) {
      value.value = std::string(values[i]);
      value.ts = stamps.read(in);
    } else {
      value = StoreValue(viewAt<StoreValue>(values, i));
    }
    load.add(writers[i], dots[first + i].counter, viewAt<K>(keys.views, i), std::move(value));
  }
  return _::finishLoad<K, StoreValue>(std::move(load), limits, in.column());
}

// The value's context: its entries' dots (`dots`, any order; sorted here) and, as the header
// says, the extra or whole context that follows.
crdt::CausalContext readContext(ColumnReader& in, WriterRefs& w, ContextForm form, std::vector<crdt::Dot>& dots,
                                const Limits& limits) {
  // Added in dot order: entries may come in any order, and adding out of order would shift
  // intervals (quadratic in the entries).
  std::sort(dots.begin(), dots.end());
  crdt::CausalContext ctx;
  for (crdt::Dot d : dots) ctx.add(d);
  if (form != ContextForm::kNone) {
    crdt::CausalContext extra;
    uint64_t origins = in.varint();
    if (origins == 0) in.fail("empty context (the flag says there is one)");
    if (origins > limits.maxOrigins) in.fail("more than limits.maxOrigins context origins");
    uint64_t prev = 0;
    for (uint64_t k = 0; k < origins; ++k) {
      crdt::ReplicaId r = w.id(w.read(in));
      if (k > 0 && !(prev < r.value)) in.fail("context origins not strictly increasing");
      prev = r.value;
      uint64_t n = in.varint();
      if (n == 0) in.fail("context origin without intervals");
      if (n > limits.maxIntervalsPerOrigin) in.fail("more than limits.maxIntervalsPerOrigin intervals");
      uint64_t next = 1;
      for (uint64_t j = 0; j < n; ++j) _::readRun(in, r, next, extra);
    }
    if (form == ContextForm::kWhole) {
      // The context as it is: every entry's dot must lie in it (dots are sorted: one pass per
      // origin would do, but a lookup each is O(log intervals) and simpler to trust).
      for (crdt::Dot d : dots) {
        if (!extra.contains(d)) in.fail("an entry's dot lies outside the whole context");
      }
      ctx = std::move(extra);
    } else {
      ctx.join(extra);
    }
  }
  // The limits of the column decoder, on the context as a whole (entries' dots included), so
  // that whatever is accepted here also travels in state chunks.
  if (ctx.origins().size() > limits.maxOrigins) in.fail("more than limits.maxOrigins origins in the context");
  for (const auto& o : ctx.origins()) {
    if (o.intervals.size() > limits.maxIntervalsPerOrigin) {
      in.fail("more than limits.maxIntervalsPerOrigin intervals in the context");
    }
  }
  return ctx;
}

template <typename T>
T decodeCausal(ColumnReader& in, WriterRefs& w, uint64_t count, ContextForm context, const Limits& limits) {
  if (count == 1 && context == ContextForm::kNone) {
    // One write: readEntries' columns for one entry, with its rules, read straight into the store.
    using Store = typename T::Store;
    using StoreValue = typename Store::Value;
    const size_t ref = w.read(in);
    const crdt::Dot d{w.id(ref), CounterColumn(w.size()).read(in, ref)};
    typename Store::Key key{};
    if constexpr (std::is_same_v<typename Store::Key, std::string>) key = std::string(readBytes(in, limits.maxKeyBytes, "key"));
    StoreValue value{};
    if constexpr (std::is_same_v<StoreValue, crdt::Stamped<std::string>>) {
      value.value = std::string(readBytes(in, limits.maxValueBytes, "value"));
      value.ts = TimestampReader().read(in);
    } else if constexpr (std::is_same_v<StoreValue, std::string>) {
      value = std::string(readBytes(in, limits.maxValueBytes, "value"));
    }
    if (limits.maxOrigins == 0) in.fail("more than limits.maxOrigins origins in the context");
    Store store;
    store.insertNew(key, d, std::move(value));
    crdt::CausalContext ctx;
    ctx.add(d);
    return T::fromParts(std::move(store), std::move(ctx));
  }
  std::vector<crdt::Dot> dots;
  CounterColumn counters(w.size());
  TimestampReader stamps;
  auto store = readEntries<typename T::Store>(in, w, count, counters, stamps, dots, limits);
  return T::fromParts(std::move(store), readContext(in, w, context, dots, limits));
}

template <typename M>
M decodeOrMap(ColumnReader& in, WriterRefs& w, uint64_t count, ContextForm context, const Limits& limits) {
  using Inner = typename M::Store::Inner;
  const size_t reserve = std::min<size_t>({count, in.remaining(), kMaxReserve});
  const Keys read = readKeys<std::string>(in, count, reserve, limits, "or-map key");
  const std::vector<std::string_view>& keys = read.views;
  for (size_t i = 1; i < keys.size(); ++i) {
    if (!(keys[i - 1] < keys[i])) in.fail("or-map keys not strictly increasing");
  }
  typename M::Store store;
  std::vector<crdt::Dot> dots;
  CounterColumn counters(w.size());
  TimestampReader stamps;
  for (std::string_view k : keys) {
    const uint64_t n = in.varint();
    if (n == 0) in.fail("an or-map key with no entries (absent keys are never sent)");
    if (n > limits.maxEntries) in.fail("more than limits.maxEntries entries under an or-map key");
    store.put(std::string(k), readEntries<Inner>(in, w, n, counters, stamps, dots, limits));
  }
  crdt::CausalContext ctx = readContext(in, w, context, dots, limits);  // (sorts dots)
  if (std::adjacent_find(dots.begin(), dots.end()) != dots.end()) in.fail("the same dot appears under two or-map keys");
  return M::fromParts(std::move(store), std::move(ctx));
}

// ---- counters and the register -----------------------------------------------------------

// A counter's entries (the count is written by the caller): per entry its writer reference and
// its count, or increments and decrements.
template <typename C>
void writeCounterEntries(const C& c, const WriterTable& w, ColumnWriter& out) {
  for (const auto& e : c) {
    w.ref(out, e.replica);
    if constexpr (std::is_same_v<C, crdt::GCounter>) {
      out.varint(e.count);
    } else {
      out.varint(e.increments);
      out.varint(e.decrements);
    }
  }
}

template <typename C>
void encodeCounter(const C& c, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  WriterTable w(implicit);
  for (const auto& e : c) w.collect(e.replica);
  w.finish();
  writeHeader(out, kind, w, false, false, c.size());
  writeCounterEntries(c, w, out);
}

template <typename C>
C decodeCounter(ColumnReader& in, WriterRefs& w, uint64_t count) {
  std::vector<typename C::Entry> entries;
  entries.reserve(std::min<size_t>({count, in.remaining(), kMaxReserve}));
  for (uint64_t i = 0; i < count; ++i) {
    crdt::ReplicaId r = w.id(w.read(in));
    if (!entries.empty() && !(entries.back().replica < r)) in.fail("counter replica ids not strictly increasing");
    if constexpr (std::is_same_v<C, crdt::GCounter>) {
      uint64_t n = in.varint();
      if (n == 0) in.fail("zero count (zero entries are never sent)");
      entries.push_back({r, n});
    } else {
      uint64_t inc = in.varint();
      uint64_t dec = in.varint();
      if (inc == 0 && dec == 0) in.fail("all-zero counter entry (zero entries are never sent)");
      entries.push_back({r, inc, dec});
    }
  }
  return C::fromEntries(entries);
}

// A map of counters: its keys (strictly increasing, writeKeys), then per key its totals
// (varint n >= 1, n pn-counter entries) and floors (varint m, m entries).
void encodeCounterMap(const MapOfCounters& m, crdt::ReplicaId implicit, ColumnWriter& out) {
  WriterTable w(implicit);
  for (const auto& [k, slot] : m) {
    for (const auto& e : slot.totals) w.collect(e.replica);
    for (const auto& e : slot.floors) w.collect(e.replica);
  }
  w.finish();
  writeHeader(out, kMapOfCountersKind, w, false, false, m.slotCount());
  std::vector<std::string_view> keys;
  keys.reserve(m.slotCount());
  for (const auto& [k, slot] : m) keys.push_back(k);
  writeKeys(out, keys, [](std::string_view k) { return k; });
  for (const auto& [k, slot] : m) {
    out.varint(slot.totals.size());
    writeCounterEntries(slot.totals, w, out);
    out.varint(slot.floors.size());
    writeCounterEntries(slot.floors, w, out);
  }
}

MapOfCounters decodeCounterMap(ColumnReader& in, WriterRefs& w, uint64_t count, const Limits& limits) {
  const size_t reserve = std::min<size_t>({count, in.remaining(), kMaxReserve});
  const Keys read = readKeys<std::string>(in, count, reserve, limits, "map-of-counters key");
  const std::vector<std::string_view>& keys = read.views;
  for (size_t i = 1; i < keys.size(); ++i) {
    if (!(keys[i - 1] < keys[i])) in.fail("map-of-counters keys not strictly increasing");
  }
  MapOfCounters out;
  uint64_t entries = 0;
  auto counter = [&] {
    const uint64_t n = in.varint();
    entries += std::min<uint64_t>(n, limits.maxEntries + uint64_t{1});
    if (entries > limits.maxEntries) in.fail("more than limits.maxEntries counter entries");
    return decodeCounter<crdt::PNCounter>(in, w, n);
  };
  for (std::string_view k : keys) {
    MapOfCounters::Slot slot;
    slot.totals = counter();
    slot.floors = counter();
    if (slot.totals.empty()) in.fail("a map-of-counters key without totals");
    if (!MapOfCounters::valid(slot)) in.fail("a floor above its writer's totals (floors are observed totals)");
    out.insertSlot(std::string(k), std::move(slot));
  }
  return out;
}

void encodeRegister(const crdt::LWWRegister<std::string>& r, crdt::ReplicaId implicit, ColumnWriter& out) {
  WriterTable w(implicit);
  if (r.get() != nullptr) w.collect(r.writer());
  w.finish();
  writeHeader(out, 2, w, false, false, r.get() != nullptr ? 1 : 0);
  if (r.get() == nullptr) return;
  w.ref(out, r.writer());
  TimestampWriter().write(out, r.timestamp());
  writeBytes(out, *r.get());
}

crdt::LWWRegister<std::string> decodeRegister(ColumnReader& in, WriterRefs& w, uint64_t count, const Limits& limits) {
  crdt::LWWRegister<std::string> r;
  if (count > 1) in.fail("a register holds at most one value");
  if (count == 0) return r;
  crdt::ReplicaId writer = w.id(w.read(in));
  crdt::Timestamp ts = TimestampReader().read(in);
  r.set(writer, std::string(readBytes(in, limits.maxValueBytes, "value")), ts);
  return r;
}

}  // namespace

bool isOneWrite(const Value& v) {
  return std::visit(
      [](const auto& x) {
        if constexpr (requires { x.store().keyAt(0); }) {  // the dot-store kinds (not the or-maps)
          return oneWrite(x);
        } else {
          return false;
        }
      },
      v);
}

void encodeCompact(const Value& v, crdt::ReplicaId implicitWriter, ColumnWriter& out) {
  const size_t kind = v.index();
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::GCounter> || std::is_same_v<T, crdt::PNCounter>) {
          encodeCounter(x, kind, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
          encodeRegister(x, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, MapOfMaps> || std::is_same_v<T, MapOfSets>) {
          encodeOrMap(x, kind, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, MapOfCounters>) {
          encodeCounterMap(x, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, Tombstone>) {
          writeHeader(out, kind, WriterTable(implicitWriter), false, false, 1);
        } else {
          encodeCausal(x, kind, implicitWriter, out);
        }
      },
      v);
}

Value decodeCompact(const unsigned char* data, size_t size, crdt::ReplicaId implicitWriter, const Limits& limits) {
  ColumnReader in(data, size, "compact value");
  const unsigned header = in.byte();
  const size_t kind = (header & kKindBits) | ((header & kKindHigh) != 0 ? kKindBits + 1 : 0);
  if (kind >= kKindCount) in.fail("unknown kind " + std::to_string(kind));
  const bool hasContext = (header & kHasContext) != 0;
  if (hasContext && !causalKind(kind)) in.fail("extra context on a kind without a causal context");
  if ((header & kWholeContext) != 0 && !hasContext) in.fail("whole-context flag without a context");
  if (kind == kTombstoneKind) {
    // A header alone: no writers, entries or context.
    if (header != ((kTombstoneKind & kKindBits) | kKindHigh | kOne)) in.fail("a tombstone with flags besides ONE");
    in.expectEnd();
    return Tombstone{};
  }
  const ContextForm context = !hasContext                       ? ContextForm::kNone
                              : (header & kWholeContext) != 0 ? ContextForm::kWhole
                                                              : ContextForm::kExtra;
  WriterRefs w(in, (header & kHasWriters) != 0, implicitWriter, limits);
  const uint64_t count = (header & kOne) != 0 ? 1 : in.varint();
  if (count > limits.maxEntries) in.fail("more than limits.maxEntries entries");
  Value out = [&]() -> Value {
    switch (kind) {
      case 0: return decodeCounter<crdt::GCounter>(in, w, count);
      case 1: return decodeCounter<crdt::PNCounter>(in, w, count);
      case 2: return decodeRegister(in, w, count, limits);
      case 3: return decodeCausal<crdt::MVRegister<std::string>>(in, w, count, context, limits);
      case 4: return decodeCausal<crdt::EWFlag>(in, w, count, context, limits);
      case 5: return decodeCausal<crdt::ORSet<std::string>>(in, w, count, context, limits);
      case 6: return decodeCausal<Map>(in, w, count, context, limits);
      case kMapOfMapsKind: return decodeOrMap<MapOfMaps>(in, w, count, context, limits);
      case kMapOfSetsKind: return decodeOrMap<MapOfSets>(in, w, count, context, limits);
      default: return decodeCounterMap(in, w, count, limits);
    }
  }();
  static_assert(kKindCount == kMapOfCountersKind + 1, "a new kind needs its compact form");
  in.expectEnd();
  w.requireAllUsed(in);
  return out;
}

template <typename T>
void encodeCompactPart(const T& x, Positions at, const crdt::CausalContext& ctx, crdt::ReplicaId implicit,
                       ColumnWriter& out) {
  std::vector<uint32_t> order(at.count);
  for (uint32_t i = 0; i < at.count; ++i) order[i] = at[i];
  encodeCausalEntries(kindIndex<T>(), x.store(), sendOrder(x.store(), std::move(order), implicit), ctx, implicit, out);
}

template void encodeCompactPart(const crdt::MVRegister<std::string>&, Positions, const crdt::CausalContext&,
                                crdt::ReplicaId, ColumnWriter&);
template void encodeCompactPart(const crdt::EWFlag&, Positions, const crdt::CausalContext&, crdt::ReplicaId,
                                ColumnWriter&);
template void encodeCompactPart(const crdt::ORSet<std::string>&, Positions, const crdt::CausalContext&,
                                crdt::ReplicaId, ColumnWriter&);
template void encodeCompactPart(const Map&, Positions, const crdt::CausalContext&, crdt::ReplicaId, ColumnWriter&);

size_t wireSize(const Value& v, crdt::ReplicaId compactWriter) {
  ColumnWriter w;
  encodeCompact(v, compactWriter, w);
  return w.size();
}

}  // namespace deltasync::gossip
