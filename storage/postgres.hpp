#pragma once
// PostgreSQL backend of storage::database (libpq). One connection, used by one thread
// (the storage actor's); statements are prepared once per connection and their
// parameters sent as text. A lost connection is re-opened at the next transaction.
#include <memory>
#include <string>
#include <unordered_map>

#include "storage/database.hpp"

struct pg_conn;

namespace spiderhub::storage {

/// An error reported by the server or libpq; `sqlstate` is empty for connection errors.
struct pg_error : std::runtime_error {
  pg_error(const std::string& what, std::string state)
    : std::runtime_error(what), sqlstate(std::move(state)) {}
  std::string sqlstate;
};

class pg_statement;

class pg_database final : public database {
 public:
  /// Connects and migrates (migrations of concurrent brokers are serialised by an
  /// advisory lock). `idle_in_tx` ends this connection's session on the server when it
  /// sits inside a transaction that long (a paused broker must not hold locks forever;
  /// 0 = no limit). Throws std::runtime_error with libpq's message.
  explicit pg_database(const std::string& conninfo,
                       std::chrono::milliseconds idle_in_tx = std::chrono::milliseconds(0));
  ~pg_database() override;

  kind backend() const override { return kind::postgresql; }
  std::string describe() const override { return where_; }
  statement& prepare(const std::string& sql) override;
  void exec(const std::string& sql) override;
  void reset_statements() override;
  int version() override;
  std::int64_t release_free_pages(int) override { return 0; }
  void truncate_wal() override {}
  void begin() override;
  void commit() override;
  void rollback() override;
  bool autocommit() override;
  bool unavailable(const std::exception& e) const override;
  void set_fence(std::int64_t token) override { fence_ = token; }

  pg_conn* connection();
  /// Generation of the connection: statements re-prepare after a reconnect.
  std::uint64_t generation() const { return generation_; }
  /// Next statement name on this connection.
  std::string next_name() { return "s" + std::to_string(++names_); }

 private:
  void connect();
  void ensure_connected();
  void migrate();
  std::string conninfo_;
  std::string where_;
  std::chrono::milliseconds idle_in_tx_;
  pg_conn* conn_ = nullptr;
  std::uint64_t generation_ = 0;
  std::uint64_t names_ = 0;
  std::int64_t fence_ = 0;
  bool in_tx_ = false;
  std::unordered_map<std::string, std::unique_ptr<pg_statement>> statements_;
};

/// Where a libpq connection string points (host, port, database, user), without secrets.
std::string describe_conninfo(const std::string& conninfo);

} // namespace spiderhub::storage
