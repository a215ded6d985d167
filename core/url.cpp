#include "core/url.hpp"

#include "core/error.hpp"
#include "core/text.hpp"

#include <algorithm>
#include <cstring>
#include <optional>

namespace spiderhub::core {

namespace {


std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = ascii_lower(c);
  return out;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char upper_hex(char c) { return c >= 'a' && c <= 'f' ? static_cast<char>(c - 'a' + 'A') : c; }

bool is_special(const std::string& scheme) { return scheme == "http" || scheme == "https"; }

/// A URI reference split per RFC 3986 appendix B (fragment already removed).
struct ref_parts {
  std::string scheme;  // lower case; empty when the reference has none
  bool has_authority = false;
  std::string authority;
  std::string path;
  bool has_query = false;
  std::string query;
};

/// Browser-style clean-up of an href before splitting: trims leading/trailing C0 controls
/// and spaces, drops tabs and newlines anywhere (they are typically line wrapping in the
/// markup), cuts the fragment, and reads '\' as '/' before the query as browsers do for
/// http(s).
std::string clean_ref(std::string_view raw) {
  std::size_t b = 0, e = raw.size();
  while (b < e && static_cast<unsigned char>(raw[b]) <= 0x20)
    ++b;
  while (e > b && static_cast<unsigned char>(raw[e - 1]) <= 0x20)
    --e;
  std::string out;
  out.reserve(e - b);
  bool in_query = false;
  for (std::size_t i = b; i < e; ++i) {
    char c = raw[i];
    if (c == '\t' || c == '\n' || c == '\r')
      continue;
    if (c == '#')
      break;
    if (c == '?')
      in_query = true;
    out += (c == '\\' && !in_query) ? '/' : c;
  }
  return out;
}

ref_parts split_ref(const std::string& s) {
  ref_parts p;
  std::size_t i = 0;
  auto colon = s.find_first_of(":/?");
  if (colon != std::string::npos && s[colon] == ':' && colon > 0 && is_alpha(s[0])) {
    bool ok = true;
    for (std::size_t k = 1; k < colon; ++k) {
      char c = s[k];
      if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.'))
        ok = false;
    }
    if (ok) {
      p.scheme = lowered(std::string_view(s).substr(0, colon));
      i = colon + 1;
    }
  }
  if (s.compare(i, 2, "//") == 0) {
    p.has_authority = true;
    auto end = s.find_first_of("/?", i + 2);
    if (end == std::string::npos)
      end = s.size();
    p.authority = s.substr(i + 2, end - i - 2);
    i = end;
  }
  auto q = s.find('?', i);
  if (q == std::string::npos) {
    p.path = s.substr(i);
  } else {
    p.path = s.substr(i, q - i);
    p.has_query = true;
    p.query = s.substr(q + 1);
  }
  return p;
}

/// RFC 3986 section 5.2.4, index based so long hrefs stay linear-ish.
std::string remove_dot_segments(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  auto pop_segment = [&out] {
    auto slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  std::size_t i = 0;
  const std::size_t n = in.size();
  auto rest_is = [&](const char* s) { return in.compare(i, std::string::npos, s) == 0; };
  auto starts = [&](const char* s) { return in.compare(i, std::strlen(s), s) == 0; };
  while (i < n) {
    if (starts("../")) {
      i += 3;
    } else if (starts("./")) {
      i += 2;
    } else if (starts("/./")) {
      i += 2;  // now at the second '/'
    } else if (rest_is("/.")) {
      out += '/';
      i = n;
    } else if (starts("/../")) {
      pop_segment();
      i += 3;
    } else if (rest_is("/..")) {
      pop_segment();
      out += '/';
      i = n;
    } else if (rest_is(".") || rest_is("..")) {
      i = n;
    } else {
      auto next = in.find('/', in[i] == '/' ? i + 1 : i);
      if (next == std::string::npos)
        next = n;
      out.append(in, i, next - i);
      i = next;
    }
  }
  return out;
}

/// Percent-encodes bytes that may not appear raw in a URL (controls, space, non-ASCII,
/// and the characters browsers escape in paths), and upper-cases existing escapes so two
/// spellings of one URL compare equal. A '%' that starts no valid escape becomes "%25".
std::string encode_component(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '%') {
      if (i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
        out += '%';
        out += upper_hex(s[i + 1]);
        out += upper_hex(s[i + 2]);
        i += 2;
      } else {
        out += "%25";
      }
    } else if (c <= 0x20 || c >= 0x7F || c == '"' || c == '<' || c == '>' || c == '`' ||
               c == '{' || c == '}') {
      append_percent_escape(out, c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// Validated, normalised authority of an http(s) URL.
struct authority_parts {
  std::string userinfo;  // without '@'; empty when none
  std::string host;      // lower case; IPv6 keeps its brackets
  std::string port;      // decimal without leading zeros; empty for the default port
};

std::optional<authority_parts> parse_authority(const std::string& scheme,
                                               const std::string& authority) {
  authority_parts a;
  std::string hostport = authority;
  auto at = authority.rfind('@');
  if (at != std::string::npos) {
    a.userinfo = authority.substr(0, at);
    hostport = authority.substr(at + 1);
  }
  std::string port;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos)
      return std::nullopt;
    a.host = hostport.substr(0, close + 1);
    auto tail = hostport.substr(close + 1);
    if (!tail.empty()) {
      if (tail[0] != ':')
        return std::nullopt;
      port = tail.substr(1);
    }
  } else {
    auto colon = hostport.rfind(':');
    a.host = hostport.substr(0, colon);
    if (colon != std::string::npos)
      port = hostport.substr(colon + 1);
  }
  a.host = lowered(a.host);
  if (a.host.empty())
    return std::nullopt;
  if (a.host[0] == '[') {
    // IPv6 literal: hex digits, ':' and '.' (embedded IPv4) between the brackets.
    for (std::size_t i = 1; i + 1 < a.host.size(); ++i)
      if (!is_hex(a.host[i]) && a.host[i] != ':' && a.host[i] != '.')
        return std::nullopt;
    if (a.host.size() < 4)
      return std::nullopt;  // "[]" or "[:]" is no address
  } else {
    for (char c : a.host) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || std::strchr("\"<>\\^`{|}%/?#@:[]", c) != nullptr)
        return std::nullopt;
    }
  }
  if (!port.empty()) {
    unsigned long value = 0;
    for (char c : port) {
      if (!is_digit(c))
        return std::nullopt;
      value = value * 10 + static_cast<unsigned long>(c - '0');
      if (value > 65535)
        return std::nullopt;
    }
    bool is_default = (scheme == "http" && value == 80) || (scheme == "https" && value == 443);
    if (!is_default)
      a.port = std::to_string(value);
  }
  return a;
}

/// Assembles the normalised URL; "" when it is not a valid http(s) URL.
std::string assemble(const std::string& scheme, const std::string& authority,
                     const std::string& path, bool has_query, const std::string& query) {
  if (!is_special(scheme))
    return {};
  auto a = parse_authority(scheme, authority);
  if (!a)
    return {};
  std::string out = scheme + "://";
  if (!a->userinfo.empty())
    out += encode_component(a->userinfo) + "@";
  out += a->host;
  if (!a->port.empty())
    out += ":" + a->port;
  auto p = remove_dot_segments(path);
  if (p.empty() || p[0] != '/')
    p.insert(p.begin(), '/');
  out += encode_component(p);
  // An empty query ("x?") names the same resource on every server we crawl; dropping
  // the '?' keeps such links from looking new.
  if (has_query && !query.empty())
    out += "?" + encode_component(query);
  return out;
}

std::string resolve_parts(const std::string& base, const std::string& cleaned_ref) {
  auto r = split_ref(cleaned_ref);
  ref_parts b;
  bool base_ok = false;
  if (!base.empty()) {
    b = split_ref(clean_ref(base));
    base_ok = is_special(b.scheme) && b.has_authority;
  }
  // Browsers read "http:foo" on an http page as the relative reference "foo".
  if (!r.scheme.empty() && !r.has_authority && base_ok && r.scheme == b.scheme)
    r.scheme.clear();
  if (!r.scheme.empty())
    return r.has_authority ? assemble(r.scheme, r.authority, r.path, r.has_query, r.query)
                           : std::string{};
  if (!base_ok)
    return {};
  if (r.has_authority)
    return assemble(b.scheme, r.authority, r.path, r.has_query, r.query);
  if (r.path.empty()) {
    return r.has_query ? assemble(b.scheme, b.authority, b.path, true, r.query)
                       : assemble(b.scheme, b.authority, b.path, b.has_query, b.query);
  }
  if (r.path[0] == '/')
    return assemble(b.scheme, b.authority, r.path, r.has_query, r.query);
  // Merge (RFC 3986 section 5.2.3): the base path up to its last '/', then the reference.
  std::string merged;
  if (b.path.empty()) {
    merged = "/" + r.path;
  } else {
    auto slash = b.path.rfind('/');
    merged = (slash == std::string::npos ? std::string{} : b.path.substr(0, slash + 1)) + r.path;
  }
  return assemble(b.scheme, b.authority, merged, r.has_query, r.query);
}

} // namespace

