#pragma once
// The node's downloader: downloads the requests of leased blocks over HTTP(S) with
// libcurl's multi interface on one thread of its own. Framework-free (no CAF, no Boost)
// so the node actor can own it and unit tests can drive it against a local server.
//
// Threading: submit(), cancel_identity(), free_slots() and get_stats() may be called from
// any thread. The callbacks run on the downloader's thread; they must not block for long
// (the whole crawl waits) and must not call stop() or the destructor.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "protocol/types.hpp"

namespace spiderhub::actors {

struct downloader_options {
  int max_blocks = 4;                                // blocks downloaded at once
  std::chrono::milliseconds timeout{30000};          // whole transfer, redirects included
  std::chrono::milliseconds connect_timeout{10000};
  std::int64_t max_body_bytes = 32 << 20;            // larger bodies: error result
  int max_redirects = 5;
  int retry_download = 3;                            // extra attempts on network errors and 5xx
                                                     // (429 and 503 go back to the broker)
  std::chrono::milliseconds retry_backoff{500};      // first retry delay, doubled each attempt,
                                                     // capped at 30 s
  std::string change_ip_command;                     // /bin/sh -c, when a body matches the
                                                     // block's change_ip_pattern
  std::chrono::milliseconds change_ip_min_interval{5000};  // between two changes
  std::size_t results_batch = 50;                    // results per on_results call at most
  std::size_t results_batch_bytes = 4 << 20;         // ...or fewer once their bodies reach this
  std::chrono::milliseconds results_flush{200};      // a partial batch waits at most this long
  std::int64_t max_buffered_bytes = 256 << 20;       // bodies finished and not yet confirmed
  bool allow_private_addresses = false;  // loopback/private addresses for every run (SSRF guard)
                                                     // (results_confirmed) beyond which no new
                                                     // transfer starts
  std::string user_agent = "spiderhub/0.1";          // when the site sets none
  std::chrono::milliseconds identity_idle{600000};   // cookie jar of an identity without
                                                     // blocks is dropped after this
  int render_tabs = 0;                               // > 0: blocks of runs whose Site asks
  std::string chromium = "/usr/bin/chromium";        // render go to headless Chromium
};

class downloader {
public:
  using results_fn = std::function<void(protocol::block_response)>;
  using block_done_fn =
      std::function<void(const std::string& block_id, const std::string& identity)>;

  /// on_results gets batches of finished results of one block (block_id and identity
  /// set); on_block_done(block_id, identity) follows the last batch of a block. Neither is
  /// called for blocks dropped by cancel_identity() or stop().
  downloader(downloader_options opts, results_fn on_results, block_done_fn on_block_done);
  ~downloader(); // stop()s and joins
  downloader(const downloader&) = delete;
  downloader& operator=(const downloader&) = delete;

  /// Starts the download thread. Blocks submitted before are kept. Not restartable after
  /// stop().
  void start();
  /// Stops the thread; active and queued blocks are dropped without further callbacks.
  void stop();

  /// Queues a block; beyond max_blocks active blocks it waits. Returns false (and ignores
  /// the block) when a block with that id is already active or queued, or after stop().
  bool submit(protocol::block b);
  /// Drops queued and active blocks of a run identity and its cookie jar. Once this
  /// returns no new on_results/on_block_done call starts for them (one already running
  /// on the downloader thread may still finish).
  void cancel_identity(const std::string& identity);

  /// Starts no more requests of that block; the ones not started come back through
  /// on_results as deferred results (the broker queues them again), then on_block_done.
  void pause_block(const std::string& block_id);

  /// The broker stored (or will never store) results whose bodies took `bytes`: they no
  /// longer count against max_buffered_bytes. Any thread.
  void results_confirmed(std::size_t bytes);

  /// max_blocks - active - queued, never below 0.
  int free_slots() const;

  struct stats {
    std::uint64_t pages = 0;   // results with a response and no error
    std::uint64_t bytes = 0;   // body bytes of all results (decoded)
    std::uint64_t errors = 0;  // results with an error
    std::uint64_t retries = 0; // extra attempts made (retries and change-IP repeats)
    int active_blocks = 0;
    int queued_blocks = 0;
    int in_flight = 0; // transfers under way
    std::int64_t buffered_bytes = 0;  // bodies of results not confirmed yet
  };
  stats get_stats() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace spiderhub::actors
