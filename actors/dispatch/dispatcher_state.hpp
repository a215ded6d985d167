#pragma once
// The block dispatcher's state, shared by the files of the one actor (not an interface:
// other actors talk to it through protocol/messages.hpp). block_dispatcher.cpp routes
// messages, builds and leases blocks; worker_results.cpp hands stored results to workers
// (Poll, held Polls, Ack) within their byte budgets.
#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "actors/dispatch/block_dispatcher.hpp"
#include "actors/dispatch/host_queues.hpp"
#include "core/crawl_limits.hpp"
#include "core/digest_set.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::actors::dispatch {

struct block_entry {
  std::string id;
  std::string key;                              // politeness key of every request in it
  std::string robots_origin;                    // set: a robots.txt fetch, not run work
  std::vector<queued_request> requests;
  // Hashes still without a final result, with the Seq of their Request row.
  std::unordered_map<std::string, std::int64_t> outstanding;
  std::string node_id;
  std::int64_t lease_until = 0;                 // unix ms; results extend it
  int thread_num = 1;
  int slots = 1;                                // of the key's budget it still holds
  std::int64_t delay_ms = 0;
  std::int64_t leased_ms = 0;                   // when it was leased (node speed samples)
};

struct counters {
  std::int64_t success = 0, error = 0, skipped = 0;
};

struct run_entry {
  std::string job_id;
  std::string identity;
  int priority = 0;
  std::string full_class_name;
  std::string arguments;
  protocol::site site_settings;
  std::string site_json = "{}";                  // site_settings encoded once for every block
  std::string robots_site_json = "{}";           // the same for robots.txt fetches: every type
  core::digest_set seen;                          // dedup digests of this run
  std::unique_ptr<host_queues> hosts;            // requests waiting, by politeness key
  std::unique_ptr<core::crawl_scope> scope;      // scope and trap limits of new requests
  std::map<std::string, std::int64_t> cut;       // requests those limits cut, by reason
  std::unordered_map<std::string, block_entry> blocks;  // leased blocks
  std::int64_t total = 0;
  counters all;
  std::map<std::string, counters> per_node;
  std::int64_t unacked = 0;                      // stored results not yet acked
  std::unordered_map<std::int64_t, std::int64_t> unacked_sizes;  // their bytes, by result id
  std::int64_t unacked_bytes = 0;                // their sum
  // Results go to the run's workers (consumers: the sessions that Poll it). Each result is
  // leased to one of them until it is acked; a consumer's leases come back (returned) when
  // its session ends, and go out again before anything new. A run of one worker
  // (workers_per_run 1) treats a Poll from another session as that worker reconnected: it
  // takes over and everything unacked is handed out again from the oldest.
  std::int64_t cursor = 0;                       // last result id read for any consumer
  std::set<std::int64_t> returned;               // results of consumers that went away
  std::unordered_map<std::int64_t, caf::actor> lease_of;  // leased result id -> consumer
  bool poll_in_flight = false;                   // one storage read at a time
  // Results stored for this run so far, counted in store completions; a Poll read that
  // came back short saw everything up to the count at its start (drained_gen), so a Poll
  // arriving before the count moves on has nothing new to read.
  std::uint64_t stored_gen = 0;
  std::uint64_t drained_gen = no_gen;
  static constexpr std::uint64_t no_gen = ~std::uint64_t{0};
  // A long Poll that found nothing new (or met another consumer's read): answered by the
  // next store of this run's results, when its wait ends, or empty when its consumer
  // gets a Run or the run ends.
  struct held_poll {
    caf::typed_response_promise<std::string> rp;
    std::int32_t limit = 0;
    std::int64_t max_bytes = 0;
    std::int32_t wait_ms = 0;
    std::uint64_t token = 0;
  };
  struct consumer {
    std::optional<held_poll> held;
  };
  std::map<caf::actor, consumer> consumers;
  std::int32_t workers_per_run = 1;              // Site.workersPerRun (0 = every worker)
  bool completed = false;                        // worker sent Complete
  bool finishing = false;
  bool status_dirty = true;
  // The frontier beyond `frontier_memory_max` waits on disk only (Request.State spilled,
  // push order in Seq); once anything is spilled every new request is too, so the order
  // holds. Read back in chunks as the queue in memory drains below half the limit; the
  // rows stay spilled until downloaded, and reading goes on after the last Seq read.
  std::int64_t spilled = 0;
  // Seq of the last spilled request read (rows migrated from schema 8 are below zero).
  std::int64_t unspilled_to = std::numeric_limits<std::int64_t>::min();
  std::int64_t last_seq = 0;                      // Seq of the run's latest request
  bool unspilling = false;
};

struct proxy_counters {
  std::uint64_t requests = 0;  // results downloaded through it
  std::uint64_t failures = 0;  // attempts that failed at it (retried elsewhere or not)
};

