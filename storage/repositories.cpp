#include "storage/repositories.hpp"

#include "storage/packed_body.hpp"

#include <algorithm>
#include <limits>

namespace spiderhub::storage {
namespace {

node_row read_node(statement& q) {
  node_row n;
  n.id = q.getColumn(0).getString();
  n.node_type = q.getColumn(1).getInt();
  n.ip = q.getColumn(2).getString();
  n.processor_count = q.getColumn(3).getInt();
  n.group = q.getColumn(4).getString();
  n.os = q.getColumn(5).getString();
  n.memory = q.getColumn(6).getInt();
  n.is_enabled = q.getColumn(7).getInt() != 0;
  n.is_online = q.getColumn(8).getInt() != 0;
  n.creation_time = q.getColumn(9).getString();
  n.last_seen = q.getColumn(10).getString();
  return n;
}

constexpr const char* node_columns =
  "SELECT Id, NodeType, IPAddress, ProcessorCount, \"Group\", OperatingSystem, Memory, "
  "IsEnabled, IsOnline, CreationTime, LastSeen FROM Node ";

void bind_optional(statement& q, int index, const std::optional<std::string>& v) {
  if (v)
    q.bind(index, *v);
  else
    q.bind(index);
}

} // namespace

// ---- nodes -------------------------------------------------------------------

void node_repository::upsert(const node_row& n) {
  auto& q = db_.prepare(
    "INSERT INTO Node (Id, NodeType, IPAddress, ProcessorCount, \"Group\", OperatingSystem, "
    "Memory, IsEnabled, IsOnline, CreationTime, LastSeen) VALUES (?,?,?,?,?,?,?,1,?,?,?) "
    "ON CONFLICT(Id) DO UPDATE SET NodeType=excluded.NodeType, IPAddress=excluded.IPAddress, "
    "ProcessorCount=excluded.ProcessorCount, \"Group\"=excluded.\"Group\", "
    "OperatingSystem=excluded.OperatingSystem, Memory=excluded.Memory, "
    "IsOnline=excluded.IsOnline, LastSeen=excluded.LastSeen");
  auto now = now_text();
  q.bind(1, n.id);
  q.bind(2, n.node_type);
  q.bind(3, n.ip);
  q.bind(4, n.processor_count);
  q.bind(5, n.group);
  q.bind(6, n.os);
  q.bind(7, n.memory);
  q.bind(8, n.is_online ? 1 : 0);
  q.bind(9, now);
  q.bind(10, now);
  q.exec();
}

void node_repository::set_online(const std::string& id, bool online) {
  auto& q = db_.prepare("UPDATE Node SET IsOnline=?, LastSeen=? WHERE Id=?");
  q.bind(1, online ? 1 : 0);
  q.bind(2, now_text());
  q.bind(3, id);
  q.exec();
}

void node_repository::set_enabled(const std::string& id, bool enabled) {
  auto& q = db_.prepare("UPDATE Node SET IsEnabled=? WHERE Id=?");
  q.bind(1, enabled ? 1 : 0);
  q.bind(2, id);
  q.exec();
}

void node_repository::touch(const std::string& id) {
  auto& q = db_.prepare("UPDATE Node SET LastSeen=? WHERE Id=?");
  q.bind(1, now_text());
  q.bind(2, id);
  q.exec();
}

void node_repository::add_status(const node_status_row& s) {
  auto& q = db_.prepare(
    "INSERT INTO NodeStatus (NodeId, ProcessCount, Cpu, FreeMemory, CreationTime) "
    "VALUES (?,?,?,?,?)");
  q.bind(1, s.node_id);
  q.bind(2, s.process_count);
  q.bind(3, s.cpu);
  q.bind(4, s.free_memory);
  q.bind(5, s.creation_time.empty() ? now_text() : s.creation_time);
  q.exec();
}

int node_repository::prune_status(int retention_hours) {
  auto& q = db_.prepare("DELETE FROM NodeStatus WHERE CreationTime < ?");
  q.bind(1, time_text(now_ms() - std::int64_t{retention_hours} * 3600 * 1000));
  return q.exec();
}

std::vector<node_row> node_repository::list() {
  auto& q = db_.prepare(std::string(node_columns) + "ORDER BY CreationTime, Id");
  std::vector<node_row> out;
  while (q.executeStep())
    out.push_back(read_node(q));
  return out;
}

std::optional<node_row> node_repository::find(const std::string& id) {
  auto& q = db_.prepare(std::string(node_columns) + "WHERE Id=?");
  q.bind(1, id);
  if (q.executeStep())
    return read_node(q);
  return std::nullopt;
}

std::vector<node_status_row> node_repository::statuses(const std::string& node_id, int limit) {
  auto& q = db_.prepare(
    "SELECT Id, NodeId, ProcessCount, Cpu, FreeMemory, CreationTime FROM NodeStatus "
    "WHERE NodeId=? ORDER BY Id DESC LIMIT ?");
  q.bind(1, node_id);
  q.bind(2, limit);
  std::vector<node_status_row> out;
  while (q.executeStep()) {
    node_status_row s;
    s.id = q.getColumn(0).getInt64();
    s.node_id = q.getColumn(1).getString();
    s.process_count = q.getColumn(2).getInt();
    s.cpu = q.getColumn(3).getInt();
    s.free_memory = q.getColumn(4).getInt();
    s.creation_time = q.getColumn(5).getString();
    out.push_back(std::move(s));
  }
  return out;
}

void node_repository::mark_all_offline() { db_.exec("UPDATE Node SET IsOnline=0"); }

// ---- jobs --------------------------------------------------------------------

namespace {

job_row read_job(statement& q) {
  job_row j;
  j.id = q.getColumn(0).getString();
  j.name = q.getColumn(1).getString();
  j.job_type = q.getColumn(2).getString();
  j.cron = q.getColumn(3).getString();
  j.description = q.getColumn(4).getString();
  j.is_enabled = q.getColumn(5).getInt() != 0;
  j.is_deleted = q.getColumn(6).getInt() != 0;
  j.creation_time = q.getColumn(7).getString();
  j.last_fire = q.getColumn(8).getInt64();
  return j;
}

constexpr const char* job_columns = "SELECT Id, Name, JobType, Cron, Description, IsEnabled, "
                                    "IsDeleted, CreationTime, LastFire FROM Job ";

void write_properties(database& db, const job_row& j) {
  auto& del = db.prepare("DELETE FROM JobProperty WHERE JobId=?");
  del.bind(1, j.id);
  del.exec();
  for (auto& [k, v] : j.properties) {
    auto& q = db.prepare("INSERT INTO JobProperty (JobId, Key, Value) VALUES (?,?,?)");
    q.bind(1, j.id);
    q.bind(2, k);
    q.bind(3, v);
    q.exec();
  }
}

} // namespace

void job_repository::insert(const job_row& j) {
  auto& q = db_.prepare(
    "INSERT INTO Job (Id, Name, JobType, Cron, Description, IsEnabled, IsDeleted, CreationTime, "
    "LastFire) VALUES (?,?,?,?,?,?,0,?,?)");
  q.bind(1, j.id);
  q.bind(2, j.name);
  q.bind(3, j.job_type);
  q.bind(4, j.cron);
  q.bind(5, j.description);
  q.bind(6, j.is_enabled ? 1 : 0);
  q.bind(7, j.creation_time.empty() ? now_text() : j.creation_time);
  q.bind(8, static_cast<std::int64_t>(j.last_fire));
  q.exec();
  write_properties(db_, j);
}

bool job_repository::update(const job_row& j) {
  auto& q = db_.prepare(
    "UPDATE Job SET Name=?, JobType=?, Cron=?, Description=?, IsEnabled=? "
    "WHERE Id=? AND IsDeleted=0");
  q.bind(1, j.name);
  q.bind(2, j.job_type);
  q.bind(3, j.cron);
  q.bind(4, j.description);
  q.bind(5, j.is_enabled ? 1 : 0);
  q.bind(6, j.id);
  if (q.exec() == 0)
    return false;
  write_properties(db_, j);
  return true;
}

bool job_repository::soft_delete(const std::string& id) {
  auto& q = db_.prepare("UPDATE Job SET IsDeleted=1, IsEnabled=0 WHERE Id=? AND IsDeleted=0");
  q.bind(1, id);
  return q.exec() > 0;
}

void job_repository::raise_last_fire(const std::string& id, std::int64_t unix_seconds) {
  auto& q = db_.prepare("UPDATE Job SET LastFire=?1 WHERE Id=?2 AND LastFire<?1");
  q.bind(1, unix_seconds);
  q.bind(2, id);
  q.exec();
}

void job_repository::set_last_fire(const std::string& id, std::int64_t unix_seconds) {
  auto& q = db_.prepare("UPDATE Job SET LastFire=? WHERE Id=?");
  q.bind(1, static_cast<std::int64_t>(unix_seconds));
  q.bind(2, id);
  q.exec();
}

void job_repository::load_properties(job_row& j) {
  auto& q = db_.prepare("SELECT Key, Value FROM JobProperty WHERE JobId=?");
  q.bind(1, j.id);
  while (q.executeStep())
    j.properties[q.getColumn(0).getString()] = q.getColumn(1).getString();
}

std::optional<job_row> job_repository::find(const std::string& id) {
  std::optional<job_row> out;
  {
    auto& q = db_.prepare(std::string(job_columns) + "WHERE Id=?");
    q.bind(1, id);
    if (q.executeStep())
      out = read_job(q);
  }
  if (out)
    load_properties(*out);
  return out;
}

std::vector<job_row> job_repository::list() {
  std::vector<job_row> out;
  {
    auto& q = db_.prepare(std::string(job_columns) +
                          "WHERE IsDeleted=0 ORDER BY CreationTime DESC, Id");
    while (q.executeStep())
      out.push_back(read_job(q));
  }
  for (auto& j : out)
    load_properties(j);
  return out;
}

// ---- runs --------------------------------------------------------------------

void run_repository::insert_running(const running_row& r) {
  auto& q = db_.prepare(
    "INSERT INTO Running (JobId, Identity, Consuming, Priority, CreationTime, "
    "WorkerCompleted, Arguments, Site, FullClassName) VALUES (?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(Identity) DO UPDATE SET JobId=excluded.JobId, Consuming=excluded.Consuming, "
    "Priority=excluded.Priority, CreationTime=excluded.CreationTime, "
    "WorkerCompleted=excluded.WorkerCompleted, Arguments=excluded.Arguments, "
    "Site=excluded.Site, FullClassName=excluded.FullClassName");
  q.bind(1, r.job_id);
  q.bind(2, r.identity);
  q.bind(3, r.consuming);
  q.bind(4, r.priority);
  q.bind(5, r.creation_time.empty() ? now_text() : r.creation_time);
  q.bind(6, r.worker_completed ? 1 : 0);
  q.bind(7, r.arguments);
  q.bind(8, r.site_json);
  q.bind(9, r.full_class_name);
  q.exec();
}

void run_repository::remove_running(const std::string& identity) {
  auto& q = db_.prepare("DELETE FROM Running WHERE Identity=?");
  q.bind(1, identity);
  q.exec();
}

void run_repository::set_worker_completed(const std::string& identity) {
  auto& q = db_.prepare("UPDATE Running SET WorkerCompleted=1 WHERE Identity=?");
  q.bind(1, identity);
  q.exec();
}

void run_repository::set_consuming(const std::string& identity, int consuming) {
  auto& q = db_.prepare("UPDATE Running SET Consuming=? WHERE Identity=?");
  q.bind(1, consuming);
  q.bind(2, identity);
  q.exec();
}

namespace {
running_row read_running(statement& q) {
  running_row r;
  r.job_id = q.getColumn(0).getString();
  r.identity = q.getColumn(1).getString();
  r.consuming = q.getColumn(2).getInt();
  r.priority = q.getColumn(3).getInt();
  r.creation_time = q.getColumn(4).getString();
  r.worker_completed = q.getColumn(5).getInt() != 0;
  r.arguments = q.getColumn(6).getString();
  r.site_json = q.getColumn(7).getString();
  r.full_class_name = q.getColumn(8).getString();
  return r;
}
constexpr const char* running_columns = "SELECT JobId, Identity, Consuming, Priority, "
                                        "CreationTime, WorkerCompleted, Arguments, Site, "
                                        "FullClassName FROM Running ";

job_status_row read_status(statement& q) {
  job_status_row s;
  s.job_id = q.getColumn(0).getString();
  s.identity = q.getColumn(1).getString();
  s.node_id = q.getColumn(2).getString();
  s.status = q.getColumn(3).getString();
  s.left = q.getColumn(4).getInt64();
  s.success = q.getColumn(5).getInt64();
  s.error = q.getColumn(6).getInt64();
  s.total = q.getColumn(7).getInt64();
  s.reason = q.getColumn(8).getString();
  s.update_time = q.getColumn(9).getString();
  s.skipped = q.getColumn(11).getInt64();
  s.blocks = q.getColumn(12).getInt64();
  s.cut = q.getColumn(13).getString();
  if (!q.getColumn(10).isNull())
    s.exit_code = q.getColumn(10).getInt();
  return s;
}
constexpr const char* status_columns = "SELECT JobId, Identity, NodeId, Status, \"Left\", Success, "
                                       "Error, Total, Reason, UpdateTime, ExitCode, Skipped, "
                                       "Blocks, Cut FROM JobStatus ";
} // namespace

std::vector<running_row> run_repository::running() {
  auto& q = db_.prepare(std::string(running_columns) + "ORDER BY CreationTime");
  std::vector<running_row> out;
  while (q.executeStep())
    out.push_back(read_running(q));
  return out;
}

std::optional<running_row> run_repository::find_running(const std::string& identity) {
  auto& q = db_.prepare(std::string(running_columns) + "WHERE Identity=?");
  q.bind(1, identity);
  if (q.executeStep())
    return read_running(q);
  return std::nullopt;
}

void run_repository::upsert_status(const job_status_row& s) {
  auto& q = db_.prepare(
    "INSERT INTO JobStatus (JobId, Identity, NodeId, Status, \"Left\", Success, Error, Total, Reason, "
    "UpdateTime, ExitCode, Skipped, Cut) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(JobId, Identity, NodeId) "
    "DO UPDATE SET Status=excluded.Status, \"Left\"=excluded.\"Left\", Success=excluded.Success, "
    "Error=excluded.Error, Total=excluded.Total, Reason=excluded.Reason, "
    "UpdateTime=excluded.UpdateTime, ExitCode=excluded.ExitCode, Skipped=excluded.Skipped, "
    "Cut=excluded.Cut");
  q.bind(1, s.job_id);
  q.bind(2, s.identity);
  q.bind(3, s.node_id);
  q.bind(4, s.status);
  q.bind(5, static_cast<std::int64_t>(s.left));
  q.bind(6, static_cast<std::int64_t>(s.success));
  q.bind(7, static_cast<std::int64_t>(s.error));
  q.bind(8, static_cast<std::int64_t>(s.total));
  q.bind(9, s.reason);
  q.bind(10, s.update_time.empty() ? now_text() : s.update_time);
  if (s.exit_code)
    q.bind(11, *s.exit_code);
  else
    q.bind(11);
  q.bind(12, static_cast<std::int64_t>(s.skipped));
  q.bind(13, s.cut);
  q.exec();
}

std::vector<job_status_row> run_repository::statuses(const std::string& job_id) {
  auto& q = db_.prepare(std::string(status_columns) +
                        "WHERE (?1 = '' OR JobId=?1) ORDER BY UpdateTime DESC LIMIT 1000");
  q.bind(1, job_id);
  std::vector<job_status_row> out;
  while (q.executeStep())
    out.push_back(read_status(q));
  return out;
}

std::vector<job_status_row> run_repository::statuses_of_run(const std::string& identity) {
  auto& q = db_.prepare(std::string(status_columns) + "WHERE Identity=? ORDER BY NodeId");
  q.bind(1, identity);
  std::vector<job_status_row> out;
  while (q.executeStep())
    out.push_back(read_status(q));
  return out;
}

void run_repository::add_pending_fire(const std::string& job_id, std::int64_t due,
                                      const std::string& identity) {
  auto& q = db_.prepare("INSERT INTO PendingFire (JobId, Due, Identity) VALUES (?,?,?) "
                        "ON CONFLICT(JobId, Due) DO UPDATE SET Identity=excluded.Identity");
  q.bind(1, job_id);
  q.bind(2, static_cast<std::int64_t>(due));
  q.bind(3, identity);
  q.exec();
}

void run_repository::remove_pending_fire(const std::string& job_id, std::int64_t due) {
  auto& q = db_.prepare("DELETE FROM PendingFire WHERE JobId=? AND Due=?");
  q.bind(1, job_id);
  q.bind(2, static_cast<std::int64_t>(due));
  q.exec();
}

std::vector<run_repository::pending_fire> run_repository::pending_fires() {
  auto& q = db_.prepare("SELECT JobId, Due, Identity FROM PendingFire ORDER BY Due");
  std::vector<pending_fire> out;
  while (q.executeStep())
    out.push_back({q.getColumn(0).getString(), q.getColumn(1).getInt64(),
                   q.getColumn(2).getString()});
  return out;
}

// ---- crawl: requests, blocks, results ------------------------------------------

bool crawl_repository::insert_request(const request_row& r) {
  auto& q = db_.prepare("INSERT INTO Request (Identity, Seq, Hash, Body, State) VALUES (?,?,?,?,?) "
                        "ON CONFLICT DO NOTHING");
  q.bind(1, r.identity);
  q.bind(2, r.seq);
  q.bind(3, r.hash);
  bind_optional(q, 4, r.body);
  q.bind(5, static_cast<std::int64_t>(r.state));
  return q.exec() > 0;
}

std::vector<request_row> crawl_repository::unspill_requests(const std::string& identity,
                                                            std::int64_t after_seq,
                                                            std::int64_t max_rows) {
  auto& q = db_.prepare(
    "SELECT Hash, Body, Seq FROM Request WHERE Identity=? AND State=4 AND Seq>? ORDER BY Seq "
    "LIMIT ?");
  q.bind(1, identity);
  q.bind(2, after_seq);
  q.bind(3, max_rows);
  std::vector<request_row> out;
  while (q.executeStep()) {
    request_row r;
    r.identity = identity;
    r.hash = q.getColumn(0).getString();
    if (!q.getColumn(1).isNull())
      r.body = q.getColumn(1).getString();
    r.seq = q.getColumn(2).getInt64();
    out.push_back(std::move(r));
  }
  q.reset();
  return out;
}

std::int64_t crawl_repository::spilled(const std::string& identity) {
  auto& q = db_.prepare("SELECT count(*) FROM Request WHERE Identity=? AND State=4");
  q.bind(1, identity);
  return q.executeStep() ? q.getColumn(0).getInt64() : 0;
}

std::int64_t crawl_repository::last_seq(const std::string& identity) {
  auto& q = db_.prepare("SELECT coalesce(max(Seq), 0) FROM Request WHERE Identity=?");
  q.bind(1, identity);
  // Rows migrated from schema 8 are numbered below zero: new ones then start at 1.
  return q.executeStep() ? std::max<std::int64_t>(0, q.getColumn(0).getInt64()) : 0;
}

void crawl_repository::for_each_request_hash(const std::string& identity,
                                             const std::function<void(const std::string&)>& fn) {
  // Pages in key order: neither backend holds more than one page of hashes at a time
  // (PostgreSQL sends a statement's whole result at once).
  auto after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    auto& q = db_.prepare(
      "SELECT Seq, Hash FROM Request WHERE Identity=? AND Seq>? ORDER BY Seq LIMIT 20000");
    q.bind(1, identity);
    q.bind(2, after);
    std::size_t n = 0;
    while (q.executeStep()) {
      after = q.getColumn(0).getInt64();
      fn(q.getColumn(1).getString());
      ++n;
    }
    q.reset();
    if (n < 20000)
      return;
  }
}

