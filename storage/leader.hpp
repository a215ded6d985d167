#pragma once
// Leader election of brokers sharing one PostgreSQL database: a lease row with a fencing
// token (table BrokerLeader, one row). A broker becomes the leader by taking a lapsed
// lease, which bumps the token; it renews the lease well inside its length; every
// transaction of the leader checks the token (storage::database::set_fence), so a
// deposed leader that wakes up (pause, partition) writes nothing. Times are the
// database server's clock: the brokers' clocks do not matter.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace spiderhub::storage {

class pg_database;

class leader_lease {
 public:
  /// Own connection (the storage actor's stays free for data). Throws std::runtime_error
  /// when the database cannot be reached or migrated.
  leader_lease(const std::string& conninfo, std::string holder, std::string url,
               std::chrono::milliseconds lease);
  ~leader_lease();

  /// Takes the lease when it has lapsed (or was released); the new fencing token.
  std::optional<std::int64_t> try_acquire();
  enum class renewal { renewed, deposed };
  /// Extends the lease of `token`; deposed when another broker holds a newer token.
  /// Throws on a database error (the caller decides how long it may go without).
  renewal renew(std::int64_t token);
  /// Ends the lease of `token` at once (clean shutdown): a standby takes over without
  /// waiting for it to lapse.
  void release(std::int64_t token);

  struct holder_info {
    std::string holder;
    std::string url;
    std::int64_t token = 0;
    bool live = false;   // the lease has not lapsed
  };
  holder_info current();
  /// Records this broker in the Broker table ("active" or "standby", now).
  void announce(const std::string& role);

  const std::string& holder() const { return holder_; }

 private:
  std::unique_ptr<pg_database> db_;
  std::string holder_;
  std::string url_;
  std::chrono::milliseconds lease_;
};

} // namespace spiderhub::storage
