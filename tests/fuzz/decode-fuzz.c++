// libFuzzer target for one decoder entry point, chosen at build time by FUZZ_ENTRY (one
// executable per entry point, see tests/fuzz/meson.build). Each input is a framed message:
//   - decoding must either succeed or throw DecodeError (anything else crashes the fuzzer);
//   - a decoded value must satisfy its invariants, and re-encoding then decoding it must give
//     the same value (so nothing accepted is ever half-understood).
#include <cstdint>
#include <cstdlib>

#include "gossip/codec.h"
#include "gossip/compact.h"
#include "gossip/compression.h"
#include "gossip/envelope.h"
#include "gossip/message.h"

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
  auto requireValid = [](const auto& x) {
    using T = std::decay_t<decltype(x)>;
    if constexpr (!std::is_same_v<T, GCounter> && !std::is_same_v<T, PNCounter> &&
                  !std::is_same_v<T, LWWRegister<std::string>>) {
      require(x.context().valid());
      x.store().forEachDot([&](Dot d) { require(x.context().contains(d)); });
    }
  };
  const std::vector<NamedValue>* objects = nullptr;
  if (auto* p = std::get_if<DeltaPushMsg>(&m)) objects = &p->objects;
  if (auto* c = std::get_if<StateChunkMsg>(&m)) objects = &c->objects;
  if (objects != nullptr) {
    for (const auto& o : *objects) std::visit(requireValid, o.value);
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
  std::visit(
      [](const auto& x) {
        if constexpr (requires { x.context(); }) {
          require(x.context().valid());
          x.store().forEachDot([&](Dot d) { require(x.context().contains(d)); });
        }
      },
      v);
  ColumnWriter again;
  encodeCompact(v, implicit, again);
  require(decodeCompact(again.bytes().data(), again.size(), implicit, kLimits) == v);
#else
#error "FUZZ_ENTRY must name a decoder entry point"
#endif
  return 0;
}