void crawl_repository::finish_request(const std::string& identity, std::int64_t seq,
                                      request_state s) {
  auto& q = db_.prepare("UPDATE Request SET Body=NULL, State=? WHERE Identity=? AND Seq=?");
  q.bind(1, static_cast<int>(s));
  q.bind(2, identity);
  q.bind(3, seq);
  q.exec();
}

request_totals crawl_repository::totals(const std::string& identity) {
  auto& q = db_.prepare("SELECT State, count(*) FROM Request WHERE Identity=? GROUP BY State");
  q.bind(1, identity);
  request_totals t;
  while (q.executeStep()) {
    auto n = q.getColumn(1).getInt64();
    t.total += n;
    auto s = static_cast<request_state>(q.getColumn(0).getInt());
    if (s == request_state::success)
      t.success += n;
    else if (s == request_state::error)
      t.error += n;
    else if (s == request_state::skipped)
      t.skipped += n;
  }
  return t;
}

void crawl_repository::upsert_block(const block_row& b) {
  auto& q = db_.prepare(
    "INSERT INTO Block (Id, Identity, State, NodeId, LeaseUntil, Attempts, CreationTime, Hashes) "
    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(Id) DO UPDATE SET State=excluded.State, "
    "NodeId=excluded.NodeId, LeaseUntil=excluded.LeaseUntil, Attempts=excluded.Attempts");
  q.bind(1, b.id);
  q.bind(2, b.identity);
  q.bind(3, static_cast<int>(b.state));
  q.bind(4, b.node_id);
  q.bind(5, static_cast<std::int64_t>(b.lease_until));
  q.bind(6, b.attempts);
  q.bind(7, b.creation_time.empty() ? now_text() : b.creation_time);
  q.bind(8, b.hashes);
  q.exec();
}

