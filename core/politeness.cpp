#include "core/politeness.hpp"

#include <arpa/inet.h>
#include <libpsl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>

#include "core/error.hpp"
#include "core/url.hpp"

namespace spiderhub::core {
namespace {

bool is_ipv4(const std::string& host) {
  int dots = 0;
  for (char c : host) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 3;
}

/// Registered domain of a host by the public suffix list; the host itself for IP
/// literals, single labels (localhost) and public suffixes.
std::string registered_domain(const std::string& host) {
  if (host.empty() || host[0] == '[' || is_ipv4(host))
    return host;
  static const psl_ctx_t* psl = psl_builtin();
  const char* d = psl ? psl_registrable_domain(psl, host.c_str()) : nullptr;
  return d ? std::string(d) : host;
}

} // namespace

std::optional<politeness_key_kind> parse_politeness_key_kind(std::string_view text) {
  if (text == "host")
    return politeness_key_kind::host;
  if (text == "domain")
    return politeness_key_kind::domain;
  if (text == "ip")
    return politeness_key_kind::ip;
  return std::nullopt;
}

const char* to_string(politeness_key_kind kind) {
  switch (kind) {
    case politeness_key_kind::host: return "host";
    case politeness_key_kind::domain: return "domain";
    case politeness_key_kind::ip: return "ip";
  }
  return "host";
}

std::string ip_key(std::string_view address) { return "ip:" + std::string(address); }

std::string url_host(std::string_view url) {
  auto o = parse_url_origin(url);
  if (!o)
    return {};
  auto host = o->host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host;
}

bool is_ip_literal(std::string_view host) {
  std::string h(host);
  unsigned char buf[16];
  return ::inet_pton(AF_INET, h.c_str(), buf) == 1 || ::inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

std::string resolve_host(const std::string& host, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0 || !list) {
    if (error)
      *error = rc != 0 ? ::gai_strerror(rc) : "no address";
    return {};
  }
  const addrinfo* pick = list;
  for (auto* a = list; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  char text[INET6_ADDRSTRLEN] = {0};
  const void* addr = pick->ai_family == AF_INET
                       ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(pick->ai_addr)->sin_addr)
                       : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(pick->ai_addr)->sin6_addr);
  bool ok = ::inet_ntop(pick->ai_family, addr, text, sizeof text) != nullptr;
  ::freeaddrinfo(list);
  if (!ok) {
    if (error)
      *error = "unprintable address";
    return {};
  }
  return text;
}

std::string politeness_key(std::string_view url, politeness_key_kind kind) {
  auto o = parse_url_origin(url);
  if (!o)
    return {};
  if (kind == politeness_key_kind::domain)
    return o->scheme + "://" + registered_domain(o->host);
  if (kind == politeness_key_kind::ip) {
    auto host = url_host(url);
    return is_ip_literal(host) ? ip_key(host) : std::string();
  }
  return o->scheme + "://" + o->host + ":" + std::to_string(o->port);
}

std::string robots_base(std::string_view url) {
  auto o = parse_url_origin(url);
  if (!o)
    return {};
  bool default_port = (o->scheme == "http" && o->port == 80) || (o->scheme == "https" && o->port == 443);
  return o->scheme + "://" + o->host + (default_port ? "" : ":" + std::to_string(o->port));
}

politeness_overrides parse_politeness_properties(
  const std::map<std::string, std::string>& props) {
  politeness_overrides o;
  auto find = [&](const char* key) -> const std::string* {
    auto it = props.find(key);
    return it == props.end() || it->second.empty() ? nullptr : &it->second;
  };
  auto number = [](const std::string& text, const char* key, std::int64_t lo, std::int64_t hi) {
    char* end = nullptr;
    errno = 0;
    auto v = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || end == text.c_str() || v < lo || v > hi)
      throw input_error(std::string("property '") + key + "' must be a number from " +
                        std::to_string(lo) + " to " + std::to_string(hi));
    return v;
  };
  auto choice = [](const std::string& text, const char* key, const char* yes, const char* no) {
    if (text == yes)
      return true;
    if (text == no)
      return false;
    throw input_error(std::string("property '") + key + "' must be '" + yes + "' or '" + no + "'");
  };
  if (auto v = find("MaxConcurrencyPerHost"))
    o.max_concurrency = static_cast<int>(number(*v, "MaxConcurrencyPerHost", 1, 1000));
  if (auto v = find("DelayMs"))
    o.delay_ms = number(*v, "DelayMs", 0, 3600000);
  if (auto v = find("RobotsTxt"))
    o.robots = choice(*v, "RobotsTxt", "obey", "ignore");
  if (auto v = find("AdaptiveThrottle"))
    o.adaptive = choice(*v, "AdaptiveThrottle", "on", "off");
  if (auto v = find("PolitenessKey")) {
    o.key_kind = parse_politeness_key_kind(*v);
    if (!o.key_kind)
      throw input_error("property 'PolitenessKey' must be 'host', 'domain' or 'ip'");
  }
  return o;
}

std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_unix_ms) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r'))
    value.remove_suffix(1);
  if (value.empty())
    return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    // delay-seconds; more than a day is read as a day (no crawl waits longer on one answer).
    std::int64_t secs = 0;
    for (char c : value) {
      secs = secs * 10 + (c - '0');
      if (secs > 86400) {
        secs = 86400;
        break;
      }
    }
    return secs * 1000;
  }
  // HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms.
  std::string text(value);
  for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                             "%a %b %e %H:%M:%S %Y"}) {
    std::tm tm{};
    const char* end = ::strptime(text.c_str(), format, &tm);
    if (!end || *end != '\0')
      continue;
    auto at_ms = static_cast<std::int64_t>(::timegm(&tm)) * 1000;
    return std::clamp<std::int64_t>(at_ms - now_unix_ms, 0, 86400 * 1000);
  }
  return std::nullopt;
}

} // namespace spiderhub::core
