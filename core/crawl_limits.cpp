#include "core/crawl_limits.hpp"

#include <algorithm>
#include <vector>

#include "core/url.hpp"

namespace spiderhub::core {

int repeated_segments(std::string_view url) {
  auto scheme = url.find("://");
  auto start = url.find('/', scheme == std::string_view::npos ? 0 : scheme + 3);
  if (start == std::string_view::npos)
    return 0;
  auto path = url.substr(start);
  path = path.substr(0, path.find_first_of("?#"));
  std::vector<std::string_view> segments;
  while (!path.empty()) {
    path.remove_prefix(1);  // the '/'
    auto end = path.find('/');
    auto seg = path.substr(0, end);
    if (!seg.empty())
      segments.push_back(seg);
    if (end == std::string_view::npos)
      break;
    path = path.substr(end);
  }
  std::sort(segments.begin(), segments.end());
  int most = 0;
  for (std::size_t i = 0; i < segments.size();) {
    auto j = i;
    while (j < segments.size() && segments[j] == segments[i])
      ++j;
    most = std::max(most, static_cast<int>(j - i));
    i = j;
  }
  return most;
}

const char* crawl_scope::admit(std::string_view url, std::int32_t depth) {
  const auto& l = limits_;
  if (l.max_url_length > 0 && static_cast<std::int64_t>(url.size()) > l.max_url_length)
    return "url_too_long";
  if (l.max_depth > 0 && depth > l.max_depth)
    return "too_deep";
  if (l.max_repeated_segments > 0 && repeated_segments(url) > l.max_repeated_segments)
    return "repeated_segments";
  if (l.max_pages > 0 && taken_ >= l.max_pages)
    return "max_pages";
  if (l.max_pages_per_host > 0) {
    auto& n = per_host_[url_host(std::string(url))];
    if (n >= l.max_pages_per_host)
      return "max_pages_per_host";
    ++n;
  }
  ++taken_;
  return nullptr;
}

} // namespace spiderhub::core
