// The lattice laws of crdt/README.md as RapidCheck properties, generic over a CRDT type T and a
// random operation type Op that each type's test defines.
//
// Inputs are reachable values only. A random structure is not a valid state in general (an OR-set
// whose element carries a dot its own context has never seen, two entries of one replica's dot
// with different payloads, ...), and laws checked on such values prove nothing or fail for no
// reason. So every value here comes out of one simulated world: a few replicas run random
// operations and exchange deltas, delta groups and whole states over lossy, duplicating,
// reordering links (Network below), and the laws are checked on that world's states, deltas,
// groups and in-flight messages. Values from two different worlds are never mixed: their replicas'
// dots would collide.
//
// What a type's test provides:
//
//   struct Op {                                      // one random operation
//     enum class Kind { kAdd, kRemove } kind;        // which mutator ...
//     std::string element;                           // ... and its arguments
//     // Runs the mutator on `state` as replica `self` and returns its delta. May catch a
//     // documented error (e.g. overflow) and return T{}: the contract says the state is then
//     // unchanged, which the delta-mutator law checks.
//     ORSet<std::string> apply(ORSet<std::string>& state, ReplicaId self) const;
//   };
//   void showValue(const Op& op, std::ostream& os);  // so RapidCheck prints counterexamples
//   rc::Gen<Op> genOp();
//
// and then
//
//   TEST_CASE("ORSet: lattice laws") {
//     CHECK(checkJoinLaws<ORSet<std::string>>(genOp()));
//     CHECK(checkDeltaMutatorLaw<ORSet<std::string>>(genOp()));
//     CHECK(checkStripLaws<ORSet<std::string>>(genOp()));
//     CHECK(checkConvergence<ORSet<std::string>>(genOp()));
//   }
//
// Model-based tests can drive a Network themselves (genEvents + Network::run + exchangeAll) and
// compare the converged state with a specification computed from the same events.
//
// A failure prints the shrunk events and picks ("r2 runs ...", "r1 -> r3: deliver #0", ...):
// replica rK has ReplicaId{K}, and message and buffer indexes are taken modulo the length of what
// they index at that moment, so every event is meaningful in every shrunk script.
#pragma once

#include <cxxabi.h>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <rapidcheck.h>

#include "crdt/dot.h"

namespace deltasync::crdt {

// What the harness needs of a CRDT type (the README contract, minus memoryBytes()).
// (clang-format 14 mangles requires-expressions.)
// clang-format off
template <typename T>
concept LatticeValue = std::default_initializable<T> && std::copyable<T> &&
                       requires(T& a, const T& b) {
                         a.join(b);
                         { b.empty() } -> std::convertible_to<bool>;
                         { b == b } -> std::convertible_to<bool>;
                         { strip(b, b) } -> std::same_as<T>;
                       };
// clang-format on

// A random operation on T, as described at the top of this file.
// clang-format off
template <typename Op, typename T>
concept MutatorOp = std::copyable<Op> && requires(const Op& op, T& state, ReplicaId self) {
  { op.apply(state, self) } -> std::same_as<T>;
};
// clang-format on

// Replica index i (0-based, as in events) is ReplicaId{i + 1}: ids start at 1 like dot counters,
// and ReplicaId{0} is never used.
inline ReplicaId replicaId(size_t index) {
  return ReplicaId{index + 1};
}

// ---------------------------------------------------------------------------------------------
// Events: one step of a simulated world.

template <typename Op>
struct Event {
  enum class Kind : uint8_t {
    kMutate,     // replica `from` runs `op`; the delta goes to `from`'s buffer and to every
                 // outgoing channel of `from`
    kSendState,  // `from` puts its whole state into channel from -> to
    kSendGroup,  // `from` puts the join of its last `n` buffered values into channel from -> to
    kDeliver,    // message `n` (modulo the channel's length) of from -> to is joined into `to`
                 // (and buffered there) and removed: n > 0 reorders
    kDuplicate,  // as kDeliver, but the message stays in the channel and will arrive again
    kDrop,       // the message is lost
  };

