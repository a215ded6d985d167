#pragma once
// The broker database behind one interface with two backends: SQLite (default: one file,
// WAL) and PostgreSQL (libpq: several brokers sharing it, one active; see storage/leader).
// Both run the same versioned migrations, written once per dialect, and the repositories
// send the same SQL to both (portable subset: ON CONFLICT, RETURNING, ?/?N placeholders,
// which the PostgreSQL backend rewrites to $N).
// No CAF here: the storage actor (actors/storage) is the only one that calls into it.
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "storage/result_spool.hpp"

namespace SQLite {
class Database;
class Statement;
} // namespace SQLite

namespace spiderhub::storage {

/// Schema version this build writes; a database with a higher version is refused.
constexpr int schema_version = 11;

/// A write refused because this broker is no longer the leader: another broker took the
/// lease (its fencing token is newer). Nothing of the transaction was written.
struct fenced_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class statement;

/// One value of the current row.
class column {
 public:
  column(statement& s, int i) : s_(s), i_(i) {}
  std::string getString() const;
  std::int64_t getInt64() const;
  int getInt() const { return static_cast<int>(getInt64()); }
  bool isNull() const;

 private:
  statement& s_;
  int i_;
};

/// A prepared statement, reused: bind (1-based), then exec() or executeStep() per row.
class statement {
 public:
  virtual ~statement() = default;
  virtual void bind(int index, const std::string& value) = 0;
  virtual void bind(int index, std::int64_t value) = 0;
  virtual void bind(int index) = 0;  // NULL
  /// Bytes that are not text (a packed body); SQLite only.
  virtual void bind_blob(int index, const std::string& bytes) = 0;
  void bind(int index, int value) { bind(index, std::int64_t{value}); }
  void bind(int index, const char* value) { bind(index, std::string(value)); }
  /// Runs a statement without result rows; the number of rows changed.
  virtual int exec() = 0;
  /// Runs (first call) and moves to the next row; false when there is none.
  virtual bool executeStep() = 0;
  column getColumn(int index) { return column(*this, index); }
  /// Ends a run early (a SELECT left mid-way holds a read snapshot in SQLite).
  virtual void reset() = 0;

  // Backends implement these for column.
  virtual std::string text(int index) = 0;
  virtual std::int64_t integer(int index) = 0;
  virtual bool null(int index) = 0;
};

class database {
 public:
  enum class kind { sqlite, postgresql };
  virtual ~database() = default;

  virtual kind backend() const = 0;
  /// Where the data lives, for logs (file path, or host/port/dbname; never a password).
  virtual std::string describe() const = 0;
  /// A prepared statement for `sql`, compiled once and reset for reuse; the repositories
  /// call this so the hot paths do not re-parse SQL.
  virtual statement& prepare(const std::string& sql) = 0;
  /// Runs SQL without parameters or rows (DDL, SAVEPOINT, ...).
  virtual void exec(const std::string& sql) = 0;
  /// Resets every cached statement (SQLite: a SELECT left mid-way keeps a read snapshot
  /// open, which stops WAL checkpoints and, after a disk error, keeps the connection in
  /// SQLite's error state). The storage actor calls this after every batch and read.
  virtual void reset_statements() = 0;
  virtual int version() = 0;
  /// Returns up to `pages` free pages to the filesystem; the number of free pages left
  /// (PostgreSQL: 0, its autovacuum reuses the space).
  virtual std::int64_t release_free_pages(int pages) = 0;
  /// SQLite: checkpoints the WAL and cuts its file to zero bytes. PostgreSQL: nothing.
  virtual void truncate_wal() = 0;

  /// Transactions. begin() of a fenced database (set_fence) first checks that this broker
  /// still holds the lease and throws fenced_error otherwise.
  virtual void begin() = 0;
  virtual void commit() = 0;
  /// Ends an open transaction, if any; never throws (the transaction is gone either way).
  virtual void rollback() = 0;
  /// True when no transaction is open (after an error the backend may have ended it).
  virtual bool autocommit() = 0;
  /// True when `e` says the database cannot be written at all (disk full, read-only,
  /// I/O error, server unreachable) rather than one write being wrong.
  virtual bool unavailable(const std::exception& e) const = 0;

  /// Every later transaction first checks that the leader row still carries `token`.
  virtual void set_fence(std::int64_t token) { (void)token; }

  /// Where result bodies go when not into their rows (SQLite with a spool directory);
  /// nullptr otherwise.
  virtual result_spool* spool() { return nullptr; }
  /// True when new result bodies are appended to the spool.
  virtual bool spool_writes() const { return false; }
  /// SQLite: the rowid of the last INSERT (no RETURNING needed, which builds a temporary
  /// table per execution). Other backends: -1 (use RETURNING).
  virtual std::int64_t last_insert_rowid() { return -1; }
};

/// SQLite, one file (WAL, incremental vacuum). Like its connection, used by one thread at a
/// time (the storage actor's): opened in multi-thread mode, without SQLite's per-call mutex.
class sqlite_database final : public database {
 public:
  /// Opens (creating if needed) and migrates. Throws std::runtime_error with a clear
  /// message for a corrupt file, a newer schema, or an unwritable location.
  /// With `spool.dir` set, result bodies go to segment files there (storage/result_spool);
  /// opening then checks every body a Result row refers to (see recover_spool).
  sqlite_database(const std::string& path, std::chrono::milliseconds busy_timeout,
                  spool_options spool = {}, bool spool_writes = true);
  ~sqlite_database() override;

  kind backend() const override { return kind::sqlite; }
  std::string describe() const override { return path_; }
  statement& prepare(const std::string& sql) override;
  void exec(const std::string& sql) override;
  void reset_statements() override;
  int version() override;
  std::int64_t release_free_pages(int pages) override;
  void truncate_wal() override;
  std::int64_t last_insert_rowid() override;
  void begin() override;
  void commit() override;
  void rollback() override;
  bool autocommit() override;
  bool unavailable(const std::exception& e) const override;

  result_spool* spool() override { return spool_.get(); }
  bool spool_writes() const override { return spool_ && spool_writes_; }

  SQLite::Database& db() { return *db_; }
  const std::string& path() const { return path_; }

 private:
  void migrate();
  void recover_spool();
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<result_spool> spool_;
  bool spool_writes_ = true;
  std::unordered_map<std::string, std::unique_ptr<statement>> statements_;
};

struct open_options {
  std::string kind = "sqlite";           // sqlite | postgresql
  std::string path;                      // sqlite file
  std::string postgresql;                // libpq connection string
  std::chrono::milliseconds busy_timeout{5000};     // sqlite: wait for a locked file
  std::chrono::milliseconds idle_in_transaction{0}; // postgresql: see pg_database
  std::int64_t fence = 0;                // postgresql: the leader's token (set_fence); 0 = none
  spool_options spool;                   // sqlite: result bodies in segment files ("" = in rows)
  bool spool_writes = true;              // sqlite: new bodies to the spool (else read only)
};

/// Opens (and migrates) the database a broker configuration names.
std::unique_ptr<database> open_database(const open_options& o);

/// Rewrites SQLite placeholders (?, ?N) to PostgreSQL's ($N), outside quotes.
std::string postgres_placeholders(const std::string& sql);

/// Current time as ISO-8601 UTC with milliseconds, the format of every DATETIME column.
std::string now_text();
/// The same format for a given time in milliseconds since the epoch.
std::string time_text(std::int64_t unix_ms);
std::int64_t now_ms();

} // namespace spiderhub::storage
