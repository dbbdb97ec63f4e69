// Durable storage (lib/storage.h) and durable nodes (NodeConfig::dataDir):
//   - a model test: random writes of every kind to an object store, committed at random points
//     (compaction included), reopened: the loaded state equals the store's (STORAGE_SEED replays);
//   - a node restarts as the same replica with its state before any peer answers, keeps its dots
//     (presence refs are never reused), and its old presences leave;
//   - offline first: a node closed and reopened without peers converges with the cluster after;
//   - bad directories and files: in use, newer format, corrupt, id mismatch, async crash -> new id;
//   - a read-only directory (a read-only bind mount; root only, skipped otherwise);
//   - a full disk (a 4 MiB tmpfs this test mounts; root only, skipped otherwise): writes throw
//     StorageFailed naming it, the node recovers once space is freed, nothing acknowledged is lost;
//   - failed fsyncs and writes (an SQLite VFS shim in front of the default one): the same, and
//     what the node could not commit does not reach its peers until it is committed;
//   - many writer threads, readers and a subscription at once (writes run on the callers' threads).
//
// Waits are liveness bounds (poll until true), never timing assertions.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/errors.h>
#include <deltasync/node.h>

#include "gossip/envelope.h"
#include "gossip/presence.h"
#include "lib/storage.h"
#include "tests/lib/tcp-nodes.h"

