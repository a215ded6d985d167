#include "storage/database.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

namespace spiderhub::storage {
namespace {

// Migration i (1-based) takes the schema from version i-1 to i. Never edit a shipped
// entry: append a new one and bump schema_version.
const char* const migrations[] = {
  R"sql(
CREATE TABLE Node (
  Id TEXT PRIMARY KEY, NodeType INTEGER NOT NULL, IPAddress TEXT NOT NULL DEFAULT '',
  ProcessorCount INTEGER NOT NULL DEFAULT 0, "Group" TEXT NOT NULL DEFAULT 'default',
  OperatingSystem TEXT NOT NULL DEFAULT '', Memory INTEGER NOT NULL DEFAULT 0,
  IsEnabled INTEGER NOT NULL DEFAULT 1, IsOnline INTEGER NOT NULL DEFAULT 0,
  CreationTime TEXT NOT NULL, LastSeen TEXT NOT NULL);
CREATE TABLE NodeStatus (
  Id INTEGER PRIMARY KEY AUTOINCREMENT, NodeId TEXT NOT NULL, ProcessCount INTEGER NOT NULL,
  Cpu INTEGER NOT NULL, FreeMemory INTEGER NOT NULL, CreationTime TEXT NOT NULL);
CREATE INDEX NodeStatus_Node ON NodeStatus(NodeId, Id);
CREATE TABLE Job (
  Id TEXT PRIMARY KEY, Name TEXT NOT NULL, JobType TEXT NOT NULL CHECK (JobType IN ('block','application')),
  Cron TEXT NOT NULL, Description TEXT NOT NULL DEFAULT '', IsEnabled INTEGER NOT NULL DEFAULT 1,
  IsDeleted INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  LastFire INTEGER NOT NULL DEFAULT 0);
CREATE TABLE JobProperty (
  Id INTEGER PRIMARY KEY AUTOINCREMENT, JobId TEXT NOT NULL, Key TEXT NOT NULL, Value TEXT NOT NULL,
  UNIQUE (JobId, Key));
CREATE TABLE Worker (
  Id INTEGER PRIMARY KEY AUTOINCREMENT, FullClassName TEXT NOT NULL, ConnectionId TEXT NOT NULL,
  ConnectTime TEXT NOT NULL, DisconnectTime TEXT);
CREATE INDEX Worker_Class ON Worker(FullClassName);
CREATE TABLE Running (
  JobId TEXT NOT NULL, Identity TEXT PRIMARY KEY, Consuming INTEGER NOT NULL DEFAULT 0,
  Priority INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  WorkerCompleted INTEGER NOT NULL DEFAULT 0, Arguments TEXT NOT NULL DEFAULT '',
  Site TEXT NOT NULL DEFAULT '{}', FullClassName TEXT NOT NULL DEFAULT '');
CREATE TABLE JobStatus (
  JobId TEXT NOT NULL, Identity TEXT NOT NULL, NodeId TEXT NOT NULL DEFAULT '',
  Status TEXT NOT NULL, Left INTEGER NOT NULL DEFAULT 0, Success INTEGER NOT NULL DEFAULT 0,
  Error INTEGER NOT NULL DEFAULT 0, Total INTEGER NOT NULL DEFAULT 0, Reason TEXT NOT NULL DEFAULT '',
  UpdateTime TEXT NOT NULL, PRIMARY KEY (JobId, Identity, NodeId));
CREATE TABLE Block (
  Id TEXT PRIMARY KEY, Identity TEXT NOT NULL, State INTEGER NOT NULL, NodeId TEXT NOT NULL DEFAULT '',
  LeaseUntil INTEGER NOT NULL DEFAULT 0, Attempts INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  Hashes TEXT NOT NULL DEFAULT '');
CREATE INDEX Block_Identity ON Block(Identity, State);
CREATE TABLE Request (
  Identity TEXT NOT NULL, Hash TEXT NOT NULL, BlockId TEXT, Body TEXT,
  State INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (Identity, Hash)) WITHOUT ROWID;
CREATE TABLE Result (
  Id INTEGER PRIMARY KEY AUTOINCREMENT, Identity TEXT NOT NULL, BlockId TEXT NOT NULL,
  RequestHash TEXT NOT NULL, Body TEXT NOT NULL, CreationTime TEXT NOT NULL);
CREATE INDEX Result_Identity ON Result(Identity, Id);
CREATE TABLE PendingFire (
  JobId TEXT NOT NULL, Due INTEGER NOT NULL, Identity TEXT NOT NULL, PRIMARY KEY (JobId, Due));
CREATE TABLE Fire (
  JobId TEXT NOT NULL, Due INTEGER NOT NULL, Identity TEXT NOT NULL, CreationTime TEXT NOT NULL,
  PRIMARY KEY (JobId, Due));
CREATE INDEX Fire_Due ON Fire(Due);
)sql",
  // 2: application packages (the file lives in the package directory, named by its
  // hash) and the exit code of an application run on one node.
  R"sql(
CREATE TABLE Package (
  Name TEXT PRIMARY KEY, Sha256 TEXT NOT NULL, Size INTEGER NOT NULL,
  Format TEXT NOT NULL CHECK (Format IN ('zip','tar.gz')), CreationTime TEXT NOT NULL);
ALTER TABLE JobStatus ADD COLUMN ExitCode INTEGER;
)sql",
  // 3: requests robots.txt disallowed (Request.State 3) are counted apart.
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Skipped INTEGER NOT NULL DEFAULT 0;
)sql",
  // 4: the audit trail of API and console writes (newest rows kept, see audit_repository).
  R"sql(
