#include "gossip/envelope.h"
#include "gossip/envelope-wire.h"

#include <capnp/message.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "gossip/codec.h"
#include "gossip/compact.h"
#include "gossip/compression.h"
#include "gossip/message.h"

namespace deltasync::gossip {

namespace {

// ---- values ------------------------------------------------------------------------------

// Where a causal kind's state goes in a Crdt (each kind has exactly one arm).
template <typename T>
wire::CausalState::Builder causalArm(wire::Crdt::Builder out) {
  if constexpr (std::is_same_v<T, crdt::MVRegister<std::string>>) {
    return out.initMvRegister();
  } else if constexpr (std::is_same_v<T, crdt::EWFlag>) {
    return out.initEwFlag();
  } else if constexpr (std::is_same_v<T, crdt::ORSet<std::string>>) {
    return out.initOrSet();
  } else {
    static_assert(std::is_same_v<T, Map>);
    return out.initAwLwwMap();
  }
}

template <typename T>
constexpr bool kCausalKind = std::is_same_v<T, crdt::MVRegister<std::string>> || std::is_same_v<T, crdt::EWFlag> ||
                             std::is_same_v<T, crdt::ORSet<std::string>> || std::is_same_v<T, Map>;

// The column encoding of one kind's value (each kind has exactly one).
template <typename T>
void encodeKindInto(const T& x, wire::Crdt::Builder out) {
  if constexpr (std::is_same_v<T, crdt::GCounter>) {
    encode(x, out.initGCounter());
  } else if constexpr (std::is_same_v<T, crdt::PNCounter>) {
    encode(x, out.initPnCounter());
  } else if constexpr (std::is_same_v<T, crdt::LWWRegister<std::string>>) {
    encode(x, out.initLwwRegister());
  } else if constexpr (kCausalKind<T>) {
    encodeCausal(x, causalArm<T>(out));
  } else if constexpr (std::is_same_v<T, Tombstone>) {
    out.setDeleted();
  } else if constexpr (std::is_same_v<T, MapOfSets>) {
    encode(x, out.initOrMapOfSets());
  } else if constexpr (std::is_same_v<T, MapOfCounters>) {
    encode(x, out.initMapOfCounters());
  } else {
    static_assert(std::is_same_v<T, MapOfMaps>);
    encode(x, out.initOrMap());
  }
}

void encodeValueInto(const Value& v, wire::Crdt::Builder out) {
  std::visit([&](const auto& x) { encodeKindInto(x, out); }, v);
}

Value decodeValueFrom(wire::Crdt::Reader in, const Limits& limits) {
  switch (in.which()) {
    case wire::Crdt::COMPACT:
      // The arm of the struct push, which no sender of this protocol version writes: a push
      // travels in the compact envelope, its values bare.
      throw DecodeError("object: a compact value inside a struct (pushes travel in the compact envelope)");
    case wire::Crdt::G_COUNTER: return decode(in.getGCounter(), limits);
    case wire::Crdt::PN_COUNTER: return decode(in.getPnCounter(), limits);
    case wire::Crdt::LWW_REGISTER: return decodeLWWRegister<std::string>(in.getLwwRegister(), limits);
    case wire::Crdt::MV_REGISTER: return decodeCausal<crdt::MVRegister<std::string>>(in.getMvRegister(), limits);
    case wire::Crdt::EW_FLAG: return decodeCausal<crdt::EWFlag>(in.getEwFlag(), limits);
    case wire::Crdt::OR_SET: return decodeCausal<crdt::ORSet<std::string>>(in.getOrSet(), limits);
    case wire::Crdt::AW_LWW_MAP: return decodeCausal<Map>(in.getAwLwwMap(), limits);
    case wire::Crdt::OR_MAP: return decodeORMap<crdt::ORMap<std::string, Map>>(in.getOrMap(), limits);
    case wire::Crdt::DELETED: return Tombstone{};
    case wire::Crdt::OR_MAP_OF_SETS: return decodeORMap<MapOfSets>(in.getOrMapOfSets(), limits);
    case wire::Crdt::MAP_OF_COUNTERS: return decode(in.getMapOfCounters(), limits);
  }
  throw DecodeError("object: unknown CRDT kind " + std::to_string(static_cast<unsigned>(in.which())));
}

// Text travels with its exact length (capnp's std::string conversion would stop at a NUL), and
// every text field is NUL-free by rule: the decoder rejects NUL, so what decodes re-encodes
// byte for byte.
capnp::Text::Reader text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

std::string checkedText(std::string_view t, size_t maxBytes, const char* what, const char* field) {
  if (t.size() > maxBytes) throw DecodeError(std::string(what) + ": " + field + " longer than its limit");
  std::string out(t);
  if (out.find('\0') != std::string::npos) throw DecodeError(std::string(what) + ": " + field + " contains a NUL byte");
  return out;
}
std::string checkedText(capnp::Text::Reader t, size_t maxBytes, const char* what, const char* field) {
  return checkedText(std::string_view(t.begin(), t.size()), maxBytes, what, field);
}

std::string checkedName(std::string_view t, const Limits& limits, const char* what) {
  if (std::string problem = nameProblem(t, limits); !problem.empty()) throw DecodeError(std::string(what) + ": " + problem);
  return std::string(t);
}
std::string checkedName(capnp::Text::Reader t, const Limits& limits, const char* what) {
  return checkedName(std::string_view(t.begin(), t.size()), limits, what);
}

// Object names of a push or chunk: no name twice.
void requireUnique(const std::vector<NamedValue>& objects, const char* what) {
  std::vector<const std::string*> names;
  names.reserve(objects.size());
  for (const auto& o : objects) names.push_back(&o.name);
  std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
  for (size_t i = 1; i < names.size(); ++i) {
    if (*names[i - 1] == *names[i]) throw DecodeError(std::string(what) + ": object '" + *names[i] + "' appears twice");
  }
}

// The objects or summaries of one message, n of them, each made by next(): the count limit both
// wire forms share. `reserve` bounds the allocation by what the input can hold.
template <typename T, typename Next>
std::vector<T> readObjectList(uint64_t n, size_t reserve, const Limits& limits, const char* what, Next&& next) {
  if (n > limits.maxObjectsPerMessage) {
    throw DecodeError(std::string(what) + ": more than limits.maxObjectsPerMessage objects");
  }
  std::vector<T> out;
  out.reserve(std::min<size_t>(n, reserve));
  for (uint64_t i = 0; i < n; ++i) out.push_back(next());
  return out;
}

ReplicaId checkedId(uint64_t v, const char* what) {
  if (v == 0) throw DecodeError(std::string(what) + " is 0 (no such replica)");
  return ReplicaId{v};
}

// ---- membership --------------------------------------------------------------------------

void encodeUpdates(const std::vector<MemberUpdate>& us, capnp::List<wire::MemberUpdate>::Builder out) {
  for (unsigned i = 0; i < us.size(); ++i) {
    out[i].setReplica(us[i].replica.value);
    out[i].setIncarnation(us[i].incarnation);
    out[i].setState(static_cast<wire::MemberState>(us[i].state));
    out[i].setAddress(text(us[i].address));
    out[i].setReporter(us[i].reporter.value);
  }
}

std::vector<MemberUpdate> decodeUpdates(capnp::List<wire::MemberUpdate>::Reader in, const Limits& limits,
                                        const char* what = "membership: updates") {
  if (in.size() > limits.maxMemberUpdates) {
    throw DecodeError(std::string(what) + ": more than limits.maxMemberUpdates updates");
  }
  std::vector<MemberUpdate> out;
  out.reserve(in.size());
  for (auto u : in) {
    auto state = static_cast<uint16_t>(u.getState());
    if (state > static_cast<uint16_t>(MemberState::left)) {
      throw DecodeError("membership: unknown member state " + std::to_string(state));
    }
    if (u.getAddress().size() > limits.maxAddressBytes) {
      throw DecodeError("membership: address longer than limits.maxAddressBytes");
    }
    out.push_back({checkedId(u.getReplica(), "membership: member id"), u.getIncarnation(),
                   static_cast<MemberState>(state),
                   checkedText(u.getAddress(), limits.maxAddressBytes, "membership", "address"),
                   ReplicaId{u.getReporter()}});
  }
  std::vector<uint64_t> ids;
  ids.reserve(out.size());
  for (const auto& u : out) ids.push_back(u.replica.value);
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    throw DecodeError(std::string(what) + ": the same member appears twice");
  }
  return out;
}

// ---- handshake ---------------------------------------------------------------------------

template <size_t N>
std::array<uint8_t, N> fixedBytes(capnp::Data::Reader d, const char* what) {
  if (d.size() != N) {
    throw DecodeError(std::string(what) + " must be " + std::to_string(N) + " bytes, got " + std::to_string(d.size()));
  }
  std::array<uint8_t, N> out;
  std::memcpy(out.data(), d.begin(), N);
  return out;
}
template <size_t N>
capnp::Data::Reader dataOf(const std::array<uint8_t, N>& a) {
  return capnp::Data::Reader(a.data(), N);
}

template <typename Names>
void requireIncreasing(const Names& names, const char* what) {
  for (size_t i = 1; i < names.size(); ++i) {
    if (!(names[i - 1] < names[i])) throw DecodeError(std::string(what) + ": names not strictly increasing");
  }
}

// Offers and requests: names strictly increasing, every context valid and non-empty.
// An offer's or request's summary: a non-empty dot set.
NamedDots checkedSummary(std::string name, crdt::CausalContext dots, const char* what) {
  if (dots.empty()) throw DecodeError(std::string(what) + ": object '" + name + "' with no dots");
  return {std::move(name), std::move(dots)};
}
void requireIncreasing(const std::vector<NamedDots>& objects, const char* what) {
  std::vector<std::string_view> names;
  names.reserve(objects.size());
  for (const auto& o : objects) names.push_back(o.name);
  requireIncreasing(names, what);
}

Bytes toBytes(kj::ArrayPtr<const kj::byte> a) { return Bytes(a.begin(), a.end()); }

// ---- the compact envelope (wire.capnp Envelope.compact) ---------------------------------------

enum : unsigned char { kCompactPush = 0, kCompactAck = 1, kCompactOffer = 11, kCompactRequest = 12 };
// Kind-byte flag: every byte after the kind byte is raw deflate (gossip/compression.h) of what
// would otherwise follow it. Senders set it when the envelope has at least kDeflateFrom bytes
// and deflating makes it smaller (batched entries: repeated key prefixes, digit-only values).
constexpr unsigned char kCompactDeflated = 0x80;
constexpr size_t kDeflateFrom = 128;

// Push, ack, offer and request travel compact, and only so.
bool travelsCompact(const Message& m) {
  return std::holds_alternative<DeltaPushMsg>(m) || std::holds_alternative<AckMsg>(m) ||
         std::holds_alternative<OfferMsg>(m) || std::holds_alternative<RequestMsg>(m);
}

void writeName(ColumnWriter& w, const std::string& name) {
  w.varint(name.size());
  w.raw(name);
}
std::string readName(ColumnReader& r, const Limits& limits, const char* what) {
  uint64_t n = r.varint();
  if (n > limits.maxNameBytes) throw DecodeError(std::string(what) + ": object name longer than limits.maxNameBytes");
  return checkedName(r.raw(n), limits, what);
}

// A nested byte string: varint length, bytes.
void writeBlob(ColumnWriter& w, const ColumnWriter& blob) {
  w.varint(blob.size());
  w.raw(std::string_view(reinterpret_cast<const char*>(blob.bytes().data()), blob.size()));
}

// base, fromSeq - base, toSeq - fromSeq: base <= fromSeq < toSeq holds by construction.
void writeSeqs(ColumnWriter& w, uint64_t base, uint64_t fromSeq, uint64_t toSeq) {
  w.varint(base);
  w.varint(fromSeq - base);
  w.varint(toSeq - fromSeq);
}
void readSeqs(ColumnReader& r, uint64_t& base, uint64_t& fromSeq, uint64_t& toSeq, const char* rule) {
  base = r.varint();
  uint64_t toFrom = r.varint();
  uint64_t span = r.varint();
  if (toFrom > UINT64_MAX - base || span == 0 || span > UINT64_MAX - (base + toFrom)) throw DecodeError(rule);
  fromSeq = base + toFrom;
  toSeq = fromSeq + span;
}

struct CompactEncoder {
  ColumnWriter& w;

