#pragma once
// Worker SDK: connects user spider logic to the broker's /worker hub.
//
// The broker starts a run with `Run`; the SDK then, on its own thread, pushes the spider's
// start requests, calls `Complete`, and loops Poll -> parse -> items -> Push children ->
// Ack until the broker sends `Exit`. The loop is pipelined (the next Poll and this batch's
// pushes travel while the thread parses), but children are always pushed (and answered)
// before the results that produced them are acked, which is what lets the broker decide
// that a run is finished. Failed invocations are retried with backoff, so nothing is lost
// while the connection comes and goes; results are at-least-once, so spiders must tolerate
// seeing a result twice.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/types.hpp"

namespace spiderhub::sdk {

struct parse_result {
  std::vector<protocol::request> requests;  // new requests to crawl
  std::vector<nlohmann::json> items;        // scraped records
};

/// User logic. Every method is called on the SDK's single worker thread, so a spider needs
/// no locking for its own state (unless it opts into concurrent parse, below); several runs
/// may be active at once, though, so keep per-run state keyed by run.identity. Exceptions
/// are caught and logged by the SDK: a throwing start_requests ends the run with no
/// requests, a throwing parse drops that one result (it is still acked so the run can
/// finish).
class spider {
 public:
  virtual ~spider() = default;
  virtual std::vector<protocol::request> start_requests(const protocol::worker_run& run) = 0;
  /// `body` is the raw bytes of the page (already base64-decoded).
  virtual parse_result parse(const protocol::worker_run& run, const protocol::result& r,
                             const std::string& body) = 0;
  virtual void on_item(const protocol::worker_run& run, const nlohmann::json& item) {
    (void)run;
    (void)item;
  }
  /// Items of one Poll batch, after it was parsed and before its results are acked. The
  /// default calls on_item for each; override to write a batch at once.
  virtual void on_items(const protocol::worker_run& run, const std::vector<nlohmann::json>& items) {
    for (const auto& item : items)
      on_item(run, item);
  }
  /// The broker ended the run (Exit), or the broker no longer knows it.
  virtual void on_run_finished(const protocol::worker_run& run) { (void)run; }
  /// True: parse() may be called from worker_options::parse_threads threads at once for
  /// the results of one Poll batch (the spider locks its own state). What they return is
  /// still pushed and handed to on_items in result order, and every other method stays on
  /// the SDK thread, never during a batch's parse calls.
  virtual bool parse_concurrently() const { return false; }
};

struct worker_options {
  // Broker base URL, or several comma-separated ("http://b1:55626/,http://b2:55626/") when
  // brokers share one database: the SDK connects to whichever is active, going round the
  // list (net::hub_client). start() throws core::input_error for a bad element.
  std::string broker = "http://127.0.0.1:55626/";
  std::string token = "1234";                     // HMAC key of the connection sign
  std::string full_class_name;                    // which runs the broker sends us
  int poll_max = 500;                             // results per Poll at most
  // Result bytes per Poll at most (one result always): with the batch in hand and the
  // next Poll's answer on its way, the worker holds about twice this much.
  std::int64_t poll_max_bytes = 4 << 20;
  std::chrono::milliseconds poll_idle{50};        // sleep after a Poll returned nothing
  // How long the broker may hold a Poll that finds nothing new (long poll), so results
  // reach the worker as they are stored instead of after an idle sleep. Asked only while
  // the worker has one run (the SDK thread waits on it); 0 = never.
  std::chrono::milliseconds poll_wait{1000};
  std::chrono::milliseconds reconnect_max{10000}; // cap of the reconnect backoff
  std::chrono::milliseconds invoke_timeout{60000};// one hub call; then it is retried
  // Nothing from the broker this long (it pings at least every sessions.heartbeat_interval,
  // 5 s by default): the link is dead or black-holed; reconnect, to the next broker.
  std::chrono::milliseconds idle_timeout{20000};
  std::chrono::milliseconds retry_initial{100};   // first retry delay, doubled per failure
  std::chrono::milliseconds retry_max{2000};      // cap of the retry delay
  std::size_t push_chunk = 500;                   // requests per Push invocation
  // Threads that parse a Poll batch when the spider allows it (parse_concurrently), the
  // SDK thread included; 0 = one per core (at most 8).
  unsigned parse_threads = 0;
  bool tls_verify = true;                         // wss: check the broker's certificate
  std::string tls_ca_file;                        // PEM CA bundle ("" = system store)
};

struct worker_stats {
  std::uint64_t runs = 0;           // runs started (distinct Run received)
  std::uint64_t runs_finished = 0;  // runs ended (Exit received)
  std::uint64_t pushed = 0;         // requests sent with Push
  std::uint64_t accepted = 0;       // of those, new to the broker
  std::uint64_t results = 0;        // results handed to parse (redeliveries included)
  std::uint64_t items = 0;          // items handed to on_items
  std::uint64_t acked = 0;          // result ids acked
  std::uint64_t retries = 0;        // failed invocations that were retried
};

class worker {
 public:
  /// `s` must outlive the worker.
  worker(worker_options o, spider& s);
  ~worker();  // stops
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Connects (and keeps reconnecting); processing happens on the SDK's own thread.
  void start();
  /// Thread-safe and idempotent; may be called from spider callbacks (then the thread is
  /// joined later, by another stop() or the destructor).
  void stop();
  /// Blocks until `runs` runs have finished (Exit received), stop() was called, or
  /// `timeout` passed; true if the runs finished.
  bool wait_runs_finished(std::size_t runs, std::chrono::milliseconds timeout);
  worker_stats stats() const;
  bool connected() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace spiderhub::sdk
