#include "storage/postgres.hpp"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

namespace spiderhub::storage {
namespace {

// The PostgreSQL dialect of the migrations in database.cpp, entry for entry: the same
// tables, columns and indexes; 64-bit integers where SQLite's INTEGER holds them, BIGSERIAL
// for AUTOINCREMENT, "Left" quoted (a reserved word here). Never edit a shipped entry.
const char* const migrations[] = {
  R"sql(
CREATE TABLE Node (
  Id TEXT PRIMARY KEY, NodeType INTEGER NOT NULL, IPAddress TEXT NOT NULL DEFAULT '',
  ProcessorCount INTEGER NOT NULL DEFAULT 0, "Group" TEXT NOT NULL DEFAULT 'default',
  OperatingSystem TEXT NOT NULL DEFAULT '', Memory BIGINT NOT NULL DEFAULT 0,
  IsEnabled INTEGER NOT NULL DEFAULT 1, IsOnline INTEGER NOT NULL DEFAULT 0,
  CreationTime TEXT NOT NULL, LastSeen TEXT NOT NULL);
CREATE TABLE NodeStatus (
  Id BIGSERIAL PRIMARY KEY, NodeId TEXT NOT NULL, ProcessCount INTEGER NOT NULL,
  Cpu INTEGER NOT NULL, FreeMemory BIGINT NOT NULL, CreationTime TEXT NOT NULL);
CREATE INDEX NodeStatus_Node ON NodeStatus(NodeId, Id);
CREATE TABLE Job (
  Id TEXT PRIMARY KEY, Name TEXT NOT NULL, JobType TEXT NOT NULL CHECK (JobType IN ('block','application')),
  Cron TEXT NOT NULL, Description TEXT NOT NULL DEFAULT '', IsEnabled INTEGER NOT NULL DEFAULT 1,
  IsDeleted INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  LastFire BIGINT NOT NULL DEFAULT 0);
CREATE TABLE JobProperty (
  Id BIGSERIAL PRIMARY KEY, JobId TEXT NOT NULL, Key TEXT NOT NULL, Value TEXT NOT NULL,
  UNIQUE (JobId, Key));
CREATE TABLE Worker (
  Id BIGSERIAL PRIMARY KEY, FullClassName TEXT NOT NULL, ConnectionId TEXT NOT NULL,
  ConnectTime TEXT NOT NULL, DisconnectTime TEXT);
CREATE INDEX Worker_Class ON Worker(FullClassName);
CREATE TABLE Running (
  JobId TEXT NOT NULL, Identity TEXT PRIMARY KEY, Consuming INTEGER NOT NULL DEFAULT 0,
  Priority INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  WorkerCompleted INTEGER NOT NULL DEFAULT 0, Arguments TEXT NOT NULL DEFAULT '',
  Site TEXT NOT NULL DEFAULT '{}', FullClassName TEXT NOT NULL DEFAULT '');
CREATE TABLE JobStatus (
  JobId TEXT NOT NULL, Identity TEXT NOT NULL, NodeId TEXT NOT NULL DEFAULT '',
  Status TEXT NOT NULL, "Left" BIGINT NOT NULL DEFAULT 0, Success BIGINT NOT NULL DEFAULT 0,
  Error BIGINT NOT NULL DEFAULT 0, Total BIGINT NOT NULL DEFAULT 0, Reason TEXT NOT NULL DEFAULT '',
  UpdateTime TEXT NOT NULL, PRIMARY KEY (JobId, Identity, NodeId));
CREATE TABLE Block (
  Id TEXT PRIMARY KEY, Identity TEXT NOT NULL, State INTEGER NOT NULL, NodeId TEXT NOT NULL DEFAULT '',
  LeaseUntil BIGINT NOT NULL DEFAULT 0, Attempts INTEGER NOT NULL DEFAULT 0, CreationTime TEXT NOT NULL,
  Hashes TEXT NOT NULL DEFAULT '');
CREATE INDEX Block_Identity ON Block(Identity, State);
CREATE TABLE Request (
  Identity TEXT NOT NULL, Hash TEXT NOT NULL, BlockId TEXT, Body TEXT,
  State INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (Identity, Hash));
CREATE TABLE Result (
  Id BIGSERIAL PRIMARY KEY, Identity TEXT NOT NULL, BlockId TEXT NOT NULL,
  RequestHash TEXT NOT NULL, Body TEXT NOT NULL, CreationTime TEXT NOT NULL);
CREATE INDEX Result_Identity ON Result(Identity, Id);
CREATE TABLE PendingFire (
  JobId TEXT NOT NULL, Due BIGINT NOT NULL, Identity TEXT NOT NULL, PRIMARY KEY (JobId, Due));
CREATE TABLE Fire (
  JobId TEXT NOT NULL, Due BIGINT NOT NULL, Identity TEXT NOT NULL, CreationTime TEXT NOT NULL,
  PRIMARY KEY (JobId, Due));
CREATE INDEX Fire_Due ON Fire(Due);
)sql",
  R"sql(
CREATE TABLE Package (
  Name TEXT PRIMARY KEY, Sha256 TEXT NOT NULL, Size BIGINT NOT NULL,
  Format TEXT NOT NULL CHECK (Format IN ('zip','tar.gz')), CreationTime TEXT NOT NULL);
ALTER TABLE JobStatus ADD COLUMN ExitCode INTEGER;
)sql",
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Skipped BIGINT NOT NULL DEFAULT 0;
)sql",
  R"sql(