namespace deltasync {
namespace {

using testing::eventually;

// A fresh directory under the system's temporary directory, removed at the end.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "deltasync-storage-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

NodeConfig durable(const std::string& dir, std::vector<std::string> seeds = {}) {
  NodeConfig c = testing::tcpConfig(std::move(seeds));
  c.dataDir = dir;
  return c;
}

void sql(const std::string& db, const std::string& statement) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(h, statement.c_str(), nullptr, nullptr, &err);
  INFO(statement << ": " << (err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(h);
  REQUIRE(rc == SQLITE_OK);
}

std::string thrown(const std::function<void()>& f) {
  try {
    f();
  } catch (const StorageFailed& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

// A put that may fail while commits fail: whether it was acknowledged.
bool putSucceeds(Map<std::string, std::string>& m, const std::string& key, const std::string& value) {
  try {
    m.put(key, value);
    return true;
  } catch (const StorageFailed&) {
    return false;
  }
}

void randomWriteOf(gossip::ObjectStore& store, std::mt19937_64& rng, crdt::ReplicaId self, const std::string& key,
                   const std::string& value, crdt::Timestamp ts);

// One random local write of a random kind to one of a few objects.
// deletes: now and then an object is deleted instead (a tombstone is stored like any state).
void randomWrite(gossip::ObjectStore& store, std::mt19937_64& rng, size_t maxValue, bool deletes) {
  const crdt::ReplicaId self = store.self();
  const std::string key = "k" + std::to_string(rng() % 40);
  const std::string value(rng() % maxValue, static_cast<char>('a' + rng() % 26));
  crdt::Timestamp ts{(uint64_t{1700000000000} + rng() % 100000) << crdt::Timestamp::kLogicalBits};
  if (deletes && rng() % 500 == 0) {
    static const char* const names[] = {"counter", "set", "map", "mv", "flag", "lww"};
    store.erase(names[rng() % 6]);
    return;
  }
  try {
    randomWriteOf(store, rng, self, key, value, ts);
  } catch (const ObjectDeleted&) {
    // written after its delete: refused, nothing stored
  }
}

void randomWriteOf(gossip::ObjectStore& store, std::mt19937_64& rng, crdt::ReplicaId self, const std::string& key,
                   const std::string& value, crdt::Timestamp ts) {
  switch (rng() % 7) {
    case 0:
      store.update<crdt::PNCounter>("counter", [&](auto& c) { return rng() % 3 ? c.increment(self, 1 + rng() % 5) : c.decrement(self, 1); });
      break;
    case 1:
      store.update<crdt::ORSet<std::string>>("set", [&](auto& s) { return rng() % 3 ? s.add(self, key) : s.remove(key); });
      break;
    case 2:
    case 3:
      store.update<gossip::Map>("map", [&](auto& m) { return rng() % 4 ? m.set(self, key, value, ts) : m.remove(key); });
      break;
    case 4:
      store.update<crdt::MVRegister<std::string>>("mv", [&](auto& r) { return r.write(self, value); });
      break;
    case 5:
      store.update<crdt::EWFlag>("flag", [&](auto& f) { return rng() % 2 ? f.enable(self) : f.disable(); });
      break;
    default:
      store.update<crdt::LWWRegister<std::string>>("lww", [&](auto& r) { return r.set(self, value, ts); });
      break;
  }
}

TEST_CASE("what was committed loads back equal to the store, compaction included (model)") {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("STORAGE_SEED")) seed = std::stoull(s);
  INFO("STORAGE_SEED=" << seed);
  std::printf("storage model: STORAGE_SEED=%llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 20; ++round) {
    TempDir dir;
    const crdt::ReplicaId self{1 + rng() % 1000};
    gossip::ObjectStore store(self);
    auto storage = Storage::open(dir.str(), false);
    CHECK(storage->load().id.value == 0);
    storage->begin(self);
    store.listen([&](const gossip::Change& c) { storage->record(c); });
    const int writes = 200 + static_cast<int>(rng() % 3000);
    const bool big = round % 2 == 1;  // values large enough that objects compact
    const bool deletes = round % 4 >= 2;  // (deleted objects take no more writes: no compaction check then)
    uint64_t seq = 0;
    for (int i = 0; i < writes; ++i) {
      randomWrite(store, rng, big ? 1200 : 24, deletes);
      if (rng() % 50 == 0) storage->commit(store, ++seq, 7);
    }
    storage->commit(store, ++seq, 7);
    const bool clean = rng() % 2 == 0;
    if (clean) storage->close(store, seq, 7);
    const auto stats = storage->stats();
    storage.reset();

    auto reopened = Storage::open(dir.str(), false);
    StoredState loaded = reopened->load();
    CHECK(loaded.id == self);
    CHECK(loaded.clean == clean);
    CHECK(loaded.seq == seq);
    CHECK(loaded.incarnation == 7);
    REQUIRE(loaded.objects.size() == store.size());
    for (const auto& [name, value] : loaded.objects) {
      INFO("object " << name << " round " << round);
      const gossip::Value* want = store.find(name);
      REQUIRE(want != nullptr);
      CHECK(*want == value);
    }
    if (big && writes > 1000 && !deletes) CHECK(stats.compactions > 0);
  }
}

TEST_CASE("compaction keeps the file near live state") {
  TempDir dir;
  const crdt::ReplicaId self{5};
  gossip::ObjectStore store(self);
  auto storage = Storage::open(dir.str(), false);
  storage->load();
  storage->begin(self);
  store.listen([&](const gossip::Change& c) { storage->record(c); });
  // The same 100 keys overwritten 200 times: live state stays small, history grows.
  for (int round = 0; round < 200; ++round) {
    for (int k = 0; k < 100; ++k) {
      store.update<gossip::Map>("m", [&](gossip::Map& m) {
        return m.set(self, "key" + std::to_string(k), std::string(32, 'x'),
                     crdt::Timestamp{uint64_t(1 + round * 100 + k) << crdt::Timestamp::kLogicalBits});
      });
    }
    storage->commit(store, round + 1, 0);
  }
  storage->close(store, 200, 0);
  CHECK(storage->stats().compactions > 0);
  storage.reset();
  const auto bytes = std::filesystem::file_size(dir.path / "deltasync.db");
  INFO("database bytes " << bytes);
  CHECK(bytes < 256 * 1024);  // 20,000 writes of ~50 bytes = ~1 MB of history
}

TEST_CASE("a node restarts as the same replica, with its state, before any peer answers") {
  TempDir dir;
  uint64_t id = 0;
  PresenceRef before;
  {
    Node n(durable(dir.str(), {"127.0.0.1:1"}));  // a seed that never answers
    id = n.id();
    n.counter("hits").increment(5);
    n.set<std::string>("tags").add("red");
    n.set<std::string>("gone").add("x");
    n.deleteObject("gone");
    auto users = n.map<std::string, std::string>("users");
    users.put("alice", "online");
    users.put("bob", "away");
    users.remove("bob");
    auto conn = n.presence().connect();
    before = conn.track("room", "alice", "{}");
    CHECK(n.presence().count("room") == 1);
  }
  Node n(durable(dir.str()));
  CHECK(n.id() == id);
  CHECK(n.counter("hits").value() == 5);
  CHECK(n.set<std::string>("tags").contains("red"));
  CHECK_THROWS_AS(n.set<std::string>("gone"), ObjectDeleted);  // a delete is durable too
  CHECK(n.map<std::string, std::string>("users").get("alice") == std::optional<std::string>("online"));
  CHECK_FALSE(n.map<std::string, std::string>("users").get("bob").has_value());
  // The previous run's connections are gone, and no ref is minted twice.
  CHECK(n.presence().count("room") == 0);
  auto conn = n.presence().connect();
  const PresenceRef after = conn.track("room", "alice", "{}");
  CHECK(after.replica == id);
  CHECK(after.counter > before.counter);
}

TEST_CASE("offline first: writes across restarts without peers, then convergence both ways") {
  TempDir dirA;
  Node a(testing::tcpConfig());
  auto shared = a.map<std::string, std::string>("notes");
  shared.put("from-a", "1");
  {
    Node b(durable(dirA.str()));  // no peer at all
    b.map<std::string, std::string>("notes").put("offline-1", "x");
  }
  {
    Node b(durable(dirA.str()));
    b.map<std::string, std::string>("notes").put("offline-2", "y");
    CHECK(b.map<std::string, std::string>("notes").entries().size() == 2);
  }
  Node b(durable(dirA.str(), {a.address()}));
  auto mine = b.map<std::string, std::string>("notes");
  CHECK(eventually([&] { return mine.entries().size() == 3 && shared.entries().size() == 3; }));
  // And the node's later writes still reach the cluster (its dots and sequence numbers go on).
  mine.put("after", "z");
  CHECK(eventually([&] { return shared.get("after") == std::optional<std::string>("z"); }));
}

TEST_CASE("a restarted node catches up what the cluster wrote meanwhile, and rejoins without seeds") {
  TempDir dir;
  Node a(testing::tcpConfig());
  auto notes = a.map<std::string, std::string>("notes");
  uint64_t id = 0;
  {
    Node b(durable(dir.str(), {a.address()}));
    id = b.id();
    b.map<std::string, std::string>("notes").put("b", "1");
    CHECK(eventually([&] { return notes.get("b").has_value(); }));
    // Members are saved at close.
    CHECK(eventually([&] { return testing::alive(b) == 2; }));
  }
  notes.put("while-b-was-away", "2");
  Node b(durable(dir.str()));  // no seed: it dials the members it saved
  CHECK(b.id() == id);
  auto mine = b.map<std::string, std::string>("notes");
  CHECK(mine.get("b").has_value());  // at once, from disk
  CHECK(eventually([&] { return mine.get("while-b-was-away").has_value(); }));
  mine.put("b-back", "3");
  CHECK(eventually([&] { return notes.get("b-back").has_value(); }));
}

TEST_CASE("a directory in use by another node is refused, with the holder's pid") {
  TempDir dir;
  Node n(durable(dir.str()));
  const std::string what = thrown([&] { Node second(durable(dir.str())); });
  CHECK(what.find("in use by another process") != std::string::npos);
  CHECK(what.find("pid " + std::to_string(getpid())) != std::string::npos);
}

TEST_CASE("bad files: a newer format, a corrupt database, another replica's directory") {
  TempDir dir;
  uint64_t id = 0;
  {
    Node n(durable(dir.str()));
    id = n.id();
    n.counter("c").increment();
  }
  const std::string db = (dir.path / "deltasync.db").string();
  SUBCASE("a configured id other than the directory's") {
    NodeConfig c = durable(dir.str());
    c.id = id + 1;
    const std::string what = thrown([&] { Node n(c); });
    CHECK(what.find("holds replica " + std::to_string(id)) != std::string::npos);
  }
  SUBCASE("a newer format is refused and left untouched") {
    sql(db, "UPDATE meta SET value = '4' WHERE key = 'format'");
    const std::string what = thrown([&] { Node n(durable(dir.str())); });
    CHECK(what.find("format 4") != std::string::npos);
    CHECK(what.find("newer deltasync") != std::string::npos);
    CHECK(thrown([&] { Node n(durable(dir.str())); }) == what);
  }
  SUBCASE("a format-2 file's rows in the column encoding are still read") {
    // Format 2 stored the kinds without a compact form (here a map of counters) as "v" + the
    // framed column encoding; this version writes every kind compact and reads those rows.
    gossip::MapOfCounters scores;
    scores.increment(crdt::ReplicaId{id}, "k", 5);
    const gossip::Bytes column = gossip::encodeValue(gossip::Value(scores));
    std::string hex = "76";  // 'v'
    for (unsigned char b : column) {
      char two[3];
      std::snprintf(two, sizeof two, "%02x", b);
      hex += two;
    }
    sql(db, "UPDATE meta SET value = '2' WHERE key = 'format'");
    sql(db, "INSERT INTO deltas(name, delta) VALUES ('scores', x'" + hex + "')");
    Node n(durable(dir.str()));
    CHECK(n.mapOfCounters<std::string>("scores").value("k") == 5);
  }
  SUBCASE("a corrupt value") {
    sql(db, "INSERT INTO deltas(name, delta) VALUES ('c', x'63ff')");
    const std::string what = thrown([&] { Node n(durable(dir.str())); });
    CHECK(what.find("object 'c'") != std::string::npos);
    CHECK(what.find("corrupt") != std::string::npos);
  }
  SUBCASE("a file that is not a database") {
    std::filesystem::remove(dir.path / "deltasync.db-wal");
    std::filesystem::remove(dir.path / "deltasync.db-shm");
    std::ofstream(db, std::ios::trunc) << std::string(8192, 'z');
    const std::string what = thrown([&] { Node n(durable(dir.str())); });
    CHECK(what.find("corrupt or truncated") != std::string::npos);
  }
  SUBCASE("a path that is a file") {
    const std::string what = thrown([&] { Node n(durable(db)); });
    CHECK(what.find("not a directory") != std::string::npos);
  }
}

TEST_CASE("after a crash in async durability the node goes on under a new id; in sync, under its own") {
  TempDir dir;
  const crdt::ReplicaId old{4242};
  {
    // A run that never closed: begun, committed, dropped (as kill -9 leaves it).
    gossip::ObjectStore store(old);
    auto storage = Storage::open(dir.str(), true);
    storage->load();
    storage->begin(old);
    store.listen([&](const gossip::Change& c) { storage->record(c); });
    store.update<crdt::PNCounter>("c", [&](crdt::PNCounter& c) { return c.increment(old, 3); });
    // Its own presence object, as a tracked presence leaves it.
    store.update<gossip::Map>(gossip::presenceObjectName(old), [&](gossip::Map& m) {
      return m.set(old, "entry", "meta", crdt::Timestamp::make(1'700'000'000'000, 0));
    });
    storage->commit(store, 1, 0);
  }
  const std::string db = dir.str() + "/deltasync.db";
  auto rowsNamed = [&](const std::string& name) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, "SELECT (SELECT count(*) FROM objects WHERE name = ?1) + "
                                  "(SELECT count(*) FROM deltas WHERE name = ?1)", -1, &q, nullptr) == SQLITE_OK);
    sqlite3_bind_text(q, 1, name.c_str(), -1, SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    const int n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    return n;
  };
  REQUIRE(rowsNamed(gossip::presenceObjectName(old)) > 0);
  SUBCASE("async: a new id, with what was committed; the old id's presence object dropped") {
    NodeConfig c = durable(dir.str());
    c.durability = Durability::async;
    Node n(c);
    CHECK(n.id() != old.value);
    CHECK(n.counter("c").value() == 3);
    CHECK(rowsNamed(gossip::presenceObjectName(old)) == 0);
  }
  SUBCASE("async with a fixed id: refused") {
    NodeConfig c = durable(dir.str());
    c.durability = Durability::async;
    c.id = old.value;
    CHECK(thrown([&] { Node n(c); }).find("did not close cleanly") != std::string::npos);
  }
  SUBCASE("sync: the same id") {
    Node n(durable(dir.str()));
    CHECK(n.id() == old.value);
    CHECK(rowsNamed(gossip::presenceObjectName(old)) > 0);  // its own: kept for its context
    CHECK(n.counter("c").value() == 3);
    n.counter("c").increment();
    CHECK(n.counter("c").value() == 4);
  }
}

TEST_CASE("async durability: writes are committed within flushMs") {
  TempDir dir;
  NodeConfig c = durable(dir.str());
  c.durability = Durability::async;
  c.flushMs = 20;
  Node n(c);
  n.counter("c").increment(9);
  const std::string db = (dir.path / "deltasync.db").string();
  // Read the database beside the node (WAL readers do not block the writer).
  CHECK(eventually([&] {
    sqlite3* h = nullptr;
    if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return false;
    sqlite3_stmt* s = nullptr;
    int rows = 0;
    if (sqlite3_prepare_v2(h, "SELECT count(*) FROM deltas WHERE name = 'c'", -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      rows = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return rows == 1;
  }));
}

// A metric's value in the node's Prometheus text (0 if absent).
uint64_t metric(const Node& n, const std::string& name) {
  const std::string text = n.metrics();
  const size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? 0 : std::stoull(text.substr(at + name.size() + 2));
}

// A VFS in front of SQLite's default one that fails fsyncs or writes of the database and its WAL
// on demand (the other files and calls pass through). Made the default VFS while it is alive.
class FaultyVfs {
 public:
  enum class Fault { none, fsync, write };

  FaultyVfs() {
    real_ = sqlite3_vfs_find(nullptr);
    REQUIRE(real_ != nullptr);
    vfs_ = *real_;
    vfs_.zName = "deltasync-faulty";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.pAppData = this;
    vfs_.xOpen = &FaultyVfs::open;
    REQUIRE(sqlite3_vfs_register(&vfs_, 1) == SQLITE_OK);
  }
  ~FaultyVfs() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(real_, 1);
  }
  void set(Fault f) { fault_.store(f); }
  uint64_t injected() const { return injected_.load(); }

 private:
  struct File {
    sqlite3_file base;
    FaultyVfs* vfs;
    bool data;             // the database or its WAL
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };
  static File* of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
  bool fails(File* f, Fault kind) {
    if (!f->data || fault_.load() != kind) return false;
    ++injected_;
    return true;
  }

  static int open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* outFlags) {
    auto* self = static_cast<FaultyVfs*>(vfs->pAppData);
    File* f = of(file);
    f->vfs = self;
    f->data = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0;
    f->base.pMethods = nullptr;
    const int rc = self->real_->xOpen(self->real_, name, f->real(), flags, outFlags);
    if (f->real()->pMethods != nullptr) {
      self->methods_ = *f->real()->pMethods;  // the same for every file of the default VFS
      self->methods_.xClose = [](sqlite3_file* x) {
        const int r = of(x)->real()->pMethods->xClose(of(x)->real());
        return r;
      };
      self->methods_.xRead = [](sqlite3_file* x, void* b, int n, sqlite3_int64 o) {
        return of(x)->real()->pMethods->xRead(of(x)->real(), b, n, o);
      };
      self->methods_.xWrite = [](sqlite3_file* x, const void* b, int n, sqlite3_int64 o) {
        if (of(x)->vfs->fails(of(x), Fault::write)) return SQLITE_IOERR_WRITE;
        return of(x)->real()->pMethods->xWrite(of(x)->real(), b, n, o);
      };
      self->methods_.xTruncate = [](sqlite3_file* x, sqlite3_int64 n) {
        return of(x)->real()->pMethods->xTruncate(of(x)->real(), n);
      };
      self->methods_.xSync = [](sqlite3_file* x, int flags) {
        if (of(x)->vfs->fails(of(x), Fault::fsync)) return SQLITE_IOERR_FSYNC;
        return of(x)->real()->pMethods->xSync(of(x)->real(), flags);
      };
      self->methods_.xFileSize = [](sqlite3_file* x, sqlite3_int64* n) {
        return of(x)->real()->pMethods->xFileSize(of(x)->real(), n);
      };
      self->methods_.xLock = [](sqlite3_file* x, int l) { return of(x)->real()->pMethods->xLock(of(x)->real(), l); };
      self->methods_.xUnlock = [](sqlite3_file* x, int l) { return of(x)->real()->pMethods->xUnlock(of(x)->real(), l); };
      self->methods_.xCheckReservedLock = [](sqlite3_file* x, int* r) {
        return of(x)->real()->pMethods->xCheckReservedLock(of(x)->real(), r);
      };
      self->methods_.xFileControl = [](sqlite3_file* x, int op, void* a) {
        return of(x)->real()->pMethods->xFileControl(of(x)->real(), op, a);
      };
      self->methods_.xSectorSize = [](sqlite3_file* x) { return of(x)->real()->pMethods->xSectorSize(of(x)->real()); };
      self->methods_.xDeviceCharacteristics = [](sqlite3_file* x) {
        return of(x)->real()->pMethods->xDeviceCharacteristics(of(x)->real());
      };
      self->methods_.xShmMap = [](sqlite3_file* x, int i, int n, int w, void volatile** p) {
        return of(x)->real()->pMethods->xShmMap(of(x)->real(), i, n, w, p);
      };
      self->methods_.xShmLock = [](sqlite3_file* x, int o, int n, int fl) {
        return of(x)->real()->pMethods->xShmLock(of(x)->real(), o, n, fl);
      };
      self->methods_.xShmBarrier = [](sqlite3_file* x) { of(x)->real()->pMethods->xShmBarrier(of(x)->real()); };
      self->methods_.xShmUnmap = [](sqlite3_file* x, int d) {
        return of(x)->real()->pMethods->xShmUnmap(of(x)->real(), d);
      };
      self->methods_.xFetch = [](sqlite3_file* x, sqlite3_int64 o, int n, void** p) {
        return of(x)->real()->pMethods->xFetch(of(x)->real(), o, n, p);
      };
      self->methods_.xUnfetch = [](sqlite3_file* x, sqlite3_int64 o, void* p) {
        return of(x)->real()->pMethods->xUnfetch(of(x)->real(), o, p);
      };
      f->base.pMethods = &self->methods_;
    }
    return rc;
  }

  sqlite3_vfs* real_ = nullptr;
  sqlite3_vfs vfs_{};
  sqlite3_io_methods methods_{};
  std::atomic<Fault> fault_{Fault::none};
  std::atomic<uint64_t> injected_{0};
};

TEST_CASE("failed fsyncs and writes: StorageFailed, nothing sent meanwhile, recovered, nothing acknowledged lost") {
  FaultyVfs vfs;
  for (auto fault : {FaultyVfs::Fault::fsync, FaultyVfs::Fault::write}) {
    const bool fsync = fault == FaultyVfs::Fault::fsync;
    CAPTURE(fsync);
    TempDir dir;
    const std::string data = dir.str() + "/data";
    std::vector<std::string> acked;
    {
      Node a(durable(data));
      Node b(testing::tcpConfig({a.address()}));
      auto ma = a.map<std::string, std::string>("m");
      auto mb = b.map<std::string, std::string>("m");
      ma.put("before", "1");
      acked.push_back("before");
      REQUIRE(eventually([&] { return mb.get("before").has_value(); }));

      vfs.set(fault);
      const std::string what = thrown([&] { ma.put("during", "2"); });
      INFO(what);
      CHECK(what.find(data) != std::string::npos);
      CHECK(what.find(fsync ? "fsync failed" : "a write to the file failed") != std::string::npos);
      CHECK(what.find("not durable") != std::string::npos);
      CHECK(vfs.injected() > 0);
      CHECK(ma.get("during") == "2");  // applied in memory, kept for the next commit
      // The non-blocking form returns at once; its future throws the same.
      auto future = ma.put("during-future", "5", WriteTo::local());
      CHECK_THROWS_AS(future.get(), StorageFailed);
      // Nothing is sent while commits fail (the retries, one a second, fail too): b hears of
      // "during" only once it is committed.
      const uint64_t sent = metric(a, "deltasync_messages_sent_total");
      REQUIRE(eventually([&] { return metric(a, "deltasync_storage_failures_total") >= 3; }));
      CHECK(metric(a, "deltasync_messages_sent_total") == sent);
      CHECK_FALSE(mb.get("during").has_value());

      vfs.set(FaultyVfs::Fault::none);
      CHECK(eventually([&] { return putSucceeds(ma, "after", "4"); }));
      acked.push_back("after");
      CHECK(ma.put("after-future", "6", WriteTo::local()).get().reached);
      acked.push_back("after-future");
      CHECK(eventually([&] { return mb.get("during").has_value() && mb.get("after").has_value(); }));
    }
    Node a(durable(data));
    auto m = a.map<std::string, std::string>("m");
    for (const auto& key : acked) {
      INFO("acknowledged key " << key);
      CHECK(m.get(key).has_value());
    }
    CHECK(m.get("during") == "2");  // committed with the first commit that succeeded
  }
}

TEST_CASE("writers, readers and a subscription at once: every write applied once, seen whole") {
  TempDir dir;
  constexpr int kWriters = 8, kEach = 300;
  std::vector<std::string> log;
  {
    Node n(durable(dir.str()));
    auto m = n.map<std::string, std::string>("m");
    auto hits = n.counter("hits");
    std::atomic<bool> done{false};
    std::atomic<size_t> seenPuts{0};
    auto sub = m.subscribe([&](const MapChange& c) { seenPuts += c.put.size(); });
    std::atomic<size_t> shrank{0}, reads{0};
    std::thread reader([&] {
      size_t last = 0;
      while (!done) {
        const size_t now = m.size();
        shrank += now < last;  // keys are only added: a reader never sees the map shrink
        last = now;
        (void)hits.value();
        ++reads;
      }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < kWriters; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          m.put(std::to_string(t) + "/" + std::to_string(i), "v");
          hits.increment();
        }
      });
    }
    for (auto& w : writers) w.join();
    done = true;
    reader.join();
    CHECK(shrank == 0);
    CHECK(reads > 0);
    CHECK(m.size() == size_t{kWriters * kEach});
    CHECK(hits.value() == kWriters * kEach);
    // Coalesced, but every new key is reported once.
    CHECK(eventually([&] { return seenPuts.load() == size_t{kWriters * kEach}; }));
  }
  Node n(durable(dir.str()));
  CHECK(n.map<std::string, std::string>("m").size() == size_t{kWriters * kEach});
  CHECK(n.counter("hits").value() == kWriters * kEach);
}

