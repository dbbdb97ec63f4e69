#include "lib/objects.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include <deltasync/codec.h>
#include <deltasync/errors.h>

#include "gossip/limits.h"
#include "lib/runtime.h"

namespace deltasync::objects {

using gossip::Value;

crdt::Timestamp Clock::after(crdt::Timestamp replaced) {
  try {
    return hlc_.update(replaced, Runtime::wallMs());
  } catch (const crdt::ClockSkewError&) {
    // The replaced stamp is further ahead of our clock than the HLC accepts: do not let it drag
    // our clock along; the write gets our own time (and may lose to that value).
    return hlc_.now(Runtime::wallMs());
  }
}

namespace {

// The name as an error message may show it: at most 64 bytes, control bytes as \xNN.
std::string shown(const std::string& name) {
  std::string out;
  for (unsigned char c : name.substr(0, 64)) {
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return name.size() > 64 ? out + "..." : out;
}

void refuse(const std::string& name, const std::string& problem) {
  throw LimitExceeded("object '" + shown(name) + "': " + problem + ": peers would refuse it");
}

// |by| as the unsigned step the counters take (INT64_MIN included).
uint64_t magnitude(int64_t by) { return by > 0 ? static_cast<uint64_t>(by) : uint64_t{0} - static_cast<uint64_t>(by); }

}  // namespace

void checkName(const Limits& limits, const std::string& name) {
  if (std::string p = gossip::nameProblem(name, limits); !p.empty()) refuse(name, p);
  if (name.front() == '$') {
    throw std::invalid_argument("object '" + shown(name) + "': names starting with '$' are reserved for deltasync's own "
                                "objects (the presence tracker's)");
  }
}

using Nested = crdt::ORMap<std::string, gossip::Map>;
using Sets = gossip::MapOfSets;
using Set = crdt::ORSet<std::string>;
using Counters = gossip::MapOfCounters;

namespace {
// The writes, for arguments already held to the limits (check()): apply() and the wrappers below
// check first, applyChecked() is given writes a batch checked when it recorded them.
namespace unchecked {

void increment(Runtime& rt, const std::string& name, int64_t by) {
  const ReplicaId self = rt.id();
  if (by == 0) return;
  const uint64_t n = magnitude(by);
  rt.update<crdt::PNCounter>(name, [&](crdt::PNCounter& c) { return by > 0 ? c.increment(self, n) : c.decrement(self, n); });
}

void add(Runtime& rt, const std::string& name, const std::string& element) {
  const ReplicaId self = rt.id();
  using S = crdt::ORSet<std::string>;
  rt.updateInto<S>(name, [&](S& s, S& delta) { s.addInto(delta, self, element); });
}

void remove(Runtime& rt, const std::string& name, const std::string& element) {
  using S = crdt::ORSet<std::string>;
  rt.updateInto<S>(name, [&](S& s, S& delta) { s.removeInto(delta, element); });
}

void put(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& value) {
  const ReplicaId self = rt.id();
  rt.updateInto<gossip::Map>(name, [&](gossip::Map& m, gossip::Map& delta) {
    m.setIntoAfter(delta, self, key, value, [&](crdt::Timestamp replaced) { return clock.after(replaced); });
  });
}

void removeKey(Runtime& rt, const std::string& name, const std::string& key) {
  rt.updateInto<gossip::Map>(name, [&](gossip::Map& m, gossip::Map& delta) { m.removeInto(delta, key); });
}

void setRegister(Runtime& rt, Clock& clock, const std::string& name, const std::string& value) {
  const ReplicaId self = rt.id();
  using R = crdt::LWWRegister<std::string>;
  rt.update<R>(name, [&](R& r) { return r.set(self, value, clock.after(r.timestamp())); });
}

void writeMulti(Runtime& rt, const std::string& name, const std::string& value) {
  const ReplicaId self = rt.id();
  using R = crdt::MVRegister<std::string>;
  rt.update<R>(name, [&](R& r) { return r.write(self, value); });
}

void clearMulti(Runtime& rt, const std::string& name) {
  using R = crdt::MVRegister<std::string>;
  rt.update<R>(name, [&](R& r) { return r.reset(); });
}

void setFlag(Runtime& rt, const std::string& name, bool on) {
  const ReplicaId self = rt.id();
  rt.update<crdt::EWFlag>(name, [&](crdt::EWFlag& f) { return on ? f.enable(self) : f.disable(); });
}

void nestedPut(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& inner,
               const std::string& value) {
  const ReplicaId self = rt.id();
  rt.update<Nested>(name, [&](Nested& m) {
    return m.update(key, [&](gossip::Map& in) {
      const crdt::Timestamp replaced = in.stampOrZero(inner);
      return in.set(self, inner, value, clock.after(replaced));
    });
  });
}

void nestedRemove(Runtime& rt, const std::string& name, const std::string& key, const std::string& inner) {
  rt.update<Nested>(name, [&](Nested& m) {
    if (!m.contains(key)) return Nested{};
    return m.update(key, [&](gossip::Map& in) { return in.remove(inner); });
  });
}

void nestedRemoveKey(Runtime& rt, const std::string& name, const std::string& key) {
  rt.update<Nested>(name, [&](Nested& m) { return m.remove(key); });
}

void setsAdd(Runtime& rt, const std::string& name, const std::string& key, const std::string& element) {
  const ReplicaId self = rt.id();
  rt.update<Sets>(name, [&](Sets& m) { return m.update(key, [&](Set& s) { return s.add(self, element); }); });
}

void setsRemove(Runtime& rt, const std::string& name, const std::string& key, const std::string& element) {
  rt.update<Sets>(name, [&](Sets& m) {
    if (!m.contains(key)) return Sets{};
    return m.update(key, [&](Set& s) { return s.remove(element); });
  });
}

void setsRemoveKey(Runtime& rt, const std::string& name, const std::string& key) {
  rt.update<Sets>(name, [&](Sets& m) { return m.remove(key); });
}

void countersAdd(Runtime& rt, const std::string& name, const std::string& key, int64_t by) {
  if (by == 0) return;
  const ReplicaId self = rt.id();
  const uint64_t n = magnitude(by);
  rt.update<Counters>(name, [&](Counters& m) { return by > 0 ? m.increment(self, key, n) : m.decrement(self, key, n); });
}

void countersRemoveKey(Runtime& rt, const std::string& name, const std::string& key) {
  rt.update<Counters>(name, [&](Counters& m) { return m.removeKey(key); });
}

void erase(Runtime& rt, const std::string& name) {
  rt.erase(name);
}

}  // namespace unchecked
}  // namespace

// The writes this file offers by name (the control service, tests): each checks, then writes.
void increment(Runtime& rt, const std::string& name, int64_t by) {
  check(rt.config().limits, Write{.op = Write::Op::increment, .name = &name, .by = by});
  unchecked::increment(rt, name, by);
}

void add(Runtime& rt, const std::string& name, const std::string& element) {
  check(rt.config().limits, Write{.op = Write::Op::add, .name = &name, .key = &element});
  unchecked::add(rt, name, element);
}

void put(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& value) {
  apply(rt, clock, Write{.op = Write::Op::put, .name = &name, .key = &key, .value = &value});
}

void setRegister(Runtime& rt, Clock& clock, const std::string& name, const std::string& value) {
  apply(rt, clock, Write{.op = Write::Op::setRegister, .name = &name, .value = &value});
}

void setFlag(Runtime& rt, const std::string& name, bool on) {
  check(rt.config().limits, Write{.op = Write::Op::setFlag, .name = &name, .on = on});
  unchecked::setFlag(rt, name, on);
}

void countersAdd(Runtime& rt, const std::string& name, const std::string& key, int64_t by) {
  check(rt.config().limits, Write{.op = Write::Op::countersAdd, .name = &name, .key = &key, .by = by});
  unchecked::countersAdd(rt, name, key, by);
}

void erase(Runtime& rt, const std::string& name) {
  check(rt.config().limits, Write{.op = Write::Op::erase, .name = &name});
  unchecked::erase(rt, name);
}

void removeAny(Runtime& rt, const std::string& name, const std::string& item) {
  checkName(rt.config().limits, name);
  const Value* v = rt.store().find(name);
  if (v == nullptr) throw std::invalid_argument("no object named '" + name + "'");
  if (gossip::isTombstone(*v)) throw ObjectDeleted("object '" + name + "' was deleted");
  if (std::holds_alternative<crdt::ORSet<std::string>>(*v)) {
    unchecked::remove(rt, name, item);
  } else if (std::holds_alternative<gossip::Map>(*v)) {
    unchecked::removeKey(rt, name, item);
  } else if (std::holds_alternative<Counters>(*v)) {
    unchecked::countersRemoveKey(rt, name, item);
  } else {
    throw std::invalid_argument("'" + name + "' is a " + gossip::kindName(*v) +
                                ": remove takes a set, a map or a map of counters");
  }
}

void check(const Limits& limits, const Write& w) {
  checkName(limits, *w.name);
  if (w.key != nullptr && w.op != Write::Op::remove && w.op != Write::Op::removeKey && w.op != Write::Op::nestedRemove &&
      w.op != Write::Op::nestedRemoveKey && w.op != Write::Op::setsRemove && w.op != Write::Op::setsRemoveKey &&
      w.op != Write::Op::countersRemoveKey) {
    if (std::string p = gossip::keyProblem(w.key->size(), limits); !p.empty()) refuse(*w.name, p);
  }
  if (w.inner != nullptr && (w.op == Write::Op::nestedPut || w.op == Write::Op::setsAdd)) {
    if (std::string p = gossip::keyProblem(w.inner->size(), limits); !p.empty()) refuse(*w.name, p);
  }
  if (w.value != nullptr) {
    if (std::string p = gossip::valueProblem(w.value->size(), limits); !p.empty()) refuse(*w.name, p);
  }
}

size_t kindOf(const Write& w) {
  using Op = Write::Op;
  using gossip::kindIndex;
  switch (w.op) {
    case Op::increment: return kindIndex<crdt::PNCounter>();
    case Op::add:
    case Op::remove: return kindIndex<crdt::ORSet<std::string>>();
    case Op::put:
    case Op::removeKey: return kindIndex<gossip::Map>();
    case Op::setRegister: return kindIndex<crdt::LWWRegister<std::string>>();
    case Op::writeMulti:
    case Op::clearMulti: return kindIndex<crdt::MVRegister<std::string>>();
    case Op::setFlag: return kindIndex<crdt::EWFlag>();
    case Op::nestedPut:
    case Op::nestedRemove:
    case Op::nestedRemoveKey: return kindIndex<Nested>();
    case Op::setsAdd:
    case Op::setsRemove:
    case Op::setsRemoveKey: return kindIndex<Sets>();
    case Op::countersAdd:
    case Op::countersRemoveKey: return kindIndex<Counters>();
    case Op::erase: return gossip::kTombstoneKind;
  }
  throw std::logic_error("objects::kindOf: unknown write");
}

void apply(Runtime& rt, Clock& clock, const Write& w) {
  check(rt.config().limits, w);
  applyChecked(rt, clock, w);
}

void applyChecked(Runtime& rt, Clock& clock, const Write& w) {
  using Op = Write::Op;
  const std::string& name = *w.name;
  switch (w.op) {
    case Op::increment: return unchecked::increment(rt, name, w.by);
    case Op::add: return unchecked::add(rt, name, *w.key);
    case Op::remove: return unchecked::remove(rt, name, *w.key);
    case Op::put: return unchecked::put(rt, clock, name, *w.key, *w.value);
    case Op::removeKey: return unchecked::removeKey(rt, name, *w.key);
    case Op::setRegister: return unchecked::setRegister(rt, clock, name, *w.value);
    case Op::writeMulti: return unchecked::writeMulti(rt, name, *w.value);
    case Op::clearMulti: return unchecked::clearMulti(rt, name);
    case Op::setFlag: return unchecked::setFlag(rt, name, w.on);
    case Op::nestedPut: return unchecked::nestedPut(rt, clock, name, *w.key, *w.inner, *w.value);
    case Op::nestedRemove: return unchecked::nestedRemove(rt, name, *w.key, *w.inner);
    case Op::nestedRemoveKey: return unchecked::nestedRemoveKey(rt, name, *w.key);
    case Op::setsAdd: return unchecked::setsAdd(rt, name, *w.key, *w.inner);
    case Op::setsRemove: return unchecked::setsRemove(rt, name, *w.key, *w.inner);
    case Op::setsRemoveKey: return unchecked::setsRemoveKey(rt, name, *w.key);
    case Op::countersAdd: return unchecked::countersAdd(rt, name, *w.key, w.by);
    case Op::countersRemoveKey: return unchecked::countersRemoveKey(rt, name, *w.key);
    case Op::erase: return unchecked::erase(rt, name);
  }
}

std::vector<std::pair<std::string, const Value*>> listed(const gossip::ObjectStore& store) {
  std::vector<std::pair<std::string, const Value*>> out;
  for (const auto& [name, value] : store.objects()) {
    if (!name.empty() && name.front() != '$' && !gossip::isTombstone(value)) out.emplace_back(name, &value);
  }
  return out;
}

namespace {

std::string hexOf(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}
std::string fromHex(const std::string& text) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("'" + text + "' is not bytes in hex digits");
  };
  if (text.size() % 2 != 0) throw std::invalid_argument("'" + text + "' is not bytes in hex digits (odd length)");
  std::string out;
  for (size_t i = 0; i < text.size(); i += 2) out += static_cast<char>(nibble(text[i]) << 4 | nibble(text[i + 1]));
  return out;
}
// The whole text as a number of type T (from_chars: no sign for unsigned, no spaces).
template <typename T>
T number(const std::string& text, const char* type) {
  T x{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, x);
  if (ec != std::errc() || ptr != end || text.empty()) throw std::invalid_argument("'" + text + "' is not " + type);
  return x;
}
std::string shortest(double x) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, ptr);
}

