// The REST layer: one HTTP request per input, answered by the real api actor over a real
// storage actor (SQLite in a temp directory) and stub peers (job manager and dispatcher
// answer "not_found"). Input: "METHOD TARGET\n" then "Name: value" header lines, an
// empty line, and the body. Properties: every request is answered within 8 s, with a
// status the API documents (never 500), an error body for 4xx/5xx, and the roles hold
// (no credential: 401; the viewer's token never writes).
#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "actors/gateway/api.hpp"
#include "actors/storage/storage_actor.hpp"
#include "common.hpp"
#include "net/http_server.hpp"
#include "protocol/messages.hpp"

using namespace spiderhub;
using spiderhub::fuzz::require;

namespace {

constexpr const char* admin_secret = "fuzz-admin-secret-0123456789";
constexpr const char* viewer_secret = "fuzz-viewer-secret-0123456789";

struct capture : net::http_responder {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<net::http_response> got;
  void reply(net::http_response r) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!got)
      got = std::move(r);
    cv.notify_all();
  }
};

struct world {
  std::filesystem::path dir;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor storage, stub, api;

  world() {
    dir = std::filesystem::temp_directory_path() /
          ("spiderhub-fuzz-api-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "packages");
    static std::filesystem::path to_remove;
    to_remove = dir;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    sys = std::make_unique<caf::actor_system>(cfg);
    storage = actors::spawn_storage(*sys, actors::sqlite_storage((dir / "api.db").string()));
    // (An argument: CAF 0.17 dereferences a null argument tuple for argument-less
    // function actors, which UBSan reports.)
    stub = sys->spawn([](caf::event_based_actor* self, int) -> caf::behavior {
      self->set_default_handler([](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
        return protocol::app_error("not_found", "fuzz stub");
      });
      return {[](protocol::tick_atom) {}};
    }, 0);
    actors::api_options o;
    auto gate = std::make_shared<actors::auth_gate>();
    gate->keys = core::keyring("", {{"ops", core::role_admin, admin_secret},
                                    {"dash", core::role_viewer, viewer_secret}});
    o.auth = gate;
    o.packages.dir = (dir / "packages").string();
    o.packages.max_bytes = 1 << 20;
    o.max_body_bytes = 1 << 20;
    api = actors::spawn_api(*sys, o, {storage, stub, stub, caf::actor{}});
  }
};

world& the_world() {
  // Never destroyed: libFuzzer ends with exit() while the actors still run, and tearing
  // the actor system down from a static destructor races CAF's own statics.
  static world* w = new world;
  return *w;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  auto& w = the_world();
  auto s = std::string(fuzz::text(data, size));
  auto req = std::make_shared<net::http_request>();
  auto line_end = s.find('\n');
  auto line = s.substr(0, line_end);
  auto sp = line.find(' ');
  req->method = sp == std::string::npos ? line : line.substr(0, sp);
  req->target = sp == std::string::npos ? "/" : line.substr(sp + 1);
  if (req->method.empty() || req->method.size() > 10)
    return 0;
  auto q = req->target.find('?');
  req->path = net::percent_decode(req->target.substr(0, q), false);
  if (q != std::string::npos)
    req->query = net::parse_query(req->target.substr(q + 1));
  req->remote_ip = "192.0.2.7";
  std::size_t pos = line_end == std::string::npos ? s.size() : line_end + 1;
  while (pos < s.size()) {
    auto end = s.find('\n', pos);
    auto h = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? s.size() : end + 1;
    if (h.empty())
      break;
    auto colon = h.find(':');
    if (colon == std::string::npos)
      continue;
    auto name = h.substr(0, colon);
    for (auto& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto value = h.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.erase(0, 1);
    // "Authorization: admin" / "viewer" stand for the real secrets.
    if (name == "authorization" && value == "admin")
      value = std::string("Bearer ") + admin_secret;
    else if (name == "authorization" && value == "viewer")
      value = std::string("Bearer ") + viewer_secret;
    req->headers[name] = value;
  }
  req->body = pos < s.size() ? s.substr(pos) : std::string();

  auto r = std::make_shared<capture>();
  caf::anon_send(w.api, protocol::http_atom::value,
                 protocol::http_call{std::shared_ptr<const net::http_request>(req), r});
  std::unique_lock<std::mutex> lock(r->mu);
  require(r->cv.wait_for(lock, std::chrono::seconds(8), [&] { return r->got.has_value(); }),
          "answered within 8 s");
  const auto& resp = *r->got;
  static const std::set<int> documented = {200, 201, 400, 401, 403, 404, 405, 409, 413, 429, 503};
  if (!documented.count(resp.status))
    std::fprintf(stderr, "%s %s -> %d %s\n", req->method.c_str(), req->target.c_str(),
                 resp.status, resp.body.substr(0, 300).c_str());
  require(documented.count(resp.status) == 1, "a documented status (no 500)");
  if (resp.status >= 400) {
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (!(j.is_object() && j.contains("error") && j["error"].contains("code")))
      std::fprintf(stderr, "%d %s\n", resp.status, resp.body.substr(0, 300).c_str());
    require(j.is_object() && j.contains("error") && j["error"].contains("code"),
            "errors have an error body");
  }
  auto auth = req->headers.find("authorization");
  bool api_route = req->path.rfind("/api/v1.0/", 0) == 0 || req->path == "/metrics";
  if (api_route && auth == req->headers.end() && req->query.find("sig") == req->query.end())
    require(resp.status == 401 || resp.status == 404 || resp.status == 413,
            "no credential: refused");
  bool write = req->method != "GET" && req->method != "HEAD";
  if (api_route && write && auth != req->headers.end() &&
      auth->second == std::string("Bearer ") + viewer_secret &&
      req->query.find("sig") == req->query.end())
    require(resp.status == 403 || resp.status == 404 || resp.status == 413,
            "a viewer never writes");
  return 0;
}