TEST_CASE("many writer threads in sync durability: every acknowledged write is there after a restart") {
  TempDir dir;
  constexpr int kThreads = 16, kEach = 200;
  {
    Node n(durable(dir.str()));
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&n, t] {
        auto m = n.map<std::string, std::string>("m");
        for (int i = 0; i < kEach; ++i) m.put(std::to_string(t) + "/" + std::to_string(i), "v");
      });
    }
    for (auto& w : writers) w.join();
  }
  Node n(durable(dir.str()));
  CHECK(n.map<std::string, std::string>("m").entries().size() == size_t{kThreads * kEach});
}

TEST_CASE("batches in sync durability: every acknowledged batch is there whole after a restart") {
  TempDir dir;
  constexpr int kThreads = 4, kEach = 50;
  {
    Node n(durable(dir.str()));
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&n, t] {
        auto first = n.map<std::string, int64_t>("first");
        auto second = n.map<std::string, int64_t>("second");
        auto total = n.counter("total");
        for (int i = 0; i < kEach; ++i) {
          const std::string k = std::to_string(t) + "/" + std::to_string(i);
          n.batch([&] {
            first.put(k, i);
            total.increment();
            second.put(k, i);
          });
        }
      });
    }
    for (auto& w : writers) w.join();
    // A batch whose function throws leaves nothing, on disk either.
    CHECK_THROWS_AS(n.batch([&] {
                      n.map<std::string, int64_t>("first").put("never", 1);
                      throw std::runtime_error("abandoned");
                    }),
                    std::runtime_error);
  }
  Node n(durable(dir.str()));
  const auto first = n.map<std::string, int64_t>("first").entries();
  CHECK(first.size() == size_t{kThreads * kEach});
  CHECK(first == n.map<std::string, int64_t>("second").entries());
  CHECK(n.counter("total").value() == kThreads * kEach);
  CHECK_FALSE(n.map<std::string, int64_t>("first").get("never").has_value());
}

