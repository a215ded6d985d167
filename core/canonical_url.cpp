#include "core/canonical_url.hpp"

#include "core/politeness.hpp"
#include "core/text.hpp"

#include <arpa/inet.h>
#include <idn2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

namespace spiderhub::core {
namespace {

// Byte classes; one table lookup per byte keeps the common (already canonical) case fast.
enum : std::uint8_t {
  unreserved = 1,      // ALPHA DIGIT - . _ ~ (escapes of these are decoded)
  path_escape = 2,     // escaped when raw in a path segment
  query_escape = 4,    // escaped when raw in the query
  userinfo_escape = 8, // escaped when raw in the user or password
  host_forbidden = 16, // makes an (ASCII, decoded) host invalid
};

constexpr std::array<std::uint8_t, 256> make_byte_classes() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum || c == '-' || c == '.' || c == '_' || c == '~')
      t[c] |= unreserved;
    if (c <= 0x20 || c >= 0x7F)
      t[c] |= path_escape | query_escape | userinfo_escape;
    if (c <= 0x20 || c == 0x7F)
      t[c] |= host_forbidden;
  }
  for (unsigned char c : std::string_view("\"<>`{}|^"))
    t[c] |= path_escape | query_escape | userinfo_escape;
  t['\\'] |= query_escape | userinfo_escape;
  for (unsigned char c : std::string_view("/:;=@[]"))
    t[c] |= userinfo_escape;
  for (unsigned char c : std::string_view("\"<>\\^`{|}%/?#@:[]"))
    t[c] |= host_forbidden;
  return t;
}
constexpr auto byte_classes = make_byte_classes();

std::uint8_t byte_class(char c) {
  return byte_classes[static_cast<unsigned char>(c)];
}

// Value of one hex digit; -1 when `c` is none.
int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

char upper_hex(char c) {
  return c >= 'a' && c <= 'f' ? static_cast<char>(c - 'a' + 'A') : c;
}

// Whether `s` starts with `prefix`, ASCII case-insensitively.
bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Appends `s` with escapes normalised: hex upper case, unreserved bytes decoded, a lone
// '%' as "%25", bytes of class `escape` escaped. Runs of plain bytes are copied at once.
void append_component(std::string& out, std::string_view s, std::uint8_t escape) {
  std::size_t run = 0; // start of the pending run of bytes copied as they are
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '%' && !(byte_class(c) & escape))
      continue;
    out.append(s.data() + run, i - run);
    if (c != '%') {
      append_percent_escape(out, static_cast<unsigned char>(c));
    } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      auto v = static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      if (byte_class(v) & unreserved) {
        out += v;
      } else {
        out += '%';
        out += upper_hex(s[i + 1]);
        out += upper_hex(s[i + 2]);
      }
      i += 2;
    } else {
      out += "%25";
    }
    run = i + 1;
  }
  out.append(s.data() + run, s.size() - run);
}

// Parses one part of an IPv4 address the WHATWG way: "0x" hex, leading-0 octal, decimal.
// Values are capped just above 2^32, enough to reject them.
bool parse_ipv4_number(std::string_view s, std::uint64_t& value) {
  if (s.empty())
    return false;
  int radix = 10;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    radix = 16;
    s.remove_prefix(2);
  } else if (s.size() >= 2 && s[0] == '0') {
    radix = 8;
    s.remove_prefix(1);
  }
  value = 0;
  for (char c : s) {
    int d = hex_value(c);
    if (d < 0 || d >= radix)
      return false;
    value = std::min<std::uint64_t>(value * radix + d, std::uint64_t{1} << 33);
  }
  return true;
}

// WHATWG "ends in a number": the last label is digits or a valid IPv4 number.
bool ends_in_number(std::string_view host) {
  auto dot = host.rfind('.');
  auto last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty() || last[0] < '0' || last[0] > '9')
    return false; // the fast exit for names: every IPv4 number starts with a digit
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return true; // even "09", which is no number: the host is then invalid
  std::uint64_t ignored = 0;
  return parse_ipv4_number(last, ignored);
}

