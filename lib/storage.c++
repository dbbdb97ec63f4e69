#include "lib/storage.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include <deltasync/errors.h>

#include "gossip/compact.h"
#include "gossip/envelope.h"
#include "gossip/presence.h"

namespace deltasync {

namespace {

// 2: compact values may carry their context whole (gossip/compact.h, header bit F). 3: every
// kind is stored compact (the or-maps, maps of counters and tombstones too: header bit 7), and
// no row is written in the column encoding ("v") any more. Older files read as they are (their
// "v" rows too); begin() marks them with this format, as what it writes from then on may use
// what older readers refuse.
constexpr uint64_t kFormat = 3;
constexpr size_t kCompactAbove = 64 << 10;

// Stored state is this node's own, and may exceed what one message may carry: decoding checks
// well-formedness only.
Limits storedLimits() {
  Limits l;
  l.maxMessageBytes = std::numeric_limits<size_t>::max() / 2;
  l.maxSegments = std::numeric_limits<uint32_t>::max();
  l.traversalLimitWords = std::numeric_limits<uint64_t>::max() / 16;
  l.maxEntries = std::numeric_limits<uint32_t>::max();
  l.maxOrigins = std::numeric_limits<uint32_t>::max();
  l.maxEntriesPerKey = std::numeric_limits<uint32_t>::max();
  l.maxSameKeyPairs = std::numeric_limits<uint64_t>::max();
  l.maxIntervalsPerOrigin = std::numeric_limits<uint32_t>::max();
  l.maxKeyBytes = std::numeric_limits<size_t>::max() / 2;
  l.maxValueBytes = std::numeric_limits<size_t>::max() / 2;
  l.maxNameBytes = std::numeric_limits<size_t>::max() / 2;
  l.maxObjectsPerMessage = std::numeric_limits<uint32_t>::max();
  return l;
}

std::string errnoText() { return std::strerror(errno); }

// Stored unless it is another replica's presence object.
bool storedName(const std::string& name, ReplicaId self) {
  const ReplicaId owner = gossip::presenceOwner(name);
  return owner.value == 0 || owner == self;
}

struct Statement {
  sqlite3_stmt* s;
  explicit Statement(sqlite3_stmt* st) : s(st) {}
  ~Statement() { sqlite3_finalize(s); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
};

// Runs f(text, blob, bytes) on each row of a (TEXT, BLOB) query; returns the sqlite3_step result
// that ended it (SQLITE_DONE unless reading failed).
template <typename F>
int eachRow(const Statement& q, F&& f) {
  int rc;
  while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(q.s, 0));
    f(std::string(text == nullptr ? "" : text), sqlite3_column_blob(q.s, 1),
      static_cast<size_t>(sqlite3_column_bytes(q.s, 1)));
  }
  return rc;
}

}  // namespace

std::unique_ptr<Storage> Storage::open(const std::string& dir, bool sync) {
  if (dir.empty()) throw StorageFailed("data directory: the path is empty");
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    throw StorageFailed("data directory '" + dir + "' is not a directory");
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StorageFailed("data directory '" + dir + "': cannot create it: " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) throw StorageFailed("data directory '" + dir + "' is not a directory");
  const std::string lockPath = dir + "/LOCK";
  const int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw StorageFailed("data directory '" + dir + "': cannot open " + lockPath + ": " + errnoText());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      throw StorageFailed("data directory '" + dir + "' is in use by another process" +
                          (holder.empty() ? std::string() : " (pid " + holder + ")"));
    }
    throw StorageFailed("data directory '" + dir + "': cannot lock " + lockPath + ": " + std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    const std::string why = errnoText();
    ::close(fd);
    throw StorageFailed("data directory '" + dir + "': cannot write " + lockPath + ": " + why);
  }
  std::unique_ptr<Storage> s(new Storage(dir, fd));
  const int rc = sqlite3_open_v2(s->path_.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) s->fail("cannot open the database");
  sqlite3_extended_result_codes(s->db_, 1);
  sqlite3_busy_timeout(s->db_, 0);  // the directory lock makes us its only user
  s->exec("PRAGMA journal_mode=WAL");
  s->exec(sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  s->exec("PRAGMA foreign_keys=OFF");
  s->exec("BEGIN");
  s->exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID");
  s->exec("CREATE TABLE IF NOT EXISTS objects(name TEXT PRIMARY KEY, state BLOB NOT NULL)");
  s->exec("CREATE TABLE IF NOT EXISTS deltas(id INTEGER PRIMARY KEY, name TEXT NOT NULL, delta BLOB NOT NULL)");
  s->exec("CREATE INDEX IF NOT EXISTS deltas_by_name ON deltas(name)");
  s->exec("COMMIT");
  s->putMeta_ = s->prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  s->putDelta_ = s->prepare("INSERT INTO deltas(name, delta) VALUES (?1, ?2)");
  s->putObject_ = s->prepare("INSERT OR REPLACE INTO objects(name, state) VALUES (?1, ?2)");
  s->dropDeltas_ = s->prepare("DELETE FROM deltas WHERE name = ?1");
  return s;
}

