#pragma once
// Scheduler.NET mode (scheduler.kind: schedulernet): the cron timing lives in an external
// Scheduler.NET service; this actor keeps the service's callback jobs in step with the
// broker's jobs, and the service fires a job by calling its trigger URL back.
//
//   api --(jobs_changed, id, created|updated|deleted)--> schedulernet (detached, libcurl)
//        created, enabled  --> POST   {url}/api/v1.0/callbackjob       (409/rejected: PUT)
//        updated, enabled  --> PUT    {url}/api/v1.0/callbackjob       (404/rejected: POST)
//        deleted, disabled --> DELETE {url}/api/v1.0/callbackjob/{id}  (404: already gone)
//   Scheduler.NET --POST {callback_base_url}/api/v1.0/jobs/{id}/trigger?sig=..--> api
//
// Body: {"Id","Group":"spiderhub","Name","Cron","Content":"","Url","Method":"POST"}; the
// service token goes in the "SchedulerNET" header (the Scheduler.NET client's default).
// The job is read from storage when the call is made, so the service always gets the
// latest committed state. Network errors, 5xx, 408 and 429 are retried with exponential
// backoff; other refusals are logged and dropped. At start every job is sent once (PUT,
// or DELETE when disabled) so the service converges after the broker was down.
// The actor runs detached: blocking HTTP never holds a scheduler thread.
#include <chrono>
#include <string>
#include <string_view>

#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct schedulernet_options {
  std::string url;                  // Scheduler.NET base URL, e.g. http://sched:5001
  std::string token;                // sent in `token_header` when not empty
  std::string token_header = "SchedulerNET";
  std::string callback_base_url;    // how the service reaches this broker
  std::string api_token;            // the broker's API token: signs callback URLs
  std::string group = "spiderhub";
  int max_attempts = 8;             // per change, then it is dropped (logged)
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{10000};
  bool sync_on_start = true;
};

/// HMAC-SHA256(api token, "trigger\n" + job id), hex: the `sig` query parameter that lets
/// Scheduler.NET call POST /api/v1.0/jobs/{id}/trigger without the bearer token.
std::string trigger_signature(std::string_view api_token, std::string_view job_id);

/// callback_base_url + "/api/v1.0/jobs/{id}/trigger?sig=" + trigger_signature(...).
std::string trigger_callback_url(const schedulernet_options& opts, const std::string& job_id);

/// Spawns the detached Scheduler.NET client. It answers (jobs_changed_atom, job_id, change)
/// and (jobs_changed_atom) (resend every job), and (stats_atom) -> JSON text.
caf::actor spawn_schedulernet(caf::actor_system& sys, caf::actor storage,
                              schedulernet_options opts);

} // namespace spiderhub::actors
