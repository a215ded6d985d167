#pragma once
// robots.txt (RFC 9309): parsing for one crawler and matching of URL paths. Pure code, no
// I/O: the broker fetches the file through a node and hands the text here.
//
// What is implemented: groups of one or more `user-agent` lines (product token compared
// case-insensitively; several groups for one crawler are merged; the `*` groups are used
// only when no group names the crawler), `allow`/`disallow` with `*` and a final `$`, the
// longest pattern wins and `allow` wins a tie, an empty `disallow` is no rule, `/robots.txt`
// is always allowed, percent-encoding normalised on both sides, at most 500 KiB parsed, and
// the non-standard `crawl-delay` (seconds, fractions allowed) of the matched groups.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::core {

/// robots.txt bytes parsed at most (RFC 9309 section 2.5 asks for at least 500 KiB).
constexpr std::size_t robots_max_bytes = 500 * 1024;

/// "spiderhub" of "spiderhub/0.1 (+https://…)": the leading run of letters, '_' and '-'.
std::string robots_product_token(std::string_view user_agent);

class robots_rules {
 public:
  /// No file (4xx): everything allowed.
  static robots_rules allow_all();
  /// Unreachable (5xx, network error): nothing allowed until it is fetched again.
  static robots_rules disallow_all();
  /// The rules of `text` for the crawler named `product_token` (see robots_product_token).
  static robots_rules parse(std::string_view text, std::string_view product_token);

  /// `path` is the URL's path and query, starting with '/'.
  bool allowed(std::string_view path) const;
  /// Crawl-delay of the matched groups (the largest when several give one), in ms.
  std::optional<std::int64_t> crawl_delay_ms() const { return crawl_delay_ms_; }
  /// Allow and disallow rules kept for the crawler.
  std::size_t rule_count() const { return rules_.size(); }
  bool disallows_everything() const { return disallow_all_; }

 private:
  struct rule {
    std::string pattern;  // normalised; may contain '*' and end with '$'
    bool allow = false;
  };
  std::vector<rule> rules_;
  bool disallow_all_ = false;
  std::optional<std::int64_t> crawl_delay_ms_;
};

/// Path and query of an absolute http(s) URL ("/" when it has none); "" when `url` has
/// no authority.
std::string url_path_and_query(std::string_view url);

} // namespace spiderhub::core
