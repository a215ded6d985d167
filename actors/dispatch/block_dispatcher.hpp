#pragma once
// Block dispatcher: owns every running block job (run identity). Workers push requests
// (deduplicated by request hash, persisted before the reply); each run queues them by
// politeness key (actors/dispatch/host_queues.hpp: per-host budgets, robots.txt, pauses);
// blocks of one key are built when a node has room and the key may start, leased by push
// (`Receive`) or in heartbeat replies; results are stored until the worker acks them.
//
// Block life cycle:
//
//   pending requests of a key --lease--> using(2) --all results--> success(4)
//          ^                                |
//          +-- lease expired / node gone / deferred (429, Retry-After, block paused)
//                                           +-- a request out of attempts --> error
//
// A robots.txt fetch is a one-request block of its key; its answer goes to the key's
// queues, never to the worker.
//
// Run life cycle: open --Complete + nothing waiting/leased/unacked--> finished (Exit to
// the worker, Running row removed, JobStatus final).
#include <chrono>

#include "actors/dispatch/host_queues.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct dispatch_options {
  int block_size = 100;
  std::chrono::milliseconds lease_timeout{60000};  // a leased block without results this long returns
  int max_attempts = 5;                            // leases of one request before it is an error
  int max_redirects = 20;                          // hops of one request (the broker follows them)
  int thread_num = 8;                              // slots of one block at most
  int max_poll = 1000;
  std::int64_t max_poll_bytes = 4 << 20;        // result bytes of one Poll reply (one result at least)
  std::int64_t max_body_bytes = 10 << 20;       // bodies over it are refused by nodes (too_large)
  int blocks_per_node = 256;
  bool pack_results = false;                    // LZ4-pack result bodies before storing (SQLite)
  std::int64_t max_unacked = 20000;             // a run's results stored and not acked beyond which it gets no new blocks (0 = no limit)
  std::int64_t max_unacked_bytes = 1LL << 30;   // ... or their bytes beyond this (0 = no limit)
  std::int64_t frontier_memory_max = 50000;         // requests of a run waiting in memory; more wait on disk (0 = no limit)
  std::chrono::milliseconds slow_node_block{2000};  // block length for nodes < half the fastest
  std::chrono::milliseconds tick{200};             // lease checks and dispatch pump
  std::chrono::milliseconds status_interval{1000}; // JobStatus writes per run at most
  host_queue_options politeness;                   // broker defaults; jobs and Sites override
};

/// The politeness of a run: the broker's defaults with the Site's overrides applied
/// (the job manager writes the job's politeness properties into unset Site fields).
host_queue_options run_politeness(const dispatch_options& opts, const protocol::site& site);

/// Spawns the dispatcher; it first restores every run listed in `Running` from storage.
caf::actor spawn_block_dispatcher(caf::actor_system& sys, caf::actor storage,
                                  dispatch_options opts);

} // namespace spiderhub::actors
