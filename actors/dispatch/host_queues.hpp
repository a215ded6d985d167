#pragma once
// Politeness of one run: requests queued by politeness key, each key's budget (requests in
// flight on all nodes together, delay between request starts, pauses from Retry-After and
// error backoff, adaptive concurrency) and robots.txt per origin. Pure: no CAF, no I/O;
// time comes in as unix milliseconds so tests drive it with a fake clock. The dispatcher
// asks `next(now)` which block may start, and reports what came back.
//
// A key's life:
//
//   push ──► held by its origin until robots.txt is known ──allowed──► pending ──next()──►
//            (a robots fetch is granted first)            └─disallowed─► skipped  leased
//   leased ──release()──► slots free again; with a delay, next start after now + delay
//
// A key may start a block when it has pending requests (or a robots.txt to fetch), is not
// paused, its delay has passed, and it has free slots. With a delay only one block of the
// key is out at a time, so that block's node spaces the starts; without one, several
// blocks may be out as long as their thread_num add up to at most the key's concurrency.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/politeness.hpp"
#include "core/robots.hpp"

namespace spiderhub::actors {

/// A request waiting for a block.
struct queued_request {
  std::string hash;  // dedup hash (16 hex)
  std::string json;  // the Request as the worker sent it
  std::string url;
  int attempts = 0;  // leases that ended without its result
  std::int64_t seq = 0;  // its row in storage (push order in its run); 0: not stored (robots.txt)
};

/// Robots state of one origin (scheme://host:port).
enum class robots_state {
  unknown,      // not fetched yet
  fetching,     // a robots block is out
  ready,        // rules known (allow-all after a 4xx)
  unreachable,  // 5xx or network error: nothing allowed until the retry
  gave_up,      // unreachable robots_max_attempts times: the origin's requests fail
};
const char* to_string(robots_state s);

struct host_queue_options {
  core::host_budget budget;
  core::politeness_key_kind key_kind = core::politeness_key_kind::host;
  std::string user_agent;                  // for robots.txt groups (product token)
  int thread_num = 8;                      // slots of one block at most
  int block_size = 100;                    // requests of one block at most
  std::int64_t lease_timeout_ms = 60000;
  std::int64_t robots_ttl_ms = 86400000;   // a robots.txt is fetched again after this
  std::int64_t robots_retry_ms = 2000;     // first retry of an unreachable robots.txt (doubles)
  int robots_max_attempts = 3;             // then the origin's requests fail
  std::int64_t backoff_initial_ms = 1000;  // first pause after repeated errors (doubles)
  int backoff_after_errors = 2;            // consecutive errors that start a backoff
};

/// What came back for one request, as the dispatcher saw it.
struct host_observation {
  std::int32_t status = 0;                 // 0: no response
  std::int64_t response_ms = 0;
  bool network_error = false;              // timeout, connect, DNS, reset
  std::optional<std::int64_t> retry_after_ms;  // from a 429/503
};

/// Figures of one key for GET /runs/{id}/hosts, the console and /metrics.
struct host_view {
  std::string key;
  std::int64_t pending = 0, held = 0, in_flight = 0, blocks = 0;
  std::int64_t done = 0, errors = 0, skipped = 0, deferred = 0;
  std::map<std::string, std::int64_t> errors_by_kind;
  int concurrency = 0, max_concurrency = 0;
  std::int64_t delay_ms = 0, paused_until_ms = 0;
  std::int64_t latency_ms = 0;             // smoothed response time
  std::string robots;                      // worst state among its origins
};

/// Caps of one grant below the options' (0 = none): a slow node gets smaller blocks.
struct grant_limits {
  int max_requests = 0;
  int max_threads = 0;
};

class host_queues {
 public:
  /// A block the dispatcher may lease now. Either a robots.txt fetch (one request to
  /// `robots_url`, counted as one slot of the key) or up to block_size requests of one key.
  struct grant {
    std::string key;
    std::string robots_origin;             // set for a robots fetch
    std::string robots_url;
    std::vector<queued_request> requests;
    int thread_num = 1;
    std::int64_t delay_ms = 0;             // between two request starts inside the block
  };
  /// Requests the queues decided about without a download.
  struct settled {
    std::vector<queued_request> skipped;                         // robots.txt disallows
    std::vector<std::pair<queued_request, std::string>> failed;  // with the reason
    bool empty() const { return skipped.empty() && failed.empty(); }
  };

