#pragma once
// Block dispatcher: owns every running block job (run identity). Workers push
// requests (deduplicated by request hash, persisted before the reply), requests are
// grouped into blocks, blocks are leased to nodes by push (`Receive`) or in heartbeat
// replies, results are stored until the worker acks them.
//
// Block life cycle (states of the design):
//
//   pending requests --build--> ready(1) --lease--> using(2) --all results--> success(4)
//                                  ^                   |
//                                  +-- lease expired / node gone (attempts < max)
//                                                      +-- attempts >= max --> failed(8)
//
// Run life cycle: open --Complete + nothing pending/leased/unacked--> finished (Exit to
// the worker, Running row removed, JobStatus final).
#include <chrono>

#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct dispatch_options {
  int block_size = 100;
  std::chrono::milliseconds lease_timeout{60000};
  int max_attempts = 5;
  int thread_num = 8;
  int max_poll = 1000;
  int blocks_per_node = 4;
  std::chrono::milliseconds tick{200};            // lease checks and dispatch pump
  std::chrono::milliseconds status_interval{1000}; // JobStatus writes per run at most
};

/// Spawns the dispatcher; it first restores every run listed in `Running` from storage.
caf::actor spawn_block_dispatcher(caf::actor_system& sys, caf::actor storage,
                                  dispatch_options opts);

} // namespace spiderhub::actors
