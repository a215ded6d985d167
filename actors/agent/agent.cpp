#include "actors/agent/agent.hpp"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>

#include <ctime>
#include <filesystem>
#include <fstream>

#include "actors/agent/downloader.hpp"
#include "core/digest.hpp"
#include "core/error.hpp"
#include "core/host_stats.hpp"
#include "core/url.hpp"
#include "net/hub_client.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;

/// (connected_atom): the hub is up, heartbeat at once.
using connected_atom = caf::atom_constant<caf::atom("connected")>;

struct agent_state {
  core::node_config cfg;
  std::string node_id;
  std::unique_ptr<net::hub_client> hub;
  std::unique_ptr<downloader> dl;
  core::cpu_meter cpu;
  std::uint64_t heartbeats = 0, blocks_received = 0, saves_failed = 0;
  static inline const char* name = "agent";
  ~agent_state() {
    // Downloader first: its callbacks use the hub.
    if (dl)
      dl->stop();
    if (hub)
      hub->stop();
  }
};

using self_ptr = caf::stateful_actor<agent_state>*;

std::string os_name() {
  utsname u{};
  if (uname(&u) == 0)
    return std::string(u.sysname) + " " + u.release;
  return "unknown";
}

void submit(self_ptr self, block b) {
  ++self->state.blocks_received;
  if (b.command == static_cast<std::int32_t>(block_command::exit)) {
    self->state.dl->cancel_identity(b.identity);
    return;
  }
  auto id = b.block_id;
  auto n = b.requests.size();
  if (self->state.dl->submit(std::move(b)))
    spdlog::debug("node: block {} with {} requests queued", id, n);
}

void send_heartbeat(self_ptr self) {
  auto& st = self->state;
  if (!st.hub->connected())
    return;
  heartbeat hb;
  hb.process_count = 0;  // application processes (own issue)
  hb.cpu = st.cpu.sample();
  hb.free_memory = core::free_memory_mb();
  hb.free_slots = st.dl->free_slots();
  ++st.heartbeats;
  caf::actor me = self;
  st.hub->invoke("Heartbeat", json::array({to_json(hb)}), [me](json result, std::string error) {
    if (!error.empty()) {
      spdlog::warn("node: heartbeat failed: {}", error);
      return;
    }
    try {
      for (auto& b : decode_array<block>(result, "Heartbeat.result"))
        caf::anon_send(me, receive_atom::value, std::move(b));
    } catch (const std::exception& e) {
      spdlog::error("node: bad heartbeat reply: {}", e.what());
    }
  });
}

