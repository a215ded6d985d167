#include "core/media_type.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace spiderhub::core {
namespace {

// RFC 9110 tchar.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Spaces and tabs; line ends too, since header lines come with theirs.
std::string_view trim(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && blank(s.back()))
    s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

} // namespace

bool valid_media_range(std::string_view range) {
  auto slash = range.find('/');
  if (slash == std::string_view::npos)
    return false;
  auto type = range.substr(0, slash), sub = range.substr(slash + 1);
  if (type == "*")
    return sub == "*";
  return is_token(type) && (sub == "*" || is_token(sub)) && type.find('*') == type.npos &&
         (sub == "*" || sub.find('*') == sub.npos);
}

std::string media_type_of(std::string_view content_type) {
  auto t = trim(content_type.substr(0, content_type.find(';')));
  auto slash = t.find('/');
  if (slash == std::string_view::npos || !is_token(t.substr(0, slash)) ||
      !is_token(t.substr(slash + 1)))
    return {};
  return lower(t);
}

bool media_allowed(const std::vector<std::string>& ranges, std::string_view content_type) {
  if (ranges.empty())
    return true;
  auto type = media_type_of(content_type);
  if (type.empty())
    return true;
  auto slash = type.find('/');
  for (auto& r : ranges) {
    auto range = lower(r);
    if (range == "*/*" || range == type)
      return true;
    if (range.size() == slash + 2 && range.compare(0, slash + 1, type, 0, slash + 1) == 0 &&
        range.back() == '*')
      return true;
  }
  return false;
}

std::vector<std::string> parse_media_ranges(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (item.empty())
      continue;
    if (!valid_media_range(item))
      throw input_error("'" + std::string(item) +
                        "' is not a media type (type/subtype, type/* or */*)");
    out.emplace_back(item);
  }
  return out;
}

} // namespace spiderhub::core
