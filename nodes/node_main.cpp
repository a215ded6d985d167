// spiderhub node: the node actor system on a crawler host.
#include <spdlog/spdlog.h>

#include <iostream>

#include "actors/agent/agent.hpp"
#include "actors/runtime/scheduler_settings.hpp"
#include "core/auth.hpp"
#include "core/error.hpp"
#include "core/process.hpp"
#include "nodes/command_line.hpp"
#include "spiderhub/version.hpp"

using namespace spiderhub;

int node_main(int argc, char** argv) {
  core::block_termination_signals();
  int exit_code = 0;
  auto command = nodes::parse_config_command(argc, argv, "conf/node.yaml",
                                             "Usage: spiderhub node [-c FILE]\n\n"
                 "Runs a crawler node: connects to the broker's /node hub (signed), heartbeats\n"
                 "with host figures, downloads the blocks it is leased and sends the results\n"
                 "back. Reconnects by itself. Stops cleanly on SIGINT/SIGTERM.\n\n", exit_code);
  if (!command)
    return exit_code;
  core::node_config cfg;
  std::string node_id;
  try {
    cfg = core::load_node_config(command->config_path);
    core::setup_logging(cfg.log, "node");
    core::check_client_tls(cfg.tls, cfg.brokers, command->config_path);
    node_id = actors::load_or_create_node_id(cfg);
  } catch (const core::input_error& e) {
    std::cerr << "spiderhub node: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "spiderhub node: " << e.what() << "\n";
    return 1;
  }
  if (!cfg.token.empty() && core::readable_by_others(command->config_path))
    spdlog::warn("{} holds the node's secret and other users may read it (packages run as "
                 "applications.run_as could): chmod 600 {}", command->config_path,
                 command->config_path);
  if (command->check_only) {
    std::cout << "configuration OK (node id " << node_id << ")\n";
    return 0;
  }
  caf::actor_system_config sys_cfg;
  actors::apply_scheduler_settings(cfg.actors, sys_cfg);
  caf::actor_system sys{sys_cfg};
  auto agent = actors::spawn_agent(sys, cfg, node_id);
  auto sig = core::wait_for_termination();
  spdlog::info("node: signal {} received, shutting down", sig);
  caf::scoped_actor waiter{sys};
  waiter->monitor(agent);
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  waiter->receive([](const caf::down_msg&) {});
  spdlog::info("node: stopped cleanly");
  return 0;
}
