#pragma once
// REST API actor: answers (http_atom, http_call) from the gateway. Reads and writes go
// through the storage actor, fires and exits through the job manager; it never blocks.
//
// Routes (JSON; "Authorization: Bearer <token>" when authentication is on: GET and HEAD
// need a viewer or admin token, every other method an admin token; docs/security.md):
//   GET  /metrics                         Prometheus text (viewer)
//   GET  /api/v1.0/jobs                   list          POST /api/v1.0/jobs   create
//   GET|PUT|DELETE /api/v1.0/jobs/{id}    read, replace, soft delete
//   POST /api/v1.0/jobs/{id}/trigger      fire now (also the Scheduler.NET callback)
//   GET  /api/v1.0/runs?jobId=            runs with JobStatus
//   POST /api/v1.0/runs/{identity}/exit   stop a run
//   GET  /api/v1.0/nodes                  nodes         GET /api/v1.0/nodes/{id}/status
//   GET  /api/v1.0/audit?limit=&before=   the audit trail of writes, newest first (admin)
#include <string>

#include "actors/gateway/auth_gate.hpp"
#include "actors/gateway/packages.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct api_options {
  auth_gate_ptr auth;         // null or open keyring: no auth
  std::int64_t audit_max_rows = 100000;   // newest audit rows kept
  std::string timezone = "UTC";
  package_options packages;
  std::int64_t max_body_bytes = 8 << 20;  // every route but the package upload
};

struct api_peers {
  caf::actor storage;
  caf::actor jobs;
  caf::actor dispatcher;
  caf::actor scheduler;       // told (jobs_changed_atom) after every job change; may be null
};

caf::actor spawn_api(caf::actor_system& sys, api_options opts, api_peers peers);

} // namespace spiderhub::actors
