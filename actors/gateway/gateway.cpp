#include "actors/gateway/gateway.hpp"

#include "actors/gateway/dashboard.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
#include <ctime>

#include "core/digest.hpp"
#include "core/error.hpp"

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;

std::string query_value(const net::http_request& req, const char* key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? std::string{} : it->second;
}

// Hub path without a trailing slash ("/node", "/worker"), or "" when not a hub.
std::string hub_of(const std::string& path) {
  auto p = path;
  while (p.size() > 1 && p.back() == '/')
    p.pop_back();
  return p == "/node" || p == "/worker" ? p : std::string{};
}

std::int32_t int_param(const net::http_request& req, const char* key, std::int32_t fallback) {
  auto v = query_value(req, key);
  std::int32_t out = fallback;
  if (!v.empty()) {
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || ptr != v.data() + v.size())
      throw core::input_error(std::string("query parameter '") + key + "' must be an integer");
  }
  return out;
}

node_info node_info_of(const net::http_request& req) {
  node_info info;
  info.node_id = query_value(req, "nodeId");
  info.group = query_value(req, "group");
  if (info.group.empty())
    info.group = "default";
  info.ip = query_value(req, "ip");
  if (info.ip.empty())
    info.ip = req.remote_ip;
  info.os = query_value(req, "os");
  info.memory = int_param(req, "memory", 0);
  info.node_type = int_param(req, "nodeType", 1);
  info.processor_count = int_param(req, "processorCount", 0);
  // Older nodes do not send it: they run at most one application at a time.
  info.max_process_count = int_param(req, "maxProcessCount", 1);
  if (info.max_process_count < 0)
    throw core::input_error("maxProcessCount must not be negative");
  info.max_blocks = int_param(req, "maxBlocks", 0);
  if (info.max_blocks < 0)
    throw core::input_error("maxBlocks must not be negative");
  info.render_tabs = int_param(req, "renderTabs", 0);
  if (info.render_tabs < 0 || info.render_tabs > 64)
    throw core::input_error("renderTabs must be 0..64");
  info.change_ip = int_param(req, "changeIp", 0) != 0;  // older nodes: none
  if (info.node_type != 1 && info.node_type != 2)
    throw core::input_error("nodeType must be 1 (console) or 2 (web)");
  return info;
}

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

net::http_response negotiate_response() {
  auto token = core::new_guid();
  json body{{"connectionId", token},
            {"connectionToken", token},
            {"negotiateVersion", 1},
            {"availableTransports",
             json::array({{{"transport", "WebSockets"},
                           {"transferFormats", json::array({"Text"})}}})}};
  net::http_response r;
  r.body = body.dump();
  return r;
}

struct gateway_state {
  static inline const char* name = "gateway";
};

caf::behavior gateway(caf::stateful_actor<gateway_state>* self,
                      std::shared_ptr<net::http_server> server) {
  // Holding the server in the actor ties its lifetime to the gateway actor: when the
  // gateway exits, the server stops and all connections close.
  self->attach_functor([server] { server->stop(); });
  return {
    [=](stats_atom) -> std::string {
      return json{{"connections", server->connection_count()}, {"port", server->port()}}.dump();
    },
  };
}

} // namespace

net::http_response error_response(int status, const std::string& code,
                                  const std::string& message) {
  return net::make_json_error(status, code, message);
}

std::optional<net::http_response> check_hub_request(const net::http_request& req,
                                                    const auth_gate& auth,
                                                    std::int64_t now_unix, bool upgrade) {
  auto hub = hub_of(req.path);
  if (hub.empty())
    return error_response(404, "not_found", "no hub at " + req.path);
  std::string subject;
  if (hub == "/node") {
    subject = query_value(req, "nodeId");
    if (!core::is_guid(subject))
      return error_response(400, "invalid", "nodeId must be a GUID");
    try {
      node_info_of(req);
    } catch (const core::input_error& e) {
      return error_response(400, "invalid", e.what());
    }
  } else {
    subject = query_value(req, "fullClassName");
    if (subject.empty() || subject.size() > 200)
      return error_response(400, "invalid", "fullClassName is required (at most 200 chars)");
  }
  bool node = hub == "/node";
  return check_sign(auth, req, node ? core::role_node : core::role_worker, subject, now_unix,
                    nullptr, node && upgrade);
}