  explicit host_queues(host_queue_options opts);
  ~host_queues();
  host_queues(const host_queues&) = delete;
  host_queues& operator=(const host_queues&) = delete;

  /// Queues a request (under its origin until robots.txt is known). A request whose URL
  /// has no http(s) host goes to a key of its own ("invalid") and is leased as is, so the
  /// node reports the error. With the `ip` key kind, a request whose host name has no
  /// address yet waits for `resolved` (its host is listed once by take_unresolved).
  void push(queued_request r, std::int64_t now, settled& out);
  /// Host names that wait for an address since the last call (each listed once).
  std::vector<std::string> take_unresolved();
  /// The address of `host` ("" when it did not resolve: its requests are keyed by host
  /// and port, and their nodes report the DNS error). Queues the requests that waited
  /// for it. Nothing happens when no request of the run waits for `host`.
  void resolved(const std::string& host, const std::string& address, std::int64_t now,
                settled& out);
  /// Requests that wait for an address.
  std::int64_t unresolved() const { return unresolved_count_; }
  /// Puts requests of a block that ended without their results back at the front of
  /// their key (their attempts already counted by the caller).
  void requeue(const std::string& key, std::vector<queued_request> rs, std::int64_t now);

  /// The next block that may start, round robin over keys; nullopt when none may now.
  std::optional<grant> next(std::int64_t now, grant_limits limits = {});
  /// A leased block of `key` ended (results in, failed, or returned); frees the slots it
  /// still held.
  void release(const std::string& key, int slots, std::int64_t now);
  /// A leased block now holds fewer unfinished requests than slots: it can never use
  /// more than that many again, so the difference goes back to the key.
  void shrink(const std::string& key, int slots, std::int64_t now);

  /// The answer to a robots fetch of `origin` (status 0 + error for a failed download).
  void robots_answer(const std::string& origin, std::int32_t status, const std::string& body,
                     const std::string& error, std::int64_t now, settled& out);
  /// A robots fetch that never answered (lease lost): fetched again later.
  void robots_lost(const std::string& origin, std::int64_t now);

  /// One result of a request of `key`: throttling input.
  void observe(const std::string& key, const host_observation& o, std::int64_t now);
  /// Counters only (the dispatcher decides what is an error).
  void count(const std::string& key, bool ok, const std::string& error_kind);
  void count_skipped(const std::string& key, std::int64_t n);
  void count_deferred(const std::string& key, std::int64_t n);

  /// Requests not yet in a block (held or pending), all keys.
  std::int64_t waiting() const { return waiting_; }
  /// When a key blocked by time (delay, pause, robots retry) may start; 0 = none waits.
  std::int64_t next_wake_ms() const;
  std::vector<host_view> view(std::int64_t now) const;
  const host_queue_options& options() const { return opts_; }
  /// The politeness key of `url`; "" when its host name waits for an address.
  std::string key_of(const std::string& url) const;

 private:
  struct origin_entry;
  struct key_entry;
  key_entry& key_for(const std::string& key);
  origin_entry& origin_for(const std::string& origin, key_entry& k);
  /// Puts a key into the structure matching what it waits for (ready, timer or nothing).
  void place(key_entry& k, std::int64_t now);
  bool may_start(const key_entry& k, std::int64_t now, std::int64_t* wake) const;
  int limit(const key_entry& k) const;
  std::int64_t delay(const key_entry& k) const;
  void release_held(origin_entry& o, key_entry& k, std::int64_t now, settled& out);
  void adapt(key_entry& k, std::int64_t now);

  host_queue_options opts_;
  std::unordered_map<std::string, std::unique_ptr<key_entry>> keys_;
  std::unordered_map<std::string, std::unique_ptr<origin_entry>> origins_;
  std::deque<key_entry*> ready_;  // may start now (checked again when popped)
  using timer = std::pair<std::int64_t, key_entry*>;
  std::priority_queue<timer, std::vector<timer>, std::greater<>> timers_;
  std::int64_t waiting_ = 0;
  // `ip` keys: host name -> its key ("" = keyed by host after a failed resolution);
  // requests waiting for an address, by host name; names not yet handed out to resolve.
  std::unordered_map<std::string, std::string> host_keys_;
  std::unordered_map<std::string, std::vector<queued_request>> unresolved_;
  std::vector<std::string> to_resolve_;
  std::int64_t unresolved_count_ = 0;
};

} // namespace spiderhub::actors
