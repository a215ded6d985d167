#pragma once
// The storage actor: the only owner of the database connection (SQLite or PostgreSQL).
// Runs detached (its own thread) so the database never blocks the scheduler. Writes are
// batched: every write that arrives while a batch is open joins one transaction, and
// each caller gets its reply only after that transaction committed.
//
//   idle --write--> batching --flush (after the mailbox drains)--> commit --> idle
//                                \--read--> commit pending writes first, then read
#include <memory>
#include <set>
#include <string>

#include <functional>

#include "protocol/messages.hpp"
#include "storage/database.hpp"
#include "storage/records.hpp"

// Row types that travel in read replies (local messages only).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::optional<spiderhub::storage::job_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::job_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::job_status_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::node_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::node_status_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::running_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::optional<spiderhub::storage::package_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::package_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::audit_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::broker_row>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::set<std::string>)

namespace spiderhub::actors {

struct storage_options {
  storage::open_options open;            // which database (sqlite file or postgresql)
  int batch_max = 5000;
  /// Called once (from the storage thread) when a write was refused because another
  /// broker took the leadership: the broker must stop serving.
  std::function<void(const std::string&)> on_fenced;
};

/// Options for a SQLite file with the defaults (tests, benchmarks).
inline storage_options sqlite_storage(const std::string& path) {
  storage_options o;
  o.open.path = path;
  return o;
}

/// Opens the database in the caller's thread (so errors surface at startup) and spawns
/// the actor around it. Throws std::runtime_error on open or migration failure.
caf::actor spawn_storage(caf::actor_system& sys, const storage_options& opts);

/// Appends `row` to the audit trail (keeping the newest `max_rows`). Sent anonymously:
/// the storage actor's reply must not reach the caller.
void record_audit(const caf::actor& storage, storage::audit_row row, std::int64_t max_rows);

} // namespace spiderhub::actors