  void header(unsigned char kind, ReplicaId sender) {
    w.byte(kind);
    w.fixed64(sender.value);
  }
  void objects(const std::vector<NamedDots>& os, ReplicaId sender) {
    w.varint(os.size());
    for (const auto& o : os) {
      writeName(w, o.name);
      ColumnWriter dots;
      encodeDots(o.dots, dots, sender);
      writeBlob(w, dots);
    }
  }
  void operator()(const DeltaPushMsg& m) {
    header(kCompactPush, m.sender);
    w.byte(m.partial ? 1 : 0);
    writeSeqs(w, m.base, m.fromSeq, m.toSeq);
    w.varint(m.objects.size());
    for (const auto& o : m.objects) {
      writeName(w, o.name);
      ColumnWriter value;
      encodeCompact(o.value, m.sender, value);
      writeBlob(w, value);
    }
  }
  void operator()(const AckMsg& m) {
    header(kCompactAck, m.sender);
    w.varint(m.seq);
  }
  void operator()(const OfferMsg& m) {
    header(kCompactOffer, m.sender);
    w.byte(m.complete ? 1 : 0);
    writeSeqs(w, m.base, m.fromSeq, m.toSeq);
    objects(m.objects, m.sender);
  }
  void operator()(const RequestMsg& m) {
    header(kCompactRequest, m.sender);
    writeSeqs(w, m.fromSeq, m.fromSeq, m.toSeq);
    objects(m.objects, m.sender);
  }
  template <typename Other>
  void operator()(const Other&) {
    throw std::logic_error("this message kind has no compact envelope");
  }
};

unsigned char readFlag(ColumnReader& r, const char* what) {
  unsigned char f = r.byte();
  if (f > 1) throw DecodeError(std::string(what) + ": unknown flags");
  return f;
}

// The objects of a push or state chunk: varint n, then n (name, varint length, compact value
// with references 0 standing for the sender); no name twice.
std::vector<NamedValue> readNamedValues(ColumnReader& r, const Limits& limits, ReplicaId sender, const char* what) {
  const uint64_t n = r.varint();
  auto out = readObjectList<NamedValue>(n, r.remaining(), limits, what, [&] {
    std::string name = readName(r, limits, what);
    std::string_view value = r.raw(r.varint());
    return NamedValue{std::move(name),
                      decodeCompact(reinterpret_cast<const unsigned char*>(value.data()), value.size(), sender, limits)};
  });
  requireUnique(out, what);
  return out;
}

std::vector<NamedDots> readSummaries(ColumnReader& r, const Limits& limits, ReplicaId sender, const char* what) {
  const uint64_t n = r.varint();
  auto out = readObjectList<NamedDots>(n, r.remaining(), limits, what, [&] {
    std::string name = readName(r, limits, what);
    std::string_view dots = r.raw(r.varint());
    return checkedSummary(std::move(name),
                          decodeDots(reinterpret_cast<const unsigned char*>(dots.data()), dots.size(), limits, sender),
                          what);
  });
  requireIncreasing(out, what);
  return out;
}

Message decodeCompactEnvelope(const unsigned char* data, size_t size, const Limits& limits) {
  if (size > 0 && (data[0] & kCompactDeflated) != 0) {
    // Inflated no further than inflateBound (a deflate bomb costs little); the result is read as
    // if it came so.
    auto rest = inflateRaw(kj::arrayPtr(data + 1, size - 1), inflateBound(size, limits) - 1);
    std::vector<unsigned char> plain(1 + rest.size());
    plain[0] = data[0] & ~kCompactDeflated;
    std::copy(rest.begin(), rest.end(), plain.begin() + 1);
    return decodeCompactEnvelope(plain.data(), plain.size(), limits);
  }
  ColumnReader r(data, size, "compact envelope");
  const unsigned char kind = r.byte();
  auto sender = [&](const char* what) { return checkedId(r.fixed64(), what); };
  Message out;
  switch (kind) {
    case kCompactPush: {
      DeltaPushMsg m;
      m.sender = sender("push: sender");
      m.partial = readFlag(r, "push") != 0;
      readSeqs(r, m.base, m.fromSeq, m.toSeq, "push: sequence numbers must satisfy base <= fromSeq < toSeq");
      m.objects = readNamedValues(r, limits, m.sender, "push");
      out = std::move(m);
      break;
    }
    case kCompactAck: {
      ReplicaId from = sender("ack: sender");
      out = AckMsg{from, r.varint()};
      break;
    }
    case kCompactOffer: {
      OfferMsg m;
      m.sender = sender("offer: sender");
      m.complete = readFlag(r, "offer") != 0;
      readSeqs(r, m.base, m.fromSeq, m.toSeq, "offer: sequence numbers must satisfy base <= fromSeq < toSeq");
      m.objects = readSummaries(r, limits, m.sender, "offer");
      out = std::move(m);
      break;
    }
    case kCompactRequest: {
      RequestMsg m;
      m.sender = sender("request: sender");
      uint64_t base = 0;
      readSeqs(r, base, m.fromSeq, m.toSeq, "request: sequence numbers must satisfy fromSeq < toSeq");
      if (base != m.fromSeq) throw DecodeError("request: sequence numbers: no base (fromSeq written twice)");
      m.objects = readSummaries(r, limits, m.sender, "request");
      out = std::move(m);
      break;
    }
    default: throw DecodeError("compact envelope: unknown message kind " + std::to_string(kind));
  }
  r.expectEnd();
  return out;
}

}  // namespace