std::string url_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      append_percent_escape(out, c);
    }
  }
  return out;
}

std::string hub_url(const std::string& base, const std::string& path,
                    const std::vector<std::pair<std::string, std::string>>& query,
                    bool websocket) {
  std::string url = base;
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  if (websocket) {
    if (url.rfind("http://", 0) == 0)
      url = "ws://" + url.substr(7);
    else if (url.rfind("https://", 0) == 0)
      url = "wss://" + url.substr(8);
  }
  url += path;
  char sep = '?';
  for (auto& [k, v] : query) {
    url += sep;
    url += url_encode(k);
    url += '=';
    url += url_encode(v);
    sep = '&';
  }
  return url;
}

bool is_broker_url(std::string_view url) {
  std::string_view rest;
  for (std::string_view scheme : {"http://", "https://", "ws://", "wss://"}) {
    if (url.size() >= scheme.size() && iequals(url.substr(0, scheme.size()), scheme)) {
      rest = url.substr(scheme.size());
      break;
    }
  }
  if (rest.empty() || rest[0] == '/' || rest[0] == '?' || rest[0] == '#' || rest[0] == ':')
    return false;
  return std::none_of(rest.begin(), rest.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  });
}

std::vector<std::string> parse_broker_urls(std::string_view list, const std::string& what) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
      s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
      s.remove_suffix(1);
    return s;
  };
  auto key = [](std::string_view s) {
    while (!s.empty() && s.back() == '/')
      s.remove_suffix(1);
    return lowered(s);
  };
  if (trim(list).empty())
    throw input_error(what + ": no broker URL given");
  std::vector<std::string> out;
  std::size_t start = 0, n = 0;
  for (;;) {
    auto comma = list.find(',', start);
    auto element = trim(list.substr(start, comma == std::string_view::npos ? list.npos
                                                                             : comma - start));
    ++n;
    if (element.empty())
      throw input_error(what + ": element " + std::to_string(n) + " of '" + std::string(list) +
                        "' is empty");
    if (!is_broker_url(element))
      throw input_error(what + ": '" + std::string(element) +
                        "' is not an http://, https://, ws:// or wss:// URL with a host");
    for (const auto& seen : out)
      if (key(seen) == key(element))
        throw input_error(what + ": '" + std::string(element) + "' is listed twice");
    out.emplace_back(element);
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  return out;
}

std::string resolve_url(const std::string& base, std::string_view ref) {
  return resolve_parts(base, clean_ref(ref));
}

std::string normalize_url(std::string_view url) { return resolve_parts({}, clean_ref(url)); }

std::string url_host(const std::string& url) {
  auto parts = split_ref(clean_ref(url));
  if (!is_special(parts.scheme) || !parts.has_authority)
    return {};
  auto a = parse_authority(parts.scheme, parts.authority);
  if (!a)
    return {};
  return a->port.empty() ? a->host : a->host + ":" + a->port;
}

std::optional<url_origin> parse_url_origin(std::string_view url) {
  auto parts = split_ref(clean_ref(url));
  if (!is_special(parts.scheme) || !parts.has_authority)
    return std::nullopt;
  auto a = parse_authority(parts.scheme, parts.authority);
  if (!a)
    return std::nullopt;
  url_origin o;
  o.scheme = parts.scheme;
  o.host = std::move(a->host);
  o.port = a->port.empty() ? (o.scheme == "https" ? 443 : 80) : std::stoi(a->port);
  return o;
}

} // namespace spiderhub::core