const TextType kTypes[] = {
    {"string", [](const std::string& t) { return t; }, [](const std::string& b) { return b; }},
    {"bytes", fromHex, hexOf},
    {"int", [](const std::string& t) { return Codec<int64_t>::encode(number<int64_t>(t, "an int (int64)")); },
     [](const std::string& b) { return std::to_string(Codec<int64_t>::decode(b)); }},
    {"uint", [](const std::string& t) { return Codec<uint64_t>::encode(number<uint64_t>(t, "a uint (uint64)")); },
     [](const std::string& b) { return std::to_string(Codec<uint64_t>::decode(b)); }},
    {"double", [](const std::string& t) { return Codec<double>::encode(number<double>(t, "a double")); },
     [](const std::string& b) { return shortest(Codec<double>::decode(b)); }},
    {"bool",
     [](const std::string& t) {
       if (t != "true" && t != "false") throw std::invalid_argument("'" + t + "' is not a bool (true or false)");
       return Codec<bool>::encode(t == "true");
     },
     [](const std::string& b) { return std::string(Codec<bool>::decode(b) ? "true" : "false"); }},
};

}  // namespace

const TextType& textType(const std::string& name) {
  if (name.empty()) return kTypes[0];
  std::string known;
  for (const TextType& t : kTypes) {
    if (name == t.name) return t;
    known += known.empty() ? "" : ", ";
    known += t.name;
  }
  throw std::invalid_argument("unknown type '" + name + "' (the types: " + known + ")");
}