// ---- handshake messages (also RPC parameters of their own, see gossip/rpc.h) ----------------

void encodeHello(const HelloMsg& m, wire::Hello::Builder h) {
  h.setReplica(m.replica.value);
  h.setCluster(text(m.cluster));
  h.setNonce(dataOf(m.nonce));
  h.setProtocolVersion(m.protocolVersion);
  h.setClient(m.client);
}

void encodeHelloReply(const HelloReplyMsg& m, wire::HelloReply::Builder h) {
  h.setReplica(m.replica.value);
  h.setNonce(dataOf(m.nonce));
  h.setProof(dataOf(m.proof));
}

void encodeAuthProof(const AuthProofMsg& m, wire::AuthProof::Builder a) { a.setProof(dataOf(m.proof)); }

HelloMsg decodeHello(wire::Hello::Reader h, const Limits& limits) {
  if (h.getCluster().size() > limits.maxClusterNameBytes) {
    throw DecodeError("hello: cluster name longer than limits.maxClusterNameBytes");
  }
  if (h.getCluster().size() == 0) throw DecodeError("hello: empty cluster name");
  if (h.getProtocolVersion() == 0) throw DecodeError("hello: protocol version 0 does not exist");
  return HelloMsg{checkedId(h.getReplica(), "hello: replica"),
                  checkedText(h.getCluster(), limits.maxClusterNameBytes, "hello", "cluster name"),
                  fixedBytes<kNonceBytes>(h.getNonce(), "hello: nonce"), h.getProtocolVersion(), h.getClient()};
}