void crawl_repository::set_block_state(const std::string& id, block_state s,
                                       const std::string& node_id, std::int64_t lease_until,
                                       std::int32_t attempts) {
  auto& q = db_.prepare("UPDATE Block SET State=?, NodeId=?, LeaseUntil=?, Attempts=? WHERE Id=?");
  q.bind(1, static_cast<int>(s));
  q.bind(2, node_id);
  q.bind(3, static_cast<std::int64_t>(lease_until));
  q.bind(4, attempts);
  q.bind(5, id);
  q.exec();
}

std::int64_t crawl_repository::insert_result(const result_row& r) {
  // With a spool the body goes there and the row keeps where it is (both reach the disk
  // with this transaction's commit); without, the row keeps the body.
  auto* spool = db_.spool_writes() ? db_.spool() : nullptr;
  std::optional<spool_location> at;
  if (spool)
    at = spool->packing() && !is_packed(r.body) ? spool->append(pack_body(r.body))
                                                : spool->append(r.body);
  // SQLite hands the new id out without RETURNING, which would fill a temporary table for
  // every row (a tenth of the broker's storage thread at 1M pages).
  const bool rowid = db_.backend() == database::kind::sqlite;
  auto& q = db_.prepare(
    rowid ? "INSERT INTO Result (Identity, BlockId, RequestHash, Body, CreationTime, Seq, Segment, "
            "Pos, Length) VALUES (?,?,?,?,?,?,?,?,?)"
          : "INSERT INTO Result (Identity, BlockId, RequestHash, Body, CreationTime, Seq, Segment, "
            "Pos, Length) VALUES (?,?,?,?,?,?,?,?,?) RETURNING Id");
  q.bind(1, r.identity);
  q.bind(2, r.block_id);
  q.bind(3, r.request_hash);
  if (at)
    q.bind(4, "");
  else if (is_packed(r.body))
    q.bind_blob(4, r.body);
  else
    q.bind(4, r.body);
  q.bind(5, now_text());
  q.bind(6, r.seq);
  if (at) {
    q.bind(7, at->segment);
    q.bind(8, at->offset);
    q.bind(9, at->length);
  } else {
    q.bind(7);
    q.bind(8);
    q.bind(9);
  }
  std::int64_t id = 0;
  if (rowid) {
    q.exec();
    id = db_.last_insert_rowid();
  } else {
    id = q.executeStep() ? q.getColumn(0).getInt64() : 0;
    q.reset();
  }
  if (at)
    spool->bind(at->segment, id);
  return id;
}

