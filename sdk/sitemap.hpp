#pragma once
// Sitemaps as a start source (issue #35): the `Sitemap:` lines of robots.txt, sitemap XML
// (<urlset>) and sitemap indexes (<sitemapindex>), plain or gzip files, as sitemaps.org
// defines them. Pure code (zlib, libxml2), used by the sample spider and by any C++ spider.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::sdk {

/// Bounds of one sitemap file (sitemaps.org: 50,000 URLs and 50 MB uncompressed).
inline constexpr std::size_t max_sitemap_bytes = 50u << 20;
inline constexpr std::size_t max_sitemap_locs = 50000;

/// The absolute http(s) URLs of the `Sitemap:` lines of a robots.txt (field name in any
/// case, value trimmed, a relative one resolved against `robots_url`), unique, in order.
std::vector<std::string> robots_sitemaps(std::string_view robots_txt,
                                         const std::string& robots_url);

struct sitemap {
  enum class kind { none, urlset, index };
  kind type = kind::none;          // none: not a sitemap (or an unreadable one: see error)
  std::vector<std::string> locs;   // <loc> of every <url> / <sitemap>, http(s), resolved
  std::string error;               // why a body that looked like a sitemap was not read
  bool truncated = false;          // more than max_sitemap_locs: the first ones kept
};

/// Reads a sitemap body as downloaded: gzip files (by their magic bytes, whatever the
/// Content-Type) are inflated first, at most max_sitemap_bytes. Any namespace (or none) is
/// accepted on <urlset>/<sitemapindex>. A document with a DTD is refused (entity expansion
/// has no business in a sitemap), as are gzip bombs and malformed XML: type none and
/// `error` set. Locs that are not absolute http(s) URLs are dropped. Never throws.
sitemap parse_sitemap(std::string_view body, const std::string& base_url = {});

} // namespace spiderhub::sdk
