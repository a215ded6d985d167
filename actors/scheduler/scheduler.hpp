#pragma once
// Built-in cron scheduler: fires each enabled job once per due time.
//
// Exactly once across restarts: before a fire is sent, one storage transaction sets
// Job.LastFire = due and records a PendingFire(job, due, identity) row; the row is
// removed when the job manager has answered. After a crash the pending rows are
// replayed with their identity, and the job manager skips identities that already
// have a run. Due times missed while the broker was down fire once if the latest is
// within the misfire grace, and are recorded as missed otherwise.
//
//   load jobs --> arm timer at the earliest due --> tick: fire due jobs --> re-arm
//        ^                                                      |
//        +------------- jobs_changed (API create/update/delete) -+
#include <chrono>
#include <string>

#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct scheduler_options {
  std::string timezone = "UTC";
  std::chrono::seconds misfire_grace{60};
};

caf::actor spawn_scheduler(caf::actor_system& sys, caf::actor storage, caf::actor jobs,
                           scheduler_options opts);

} // namespace spiderhub::actors