CREATE TABLE Audit (
  Id BIGSERIAL PRIMARY KEY, Time TEXT NOT NULL, Role TEXT NOT NULL,
  Name TEXT NOT NULL, Address TEXT NOT NULL, Action TEXT NOT NULL, Target TEXT NOT NULL,
  Detail TEXT NOT NULL, Status INTEGER NOT NULL);
)sql",
  R"sql(
ALTER TABLE Request ADD COLUMN Seq BIGINT;
CREATE INDEX Request_Spilled ON Request(Identity, Seq) WHERE State = 4;
)sql",
  R"sql(
CREATE TABLE BrokerLeader (
  Id INTEGER PRIMARY KEY CHECK (Id = 1), Holder TEXT NOT NULL DEFAULT '',
  Url TEXT NOT NULL DEFAULT '', Token BIGINT NOT NULL DEFAULT 0 UNIQUE,
  Expires TIMESTAMPTZ NOT NULL DEFAULT 'epoch');
INSERT INTO BrokerLeader (Id) VALUES (1);
)sql",
  R"sql(
CREATE TABLE Broker (
  Name TEXT PRIMARY KEY, Url TEXT NOT NULL DEFAULT '', Role TEXT NOT NULL,
  LastSeen TEXT NOT NULL);
)sql",
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Blocks BIGINT NOT NULL DEFAULT 0;
)sql",
  R"sql(
CREATE TABLE RequestBySeq (
  Identity TEXT NOT NULL, Seq BIGINT NOT NULL, Hash TEXT NOT NULL, Body TEXT,
  State INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (Identity, Seq));
INSERT INTO RequestBySeq (Identity, Seq, Hash, Body, State)
  SELECT Identity, coalesce(Seq, -row_number() OVER (PARTITION BY Identity ORDER BY Hash DESC)),
         Hash, Body, State FROM Request;
DROP TABLE Request;
ALTER TABLE RequestBySeq RENAME TO Request;
CREATE INDEX Request_Spilled ON Request(Identity, Seq) WHERE State = 4;
)sql",
  R"sql(
ALTER TABLE Result ADD COLUMN Seq BIGINT, ADD COLUMN Segment BIGINT, ADD COLUMN Pos BIGINT,
  ADD COLUMN Length BIGINT;
)sql",
  R"sql(
ALTER TABLE JobStatus ADD COLUMN Cut TEXT NOT NULL DEFAULT '';
)sql",
};

static_assert(sizeof(migrations) / sizeof(migrations[0]) == schema_version,
              "one PostgreSQL migration per schema version");

// Serialises migrations of brokers starting at once on one database.
constexpr std::int64_t migration_lock = 0x5370696465724d31; // "SpiderM1"

