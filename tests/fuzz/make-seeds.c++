// Writes the seed corpora of tests/fuzz (committed under tests/fuzz/corpus/<target>/): a few
// valid framed messages per decoder entry point, from empty to a few hundred entries.
//   make-seeds <corpus root>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "gossip/codec.h"
#include "gossip/compression.h"
#include "gossip/compact.h"
#include "gossip/envelope.h"
#include "gossip/message.h"
#include "gossip/presence.h"

using namespace deltasync::crdt;
using namespace deltasync::gossip;
namespace wire = deltasync::wire;

namespace {

std::filesystem::path root;

void writeBytes(const std::string& target, int i, const unsigned char* data, size_t size) {
  auto dir = root / target;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

void write(const std::string& target, int i, capnp::MallocMessageBuilder& mb) {
  auto bytes = frame(mb);
  writeBytes(target, i, bytes.begin(), bytes.size());
}

template <typename T, typename Fill>
void causal(const std::string& target, Fill fill) {
  for (int i = 0; i < 4; ++i) {
    T x;
    fill(x, i == 0 ? 0 : i * i * 20);
    capnp::MallocMessageBuilder mb;
    encodeCausal(x, mb.initRoot<wire::CausalState>());
    write(target, i, mb);
  }
}

// One object of every kind, each with about n entries (n = 0: one entry; a tombstone has none),
// named "<prefix><kind>".
std::vector<NamedValue> everyKind(const std::string& prefix, int n, ReplicaId a, ReplicaId b) {
  GCounter g;
  PNCounter p;
  LWWRegister<std::string> r;
  MVRegister<std::string> mv;
  EWFlag f;
  ORSet<std::string> s;
  Map m;
  ORMap<std::string, Map> om;
  MapOfSets os;
  MapOfCounters mc;
  for (int k = 0; k <= n; ++k) {
    ReplicaId w = k % 2 ? a : b;
    g.increment(w, uint64_t(k) + 1);
    p.decrement(w, uint64_t(k) + 2);
    r.set(w, "value-" + std::to_string(k), Timestamp{uint64_t(k + 1) << 16});
    mv.write(w, std::string(size_t(k % 7), 'v'));
    if (k % 3 == 2) f.disable(); else f.enable(w);
    s.add(w, "element-" + std::to_string(k));
    if (k % 4 == 3) s.remove("element-" + std::to_string(k - 2));
    m.set(w, "key-" + std::to_string(k % 10), std::string(size_t(k % 30), 'x'),
          Timestamp{uint64_t(k) << 16});
    om.update("room-" + std::to_string(k % 3), [&](Map& in) {
      return in.set(w, "user-" + std::to_string(k), "here", Timestamp{uint64_t(k)});
    });
    if (k % 5 == 4) om.remove("room-" + std::to_string(k % 2));
    os.update("group-" + std::to_string(k % 3), [&](ORSet<std::string>& in) { return in.add(w, "member-" + std::to_string(k)); });
    if (k % 5 == 3) os.remove("group-" + std::to_string(k % 2));
    mc.increment(w, "score-" + std::to_string(k % 4), uint64_t(k) + 1);
    if (k % 3 == 1) mc.decrement(w, "score-" + std::to_string(k % 4), 1);
    if (k % 6 == 5) mc.removeKey("score-" + std::to_string(k % 2));
  }
  std::vector<NamedValue> out;
  for (Value& v : std::vector<Value>{g, p, r, mv, f, s, m, om, os, mc, Tombstone{}}) {
    const std::string name = prefix + kindName(v);
    out.push_back({name, std::move(v)});
  }
  return out;
}

// Valid envelopes of every kind, a few of each, from empty to a compressed state chunk.
void envelopes(ReplicaId a, ReplicaId b) {
  std::vector<Message> ms;
  ms.push_back(DeltaPushMsg{a, 0, 0, 1, {}});
  ms.push_back(DeltaPushMsg{a, 3, 5, 9, {{"counter", GCounter{}.increment(b, 42)}}});
  ms.push_back(DeltaPushMsg{b, 10, 12, 13, everyKind("obj/", 3, a, b)});
  ms.push_back(AckMsg{a, 0});
  ms.push_back(AckMsg{b, 1234567});
  DigestMsg digest{a, 77, {}};
  ms.push_back(digest);
  for (int k = 0; k < 20; ++k) {
    digest.entries.emplace_back("name-" + std::to_string(100 + k), 0x9e3779b97f4a7c15u * uint64_t(k));
  }
  ms.push_back(digest);
  ms.push_back(StateRequestMsg{b, 77, {"name-100"}});
  ms.push_back(StateRequestMsg{b, 78, {"a", "b", "name-105", "name-119", "z"}});
  ms.push_back(StateChunkMsg{a, 77, 0, 1, {}});
  ms.push_back(StateChunkMsg{a, 77, 1, 3, everyKind("", 0, a, b)});
  ms.push_back(StateChunkMsg{a, 78, 2, 3, everyKind("big/", 60, a, b)});  // zlib-compressed
  std::vector<MemberUpdate> updates{{a, 1, MemberState::alive, "10.0.0.1:7946", {}},
                                    {b, 4, MemberState::suspect, "[fe80::1]:7946", a},
                                    {ReplicaId{3}, 2, MemberState::down, "", b},
                                    {ReplicaId{4}, 9, MemberState::left, "node-4.example:7946", {}}};
  ms.push_back(PingMsg{a, 1, {}, 0, false});
  ms.push_back(PingMsg{a, 2, updates, 0x0123456789abcdef, true});
  ms.push_back(PingReqMsg{a, 3, b, {}});
  ms.push_back(PingReqMsg{a, 4, b, updates});
  ms.push_back(PingAckMsg{b, 3, b, {}, 0, {}});
  ms.push_back(PingAckMsg{b, 4, ReplicaId{3}, updates, 0x0123456789abcdef, {}});
  ms.push_back(PingAckMsg{b, 0, b, {updates[0]}, 0xfedcba9876543210, updates});  // a table-sync sample
  Nonce nonce;
  Proof proof;
  for (size_t k = 0; k < nonce.size(); ++k) nonce[k] = uint8_t(k * 7 + 1);
  for (size_t k = 0; k < proof.size(); ++k) proof[k] = uint8_t(255 - k * 3);
  ms.push_back(HelloMsg{a, "", nonce, 1});
  ms.push_back(HelloMsg{b, "prod-eu", nonce, 2});
  ms.push_back(HelloReplyMsg{b, nonce, proof});
  ms.push_back(AuthProofMsg{proof});
  // Lazy push: an offer, the request answering it, the partial push answering that.
  CausalContext dots;
  dots.addRange(a, 1, 40);
  dots.add(Dot{b, 7});
  dots.add(Dot{b, 9});
  CausalContext few;
  few.add(Dot{b, 9});
  ms.push_back(OfferMsg{a, 12, 20, {{"obj/1", dots}, {"obj/2", few}}, 10, true});
  ms.push_back(RequestMsg{b, 12, 20, {{"obj/1", few}}});
  ms.push_back(RequestMsg{b, 12, 20, {}});
  ms.push_back(SyncRequestMsg{a, 3});
  ms.push_back(SyncReplyMsg{b, 3, 20});
  ms.push_back(DeltaPushMsg{a, 10, 12, 20, everyKind("obj/", 2, a, b), true});
  // A batch of map writes, large enough to travel deflated (compact envelope flag 0x80).
  Map batch;
  for (int k = 0; k < 120; ++k) {
    batch.join(batch.set(k % 3 ? a : b, "k" + std::to_string(k * 7), std::to_string(k), Timestamp{uint64_t(k) << 16}));
  }
  ms.push_back(DeltaPushMsg{a, 20, 21, 22, {{"kv", batch}}});
  // Presence objects (gossip/presence.h): b's own presences, then their removal; and one that a
  // forges in b's name (its own dot under b's object), which a receiver must refuse.
  const size_t presenceFirst = ms.size();
  {
    ObjectStore store(b);
    PresenceTracker tracker(store, deltasync::Limits{});
    tracker.track(1, "room", "alice", R"({"s":"online"})");
    tracker.track(2, "room", "alice", R"({"s":"away"})");
    tracker.track(2, "lobby", "bob", "{}");
    const std::string name = presenceObjectName(b);
    const Map tracked = std::get<Map>(*store.find(name));
    ms.push_back(DeltaPushMsg{b, 0, 3, 4, {{name, tracked}}});
    tracker.update(1, "room", "alice", R"({"s":"typing"})");
    tracker.close(2);
    ms.push_back(DeltaPushMsg{b, 0, 6, 7, {{name, std::get<Map>(*store.find(name))}}});
    Map forged = tracked;
    forged.join(Map{}.set(a, "\x04room\x05mallo12345678", std::string(1, '\0'), Timestamp{}));
    ms.push_back(DeltaPushMsg{a, 0, 1, 2, {{name, forged}}});
  }
  for (size_t i = 0; i < ms.size(); ++i) {
    auto bytes = encodeMessage(ms[i]);
    writeBytes("envelope", int(i), bytes.data(), bytes.size());
    // The replica target's corpus began as a copy of these; the presence pushes are its own.
    if (i >= presenceFirst) writeBytes("replica", int(100 + i), bytes.data(), bytes.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make-seeds <corpus root>\n";
    return 2;
  }
  root = argv[1];
  ReplicaId a{1}, b{0xfeedface12345678};
  for (int i = 0; i < 4; ++i) {
    CausalContext c;
    for (int k = 1; k <= i * 30; ++k) c.add(Dot{k % 3 ? a : b, uint64_t(k * (i % 2 ? 1 : 3))});
    capnp::MallocMessageBuilder mb;
    encode(c, mb.initRoot<wire::CausalContext>());
    write("context", i, mb);

    GCounter g;
    PNCounter p;
    for (int k = 0; k < i * 3; ++k) {
      g.increment(ReplicaId{uint64_t(k)}, uint64_t(k) * 1000 + 1);
      p.decrement(ReplicaId{uint64_t(k)}, uint64_t(k) + 1);
    }
    capnp::MallocMessageBuilder mg, mp;
    encode(g, mg.initRoot<wire::GCounter>());
    encode(p, mp.initRoot<wire::PNCounter>());
    write("g-counter", i, mg);
    write("pn-counter", i, mp);
  }
  causal<ORSet<int64_t>>("or-set-int", [&](auto& s, int n) {
    for (int k = 0; k < n; ++k) s.add(k % 2 ? a : b, int64_t(k) * 37 - 100);
    for (int k = 0; k < n; k += 3) s.remove(int64_t(k) * 37 - 100);
  });
  causal<ORSet<std::string>>("or-set-string", [&](auto& s, int n) {
    for (int k = 0; k < n; ++k) s.add(a, "element-" + std::to_string(k));
    for (int k = 0; k < n; k += 4) s.remove("element-" + std::to_string(k));
  });
  causal<AWLWWMap<std::string, int64_t>>("aw-lww-map", [&](auto& m, int n) {
    for (int k = 0; k < n; ++k) m.set(k % 3 ? a : b, "k" + std::to_string(k % 50), k, Timestamp{uint64_t(k) << 16});
  });
  causal<MVRegister<std::string>>("mv-register", [&](auto& r, int n) {
    for (int k = 0; k < n; ++k) r.write(k % 2 ? a : b, std::string(size_t(k % 40), 'v'));
  });
  causal<EWFlag>("ew-flag", [&](auto& f, int n) {
    for (int k = 0; k < n; ++k) {
      if (k % 3) f.enable(k % 2 ? a : b); else f.disable();
    }
  });
  for (int i = 0; i < 4; ++i) {
    ORSet<int64_t> s;
    for (int k = 0; k < i * 200; ++k) s.add(k % 2 ? a : b, int64_t(k));
    capnp::MallocMessageBuilder mb;
    encodeCausal(s, mb.initRoot<wire::CausalState>());
    auto z = zlibCompress(frame(mb));
    writeBytes("zlib-chunk", i, z.begin(), z.size());
  }
  using Nested = ORMap<std::string, ORMap<int64_t, ORSet<std::string>>>;
  for (int i = 0; i < 4; ++i) {
    Nested m;
    for (int k = 0; k < i * 15; ++k) {
      m.update("room-" + std::to_string(k % 4), [&](auto& users) {
        return users.update(k % 7, [&](auto& tags) { return tags.add(k % 2 ? a : b, "t" + std::to_string(k)); });
      });
      if (k % 5 == 0) m.remove("room-" + std::to_string(k % 3));
    }
    capnp::MallocMessageBuilder mb;
    encode(m, mb.initRoot<wire::ORMapState>());
    write("or-map", i, mb);

    LWWRegister<std::string> r;
    if (i > 0) r.set(i % 2 ? a : b, std::string(size_t(i * 10), 'x'), Timestamp{uint64_t(i) << 20});
    capnp::MallocMessageBuilder mr;
    encode(r, mr.initRoot<wire::LWWRegister>());
    write("lww-register", i, mr);
  }
  envelopes(a, b);
  // Compact values (gossip/compact.h), implicit writer 1 (= a): every kind, as the writer's own
  // delta and relayed (b's writes, listed in the table).
  int n = 0;
  for (int size : {1, 3, 20}) {
    for (const auto& o : everyKind("", size, a, b)) {
      ColumnWriter w;
      encodeCompact(o.value, a, w);
      writeBytes("compact", n++, w.bytes().data(), w.size());
    }
  }
  return 0;
}
