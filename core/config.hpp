#pragma once
// Typed configuration of every program, loaded from YAML (conf/*.yaml documents each key).
// Loading rejects unknown keys, wrong types and out-of-range values with file:line:column.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/auth.hpp"

namespace spiderhub::core {

using std::chrono::milliseconds;

struct log_config {
  std::string level = "info";            // trace debug info warn error critical off
  std::string file;                      // empty: stderr only
  std::int64_t max_file_bytes = 10 << 20;
  std::int32_t max_files = 5;
};

// The CAF actor system of a broker or node process.
struct actors_config {
  std::int32_t threads = 0;              // scheduler worker threads; 0 = one per core (min 2)
  std::string policy = "sharing";        // sharing: idle workers sleep until work arrives;
                                         // stealing: idle workers poll (CAF's default)
};

struct broker_config {
  struct http_t {
    std::string address = "127.0.0.1";  // off loopback only with strong secrets
    std::int32_t port = 55626;
    std::int32_t io_threads = 1;
    std::int64_t max_body_bytes = 8 << 20;
    std::int64_t max_message_bytes = 16 << 20;
    std::int64_t max_write_queue_bytes = 64 << 20;  // bytes queued to one slow peer before it is cut
    milliseconds handshake_timeout{10000};
    milliseconds idle_timeout{60000};
    std::int32_t max_connections = 20000;
    std::string tls_cert;
    std::string tls_key;
  } http;
  struct auth_t {
    std::string token = "1234";          // one secret for every role (cleared by default
                                         // when `tokens` is given)
    std::vector<credential> tokens;      // per-role secrets, several per role (rotation)
    bool insecure = false;               // allow a weak or no secret off loopback
    std::int32_t sign_window_s = 300;
    std::int32_t max_failures = 20;      // failed authentications of one address ...
    std::int32_t failure_window_s = 60;  // ... within this window block it ...
    std::int32_t block_s = 60;           // ... for this long (HTTP 429)
  } auth;
  struct storage_t {
    std::string kind = "sqlite";         // sqlite | postgresql
    std::string path = "data/spiderhub.db";
    std::string postgresql;              // libpq connection string (kind postgresql)
    milliseconds busy_timeout{5000};
    std::int32_t batch_max = 5000;       // writes per transaction
    bool compress_results = true;        // sqlite: result bodies LZ4-packed until acked
    bool result_spool = true;            // sqlite: result bodies in segment files, not rows
    std::string spool_dir;               // "" = the database path + ".results"
    std::int32_t spool_segment_mb = 64;  // a new segment file after this many MB
    bool spool_sync = false;             // fdatasync the spool before every commit
    std::int32_t compress_spool_above_mb = 256;  // spool: bodies packed past this backlog
    std::int32_t node_status_retention_h = 24;
    std::int64_t audit_max_rows = 100000;  // newest audit rows kept
  } storage;
  struct failover_t {                    // several brokers on one PostgreSQL database
    std::string name;                    // this broker in logs and the leader row ("" = host:pid)
    std::string advertise_url;           // how clients reach this broker (shown by standbys)
    milliseconds lease{5000};            // the leader's lease; a standby takes over after it lapses
    milliseconds poll{500};              // how often a standby looks at the lease
  } failover;
  struct sessions_t {
    milliseconds heartbeat_interval{5000};
    std::int32_t missed_heartbeats = 3;  // then the node is offline and its leases return
  } sessions;
  struct dispatch_t {
    std::int32_t block_size = 100;       // requests per block
    milliseconds lease_timeout{60000};
    std::int32_t max_attempts = 5;       // leases of one block before it is failed
    std::int32_t max_redirects = 20;     // redirect hops of one request
    std::int32_t thread_num = 8;         // downloads in parallel per block on a node
    std::int32_t max_poll = 1000;        // results per Poll at most
    std::int64_t max_poll_bytes = 4 << 20;  // result bytes per Poll reply (at least one result)
    std::int64_t max_body_bytes = 10 << 20; // largest body a node returns; more: too_large
    std::int32_t blocks_per_node = 256;  // leased blocks one node may hold at once
    std::int64_t frontier_memory_max = 50000;   // requests of a run waiting in memory; 0 = all
    std::int64_t max_unacked = 20000;           // results waiting for the worker; then no new blocks (0 = off)
    std::int64_t max_unacked_bytes = 1LL << 30; // ... or their bytes (0 = off)
    milliseconds slow_node_block{2000};  // a node far slower than the fastest gets blocks
                                         // of about this long (0 = same blocks for all)
  } dispatch;
  struct politeness_t {                  // per politeness key, all nodes together
    std::string key = "host";            // host (scheme://host:port) | domain (registered)
    std::int32_t max_concurrency_per_host = 8;
    milliseconds delay{0};               // between two request starts of one key
    milliseconds max_delay{60000};       // cap of Crawl-delay and error backoff
    bool robots = true;                  // fetch and obey robots.txt
    bool adaptive = true;                // tune concurrency from latency and errors
    milliseconds robots_ttl{86400000};   // robots.txt fetched again after this
    milliseconds robots_retry{2000};     // first retry of an unreachable robots.txt (doubles)
    std::int32_t robots_max_attempts = 3; // then the origin's requests fail
    milliseconds backoff_initial{1000};  // first pause after repeated errors (doubles)
    std::int32_t backoff_after_errors = 2; // consecutive 5xx/timeouts that start a backoff
  } politeness;
  struct scheduler_t {
    std::string kind = "builtin";        // builtin | schedulernet
    std::string timezone = "UTC";
    std::int32_t misfire_grace_s = 60;
    std::string schedulernet_url;
    std::string schedulernet_token;
    std::string callback_base_url;       // how Scheduler.NET reaches this broker
  } scheduler;
  struct inspector_t {
    bool enabled = true;
    std::string address = "127.0.0.1";
    std::int32_t port = 4242;
    std::string secret;                  // required when address is not loopback
  } inspector;
  struct packages_t {
    std::string dir = "data/packages";   // uploaded packages, stored as <sha256>.<format>
    std::int64_t max_bytes = 64 << 20;   // upload size limit
    std::int64_t max_unpacked_bytes = std::int64_t{1} << 30;
  } packages;
  struct placement_t {                   // which nodes may start an application
    std::int32_t max_cpu = 90;           // percent; busier nodes are skipped
    std::int32_t min_free_memory_mb = 150;
    std::int32_t online_window_s = 60;   // last heartbeat at most this old
  } placement;
  actors_config actors;
  log_config log;
};

/// How a node or worker checks the broker's certificate on https:// and wss:// URLs.
struct client_tls_config {
  std::string ca_file;                   // PEM CA bundle; "" = the system's trust store
  bool verify = true;                    // false: any certificate (tests only; logged)
};

struct node_config {
  // Broker base URLs (`broker:` one URL, "URL1,URL2" or a YAML list): several brokers on
  // one database, the node connects to whichever is active (rotating over the list).
  std::vector<std::string> brokers{"http://localhost:55626/"};
  std::string token = "1234";
  client_tls_config tls;
  std::string node_id;                   // empty: generated once, kept in id_file
  std::string id_file = "data/node.id";
  std::string group = "default";
  std::int32_t node_type = 1;            // 1 console, 2 web
  std::int32_t max_process_count = 5;
  milliseconds heartbeat_interval{5000};
  std::int32_t retry_download = 3;
  struct download_t {
    std::int32_t max_blocks = 256;       // blocks downloaded at once (free slots)
    milliseconds timeout{30000};
    milliseconds connect_timeout{10000};
    std::int64_t max_body_bytes = 32 << 20;
    std::int32_t max_redirects = 5;
    milliseconds retry_backoff{500};     // first retry delay, doubled each time
    std::string change_ip_command;
    std::chrono::milliseconds change_ip_min_interval{5000};  // between two IP changes
    std::int32_t results_batch = 50;     // results per SaveBlockResponse
    std::int64_t results_batch_bytes = 4 << 20;  // ...or fewer once their bodies reach this
    std::int64_t max_buffered_bytes = 256 << 20; // bodies not yet stored by the broker; then no new transfer
    bool allow_private_addresses = false;        // downloads may reach loopback/private addresses
    milliseconds results_flush{200};     // a partial batch waits at most this long
  } download;
  struct reconnect_t {
    milliseconds initial{500};
    milliseconds max{30000};
  } reconnect;
  struct render_t {                      // headless Chromium for runs whose Site asks render
    bool enabled = false;
    std::string chromium = "/usr/bin/chromium";
    std::int32_t max_tabs = 4;           // pages rendering at once = render slots announced
  } render;
  struct apps_t {
    std::string work_dir = "data/projects";
    std::string log_dir = "data/logs";
    std::string cache_dir = "data/package-cache";
    milliseconds exit_grace{30000};
    std::int64_t log_max_bytes = 10 << 20;
    std::int32_t log_files = 3;
    std::int64_t max_package_bytes = 256 << 20;
    std::int64_t max_unpacked_bytes = std::int64_t{1} << 30;
    std::int64_t cache_max_bytes = std::int64_t{1} << 30;
    std::string run_as;                  // user packages run as (required as root)
    bool allow_root = false;             // run packages as root when run_as is not set
    std::int64_t max_memory_mb = 1024;   // memory cgroup limit; RLIMIT_AS at twice that
    std::int32_t max_processes = 256;    // RLIMIT_NPROC of the run's user
    std::int32_t max_open_files = 1024;  // RLIMIT_NOFILE
    std::string cgroup_root;             // "" = found; "-" = no cgroup
    bool isolate = true;                 // with run_as: own root, the run's directory at /work
  } applications;
  actors_config actors;
  log_config log;
};

struct worker_config {
  std::vector<std::string> brokers{"http://localhost:55626/"};  // as node_config::brokers
  std::string token = "1234";
  client_tls_config tls;
  std::string full_class_name = "spiderhub.samples.SiteSpider";
  std::int32_t poll_max = 500;
  std::int64_t poll_max_bytes = 4 << 20; // result bytes per Poll (the broker caps it too)
  milliseconds poll_idle{50};            // sleep when a poll returned nothing
  milliseconds poll_wait{1000};          // the broker may hold an empty poll this long (0: no)
  std::int32_t parse_threads = 0;        // threads parsing a batch; 0 = one per core (max 8)
  milliseconds reconnect_max{10000};
  milliseconds idle_timeout{20000};      // nothing from the broker this long: reconnect
  log_config log;
};

/// Throws input_error when `tls.ca_file` names no readable file; warns (spdlog) when
/// verification is off. Called by the node and the worker before they connect.
void check_client_tls(const client_tls_config& tls, const std::vector<std::string>& brokers,
                      const std::string& file);

/// Loaders throw core::input_error("FILE:LINE:COL: message") on any bad input.
broker_config load_broker_config(const std::string& file);
node_config load_node_config(const std::string& file);
worker_config load_worker_config(const std::string& file);
/// Same, from YAML text (`name` is used in messages); for tests and fuzzing.
broker_config parse_broker_config(const std::string& yaml, const std::string& name);
node_config parse_node_config(const std::string& yaml, const std::string& name);
worker_config parse_worker_config(const std::string& yaml, const std::string& name);

} // namespace spiderhub::core
