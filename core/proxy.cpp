#include "core/proxy.hpp"

#include <algorithm>
#include <set>

#include "core/error.hpp"

namespace spiderhub::core {

namespace {

struct proxy_parts {
  std::string scheme, host, port;
  bool credentials = false;
};

/// Splits a proxy URL; "" in `why` when it is one.
proxy_parts split(std::string_view url, std::string& why) {
  proxy_parts p;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    why = "no scheme (expected e.g. http://host:3128)";
    return p;
  }
  p.scheme = std::string(url.substr(0, sep));
  std::transform(p.scheme.begin(), p.scheme.end(), p.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::none_of(std::begin(proxy_schemes), std::end(proxy_schemes),
                   [&](const char* s) { return p.scheme == s; })) {
    why = "scheme '" + p.scheme + "' is not one of http, https, socks4, socks4a, socks5, socks5h";
    return p;
  }
  auto rest = url.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/')
    rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    why = "a proxy URL has no path, query or fragment";
    return p;
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    p.credentials = true;
    rest = rest.substr(at + 1);
  }
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      why = "an IPv6 proxy is written [address]:port";
      return p;
    }
    host = rest.substr(0, close + 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      why = "no port (proxies have no default port worth guessing: write host:port)";
      return p;
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty() || host.find_first_of(" \t\r\n") != std::string_view::npos) {
    why = "no host";
    return p;
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoi(std::string(port)) < 1 || std::stoi(std::string(port)) > 65535) {
    why = "port must be 1-65535";
    return p;
  }
  p.host = std::string(host);
  p.port = std::string(port);
  return p;
}

std::string_view trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos)
    return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

/// Calls `fn` with each item of a list separated by commas, blanks or new lines.
template <class Fn> void for_each_item(std::string_view text, Fn fn) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find_first_of(", \t\r\n", pos);
    auto item = text.substr(pos, end == std::string_view::npos ? end : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    if (!item.empty())
      fn(item);
  }
}

} // namespace

std::string parse_proxy_url(std::string_view url) {
  url = trim(url);
  std::string why;
  auto p = split(url, why);
  if (!why.empty())
    throw input_error("proxy '" + redacted_proxy(url) + "': " + why);
  return std::string(url);
}

std::vector<std::string> parse_proxy_list(std::string_view text) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for_each_item(text, [&](std::string_view item) {
    auto url = parse_proxy_url(item);
    if (seen.insert(url).second)
      out.push_back(std::move(url));
  });
  if (out.empty())
    throw input_error("no proxy given (URLs separated by commas, blanks or new lines)");
  if (out.size() > 10000)
    throw input_error("more than 10,000 proxies");
  return out;
}

std::string redacted_proxy(std::string_view url) {
  std::string why;
  auto p = split(trim(url), why);
  if (!why.empty()) {
    // Not a proxy URL: say what scheme it had at most, never the rest.
    return p.scheme.empty() ? std::string("proxy") : p.scheme + "://(malformed)";
  }
  return p.scheme + "://" + p.host + ":" + p.port;
}

std::string redacted_proxy_list(std::string_view text) {
  std::string out;
  for_each_item(text, [&](std::string_view item) {
    if (!out.empty())
      out += ',';
    out += redacted_proxy(item);
  });
  return out;
}

bool valid_proxy_rotation(std::string_view name) {
  return name == "round_robin" || name == "random" || name == "per_host";
}

} // namespace spiderhub::core
