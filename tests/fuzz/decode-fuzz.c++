// libFuzzer target for one decoder entry point (13: the replica core's receive path behind the
// decoder; 14: pruning markers), chosen at build time by FUZZ_ENTRY (one
// executable per entry point, see tests/fuzz/meson.build). Each input is a framed message:
//   - decoding must either succeed or throw DecodeError (anything else crashes the fuzzer);
//   - a decoded value must satisfy its invariants, and re-encoding then decoding it must give
//     the same value (so nothing accepted is ever half-understood).
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "gossip/codec.h"
#include "gossip/compact.h"
#include "gossip/compression.h"
#include "gossip/envelope.h"
#include "gossip/message.h"
#include "gossip/pruning.h"
#include "gossip/replica.h"
#include "gossip/auth.h"

namespace {

using namespace deltasync;
using namespace deltasync::crdt;
using namespace deltasync::gossip;
namespace wire = deltasync::wire;

// Every entry but the envelope's, which runs under the defaults.
[[maybe_unused]] const Limits kLimits = [] {
  Limits l;
  l.maxMessageBytes = 1 << 20;  // keep single inputs cheap
  return l;
}();

void require(bool ok) {
  if (!ok) std::abort();
}

// A decoded (or joined) value keeps its invariant: a causal one's dots lie inside its context.
[[maybe_unused]] void requireValid(const Value& v) {
  std::visit(
      [](const auto& x) {
        if constexpr (requires { x.context(); }) {
          require(x.context().valid());
          x.store().forEachDot([&](Dot d) { require(x.context().contains(d)); });
        }
      },
      v);
}

template <typename Wire, typename T, typename Decode, typename Encode>
void check(kj::ArrayPtr<const kj::byte> bytes, Decode decode, Encode encode) {
  T value;
  try {
    IncomingMessage in(bytes, kLimits);
    value = in.decodeRoot<Wire>(decode);
  } catch (const DecodeError&) {
    return;
  }
  capnp::MallocMessageBuilder mb;
  encode(value, mb.initRoot<Wire>());
  auto again = frame(mb);
  IncomingMessage in2(again, kLimits);
  T back = in2.decodeRoot<Wire>(decode);  // must not throw: we encoded it
  require(back == value);
}

template <typename T>
void checkCausal(kj::ArrayPtr<const kj::byte> bytes) {
  check<wire::CausalState, T>(
      bytes, [](wire::CausalState::Reader r) { return decodeCausal<T>(r, kLimits); },
      [](const T& x, wire::CausalState::Builder b) {
        require(x.context().valid());
        x.store().forEachDot([&](Dot d) { require(x.context().contains(d)); });
        encodeCausal(x, b);
      });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kj::ArrayPtr<const kj::byte> bytes(data, size);
#if FUZZ_ENTRY == 0
  check<wire::CausalContext, CausalContext>(
      bytes, [](wire::CausalContext::Reader r) { return decode(r, kLimits); },
      [](const CausalContext& c, wire::CausalContext::Builder b) {
        require(c.valid());
        encode(c, b);
      });
#elif FUZZ_ENTRY == 1
  check<wire::GCounter, GCounter>(
      bytes, [](wire::GCounter::Reader r) { return decode(r, kLimits); },
      [](const GCounter& c, wire::GCounter::Builder b) { encode(c, b); });
#elif FUZZ_ENTRY == 2
  check<wire::PNCounter, PNCounter>(
      bytes, [](wire::PNCounter::Reader r) { return decode(r, kLimits); },
      [](const PNCounter& c, wire::PNCounter::Builder b) { encode(c, b); });
#elif FUZZ_ENTRY == 3
  checkCausal<ORSet<int64_t>>(bytes);
#elif FUZZ_ENTRY == 4
  checkCausal<ORSet<std::string>>(bytes);
#elif FUZZ_ENTRY == 5
  checkCausal<AWLWWMap<std::string, int64_t>>(bytes);
#elif FUZZ_ENTRY == 6
  checkCausal<MVRegister<std::string>>(bytes);
#elif FUZZ_ENTRY == 7
  checkCausal<EWFlag>(bytes);
#elif FUZZ_ENTRY == 8
  using M = ORMap<std::string, ORMap<int64_t, ORSet<std::string>>>;
  check<wire::ORMapState, M>(
      bytes, [](wire::ORMapState::Reader r) { return decodeORMap<M>(r, kLimits); },
      [](const M& m, wire::ORMapState::Builder b) {
        require(m.context().valid());
        m.store().forEachDot([&](Dot d) { require(m.context().contains(d)); });
        encode(m, b);
      });
#elif FUZZ_ENTRY == 9
  check<wire::LWWRegister, LWWRegister<std::string>>(
      bytes, [](wire::LWWRegister::Reader r) { return decodeLWWRegister<std::string>(r, kLimits); },
      [](const LWWRegister<std::string>& x, wire::LWWRegister::Builder b) { encode(x, b); });
#elif FUZZ_ENTRY == 10
  // A compressed state chunk: inflate under the message limit, then decode as an ORSet.
  kj::Array<kj::byte> inflated;
  try {
    inflated = zlibDecompress(bytes, kLimits.maxMessageBytes);
  } catch (const DecodeError&) {
    return 0;
  }
  require(inflated.size() <= kLimits.maxMessageBytes);
  checkCausal<ORSet<int64_t>>(inflated);
#elif FUZZ_ENTRY == 11
  // A whole envelope, under the default limits (what a node runs with): chunks inflate up to
  // 64 MiB here, which is part of what is being tested.
  const Limits limits;
  Message m;
  try {
    m = decodeMessage(data, size, limits);
  } catch (const DecodeError&) {
    return 0;
  }
  // The objects of a push or chunk: causal values keep their dots inside their context.
  const std::vector<NamedValue>* objects = nullptr;
  if (auto* p = std::get_if<DeltaPushMsg>(&m)) objects = &p->objects;
  if (auto* c = std::get_if<StateChunkMsg>(&m)) objects = &c->objects;
  if (objects != nullptr) {
    for (const auto& o : *objects) requireValid(o.value);
  }
  Message back = decodeMessage(encodeMessage(m), limits);  // must not throw: we encoded it
  require(back == m);
#elif FUZZ_ENTRY == 12
  // A compact value (raw bytes, no framing), with replica 1 as the implicit writer.
  const ReplicaId implicit{1};
  Value v;
  try {
    v = decodeCompact(data, size, implicit, kLimits);
  } catch (const DecodeError&) {
    return 0;
  }
  requireValid(v);
  ColumnWriter again;
  encodeCompact(v, implicit, again);
  require(decodeCompact(again.bytes().data(), again.size(), implicit, kLimits) == v);
#elif FUZZ_ENTRY == 13
  // Past the decoder: the whole receive path of a replica core (membership, the engine, the
  // store) and the server half of the handshake. A decoded message, from the peer it names,
  // goes into a replica (id 1) that knows members 2 and 3 and holds a set; it must be taken or
  // refused (ProtocolError, DecodeError), never crash, and leave every object valid (its dots
  // inside its context). A hello goes into an AuthServer, which answers or throws AuthError.
  Message m;
  try {
    m = decodeMessage(data, size, kLimits);
  } catch (const DecodeError&) {
    return 0;
  }
  ReplicaConfig config;
  Replica r(ReplicaId{1}, "a:1", config);
  std::vector<Outgoing> out;
  r.addSeed(ReplicaId{2}, "b:1", 0);
  r.addSeed(ReplicaId{3}, "c:1", 0);
  r.store().update<ORSet<std::string>>("s", [](ORSet<std::string>& s) { return s.add(ReplicaId{1}, "x"); });
  r.tick(1000, out);
  const ReplicaId from = std::visit(
      [](const auto& x) {
        if constexpr (requires { x.sender; }) return x.sender;
        else return ReplicaId{2};
      },
      m);
  try {
    r.receive(from, m, 2000, 2000, out);
  } catch (const ProtocolError&) {
  } catch (const DecodeError&) {
  }
  r.tick(60000, out);
  if (r.maintenancePending(60000)) r.stepMaintenance(60000, 60000);
  for (const auto& [name, v] : r.store().objects()) requireValid(v);
  // The presence indexes agree with themselves: count() is the metas list() returns.
  for (const auto& topic : r.presence().topics()) {
    size_t metas = 0;
    for (const auto& [key, ms] : r.presence().list(topic)) metas += ms.size();
    require(metas == r.presence().count(topic) && metas > 0);
  }
  if (const auto* hello = std::get_if<HelloMsg>(&m)) {
    AuthServer server(Secret(std::string(32, 'k')), ReplicaId{1}, "prod-eu", [] { return Nonce{}; }, hello->client);
    try {
      server.onHello(*hello);
    } catch (const AuthError&) {
    }
  }
#elif FUZZ_ENTRY == 14
  // A pruning marker (gossip/pruning.h): the value of a "$prune" done mark, raw bytes. At most
  // 2^16 dots per object here, so a run cannot make a single input slow.
  PruneMarker marker;
  try {
    marker = decodePruneMarker(std::string_view(reinterpret_cast<const char*>(data), size), 1 << 16);
  } catch (const DecodeError&) {
    return 0;
  }
  for (const auto& o : marker.objects) require(std::is_sorted(o.dots.begin(), o.dots.end()));
  require(decodePruneMarker(encodePruneMarker(marker), 1 << 16) == marker);
#else
#error "FUZZ_ENTRY must name a decoder entry point"
#endif
  return 0;
}
