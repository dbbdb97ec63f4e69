// Durable storage of one node's replica: an embedded SQLite database (WAL mode) in the node's
// data directory, so that a node restarts as the same replica with its state, offline if need be.
//
// Files: <dir>/deltasync.db (with SQLite's -wal and -shm beside it) and <dir>/LOCK, held with
// flock() by the one process that uses the directory (a second one is refused at open, with the
// holder's pid). The directory is created if missing.
//
// Layout (format 2; meta 'format'; an older format is read and marked current at begin(), a
// newer one is refused, never rewritten):
//   meta(key, value)          format, writer (see below), id (the replica id), seq (the engine's
//                             sequence number at the last commit), incarnation (membership's),
//                             clean (1 after a clean close, 0 while a run is open), members
//                             (addresses of the live members at the last save, one per line);
//   objects(name, state)      each object's snapshot;
//   deltas(id, name, delta)   the changes each object took since its snapshot, in commit order.
// An object's state is its snapshot joined with its deltas (joins are idempotent and
// commutative: order affects speed only). Values are stored as they travel: the compact encoding
// (gossip/compact.h; "c" + bytes). Rows of databases written before every kind had a compact form
// (protocol version 7 and earlier) may hold the framed Crdt ("v" + bytes, gossip/envelope.h
// decodeValue): they are read, never written, and go as their object is next compacted.
// Compact references 0 stand for meta 'writer', the directory's first replica id, so
// stored rows decode the same whatever id a later run takes.
//
// What is stored: every object of the store except other replicas' presence objects
// ("$presence/<id>" of another id: peers send them again by catch-up, and they describe other
// nodes' connections). This replica's own presence object is stored for its causal context:
// restored, its entries are removed (the connections of the previous run are gone) and the
// removal reaches peers by catch-up, while its dots are never minted again. A run under a new id
// (after an async crash) drops the former id's presence object at begin().
//
// Compaction: when the deltas logged for an object since its snapshot exceed
// max(64 KiB, snapshot bytes), its current state becomes the snapshot and its deltas are deleted,
// in the same transaction. So the file holds about live state plus at most as much again in
// deltas, and every byte is rewritten a bounded number of times on average.
//
// Durability (lib/node.c++ drives it): changes are recorded as the store reports them (record(),
// the store's listener, on the writer's thread) and written by commit(), one transaction for
// everything recorded since the last one (group commit: one fsync for many writers). A commit
// has two halves, so that writers go on while it is written: take() under the node's state lock
// takes what was recorded and encodes the snapshots that compact now; commit(Batch) writes them
// without that lock, while later changes are recorded for the next commit. SQLite runs
// with synchronous=FULL in sync mode (a commit is on disk when it returns) and NORMAL in async
// mode. Writers on other threads wait for their ticket (waitCommitted()).
//
// Errors: StorageFailed (include/deltasync/errors.h), saying what and where: a directory in use,
// unreadable, read-only or full, a corrupt or truncated database, a newer format. A failed
// commit rolls back and keeps what was recorded, so the next commit writes it.
//
// Threads: record() runs on writers' threads under the node's unique state lock; take() under
// its shared state lock; recorded(), dirty(), waitCommitted() and stats() on any thread; the rest
// on the node's loop thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gossip/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace deltasync {

using crdt::ReplicaId;

// What a previous run left in the directory.
struct StoredState {
  ReplicaId id;        // 0: a new directory
  bool clean = true;   // the previous run closed cleanly (true for a new directory)
  uint64_t seq = 0;    // the engine's sequence number at its last commit
  uint64_t incarnation = 0;
  std::vector<std::string> members;  // live members' addresses at the last save
  std::vector<std::pair<std::string, gossip::Value>> objects;
};

struct StorageStats {
  uint64_t commits = 0;      // transactions written (each one fsync in sync mode)
  uint64_t changes = 0;      // store changes written
  uint64_t bytes = 0;        // value bytes written (deltas and snapshots)
  uint64_t compactions = 0;  // snapshots rewritten
  uint64_t failures = 0;     // failed commits
};

