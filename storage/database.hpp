#pragma once
// SQLite database of the broker: opening, pragmas, versioned migrations.
// No CAF here: the storage actor (actors/storage) is the only one that calls into it.
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

namespace spiderhub::storage {

/// Schema version this build writes; a file with a higher user_version is refused.
constexpr int schema_version = 5;

class database {
 public:
  /// Opens (creating if needed) and migrates. Throws std::runtime_error with a clear
  /// message for a corrupt file, a newer schema, or an unwritable location.
  database(const std::string& path, std::chrono::milliseconds busy_timeout);

  SQLite::Database& db() { return *db_; }
  /// A prepared statement for `sql`, compiled once and reset for reuse; the
  /// repositories call this so the hot paths do not re-parse SQL.
  SQLite::Statement& prepare(const std::string& sql);
  /// Resets every cached statement. A SELECT left mid-way keeps a read snapshot open,
  /// which stops WAL checkpoints from recycling the log and, after a disk error, keeps
  /// the connection in SQLite's error state; the storage actor calls this after every
  /// batch and read.
  void reset_statements();
  const std::string& path() const { return path_; }
  int version();
  /// Returns up to `pages` free pages to the filesystem (the file shrinks); the number of
  /// free pages left.
  std::int64_t release_free_pages(int pages);
  /// Checkpoints the WAL and cuts its file to zero bytes (outside any transaction).
  void truncate_wal();

 private:
  void migrate();
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
  std::unordered_map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
};

/// Current time as ISO-8601 UTC with milliseconds, the format of every DATETIME column.
std::string now_text();
std::int64_t now_ms();

} // namespace spiderhub::storage
