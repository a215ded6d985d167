#pragma once
// Repositories: one class per table family, each a thin set of prepared SQL calls
// on a storage::database. Callers own transactions (the storage actor batches).
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "storage/database.hpp"
#include "storage/records.hpp"

namespace spiderhub::storage {

class node_repository {
 public:
  explicit node_repository(database& d) : db_(d) {}
  /// Insert or update by id (metadata, online flag, LastSeen = now).
  void upsert(const node_row& n);
  void set_online(const std::string& id, bool online);
  void set_enabled(const std::string& id, bool enabled);
  void touch(const std::string& id);
  void add_status(const node_status_row& s);
  /// Deletes statuses older than `retention_hours`; returns rows removed.
  int prune_status(int retention_hours);
  std::vector<node_row> list();
  std::optional<node_row> find(const std::string& id);
  std::vector<node_status_row> statuses(const std::string& node_id, int limit);
  /// Marks every node offline (broker start: no session survives a restart).
  void mark_all_offline();

 private:
  database& db_;
};

class job_repository {
 public:
  explicit job_repository(database& d) : db_(d) {}
  void insert(const job_row& j);
  /// Replaces fields and properties; false when the id does not exist (or is deleted).
  bool update(const job_row& j);
  bool soft_delete(const std::string& id);
  void set_last_fire(const std::string& id, std::int64_t unix_seconds);
  /// LastFire = max(LastFire, unix_seconds).
  void raise_last_fire(const std::string& id, std::int64_t unix_seconds);
  std::optional<job_row> find(const std::string& id);
  /// Not deleted jobs, newest first.
  std::vector<job_row> list();

 private:
  void load_properties(job_row& j);
  database& db_;
};

class run_repository {
 public:
  explicit run_repository(database& d) : db_(d) {}
  void insert_running(const running_row& r);
  void remove_running(const std::string& identity);
  void set_worker_completed(const std::string& identity);
  void set_consuming(const std::string& identity, int consuming);
  std::vector<running_row> running();
  std::optional<running_row> find_running(const std::string& identity);
  void upsert_status(const job_status_row& s);
  std::vector<job_status_row> statuses(const std::string& job_id);   // "" = all, newest first
  std::vector<job_status_row> statuses_of_run(const std::string& identity);
  /// Fires the scheduler committed but may not have executed yet (crash window).
  void add_pending_fire(const std::string& job_id, std::int64_t due, const std::string& identity);
  void remove_pending_fire(const std::string& job_id, std::int64_t due);
  struct pending_fire {
    std::string job_id;
    std::int64_t due = 0;
    std::string identity;
  };
  std::vector<pending_fire> pending_fires();