class Storage {
 public:
  // Opens or creates the database in `dir` and locks the directory. sync: synchronous=FULL.
  static std::unique_ptr<Storage> open(const std::string& dir, bool sync);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  const std::string& path() const { return path_; }

  // Everything the previous run left (objects joined from snapshot and deltas).
  StoredState load();

  // Starts this run as `id` (which may differ from the stored one: see lib/node.c++): records it,
  // marks the directory not clean, and commits. From here on record() and commit() apply.
  void begin(ReplicaId id);

  // The store's listener: keeps the change for the next commit.
  void record(const gossip::Change& change);
  bool dirty() const;  // something was recorded since the last take()

  struct Pending {
    std::string name;
    std::string bytes;  // encodeStored(delta)
  };
  struct ObjectInfo {
    size_t snapshotBytes = 0;
    size_t loggedBytes = 0;  // deltas since the snapshot
  };
  // One commit's contents, from take().
  struct Batch {
    uint64_t ticket = 0;  // recorded() when it was taken
    std::vector<Pending> changes;
    std::map<std::string, std::string> snapshots;  // objects compacting in this commit: state
    std::map<std::string, ObjectInfo> next;        // their sizes once it is committed
    uint64_t seq = 0;
    uint64_t incarnation = 0;
  };
  // What was recorded, with seq and incarnation, and the snapshots of the objects that compact
  // (`store` gives their current state: the caller holds it still).
  Batch take(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation);
  // Writes the batch in one transaction. Throws StorageFailed; nothing is lost then (its changes
  // are kept for the next commit).
  void commit(Batch batch);
  // Both at once (the store held throughout).
  void commit(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation);
  // Replaces the saved member addresses (committed with the next commit).
  void saveMembers(std::vector<std::string> addresses);
  // A clean close: commits and marks the directory clean.
  void close(const gossip::ObjectStore& store, uint64_t seq, uint64_t incarnation);

  // Tickets: recorded() counts the changes recorded so far; waitCommitted(t) returns once a
  // commit wrote the first t, and throws StorageFailed if a commit that should have failed
  // meanwhile (the change is in memory and will be retried, but is not durable yet).
  uint64_t recorded() const;
  void waitCommitted(uint64_t ticket) const;
  // Without waiting: where ticket t stands (failed: `error` says why, as waitCommitted throws).
  enum class Ticket { pending, committed, failed };
  Ticket ticket(uint64_t t, std::string* error = nullptr) const;
  // No commit will come (the node's loop ended): every waiter throws StorageFailed(why).
  void abandon(const std::string& why);

  StorageStats stats() const;

 private:
  Storage(std::string dir, int lockFd);

  void exec(const char* sql);
  sqlite3_stmt* prepare(const char* sql);
  void setMeta(const char* key, const std::string& value);
  void setMeta(const char* key, uint64_t value);
  [[noreturn]] void fail(const std::string& what) const;
  std::string notDurable() const;  // under mutex_
  std::string encodeStored(const gossip::Value& v) const;
  gossip::Value decodeStored(const std::string& name, const void* data, size_t size) const;

  std::string dir_;
  std::string path_;
  int lockFd_ = -1;
  sqlite3* db_ = nullptr;
  ReplicaId self_;
  ReplicaId writer_;  // compact references 0 (meta 'writer')
  std::vector<Pending> pending_;  // under mutex_
  std::map<std::string, ObjectInfo> info_;
  std::vector<std::string> members_;
  bool membersDirty_ = false;
  sqlite3_stmt* putMeta_ = nullptr;
  sqlite3_stmt* putDelta_ = nullptr;
  sqlite3_stmt* putObject_ = nullptr;
  sqlite3_stmt* dropDeltas_ = nullptr;

  mutable std::mutex mutex_;  // pending_, the tickets and stats
  mutable std::condition_variable committedCv_;
  uint64_t recorded_ = 0;
  uint64_t committed_ = 0;
  uint64_t failedUpTo_ = 0;  // tickets up to here saw a failed commit
  std::string lastError_;
  StorageStats stats_;
};

}  // namespace deltasync
