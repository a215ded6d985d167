#pragma once
// Authentication of what reaches the gateway: bearer tokens of the API, the dashboard's
// live feed and /metrics, and connection signs of the hubs and package downloads, checked
// against the broker's keyring with roles, a per-address limit on failures, and counted
// refusals. Used on the io threads (hub upgrades, negotiation) and by the api actor.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/auth.hpp"
#include "net/http_server.hpp"

namespace spiderhub::actors {

struct auth_gate {
  core::keyring keys;                               // open(): no authentication
  std::shared_ptr<core::failure_limiter> limiter;   // null: failures are not limited
  std::shared_ptr<core::sign_ledger> used_signs;    // null: node signs may be replayed
  int sign_window_s = 300;
};
using auth_gate_ptr = std::shared_ptr<const auth_gate>;

/// The token of "Authorization: Bearer X", else (when `query_allowed`) of ?access_token=X.
std::string bearer_of(const net::http_request& req, bool query_allowed);

/// Allows a request whose bearer token holds one of `roles`: nullopt, with the principal
/// in `who` (empty name when authentication is off). Refusals: 429 while the address is
/// blocked, 401 for a missing or unknown token (counted as a failure of the address), 403
/// for a known token without the role. Every refusal is counted for /metrics.
std::optional<net::http_response> check_bearer(const auth_gate& g, const net::http_request& req,
                                               unsigned roles, bool query_allowed,
                                               core::principal* who = nullptr);

/// Same for a connection sign (ts, sign query parameters) of `subject` made with a secret
/// of role `r`. `consume`: the sign is good once (a second use is refused as a replay).
std::optional<net::http_response> check_sign(const auth_gate& g, const net::http_request& req,
                                             core::role r, const std::string& subject,
                                             std::int64_t now_unix,
                                             core::principal* who = nullptr,
                                             bool consume = false);

} // namespace spiderhub::actors
