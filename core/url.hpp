#pragma once
// URL helpers shared by the broker, the node agent and the worker SDK. URLs this header
// returns are absolute http(s), normalised (lower-case scheme and host, default port
// dropped, dot segments removed, no fragment, unsafe bytes percent-encoded), so they
// compare as plain strings.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spiderhub::core {

/// Percent-encodes everything except unreserved characters (RFC 3986).
std::string url_encode(std::string_view s);

/// Builds "<base without trailing slash><path>?k1=v1&k2=v2" with encoded values, turning
/// http(s):// into ws(s):// when `websocket` is set.
std::string hub_url(const std::string& base, const std::string& path,
                    const std::vector<std::pair<std::string, std::string>>& query,
                    bool websocket = true);

/// True for a broker base URL: http://, https://, ws:// or wss://, then a host (no blanks).
bool is_broker_url(std::string_view url);

/// Broker base URLs from one URL or a comma-separated list "URL1,URL2" (blanks around the
/// elements ignored), in order. Throws input_error "<what>: ..." naming the element that is
/// empty, not a broker URL (is_broker_url) or listed twice (trailing slashes ignored).
std::vector<std::string> parse_broker_urls(std::string_view list, const std::string& what);

/// Resolves the reference `ref` against the absolute URL `base` (RFC 3986 section 5.2,
/// with the browser habits of trimming whitespace and reading '\' as '/'), then
/// normalises it. Returns "" when the result is not a valid http/https URL.
std::string resolve_url(const std::string& base, std::string_view ref);

/// Normalises an absolute http/https URL; "" when `url` is not one.
std::string normalize_url(std::string_view url);

/// Scheme, host and port of an absolute http/https URL.
struct url_origin {
  std::string scheme;  // "http" | "https"
  std::string host;    // lower case; IPv6 keeps its brackets
  int port = 0;        // the default port of the scheme when the URL names none
};
std::optional<url_origin> parse_url_origin(std::string_view url);

/// Lower-case "host" or "host:port" of an http/https URL (default ports dropped);
/// "" when `url` is not one.
std::string url_host(const std::string& url);

} // namespace spiderhub::core
