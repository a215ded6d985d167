#pragma once
// Plain row structs of the broker database (no SQLite, no CAF types).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace spiderhub::storage {

struct node_row {
  std::string id;
  std::int32_t node_type = 1;
  std::string ip;
  std::int32_t processor_count = 0;
  std::string group = "default";
  std::string os;
  std::int32_t memory = 0;
  bool is_enabled = true;
  bool is_online = false;
  std::string creation_time;
  std::string last_seen;
};

struct node_status_row {
  std::int64_t id = 0;
  std::string node_id;
  std::int32_t process_count = 0;
  std::int32_t cpu = 0;
  std::int32_t free_memory = 0;
  std::string creation_time;
};

struct job_row {
  std::string id;
  std::string name;
  std::string job_type;   // block | application
  std::string cron;
  std::string description;
  bool is_enabled = true;
  bool is_deleted = false;
  std::string creation_time;
  std::int64_t last_fire = 0;  // unix seconds of the last due time handled (fired or missed)
  std::map<std::string, std::string> properties;
};

struct running_row {
  std::string job_id;
  std::string identity;
  std::int32_t consuming = 0;
  std::int32_t priority = 0;
  std::string creation_time;
  bool worker_completed = false;
  std::string arguments;
  std::string site_json = "{}";
  std::string full_class_name;   // worker class that consumes the run
};

struct job_status_row {
  std::string job_id;
  std::string identity;
  std::string node_id;   // "" for the run as a whole
  std::string status;    // Running, Success, Failed, Exited, Lost, ...
  std::int64_t left = 0, success = 0, error = 0, total = 0;
  std::int64_t skipped = 0;  // block runs: requests robots.txt disallowed (not downloaded)
  std::string reason;
  std::string update_time;
  std::optional<std::int32_t> exit_code;  // application runs: the node's process exit code
  // Block runs, the run's row: the blocks it delivered, counted when its Block rows are
  // purged after it finished (0 until then; upsert_status leaves it alone).
  std::int64_t blocks = 0;
  // Block runs: requests the run's scope and trap limits cut, by reason
  // (core::cut_reasons), as a JSON object; "" when none were.
  std::string cut;
};

/// An uploaded application package; the bytes live in the package directory as
/// <sha256>.<format>.
struct package_row {
  std::string name;
  std::string sha256;
  std::int64_t size = 0;
  std::string format;    // "zip" | "tar.gz"
  std::string creation_time;
};

/// One audited write: who (role and credential name, never a secret), from where, what.
/// A broker sharing the database (PostgreSQL failover), as it last announced itself.
struct broker_row {
  std::string name;
  std::string url;
  std::string role;       // active | standby
  std::string last_seen;
};

struct audit_row {
  std::int64_t id = 0;
  std::string time;      // ISO-8601 UTC, set when stored
  std::string role;      // "admin", "callback" (Scheduler.NET), "console", or "" (auth off)
  std::string name;      // credential name
  std::string address;   // source IP ("" for the console)
  std::string action;    // job.create, job.update, job.delete, job.trigger, run.exit,
                         // package.upload, package.delete, node.disable, node.enable
  std::string target;    // job id, run identity, package name or node id
  std::string detail;    // what changed: the request body (at most 4 KiB) or its size
  std::int32_t status = 0;  // HTTP status of the answer (console: 200 or 4xx)
};

/// Block states of the design.
enum class block_state : std::int32_t { ready = 1, used = 2, success = 4, failed = 8 };

struct block_row {
  std::string id;
  std::string identity;
  block_state state = block_state::ready;
  std::string node_id;
  std::int64_t lease_until = 0;  // unix ms
  std::int32_t attempts = 0;
  std::string creation_time;
  std::string hashes;  // request hashes of the block, comma separated
};

struct request_row {
  std::string identity;
  std::string hash;
  std::optional<std::string> body;      // JSON of the request; dropped once downloaded
  std::int32_t state = 0;               // request_state
  std::int64_t seq = 0;                 // push order within the run (the row's key)
};

/// Outcome of one request, kept after its body is dropped so totals survive restarts.
/// `spilled`: waiting on disk only (beyond the run's in-memory frontier), read back in
/// `Seq` order and set to `pending` as it is queued in memory.
enum class request_state : std::int32_t { pending = 0, success = 1, error = 2, skipped = 3, spilled = 4 };

struct request_totals {
  std::int64_t total = 0, success = 0, error = 0, skipped = 0;
};

struct result_row {
  std::int64_t id = 0;
  std::string identity;
  std::string block_id;
  std::string request_hash;
  std::string body;   // JSON of protocol::result without resultId
  std::int64_t seq = 0;  // the request's Seq (0 = unknown: rows from before schema 10)
};

} // namespace spiderhub::storage