  Kind kind = Kind::kMutate;
  uint32_t from = 0;  // replica index; the acting replica for kMutate
  uint32_t to = 0;    // replica index, != from (unused for kMutate)
  uint32_t n = 0;
  std::optional<Op> op;  // kMutate only
};

template <typename Op>
void showValue(const Event<Op>& e, std::ostream& os) {
  using K = typename Event<Op>::Kind;
  if (e.kind == K::kMutate) {
    os << "r" << e.from + 1 << " runs ";
    if (e.op.has_value()) rc::show(*e.op, os);
    return;
  }
  os << "r" << e.from + 1 << " -> r" << e.to + 1 << ": ";
  switch (e.kind) {
    case K::kMutate:
      break;
    case K::kSendState:
      os << "send state";
      break;
    case K::kSendGroup:
      os << "send group of last " << e.n;
      break;
    case K::kDeliver:
      os << "deliver #" << e.n;
      break;
    case K::kDuplicate:
      os << "deliver and keep #" << e.n;
      break;
    case K::kDrop:
      os << "drop #" << e.n;
      break;
  }
}

// Which value of a world a law is checked on.
struct Pick {
  enum class Kind : uint8_t {
    kBottom,   // T{}
    kState,    // state of `replica`
    kDelta,    // delta number `index` of all deltas produced so far (one mutator's delta)
    kGroup,    // join of `replica`'s buffered values index .. index + length - 1
    kMessage,  // in-flight message `index` of channel replica -> peer (a delta, group or state)
  };

  Kind kind = Kind::kBottom;
  uint32_t replica = 0;
  uint32_t peer = 0;
  uint32_t index = 0;
  uint32_t length = 1;
};

inline void showValue(const Pick& p, std::ostream& os) {
  switch (p.kind) {
    case Pick::Kind::kBottom:
      os << "bottom";
      break;
    case Pick::Kind::kState:
      os << "state of r" << p.replica + 1;
      break;
    case Pick::Kind::kDelta:
      os << "delta #" << p.index;
      break;
    case Pick::Kind::kGroup:
      os << "group of r" << p.replica + 1 << "'s buffer #" << p.index << " +" << p.length;
      break;
    case Pick::Kind::kMessage:
      os << "message #" << p.index << " on r" << p.replica + 1 << " -> r" << p.peer + 1;
      break;
  }
}

namespace _ {

// An ordered pair of distinct replica indexes in [0, replicas). Needs replicas >= 2.
inline rc::Gen<std::pair<uint32_t, uint32_t>> genLink(size_t replicas) {
  auto n = static_cast<uint32_t>(replicas);
  return rc::gen::map(
      rc::gen::pair(rc::gen::inRange<uint32_t>(0, n), rc::gen::inRange<uint32_t>(0, n - 1)),
      [](std::pair<uint32_t, uint32_t> link) {
        if (link.second >= link.first) ++link.second;
        return link;
      });
}

// Indexes are reduced modulo a length known only when the event runs; 1024 keeps them short to
// print while spreading evenly over any realistic length.
inline rc::Gen<uint32_t> genIndex() {
  return rc::gen::inRange<uint32_t>(0, 1024);
}

template <typename T>
T joined(T a, const T& b) {
  a.join(b);
  return a;
}

// a <= b in the lattice order.
template <typename T>
bool leq(const T& a, const T& b) {
  return joined(b, a) == b;
}

// "GCounter", "LWWRegister<std::string>": for property descriptions.
template <typename T>
std::string typeName() {
  int status = 0;
  char* demangled = abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status);
  std::string name = (status == 0 && demangled != nullptr) ? demangled : typeid(T).name();
  std::free(demangled);
  auto replaceAll = [&name](std::string_view from, std::string_view to) {
    for (size_t at = name.find(from); at != std::string::npos; at = name.find(from, at)) {
      name.replace(at, from.size(), to);
      at += to.size();
    }
  };
  replaceAll("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
             "std::string");
  replaceAll("deltasync::crdt::", "");
  return name;
}

// Fails the current case unless `holds`, naming the law and printing the values involved. Values
// print through rc::show: a showValue(const T&, std::ostream&) or operator<< that ADL finds in T's
// namespace (a test may define one in namespace deltasync::crdt), "<???>" otherwise. Nothing is
// formatted unless the law fails.
template <typename T>
void requireLaw(bool holds, std::string_view law,
                std::initializer_list<std::pair<std::string_view, const T*>> values) {
  if (holds) return;
  std::ostringstream os;
  os << "law violated: " << law;
  for (const auto& [name, value] : values) {
    os << "\n  " << name << " = ";
    rc::show(*value, os);
  }
  RC_FAIL(os.str());
}

template <typename T>
std::string describe(std::string_view law) {
  return typeName<T>() + ": " + std::string(law);
}

// Script lengths: small enough for 10,000 cases per property in seconds, long enough for
// deltas, groups, states, duplicates and reordering to interleave. The container generator draws
// a length in 0..bound, where bound grows with RapidCheck's size (0..100 over a run) from
// kMinEvents to maxLength. Measured on GCounter (RC_CLASSIFY in its test): about a fifth of the
// reachable states genHistoryState returns are empty and 40% mention several replicas; without
// the floor and with 30 events, a third were empty.
inline constexpr int kMinEvents = 8;
inline constexpr int kHistoryEvents = 60;
inline constexpr int kConvergenceEvents = 80;

}  // namespace _