HelloReplyMsg decodeHelloReply(wire::HelloReply::Reader h, const Limits&) {
  return HelloReplyMsg{checkedId(h.getReplica(), "hello reply: replica"),
                       fixedBytes<kNonceBytes>(h.getNonce(), "hello reply: nonce"),
                       fixedBytes<kProofBytes>(h.getProof(), "hello reply: proof")};
}

AuthProofMsg decodeAuthProof(wire::AuthProof::Reader a, const Limits&) {
  return AuthProofMsg{fixedBytes<kProofBytes>(a.getProof(), "auth proof: proof")};
}

// ---- envelopes ---------------------------------------------------------------------------

namespace {

struct Encoder {
  wire::Envelope::Builder env;

  void operator()(const DigestMsg& m) {
    auto d = env.initDigest();
    d.setSender(m.sender.value);
    d.setSeq(m.seq);
    auto es = d.initEntries(static_cast<unsigned>(m.entries.size()));
    for (unsigned i = 0; i < m.entries.size(); ++i) {
      es[i].setName(text(m.entries[i].first));
      es[i].setHash(m.entries[i].second);
    }
  }
  void operator()(const StateRequestMsg& m) {
    auto r = env.initStateRequest();
    r.setSender(m.sender.value);
    r.setSeq(m.seq);
    auto ns = r.initNames(static_cast<unsigned>(m.names.size()));
    for (unsigned i = 0; i < m.names.size(); ++i) ns.set(i, text(m.names[i]));
  }
  void operator()(const StateChunkMsg& m) {
    // The objects as the compact push lists them: names, then values compact with references 0
    // standing for the sender.
    ColumnWriter list;
    list.varint(m.objects.size() + m.encoded.size());
    for (const NamedValue& o : m.objects) {
      writeName(list, o.name);
      ColumnWriter value;
      encodeCompact(o.value, m.sender, value);
      writeBlob(list, value);
    }
    for (const EncodedObject& o : m.encoded) {
      writeName(list, o.name);
      list.varint(o.value.size());
      list.raw(std::string_view(reinterpret_cast<const char*>(o.value.data()), o.value.size()));
    }
    const auto payload = kj::arrayPtr(list.bytes().data(), list.size());
    auto c = env.initStateChunk();
    c.setSender(m.sender.value);
    c.setTransfer(m.transfer);
    c.setIndex(m.index);
    c.setTotal(m.total);
    if (payload.size() >= kCompressChunkAbove) {
      auto z = zlibCompress(payload);
      if (z.size() < payload.size() && payload.size() <= inflateBound(z.size(), Limits{})) {  // as for compact
        c.setCompression(wire::Compression::ZLIB);
        c.setPayload(z);
        return;
      }
    }
    c.setCompression(wire::Compression::NONE);
    c.setPayload(payload);
  }
  void operator()(const PingMsg& m) {
    auto p = env.initPing();
    p.setSender(m.sender.value);
    p.setSeq(m.seq);
    p.setTableHash(m.tableHash);
    p.setOutView(m.outView);
    encodeUpdates(m.updates, p.initUpdates(static_cast<unsigned>(m.updates.size())));
  }
  void operator()(const PingReqMsg& m) {
    auto p = env.initPingReq();
    p.setSender(m.sender.value);
    p.setSeq(m.seq);
    p.setTarget(m.target.value);
    encodeUpdates(m.updates, p.initUpdates(static_cast<unsigned>(m.updates.size())));
  }
  void operator()(const PingAckMsg& m) {
    auto p = env.initPingAck();
    p.setSender(m.sender.value);
    p.setSeq(m.seq);
    p.setTarget(m.target.value);
    p.setTableHash(m.tableHash);
    encodeUpdates(m.updates, p.initUpdates(static_cast<unsigned>(m.updates.size())));
    if (!m.sample.empty()) encodeUpdates(m.sample, p.initSample(static_cast<unsigned>(m.sample.size())));
  }
  // Push, ack, offer and request travel compact only (travelsCompact): their struct arms are
  // never written, and decodeEnvelope refuses them.
  void operator()(const DeltaPushMsg&) { compactOnly("push"); }
  void operator()(const AckMsg&) { compactOnly("ack"); }
  void operator()(const OfferMsg&) { compactOnly("offer"); }
  void operator()(const RequestMsg&) { compactOnly("request"); }
  [[noreturn]] static void compactOnly(const char* what) {
    throw std::logic_error(std::string("envelope: ") + what + " travels in the compact form only");
  }
  void operator()(const SyncRequestMsg& m) {
    auto r = env.initSyncRequest();
    r.setSender(m.sender.value);
    r.setId(m.id);
  }
  void operator()(const SyncReplyMsg& m) {
    auto r = env.initSyncReply();
    r.setSender(m.sender.value);
    r.setId(m.id);
    r.setSeq(m.seq);
  }
  void operator()(const HelloMsg& m) { encodeHello(m, env.initHello()); }
  void operator()(const HelloReplyMsg& m) { encodeHelloReply(m, env.initHelloReply()); }
  void operator()(const AuthProofMsg& m) { encodeAuthProof(m, env.initAuthProof()); }
};

}  // namespace