int crawl_repository::delete_results(const std::string& identity,
                                     const std::vector<std::int64_t>& ids) {
  int removed = 0;
  auto* spool = db_.spool();
  for (auto id : ids) {
    auto& q = db_.prepare("DELETE FROM Result WHERE Id=? AND Identity=?");
    q.bind(1, static_cast<std::int64_t>(id));
    q.bind(2, identity);
    removed += q.exec();
    if (spool)
      spool->released(id);
  }
  return removed;
}

namespace {
constexpr const char* result_columns =
  "SELECT Id, Identity, BlockId, RequestHash, Body, Seq, Segment, Pos, Length, length(Body) "
  "FROM Result ";

/// Appends the row `q` stands on to `out` unless it would take `out` past `max_bytes` (a
/// reply holds one row at least): then sets *cut and answers false.
/// Stored sizes decide before a body is read (a spooled body's record length, LZ4-packed or
/// not; length(Body) counts characters of text rows), so the row that would pass the budget
/// is mostly never read; the size read decides in the end.
bool take_result_row(database& db, statement& q, std::vector<result_row>& out,
                     std::int64_t& bytes, std::int64_t max_bytes, bool* cut) {
  const bool spooled = !q.getColumn(6).isNull();
  const std::int64_t size = spooled ? q.getColumn(8).getInt64() : q.getColumn(9).getInt64();
  if (!out.empty() && bytes + size > max_bytes) {
    if (cut)
      *cut = true;
    return false;
  }
  result_row r;
  r.id = q.getColumn(0).getInt64();
  r.identity = q.getColumn(1).getString();
  r.block_id = q.getColumn(2).getString();
  r.request_hash = q.getColumn(3).getString();
  r.seq = q.getColumn(5).isNull() ? 0 : q.getColumn(5).getInt64();
  if (!spooled) {
    r.body = unpack_body(q.getColumn(4).getString());
  } else {
    auto* spool = db.spool();
    if (!spool)
      throw std::runtime_error("result " + std::to_string(r.id) +
                               " has its body in a result spool, but none is configured");
    r.body = unpack_body(spool->read(
      {q.getColumn(6).getInt64(), q.getColumn(7).getInt64(), q.getColumn(8).getInt64()}));
  }
  const auto read = static_cast<std::int64_t>(r.body.size());
  if (!out.empty() && bytes + read > max_bytes) {
    if (cut)
      *cut = true;
    return false;
  }
  bytes += read;
  out.push_back(std::move(r));
  return true;
}
} // namespace

