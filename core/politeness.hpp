#pragma once
// Politeness vocabulary shared by the broker's dispatcher and the node: which key a URL's
// requests share a budget under, the budget itself, and Retry-After parsing. Pure code.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace spiderhub::core {

/// What the requests of one budget share: the URL's host and port (default), its
/// registered domain (a.example.co.uk and b.example.co.uk share example.co.uk; the public
/// suffix list comes from libpsl), or the IP address its host resolves to (every site of
/// one server shares one budget, whatever its names and ports).
enum class politeness_key_kind { host, domain, ip };

/// "host" | "domain" | "ip" -> kind; nullopt for anything else.
std::optional<politeness_key_kind> parse_politeness_key_kind(std::string_view text);
/// The inverse of parse_politeness_key_kind.
const char* to_string(politeness_key_kind kind);

/// The key of an absolute http(s) URL: "scheme://host:port" for `host` (ports always
/// written, so http://a and http://a:80 share one key), "scheme://domain" for `domain`,
/// ip_key(host) for `ip` when the host is an IP literal. "" when `url` is not an http(s)
/// URL with a host, and for `ip` when its host is a name: the caller resolves it
/// (core::resolve_host) and keys it with ip_key(address).
std::string politeness_key(std::string_view url, politeness_key_kind kind);

/// "ip:ADDRESS" (IPv6 without brackets).
std::string ip_key(std::string_view address);
/// The host of an http(s) URL as written in it, brackets of IPv6 literals removed; ""
/// when `url` is not an http(s) URL with a host.
std::string url_host(std::string_view url);
/// Whether `host` (without brackets) is an IPv4 or IPv6 literal.
bool is_ip_literal(std::string_view host);
/// The first address `host` resolves to (getaddrinfo, IPv4 preferred), as text; "" with
/// `error` set when it does not resolve. Blocks: call it off the actor threads.
std::string resolve_host(const std::string& host, std::string* error);

/// The base URL robots.txt is fetched from for a key's requests: "scheme://host[:port]".
/// "" when `url` is not an http(s) URL.
std::string robots_base(std::string_view url);

/// Limits of one politeness key, all nodes together.
struct host_budget {
  int max_concurrency = 8;          // requests in flight at once
  std::int64_t delay_ms = 0;        // between the starts of two requests
  std::int64_t max_delay_ms = 60000; // cap of Crawl-delay and of error backoff
  bool robots = true;               // fetch and obey robots.txt
  bool adaptive = true;             // tune concurrency from latency and errors
};

/// Overrides of a job or a Site; unset fields keep the broker's value.
struct politeness_overrides {
  std::optional<int> max_concurrency;
  std::optional<std::int64_t> delay_ms;
  std::optional<bool> robots;
  std::optional<politeness_key_kind> key_kind;
  std::optional<bool> adaptive;
};

/// Reads the job properties MaxConcurrencyPerHost (1-1000), DelayMs (0-3600000), RobotsTxt
/// (obey|ignore), PolitenessKey (host|domain|ip) and AdaptiveThrottle (on|off). Throws
/// core::input_error naming the property.
politeness_overrides parse_politeness_properties(const std::map<std::string, std::string>& props);

/// Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date, as milliseconds
/// from `now_unix_ms` (0 for a date in the past). nullopt when the value is neither.
std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_unix_ms);

} // namespace spiderhub::core
