#pragma once
// Inspector: the broker's observability endpoint for `spiderhub console`. It is published
// through the CAF middleman (broker.yaml `inspector.address`/`inspector.port`) and answers
// one typed request, frozen so that any console can at least read the version of a reply:
//
//   (inspect_atom, secret, command, argument) -> std::string JSON
//
// Every reply is an envelope {"version", "broker", "command", "ok", "data" | "error"};
// "version" is inspector_protocol_version (bumped whenever a reply changes shape), so a
// console detects a broker of another generation instead of misreading it. Commands and
// their replies are listed in inspector_commands() and documented in docs/console.md.
//
// The inspector holds no state of its own beyond rate samples: it looks the broker's
// actors up in the actor registry at request time and asks them (stats_atom, storage
// reads, job manager fires), so it never blocks and never owns anything.
//
// The session registry is the inspector's view of the live hub sessions: it sits in front
// of the job manager on the path the gateway's sessions use (node_up/worker_up/...), notes
// every session that announces itself and delegates every message on unchanged (sender
// and request id preserved), so sessions and job manager behave exactly as without it.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "protocol/messages.hpp"
#include "storage/database.hpp"

namespace spiderhub::actors {

/// Shape version of the inspector's replies (the "version" field of every reply).
inline constexpr int inspector_protocol_version = 1;

/// CAF application identifier of the broker and the console; the middleman handshake
/// refuses peers with another one, so the console cannot talk to a foreign CAF service.
inline constexpr const char* inspector_app_id = "spiderhub-inspector";

/// (inspect_atom, secret, command, argument) -> std::string JSON envelope.
using inspect_atom = caf::atom_constant<caf::atom("inspect")>;
/// (sessions_atom) -> (std::vector<caf::actor> nodes, std::vector<caf::actor> workers).
using sessions_atom = caf::atom_constant<caf::atom("sessions")>;

/// One command of the inspector protocol (the console completes and validates with it).
struct inspector_command {
  std::string name;
  std::string argument;  // name of the argument for help, "" = takes none
  bool argument_required = false;
  std::string summary;
};

/// Every command the inspector answers, in the order `help` lists them.
const std::vector<inspector_command>& inspector_commands();
/// The command named `name`, or nullptr.
const inspector_command* find_inspector_command(const std::string& name);

struct inspector_options {
  std::string secret;                             // empty: no secret required
  std::chrono::milliseconds ask_timeout{3000};    // per actor asked for stats or data
  std::chrono::milliseconds rate_window{1000};    // `mailboxes` samples counters twice
  std::int64_t audit_max_rows = 100000;           // newest audit rows kept
};

/// Spawns the inspector in `sys`; peers are found in sys.registry() by name.
caf::actor spawn_inspector(caf::actor_system& sys, inspector_options opts);

/// Spawns the session registry in front of `jobs`: give it to the gateway as the job
/// manager of its sessions and register it as "sessions".
caf::actor spawn_session_registry(caf::actor_system& sys, caf::actor jobs);

/// `{identity, counts: {ready, leased, success, failed}, blocks: [...]}` of a run as JSON
/// text, or nullopt when the run is unknown. Shared by `console blocks` and the REST API.
std::optional<std::string> blocks_report(storage::database& db, const std::string& run);

} // namespace spiderhub::actors