struct result_ptr {
  PGresult* r = nullptr;
  explicit result_ptr(PGresult* p = nullptr) : r(p) {}
  result_ptr(const result_ptr&) = delete;
  result_ptr& operator=(const result_ptr&) = delete;
  result_ptr(result_ptr&& o) noexcept : r(std::exchange(o.r, nullptr)) {}
  result_ptr& operator=(result_ptr&& o) noexcept {
    if (this != &o) {
      if (r)
        PQclear(r);
      r = std::exchange(o.r, nullptr);
    }
    return *this;
  }
  ~result_ptr() {
    if (r)
      PQclear(r);
  }
};

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

// Throws pg_error unless `r` succeeded.
void check(PGconn* conn, const result_ptr& r, const std::string& what) {
  auto st = r.r ? PQresultStatus(r.r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return;
  std::string state;
  std::string msg;
  if (r.r) {
    if (auto* s = PQresultErrorField(r.r, PG_DIAG_SQLSTATE))
      state = s;
    msg = trimmed(PQresultErrorMessage(r.r));
  }
  if (msg.empty())
    msg = trimmed(PQerrorMessage(conn));
  throw pg_error("postgresql: " + what + ": " + msg, state);
}

void quiet_notices(void*, const char* message) {
  spdlog::debug("postgresql: {}", trimmed(message));
}

} // namespace

/// postgres_placeholders, also giving the number of parameters (the highest $N).
std::string rewrite_placeholders(const std::string& sql, int& params);

class pg_statement final : public statement {
public:
  /// `sql` in SQLite's placeholder syntax.
  pg_statement(pg_database& db, const std::string& sql) : db_(db) {
    sql_ = rewrite_placeholders(sql, params_); // (in the body: params_ is declared later)
    values_.resize(static_cast<std::size_t>(params_));
  }

  void bind(int index, const std::string& value) override { slot(index) = value; }
  void bind(int index, std::int64_t value) override { slot(index) = std::to_string(value); }
  void bind(int index) override { slot(index) = std::nullopt; }
  void bind_blob(int, const std::string&) override {
    // Bodies are packed for SQLite only (TOAST compresses them here).
    throw std::logic_error("postgresql: binary parameters are not used");
  }

  int exec() override {
    run();
    auto* n = PQcmdTuples(res_.r);
    int changed = n && *n ? std::atoi(n) : 0;
    res_ = result_ptr();
    return changed;
  }

  bool executeStep() override {
    if (!res_.r) {
      run();
      row_ = -1;
    }
    ++row_;
    return row_ < PQntuples(res_.r);
  }

  void reset() override { res_ = result_ptr(); }

  void clear() {
    res_ = result_ptr();
    std::fill(values_.begin(), values_.end(), std::nullopt);
  }

  std::string text(int index) override {
    check_column(index);
    return std::string(PQgetvalue(res_.r, row_, index),
                       static_cast<std::size_t>(PQgetlength(res_.r, row_, index)));
  }
  std::int64_t integer(int index) override {
    check_column(index);
    if (PQgetisnull(res_.r, row_, index))
      return 0;
    const char* v = PQgetvalue(res_.r, row_, index);
    if (*v == 't') // a boolean column
      return 1;
    if (*v == 'f')
      return 0;
    return std::strtoll(v, nullptr, 10);
  }
  bool null(int index) override {
    check_column(index);
    return PQgetisnull(res_.r, row_, index) != 0;
  }

private:
  std::optional<std::string>& slot(int index) {
    if (index < 1 || index > params_)
      throw std::out_of_range("postgresql: parameter " + std::to_string(index) + " of " +
                              std::to_string(params_) + " in: " + sql_);
    return values_[static_cast<std::size_t>(index - 1)];
  }

  void check_column(int index) const {
    if (!res_.r || row_ < 0 || row_ >= PQntuples(res_.r) || index < 0 || index >= PQnfields(res_.r))
      throw std::out_of_range("postgresql: no column " + std::to_string(index) +
                              " in the current row of: " + sql_);
  }

  void run() {
    auto* conn = db_.connection();
    if (generation_ != db_.generation() || name_.empty()) {
      name_ = db_.next_name();
      result_ptr p(PQprepare(conn, name_.c_str(), sql_.c_str(), 0, nullptr));
      check(conn, p, "prepare");
      generation_ = db_.generation();
    }
    std::vector<const char*> ptrs(values_.size());
    for (std::size_t i = 0; i < values_.size(); ++i)
      ptrs[i] = values_[i] ? values_[i]->c_str() : nullptr;
    res_ =
      result_ptr(PQexecPrepared(conn, name_.c_str(), params_, ptrs.data(), nullptr, nullptr, 0));
    check(conn, res_, sql_.substr(0, 80));
  }