Message decodeEnvelope(wire::Envelope::Reader env, const Limits& limits) {
  switch (env.which()) {
    case wire::Envelope::COMPACT: {
      auto bytes = env.getCompact();
      return decodeCompactEnvelope(bytes.begin(), bytes.size(), limits);
    }
    case wire::Envelope::DIGEST: {
      auto d = env.getDigest();
      DigestMsg m{checkedId(d.getSender(), "digest: sender"), d.getSeq(), {}};
      auto es = d.getEntries();
      if (es.size() > limits.maxObjectsPerMessage) throw DecodeError("digest: more than limits.maxObjectsPerMessage entries");
      m.entries.reserve(es.size());
      for (auto e : es) m.entries.emplace_back(checkedName(e.getName(), limits, "digest"), e.getHash());
      std::vector<std::string_view> names;
      for (auto& e : m.entries) names.push_back(e.first);
      requireIncreasing(names, "digest");
      return m;
    }
    case wire::Envelope::STATE_REQUEST: {
      auto r = env.getStateRequest();
      StateRequestMsg m{checkedId(r.getSender(), "state request: sender"), r.getSeq(), {}};
      auto ns = r.getNames();
      if (ns.size() > limits.maxObjectsPerMessage) throw DecodeError("state request: more than limits.maxObjectsPerMessage names");
      m.names.reserve(ns.size());
      for (auto n : ns) m.names.push_back(checkedName(n, limits, "state request"));
      requireIncreasing(m.names, "state request");
      return m;
    }
    case wire::Envelope::STATE_CHUNK: {
      auto c = env.getStateChunk();
      StateChunkMsg m{checkedId(c.getSender(), "state chunk: sender"), c.getTransfer(), c.getIndex(), c.getTotal(), {}};
      if (m.total == 0 || m.total > limits.maxChunksPerTransfer) {
        throw DecodeError("state chunk: total outside 1..limits.maxChunksPerTransfer");
      }
      if (m.index >= m.total) throw DecodeError("state chunk: index >= total");
      kj::Array<kj::byte> inflated;
      kj::ArrayPtr<const kj::byte> payload = c.getPayload();
      switch (c.getCompression()) {
        case wire::Compression::NONE: break;
        case wire::Compression::ZLIB:
          inflated = zlibDecompress(payload, inflateBound(payload.size(), limits));
          payload = inflated;
          break;
        default: throw DecodeError("state chunk: unknown compression");
      }
      ColumnReader r(payload.begin(), payload.size(), "state chunk");
      m.objects = readNamedValues(r, limits, m.sender, "state chunk");
      r.expectEnd();
      return m;
    }
    case wire::Envelope::PING: {
      auto p = env.getPing();
      return PingMsg{checkedId(p.getSender(), "ping: sender"), p.getSeq(), decodeUpdates(p.getUpdates(), limits),
                     p.getTableHash(), p.getOutView()};
    }
    case wire::Envelope::PING_REQ: {
      auto p = env.getPingReq();
      if (p.getTarget() == p.getSender()) throw DecodeError("ping-req: target is the sender itself");
      return PingReqMsg{checkedId(p.getSender(), "ping-req: sender"), p.getSeq(),
                        checkedId(p.getTarget(), "ping-req: target"), decodeUpdates(p.getUpdates(), limits)};
    }
    case wire::Envelope::PING_ACK: {
      auto p = env.getPingAck();
      return PingAckMsg{checkedId(p.getSender(), "ping-ack: sender"), p.getSeq(),
                        checkedId(p.getTarget(), "ping-ack: target"), decodeUpdates(p.getUpdates(), limits),
                        p.getTableHash(), decodeUpdates(p.getSample(), limits, "membership: sample")};
    }
    case wire::Envelope::SYNC_REQUEST: {
      auto r = env.getSyncRequest();
      if (r.getId() == 0) throw DecodeError("sync-request: id 0 is never used");
      return SyncRequestMsg{checkedId(r.getSender(), "sync-request: sender"), r.getId()};
    }
    case wire::Envelope::SYNC_REPLY: {
      auto r = env.getSyncReply();
      if (r.getId() == 0) throw DecodeError("sync-reply: id 0 is never used");
      return SyncReplyMsg{checkedId(r.getSender(), "sync-reply: sender"), r.getId(), r.getSeq()};
    }
    case wire::Envelope::PUSH:
    case wire::Envelope::ACK:
    case wire::Envelope::OFFER:
    case wire::Envelope::REQUEST:
      // Every sender of this protocol version writes them compact (one decoder per rule: the
      // compact one, fuzzed); the struct arms are dead schema, refused.
      throw DecodeError("envelope: a push, ack, offer or request in its struct form (they travel compact only)");
    case wire::Envelope::HELLO: return decodeHello(env.getHello(), limits);
    case wire::Envelope::HELLO_REPLY: return decodeHelloReply(env.getHelloReply(), limits);
    case wire::Envelope::AUTH_PROOF: return decodeAuthProof(env.getAuthProof(), limits);
  }
  throw DecodeError("envelope: unknown message kind " + std::to_string(static_cast<unsigned>(env.which())));
}