// One random event for a world of `replicas` (>= 2) replicas.
template <typename Op>
rc::Gen<Event<Op>> genEvent(rc::Gen<Op> genOp, size_t replicas) {
  using E = Event<Op>;
  using K = typename E::Kind;
  auto onLink = [replicas](K kind, rc::Gen<uint32_t> genN) {
    return rc::gen::apply(
        [kind](std::pair<uint32_t, uint32_t> link, uint32_t n) {
          E e;
          e.kind = kind;
          e.from = link.first;
          e.to = link.second;
          e.n = n;
          return e;
        },
        _::genLink(replicas), genN);
  };
  auto mutate = rc::gen::apply(
      [](uint32_t from, Op op) {
        E e;
        e.kind = K::kMutate;
        e.from = from;
        e.to = from;
        e.op = std::move(op);
        return e;
      },
      rc::gen::inRange<uint32_t>(0, static_cast<uint32_t>(replicas)), genOp);
  return rc::gen::weightedOneOf<E>({
      {36, mutate},
      {5, onLink(K::kSendState, rc::gen::just<uint32_t>(0))},
      {8, onLink(K::kSendGroup, rc::gen::inRange<uint32_t>(1, 5))},
      {36, onLink(K::kDeliver, _::genIndex())},
      {8, onLink(K::kDuplicate, _::genIndex())},
      {6, onLink(K::kDrop, _::genIndex())},
  });
}

// A script of up to maxLength events (at RapidCheck's largest size; fewer early in a run). Ops
// are still generated at the unscaled size. maxLength should be at least _::kMinEvents.
template <typename Op>
rc::Gen<std::vector<Event<Op>>> genEvents(rc::Gen<Op> genOp, size_t replicas, int maxLength) {
  auto event = genEvent(std::move(genOp), replicas);
  return rc::gen::withSize([event, maxLength](int size) {
    return rc::gen::resize(
        _::kMinEvents + size * (maxLength - _::kMinEvents) / 100,
        rc::gen::container<std::vector<Event<Op>>>(rc::gen::resize(size, event)));
  });
}

inline rc::Gen<Pick> genPick(size_t replicas) {
  using K = Pick::Kind;
  auto genReplica = rc::gen::inRange<uint32_t>(0, static_cast<uint32_t>(replicas));
  return rc::gen::weightedOneOf<Pick>({
      {2, rc::gen::just(Pick{K::kBottom, 0, 0, 0, 1})},
      {9, rc::gen::map(genReplica,
                       [](uint32_t r) {
                         return Pick{K::kState, r, 0, 0, 1};
                       })},
      {9, rc::gen::map(_::genIndex(),
                       [](uint32_t i) {
                         return Pick{K::kDelta, 0, 0, i, 1};
                       })},
      {6, rc::gen::apply(
              [](uint32_t r, uint32_t i, uint32_t length) {
                return Pick{K::kGroup, r, 0, i, length};
              },
              genReplica, _::genIndex(), rc::gen::inRange<uint32_t>(1, 5))},
      {4, rc::gen::apply(
              [](std::pair<uint32_t, uint32_t> link, uint32_t i) {
                return Pick{K::kMessage, link.first, link.second, i, 1};
              },
              _::genLink(replicas), _::genIndex())},
  });
}