// Rewrites out[from..] (a lower-case host that ends in a number) as dotted decimal; false
// when it is no IPv4 address.
bool rewrite_ipv4(std::string& out, std::size_t from) {
  std::string_view host(out.data() + from, out.size() - from);
  std::uint64_t parts[4];
  std::size_t n = 0;
  for (std::size_t start = 0;;) {
    auto dot = host.find('.', start);
    auto part = host.substr(start, dot == std::string_view::npos ? host.npos : dot - start);
    if (n == 4 || !parse_ipv4_number(part, parts[n]))
      return false;
    ++n;
    if (dot == std::string_view::npos)
      break;
    start = dot + 1;
  }
  for (std::size_t i = 0; i + 1 < n; ++i)
    if (parts[i] > 255)
      return false;
  if (parts[n - 1] >= (std::uint64_t{1} << (8 * (5 - n))))
    return false;
  std::uint64_t address = parts[n - 1];
  for (std::size_t i = 0; i + 1 < n; ++i)
    address += parts[i] << (8 * (3 - i));
  out.resize(from);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((address >> shift) & 255);
    if (shift > 0)
      out += '.';
  }
  return true;
}

// Appends "[...]" for a bracketed IPv6 literal, serialised as WHATWG does (lower-case hex,
// the first longest run of two or more zero pieces as "::"); false when it is none.
bool append_ipv6(std::string& out, std::string_view h) {
  if (h.size() < 4 || h.back() != ']' || h.size() - 2 >= INET6_ADDRSTRLEN)
    return false;
  char text[INET6_ADDRSTRLEN];
  std::memcpy(text, h.data() + 1, h.size() - 2);
  text[h.size() - 2] = '\0';
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text, bytes) != 1)
    return false;
  unsigned pieces[8];
  for (int i = 0; i < 8; ++i)
    pieces[i] = (unsigned{bytes[2 * i]} << 8) | bytes[2 * i + 1];
  int best = -1, best_len = 1;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && pieces[j] == 0)
      ++j;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j == i ? i + 1 : j;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out += '[';
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += i == 0 ? "::" : ":";
      i += best_len - 1;
      continue;
    }
    bool leading = true;
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned d = (pieces[i] >> shift) & 15;
      if (d == 0 && leading && shift > 0)
        continue;
      leading = false;
      out += hex[d];
    }
    if (i < 7)
      out += ':';
  }
  out += ']';
  return true;
}

// Appends an ASCII host lower-cased, trailing dots removed, IPv4 forms as dotted decimal;
// false when it is empty or holds a forbidden byte.
bool append_ascii_host(std::string& out, std::string_view h) {
  const std::size_t from = out.size();
  for (char c : h) {
    if (byte_class(c) & host_forbidden) {
      out.resize(from);
      return false;
    }
    out += ascii_lower(c);
  }
  while (out.size() > from && out.back() == '.')
    out.pop_back();
  if (out.size() == from)
    return false;
  if (ends_in_number(std::string_view(out).substr(from)) && !rewrite_ipv4(out, from)) {
    out.resize(from);
    return false;
  }
  return true;
}

// Whether a label of `h` starts with "xn--" (any case).
bool has_punycode_label(std::string_view h) {
  for (std::size_t i = 0; i + 4 <= h.size(); ++i)
    if ((i == 0 || h[i - 1] == '.') && starts_with_ci(h.substr(i), "xn--"))
      return true;
  return false;
}