CREATE TABLE Audit (
  Id INTEGER PRIMARY KEY AUTOINCREMENT, Time TEXT NOT NULL, Role TEXT NOT NULL,
  Name TEXT NOT NULL, Address TEXT NOT NULL, Action TEXT NOT NULL, Target TEXT NOT NULL,
  Detail TEXT NOT NULL, Status INTEGER NOT NULL);
)sql",
  // 5: the frontier on disk: requests of a run beyond its in-memory limit wait as
  // Request.State 4 in push order (Seq), read back as the queue in memory drains.
  R"sql(
ALTER TABLE Request ADD COLUMN Seq INTEGER;
CREATE INDEX Request_Spilled ON Request(Identity, Seq) WHERE State = 4;
)sql",
  // 6: the leader row of brokers sharing one database (used by PostgreSQL failover; kept
  // in SQLite so both dialects have the same tables).
  R"sql(
CREATE TABLE BrokerLeader (
  Id INTEGER PRIMARY KEY CHECK (Id = 1), Holder TEXT NOT NULL DEFAULT '',
  Url TEXT NOT NULL DEFAULT '', Token INTEGER NOT NULL DEFAULT 0 UNIQUE,
  Expires INTEGER NOT NULL DEFAULT 0);
INSERT INTO BrokerLeader (Id) VALUES (1);
)sql",
  // 7: the brokers sharing the database, as each last announced itself (active or
  // standby): the dashboard's list of where to go when its broker is gone.
  R"sql(
CREATE TABLE Broker (
  Name TEXT PRIMARY KEY, Url TEXT NOT NULL DEFAULT '', Role TEXT NOT NULL,
  LastSeen TEXT NOT NULL);
)sql",
  // 8: a finished run's Block rows are purged with its requests and results; the run's
  // status row keeps how many blocks it delivered.
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Blocks INTEGER NOT NULL DEFAULT 0;
)sql",
  // 9: requests keyed by push order (Seq) instead of their hash: a run's inserts append
  // and its results finish neighbouring rows, where random hash keys dirtied a page of the
  // table per request twice (about 9 WAL frames per crawled page). Unique hashes per run
  // are the dispatcher's dedup set (rebuilt from this table); rows from before keep their
  // order among themselves with negative numbers.
  R"sql(