// A simulated world: `size()` replicas with their states, their buffers (every delta they
// produced and every message they received, in order), and one FIFO-by-default channel per
// ordered pair of replicas. Deterministic: the same events give the same world.
template <LatticeValue T>
class Network {
 public:
  explicit Network(size_t replicas)
      : states_(replicas), buffers_(replicas), channels_(replicas * replicas) {}

  size_t size() const { return states_.size(); }

  template <MutatorOp<T> Op>
  void apply(const Event<Op>& e) {
    using K = typename Event<Op>::Kind;
    if (e.from >= size() || e.to >= size()) {
      throw std::out_of_range("Network: event names a replica outside the world");
    }
    switch (e.kind) {
      case K::kMutate: {
        T delta = e.op.value().apply(states_[e.from], replicaId(e.from));
        for (size_t to = 0; to < size(); ++to) {
          if (to != e.from) channel(e.from, to).push_back(delta);
        }
        buffers_[e.from].push_back(delta);
        produced_.push_back(std::move(delta));
        return;
      }
      case K::kSendState:
        channel(e.from, e.to).push_back(states_[e.from]);
        return;
      case K::kSendGroup: {
        const std::vector<T>& buffer = buffers_[e.from];
        if (buffer.empty()) return;
        size_t count = std::clamp<size_t>(e.n, 1, buffer.size());
        T group;
        for (size_t k = buffer.size() - count; k < buffer.size(); ++k) group.join(buffer[k]);
        channel(e.from, e.to).push_back(std::move(group));
        return;
      }
      case K::kDeliver:
      case K::kDuplicate:
      case K::kDrop: {
        std::vector<T>& ch = channel(e.from, e.to);
        if (ch.empty()) return;
        size_t k = e.n % ch.size();
        if (e.kind != K::kDrop) {
          states_[e.to].join(ch[k]);
          buffers_[e.to].push_back(ch[k]);
        }
        if (e.kind != K::kDuplicate) ch.erase(ch.begin() + static_cast<ptrdiff_t>(k));
        return;
      }
    }
  }

  template <MutatorOp<T> Op>
  void run(const std::vector<Event<Op>>& events) {
    for (const Event<Op>& e : events) apply(e);
  }

  // Every replica joins a snapshot of every other replica's state; afterwards all states equal
  // the join of all (pre-exchange) states.
  void exchangeAll() {
    std::vector<T> snapshot = states_;
    for (size_t i = 0; i < size(); ++i) {
      for (size_t j = 0; j < size(); ++j) {
        if (i != j) states_[i].join(snapshot[j]);
      }
    }
  }

  const T& state(size_t replica) const { return states_.at(replica); }
  const std::vector<T>& buffer(size_t replica) const { return buffers_.at(replica); }
  const std::vector<T>& channel(size_t from, size_t to) const {
    return channels_.at(from * size() + to);
  }
  // Every delta any mutator returned, in order.
  const std::vector<T>& produced() const { return produced_; }

  T joinOfProduced() const {
    T all;
    for (const T& d : produced_) all.join(d);
    return all;
  }

  // The value `p` names; bottom when it names nothing (an empty buffer or channel).
  T resolve(const Pick& p) const {
    switch (p.kind) {
      case Pick::Kind::kBottom:
        return T{};
      case Pick::Kind::kState:
        return state(p.replica % size());
      case Pick::Kind::kDelta:
        return produced_.empty() ? T{} : produced_[p.index % produced_.size()];
      case Pick::Kind::kGroup: {
        const std::vector<T>& buffer = buffers_.at(p.replica % size());
        T group;
        if (buffer.empty()) return group;
        size_t first = p.index % buffer.size();
        size_t last = std::min<size_t>(buffer.size(), first + std::max<uint32_t>(p.length, 1));
        for (size_t k = first; k < last; ++k) group.join(buffer[k]);
        return group;
      }
      case Pick::Kind::kMessage: {
        const std::vector<T>& ch = channel(p.replica % size(), p.peer % size());
        return ch.empty() ? T{} : ch[p.index % ch.size()];
      }
    }
    return T{};
  }

 private:
  std::vector<T> states_;
  std::vector<std::vector<T>> buffers_;
  std::vector<std::vector<T>> channels_;  // [from * size() + to]
  std::vector<T> produced_;

