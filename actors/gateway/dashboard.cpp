#include "actors/gateway/dashboard.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>

#include "actors/gateway/gateway.hpp"
#include "actors/gateway/views.hpp"
#include "actors/storage/storage_actor.hpp"
#include "core/digest.hpp"
#include "storage/repositories.hpp"
#include "web/assets.hpp"

namespace spiderhub::actors {
namespace {

using json = nlohmann::json;
using namespace spiderhub::protocol;

struct live_state {
  caf::actor storage;
  std::map<std::uint64_t, net::ws_ptr> viewers;
  bool ticking = false;
  bool building = false;
  std::uint64_t snapshots = 0;
  static inline const char* name = "live_feed";
};
using live_ptr = caf::stateful_actor<live_state>*;

// Everything a dashboard page shows live, read in one storage call.
std::string build_snapshot(storage::database& db) {
  storage::node_repository nodes(db);
  auto leased = storage::package_repository(db).leased_blocks_by_node();
  json node_list = json::array();
  for (auto& n : nodes.list()) {
    auto j = node_json(n);
    j["leasedBlocks"] = leased.count(n.id) ? leased.at(n.id) : 0;
    auto last = nodes.statuses(n.id, 1);
    if (!last.empty()) {
      j["cpu"] = last[0].cpu;
      j["freeMemory"] = last[0].free_memory;
      j["processCount"] = last[0].process_count;
      j["statusTime"] = last[0].creation_time;
    }
    node_list.push_back(std::move(j));
  }
  auto runs = runs_json(storage::run_repository(db).statuses(""));
  if (runs.size() > 100)
    runs.erase(runs.begin() + 100, runs.end());
  return json{{"time", storage::now_text()}, {"runs", runs}, {"nodes", node_list}}.dump();
}

caf::behavior live_feed(live_ptr self, caf::actor storage) {
  self->state.storage = storage;
  return {
    [=](live_join_atom, const net::ws_ptr& conn) {
      auto& st = self->state;
      st.viewers[conn->id()] = conn;
      if (!st.ticking) {
        st.ticking = true;
        self->send(self, tick_atom::value);  // first snapshot at once
      }
    },
    [=](live_leave_atom, std::uint64_t id) { self->state.viewers.erase(id); },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.viewers.empty()) {
        st.ticking = false;
        return;
      }
      self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
      if (st.building)
        return;  // the previous snapshot is still being read: skip, never queue up
      st.building = true;
      self
        ->request(st.storage, std::chrono::seconds(10), read_atom::value,
                  read_fn([](storage::database& db) { return caf::make_message(build_snapshot(db)); }))
        .then(
          [=](const std::string& snapshot) {
            auto& s = self->state;
            s.building = false;
            ++s.snapshots;
            for (auto& [id, conn] : s.viewers)
              conn->send_text(snapshot);
          },
          [=](const caf::error& err) {
            self->state.building = false;
            spdlog::warn("live feed: snapshot failed: {}", self->system().render(err));
          });
    },
    [=](stats_atom) -> std::string {
      return json{{"viewers", self->state.viewers.size()},
                  {"snapshots", self->state.snapshots},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_live_feed(caf::actor_system& sys, caf::actor storage) {
  return sys.spawn(live_feed, std::move(storage));
}

std::optional<net::http_response> check_live_request(const net::http_request& req,
                                                     const auth_gate& auth) {
  return check_bearer(auth, req, core::role_viewer | core::role_admin, true);
}

std::optional<net::http_response> dashboard_file(const std::string& path) {
  std::string name;
  if (path == "/" || path == "/index.html")
    name = "/index.html";
  else if (path.rfind("/ui/", 0) == 0)
    name = path.substr(3);
  else
    return std::nullopt;
  const auto* a = web::find_asset(name);
  if (!a)
    return error_response(404, "not_found", "no dashboard file " + path);
  net::http_response r;
  r.content_type = std::string(a->content_type);
  r.body = std::string(a->bytes);
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

} // namespace spiderhub::actors