Storage::Storage(std::string dir, int lockFd) : dir_(std::move(dir)), path_(dir_ + "/deltasync.db"), lockFd_(lockFd) {}

Storage::~Storage() {
  for (sqlite3_stmt* s : {putMeta_, putDelta_, putObject_, dropDeltas_}) sqlite3_finalize(s);
  if (db_ != nullptr) sqlite3_close(db_);
  if (lockFd_ >= 0) ::close(lockFd_);  // releases the flock
}

void Storage::fail(const std::string& what) const {
  std::string detail = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
  const int code = db_ != nullptr ? sqlite3_extended_errcode(db_) : SQLITE_NOMEM;
  switch (code & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      detail += " (the database is corrupt or truncated; move it away to start this node afresh)";
      break;
    case SQLITE_FULL:
      detail += " (the disk is full)";
      break;
    case SQLITE_IOERR:
      if (code == SQLITE_IOERR_FSYNC || code == SQLITE_IOERR_DIR_FSYNC) {
        detail += " (fsync failed: the device did not confirm the data is on disk)";
      } else if (code == SQLITE_IOERR_WRITE) {
        detail += " (a write to the file failed)";
      } else if (code == SQLITE_IOERR_READ || code == SQLITE_IOERR_SHORT_READ) {
        detail += " (a read from the file failed)";
      }
      break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      detail += " (check that the directory and its files are writable)";
      break;
    default:
      break;
  }
  throw StorageFailed("data directory '" + dir_ + "': " + what + ": " + detail);
}

void Storage::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    fail(std::string("'") + sql + "' failed");
  }
}

sqlite3_stmt* Storage::prepare(const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
    fail(std::string("cannot prepare '") + sql + "'");
  }
  return s;
}

void Storage::setMeta(const char* key, const std::string& value) {
  sqlite3_reset(putMeta_);
  sqlite3_bind_text(putMeta_, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_blob(putMeta_, 2, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(putMeta_) != SQLITE_DONE) fail(std::string("cannot write meta '") + key + "'");
}

void Storage::setMeta(const char* key, uint64_t value) { setMeta(key, std::to_string(value)); }

std::string Storage::encodeStored(const gossip::Value& v) const {
  gossip::ColumnWriter w;
  w.byte('c');
  gossip::encodeCompact(v, writer_, w);
  return std::string(w.bytes().begin(), w.bytes().end());
}

gossip::Value Storage::decodeStored(const std::string& name, const void* data, size_t size) const {
  const auto* p = static_cast<const unsigned char*>(data);
  static const Limits limits = storedLimits();
  try {
    if (size >= 1 && p[0] == 'c') return gossip::decodeCompact(p + 1, size - 1, writer_, limits);
    if (size >= 1 && p[0] == 'v') return gossip::decodeValue(p + 1, size - 1, limits);
    throw std::runtime_error("unknown value tag");
  } catch (const std::exception& e) {
    throw StorageFailed("data directory '" + dir_ + "': object '" + name + "' in " + path_ +
                        " is corrupt (" + e.what() + "); move the database away to start this node afresh");
  }
}

StoredState Storage::load() {
  StoredState out;
  std::map<std::string, std::string> meta;
  const int metaRc = eachRow(Statement(prepare("SELECT key, value FROM meta")), [&](std::string key, const void* v, size_t n) {
    meta[std::move(key)] = std::string(v == nullptr ? "" : static_cast<const char*>(v), n);
  });
  if (metaRc != SQLITE_DONE) fail("cannot read meta");
  auto number = [&](const char* key) -> uint64_t {
    auto it = meta.find(key);
    if (it == meta.end()) return 0;
    try {
      size_t used = 0;
      const uint64_t v = std::stoull(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument("trailing bytes");
      return v;
    } catch (const std::exception&) {
      throw StorageFailed("data directory '" + dir_ + "': meta '" + key + "' in " + path_ + " is corrupt ('" +
                          it->second + "')");
    }
  };
  const uint64_t format = number("format");
  if (format > kFormat) {
    throw StorageFailed("data directory '" + dir_ + "': " + path_ + " has format " + std::to_string(format) +
                        ", written by a newer deltasync (this one reads format " + std::to_string(kFormat) +
                        " and older); it was left untouched");
  }
  out.id = ReplicaId{number("id")};
  writer_ = ReplicaId{number("writer")};
  out.clean = out.id.value == 0 || number("clean") == 1;
  out.seq = number("seq");
  out.incarnation = number("incarnation");
  if (auto it = meta.find("members"); it != meta.end()) {
    std::istringstream in(it->second);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) out.members.push_back(line);
    }
  }
  if (out.id.value != 0 && writer_.value == 0) {
    throw StorageFailed("data directory '" + dir_ + "': meta 'writer' is missing from " + path_ + " (corrupt)");
  }

  std::map<std::string, gossip::Value> objects;
  const int objectsRc =
      eachRow(Statement(prepare("SELECT name, state FROM objects")), [&](std::string name, const void* v, size_t bytes) {
        gossip::Value state = decodeStored(name, v, bytes);
        info_[name].snapshotBytes = bytes;
        objects.emplace(std::move(name), std::move(state));
      });
  if (objectsRc != SQLITE_DONE) fail("cannot read the objects");
  const int deltasRc = eachRow(Statement(prepare("SELECT name, delta FROM deltas ORDER BY id")),
                               [&](std::string name, const void* v, size_t bytes) {
    gossip::Value d = decodeStored(name, v, bytes);
    info_[name].loggedBytes += bytes;
    auto it = objects.find(name);
    if (it == objects.end()) it = objects.emplace(name, gossip::bottomOf(d.index())).first;
    try {
      gossip::joinInto(it->second, d);
    } catch (const std::exception& e) {
      throw StorageFailed("data directory '" + dir_ + "': a delta of object '" + name + "' in " + path_ +
                          " does not fit its state (" + e.what() + "); the database is corrupt");
    }
  });
  if (deltasRc != SQLITE_DONE) fail("cannot read the deltas");
  for (auto& [name, v] : objects) out.objects.emplace_back(name, std::move(v));
  return out;
}