  std::vector<T>& channel(size_t from, size_t to) { return channels_.at(from * size() + to); }
};

// A reachable state: the state of one of 3 replicas (ids 1..3) after a random script.
template <LatticeValue T, MutatorOp<T> Op>
rc::Gen<T> genHistoryState(rc::Gen<Op> genOp) {
  return rc::gen::map(rc::gen::pair(genEvents(std::move(genOp), 3, _::kHistoryEvents),
                                    rc::gen::inRange<size_t>(0, 3)),
                      [](const std::pair<std::vector<Event<Op>>, size_t>& history) {
                        Network<T> net(3);
                        net.run(history.first);
                        return net.state(history.second);
                      });
}

// ---------------------------------------------------------------------------------------------
// The laws. Each runs one rc::check (RC_PARAMS' max_success cases) and returns whether it held.

// Join is commutative, associative and idempotent (also when joining a value into itself), bottom
// is its identity and the only empty value, and a <= a ⊔ b; on states, single deltas, delta
// groups and in-flight messages of one world.
template <LatticeValue T, MutatorOp<T> Op>
bool checkJoinLaws(rc::Gen<Op> genOp) {
  return rc::check(
      _::describe<T>("join is commutative, associative, idempotent; bottom is its identity"),
      [genOp] {
        const auto events = *genEvents(genOp, 3, _::kHistoryEvents);
        Network<T> net(3);
        net.run(events);
        const T a = net.resolve(*genPick(3));
        const T b = net.resolve(*genPick(3));
        const T c = net.resolve(*genPick(3));
        using _::joined;
        using _::requireLaw;
        const T ab = joined(a, b), ba = joined(b, a);
        const T ab_c = joined(ab, c), a_bc = joined(a, joined(b, c));
        const T aa = joined(a, a);
        T self = a;
        self.join(self);
        const T bottom{};
        const T a_bottom = joined(a, bottom), bottom_a = joined(bottom, a);

        requireLaw<T>(ab == ba, "a ⊔ b == b ⊔ a",
                      {{"a", &a}, {"b", &b}, {"a ⊔ b", &ab}, {"b ⊔ a", &ba}});
        requireLaw<T>(
            ab_c == a_bc, "(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)",
            {{"a", &a}, {"b", &b}, {"c", &c}, {"(a ⊔ b) ⊔ c", &ab_c}, {"a ⊔ (b ⊔ c)", &a_bc}});
        requireLaw<T>(aa == a, "a ⊔ a == a", {{"a", &a}, {"a ⊔ a", &aa}});
        requireLaw<T>(self == a, "a.join(a) leaves a unchanged", {{"a", &a}, {"after", &self}});
        requireLaw<T>(bottom.empty(), "T{}.empty()", {{"T{}", &bottom}});
        requireLaw<T>(a_bottom == a && bottom_a == a, "a ⊔ ⊥ == ⊥ ⊔ a == a",
                      {{"a", &a}, {"a ⊔ ⊥", &a_bottom}, {"⊥ ⊔ a", &bottom_a}});
        requireLaw<T>(a.empty() == (a == bottom), "a.empty() iff a == T{}", {{"a", &a}});
        requireLaw<T>((a == b) == (b == a), "== is symmetric", {{"a", &a}, {"b", &b}});
        requireLaw<T>(_::leq(a, ab) && _::leq(b, ab), "a <= a ⊔ b and b <= a ⊔ b",
                      {{"a", &a}, {"b", &b}, {"a ⊔ b", &ab}});
      });
}

// For a reachable state X of replica i and 1-3 ops run by i in a row: X' == X ⊔ d, and d <= X'
// (so applying the delta again, here or anywhere that already has X', changes nothing).
template <LatticeValue T, MutatorOp<T> Op>
bool checkDeltaMutatorLaw(rc::Gen<Op> genOp) {
  return rc::check(_::describe<T>("mutators return deltas: X' == X ⊔ d and X' ⊔ d == X'"), [genOp] {
    const auto events = *genEvents(genOp, 3, _::kHistoryEvents);
    Network<T> net(3);
    net.run(events);
    const size_t i = *rc::gen::inRange<size_t>(0, 3);
    const auto count = *rc::gen::inRange<size_t>(1, 4);
    const auto ops = *rc::gen::container<std::vector<Op>>(count, genOp);

    T state = net.state(i);
    for (const Op& op : ops) {
      const T before = state;
      const T delta = op.apply(state, replicaId(i));
      const T expected = _::joined(before, delta);
      const T again = _::joined(state, delta);
      _::requireLaw<T>(state == expected, "X' == X ⊔ d",
                       {{"X", &before}, {"d", &delta}, {"X'", &state}, {"X ⊔ d", &expected}});
      _::requireLaw<T>(again == state, "X' ⊔ d == X'",
                       {{"X'", &state}, {"d", &delta}, {"X' ⊔ d", &again}});
    }
  });
}

