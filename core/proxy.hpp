#pragma once
// Proxies of a run (issue #37): the job's list as nodes use it, and how a proxy is named
// wherever it could be seen (results, /metrics, logs, the API): without its credentials.
// Pure code; the node's pool (rotation, benching) is actors/agent/proxy_pool.hpp.
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::core {

/// Schemes libcurl speaks to a proxy with (socks5h: the proxy resolves names).
inline constexpr const char* proxy_schemes[] = {"http", "https", "socks4", "socks4a",
                                                "socks5", "socks5h"};

/// Checks one proxy URL: scheme://[user[:password]@]host:port[/], a scheme of
/// proxy_schemes, a host, an explicit port 1-65535, nothing after the port but "/".
/// Returns the URL as given (trimmed); throws input_error naming what is wrong, with the
/// URL redacted.
std::string parse_proxy_url(std::string_view url);

/// A job's Proxies property: URLs separated by commas, blanks or new lines; at least one,
/// at most 10,000, each parse_proxy_url'ed, repeats dropped. Throws input_error.
std::vector<std::string> parse_proxy_list(std::string_view text);

/// scheme://host:port of a proxy URL: what results, metrics and logs show. Anything that
/// does not parse is shown as "proxy" (never echoed).
std::string redacted_proxy(std::string_view url);

/// The list with every URL redacted, as the API shows a job's Proxies.
std::string redacted_proxy_list(std::string_view text);

/// Rotation policies of a run's pool: round_robin (default), random, per_host (one proxy
/// per target host, stable while it is healthy).
bool valid_proxy_rotation(std::string_view name);

} // namespace spiderhub::core
