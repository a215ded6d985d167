#include "actors/gateway/auth_gate.hpp"

#include <spdlog/spdlog.h>

#include "storage/database.hpp"

namespace spiderhub::actors {
namespace {

using storage::now_ms;

std::optional<net::http_response> blocked(const auth_gate& g, const net::http_request& req) {
  if (!g.limiter)
    return std::nullopt;
  auto wait = g.limiter->blocked_for(req.remote_ip, now_ms());
  if (wait <= 0)
    return std::nullopt;
  core::count_refusal(&core::auth_refusals::rate_limited);
  auto r = net::make_json_error(429, "too_many_failures",
                                "too many failed authentications from this address; retry later");
  r.headers.emplace_back("Retry-After", std::to_string((wait + 999) / 1000));
  return r;
}

void failed(const auth_gate& g, const net::http_request& req) {
  if (g.limiter && g.limiter->failed(req.remote_ip, now_ms()))
    spdlog::warn("gateway: {} blocked after repeated failed authentications", req.remote_ip);
}

} // namespace

std::string bearer_of(const net::http_request& req, bool query_allowed) {
  auto h = req.header("authorization");
  const std::string prefix = "Bearer ";
  if (h.size() > prefix.size() && h.compare(0, prefix.size(), prefix) == 0)
    return h.substr(prefix.size());
  return query_allowed ? req.param("access_token") : std::string();
}

std::optional<net::http_response> check_bearer(const auth_gate& g, const net::http_request& req,
                                               unsigned roles, bool query_allowed,
                                               core::principal* who) {
  if (g.keys.open()) {
    if (who)
      *who = core::principal{"", ~0u};
    return std::nullopt;
  }
  if (auto r = blocked(g, req))
    return r;
  auto p = g.keys.bearer(bearer_of(req, query_allowed));
  if (!p) {
    core::count_refusal(&core::auth_refusals::unauthenticated);
    failed(g, req);
    return net::make_json_error(401, "unauthorized", "missing or unknown credential");
  }
  if (!p->has(roles)) {
    core::count_refusal(&core::auth_refusals::forbidden);
    return net::make_json_error(403, "forbidden",
                                "role " + core::roles_text(p->roles) + " may not " + req.method +
                                  " " + req.path);
  }
  if (who)
    *who = *p;
  return std::nullopt;
}

std::optional<net::http_response> check_sign(const auth_gate& g, const net::http_request& req,
                                             core::role r, const std::string& subject,
                                             std::int64_t now_unix, core::principal* who,
                                             bool consume) {
  if (g.keys.open()) {
    if (who)
      *who = core::principal{"", static_cast<unsigned>(r)};
    return std::nullopt;
  }
  if (auto b = blocked(g, req))
    return b;
  std::string why;
  auto p = g.keys.verify_sign(r, subject, req.param("ts"), req.param("sign"), now_unix,
                              g.sign_window_s, &why);
  // A refused node is logged (a minute apart per node) and listed by `console nodes`:
  // it may never have reached any table the operator can see.
  auto node_refused = [&](const std::string& reason) {
    if (r == core::role_node && core::note_node_refusal(subject, req.remote_ip, reason, now_unix * 1000))
      spdlog::warn("gateway: node {} from {} refused: sign rejected: {}", subject, req.remote_ip, reason);
  };
  if (!p) {
    core::count_refusal(&core::auth_refusals::bad_sign);
    failed(g, req);
    node_refused(why);
    return net::make_json_error(401, "unauthorized", "sign rejected: " + why);
  }
  if (consume && g.used_signs && !g.used_signs->first_use(req.param("sign"), now_unix * 1000)) {
    core::count_refusal(&core::auth_refusals::replayed);
    failed(g, req);
    node_refused("already used (sign each connection anew)");
    return net::make_json_error(401, "unauthorized",
                                "sign rejected: already used (sign each connection anew)");
  }
  if (r == core::role_node && consume)
    core::clear_node_refusal(subject);
  if (who)
    *who = *p;
  return std::nullopt;
}

} // namespace spiderhub::actors
