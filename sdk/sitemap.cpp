#include "sdk/sitemap.hpp"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <zlib.h>

#include <cstring>
#include <memory>
#include <unordered_set>

#include "core/url.hpp"

namespace spiderhub::sdk {

namespace {

constexpr std::string_view blanks = " \t\r\n\f\v";

std::string_view trim(std::string_view s) {
  auto b = s.find_first_not_of(blanks);
  if (b == std::string_view::npos)
    return {};
  return s.substr(b, s.find_last_not_of(blanks) - b + 1);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20))
      return false;
  return true;
}

bool http_url(const std::string& url) {
  return url.compare(0, 7, "http://") == 0 || url.compare(0, 8, "https://") == 0;
}

/// Inflates a gzip file into `out`, at most `limit` bytes; false with `why` when it is not
/// one, is damaged, or inflates past the limit.
bool gunzip(std::string_view in, std::size_t limit, std::string& out, std::string& why) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    why = "zlib could not start";
    return false;
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END)
      break;
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > limit) {
      inflateEnd(&z);
      why = "inflates to more than " + std::to_string(limit) + " bytes";
      return false;
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0)
      break;  // input ended before the stream did
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    why = "damaged gzip data";
    return false;
  }
  return true;
}

const char* local_name(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

/// The trimmed text of the first <loc> child of `entry` ("" when none).
std::string loc_of(const xmlNode* entry) {
  for (auto* c = entry->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && std::strcmp(local_name(c), "loc") == 0) {
      std::unique_ptr<xmlChar, decltype(xmlFree)> text(xmlNodeGetContent(c), xmlFree);
      return text ? std::string(trim(reinterpret_cast<const char*>(text.get()))) : std::string();
    }
  return {};
}

struct parser_init {
  parser_init() { xmlInitParser(); }
};

} // namespace

std::vector<std::string> robots_sitemaps(std::string_view robots_txt,
                                         const std::string& robots_url) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  std::size_t pos = 0;
  while (pos < robots_txt.size()) {
    auto end = robots_txt.find_first_of("\r\n", pos);
    auto line = robots_txt.substr(pos, end == std::string_view::npos ? end : end - pos);
    pos = end == std::string_view::npos ? robots_txt.size() : end + 1;
    if (auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(trim(line.substr(0, colon)), "sitemap"))
      continue;
    auto value = std::string(trim(line.substr(colon + 1)));
    if (value.empty())
      continue;
    auto url = core::resolve_url(robots_url, value);
    if (!url.empty() && http_url(url) && seen.insert(url).second)
      out.push_back(std::move(url));
  }
  return out;
}

sitemap parse_sitemap(std::string_view body, const std::string& base_url) {
  static parser_init init;
  sitemap out;
  std::string inflated;
  if (body.size() >= 2 && static_cast<unsigned char>(body[0]) == 0x1f &&
      static_cast<unsigned char>(body[1]) == 0x8b) {
    if (!gunzip(body, max_sitemap_bytes, inflated, out.error)) {
      out.error = "gzip sitemap: " + out.error;
      return out;
    }
    body = inflated;
  } else if (body.size() > max_sitemap_bytes) {
    out.error = "sitemap of more than " + std::to_string(max_sitemap_bytes) + " bytes";
    return out;
  }
  // No network, no entity substitution, no DTD loading (libxml2's defaults, said anyway).
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
    xmlReadMemory(body.data(), static_cast<int>(body.size()), base_url.c_str(), nullptr,
                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
    xmlFreeDoc);
  if (!doc) {
    // Not XML at all is simply not a sitemap; XML that breaks off is a damaged one.
    auto start = trim(body.substr(0, 256));
    if (start.substr(0, 5) == "<?xml" || start.find("<urlset") != std::string_view::npos ||
        start.find("<sitemapindex") != std::string_view::npos)
      out.error = "malformed sitemap XML";
    return out;
  }
  auto* root = xmlDocGetRootElement(doc.get());
  if (!root)
    return out;
  const char* entry_name = nullptr;
  auto type = sitemap::kind::none;
  if (std::strcmp(local_name(root), "urlset") == 0) {
    type = sitemap::kind::urlset;
    entry_name = "url";
  } else if (std::strcmp(local_name(root), "sitemapindex") == 0) {
    type = sitemap::kind::index;
    entry_name = "sitemap";
  } else {
    return out;  // another XML document (XHTML with its DOCTYPE, a feed...): not a sitemap
  }
  if (doc->intSubset || doc->extSubset) {
    out.error = "a sitemap with a DTD is not read (entities)";
    return out;
  }
  out.type = type;
  std::unordered_set<std::string> seen;
  for (auto* n = root->children; n; n = n->next) {
    if (n->type != XML_ELEMENT_NODE || std::strcmp(local_name(n), entry_name) != 0)
      continue;
    auto loc = loc_of(n);
    if (loc.empty())
      continue;
    auto url = base_url.empty() ? core::normalize_url(loc) : core::resolve_url(base_url, loc);
    if (url.empty() || !http_url(url) || !seen.insert(url).second)
      continue;
    if (out.locs.size() >= max_sitemap_locs) {
      out.truncated = true;
      break;
    }
    out.locs.push_back(std::move(url));
  }
  return out;
}

} // namespace spiderhub::sdk