CREATE TABLE RequestBySeq (
  Identity TEXT NOT NULL, Seq INTEGER NOT NULL, Hash TEXT NOT NULL, Body TEXT,
  State INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (Identity, Seq)) WITHOUT ROWID;
INSERT INTO RequestBySeq (Identity, Seq, Hash, Body, State)
  SELECT Identity, coalesce(Seq, -row_number() OVER (PARTITION BY Identity ORDER BY Hash DESC)),
         Hash, Body, State FROM Request;
DROP TABLE Request;
ALTER TABLE RequestBySeq RENAME TO Request;
CREATE INDEX Request_Spilled ON Request(Identity, Seq) WHERE State = 4;
)sql",
  // 10: a result's body may live in the result spool (storage/result_spool): the row then
  // keeps an empty Body and where the body is; Seq names the request it answers.
  R"sql(
ALTER TABLE Result ADD COLUMN Seq INTEGER;
ALTER TABLE Result ADD COLUMN Segment INTEGER;
ALTER TABLE Result ADD COLUMN Pos INTEGER;
ALTER TABLE Result ADD COLUMN Length INTEGER;
)sql",
  // 11: a block run's requests cut by its scope and trap limits, by reason (a JSON object
  // {"too_deep": 12, ...}; "" when none were).
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Cut TEXT NOT NULL DEFAULT '';
)sql",
};

static_assert(sizeof(migrations) / sizeof(migrations[0]) == schema_version,
              "one migration per schema version");

class sqlite_statement final : public statement {
public:
  sqlite_statement(SQLite::Database& db, const std::string& sql) : q_(db, sql) {}
  void bind(int index, const std::string& value) override { q_.bind(index, value); }
  void bind(int index, std::int64_t value) override { q_.bind(index, static_cast<int64_t>(value)); }
  void bind(int index) override { q_.bind(index); }
  void bind_blob(int index, const std::string& bytes) override {
    q_.bind(index, static_cast<const void*>(bytes.data()), static_cast<int>(bytes.size()));
  }
  int exec() override { return q_.exec(); }
  bool executeStep() override { return q_.executeStep(); }
  void reset() override { q_.reset(); }
  std::string text(int index) override { return q_.getColumn(index).getString(); }
  std::int64_t integer(int index) override { return q_.getColumn(index).getInt64(); }
  bool null(int index) override { return q_.getColumn(index).isNull(); }
  void prepare_reuse() {
    q_.reset();
    q_.clearBindings();
  }
  void try_reset() { q_.tryReset(); }

private:
  SQLite::Statement q_;
};

} // namespace