// The slow host path: percent-escapes decoded, then IDNA for non-ASCII or "xn--" labels.
bool append_unusual_host(std::string& out, std::string_view raw) {
  std::string host;
  host.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      host += raw[i];
    } else if (i + 2 < raw.size() && hex_value(raw[i + 1]) >= 0 && hex_value(raw[i + 2]) >= 0) {
      host += static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2]));
      i += 2;
    } else {
      return false;
    }
  }
  bool non_ascii = std::any_of(host.begin(), host.end(),
                               [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  if (!non_ascii && !has_punycode_label(host))
    return append_ascii_host(out, host);
  if (host.find('\0') != std::string::npos)
    return false;
  if (non_ascii)
    for (std::size_t i = 0; i < host.size();) {
      auto len = utf8_sequence_at(host, i);
      if (len == 0)
        return false;
      i += len;
    }
  char* ascii = nullptr;
  int rc = ::idn2_to_ascii_8z(host.c_str(), &ascii, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
  if (rc == IDN2_OK) {
    bool ok = append_ascii_host(out, ascii);
    ::idn2_free(ascii);
    return ok;
  }
  ::idn2_free(ascii);
  // An ASCII name with a label libidn2 rejects still resolves as written.
  return !non_ascii && append_ascii_host(out, host);
}

// Appends the canonical host of an authority; false when it has none.
bool append_host(std::string& out, std::string_view h) {
  if (h.empty())
    return false;
  if (h.front() == '[')
    return append_ipv6(out, h);
  for (char c : h)
    if (c == '%' || static_cast<unsigned char>(c) >= 0x80)
      return append_unusual_host(out, h);
  if (has_punycode_label(h))
    return append_unusual_host(out, h);
  return append_ascii_host(out, h);
}

// Appends ":port" unless it is empty or the scheme's default; false when not a port.
bool append_port(std::string& out, std::string_view port, bool https) {
  std::uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9')
      return false;
    value = value * 10 + static_cast<std::uint32_t>(c - '0');
    if (value > 65535)
      return false;
  }
  if (port.empty() || value == (https ? 443u : 80u))
    return true;
  out += ':';
  out += std::to_string(value);
  return true;
}

// Appends "user[:password]@" normalised; nothing when both are empty.
void append_userinfo(std::string& out, std::string_view userinfo) {
  auto colon = userinfo.find(':');
  auto user = userinfo.substr(0, colon);
  auto password = colon == std::string_view::npos ? std::string_view{} : userinfo.substr(colon + 1);
  if (user.empty() && password.empty())
    return;
  append_component(out, user, userinfo_escape);
  if (!password.empty()) {
    out += ':';
    append_component(out, password, userinfo_escape);
  }
  out += '@';
}

// Removes ";jsessionid=..." path parameters (any case) from the segment out[from..].
void strip_path_session_ids(std::string& out, std::size_t from) {
  for (auto semi = out.find(';', from); semi != std::string::npos; semi = out.find(';', semi)) {
    if (!starts_with_ci(std::string_view(out).substr(semi + 1), "jsessionid=")) {
      ++semi;
      continue;
    }
    auto end = out.find(';', semi + 1);
    out.erase(semi, end == std::string::npos ? std::string::npos : end - semi);
  }
}

// Appends the path: segments normalised one by one, "." and ".." applied as they end.
void append_path(std::string& out, std::string_view path, const canonical_options& o) {
  const std::size_t path_start = out.size();
  if (path.empty()) {
    out += '/';
    return;
  }
  // path[0] is '/' or '\'; each turn handles the separator at i and the segment after it.
  for (std::size_t i = 0; i < path.size();) {
    std::size_t j = i + 1;
    while (j < path.size() && path[j] != '/' && path[j] != '\\')
      ++j;
    out += '/';
    const std::size_t seg = out.size();
    append_component(out, path.substr(i + 1, j - i - 1), path_escape);
    if (o.strip_session_ids)
      strip_path_session_ids(out, seg);
    std::string_view segment(out.data() + seg, out.size() - seg);
    bool dot = segment == ".", dot_dot = segment == "..";
    if (dot || dot_dot) {
      out.resize(seg - 1);
      if (dot_dot) {
        auto slash = out.rfind('/');
        if (slash != std::string::npos && slash >= path_start)
          out.resize(slash);
      }
      if (j == path.size())
        out += '/'; // "/a/.." is "/a/", as a directory
    }
    i = j;
  }
}

// Whether a query parameter name (any case) is a session id.
bool is_session_param(std::string_view name) {
  return iequals(name, "jsessionid") || iequals(name, "phpsessid") || iequals(name, "sid") ||
         iequals(name, "sessionid") || starts_with_ci(name, "aspsessionid");
}

// Whether a query parameter name (any case) is a marketing tracker.
bool is_tracking_param(std::string_view name) {
  return starts_with_ci(name, "utm_") || iequals(name, "gclid") || iequals(name, "fbclid") ||
         iequals(name, "mc_cid") || iequals(name, "mc_eid");
}

// Applies the options to the normalised query out[from..]: parameters split at '&', empty
// ones and stripped ones dropped, the rest sorted by name (stable) when asked.
void filter_query(std::string& out, std::size_t from, const canonical_options& o) {
  std::string query = out.substr(from);
  std::vector<std::string_view> params;
  std::string_view rest(query);
  for (;;) {
    auto amp = rest.find('&');
    auto param = rest.substr(0, amp);
    auto name = param.substr(0, param.find('='));
    if (!param.empty() && !(o.strip_session_ids && is_session_param(name)) &&
        !(o.strip_tracking && is_tracking_param(name)))
      params.push_back(param);
    if (amp == std::string_view::npos)
      break;
    rest.remove_prefix(amp + 1);
  }
  if (o.sort_query)
    std::stable_sort(params.begin(), params.end(), [](std::string_view a, std::string_view b) {
      return a.substr(0, a.find('=')) < b.substr(0, b.find('='));
    });
  out.resize(from);
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i > 0)
      out += '&';
    out += params[i];
  }
}

