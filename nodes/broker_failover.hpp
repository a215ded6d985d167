#pragma once
// Failover of brokers sharing one PostgreSQL database (storage.kind postgresql): a broker
// waits as a standby until it holds the leader lease (storage/leader.hpp), keeps the
// lease renewed while it serves, and steps down (re-executes itself as a standby) the
// moment it learns another broker took over.
//
//   standby --lease lapsed: take it (token+1)--> leader --renewal refused, or a write
//      ^                                           |      fenced, or no renewal for a
//      +------------- re-exec (steps down) <-------+      whole lease--+
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/config.hpp"
#include "net/http_server.hpp"
#include "storage/leader.hpp"

namespace spiderhub::nodes {

/// Remembers the command line so a deposed leader can start again as a standby.
void remember_command_line(int argc, char** argv);

/// Replaces this process by a fresh one with the same command line (it comes up as a
/// standby). Never returns; `why` is logged first.
[[noreturn]] void step_down(const std::string& why);

/// Serves every HTTP request with 503 {"status":"standby",...} (the /healthz of a standby,
/// and a refusal hub clients take as "try the next broker") until this broker holds the
/// lease; connects `lease` first (retrying while the database cannot be reached). The
/// fencing token, or nullopt when SIGINT/SIGTERM came first.
/// `server`: the gateway's listening options (address, port, TLS, timeouts).
std::optional<std::int64_t> wait_for_leadership(const core::broker_config& cfg,
                                                net::server_options server,
                                                std::unique_ptr<storage::leader_lease>& lease);

/// Renews the lease in its own thread every third of its length; steps down when the
/// database says another broker holds it, or when no renewal succeeded for a whole lease
/// (a standby may have taken over). stop() ends renewing and releases the lease.
class lease_keeper {
 public:
  lease_keeper(storage::leader_lease& lease, std::int64_t token,
               std::chrono::milliseconds lease_length);
  ~lease_keeper();
  void stop_and_release();

 private:
  void run();
  storage::leader_lease& lease_;
  std::int64_t token_;
  std::chrono::milliseconds every_, length_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

/// This broker's name in the leader row: failover.name, else host:pid.
std::string broker_name(const core::broker_config& cfg);

} // namespace spiderhub::nodes
