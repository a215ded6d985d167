// spiderhub broker: the broker actor system.
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "actors/broker/job_manager.hpp"
#include "actors/console/inspector.hpp"
#include "actors/dispatch/block_dispatcher.hpp"
#include "actors/gateway/api.hpp"
#include "actors/gateway/gateway.hpp"
#include "actors/runtime/scheduler_settings.hpp"
#include "actors/scheduler/scheduler.hpp"
#include "actors/scheduler/schedulernet.hpp"
#include "actors/storage/storage_actor.hpp"
#include "core/error.hpp"
#include "core/process.hpp"
#include "nodes/broker_failover.hpp"
#include "nodes/command_line.hpp"
#include "spiderhub/version.hpp"
#include "storage/leader.hpp"
#include "storage/repositories.hpp"

using namespace spiderhub;

namespace {

actors::gateway_options gateway_options_of(const core::broker_config& c) {
  actors::gateway_options g;
  g.server.address = c.http.address;
  g.server.port = static_cast<std::uint16_t>(c.http.port);
  g.server.io_threads = c.http.io_threads;
  // Package uploads may be larger than other bodies; the api checks each route's limit.
  g.server.max_body_bytes =
    static_cast<std::size_t>(std::max(c.http.max_body_bytes, c.packages.max_bytes));
  g.server.max_message_bytes = static_cast<std::size_t>(c.http.max_message_bytes);
  g.server.max_write_queue_bytes = static_cast<std::size_t>(c.http.max_write_queue_bytes);
  g.server.handshake_timeout = c.http.handshake_timeout;
  g.server.idle_timeout = c.http.idle_timeout;
  g.server.max_connections = static_cast<std::size_t>(c.http.max_connections);
  g.server.tls_cert_file = c.http.tls_cert;
  g.server.tls_key_file = c.http.tls_key;
  g.sessions.heartbeat_interval = c.sessions.heartbeat_interval;
  g.sessions.missed_heartbeats = c.sessions.missed_heartbeats;
  // Workers hear from the broker at least this often: a silent link is noticed by them
  // within a few periods (worker idle_timeout_ms), not after TCP's minutes.
  g.sessions.keepalive = std::min(g.sessions.keepalive, c.sessions.heartbeat_interval);
  g.sessions.max_record_bytes = static_cast<std::size_t>(c.http.max_message_bytes);
  g.sessions.max_write_queue_bytes = static_cast<std::size_t>(c.http.max_write_queue_bytes);
  g.sessions.max_poll_bytes = static_cast<std::size_t>(c.dispatch.max_poll_bytes);
  return g;
}

actors::dispatch_options dispatch_options_of(const core::broker_config& c) {
  actors::dispatch_options d;
  d.block_size = c.dispatch.block_size;
  d.lease_timeout = c.dispatch.lease_timeout;
  d.max_attempts = c.dispatch.max_attempts;
  d.max_redirects = c.dispatch.max_redirects;
  d.thread_num = c.dispatch.thread_num;
  d.max_poll = c.dispatch.max_poll;
  d.max_poll_bytes = c.dispatch.max_poll_bytes;
  d.max_body_bytes = c.dispatch.max_body_bytes;
  d.blocks_per_node = c.dispatch.blocks_per_node;
  d.slow_node_block = c.dispatch.slow_node_block;
  d.frontier_memory_max = c.dispatch.frontier_memory_max;
  d.max_unacked = c.dispatch.max_unacked;
  d.max_unacked_bytes = c.dispatch.max_unacked_bytes;
  // PostgreSQL compresses large values by itself (TOAST); its Body column is text. With
  // the result spool the storage thread packs, and only past a backlog
  // (storage.compress_spool_above_mb): bodies that live a second are not worth ~5 us each.
  d.pack_results = c.storage.kind == "sqlite" && c.storage.compress_results && !c.storage.result_spool;
  auto& p = d.politeness;
  const auto& pc = c.politeness;
  p.key_kind = *core::parse_politeness_key_kind(pc.key);  // the loader accepted only these
  p.budget.max_concurrency = pc.max_concurrency_per_host;
  p.budget.delay_ms = pc.delay.count();
  p.budget.max_delay_ms = pc.max_delay.count();
  p.budget.robots = pc.robots;
  p.budget.adaptive = pc.adaptive;
  p.robots_ttl_ms = pc.robots_ttl.count();
  p.robots_retry_ms = pc.robots_retry.count();
  p.robots_max_attempts = pc.robots_max_attempts;
  p.backoff_initial_ms = pc.backoff_initial.count();
  p.backoff_after_errors = pc.backoff_after_errors;
  return d;
}

// The keyring and failure limiter shared by the gateway's io threads and the api actor.
std::shared_ptr<const actors::auth_gate> auth_gate_of(const core::broker_config& c) {
  auto g = std::make_shared<actors::auth_gate>();
  g->keys = core::keyring(c.auth.token, c.auth.tokens);
  g->limiter = std::make_shared<core::failure_limiter>(
    c.auth.max_failures, std::int64_t{c.auth.failure_window_s} * 1000,
    std::int64_t{c.auth.block_s} * 1000);
  g->sign_window_s = c.auth.sign_window_s;
  g->used_signs = std::make_shared<core::sign_ledger>(std::int64_t{c.auth.sign_window_s} * 1000);
  return g;
}

int run_broker(const core::broker_config& cfg) {
  // PostgreSQL: first lead (or wait as a standby until this broker may), then start as
  // after a restart: the recovery below is the same for both.
  std::unique_ptr<storage::leader_lease> lease;
  std::int64_t token = 0;
  if (cfg.storage.kind == "postgresql") {
    try {
      auto t = nodes::wait_for_leadership(cfg, gateway_options_of(cfg).server, lease);
      if (!t)
        return 0;
      token = *t;
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return 1;
    }
  }
  std::unique_ptr<nodes::lease_keeper> keeper;
  if (lease)
    keeper = std::make_unique<nodes::lease_keeper>(*lease, token, cfg.failover.lease);
  auto auth = auth_gate_of(cfg);
  caf::actor_system_config sys_cfg;
  actors::apply_scheduler_settings(cfg.actors, sys_cfg);
  if (cfg.inspector.enabled) {
    // The middleman (CAF's network layer) only serves the inspector: without it the
    // broker runs no CAF networking thread at all.
    sys_cfg.load<caf::io::middleman>();
    sys_cfg.set("middleman.app-identifiers",
                std::vector<std::string>{actors::inspector_app_id});
  }
  caf::actor_system sys{sys_cfg};

  caf::actor storage;
  try {
    actors::storage_options so;
    so.open.kind = cfg.storage.kind;
    so.open.path = cfg.storage.path;
    so.open.postgresql = cfg.storage.postgresql;
    so.open.busy_timeout = cfg.storage.busy_timeout;
    if (cfg.storage.kind == "sqlite") {
      // The spool is opened even when new bodies go to rows, so rows written with it
      // stay readable.
      so.open.spool.dir = cfg.storage.spool_dir.empty() ? cfg.storage.path + ".results"
                                                        : cfg.storage.spool_dir;
      so.open.spool.segment_bytes = std::int64_t{cfg.storage.spool_segment_mb} << 20;
      so.open.spool.sync = cfg.storage.spool_sync;
      so.open.spool.pack_above_bytes =
        cfg.storage.compress_results ? std::int64_t{cfg.storage.compress_spool_above_mb} << 20 : -1;
      so.open.spool_writes = cfg.storage.result_spool;
    }
    // A paused leader must not hold row locks a standby's takeover waits for.
    so.open.idle_in_transaction = cfg.failover.lease;
    so.open.fence = token;
    so.batch_max = cfg.storage.batch_max;
    if (lease)
      so.on_fenced = [](const std::string& why) { nodes::step_down(why); };
    storage = actors::spawn_storage(sys, so);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  // No session survives a restart: every node is offline until it reconnects.
  caf::anon_send(storage, protocol::write_atom::value,
                 protocol::write_fn([](storage::database& db) {
                   storage::node_repository(db).mark_all_offline();
                   storage::worker_repository(db).close_all();
                 }));

  auto dispatcher = actors::spawn_block_dispatcher(sys, storage, dispatch_options_of(cfg));
  actors::job_manager_options jopts;
  jopts.max_cpu = cfg.placement.max_cpu;
  jopts.min_free_memory_mb = cfg.placement.min_free_memory_mb;
  jopts.online_window_s = cfg.placement.online_window_s;
  jopts.announce_wait = std::max(std::chrono::milliseconds(10000), 2 * cfg.sessions.heartbeat_interval);
  auto jobs = actors::spawn_job_manager(sys, storage, dispatcher, jopts);
  // Either the builtin cron scheduler or the Scheduler.NET client, never both (a job
  // would fire twice); the api tells it about every job change.
  caf::actor scheduler;
  if (cfg.scheduler.kind == "schedulernet") {
    actors::schedulernet_options nopts;
    nopts.url = cfg.scheduler.schedulernet_url;
    nopts.token = cfg.scheduler.schedulernet_token;
    nopts.api_token = auth->keys.first_secret(core::role_admin);
    nopts.callback_base_url = cfg.scheduler.callback_base_url;
    if (nopts.callback_base_url.empty()) {
      auto host = cfg.http.address == "0.0.0.0" || cfg.http.address == "::"
                    ? std::string("127.0.0.1")
                    : cfg.http.address;
      nopts.callback_base_url = std::string(cfg.http.tls_cert.empty() ? "http" : "https") +
                                "://" + host + ":" + std::to_string(cfg.http.port);
      spdlog::warn("scheduler.callback_base_url is empty: Scheduler.NET will call back {}",
                   nopts.callback_base_url);
    }
    if (cfg.scheduler.timezone != "UTC")
      spdlog::warn("scheduler.timezone {} is not used in schedulernet mode: Scheduler.NET "
                   "evaluates cron expressions in its own zone",
                   cfg.scheduler.timezone);
    scheduler = actors::spawn_schedulernet(sys, storage, nopts);
  } else {
    actors::scheduler_options sopts;
    sopts.timezone = cfg.scheduler.timezone;
    sopts.misfire_grace = std::chrono::seconds(cfg.scheduler.misfire_grace_s);
    scheduler = actors::spawn_scheduler(sys, storage, jobs, sopts);
  }
  actors::api_options aopts;
  aopts.auth = auth;
  aopts.audit_max_rows = cfg.storage.audit_max_rows;
  aopts.timezone = cfg.scheduler.timezone;
  aopts.packages.dir = cfg.packages.dir;
  aopts.packages.max_bytes = cfg.packages.max_bytes;
  aopts.packages.limits.max_unpacked_bytes = cfg.packages.max_unpacked_bytes;
  aopts.max_body_bytes = cfg.http.max_body_bytes;
  auto api = actors::spawn_api(sys, aopts, {storage, jobs, dispatcher, scheduler});
  auto& registry = sys.registry();
  registry.put(caf::atom("storage"), caf::actor_cast<caf::strong_actor_ptr>(storage));
  registry.put(caf::atom("dispatch"), caf::actor_cast<caf::strong_actor_ptr>(dispatcher));
  registry.put(caf::atom("jobs"), caf::actor_cast<caf::strong_actor_ptr>(jobs));
  registry.put(caf::atom("scheduler"), caf::actor_cast<caf::strong_actor_ptr>(scheduler));
  registry.put(caf::atom("api"), caf::actor_cast<caf::strong_actor_ptr>(api));
  // With the inspector on, the sessions reach the job manager through the session
  // registry, which notes them for `console actors` and passes every message on.
  caf::actor sessions;
  if (cfg.inspector.enabled) {
    sessions = actors::spawn_session_registry(sys, jobs);
    registry.put(caf::atom("sessions"), caf::actor_cast<caf::strong_actor_ptr>(sessions));
  }

  actors::gateway_handle gw;
  try {
    auto gopts = gateway_options_of(cfg);
    gopts.auth = auth;
    gw = actors::spawn_gateway(sys, gopts,
                               {storage, dispatcher, sessions ? sessions : jobs}, api);
  } catch (const std::exception& e) {
    spdlog::critical("gateway: cannot listen on {}:{}: {}", cfg.http.address, cfg.http.port,
                     e.what());
    for (auto& a : {sessions, api, scheduler, jobs, dispatcher, storage})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    return 1;
  }
  registry.put(caf::atom("gateway"), caf::actor_cast<caf::strong_actor_ptr>(gw.actor));

  caf::actor inspector;
  if (cfg.inspector.enabled) {
    actors::inspector_options iopts;
    iopts.secret = cfg.inspector.secret;
    iopts.audit_max_rows = cfg.storage.audit_max_rows;
    inspector = actors::spawn_inspector(sys, iopts);
    // SO_REUSEADDR: a restarted broker must get its port back while connections of
    // the previous process linger in TIME_WAIT (it never shares a port with a listener).
    auto port = sys.middleman().publish(inspector,
                                        static_cast<std::uint16_t>(cfg.inspector.port),
                                        cfg.inspector.address.c_str(), true);
    if (!port) {
      spdlog::critical("inspector: cannot listen on {}:{}: {}", cfg.inspector.address,
                       cfg.inspector.port, sys.render(port.error()));
      for (auto& a : {inspector, gw.actor, sessions, api, scheduler, jobs, dispatcher, storage})
        if (a)
          caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      return 1;
    }
    registry.put(caf::atom("inspector"), caf::actor_cast<caf::strong_actor_ptr>(inspector));
    spdlog::info("inspector listening on {}:{} ({}; 'spiderhub console --broker {}:{}')",
                 cfg.inspector.address, *port,
                 cfg.inspector.secret.empty() ? "no secret" : "secret required",
                 cfg.inspector.address, *port);
  }
  spdlog::info("broker {} ready: http://{}:{}/ (hubs /node and /worker)", version_string,
               cfg.http.address, gw.port);

  auto sig = core::wait_for_termination();
  spdlog::info("broker: signal {} received, shutting down", sig);
  // Stop accepting first (console, then hubs and API), then the actors; storage last so
  // queued writes commit.
  caf::scoped_actor waiter{sys};
  if (inspector)
    sys.middleman().unpublish(inspector);
  // The dashboard's live feed, spawned by the gateway.
  auto live = caf::actor_cast<caf::actor>(registry.get(caf::atom("live")));
  for (auto& a : {inspector, gw.actor, live, sessions, api, scheduler, jobs, dispatcher}) {
    if (!a)
      continue;
    waiter->monitor(a);
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    waiter->receive([](const caf::down_msg&) {});
  }
  waiter->monitor(storage);
  caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
  waiter->receive([](const caf::down_msg&) {});
  for (auto name : {caf::atom("storage"), caf::atom("dispatch"), caf::atom("jobs"),
                    caf::atom("scheduler"), caf::atom("api"), caf::atom("gateway"),
                    caf::atom("sessions"), caf::atom("inspector"), caf::atom("live")})
    registry.erase(name);
  // Every write committed: a standby may take over at once.
  if (keeper)
    keeper->stop_and_release();
  spdlog::info("broker: stopped cleanly");
  return 0;
}

} // namespace

int broker_main(int argc, char** argv) {
  core::block_termination_signals();
  {
    // For a deposed leader's re-exec: the program, its command, then the arguments.
    std::vector<char*> full{const_cast<char*>("spiderhub"), const_cast<char*>("broker")};
    full.insert(full.end(), argv + 1, argv + argc);
    nodes::remember_command_line(static_cast<int>(full.size()), full.data());
  }
  int exit_code = 0;
  auto command = nodes::parse_config_command(argc, argv, "conf/broker.yaml",
                                             "Usage: spiderhub broker [-c FILE]\n\n"
                 "Runs the broker: HTTP API and SignalR hubs (/node, /worker), node and worker\n"
                 "sessions, cron scheduler, block dispatcher and storage (SQLite, or PostgreSQL\n"
                 "shared by several brokers: one leads, the others wait as standbys and take\n"
                 "over when its lease lapses). Stops cleanly on SIGINT/SIGTERM.\n\n", exit_code);
  if (!command)
    return exit_code;
  core::broker_config cfg;
  try {
    cfg = core::load_broker_config(command->config_path);
    core::setup_logging(cfg.log, "broker");
  } catch (const core::input_error& e) {
    std::cerr << "spiderhub broker: " << e.what() << "\n";
    return 2;
  }
  // Safe start: off loopback, authentication must be on with strong secrets.
  auto problem = core::safe_start_problem(cfg.http.address,
                                          core::keyring(cfg.auth.token, cfg.auth.tokens));
  if (!problem.empty()) {
    if (!cfg.auth.insecure) {
      std::cerr << "spiderhub broker: " << problem
                << ".\nSet auth.token (or auth.tokens) in " << command->config_path
                << " to a fresh secret ('spiderhub token' prints one), listen on 127.0.0.1, "
                   "or set auth.insecure: true to accept the risk.\n";
      return 2;
    }
    spdlog::warn("INSECURE (auth.insecure: true): {}; anyone who can reach it may control "
                 "this broker", problem);
  }
  if (!cfg.auth.token.empty() || !cfg.auth.tokens.empty())
    if (core::readable_by_others(command->config_path))
      spdlog::warn("{} holds secrets and other users may read it: chmod 600 {}",
                   command->config_path, command->config_path);
  if (command->check_only) {
    std::cout << "configuration OK\n";
    return 0;
  }
  return run_broker(cfg);
}
