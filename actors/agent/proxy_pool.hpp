#pragma once
// A run's proxies on one node (issue #37): which proxy the next download of a run goes
// through (rotation), and which ones are benched after failing several times in a row.
// Pure code, used by the downloader's thread only; table-tested.
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::actors {

class proxy_pool {
public:
  using clock = std::chrono::steady_clock;

  /// `urls` as core::parse_proxy_list gives them; `rotation` "", "round_robin", "random" or
  /// "per_host"; a proxy failing `max_failures` times in a row sits out `bench`.
  proxy_pool(std::vector<std::string> urls, std::string rotation, int max_failures,
             std::chrono::milliseconds bench, std::uint32_t seed = std::random_device{}());

  /// The proxy for the next download to `host`: a healthy one by the rotation; when all are
  /// benched, the one whose bench ends first (it is tried again: a re-test). -1 if empty.
  int pick(std::string_view host, clock::time_point now);
  /// A download through proxy `i` got an answer from its target (or the proxy's own
  /// error page for it): its run of failures ends.
  void succeeded(int i);
  /// A download through proxy `i` failed at the proxy: after max_failures in a row it is
  /// benched until now + bench. Returns true when this failure benched it.
  bool failed(int i, clock::time_point now);

  bool benched(int i, clock::time_point now) const;
  const std::string& url(int i) const { return entries_[static_cast<std::size_t>(i)].url; }
  /// scheme://host:port, for results, logs and metrics.
  const std::string& name(int i) const { return entries_[static_cast<std::size_t>(i)].name; }
  std::size_t size() const { return entries_.size(); }
  /// Whether the pool was made from these settings (a run's blocks all carry the same).
  bool same_settings(const std::vector<std::string>& urls, const std::string& rotation,
                     int max_failures, std::chrono::milliseconds bench) const;

private:
  struct entry {
    std::string url, name;
    int failures = 0;             // in a row
    clock::time_point bench_until{};
  };
  std::vector<entry> entries_;
  std::vector<std::string> urls_;
  std::string rotation_;
  int max_failures_;
  std::chrono::milliseconds bench_;
  std::size_t next_ = 0;
  std::mt19937 rng_;
};

/// Whether a transfer through a proxy failed because of the proxy (it could not be
/// reached, resolved, or spoke no HTTP, asked for credentials with 407, or went silent)
/// rather than because of the target.
bool proxy_failure(int curl_code, long status);

} // namespace spiderhub::actors
