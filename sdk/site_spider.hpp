#pragma once
// Sample spider: crawls one site breadth-first from a start URL and writes one JSON line
// per page ({"url","title","status","depth"}) to an output file.
//
// Run arguments (the job's `arguments` string) are a JSON object:
//   {"startUrl": "https://example.com/",   required, http or https
//    "maxDepth": 3,                         optional, links followed at most this deep (0-100)
//    "output": "items.jsonl",               optional, appended to, relative to the cwd
//    "sameDomain": true,                    optional, follow only links of the start URL's
//                                           registrable domain (IP hosts: its host:port)
//    "sitemaps": false}                     optional, also start from the sitemaps the start
//                                           host's robots.txt names (sdk/sitemap.hpp): robots
//                                           and sitemap files are depth 0 and write no item,
//                                           the pages they list are depth 1
// A <meta http-equiv="refresh"> of under 100 s is followed like a link.
// Unknown keys are rejected so a typo does not silently change the crawl.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include "core/digest_set.hpp"
#include "sdk/worker.hpp"

namespace spiderhub::sdk {

struct site_arguments {
  std::string start_url;  // normalised
  std::int32_t max_depth = 3;
  std::string output = "items.jsonl";
  bool same_domain = true;
  bool sitemaps = false;
};

/// Parses and validates run arguments; throws core::input_error naming the bad key.
site_arguments parse_site_arguments(const std::string& arguments);

/// Cuts a JSON-lines file back to its last complete line (after its last '\n'; to empty
/// when it has none) and returns the bytes cut: 0 when the file ends with '\n', is empty
/// or does not exist. Throws core::input_error when the file cannot be shortened.
std::uintmax_t drop_partial_last_line(const std::string& path);

class site_spider : public spider {
 public:
  /// `progress`: where the once-per-second progress line goes (nullptr: nowhere).
  explicit site_spider(std::FILE* progress = stderr);
  ~site_spider() override;

  std::vector<protocol::request> start_requests(const protocol::worker_run& run) override;
  parse_result parse(const protocol::worker_run& run, const protocol::result& r,
                     const std::string& body) override;
  void on_items(const protocol::worker_run& run,
                const std::vector<nlohmann::json>& items) override;
  void on_run_finished(const protocol::worker_run& run) override;
  /// Pages are parsed on several threads: link extraction needs no lock, the run's sets do.
  bool parse_concurrently() const override { return true; }

  /// Items written to output files so far (all runs); safe to read from any thread.
  std::uint64_t items_written() const { return items_written_.load(); }
  /// Results parsed so far (all runs, redeliveries included); safe from any thread.
  std::uint64_t pages_parsed() const { return pages_.load(); }

 private:
  struct run_state {
    site_arguments args;
    std::string start_host;                      // scope_of(start_url): domain or IP:port
    // URLs already pushed / item URLs already written in this run, as 64-bit hashes of the
    // URL (~13 bytes each instead of ~100 for a set of strings: 1 M pages took ~250 MB).
    // Two URLs sharing a hash (about 1 in 10^13 pairs: ~3e-8 at 1 M URLs) would drop the
    // second, the same odds as the broker's own 64-bit dedup digests.
    core::digest_set requested;
    core::digest_set written;
    std::shared_ptr<std::ofstream> out;
  };

  run_state& state_for(const protocol::worker_run& run);  // with mu_ held
  /// A sitemaps run's robots.txt (`r.url` is one) or sitemap file (`body` reads as one):
  /// the URLs it lists go to `out.requests`, and true (no item); false for anything else.
  /// With mu_ held.
  bool read_sitemap_file(run_state& s, const protocol::result& r, std::string_view body,
                         parse_result& out);
  std::shared_ptr<std::ofstream> open_output(const std::string& path);
  void report_progress();

  std::mutex mu_;                          // runs_, files_, the progress line
  std::map<std::string, run_state> runs_;  // by run identity
  // Runs writing to the same file share one stream so their lines never interleave.
  std::map<std::string, std::weak_ptr<std::ofstream>> files_;
  std::FILE* progress_;
  std::atomic<std::uint64_t> items_written_{0};
  std::atomic<std::uint64_t> pages_{0};
  std::chrono::steady_clock::time_point last_report_;
  std::uint64_t pages_at_last_report_ = 0;
};

} // namespace spiderhub::sdk