void encodeEnvelope(const Message& m, wire::Envelope::Builder out) {
  if (travelsCompact(m)) {
    ColumnWriter bytes;
    std::visit(CompactEncoder{bytes}, m);
    const auto& b = bytes.bytes();
    if (b.size() >= kDeflateFrom) {
      auto z = deflateRaw(kj::arrayPtr(b.data() + 1, b.size() - 1));
      // Deflated only where the receiver will inflate it (inflateBound, default Limits): what
      // compresses further travels plain, so an honest message is never refused as a bomb.
      if (1 + z.size() < b.size() && b.size() <= inflateBound(1 + z.size(), Limits{})) {
        auto d = out.initCompact(static_cast<unsigned>(1 + z.size()));
        d[0] = static_cast<kj::byte>(b[0] | kCompactDeflated);
        std::copy(z.begin(), z.end(), d.begin() + 1);
        return;
      }
    }
    out.setCompact(_::asData(bytes));
    return;
  }
  std::visit(Encoder{out}, m);
}

Bytes encodeMessage(const Message& m) {
  capnp::MallocMessageBuilder mb;
  encodeEnvelope(m, mb.initRoot<wire::Envelope>());
  return toBytes(frame(mb));
}

Message decodeMessage(const unsigned char* data, size_t size, const Limits& limits) {
  IncomingMessage in(kj::ArrayPtr<const kj::byte>(data, size), limits);
  return in.decodeRoot<wire::Envelope>([&](wire::Envelope::Reader r) { return decodeEnvelope(r, limits); });
}

Bytes encodeValue(const Value& v) {
  capnp::MallocMessageBuilder mb;
  encodeValueInto(v, mb.initRoot<wire::Crdt>());
  return toBytes(frame(mb));
}

Value decodeValue(const unsigned char* data, size_t size, const Limits& limits) {
  IncomingMessage in(kj::ArrayPtr<const kj::byte>(data, size), limits);
  return in.decodeRoot<wire::Crdt>([&](wire::Crdt::Reader r) { return decodeValueFrom(r, limits); });
}

}  // namespace deltasync::gossip