 private:
  database& db_;
};

class crawl_repository {
 public:
  explicit crawl_repository(database& d) : db_(d) {}
  /// Inserts the request at (identity, seq) unless that row exists; true when it was new.
  /// Rows are keyed by push order, not by hash: the caller (the run's dedup set, rebuilt
  /// from for_each_request_hash) keeps a run's hashes unique.
  bool insert_request(const request_row& r);
  /// Records a request's outcome and drops its body (the hash stays for dedup).
  void finish_request(const std::string& identity, std::int64_t seq, request_state s);
  request_totals totals(const std::string& identity);
  void upsert_block(const block_row& b);
  void set_block_state(const std::string& id, block_state s, const std::string& node_id,
                       std::int64_t lease_until, std::int32_t attempts);
  std::int64_t insert_result(const result_row& r);
  int delete_results(const std::string& identity, const std::vector<std::int64_t>& ids);
  /// At most `limit` results after `after_id`, oldest first, whose stored sizes add up to at
  /// most `max_bytes` (the first one always, however big); `*cut` tells whether the byte
  /// budget, not the end of the results or `limit`, ended the read.
  std::vector<result_row> results_after(const std::string& identity, std::int64_t after_id,
                                        int limit,
                                        std::int64_t max_bytes = std::numeric_limits<std::int64_t>::max(),
                                        bool* cut = nullptr);
  /// The results of `ids` still stored, in that order, within `max_bytes` as above (a
  /// worker's results handed out again after its connection closed).
  std::vector<result_row> results_by_ids(const std::string& identity,
                                         const std::vector<std::int64_t>& ids,
                                         std::int64_t max_bytes, bool* cut = nullptr);
  std::int64_t count_results(const std::string& identity);
  /// (id, stored body bytes) of every result of a run, oldest first: what waits for its
  /// worker, read back at a restart.
  std::vector<std::pair<std::int64_t, std::int64_t>> result_sizes(const std::string& identity);
  /// Requests of a run not downloaded yet (State pending, body kept), in push order.
  std::vector<request_row> pending_requests(const std::string& identity);
  /// The oldest `max_rows` spilled requests of a run after `after_seq` (push order). They
  /// stay spilled in their rows (no write per request) until downloaded (finish_request);
  /// the caller reads on from the last Seq it got. A restart, whose memory is empty, reads
  /// every spilled row again from the start.
  std::vector<request_row> unspill_requests(const std::string& identity, std::int64_t after_seq,
                                            std::int64_t max_rows);
  /// How many of a run's requests are spilled and not downloaded (at a restart: how many
  /// wait on disk only).
  std::int64_t spilled(const std::string& identity);
  /// The highest Seq of a run's requests, any state (0 for none): new ones follow it.
  std::int64_t last_seq(const std::string& identity);
  /// Every request hash of a run, streamed (the dedup set of 10 M URLs without a copy).
  void for_each_request_hash(const std::string& identity,
                             const std::function<void(const std::string&)>& fn);
  std::vector<block_row> blocks(const std::string& identity);
  /// A block whose requests went back to their queue (lease lost): its id is not used again.
  void delete_block(const std::string& id);
  /// Ready and leased blocks of a run (after a restart their leases are void).
  void delete_open_blocks(const std::string& identity);
  /// Removes up to `max_rows` result, request and block rows of a finished run; the
  /// delivered blocks are added to its status row's `blocks`, the rest of JobStatus stays.
  /// Returns how many rows went, 0 when none is left.
  int purge_run(const std::string& identity, int max_rows);
  /// Runs that are not running but still have request or result rows (a purge cut short
  /// by a restart).
  std::vector<std::string> finished_run_leftovers();

 private:
  database& db_;
};

} // namespace spiderhub::storage

namespace spiderhub::storage {

class worker_repository {
 public:
  explicit worker_repository(database& d) : db_(d) {}
  void connected(const std::string& full_class_name, const std::string& connection_id);
  void disconnected(const std::string& connection_id);
  /// Closes rows left open by a previous broker process.
  void close_all();

 private:
  database& db_;
};

/// Application packages (metadata; the bytes are files named by hash) and the per-node
/// state of application runs.
class audit_repository {
 public:
  explicit audit_repository(database& db) : db_(db) {}
  /// Appends a row and drops the oldest beyond `max_rows`.
  void add(const audit_row& row, std::int64_t max_rows);
  /// Newest first: at most `limit` rows with an id below `before` (0: from the newest).
  std::vector<audit_row> list(std::int64_t limit, std::int64_t before = 0);

 private:
  database& db_;
};

/// The brokers sharing the database (empty with SQLite: one broker).
class broker_repository {
 public:
  explicit broker_repository(database& db) : db_(db) {}
  void announce(const broker_row& b);
  /// Newest first.
  std::vector<broker_row> list();

 private:
  database& db_;
};

class package_repository {
 public:
  explicit package_repository(database& db) : db_(db) {}
  void upsert(const package_row& p);
  void remove(const std::string& name);
  std::optional<package_row> find(const std::string& name);
  std::vector<package_row> list();
  bool sha_in_use(const std::string& sha256);
  /// Per-node JobStatus rows of application runs still Starting or Running.
  std::vector<job_status_row> open_application_nodes();
  /// Blocks currently leased (state used), counted by node id.
  std::map<std::string, std::int64_t> leased_blocks_by_node();

 private:
  database& db_;
};

} // namespace spiderhub::storage