TEST_CASE("a read-only directory is refused with a clear error, not started empty") {
  TempDir dir;
  const std::string data = dir.str() + "/data";
  {
    Node n(durable(data));
    n.counter("c").increment();
  }
  // A read-only bind mount of the directory over itself (root ignores file permissions).
  if (geteuid() != 0 || mount(dir.str().c_str(), dir.str().c_str(), nullptr, MS_BIND, nullptr) != 0) {
    MESSAGE("skipped: a read-only bind mount needs root");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{dir.str()};
  REQUIRE(mount(nullptr, dir.str().c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0);
  const std::string what = thrown([&] { Node n(durable(data)); });
  INFO(what);
  CHECK(what.find(data) != std::string::npos);
  CHECK(what.find("Read-only file system") != std::string::npos);
  const std::string fresh = thrown([&] { Node n(durable(dir.str() + "/new")); });
  INFO(fresh);
  CHECK(fresh.find("cannot create it") != std::string::npos);
}

TEST_CASE("a full disk: writes throw StorageFailed, the node recovers, nothing acknowledged is lost") {
  TempDir dir;
  if (geteuid() != 0 || mount("tmpfs", dir.str().c_str(), "tmpfs", 0, "size=4m") != 0) {
    MESSAGE("skipped: mounting a small tmpfs needs root");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{dir.str()};
  const std::string data = dir.str() + "/data";
  const std::string filler = dir.str() + "/filler";
  std::vector<std::string> acked;
  {
    Node n(durable(data));
    auto m = n.map<std::string, std::string>("m");
    m.put("first", "1");
    acked.push_back("first");
    // Fill the disk but for a few pages.
    {
      const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      REQUIRE(fd >= 0);
      const std::string block(4096, 'f');
      while (::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size())) {
      }
      ::close(fd);
    }
    std::string what;
    for (int i = 0; i < 10000 && what.empty(); ++i) {
      const std::string key = "k" + std::to_string(i);
      try {
        m.put(key, std::string(2000, 'v'));
        acked.push_back(key);
      } catch (const StorageFailed& e) {
        what = e.what();
      }
    }
    INFO(what);
    CHECK(what.find("disk is full") != std::string::npos);
    CHECK(what.find(data) != std::string::npos);
    // Space again: the next writes are committed, with the one that failed.
    std::filesystem::remove(filler);
    CHECK(eventually([&] { return putSucceeds(m, "after", "1"); }));
    acked.push_back("after");
  }
  Node n(durable(data));
  auto m = n.map<std::string, std::string>("m");
  for (const auto& key : acked) {
    INFO("acknowledged key " << key);
    CHECK(m.get(key).has_value());
  }
}

}  // namespace
}  // namespace deltasync
