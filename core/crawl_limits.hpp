#pragma once
// Scope and trap limits of a run (job properties MaxUrlLength, MaxDepth, MaxPages,
// MaxPagesPerHost, MaxRepeatedSegments): which pushed requests the broker takes, and why
// it cuts the others. Calendars, session ids in paths and relative-link loops
// (/a/b/a/b/...) make sites endless; these bound a run whatever its spider does. Pure code:
// the dispatcher feeds it every new (not duplicate) request of a run.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace spiderhub::core {

struct crawl_limits {
  std::int64_t max_url_length = 2083;   // bytes of the canonical URL (0 = no limit)
  std::int32_t max_depth = 0;           // request depth (0 = no limit)
  std::int64_t max_pages = 0;           // requests taken per run (0 = no limit)
  std::int64_t max_pages_per_host = 0;  // ... per host:port (0 = no limit)
  std::int32_t max_repeated_segments = 3;  // one path segment at most this often (0 = no limit)
};

/// Why a request was cut; the names are the labels of JobStatus and /metrics.
inline constexpr const char* cut_reasons[] = {"url_too_long", "too_deep", "max_pages",
                                              "max_pages_per_host", "repeated_segments"};

/// Counts what a run took and decides on each new request.
class crawl_scope {
public:
  explicit crawl_scope(crawl_limits limits) : limits_(limits) {}
  /// nullptr: take it (and count it); else the reason it is cut (a cut_reasons entry).
  const char* admit(std::string_view url, std::int32_t depth);
  /// Requests taken before a restart (the per-host counts start again from zero).
  void restored(std::int64_t taken) { taken_ = taken; }
  const crawl_limits& limits() const { return limits_; }

private:
  crawl_limits limits_;
  std::int64_t taken_ = 0;
  std::unordered_map<std::string, std::int64_t> per_host_;
};

/// The most times one non-empty segment occurs in the URL's path ("/a/b/a/b/a" -> 3).
int repeated_segments(std::string_view url);

} // namespace spiderhub::core
