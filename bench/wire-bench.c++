// Wire format: encoded size and codec throughput (gossip/wire.capnp + gossip/codec).
//
//   wire-bench --sizes         prints the size table (bytes per element, one-key delta)
//   wire-bench [gbench flags]  encode/decode throughput with memcpy of the same bytes as baseline
//
// Sizes are reported three ways: framed capnp (what gossip/message.h reads), capnp packed
// framing, and zlib (level 6) of the framed bytes.
#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>
#include <zlib.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench-inputs.h"
#include "crdt/hlc.h"
#include "gossip/codec.h"
#include "gossip/compact.h"
#include "gossip/envelope.h"
#include "gossip/message.h"

namespace deltasync::bench {
namespace {

using namespace deltasync::crdt;
using namespace deltasync::gossip;
namespace wire = deltasync::wire;

using Map = AWLWWMap<std::string, int64_t>;

ORSet<int64_t> makeSet(size_t n) {
  ORSet<int64_t> s;
  for (size_t i = 0; i < n; ++i) s.add(kReplicaA, int64_t(i));
  return s;
}

// Keys "k0".."k(n-1)", small values, HLC timestamps on synthetic time.
Map makeMap(size_t n) {
  Map m;
  HybridLogicalClock clock;
  for (size_t i = 0; i < n; ++i) {
    m.set(kReplicaA, "k" + std::to_string(i), int64_t(i % 100), clock.now(syntheticMillis(i)));
  }
  return m;
}

template <typename T>
kj::Array<kj::byte> framed(const T& x) {
  capnp::MallocMessageBuilder mb;
  encodeCausal(x, mb.initRoot<wire::CausalState>());
  return frame(mb);
}

template <typename T>
size_t packedSize(const T& x) {
  capnp::MallocMessageBuilder mb;
  encodeCausal(x, mb.initRoot<wire::CausalState>());
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, mb);
  return out.getArray().size();
}

size_t zlibSize(kj::ArrayPtr<const kj::byte> bytes) {
  uLongf n = compressBound(bytes.size());
  std::vector<Bytef> out(n);
  if (compress2(out.data(), &n, bytes.begin(), bytes.size(), 6) != Z_OK) return 0;
  return n;
}

template <typename T>
void sizeRow(const char* what, const T& x, size_t elements) {
  auto bytes = framed(x);
  size_t packed = packedSize(x);
  size_t z = zlibSize(bytes);
  std::printf("| %-44s | %9zu | %10zu | %7.2f | %10zu | %7.2f | %10zu | %7.2f |\n", what, elements,
              bytes.size(), double(bytes.size()) / double(elements), packed,
              double(packed) / double(elements), z, double(z) / double(elements));
}

void deleteHistory();
void nestedDeltas();
void chunkBytes();

int sizes() {
  std::printf("| value | elements | framed B | B/elem | packed B | B/elem | zlib B | B/elem |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  sizeRow("ORSet<int64_t>, 0..1e6-1, one writer", makeSet(1'000'000), 1'000'000);
  Map big = makeMap(1'000'000);
  sizeRow("AWLWWMap<string,int64_t>, k0..k999999", big, 1'000'000);
  // One-key update delta against a 1e5-key state.
  Map state = makeMap(100'000);
  HybridLogicalClock clock;
  Map delta = state.set(kReplicaA, "newkey", 42, clock.now(syntheticMillis(100'000)));
  sizeRow("one-key delta (\"newkey\", 42) on a 1e5-key map", delta, 1);

  // The same update as the gossip engine sends it: a DeltaPush envelope carrying object "m" of
  // kind aw-lww-map<string, string> (value "42"), the delta-interval of one log entry.
  gossip::Map sstate;
  HybridLogicalClock sclock;  // its own clock: the one above has run ahead of syntheticMillis(i)
  for (int i = 0; i < 100'000; ++i) {
    sstate.set(kReplicaA, "k" + std::to_string(i), std::to_string(i), sclock.now(syntheticMillis(i)));
  }
  gossip::Map sdelta = sstate.set(kReplicaA, "newkey", "42", sclock.now(syntheticMillis(100'000)));
  DeltaPushMsg push{kReplicaA, 100'000, 100'000, 100'001, {{"m", gossip::Value(sdelta)}}};
  // Pushes carry values in the compact encoding (gossip/compact.h); the writer is the push's
  // sender, so it is implied. Relayed by another replica, the writer is listed.
  gossip::ColumnWriter own, relayed;
  gossip::encodeCompact(gossip::Value(sdelta), kReplicaA, own);
  gossip::encodeCompact(gossip::Value(sdelta), kReplicaB, relayed);
  std::printf("\none-key delta (\"newkey\" -> \"42\", aw-lww-map<string, string>, 1e5-key state):\n\n");
  std::printf("| encoding | bytes |\n|---|---|\n");
  std::printf("| compact value, sent by its writer | %zu |\n", own.size());
  std::printf("| compact value + object name \"m\" (length + bytes) | %zu |\n", own.size() + 2);
  std::printf("| compact value, relayed by another replica | %zu |\n", relayed.size());
  std::printf("| column encoding (framed wire Crdt, encodeValue) | %zu |\n", encodeValue(gossip::Value(sdelta)).size());
  std::printf("| whole DeltaPush envelope (framed; sender, 3 sequence numbers, object \"m\") | %zu |\n",
              encodeMessage(push).size());
  nestedDeltas();
  chunkBytes();
  deleteHistory();
  return 0;
}

// --- One-write pushes of the kinds that got a compact form in protocol version 8 ---

// A push of v as object "m", as protocol version 7 sent the kinds without a compact form: the
// struct arm (Envelope.push), the value in its column encoding.
size_t structPushBytes(const gossip::Value& v) {
  capnp::MallocMessageBuilder mb;
  auto p = mb.initRoot<wire::Envelope>().initPush();
  p.setSender(kReplicaA.value);
  p.setBase(100'000);
  p.setFromSeq(100'000);
  p.setToSeq(100'001);
  auto o = p.initObjects(1);
  o[0].setName("m");
  auto c = o[0].initValue();
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, gossip::MapOfMaps>) encode(x, c.initOrMap());
        if constexpr (std::is_same_v<T, gossip::MapOfSets>) encode(x, c.initOrMapOfSets());
        if constexpr (std::is_same_v<T, gossip::MapOfCounters>) encode(x, c.initMapOfCounters());
        if constexpr (std::is_same_v<T, gossip::Tombstone>) c.setDeleted();
      },
      v);
  return frame(mb).size();
}

// --- A state chunk's bytes: column + zlib (protocol 7) against compact + zlib (protocol 8) ---

void chunkBytes() {
  constexpr size_t n = 100'000;
  std::mt19937_64 rng(kSeed);
  auto hex = [&](int digits) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < digits; ++i) s += d[rng() % 16];
    return s;
  };
  struct Shape {
    const char* what;
    std::function<std::string(size_t)> key;
  };
  const Shape shapes[] = {
      {"sequential keys k0..k99999, written in order", [](size_t i) { return keyName(i); }},
      {"random 16-hex-digit keys", [&](size_t) { return hex(16); }},
      {"presence-like room-<0..99>/user-<8 hex>/<4 hex>", [&](size_t i) {
         return "room-" + std::to_string(i % 100) + "/user-" + hex(8) + "/" + hex(4);
       }},
  };
  std::printf("\na 1e5-key aw-lww map<string, string> (values \"online\"/\"away\", HLC stamps 1 ms apart) "
              "whole in one state chunk, zlib level 6:\n\n");
  std::printf("| keys | column B | column zlib B (protocol 7) | compact B | compact zlib B (protocol 8) | zlib ratio |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const Shape& shape : shapes) {
    gossip::Map m;
    HybridLogicalClock clock;
    for (size_t i = 0; i < n; ++i) {
      m.set(kReplicaA, shape.key(i), i % 3 ? "online" : "away", clock.now(syntheticMillis(i)));
    }
    const Bytes col = encodeValue(gossip::Value(m));
    gossip::ColumnWriter cw;
    encodeCompact(gossip::Value(m), kReplicaA, cw);
    const size_t colZ = zlibSize(kj::ArrayPtr<const kj::byte>(col.data(), col.size()));
    const size_t cZ = zlibSize(kj::ArrayPtr<const kj::byte>(cw.bytes().data(), cw.size()));
    std::printf("| %s | %zu | %zu | %zu | %zu | %.2fx |\n", shape.what, col.size(), colZ, cw.size(), cZ,
                double(cZ) / double(colZ));
  }
}

void nestedDeltas() {
  // States of 1000 keys (rooms of 5 users; groups of 5 members; counters), then one write.
  HybridLogicalClock clock;
  gossip::MapOfMaps rooms;
  gossip::MapOfSets groups;
  gossip::MapOfCounters scores;
  for (int i = 0; i < 1000; ++i) {
    for (int u = 0; u < 5; ++u) {
      rooms.update("room-" + std::to_string(i), [&](gossip::Map& m) {
        return m.set(kReplicaA, "user-" + std::to_string(u), "online", clock.now(syntheticMillis(i)));
      });
      groups.update("group-" + std::to_string(i),
                    [&](ORSet<std::string>& s) { return s.add(kReplicaA, "member-" + std::to_string(u)); });
    }
    scores.increment(kReplicaA, "player-" + std::to_string(i), uint64_t(i) + 1);
  }
  const gossip::Value deltas[] = {
      rooms.update("room-7", [&](gossip::Map& m) { return m.set(kReplicaA, "user-9", "away", clock.now(syntheticMillis(2000))); }),
      groups.update("group-7", [&](ORSet<std::string>& s) { return s.add(kReplicaA, "member-9"); }),
      scores.increment(kReplicaA, "player-7", 3),
      gossip::Tombstone{},
  };
  const char* what[] = {"map of maps: one inner key set", "map of sets: one member added",
                        "map of counters: one increment", "tombstone (the object deleted)"};
  std::printf("\none write to a 1000-key object, pushed alone (object \"m\", sent by its writer):\n\n");
  std::printf("| delta | struct push (protocol 7) B | compact push (protocol 8) B | compact value B |\n|---|---|---|---|\n");
  for (size_t i = 0; i < 4; ++i) {
    DeltaPushMsg push{kReplicaA, 100'000, 100'000, 100'001, {{"m", deltas[i]}}};
    std::printf("| %s | %zu | %zu | %zu |\n", what[i], structPushBytes(deltas[i]), encodeMessage(push).size(),
                gossip::wireSize(deltas[i], kReplicaA));
  }
}

// --- Sizes after deletes: the encoding must not depend on the history of removals ---

// A 1e6-key map of string values (as a node holds), then 90% of its keys removed with a stride
// (every key but each tenth) or as a prefix (the first 90%), against a map built fresh from the
// survivors (same keys, values, timestamps and order, by the same writer). Both encodings: the column one
// (state chunks, encodeValue) and the compact one (pushes, storage), each framed as written and
// deflated (zlib level 6, as state chunks travel).
void deleteHistory() {
  constexpr size_t n = 1'000'000;
  auto value = [](size_t i) { return "v" + std::to_string(i % 1000); };
  struct Row {
    size_t column, columnZ, compact, compactZ;
  };
  auto measure = [](const gossip::Map& m) {
    Bytes col = encodeValue(gossip::Value(m));
    gossip::ColumnWriter cw;
    encodeCompact(gossip::Value(m), kReplicaA, cw);
    auto z = [](const unsigned char* p, size_t size) {
      return zlibSize(kj::ArrayPtr<const kj::byte>(p, size));
    };
    return Row{col.size(), z(col.data(), col.size()), cw.size(), z(cw.bytes().data(), cw.size())};
  };
  std::printf("\nencoded bytes after deleting 90%% of a 1e6-key AWLWWMap<string, string>, against a map built "
              "fresh from the survivors:\n\n");
  std::printf("| deletes | survivors | column B | vs fresh | column zlib B | vs fresh | compact B | vs fresh | compact zlib B | vs fresh |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const char* shape : {"strided (keep every 10th)", "prefix (first 90%)"}) {
    bool strided = shape[0] == 's';
    auto keep = [&](size_t i) { return strided ? i % 10 == 0 : i >= n / 10 * 9; };
    gossip::Map deleted, fresh;
    HybridLogicalClock clock;
    std::vector<Timestamp> stamps;
    stamps.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      stamps.push_back(clock.now(syntheticMillis(i)));
      deleted.set(kReplicaA, keyName(i), value(i), stamps.back());
    }
    for (size_t i = 0; i < n; ++i) {
      if (!keep(i)) deleted.remove(keyName(i));
    }
    for (size_t i = 0; i < n; ++i) {
      if (keep(i)) fresh.set(kReplicaA, keyName(i), value(i), stamps[i]);
    }
    Row d = measure(deleted), f = measure(fresh);
    auto ratio = [](size_t a, size_t b) { return double(a) / double(b); };
    std::printf("| %s | %zu | %zu | %.3fx | %zu | %.3fx | %zu | %.3fx | %zu | %.3fx |\n", shape, fresh.size(),
                d.column, ratio(d.column, f.column), d.columnZ, ratio(d.columnZ, f.columnZ), d.compact,
                ratio(d.compact, f.compact), d.compactZ, ratio(d.compactZ, f.compactZ));
  }
}

// --- Throughput ---

const Map& benchMap() {
  static const Map m = makeMap(100'000);
  return m;
}

void BM_Encode(benchmark::State& st) {
  const Map& m = benchMap();
  size_t bytes = 0;
  for (auto _ : st) {
    auto b = framed(m);
    bytes = b.size();
    benchmark::DoNotOptimize(b.begin());
  }
  st.SetBytesProcessed(int64_t(st.iterations() * bytes));
  st.SetItemsProcessed(int64_t(st.iterations() * m.size()));
}
BENCHMARK(BM_Encode)->Name("wire/encode/AWLWWMap-1e5")->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& st) {
  auto bytes = framed(benchMap());
  Limits limits;
  for (auto _ : st) {
    IncomingMessage in(bytes, limits);
    Map m = in.decodeRoot<wire::CausalState>([&](wire::CausalState::Reader r) {
      return decodeCausal<Map>(r, limits);
    });
    benchmark::DoNotOptimize(m.size());
  }
  st.SetBytesProcessed(int64_t(st.iterations() * bytes.size()));
  st.SetItemsProcessed(int64_t(st.iterations() * benchMap().size()));
}
BENCHMARK(BM_Decode)->Name("wire/decode/AWLWWMap-1e5")->Unit(benchmark::kMillisecond);

void BM_Memcpy(benchmark::State& st) {
  auto bytes = framed(benchMap());
  std::vector<kj::byte> dst(bytes.size());
  for (auto _ : st) {
    std::memcpy(dst.data(), bytes.begin(), bytes.size());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations() * bytes.size()));
}
BENCHMARK(BM_Memcpy)->Name("wire/memcpy-baseline")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace deltasync::bench

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--sizes") == 0) return deltasync::bench::sizes();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
