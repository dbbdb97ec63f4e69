#include "gossip/compact.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gossip/codec.h"  // writeRuns, readRun
#include "gossip/envelope.h"

namespace deltasync::gossip {

namespace {

constexpr unsigned kKindBits = 0x07;
constexpr unsigned kHasWriters = 0x08;
constexpr unsigned kHasContext = 0x10;
constexpr unsigned kOne = 0x20;
constexpr unsigned kWholeContext = 0x40;
constexpr unsigned kReserved = 0x80;
constexpr size_t kFirstCausalKind = 3;  // mvRegister
constexpr size_t kOrMapKind = 7;
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
  out.byte(static_cast<unsigned char>(kind | (w.present() ? kHasWriters : 0) | (context ? kHasContext : 0) |
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

// Keys and values of the causal kinds: byte strings, or nothing (std::monostate, crdt::Empty).
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

template <typename T>
void encodeCausal(const T& x, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  const auto& store = x.store();
  const crdt::CausalContext& ctx = x.context();
  // Every writer the value names is an origin of its context (store dots lie in it).
  WriterTable w(implicit);
  for (const auto& o : ctx.origins()) w.collect(o.replica);
  w.finish();

  // Entries go out by (writer, counter), the implicit writer's first (its references are 0):
  // then each counter is 1-2 bytes after the writer's first, and timestamps, which grow with a
  // writer's counter, differ little from the previous entry's (store order, which follows arrival
  // and swap-removes, made them 3-4 bytes). It also makes the bytes independent of the order the
  // entries arrived and were erased in (DotStore::dotOrder).
  using Store = std::decay_t<decltype(store)>;
  struct Item {
    size_t ref;
    uint64_t counter;
    std::remove_cvref_t<typename Store::KeyView> key;  // a view for strings, else a copy
    const typename Store::Value* value;
  };
  std::vector<uint32_t> order = store.dotOrder();
  if (order.empty()) {
    order.resize(store.size());
    std::iota(order.begin(), order.end(), 0u);
  }
  auto byImplicit = [&](uint32_t p) { return store.dotAt(p).replica == implicit; };
  auto implicitFirst = std::find_if(order.begin(), order.end(), byImplicit);
  std::rotate(order.begin(), implicitFirst, std::find_if_not(implicitFirst, order.end(), byImplicit));
  std::vector<Item> items;
  items.reserve(store.size());
  for (uint32_t p : order) {
    const crdt::Dot d = store.dotAt(p);
    items.push_back({w.index(d.replica), d.counter, store.keyAt(p), &store.valueAt(p)});
  }

  // The context travels as what the entries' dots do not say (extra), or whole when that is
  // shorter: after strided deletes the removed dots are many intervals, the context one.
  crdt::CausalContext carried;  // added in (writer, counter) order: appends, never shifts
  for (const Item& it : items) carried.add(crdt::Dot{w.id(it.ref), it.counter});
  crdt::CausalContext extra = ctx.minus(carried);
  const bool whole = ctx.intervalCount() < extra.intervalCount();
  const crdt::CausalContext& context = whole ? ctx : extra;
  writeHeader(out, kind, w, !extra.empty(), whole, store.size());

  CounterColumn counters(w.size());
  for (const Item& it : items) {
    if (w.present()) out.varint(it.ref);
    counters.write(out, it.ref, it.counter);
  }
  writeStrings(out, items, [](const Item& it) { return it.key; });
  using StoreValue = typename Store::Value;
  if constexpr (std::is_same_v<StoreValue, crdt::Stamped<std::string>>) {
    writeStrings(out, items, [](const Item& it) { return std::string_view(it.value->value); });
    TimestampWriter stamps;
    for (const Item& it : items) stamps.write(out, it.value->ts);
  } else {
    writeStrings(out, items, [](const Item& it) -> const auto& { return *it.value; });
  }
  if (extra.empty()) return;
  out.varint(context.origins().size());
  for (const auto& o : context.origins()) {
    w.ref(out, o.replica);
    out.varint(o.intervals.size());
    _::writeRuns(o.intervals, out);
  }
}

template <typename T>
T decodeCausal(ColumnReader& in, WriterRefs& w, uint64_t count, ContextForm context, const Limits& limits) {
  using K = typename T::Store::Key;
  using StoreValue = typename T::Store::Value;
  // Every entry takes at least one byte, so the bytes bound what may be reserved; and never
  // more than kMaxReserve for a count nobody has checked yet. Entries go into a Loader, as in
  // the column decoder, so both encodings index them alike and enforce the same rules.
  const size_t reserve = std::min<size_t>({count, in.remaining(), kMaxReserve});
  typename T::Store::Loader load(reserve);
  std::vector<uint32_t> slots(w.size(), UINT32_MAX);  // load's handle per writer reference
  std::vector<uint32_t> writers;                      // load's handle per entry
  writers.reserve(reserve);
  std::vector<crdt::Dot> dots;
  dots.reserve(reserve);
  CounterColumn counters(w.size());
  for (uint64_t i = 0; i < count; ++i) {
    size_t ref = w.read(in);
    dots.push_back(crdt::Dot{w.id(ref), counters.read(in, ref)});
    if (slots[ref] == UINT32_MAX) slots[ref] = load.writer(dots.back().replica);
    writers.push_back(slots[ref]);
  }
  const auto keys = readStrings<K>(in, count, reserve, limits.maxKeyBytes, "key");
  using Scalar = std::conditional_t<std::is_same_v<StoreValue, crdt::Stamped<std::string>>, std::string, StoreValue>;
  const auto values = readStrings<Scalar>(in, count, reserve, limits.maxValueBytes, "value");
  TimestampReader stamps;
  for (uint64_t i = 0; i < count; ++i) {
    StoreValue value;
    if constexpr (std::is_same_v<StoreValue, crdt::Stamped<std::string>>) {
      value.value = std::string(values[i]);
      value.ts = stamps.read(in);
    } else {
      value = StoreValue(viewAt<StoreValue>(values, i));
    }
    load.add(writers[i], dots[i].counter, viewAt<K>(keys, i), std::move(value));
  }
  auto store = _::finishLoad<K, StoreValue>(std::move(load), limits, in.column());
  // The context from the entries' dots, added in dot order: entries may come in any order, and
  // adding out of order would shift intervals (quadratic in the entries).
  std::sort(dots.begin(), dots.end(), [](crdt::Dot a, crdt::Dot b) {
    return a.replica != b.replica ? a.replica < b.replica : a.counter < b.counter;
  });
  crdt::CausalContext ctx;
  for (crdt::Dot d : dots) ctx.add(d);
  if (context != ContextForm::kNone) {
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
    if (context == ContextForm::kWhole) {
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
  return T::fromParts(std::move(store), std::move(ctx));
}

// ---- counters and the register -----------------------------------------------------------

template <typename C>
void encodeCounter(const C& c, size_t kind, crdt::ReplicaId implicit, ColumnWriter& out) {
  WriterTable w(implicit);
  for (const auto& e : c) w.collect(e.replica);
  w.finish();
  writeHeader(out, kind, w, false, false, c.size());
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

bool compactable(const Value& v) { return v.index() < kOrMapKind; }  // (not the or-maps, nor a tombstone)

void encodeCompact(const Value& v, crdt::ReplicaId implicitWriter, ColumnWriter& out) {
  const size_t kind = v.index();
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::GCounter> || std::is_same_v<T, crdt::PNCounter>) {
          encodeCounter(x, kind, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
          encodeRegister(x, implicitWriter, out);
        } else if constexpr (std::is_same_v<T, MapOfMaps> || std::is_same_v<T, MapOfSets> || std::is_same_v<T, Tombstone> ||
                             std::is_same_v<T, MapOfCounters>) {
          throw std::invalid_argument(std::string("encodeCompact: the ") + kindName(kind) + " kind has no compact form");
        } else {
          encodeCausal(x, kind, implicitWriter, out);
        }
      },
      v);
}

Value decodeCompact(const unsigned char* data, size_t size, crdt::ReplicaId implicitWriter, const Limits& limits) {
  ColumnReader in(data, size, "compact value");
  const unsigned header = in.byte();
  if ((header & kReserved) != 0) in.fail("reserved header bits set");
  const size_t kind = header & kKindBits;
  if (kind == kOrMapKind) in.fail("the or-map has no compact form");
  const bool hasContext = (header & kHasContext) != 0;
  if (hasContext && kind < kFirstCausalKind) in.fail("extra context on a kind without a causal context");
  if ((header & kWholeContext) != 0 && !hasContext) in.fail("whole-context flag without a context");
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
      default: return decodeCausal<Map>(in, w, count, context, limits);
    }
  }();
  in.expectEnd();
  w.requireAllUsed(in);
  return out;
}

size_t wireSize(const Value& v, crdt::ReplicaId compactWriter) {
  if (compactWriter.value == 0 || !compactable(v)) return encodeValue(v).size();
  ColumnWriter w;
  encodeCompact(v, compactWriter, w);
  return w.size();
}

}  // namespace deltasync::gossip
