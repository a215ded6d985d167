// robots.txt files from any web server, the paths matched against them, Retry-After values
// and politeness keys of arbitrary URLs: nothing throws or hangs, and the RFC's fixed
// points hold whatever the file says.
#include "common.hpp"
#include "core/politeness.hpp"
#include "core/robots.hpp"

using namespace spiderhub;
using spiderhub::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = fuzz::text(data, size);
  // The last line is a path to match; the rest is the file.
  auto nl = s.rfind('\n');
  auto file = nl == std::string_view::npos ? s : s.substr(0, nl);
  std::string path = "/" + std::string(nl == std::string_view::npos ? "" : s.substr(nl + 1));
  auto rules = core::robots_rules::parse(file, "spiderhub");
  require(rules.allowed("/robots.txt"), "/robots.txt is always allowed");
  (void)rules.allowed(path);
  if (auto d = rules.crawl_delay_ms())
    require(*d >= 0 && *d <= 86400000, "crawl-delay within a day");
  // A file without allow/disallow lines allows everything.
  if (rules.rule_count() == 0)
    require(rules.allowed(path), "no rules, nothing disallowed");
  if (auto ra = core::parse_retry_after(s, 1700000000000))
    require(*ra >= 0 && *ra <= 86400000, "Retry-After within a day");
  auto key = core::politeness_key(s, core::politeness_key_kind::host);
  require(key.empty() || key.rfind("http", 0) == 0, "keys name their scheme");
  (void)core::politeness_key(s, core::politeness_key_kind::domain);
  return 0;
}