gateway_handle spawn_gateway(caf::actor_system& sys, const gateway_options& opts,
                             broker_peers peers, caf::actor api) {
  net::server_callbacks cbs;
  auto auth = opts.auth ? opts.auth : std::make_shared<const auth_gate>();
  auto live = spawn_live_feed(sys, peers.storage);
  sys.registry().put(caf::atom("live"), caf::actor_cast<caf::strong_actor_ptr>(live));
  cbs.on_upgrade = [auth](const net::http_request& req) {
    auto refused = req.path == "/live" ? check_live_request(req, *auth)
                                       : check_hub_request(req, *auth, unix_now(), true);
    if (refused)
      spdlog::warn("gateway: refused {} upgrade from {}: {}", req.path, req.remote_ip,
                   refused->body);
    return refused;
  };
  auto session_opts = opts.sessions;
  cbs.on_ws_open = [&sys, peers, session_opts, live](net::ws_ptr conn) -> net::ws_handlers {
    const auto& req = conn->upgrade_request();
    if (req.path == "/live") {  // dashboard viewer: receives snapshots, sends nothing
      caf::anon_send(live, live_join_atom::value, conn);
      net::ws_handlers h;
      h.on_message = [](std::string) {};
      h.on_closed = [live, id = conn->id()](std::string) {
        caf::anon_send(live, live_leave_atom::value, id);
      };
      return h;
    }
    caf::actor session;
    if (hub_of(req.path) == "/node")
      session = spawn_node_session(sys, conn, node_info_of(req), peers, session_opts);
    else
      session = spawn_worker_session(sys, conn, query_value(req, "fullClassName"), peers,
                                     session_opts);
    net::ws_handlers h;
    h.on_message = [session](std::string text) {
      caf::anon_send(session, frame_atom::value, std::move(text));
    };
    h.on_closed = [session](std::string reason) {
      caf::anon_send(session, closed_atom::value, std::move(reason));
    };
    return h;
  };
  cbs.on_http = [auth, api](net::http_request req,
                                     std::shared_ptr<net::http_responder> responder) {
    // SignalR negotiation is answered here: it needs no state.
    auto path = req.path;
    if (req.method == "POST" && path.size() > 10 &&
        path.compare(path.size() - 10, 10, "/negotiate") == 0 &&
        !hub_of(path.substr(0, path.size() - 10)).empty()) {
      auto hub_req = req;
      hub_req.path = path.substr(0, path.size() - 10);
      if (auto refused = check_hub_request(hub_req, *auth, unix_now(), false))
        responder->reply(*refused);
      else
        responder->reply(negotiate_response());
      return;
    }
    if (path == "/healthz") {
      net::http_response r;
      r.body = R"({"status":"ok","role":"active"})";
      // Public: a dashboard served by another broker asks who is active.
      r.headers.push_back({"Access-Control-Allow-Origin", "*"});
      responder->reply(std::move(r));
      return;
    }
    caf::anon_send(api, http_atom::value,
                   http_call{std::make_shared<const net::http_request>(std::move(req)),
                             std::move(responder)});
  };
  cbs.on_log = [](const std::string& line) { spdlog::warn("gateway: {}", line); };
  auto server = std::make_shared<net::http_server>(opts.server, std::move(cbs));
  auto port = server->start();
  spdlog::info("gateway listening on {}:{}{}", opts.server.address, port,
               server->tls() ? " (TLS)" : "");
  return {sys.spawn(gateway, server), port};
}

} // namespace spiderhub::actors