std::string column::getString() const {
  return s_.text(i_);
}
std::int64_t column::getInt64() const {
  return s_.integer(i_);
}
bool column::isNull() const {
  return s_.null(i_);
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string now_text() {
  return time_text(now_ms());
}

std::string time_text(std::int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

namespace {
// Process-wide settings, before the library initialises (each a no-op, SQLITE_MISUSE, if
// something already did).
void configure_sqlite_once() {
  static const bool done = [] {
    // SQLite counts every allocation under a global mutex (statistics we never read).
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    // A statement inside a batch transaction journals the pages it may have to undo. Past
    // 64 KiB (the default) the journal moves to a temporary file for the rest of the
    // transaction, and every later statement then journals its first page there with two
    // pwrites (~0.5 per crawled page). 16 MiB keeps a batch's journals in memory.
    sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, 16 << 20);
    return true;
  }();
  (void)done;
}
} // namespace

sqlite_database::sqlite_database(const std::string& path, std::chrono::milliseconds busy_timeout,
                                 spool_options spool, bool spool_writes)
  : path_(path), spool_writes_(spool_writes) {
  configure_sqlite_once();
  namespace fs = std::filesystem;
  auto dir = fs::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty())
    fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("storage: cannot create directory " + dir.string() + ": " +
                             ec.message());
  try {
    // One thread at a time uses a connection (the storage actor's), so SQLite's own
    // per-call connection mutex is not needed (multi-thread mode).
    db_ = std::make_unique<SQLite::Database>(
      path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX,
      static_cast<int>(busy_timeout.count()));
    // Checks the header before anything else touches the file.
    db_->exec("SELECT count(*) FROM sqlite_master");
    // Pages freed by finished runs go back to the filesystem (release_free_pages). The mode
    // takes effect with the first table of a new file; an older file is rebuilt once.
    if (db_->execAndGet("PRAGMA auto_vacuum").getInt() != 2) {
      db_->exec("PRAGMA auto_vacuum=INCREMENTAL");
      if (db_->execAndGet("SELECT count(*) FROM sqlite_master").getInt() > 0)
        db_->exec("VACUUM");
    }
    db_->exec("PRAGMA journal_mode=WAL");
    db_->exec("PRAGMA synchronous=NORMAL");
    db_->exec("PRAGMA foreign_keys=ON");
    // After a checkpoint the WAL file is cut back to this size (it grows with big purges).
    db_->exec("PRAGMA journal_size_limit=16777216");
    auto check = db_->execAndGet("PRAGMA quick_check").getString();
    if (check != "ok")
      throw std::runtime_error("integrity check failed: " + check);
  } catch (const SQLite::Exception& e) {
    throw std::runtime_error("storage: cannot open " + path + ": " + e.what() +
                             " (is it a spiderhub database, and is its directory writable?)");
  }
  migrate();
  if (!spool.dir.empty()) {
    spool_ = std::make_unique<result_spool>(std::move(spool));
    recover_spool();
  }
}

sqlite_database::~sqlite_database() {
  statements_.clear(); // before the connection
}

// Makes the spool agree with the Result rows: segments no row refers to go, and every
// body a row refers to is read once. A body that is missing or damaged (an OS crash before
// it reached the disk, a deleted file) cannot be delivered: its row goes and its request
// counts as an error, so the run can finish and the loss shows in its totals and the log.
void sqlite_database::recover_spool() {
  std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>> ranges;
  {
    SQLite::Statement q(*db_, "SELECT Segment, min(Id), max(Id) FROM Result "
                              "WHERE Segment IS NOT NULL GROUP BY Segment");
    while (q.executeStep())
      ranges[q.getColumn(0).getInt64()] = {q.getColumn(1).getInt64(), q.getColumn(2).getInt64()};
  }
  spool_->adopt(ranges);
  struct lost_row {
    std::int64_t id;
    std::string identity;
    std::int64_t seq;
    bool has_seq;
  };
  std::vector<lost_row> lost;
  {
    SQLite::Statement q(*db_, "SELECT Id, Identity, Seq, Segment, Pos, Length FROM Result "
                              "WHERE Segment IS NOT NULL ORDER BY Id");
    while (q.executeStep()) {
      spool_location at{q.getColumn(3).getInt64(), q.getColumn(4).getInt64(),
                        q.getColumn(5).getInt64()};
      if (!spool_->valid(at))
        lost.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(),
                        q.getColumn(2).getInt64(), !q.getColumn(2).isNull()});
    }
  }
  if (lost.empty())
    return;
  std::map<std::string, int> per_run;
  SQLite::Transaction tx(*db_);
  SQLite::Statement del(*db_, "DELETE FROM Result WHERE Id=?");
  SQLite::Statement fail(*db_, "UPDATE Request SET State=2 WHERE Identity=? AND Seq=?");
  for (auto& l : lost) {
    del.bind(1, static_cast<int64_t>(l.id));
    del.exec();
    del.reset();
    if (l.has_seq) {
      fail.bind(1, l.identity);
      fail.bind(2, static_cast<int64_t>(l.seq));
      fail.exec();
      fail.reset();
    }
    ++per_run[l.identity];
  }
  tx.commit();
  for (auto& [identity, n] : per_run)
    spdlog::error("storage: run {}: {} result bodies in {} are missing or damaged (an OS "
                  "crash before they reached the disk?); their requests count as errors",
                  identity, n, spool_->dir());
}