std::vector<std::string> render(const Value& value, const TextType& keys, const TextType& values) {
  // (sort key: the stored bytes of what the line lists; line)
  std::vector<std::pair<std::string, std::string>> lines;
  auto line = [&](std::string order, std::string text) { lines.emplace_back(std::move(order), std::move(text)); };
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::GCounter> || std::is_same_v<T, crdt::PNCounter>) {
          line({}, std::to_string(x.value()));
        } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
          if (const auto* s = x.get()) line(*s, values.toText(*s));
        } else if constexpr (std::is_same_v<T, crdt::MVRegister<std::string>>) {
          for (const std::string& v : x.values()) line(v, values.toText(v));
        } else if constexpr (std::is_same_v<T, crdt::EWFlag>) {
          line({}, x.read() ? "true" : "false");
        } else if constexpr (std::is_same_v<T, crdt::ORSet<std::string>>) {
          x.forEach([&](std::string_view e) { line(std::string(e), values.toText(std::string(e))); });
        } else if constexpr (std::is_same_v<T, gossip::Map>) {
          x.forEach([&](std::string_view k, const std::string& v) {
            line(std::string(k), keys.toText(std::string(k)) + "=" + values.toText(v));
          });
        } else if constexpr (std::is_same_v<T, gossip::Tombstone>) {
          // deleted: nothing
        } else if constexpr (std::is_same_v<T, gossip::MapOfCounters>) {
          for (const auto& [k, v] : x.entries()) line(k, keys.toText(k) + "=" + std::to_string(v));
        } else if constexpr (std::is_same_v<T, gossip::MapOfSets>) {
          x.forEachKey([&](const std::string& k) {
            x.get(k).forEach([&](std::string_view e) {
              line(k + '\0' + std::string(e), keys.toText(k) + "." + values.toText(std::string(e)));
            });
          });
        } else {
          x.forEachKey([&](const std::string& k) {
            x.get(k).forEach([&](std::string_view f, const std::string& v) {
              // (ordered by key, then field: a 0 byte between them sorts a key before its longer peers)
              line(k + '\0' + std::string(f), keys.toText(k) + "." + keys.toText(std::string(f)) + "=" + values.toText(v));
            });
          });
        }
      },
      value);
  std::sort(lines.begin(), lines.end());
  std::vector<std::string> out;
  out.reserve(lines.size());
  for (auto& [order, text] : lines) out.push_back(std::move(text));
  return out;
}

}  // namespace deltasync::objects
