#pragma once
// Node agent: the node's actor. It holds the SignalR connection to the broker's /node
// hub (reconnecting with backoff and jitter), heartbeats with real host figures,
// feeds leased blocks to the downloader and sends results back with
// SaveBlockResponse.
//
//   connecting --handshake--> connected --tick--> Heartbeat -> Block[] -> downloader
//        ^                        |  Receive(block) -> downloader
//        +----- disconnected <----+  Exit(identity) -> cancel downloads of that run
#include "core/config.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::actors {

/// Spawns the agent; it connects at once. `node_id` is the node's persistent GUID.
caf::actor spawn_agent(caf::actor_system& sys, core::node_config cfg, std::string node_id);

/// Reads the node id from cfg.id_file, creating it with a new GUID when missing.
/// Throws core::input_error when the file holds something that is not a GUID.
std::string load_or_create_node_id(const core::node_config& cfg);

} // namespace spiderhub::actors