// For a reachable state X and d a value of the same world (a delta or group of any replica,
// possibly already known to X; a message; bottom) and for d a whole state of any replica:
// X ⊔ strip(d, X) == X ⊔ d, strip(d, X).empty() iff d <= X, and strip(d, X) <= d (it is a part
// of d).
template <LatticeValue T, MutatorOp<T> Op>
bool checkStripLaws(rc::Gen<Op> genOp) {
  return rc::check(_::describe<T>("X ⊔ strip(d, X) == X ⊔ d; strip(d, X) is empty iff d <= X"),
                   [genOp] {
                     const auto events = *genEvents(genOp, 3, _::kHistoryEvents);
                     Network<T> net(3);
                     net.run(events);
                     const T& x = net.state(*rc::gen::inRange<size_t>(0, 3));
                     const T anyValue = net.resolve(*genPick(3));
                     const T otherState = net.state(*rc::gen::inRange<size_t>(0, 3));

                     for (const T* d : {&anyValue, &otherState}) {
                       const T stripped = strip(*d, x);
                       const T viaStrip = _::joined(x, stripped);
                       const T full = _::joined(x, *d);
                       const std::initializer_list<std::pair<std::string_view, const T*>> values = {
                           {"X", &x},
                           {"d", d},
                           {"strip(d, X)", &stripped},
                           {"X ⊔ strip(d, X)", &viaStrip},
                           {"X ⊔ d", &full}};
                       _::requireLaw<T>(viaStrip == full, "X ⊔ strip(d, X) == X ⊔ d", values);
                       _::requireLaw<T>(stripped.empty() == (full == x),
                                        "strip(d, X).empty() iff d <= X", values);
                       _::requireLaw<T>(_::leq(stripped, *d), "strip(d, X) <= d", values);
                     }
                   });
}

// 2-5 replicas run random ops while deltas, delta groups and whole states travel over links that
// lose, duplicate and reorder messages. No join ever shrinks a replica's state. After one final
// full exchange all replicas are equal, and equal to the join of every delta ever produced
// (nothing was lost, nothing invented).
template <LatticeValue T, MutatorOp<T> Op>
bool checkConvergence(rc::Gen<Op> genOp) {
  return rc::check(
      _::describe<T>("replicas converge under loss, duplication and reordering"), [genOp] {
        const auto replicas = *rc::gen::inRange<size_t>(2, 6);
        const auto events = *genEvents(genOp, replicas, _::kConvergenceEvents);
        Network<T> net(replicas);
        for (const Event<Op>& e : events) {
          using K = typename Event<Op>::Kind;
          std::optional<size_t> touched;
          if (e.kind == K::kMutate) touched = e.from;
          if (e.kind == K::kDeliver || e.kind == K::kDuplicate) touched = e.to;
          if (!touched.has_value()) {
            net.apply(e);
            continue;
          }
          const T before = net.state(*touched);
          net.apply(e);
          _::requireLaw<T>(_::leq(before, net.state(*touched)),
                           "a replica's state only grows (before <= after)",
                           {{"before", &before}, {"after", &net.state(*touched)}});
        }

        net.exchangeAll();
        const T all = net.joinOfProduced();
        for (size_t i = 0; i < replicas; ++i) {
          _::requireLaw<T>(net.state(i) == net.state(0),
                           "after a full exchange all replicas are equal",
                           {{"r1", &net.state(0)}, {"other", &net.state(i)}});
          _::requireLaw<T>(net.state(i) == all,
                           "after a full exchange every replica holds the join of all deltas",
                           {{"replica", &net.state(i)}, {"join of all deltas", &all}});
        }
      });
}

}  // namespace deltasync::crdt
