#pragma once
// Application processes of a node (application jobs).
//
// run(RunApplication): refuse when maxProcessCount is reached -> download the package from
// the broker (sha256 verified, cached by hash) -> check and extract it into
// work_dir/{identity} -> start `application` with its arguments in its own process group
// (Boost.Process), stdout/stderr into log_dir/{identity}/{stdout,stderr}.log with a quota
// and rotation -> report started, output tails (≤ 1 per stream and second) and the exit.
// exit(identity): SIGTERM to the process group, SIGKILL after the grace period.
// When the main process ends, what is left of its group is terminated too: a run owns
// its whole process tree.
//
// All work runs on the runner's own thread (an Asio io_context) plus one short-lived
// thread per package download; every public method is thread-safe. Events are called
// from the runner's thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/archive.hpp"
#include "protocol/types.hpp"

namespace spiderhub::actors {

struct app_runner_options {
  std::string work_dir = "data/projects";
  std::string log_dir = "data/logs";
  std::string cache_dir = "data/package-cache";
  std::chrono::milliseconds exit_grace{30000};
  std::int64_t log_max_bytes = 10 << 20;
  std::int32_t log_files = 3;
  std::int32_t max_process_count = 5;
  std::int64_t max_package_bytes = 256 << 20;
  std::int64_t cache_max_bytes = std::int64_t{1} << 30;  // oldest packages evicted beyond it
  core::archive_limits limits;
  std::chrono::milliseconds download_timeout{300000};
  bool tls_verify = true;                                 // https package URLs: check the
  std::string tls_ca_file;                                // broker against this CA ("" = system)
  std::chrono::milliseconds tail_interval{1000};         // output tails sent at most this often
  std::size_t tail_max_bytes = 16 << 10;                  // per stream and interval
  /// URL of a package on the broker, signed for this node.
  std::function<std::string(const std::string& package)> package_url;
  std::string node_id;
  // Containment (docs/security.md). A node running as root runs packages as `run_as`
  // (its files chowned to that user), and refuses them without it unless `allow_root`.
  std::string run_as;
  bool allow_root = false;
  std::int64_t max_memory_mb = 1024;   // memory cgroup limit (v2 or v1), RLIMIT_AS at 2x
  std::int32_t max_processes = 256;    // RLIMIT_NPROC (counts every process of the user)
  std::int32_t max_open_files = 1024;  // RLIMIT_NOFILE
  std::string cgroup_root;             // "" = found at start (/sys/fs/cgroup...); "-" = none
  bool isolate = true;                 // with run_as: own mount namespace and root
};

struct app_events {
  std::function<void(protocol::application_started)> started;
  std::function<void(protocol::application_exited)> exited;
  std::function<void(protocol::application_log)> log;
};

class app_runner {
 public:
  app_runner(app_runner_options opts, app_events events);
  ~app_runner();  // stop()
  app_runner(const app_runner&) = delete;
  app_runner& operator=(const app_runner&) = delete;

  void start();
  /// Terminates every process (SIGTERM, then SIGKILL after min(grace, 5 s)), joins threads.
  void stop();
  void run(protocol::run_application r);
  /// Stops a run's process tree; false when this node has no such run.
  void exit(const std::string& identity);
  /// Runs being prepared or running (what counts against maxProcessCount).
  int process_count() const;
  /// Live processes, re-announced to the broker after a reconnect.
  std::vector<protocol::application_started> running() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// Splits an argument string like a shell would, without running one: whitespace
/// separates, '…' and "…" quote, backslash escapes outside single quotes.
/// Throws core::input_error on an unterminated quote.
std::vector<std::string> split_arguments(const std::string& s);

} // namespace spiderhub::actors
