#pragma once
// Small URL helpers shared by the node agent and the worker SDK.
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

} // namespace spiderhub::core