std::vector<result_row> crawl_repository::results_after(const std::string& identity,
                                                        std::int64_t after_id, int limit,
                                                        std::int64_t max_bytes, bool* cut) {
  auto& q = db_.prepare(std::string(result_columns) +
                        "WHERE Identity=? AND Id>? ORDER BY Id LIMIT ?");
  q.bind(1, identity);
  q.bind(2, static_cast<std::int64_t>(after_id));
  q.bind(3, limit);
  std::vector<result_row> out;
  std::int64_t bytes = 0;
  if (cut)
    *cut = false;
  while (q.executeStep())
    if (!take_result_row(db_, q, out, bytes, max_bytes, cut))
      break;
  q.reset();
  return out;
}

std::vector<result_row> crawl_repository::results_by_ids(const std::string& identity,
                                                         const std::vector<std::int64_t>& ids,
                                                         std::int64_t max_bytes, bool* cut) {
  auto& q = db_.prepare(std::string(result_columns) + "WHERE Identity=? AND Id=?");
  std::vector<result_row> out;
  std::int64_t bytes = 0;
  if (cut)
    *cut = false;
  for (auto id : ids) {
    q.bind(1, identity);
    q.bind(2, id);
    bool more = true;
    if (q.executeStep())
      more = take_result_row(db_, q, out, bytes, max_bytes, cut);
    q.reset();
    if (!more)
      break;
  }
  return out;
}