statement& sqlite_database::prepare(const std::string& sql) {
  auto& slot = statements_[sql];
  if (!slot)
    slot = std::make_unique<sqlite_statement>(*db_, sql);
  else
    static_cast<sqlite_statement&>(*slot).prepare_reuse();
  return *slot;
}

void sqlite_database::exec(const std::string& sql) {
  if (sql.find(';') == std::string::npos)
    prepare(sql).exec(); // BEGIN, SAVEPOINT, ... run once per write: compiled once
  else
    db_->exec(sql);
}

void sqlite_database::reset_statements() {
  for (auto& [sql, stmt] : statements_)
    static_cast<sqlite_statement&>(*stmt).try_reset();
}

int sqlite_database::version() {
  return db_->execAndGet("PRAGMA user_version").getInt();
}

void sqlite_database::begin() {
  exec("BEGIN");
}
void sqlite_database::commit() {
  if (spool_)
    spool_->flush();  // every body a row of this transaction names is in the kernel first
  exec("COMMIT");
  if (spool_)
    spool_->committed([this](std::int64_t first, std::int64_t last) {
      auto& q = prepare("SELECT 1 FROM Result WHERE Id BETWEEN ? AND ? LIMIT 1");
      q.bind(1, first);
      q.bind(2, last);
      bool found = q.executeStep();
      q.reset();
      return found;
    });
}
void sqlite_database::rollback() {
  if (!autocommit())
    db_->tryExec("ROLLBACK");
  if (spool_)
    spool_->rolled_back();
}
bool sqlite_database::autocommit() {
  return sqlite3_get_autocommit(db_->getHandle()) != 0;
}

bool sqlite_database::unavailable(const std::exception& e) const {
  if (auto* sp = dynamic_cast<const spool_error*>(&e))
    return sp->code == ENOSPC || sp->code == EDQUOT || sp->code == EIO || sp->code == EROFS;
  auto* sq = dynamic_cast<const SQLite::Exception*>(&e);
  if (!sq)
    return false;
  switch (sq->getErrorCode() & 0xff) {
  case SQLITE_FULL:
  case SQLITE_IOERR:
  case SQLITE_READONLY:
  case SQLITE_CANTOPEN:
  case SQLITE_CORRUPT:
    return true;
  default:
    return false;
  }
}

std::int64_t sqlite_database::last_insert_rowid() { return db_->getLastInsertRowid(); }

void sqlite_database::truncate_wal() {
  reset_statements();
  db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

std::int64_t sqlite_database::release_free_pages(int pages) {
  reset_statements(); // an unfinished SELECT would lock the tables it reads
  db_->exec("PRAGMA incremental_vacuum(" + std::to_string(std::max(1, pages)) + ")");
  return db_->execAndGet("PRAGMA freelist_count").getInt64();
}

void sqlite_database::migrate() {
  int current = version();
  if (current > schema_version)
    throw std::runtime_error("storage: " + path_ + " has schema version " +
                             std::to_string(current) + " but this spiderhub knows only up to " +
                             std::to_string(schema_version) + "; use a newer spiderhub");
  for (int v = current; v < schema_version; ++v) {
    try {
      SQLite::Transaction tx(*db_);
      db_->exec(migrations[v]);
      db_->exec("PRAGMA user_version=" + std::to_string(v + 1));
      tx.commit();
    } catch (const SQLite::Exception& e) {
      throw std::runtime_error("storage: migration to version " + std::to_string(v + 1) + " of " +
                               path_ + " failed: " + e.what());
    }
  }
}

} // namespace spiderhub::storage
