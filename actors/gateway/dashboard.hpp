#pragma once
// The web dashboard's server side: its files (embedded, see web/assets.hpp) and the live
// feed, a WebSocket at /live?access_token=TOKEN that receives one JSON snapshot per
// second: {"time", "runs": [...as GET /runs...], "nodes": [...as GET /nodes, plus the
// last heartbeat figures]}. One snapshot is built per second for all viewers, and only
// while someone watches; the feed never sends faster than that.
#include <optional>
#include <string>

#include "actors/gateway/auth_gate.hpp"
#include "net/http_server.hpp"
#include "protocol/messages.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::net::ws_ptr)

namespace spiderhub::actors {

using live_join_atom = caf::atom_constant<caf::atom("live_join")>;
using live_leave_atom = caf::atom_constant<caf::atom("live_leave")>;

/// The actor that builds and broadcasts snapshots; (live_join_atom, ws_ptr) and
/// (live_leave_atom, connection id) add and remove viewers.
caf::actor spawn_live_feed(caf::actor_system& sys, caf::actor storage);

/// Refusal of a /live upgrade (?access_token= of a viewer or admin), or nullopt to accept.
std::optional<net::http_response> check_live_request(const net::http_request& req,
                                                     const auth_gate& auth);

/// GET / and /ui/<file>: the embedded dashboard files; nullopt for other paths.
std::optional<net::http_response> dashboard_file(const std::string& path);

} // namespace spiderhub::actors
