#include "actors/agent/agent.hpp"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "actors/agent/app_runner.hpp"
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

// ApplicationExited reports not yet confirmed by the broker: sent again after a
// reconnect, so an exit that happens while the broker is away is not lost.
struct pending_exits {
  std::mutex mu;
  std::map<std::string, application_exited> by_identity;
};

struct agent_state {
  core::node_config cfg;
  std::string node_id;
  std::unique_ptr<net::hub_client> hub;
  std::unique_ptr<downloader> dl;
  std::unique_ptr<app_runner> apps;
  std::shared_ptr<pending_exits> exits = std::make_shared<pending_exits>();
  core::cpu_meter cpu;
  std::uint64_t heartbeats = 0, blocks_received = 0, saves_failed = 0;
  static inline const char* name = "agent";
  ~agent_state() {
    // Downloader and applications first: their callbacks use the hub.
    if (dl)
      dl->stop();
    if (apps)
      apps->stop();
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
  if (b.command == static_cast<std::int32_t>(block_command::pause)) {
    self->state.dl->pause_block(b.block_id);  // its host was paused (429/503)
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
  hb.process_count = st.apps->process_count();
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

void send_exit(net::hub_client* hub, const std::shared_ptr<pending_exits>& pending,
               const application_exited& e) {
  std::weak_ptr<pending_exits> weak = pending;
  hub->invoke("ApplicationExited", json::array({to_json(e)}),
              [weak, identity = e.identity](json, std::string error) {
                if (!error.empty()) {
                  spdlog::warn("node: exit of run {} not delivered yet ({}); sent again on "
                               "reconnect", identity, error);
                  return;
                }
                if (auto p = weak.lock()) {
                  std::lock_guard lock(p->mu);
                  p->by_identity.erase(identity);
                }
              });
}

// After (re)connecting: the broker learns which applications still run and every exit it
// has not confirmed.
void announce_applications(self_ptr self) {
  auto& st = self->state;
  for (auto& a : st.apps->running())
    st.hub->invoke("ApplicationStarted", json::array({to_json(a)}), [](json, std::string) {});
  std::vector<application_exited> unsent;
  {
    std::lock_guard lock(st.exits->mu);
    for (auto& [id, e] : st.exits->by_identity)
      unsent.push_back(e);
  }
  for (auto& e : unsent)
    send_exit(st.hub.get(), st.exits, e);
}

std::unique_ptr<app_runner> make_app_runner(const core::node_config& cfg,
                                            const std::string& node_id, net::hub_client* hub,
                                            std::shared_ptr<pending_exits> exits) {
  app_runner_options o;
  const auto& a = cfg.applications;
  o.work_dir = a.work_dir;
  o.log_dir = a.log_dir;
  o.cache_dir = a.cache_dir;
  o.exit_grace = a.exit_grace;
  o.log_max_bytes = a.log_max_bytes;
  o.log_files = a.log_files;
  o.max_process_count = cfg.max_process_count;
  o.max_package_bytes = a.max_package_bytes;
  o.tls_verify = cfg.tls.verify;
  o.tls_ca_file = cfg.tls.ca_file;
  o.cache_max_bytes = a.cache_max_bytes;
  o.run_as = a.run_as;
  o.allow_root = a.allow_root;
  o.max_memory_mb = a.max_memory_mb;
  o.max_processes = a.max_processes;
  o.max_open_files = a.max_open_files;
  o.cgroup_root = a.cgroup_root;
  o.isolate = a.isolate;
  o.limits.max_unpacked_bytes = a.max_unpacked_bytes;
  o.node_id = node_id;
  // From the broker the node is connected to: the active one, which sent RunApplication.
  o.package_url = [cfg, node_id, hub](const std::string& package) {
    auto ts = std::time(nullptr);
    const auto& broker = cfg.brokers.at(hub->current_url() % cfg.brokers.size());
    return core::hub_url(broker, "/packages/" + core::url_encode(package),
                         {{"nodeId", node_id},
                          {"ts", std::to_string(ts)},
                          {"sign", core::connection_sign(cfg.token, node_id, ts)}},
                         false);
  };
  app_events ev;
  ev.started = [hub](application_started a) {
    hub->invoke("ApplicationStarted", json::array({to_json(a)}), [](json, std::string) {});
  };
  ev.exited = [hub, exits](application_exited e) {
    {
      std::lock_guard lock(exits->mu);
      exits->by_identity[e.identity] = e;
    }
    send_exit(hub, exits, e);
  };
  ev.log = [hub](application_log l) { hub->send("ApplicationLog", json::array({to_json(l)})); };
  return std::make_unique<app_runner>(std::move(o), std::move(ev));
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
  dopts.change_ip_min_interval = cfg.download.change_ip_min_interval;
  dopts.results_batch = static_cast<std::size_t>(cfg.download.results_batch);
  dopts.results_batch_bytes = static_cast<std::size_t>(cfg.download.results_batch_bytes);
  dopts.max_buffered_bytes = cfg.download.max_buffered_bytes;
  dopts.allow_private_addresses = cfg.download.allow_private_addresses;
  dopts.results_flush = cfg.download.results_flush;
  if (cfg.render.enabled) {
    dopts.render_tabs = cfg.render.max_tabs;
    dopts.chromium = cfg.render.chromium;
  }

  net::hub_client::options hopts;
  hopts.name = "node " + node_id.substr(0, 8);
  hopts.reconnect_initial = cfg.reconnect.initial;
  hopts.reconnect_max = cfg.reconnect.max;
  // The broker answers every heartbeat: silence for a few periods means the link is
  // gone or black-holed (no FIN, no RST), and waiting for TCP would take minutes.
  hopts.idle_timeout = std::max<std::chrono::milliseconds>(cfg.heartbeat_interval * 4,
                                                            std::chrono::milliseconds(2000));
  hopts.tls_verify = cfg.tls.verify;
  hopts.tls_ca_file = cfg.tls.ca_file;
  // Every attempt signs anew with a ts never used before: the broker takes a node's sign
  // once (a second attempt within the same second signs for the next one).
  auto last_ts = std::make_shared<std::int64_t>(0);
  // One URL per broker of cfg.brokers: the hub client rotates over them.
  auto info_query = [cfg, node_id, last_ts](std::size_t index) {
    *last_ts = std::max<std::int64_t>(std::time(nullptr), *last_ts + 1);
    auto ts = std::to_string(*last_ts);
    return core::hub_url(
      cfg.brokers.at(index), "/node",
      {{"nodeId", node_id},
       {"group", cfg.group},
       {"memory", std::to_string(core::total_memory_mb())},
       {"nodeType", std::to_string(cfg.node_type)},
       {"os", os_name()},
       {"processorCount", std::to_string(core::processor_count())},
       {"maxProcessCount", std::to_string(cfg.max_process_count)},
       {"maxBlocks", std::to_string(cfg.download.max_blocks)},
       {"renderTabs", std::to_string(cfg.render.enabled ? cfg.render.max_tabs : 0)},
       {"changeIp", cfg.download.change_ip_command.empty() ? "0" : "1"},
       {"ts", ts},
       {"sign", core::connection_sign(cfg.token, node_id, std::stoll(ts))}});
  };
  hopts.url_at = info_query;
  hopts.url_count = cfg.brokers.size();
  st.hub = std::make_unique<net::hub_client>(hopts);
  auto* hub = st.hub.get();

  // Results go straight from the downloader thread to the hub: no actor hop for bodies.
  auto saves_failed = std::make_shared<std::atomic<std::uint64_t>>(0);
  // The downloader starts nothing new while more than download.max_buffered_bytes of
  // bodies wait for the broker's answer; each answer (or the call's failure) frees its share.
  auto dl_slot = std::make_shared<downloader*>(nullptr);
  st.dl = std::make_unique<downloader>(
    dopts,
    [hub, saves_failed, dl_slot](block_response resp) {
      auto block_id = resp.block_id;
      std::size_t bytes = 0;
      for (auto& r : resp.results)
        bytes += r.content.size();
      std::string args = "[";
      args += fast::encode_block_response(resp);
      args += ']';
      hub->invoke_raw("SaveBlockResponse", std::move(args),
                  [block_id, saves_failed, dl_slot, bytes](std::string, std::string error) {
                    if (*dl_slot)
                      (*dl_slot)->results_confirmed(bytes);
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
  *dl_slot = st.dl.get();  // stopped before the hub (~agent_state): its callbacks may use it

  st.hub->on_raw("Receive", [me](std::string_view raw) {
    block b;
    try {
      b = protocol::fast::parse_block(raw);
    } catch (const std::exception&) {
      // The DOM decoder has the last word (and the message that says what is wrong).
      try {
        auto args = json::parse(raw);
        if (!args.is_array() || args.empty())
          throw core::input_error("Receive: missing block");
        b = decode<block>(args[0], "Receive.arguments[0]");
      } catch (const std::exception& e) {
        spdlog::error("node: bad Receive from broker: {}", e.what());
        return;
      }
    }
    caf::anon_send(me, receive_atom::value, std::move(b));
  });
  st.hub->on("Exit", [me](const json& args) {
    if (!args.empty() && args[0].is_string())
      caf::anon_send(me, exit_atom::value, args[0].get<std::string>());
  });
  st.apps = make_app_runner(cfg, node_id, hub, st.exits);
  auto* apps = st.apps.get();
  st.hub->on("RunApplication", [apps](const json& args) {
    try {
      if (args.empty())
        throw core::input_error("RunApplication: missing argument");
      apps->run(decode<run_application>(args[0], "RunApplication.arguments[0]"));
    } catch (const std::exception& e) {
      spdlog::error("node: bad RunApplication from broker: {}", e.what());
    }
  });
  st.hub->on_connected([me] { caf::anon_send(me, connected_atom::value); });
  st.dl->start();
  st.apps->start();
  st.hub->start();
  std::string brokers;
  for (const auto& b : cfg.brokers)
    brokers += (brokers.empty() ? "" : ", ") + b;
  spdlog::info("node {} connecting to {} (group {}, {} download slots)", node_id, brokers,
               cfg.group, cfg.download.max_blocks);
  self->delayed_send(self, cfg.heartbeat_interval, tick_atom::value);
  return {
    [=](connected_atom) {
      announce_applications(self);
      send_heartbeat(self);
    },
    [=](tick_atom) {
      send_heartbeat(self);
      self->delayed_send(self, self->state.cfg.heartbeat_interval, tick_atom::value);
    },
    [=](receive_atom, block& b) { submit(self, std::move(b)); },
    [=](exit_atom, const std::string& identity) {
      spdlog::info("node: run {} exited: dropping its downloads, stopping its application",
                   identity);
      self->state.dl->cancel_identity(identity);
      self->state.apps->exit(identity);
    },
    [=](stats_atom) -> std::string {
      auto& s = self->state;
      auto d = s.dl->get_stats();
      return json{{"nodeId", s.node_id},         {"connected", s.hub->connected()},
                  {"heartbeats", s.heartbeats},  {"blocksReceived", s.blocks_received},
                  {"pages", d.pages},            {"bytes", d.bytes},
                  {"errors", d.errors},          {"activeBlocks", d.active_blocks},
                  {"applications", s.apps->process_count()},
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