caf::behavior agent(self_ptr self, core::node_config cfg, std::string node_id) {
  auto& st = self->state;
  st.cfg = cfg;
  st.node_id = node_id;
  caf::actor me = self;

  downloader_options dopts;
  dopts.max_blocks = cfg.download.max_blocks;
  dopts.timeout = cfg.download.timeout;
  dopts.connect_timeout = cfg.download.connect_timeout;
  dopts.max_body_bytes = cfg.download.max_body_bytes;
  dopts.max_redirects = cfg.download.max_redirects;
  dopts.retry_download = cfg.retry_download;
  dopts.retry_backoff = cfg.download.retry_backoff;
  dopts.change_ip_command = cfg.download.change_ip_command;
  dopts.results_batch = static_cast<std::size_t>(cfg.download.results_batch);

  net::hub_client::options hopts;
  hopts.name = "node " + node_id.substr(0, 8);
  hopts.reconnect_initial = cfg.reconnect.initial;
  hopts.reconnect_max = cfg.reconnect.max;
  auto info_query = [cfg, node_id] {
    auto ts = std::to_string(std::time(nullptr));
    return core::hub_url(
      cfg.broker, "/node",
      {{"nodeId", node_id},
       {"group", cfg.group},
       {"memory", std::to_string(core::total_memory_mb())},
       {"nodeType", std::to_string(cfg.node_type)},
       {"os", os_name()},
       {"processorCount", std::to_string(core::processor_count())},
       {"ts", ts},
       {"sign", core::connection_sign(cfg.token, node_id, std::stoll(ts))}});
  };
  hopts.url = info_query;
  st.hub = std::make_unique<net::hub_client>(hopts);
  auto* hub = st.hub.get();

  // Results go straight from the downloader thread to the hub: no actor hop for bodies.
  auto saves_failed = std::make_shared<std::atomic<std::uint64_t>>(0);
  st.dl = std::make_unique<downloader>(
    dopts,
    [hub, saves_failed](block_response resp) {
      auto block_id = resp.block_id;
      std::string args = "[";
      args += fast::encode_block_response(resp);
      args += ']';
      hub->invoke_raw("SaveBlockResponse", std::move(args),
                  [block_id, saves_failed](std::string, std::string error) {
                    if (!error.empty()) {
                      // The lease expires at the broker and the block is downloaded again.
                      ++*saves_failed;
                      spdlog::warn("node: results of block {} not saved: {}", block_id, error);
                    }
                  });
    },
    [](const std::string& block_id, const std::string& identity) {
      spdlog::debug("node: block {} of run {} done", block_id, identity);
    });

  st.hub->on("Receive", [me](const json& args) {
    try {
      if (args.empty())
        throw core::input_error("Receive: missing block");
      caf::anon_send(me, receive_atom::value, decode<block>(args[0], "Receive.arguments[0]"));
    } catch (const std::exception& e) {
      spdlog::error("node: bad Receive from broker: {}", e.what());
    }
  });
  st.hub->on("Exit", [me](const json& args) {
    if (!args.empty() && args[0].is_string())
      caf::anon_send(me, exit_atom::value, args[0].get<std::string>());
  });
  st.hub->on("RunApplication", [](const json& args) {
    spdlog::warn("node: RunApplication is not supported by this node yet: {}", args.dump());
  });
  st.hub->on_connected([me] { caf::anon_send(me, connected_atom::value); });
  st.dl->start();
  st.hub->start();
  spdlog::info("node {} connecting to {} (group {}, {} download slots)", node_id, cfg.broker,
               cfg.group, cfg.download.max_blocks);
  self->delayed_send(self, cfg.heartbeat_interval, tick_atom::value);
  return {
    [=](connected_atom) { send_heartbeat(self); },
    [=](tick_atom) {
      send_heartbeat(self);
      self->delayed_send(self, self->state.cfg.heartbeat_interval, tick_atom::value);
    },
    [=](receive_atom, block& b) { submit(self, std::move(b)); },
    [=](exit_atom, const std::string& identity) {
      spdlog::info("node: run {} exited: dropping its downloads", identity);
      self->state.dl->cancel_identity(identity);
    },
    [=](stats_atom) -> std::string {
      auto& s = self->state;
      auto d = s.dl->get_stats();
      return json{{"nodeId", s.node_id},         {"connected", s.hub->connected()},
                  {"heartbeats", s.heartbeats},  {"blocksReceived", s.blocks_received},
                  {"pages", d.pages},            {"bytes", d.bytes},
                  {"errors", d.errors},          {"activeBlocks", d.active_blocks},
                  {"savesFailed", saves_failed->load()}}
        .dump();
    },
  };
}

} // namespace

std::string load_or_create_node_id(const core::node_config& cfg) {
  if (!cfg.node_id.empty()) {
    if (!core::is_guid(cfg.node_id))
      throw core::input_error("node_id '" + cfg.node_id + "' is not a GUID");
    return cfg.node_id;
  }
  namespace fs = std::filesystem;
  std::ifstream in(cfg.id_file);
  if (in) {
    std::string id;
    in >> id;
    if (!core::is_guid(id))
      throw core::input_error(cfg.id_file + ": does not hold a node GUID (delete it to get a new id)");
    return id;
  }
  auto id = core::new_guid();
  auto dir = fs::path(cfg.id_file).parent_path();
  std::error_code ec;
  if (!dir.empty())
    fs::create_directories(dir, ec);
  std::ofstream out(cfg.id_file);
  if (!(out << id << '\n'))
    throw std::runtime_error("cannot write node id file " + cfg.id_file);
  return id;
}

caf::actor spawn_agent(caf::actor_system& sys, core::node_config cfg, std::string node_id) {
  return sys.spawn(agent, std::move(cfg), std::move(node_id));
}

} // namespace spiderhub::actors
