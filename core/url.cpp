#include "core/url.hpp"

namespace spiderhub::core {

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
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

} // namespace spiderhub::core