struct node_entry {
  caf::actor session;
  int capacity = 4;
  bool disabled = false;  // `console disable NODE`: keeps its leases, gets no new ones
  std::set<std::pair<std::string, std::string>> leases;  // (identity, block id)
  std::uint64_t last_lease = 0;  // lease sequence number of its latest block
  double slot_rate = 0;          // requests/s per download slot over its recent blocks (0: unknown)
  bool measured = false;         // it finished a block since it connected
  int render_tabs = 0;           // render blocks it may hold at once (0: it cannot render)
  bool change_ip = false;        // it has a change-IP command (ChangeIpPattern runs)
};

struct dispatcher_state {
  caf::actor storage;
  dispatch_options opts;
  std::map<std::string, run_entry> runs;
  std::map<std::string, node_entry> nodes;
  std::set<std::string> disabled;  // node ids, loaded at start, updated by node_enabled_atom
  std::int64_t last_status_ms = 0;
  std::int64_t wake_at = 0;        // a wake_atom is due then (0: none scheduled)
  std::uint64_t lease_seq = 0;
  std::uint64_t poll_token = 0;    // names held Polls for their wait timers
  // Host names of `ip` politeness keys: resolved off the actor threads, a few at a time,
  // and cached (a failed name for a short while).
  std::unordered_map<std::string, std::pair<std::string, std::int64_t>> dns_cache;
  std::deque<std::string> dns_queue;
  std::unordered_set<std::string> dns_busy;  // queued or resolving
  int dns_running = 0;
  // Counters for stats_atom and /metrics.
  std::uint64_t requests_accepted = 0, duplicates = 0, blocks_built = 0, blocks_leased = 0,
                blocks_done = 0, blocks_failed = 0, leases_expired = 0, results_stored = 0,
                results_acked = 0, runs_finished = 0, result_bytes = 0, skipped = 0,
                deferred = 0, robots_fetched = 0, pauses = 0, failed_undownloaded = 0,
                unspilled = 0, redirects = 0, results_released = 0;
  std::map<std::string, std::uint64_t> download_errors;  // by kind, see error_kind()
  std::map<std::string, std::uint64_t> cut;              // requests cut by crawl limits, by reason
  std::map<std::string, proxy_counters> proxies;         // by redacted proxy name
  static inline const char* name = "block_dispatcher";
};

using self_ptr = caf::stateful_actor<dispatcher_state>*;

// ---- shared by the dispatcher's files ---------------------------------------------

/// Persists a write and runs `then` (ok = committed) in the dispatcher's context.
void store(self_ptr self, protocol::write_fn fn, std::function<void(bool)> then = {});
/// The open run of that identity, or null (unknown or finishing).
run_entry* find_run(self_ptr self, const std::string& identity);
caf::error unknown_run(const std::string& identity);
/// Ends the run when nothing of it is left (waiting, leased, unacked).
void maybe_finish(self_ptr self, run_entry& r);
/// Pushes blocks that may start to nodes with free capacity.
void pump(self_ptr self);

// ---- worker_results.cpp -------------------------------------------------------------

/// The run's worker has more results waiting than dispatch.max_unacked_results or
/// dispatch.max_unacked_bytes allow: the run gets no new blocks until it acks.
bool worker_behind(self_ptr self, const run_entry& r);
/// Counts a stored result as waiting for the worker (once per id).
void add_unacked(run_entry& r, std::int64_t id, std::int64_t bytes);
/// Whether results of `r` can still be stored without its consumer doing anything first
/// (only then may a Poll be held).
bool more_may_come(self_ptr self, const run_entry& r);
/// Answers every held Poll of the run with nothing (their wait is over for another reason
/// than results).
void answer_held_polls(run_entry& r);
/// A worker session ended: its leased results go to the run's other workers.
void consumer_gone(self_ptr self, const caf::actor_addr& session);
/// Results of `r` were stored: a held Poll reads them now.
void results_stored(self_ptr self, run_entry& r);
/// Poll: at most `max` results, `max_bytes` of them (one at least), leased to `session`:
/// results of workers that went away first, then those not handed out yet.
caf::result<std::string> poll(self_ptr self, const std::string& identity, std::int32_t max,
                              std::int32_t wait_ms, std::int64_t max_bytes,
                              const caf::actor& session);
/// The wait of a held Poll ended (token names it), or its session is about to get a Run.
void poll_wait_over(self_ptr self, const std::string& identity, std::uint64_t token);
void session_polls_over(self_ptr self, const caf::actor& session);
/// Ack: the results are consumed; deleted, and the run may end or get blocks again.
caf::result<bool> ack(self_ptr self, const std::string& identity, std::vector<std::int64_t> ids);

} // namespace spiderhub::actors::dispatch
