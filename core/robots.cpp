#include "core/robots.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace spiderhub::core {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = ascii_lower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

/// One spelling for paths and patterns (RFC 9309 section 2.2.2): escapes of unreserved
/// characters decoded, other escapes upper-cased, raw non-ASCII, controls and spaces
/// escaped.
std::string normalize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      auto v = static_cast<unsigned char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      if (unreserved(v))
        out += static_cast<char>(v);
      else
        append_percent_escape(out, v);
      i += 2;
    } else if (c <= 0x20 || c >= 0x7F) {
      append_percent_escape(out, c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// Does `pattern` ('*' = any run of octets, a final '$' = end of path) match a prefix of
/// `path` (or all of it, with '$')? Keeps the set of path positions reachable so far.
bool pattern_matches(std::string_view pattern, std::string_view path) {
  std::vector<std::size_t> pos{0}, next;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '$' && i + 1 == pattern.size())
      return std::find(pos.begin(), pos.end(), path.size()) != pos.end();
    next.clear();
    if (c == '*') {
      for (std::size_t p = pos.front(); p <= path.size(); ++p)
        next.push_back(p);  // pos is sorted: everything from its smallest entry on
    } else {
      for (auto p : pos)
        if (p < path.size() && path[p] == c)
          next.push_back(p + 1);
    }
    if (next.empty())
      return false;
    pos.swap(next);
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> parse_delay_ms(std::string_view value) {
  std::string text(value);
  char* end = nullptr;
  double secs = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(secs) || secs < 0)
    return std::nullopt;
  secs = std::min(secs, 86400.0);  // a day at most: beyond is no crawl at all
  return static_cast<std::int64_t>(std::llround(secs * 1000));
}

} // namespace

std::string robots_product_token(std::string_view user_agent) {
  std::string out;
  for (char c : user_agent) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-')
      out += c;
    else
      break;
  }
  return out;
}

robots_rules robots_rules::allow_all() { return {}; }

robots_rules robots_rules::disallow_all() {
  robots_rules r;
  r.disallow_all_ = true;
  return r;
}

robots_rules robots_rules::parse(std::string_view text, std::string_view product_token) {
  text = text.substr(0, std::min(text.size(), robots_max_bytes));
  // A UTF-8 byte order mark is not part of the first line.
  if (text.substr(0, 3) == "\xEF\xBB\xBF")
    text.remove_prefix(3);

  struct group {
    bool ours = false, star = false;
    std::vector<rule> rules;
    std::optional<std::int64_t> delay;
  };
  std::vector<group> groups;
  bool in_agents = false;  // the previous record was a user-agent line

  for (std::size_t pos = 0; pos < text.size();) {
    auto end = std::min(text.find_first_of("\r\n", pos), text.size());
    auto line = text.substr(pos, end - pos);
    pos = end + 1;
    if (auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto key = trim(line.substr(0, colon));
    auto value = trim(line.substr(colon + 1));
    if (iequals(key, "user-agent")) {
      if (!in_agents)
        groups.emplace_back();
      in_agents = true;
      auto& g = groups.back();
      if (value == "*")
        g.star = true;
      else if (!product_token.empty() && iequals(robots_product_token(value), product_token))
        g.ours = true;
    } else if (iequals(key, "allow") || iequals(key, "disallow")) {
      in_agents = false;
      if (groups.empty())
        continue;  // rules before any user-agent line belong to no group
      if (value.empty())
        continue;  // "Disallow:" with no path allows everything: no rule
      groups.back().rules.push_back(rule{normalize(value), iequals(key, "allow")});
    } else if (iequals(key, "crawl-delay")) {
      in_agents = false;
      if (groups.empty())
        continue;
      if (auto d = parse_delay_ms(value))
        groups.back().delay = std::max(groups.back().delay.value_or(0), *d);
    }
    // Other records (sitemap, host, unknown keys) neither end nor join a group.
  }

  bool any_ours = std::any_of(groups.begin(), groups.end(), [](auto& g) { return g.ours; });
  robots_rules out;
  for (auto& g : groups) {
    if (any_ours ? !g.ours : !g.star)
      continue;
    for (auto& r : g.rules)
      out.rules_.push_back(std::move(r));
    if (g.delay)
      out.crawl_delay_ms_ = std::max(out.crawl_delay_ms_.value_or(0), *g.delay);
  }
  return out;
}

bool robots_rules::allowed(std::string_view path) const {
  if (path == "/robots.txt")
    return true;
  if (disallow_all_)
    return false;
  auto p = normalize(path);
  std::size_t best = 0;
  bool have = false, verdict = true;
  for (auto& r : rules_) {
    if (!pattern_matches(r.pattern, p))
      continue;
    // Most octets wins; on a tie the allow rule (the least restrictive) does.
    if (!have || r.pattern.size() > best || (r.pattern.size() == best && r.allow)) {
      best = r.pattern.size();
      verdict = r.allow;
      have = true;
    }
  }
  return verdict;
}

std::string url_path_and_query(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return {};
  auto rest = url.substr(scheme_end + 3);
  auto slash = rest.find_first_of("/?#");
  if (slash == std::string_view::npos)
    return "/";
  auto pq = rest.substr(slash);
  if (auto hash = pq.find('#'); hash != std::string_view::npos)
    pq = pq.substr(0, hash);
  std::string out(pq);
  if (out.empty() || out[0] != '/')
    out.insert(out.begin(), '/');
  return out;
}

} // namespace spiderhub::core