  pg_database& db_;
  std::string sql_;
  std::string name_;
  std::uint64_t generation_ = 0;
  int params_ = 0;
  std::vector<std::optional<std::string>> values_;
  result_ptr res_;
  int row_ = -1;
};

std::string postgres_placeholders(const std::string& sql) {
  int params = 0;
  return rewrite_placeholders(sql, params);
}

std::string rewrite_placeholders(const std::string& sql, int& params) {
  std::string out;
  out.reserve(sql.size() + 16);
  int highest = 0;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote) {
      out += c;
      if (c == quote)
        quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c != '?') {
      out += c;
      continue;
    }
    int n = 0;
    std::size_t j = i + 1;
    while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9')
      n = n * 10 + (sql[j++] - '0');
    if (j == i + 1)
      n = highest + 1; // a bare ? takes the next number, as in SQLite
    highest = std::max(highest, n);
    out += '$';
    out += std::to_string(n);
    i = j - 1;
  }
  params = highest;
  return out;
}

std::string describe_conninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    std::string msg = err ? trimmed(err) : "unparsable";
    PQfreemem(err);
    return "postgresql (" + msg + ")";
  }
  std::string host, port, db, user;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val)
      continue;
    std::string k = o->keyword;
    if (k == "host" || k == "hostaddr")
      host = host.empty() ? o->val : host;
    else if (k == "port")
      port = o->val;
    else if (k == "dbname")
      db = o->val;
    else if (k == "user")
      user = o->val;
  }
  PQconninfoFree(opts);
  return "postgresql://" + (user.empty() ? "" : user + "@") + (host.empty() ? "localhost" : host) +
         (port.empty() ? "" : ":" + port) + "/" + db;
}

pg_database::pg_database(const std::string& conninfo, std::chrono::milliseconds idle_in_tx)
  : conninfo_(conninfo), where_(describe_conninfo(conninfo)), idle_in_tx_(idle_in_tx) {
  try {
    connect();
    migrate();
  } catch (...) {
    // No destructor runs for a throwing constructor: the connection goes here.
    statements_.clear();
    if (conn_)
      PQfinish(std::exchange(conn_, nullptr));
    throw;
  }
}

pg_database::~pg_database() {
  statements_.clear();
  if (conn_)
    PQfinish(conn_);
}

void pg_database::connect() {
  if (conn_)
    PQfinish(std::exchange(conn_, nullptr));
  // Defaults for a server that vanishes without a FIN (partition, host down): a blocked
  // statement fails within seconds instead of TCP's minutes. The connection string comes
  // last, so whatever it sets wins.
  const char* keys[] = {"connect_timeout",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        nullptr};
  const char* values[] = {"5", "5", "2", "3", "10000", conninfo_.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, 1);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = conn_ ? trimmed(PQerrorMessage(conn_)) : "out of memory";
    if (conn_)
      PQfinish(std::exchange(conn_, nullptr));
    throw pg_error("storage: cannot connect to " + where_ + ": " + msg +
                     " (check storage.postgresql in the broker configuration)",
                   "08000");
  }
  PQsetNoticeProcessor(conn_, quiet_notices, nullptr);
  ++generation_;
  std::string setup =
    "SET application_name = 'spiderhub broker'; SET client_min_messages = warning";
  if (idle_in_tx_.count() > 0)
    setup += "; SET idle_in_transaction_session_timeout = " + std::to_string(idle_in_tx_.count());
  exec(setup);
}

void pg_database::ensure_connected() {
  if (conn_ && PQstatus(conn_) == CONNECTION_OK)
    return;
  spdlog::warn("storage: connection to {} lost, reconnecting", where_);
  connect();
}

pg_conn* pg_database::connection() {
  if (conn_ && PQstatus(conn_) == CONNECTION_OK)
    return conn_;
  // Never silently inside a transaction: its earlier statements died with the connection.
  if (in_tx_)
    throw pg_error("postgresql: connection to " + where_ + " lost inside a transaction", "08006");
  ensure_connected();
  return conn_;
}

