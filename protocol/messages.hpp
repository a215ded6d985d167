#pragma once
// CAF vocabulary of the broker and node actor systems: atoms and the message
// contracts between actor families. Actors depend on this file, never on each
// other's internals. Message shapes are listed next to each atom as
// (atom, args...) -> reply.
#include <caf/all.hpp>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "protocol/fast_json.hpp"
#include "protocol/types.hpp"

namespace spiderhub::net {
class http_responder;
class ws_connection;
struct http_request;
} // namespace spiderhub::net

namespace spiderhub::storage {
class database;
}

namespace spiderhub::protocol {

/// Actor registry key of a name such as "dispatch" (CAF 0.17's string_view has no
/// const char* constructor that clang accepts).
inline caf::atom_value registry_key(const char* name) {
  return caf::atom_from_string(caf::string_view{name, std::strlen(name)});
}

// --- transport -> session ----------------------------------------------------
/// (frame_atom, text): one WebSocket text message from the peer.
using frame_atom = caf::atom_constant<caf::atom("frame")>;
/// (closed_atom, reason): the peer's connection ended.
using closed_atom = caf::atom_constant<caf::atom("closed")>;
/// (http_atom, http_call): one HTTP request to answer.
using http_atom = caf::atom_constant<caf::atom("http")>;

// --- storage actor -----------------------------------------------------------
/// (write_atom, write_fn) -> bool: runs fn inside the next batch transaction; the reply
/// comes after that transaction committed (false/error when it could not be stored).
using write_atom = caf::atom_constant<caf::atom("write")>;
/// (read_atom, read_fn) -> caf::message: runs fn after pending writes are committed.
using read_atom = caf::atom_constant<caf::atom("read")>;
using write_fn = std::function<void(storage::database&)>;
using read_fn = std::function<caf::message(storage::database&)>;

// --- node sessions <-> dispatcher -------------------------------------------
/// (node_up_atom, node_id, session, max_blocks, render_tabs, change_ip): a node connected
/// (max_blocks 0: unknown; render_tabs 0: it cannot render; change_ip: it has a change-IP
/// command, so it may take ChangeIpPattern runs).
using node_up_atom = caf::atom_constant<caf::atom("node_up")>;
/// (node_down_atom, node_id, session): its connection ended; leases return to ready.
using node_down_atom = caf::atom_constant<caf::atom("node_down")>;
/// (lease_atom, node_id, free_slots) -> std::string: JSON array of Blocks for a heartbeat.
using lease_atom = caf::atom_constant<caf::atom("lease")>;
/// (save_atom, node_id, fast::raw_block_response) -> bool after the results are stored.
using save_atom = caf::atom_constant<caf::atom("save")>;
/// dispatcher -> node session: (receive_atom, block_json) to push with `Receive`.
using receive_atom = caf::atom_constant<caf::atom("receive")>;

// --- worker sessions <-> dispatcher -----------------------------------------
/// (push_atom, identity, std::vector<fast::raw_request>) -> int32 new requests (after commit).
using push_atom = caf::atom_constant<caf::atom("push")>;
/// (poll_atom, identity, max, wait_ms, max_bytes, session) -> std::string: JSON array text
/// of at most `max` results whose stored texts add up to at most `max_bytes` (always one
/// result when any is there). With wait_ms > 0 a Poll that finds nothing new is held until results of the run
/// are stored or wait_ms passed (long poll).
using poll_atom = caf::atom_constant<caf::atom("poll")>;
/// Held Polls: (poll_wake_atom, identity, token) dispatcher -> itself when one's wait
/// ends; (poll_wake_atom, session) from a worker session about to send a Run: its held
/// Polls are answered now (empty).
using poll_wake_atom = caf::atom_constant<caf::atom("poll_wake")>;
/// Longest wait a Poll may ask for.
constexpr std::int64_t max_poll_wait_ms = 60000;
/// (ack_atom, identity, std::vector<int64_t>) -> bool.
using ack_atom = caf::atom_constant<caf::atom("ack")>;
/// (complete_atom, identity) -> bool.
using complete_atom = caf::atom_constant<caf::atom("complete")>;

// --- job manager / runs -------------------------------------------------------
/// (worker_up_atom, full_class_name, session) / (worker_down_atom, ..): worker registry.
using worker_up_atom = caf::atom_constant<caf::atom("worker_up")>;
using worker_down_atom = caf::atom_constant<caf::atom("worker_dn")>;
/// (fire_atom, job_id, due_unix_s, identity) -> std::string identity of the run (or error).
/// identity "" = make a new one; a scheduler fire passes the identity it persisted.
using fire_atom = caf::atom_constant<caf::atom("fire")>;
/// (start_run_atom, run_spec) -> bool: dispatcher opens a block run (after it is stored).
using start_run_atom = caf::atom_constant<caf::atom("start_run")>;
/// (orphans_atom, full_class_name) -> std::vector<worker_run>: open runs of that class,
/// re-sent to a worker that (re)connects so a restarted worker resumes its run.
using orphans_atom = caf::atom_constant<caf::atom("orphans")>;
/// (run_done_atom, job_id, identity, status): dispatcher -> job manager, run finished.
using run_done_atom = caf::atom_constant<caf::atom("run_done")>;
/// (exit_run_atom, identity) -> bool: stop a run everywhere.
using exit_run_atom = caf::atom_constant<caf::atom("exit_run")>;
/// session -> peer: (run_atom, worker_run) / (run_app_atom, run_application) / (exit_atom, identity).
using run_atom = caf::atom_constant<caf::atom("run")>;
using run_app_atom = caf::atom_constant<caf::atom("run_app")>;
using exit_atom = caf::atom_constant<caf::atom("exit")>;
/// (app_exited_atom, node_id, application_exited): node -> job manager.
using app_exited_atom = caf::atom_constant<caf::atom("app_exit")>;
/// (app_started_atom, node_id, application_started) / (app_log_atom, node_id,
/// application_log): node session -> job manager.
using app_started_atom = caf::atom_constant<caf::atom("app_start")>;
using app_log_atom = caf::atom_constant<caf::atom("app_log")>;
/// (logs_atom, identity, max_bytes) -> std::string JSON: tails of an application run's
/// output per node, with each node's state and exit code.
using logs_atom = caf::atom_constant<caf::atom("logs")>;
/// (node_enabled_atom, node_id, enabled): inspector -> dispatcher after `enable`/`disable`.
using node_enabled_atom = caf::atom_constant<caf::atom("node_en")>;
/// (heartbeat_atom, node_id, heartbeat): node session -> job manager (placement data).
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
/// (jobs_changed_atom, job_id, change): api -> scheduler (builtin or Scheduler.NET) after
/// a job change is committed; change is "created", "updated" (also enable/disable) or
/// "deleted". (jobs_changed_atom) alone: everything may have changed, reload it all.
using jobs_changed_atom = caf::atom_constant<caf::atom("jobs_chg")>;

// --- timers and introspection -------------------------------------------------
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
/// (stats_atom) -> std::string JSON object of that actor's counters.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
/// (hosts_atom, identity) -> std::string JSON: the politeness table of a running block run
/// (per key: in flight, done, errors by kind, delay, concurrency, robots, paused until).
using hosts_atom = caf::atom_constant<caf::atom("hosts")>;
/// dispatcher -> itself: a politeness key may start now (delay or pause over).
using wake_atom = caf::atom_constant<caf::atom("wake")>;
/// resolver -> dispatcher: (resolved_atom, host, address or "", error) for `ip` keys.
using resolved_atom = caf::atom_constant<caf::atom("resolved")>;

/// A block run as the job manager hands it to the dispatcher.
struct run_spec {
  std::string job_id;
  std::string identity;
  std::string site_json = "{}";
  std::int32_t priority = 0;
  std::string full_class_name;
  std::string arguments;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, run_spec& x) {
  return f(x.job_id, x.identity, x.site_json, x.priority, x.full_class_name, x.arguments);
}

/// An error carrying a stable machine code ("not_found", "conflict", "invalid",
/// "unavailable", ...) and a message for people; the gateway maps codes to HTTP statuses.
inline caf::error app_error(std::string code, std::string message) {
  return caf::make_error(caf::sec::runtime_error, std::move(code), std::move(message));
}

/// (code, message) of an error made by app_error; other errors give ("internal", text).
inline std::pair<std::string, std::string> app_error_parts(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string, std::string>())
    return {ctx.get_as<std::string>(0), ctx.get_as<std::string>(1)};
  if (ctx.match_elements<std::string>())
    return {"internal", ctx.get_as<std::string>(0)};
  return {"internal", caf::to_string(err)};
}

/// One HTTP request with the handle that answers it (local only).
struct http_call {
  std::shared_ptr<const net::http_request> request;
  std::shared_ptr<net::http_responder> responder;
};

} // namespace spiderhub::protocol

// Local-only message types: they carry closures or connection handles and never
// cross the middleman.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::protocol::write_fn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::protocol::read_fn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::protocol::http_call)
