// Writes the seed corpora of tests/fuzz (committed under tests/fuzz/corpus/<target>/): a few
// valid framed messages per decoder entry point, from empty to a few hundred entries.
//   make-seeds <corpus root>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "gossip/codec.h"
#include "gossip/compression.h"
#include "gossip/message.h"

using namespace deltasync::crdt;
using namespace deltasync::gossip;
namespace wire = deltasync::wire;

namespace {

std::filesystem::path root;

void write(const std::string& target, int i, capnp::MallocMessageBuilder& mb) {
  auto dir = root / target;
  std::filesystem::create_directories(dir);
  auto bytes = frame(mb);
  std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.begin()), static_cast<std::streamsize>(bytes.size()));
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
    auto dir = root / "zlib-chunk";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary)
        .write(reinterpret_cast<const char*>(z.begin()), static_cast<std::streamsize>(z.size()));
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
  return 0;
}
