#pragma once
// Gateway: the only place that speaks HTTP and WebSocket. It owns the Beast server
// (net::http_server) and turns what arrives into actor messages:
//   - WebSocket upgrades of /node and /worker are checked (HMAC sign + time window)
//     before the upgrade, then each connection gets its own session actor that
//     receives the frames as (frame_atom, text);
//   - POST {hub}/negotiate answers the SignalR negotiation itself;
//   - every other HTTP request goes to the api actor as (http_atom, http_call).
// It never blocks its io threads and never touches SQLite.
#include <cstdint>
#include <string>

#include "actors/broker/sessions.hpp"
#include "actors/gateway/auth_gate.hpp"
#include "net/http_server.hpp"

namespace spiderhub::actors {

struct gateway_options {
  net::server_options server;
  auth_gate_ptr auth;           // keyring open(): hubs and API accept anyone
  session_options sessions;
};

struct gateway_handle {
  caf::actor actor;             // send exit to stop the server
  std::uint16_t port = 0;       // bound port
};

/// Starts the server; throws std::runtime_error when it cannot listen.
gateway_handle spawn_gateway(caf::actor_system& sys, const gateway_options& opts,
                             broker_peers peers, caf::actor api);

/// Checks a hub request (its sign made with a node secret on /node, a worker secret on
/// /worker); returns an HTTP response to refuse it, or nullopt. `upgrade`: the WebSocket
/// upgrade itself, where a node's sign is used up (negotiation grants nothing and may
/// come first with the same query). Exposed for tests and fuzzing.
std::optional<net::http_response> check_hub_request(const net::http_request& req,
                                                    const auth_gate& auth,
                                                    std::int64_t now_unix, bool upgrade);

/// JSON error body of the API: {"error":{"code":..,"message":..}}.
net::http_response error_response(int status, const std::string& code,
                                  const std::string& message);

} // namespace spiderhub::actors