std::vector<std::pair<std::int64_t, std::int64_t>>
crawl_repository::result_sizes(const std::string& identity) {
  auto& q = db_.prepare(
    "SELECT Id, coalesce(Length, length(Body)) FROM Result WHERE Identity=? ORDER BY Id");
  q.bind(1, identity);
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  while (q.executeStep())
    out.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getInt64());
  return out;
}

std::int64_t crawl_repository::count_results(const std::string& identity) {
  auto& q = db_.prepare("SELECT count(*) FROM Result WHERE Identity=?");
  q.bind(1, identity);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

std::vector<request_row> crawl_repository::pending_requests(const std::string& identity) {
  auto& q = db_.prepare(
    "SELECT Hash, Body, Seq FROM Request WHERE Identity=? AND State=0 AND Body IS NOT NULL "
    "ORDER BY Seq");
  q.bind(1, identity);
  std::vector<request_row> out;
  while (q.executeStep()) {
    request_row r;
    r.identity = identity;
    r.hash = q.getColumn(0).getString();
    r.body = q.getColumn(1).getString();
    r.seq = q.getColumn(2).getInt64();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<block_row> crawl_repository::blocks(const std::string& identity) {
  auto& q = db_.prepare(
    "SELECT Id, Identity, State, NodeId, LeaseUntil, Attempts, CreationTime, Hashes FROM Block "
    "WHERE Identity=? ORDER BY CreationTime, Id");
  q.bind(1, identity);
  std::vector<block_row> out;
  while (q.executeStep()) {
    block_row b;
    b.id = q.getColumn(0).getString();
    b.identity = q.getColumn(1).getString();
    b.state = static_cast<block_state>(q.getColumn(2).getInt());
    b.node_id = q.getColumn(3).getString();
    b.lease_until = q.getColumn(4).getInt64();
    b.attempts = q.getColumn(5).getInt();
    b.creation_time = q.getColumn(6).getString();
    b.hashes = q.getColumn(7).getString();
    out.push_back(std::move(b));
  }
  return out;
}

void crawl_repository::delete_block(const std::string& id) {
  auto& q = db_.prepare("DELETE FROM Block WHERE Id=?");
  q.bind(1, id);
  q.exec();
}

void crawl_repository::delete_open_blocks(const std::string& identity) {
  auto& q = db_.prepare("DELETE FROM Block WHERE Identity=? AND State IN (1, 2)");
  q.bind(1, identity);
  q.exec();
}

std::vector<std::string> crawl_repository::finished_run_leftovers() {
  auto& q = db_.prepare(
    "SELECT Identity FROM (SELECT DISTINCT Identity FROM Request UNION "
    "SELECT DISTINCT Identity FROM Result UNION SELECT DISTINCT Identity FROM Block) AS Runs "
    "WHERE Identity NOT IN (SELECT Identity FROM Running)");
  std::vector<std::string> out;
  while (q.executeStep())
    out.push_back(q.getColumn(0).getString());
  return out;
}

int crawl_repository::purge_run(const std::string& identity, int max_rows) {
  auto& results = db_.prepare(
    "DELETE FROM Result WHERE Id IN (SELECT Id FROM Result WHERE Identity=?1 LIMIT ?2)");
  results.bind(1, identity);
  results.bind(2, max_rows);
  int n = results.exec();
  if (n > 0)
    if (auto* spool = db_.spool())
      spool->released_all();
  auto& requests = db_.prepare(
    "DELETE FROM Request WHERE Identity=?1 AND Seq IN "
    "(SELECT Seq FROM Request WHERE Identity=?1 ORDER BY Seq LIMIT ?2)");
  requests.bind(1, identity);
  requests.bind(2, std::max(0, max_rows - n));
  n += requests.exec();
  // The blocks go last; the delivered ones are counted into the run's status row in the
  // same transaction, so an interrupted purge neither loses nor double-counts them.
  int left = std::max(0, max_rows - n);
  if (left == 0)
    return n;
  auto& blocks = db_.prepare(
    "DELETE FROM Block WHERE Id IN (SELECT Id FROM Block WHERE Identity=?1 LIMIT ?2) "
    "RETURNING State");
  blocks.bind(1, identity);
  blocks.bind(2, left);
  std::int64_t delivered = 0;
  while (blocks.executeStep()) {
    ++n;
    delivered += blocks.getColumn(0).getInt64() == static_cast<std::int64_t>(block_state::success);
  }
  blocks.reset();
  if (delivered > 0) {
    auto& count = db_.prepare("UPDATE JobStatus SET Blocks=Blocks+?2 WHERE Identity=?1 AND NodeId=''");
    count.bind(1, identity);
    count.bind(2, delivered);
    count.exec();
  }
  return n;
}

} // namespace spiderhub::storage

namespace spiderhub::storage {

void worker_repository::connected(const std::string& full_class_name,
                                  const std::string& connection_id) {
  auto& q = db_.prepare(
    "INSERT INTO Worker (FullClassName, ConnectionId, ConnectTime) VALUES (?,?,?)");
  q.bind(1, full_class_name);
  q.bind(2, connection_id);
  q.bind(3, now_text());
  q.exec();
}

void worker_repository::disconnected(const std::string& connection_id) {
  auto& q = db_.prepare(
    "UPDATE Worker SET DisconnectTime=? WHERE ConnectionId=? AND DisconnectTime IS NULL");
  q.bind(1, now_text());
  q.bind(2, connection_id);
  q.exec();
}

void worker_repository::close_all() {
  auto& q = db_.prepare("UPDATE Worker SET DisconnectTime=? WHERE DisconnectTime IS NULL");
  q.bind(1, now_text());
  q.exec();
}

} // namespace spiderhub::storage

// ---- packages and application runs -------------------------------------------------

namespace spiderhub::storage {

void package_repository::upsert(const package_row& p) {
  auto& q = db_.prepare(
    "INSERT INTO Package (Name, Sha256, Size, Format, CreationTime) VALUES (?,?,?,?,?) "
    "ON CONFLICT(Name) DO UPDATE SET Sha256=excluded.Sha256, Size=excluded.Size, "
    "Format=excluded.Format, CreationTime=excluded.CreationTime");
  q.bind(1, p.name);
  q.bind(2, p.sha256);
  q.bind(3, p.size);
  q.bind(4, p.format);
  q.bind(5, p.creation_time.empty() ? now_text() : p.creation_time);
  q.exec();
}

void package_repository::remove(const std::string& name) {
  auto& q = db_.prepare("DELETE FROM Package WHERE Name=?");
  q.bind(1, name);
  q.exec();
}

namespace {
package_row read_package(statement& q) {
  package_row p;
  p.name = q.getColumn(0).getString();
  p.sha256 = q.getColumn(1).getString();
  p.size = q.getColumn(2).getInt64();
  p.format = q.getColumn(3).getString();
  p.creation_time = q.getColumn(4).getString();
  return p;
}
constexpr const char* package_columns =
  "SELECT Name, Sha256, Size, Format, CreationTime FROM Package ";
} // namespace

std::optional<package_row> package_repository::find(const std::string& name) {
  auto& q = db_.prepare(std::string(package_columns) + "WHERE Name=?");
  q.bind(1, name);
  if (!q.executeStep())
    return std::nullopt;
  return read_package(q);
}

std::vector<package_row> package_repository::list() {
  auto& q = db_.prepare(std::string(package_columns) + "ORDER BY Name");
  std::vector<package_row> out;
  while (q.executeStep())
    out.push_back(read_package(q));
  return out;
}

bool package_repository::sha_in_use(const std::string& sha256) {
  auto& q = db_.prepare("SELECT 1 FROM Package WHERE Sha256=? LIMIT 1");
  q.bind(1, sha256);
  return q.executeStep();
}

std::map<std::string, std::int64_t> package_repository::leased_blocks_by_node() {
  auto& q = db_.prepare("SELECT NodeId, count(*) FROM Block WHERE State=? GROUP BY NodeId");
  q.bind(1, static_cast<int>(block_state::used));
  std::map<std::string, std::int64_t> out;
  while (q.executeStep())
    out[q.getColumn(0).getString()] = q.getColumn(1).getInt64();
  return out;
}

std::vector<job_status_row> package_repository::open_application_nodes() {
  auto& q = db_.prepare(std::string(status_columns) +
                        "WHERE NodeId <> '' AND Status IN ('Starting','Running') "
                        "AND JobId IN (SELECT Id FROM Job WHERE JobType='application')");
  std::vector<job_status_row> out;
  while (q.executeStep())
    out.push_back(read_status(q));
  return out;
}

} // namespace spiderhub::storage

// ---- audit ------------------------------------------------------------------------------

namespace spiderhub::storage {

void audit_repository::add(const audit_row& row, std::int64_t max_rows) {
  auto& q = db_.prepare(
    "INSERT INTO Audit (Time, Role, Name, Address, Action, Target, Detail, Status) "
    "VALUES (?,?,?,?,?,?,?,?) RETURNING Id");
  q.bind(1, row.time.empty() ? now_text() : row.time);
  q.bind(2, row.role);
  q.bind(3, row.name);
  q.bind(4, row.address);
  q.bind(5, row.action);
  q.bind(6, row.target);
  q.bind(7, row.detail);
  q.bind(8, row.status);
  std::int64_t id = q.executeStep() ? q.getColumn(0).getInt64() : 0;
  q.reset();
  auto& d = db_.prepare("DELETE FROM Audit WHERE Id <= ?");
  d.bind(1, static_cast<std::int64_t>(id - std::max<std::int64_t>(1, max_rows)));
  d.exec();
}

std::vector<audit_row> audit_repository::list(std::int64_t limit, std::int64_t before) {
  auto& q = db_.prepare(
    "SELECT Id, Time, Role, Name, Address, Action, Target, Detail, Status FROM Audit "
    "WHERE Id < ? ORDER BY Id DESC LIMIT ?");
  q.bind(1, before > 0 ? before : std::numeric_limits<std::int64_t>::max());
  q.bind(2, limit);
  std::vector<audit_row> out;
  while (q.executeStep()) {
    audit_row r;
    r.id = q.getColumn(0).getInt64();
    r.time = q.getColumn(1).getString();
    r.role = q.getColumn(2).getString();
    r.name = q.getColumn(3).getString();
    r.address = q.getColumn(4).getString();
    r.action = q.getColumn(5).getString();
    r.target = q.getColumn(6).getString();
    r.detail = q.getColumn(7).getString();
    r.status = q.getColumn(8).getInt();
    out.push_back(std::move(r));
  }
  return out;
}

} // namespace spiderhub::storage

// ---- brokers ----------------------------------------------------------------------------

namespace spiderhub::storage {

void broker_repository::announce(const broker_row& b) {
  auto& q = db_.prepare(
    "INSERT INTO Broker (Name, Url, Role, LastSeen) VALUES (?,?,?,?) ON CONFLICT(Name) "
    "DO UPDATE SET Url=excluded.Url, Role=excluded.Role, LastSeen=excluded.LastSeen");
  q.bind(1, b.name);
  q.bind(2, b.url);
  q.bind(3, b.role);
  q.bind(4, b.last_seen.empty() ? now_text() : b.last_seen);
  q.exec();
}

std::vector<broker_row> broker_repository::list() {
  auto& q = db_.prepare("SELECT Name, Url, Role, LastSeen FROM Broker ORDER BY LastSeen DESC");
  std::vector<broker_row> out;
  while (q.executeStep())
    out.push_back({q.getColumn(0).getString(), q.getColumn(1).getString(),
                   q.getColumn(2).getString(), q.getColumn(3).getString()});
  return out;
}

} // namespace spiderhub::storage