void Storage::begin(ReplicaId id) {
  self_ = id;
  exec("BEGIN IMMEDIATE");
  try {
    setMeta("format", kFormat);
    if (writer_.value == 0) {
      writer_ = id;
      setMeta("writer", id.value);
    }
    setMeta("id", id.value);
    setMeta("clean", uint64_t{0});
    // Another id's presence object (a previous run's, which took a new id after an async crash:
    // lib/node.c++) is never loaded again: dropped, so the file does not keep it for ever.
    std::vector<std::string> stale;
    {
      Statement q(prepare("SELECT name FROM objects WHERE name LIKE '$presence/%' "
                          "UNION SELECT name FROM deltas WHERE name LIKE '$presence/%'"));
      while (sqlite3_step(q.s) == SQLITE_ROW) {
        std::string name(reinterpret_cast<const char*>(sqlite3_column_text(q.s, 0)),
                         static_cast<size_t>(sqlite3_column_bytes(q.s, 0)));
        if (!storedName(name, id)) stale.push_back(std::move(name));
      }
    }
    for (const std::string& name : stale) {
      for (const char* sql : {"DELETE FROM objects WHERE name = ?", "DELETE FROM deltas WHERE name = ?"}) {
        Statement d(prepare(sql));
        sqlite3_bind_text(d.s, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
        if (sqlite3_step(d.s) != SQLITE_DONE) fail("cannot drop the stale object '" + name + "'");
      }
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void Storage::record(const gossip::Change& change) {
  if (self_.value == 0 || !storedName(change.name, self_)) return;
  Pending p{change.name, encodeStored(change.delta)};
  std::lock_guard lock(mutex_);
  pending_.push_back(std::move(p));
  ++recorded_;
}

bool Storage::dirty() const {
  std::lock_guard lock(mutex_);
  return !pending_.empty();
}

void Storage::saveMembers(std::vector<std::string> addresses) {
  if (addresses == members_) return;
  members_ = std::move(addresses);
  membersDirty_ = true;
}

Storage::Batch Storage::take(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation) {
  if (self_.value == 0) throw std::logic_error("Storage::take before begin");
  Batch batch;
  batch.seq = seq;
  batch.incarnation = incarnation;
  {
    std::lock_guard lock(mutex_);
    batch.ticket = recorded_;
    batch.changes = std::exchange(pending_, {});
  }
  // Which objects compact in this commit (their snapshot covers their pending deltas too).
  for (const Pending& p : batch.changes) {
    auto [it, fresh] = batch.next.try_emplace(p.name);
    if (fresh) it->second = info_[p.name];
    it->second.loggedBytes += p.bytes.size();
  }
  for (auto& [name, info] : batch.next) {
    if (info.loggedBytes <= std::max(kCompactAbove, info.snapshotBytes)) continue;
    if (const gossip::Value* v = store.find(name)) batch.snapshots.emplace(name, encodeStored(*v));
  }
  return batch;
}

void Storage::commit(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation) {
  commit(take(store, seq, incarnation));
}

void Storage::commit(Batch batch) {
  uint64_t bytes = 0;
  try {
    exec("BEGIN IMMEDIATE");
    for (const auto& [name, state] : batch.snapshots) {
      sqlite3_reset(dropDeltas_);
      sqlite3_bind_text(dropDeltas_, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
      if (sqlite3_step(dropDeltas_) != SQLITE_DONE) fail("cannot compact object '" + name + "'");
      sqlite3_reset(putObject_);
      sqlite3_bind_text(putObject_, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
      sqlite3_bind_blob(putObject_, 2, state.data(), static_cast<int>(state.size()), SQLITE_STATIC);
      if (sqlite3_step(putObject_) != SQLITE_DONE) fail("cannot write object '" + name + "'");
      batch.next[name] = ObjectInfo{state.size(), 0};
      bytes += state.size();
    }
    for (const Pending& p : batch.changes) {
      if (batch.snapshots.count(p.name) != 0) continue;  // the snapshot holds it
      sqlite3_reset(putDelta_);
      sqlite3_bind_text(putDelta_, 1, p.name.data(), static_cast<int>(p.name.size()), SQLITE_STATIC);
      sqlite3_bind_blob(putDelta_, 2, p.bytes.data(), static_cast<int>(p.bytes.size()), SQLITE_STATIC);
      if (sqlite3_step(putDelta_) != SQLITE_DONE) fail("cannot write a change of object '" + p.name + "'");
      bytes += p.bytes.size();
    }
    setMeta("seq", batch.seq);
    setMeta("incarnation", batch.incarnation);
    if (membersDirty_) {
      std::string joined;
      for (const auto& a : members_) joined += a + "\n";
      setMeta("members", joined);
    }
    exec("COMMIT");
  } catch (const StorageFailed& e) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    std::lock_guard lock(mutex_);
    // Kept for the next commit, before what was recorded meanwhile.
    pending_.insert(pending_.begin(), std::make_move_iterator(batch.changes.begin()),
                    std::make_move_iterator(batch.changes.end()));
    ++stats_.failures;
    failedUpTo_ = batch.ticket;
    lastError_ = e.what();
    committedCv_.notify_all();
    throw;
  }
  for (auto& [name, info] : batch.next) info_[name] = info;
  membersDirty_ = false;
  std::lock_guard lock(mutex_);
  committed_ = batch.ticket;
  ++stats_.commits;
  stats_.changes += batch.changes.size();
  stats_.bytes += bytes;
  stats_.compactions += batch.snapshots.size();
  committedCv_.notify_all();
}

void Storage::close(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation) {
  commit(store, seq, incarnation);
  exec("BEGIN IMMEDIATE");
  try {
    setMeta("clean", uint64_t{1});
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

uint64_t Storage::recorded() const {
  std::lock_guard lock(mutex_);
  return recorded_;
}

void Storage::waitCommitted(uint64_t ticket) const {
  std::unique_lock lock(mutex_);
  committedCv_.wait(lock, [&] { return committed_ >= ticket || failedUpTo_ >= ticket; });
  if (committed_ >= ticket) return;
  throw StorageFailed(notDurable());
}

Storage::Ticket Storage::ticket(uint64_t t, std::string* error) const {
  std::lock_guard lock(mutex_);
  if (committed_ >= t) return Ticket::committed;
  if (failedUpTo_ < t) return Ticket::pending;
  if (error != nullptr) *error = notDurable();
  return Ticket::failed;
}

std::string Storage::notDurable() const { return lastError_ + " (this write is applied in memory but not durable)"; }

void Storage::abandon(const std::string& why) {
  std::lock_guard lock(mutex_);
  failedUpTo_ = recorded_;
  lastError_ = "data directory '" + dir_ + "': " + why;
  committedCv_.notify_all();
}

StorageStats Storage::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace deltasync