// canonical_url for input already free of tabs, newlines and surrounding blanks.
std::string canonicalize(std::string_view s, const canonical_options& o) {
  s = s.substr(0, s.find('#'));
  bool https = false;
  std::size_t at = 0;
  if (starts_with_ci(s, "http:")) {
    at = 5;
  } else if (starts_with_ci(s, "https:")) {
    https = true;
    at = 6;
  } else {
    return {};
  }
  if (s.size() < at + 2 || (s[at] != '/' && s[at] != '\\') ||
      (s[at + 1] != '/' && s[at + 1] != '\\'))
    return {};
  at += 2;
  auto authority_end = std::min(s.find_first_of("/\\?", at), s.size());
  auto authority = s.substr(at, authority_end - at);
  auto query_start = std::min(s.find('?', authority_end), s.size());

  std::string out;
  out.reserve(s.size() + 1); // enough for a canonical input: one allocation
  out += https ? "https://" : "http://";
  auto userinfo_end = authority.rfind('@');
  if (userinfo_end != std::string_view::npos) {
    append_userinfo(out, authority.substr(0, userinfo_end));
    authority.remove_prefix(userinfo_end + 1);
  }
  std::size_t port_colon = 0;
  if (!authority.empty() && authority[0] == '[') {
    port_colon = std::min(authority.find(']'), authority.size());
    ++port_colon;
  } else {
    port_colon = std::min(authority.find(':'), authority.size());
  }
  if (port_colon < authority.size() && authority[port_colon] != ':')
    return {}; // bytes after an IPv6 literal's ']'
  if (!append_host(out, authority.substr(0, std::min(port_colon, authority.size()))))
    return {};
  if (port_colon < authority.size() && !append_port(out, authority.substr(port_colon + 1), https))
    return {};
  append_path(out, s.substr(authority_end, query_start - authority_end), o);
  if (query_start < s.size()) {
    const std::size_t q = out.size() + 1;
    out += '?';
    append_component(out, s.substr(query_start + 1), query_escape);
    if (o.sort_query || o.strip_session_ids || o.strip_tracking)
      filter_query(out, q, o);
    if (out.size() == q)
      out.pop_back(); // "x?" names the same resource as "x" on every server we crawl
  }
  return out;
}

} // namespace

std::string canonical_url(std::string_view url, const canonical_options& o) {
  bool clean = url.empty() || (static_cast<unsigned char>(url.front()) > 0x20 &&
                               static_cast<unsigned char>(url.back()) > 0x20);
  for (std::size_t i = 0; clean && i < url.size(); ++i)
    clean = url[i] != '\t' && url[i] != '\n' && url[i] != '\r';
  if (clean)
    return canonicalize(url, o);
  // WHATWG: trim C0 controls and spaces around, drop tabs and newlines anywhere.
  while (!url.empty() && static_cast<unsigned char>(url.front()) <= 0x20)
    url.remove_prefix(1);
  while (!url.empty() && static_cast<unsigned char>(url.back()) <= 0x20)
    url.remove_suffix(1);
  std::string cleaned;
  cleaned.reserve(url.size());
  for (char c : url)
    if (c != '\t' && c != '\n' && c != '\r')
      cleaned += c;
  return canonicalize(cleaned, o);
}

std::string registrable_domain(std::string_view host) {
  std::string h(host);
  for (auto& c : h)
    c = ascii_lower(c);
  // core/politeness.cpp owns the libpsl lookup (registered_domain, file-local); its public
  // entry is the "domain" politeness key, "http://<registrable domain>".
  if (h.empty() || h.find_first_of(":/?#@[]\\%") != std::string::npos)
    return h; // IPv6 literals, and no host politeness_key could read
  auto key = politeness_key("http://" + h + "/", politeness_key_kind::domain);
  return key.size() > 7 ? key.substr(7) : h;
}

} // namespace spiderhub::core