statement& pg_database::prepare(const std::string& sql) {
  auto& slot = statements_[sql];
  if (!slot)
    slot = std::make_unique<pg_statement>(*this, sql);
  else
    slot->clear();
  return *slot;
}

void pg_database::exec(const std::string& sql) {
  auto* conn = connection();
  result_ptr r(PQexec(conn, sql.c_str()));
  check(conn, r, sql.substr(0, 80));
}

void pg_database::reset_statements() {
  for (auto& [sql, stmt] : statements_)
    stmt->reset();
}

int pg_database::version() {
  auto& q = prepare("SELECT Version FROM SchemaVersion");
  int v = q.executeStep() ? q.getColumn(0).getInt() : 0;
  q.reset();
  return v;
}

void pg_database::begin() {
  in_tx_ = false;
  ensure_connected();
  exec("BEGIN");
  in_tx_ = true;
  if (fence_ <= 0)
    return;
  // The leader row is key-share-locked until commit. Token is a key (unique), so a
  // standby's takeover, which changes it, waits for this transaction and every
  // transaction after it sees the new token; the leader's own renewals change only
  // Expires and do not wait for its busy storage thread.
  auto& q = prepare("SELECT Token FROM BrokerLeader WHERE Id = 1 FOR KEY SHARE");
  std::int64_t token = q.executeStep() ? q.getColumn(0).getInt64() : -1;
  q.reset();
  if (token != fence_) {
    rollback();
    throw fenced_error("storage: this broker lost the leadership (fencing token " +
                       std::to_string(fence_) + ", the database has " + std::to_string(token) +
                       "): nothing is written");
  }
}

void pg_database::commit() {
  in_tx_ = false;
  exec("COMMIT");
}

void pg_database::rollback() {
  in_tx_ = false;
  if (conn_ && PQstatus(conn_) == CONNECTION_OK && !autocommit()) {
    result_ptr r(PQexec(conn_, "ROLLBACK"));
  }
}

bool pg_database::autocommit() {
  return !conn_ || PQtransactionStatus(conn_) == PQTRANS_IDLE ||
         PQtransactionStatus(conn_) == PQTRANS_UNKNOWN;
}

bool pg_database::unavailable(const std::exception& e) const {
  if (dynamic_cast<const fenced_error*>(&e))
    return true;
  auto* pe = dynamic_cast<const pg_error*>(&e);
  if (!pe)
    return false;
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK || pe->sqlstate.empty())
    return true;
  auto cls = pe->sqlstate.substr(0, 2);
  // connection exceptions, insufficient resources (disk full), operator intervention,
  // system errors, read-only transaction
  return cls == "08" || cls == "53" || cls == "57" || cls == "58" || pe->sqlstate == "25006";
}

void pg_database::migrate() {
  try {
    exec("BEGIN");
    exec("SELECT pg_advisory_xact_lock(" + std::to_string(migration_lock) + ")");
    exec("CREATE TABLE IF NOT EXISTS SchemaVersion (Version INTEGER NOT NULL)");
    exec("INSERT INTO SchemaVersion (Version) SELECT 0 "
         "WHERE NOT EXISTS (SELECT 1 FROM SchemaVersion)");
    int current = version();
    if (current > schema_version) {
      rollback();
      throw std::runtime_error("storage: " + where_ + " has schema version " +
                               std::to_string(current) + " but this spiderhub knows only up to " +
                               std::to_string(schema_version) + "; use a newer spiderhub");
    }
    for (int v = current; v < schema_version; ++v) {
      exec(migrations[v]);
      exec("UPDATE SchemaVersion SET Version = " + std::to_string(v + 1));
    }
    exec("COMMIT");
  } catch (const pg_error& e) {
    rollback();
    throw std::runtime_error("storage: migration of " + where_ + " failed: " + e.what());
  }
}

std::unique_ptr<database> open_database(const open_options& o) {
  if (o.kind == "postgresql") {
    auto db = std::make_unique<pg_database>(o.postgresql, o.idle_in_transaction);
    db->set_fence(o.fence);
    return db;
  }
  return std::make_unique<sqlite_database>(o.path, o.busy_timeout, o.spool, o.spool_writes);
}

} // namespace spiderhub::storage
