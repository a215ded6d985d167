#pragma once
// Link and title extraction for spiders (libxml2's HTML parser in SAX mode). Every URL
// returned is absolute http(s) and normalised by core::resolve_url, so spiders can compare
// URLs as plain strings.
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::sdk {

struct page_info {
  std::string title;               // first <title>, whitespace collapsed; "" when none
  std::vector<std::string> links;  // <a href> and <area href>, resolved, unique, in order
  // The page's first <meta http-equiv="refresh"> whose content parses: its delay in whole
  // seconds (-1: none) and its URL resolved like a link ("" when it names none, the page
  // itself, or no http(s) URL).
  int refresh_delay = -1;
  std::string refresh_url;
};

/// A refresh `content` as HTML's "shared declarative refresh steps" read it: the delay in
/// whole seconds and the URL text (still to resolve; has_url false when it names none);
/// ok false when it is no refresh. "5; url='/next'" -> 5, "/next"; "1.5, /b" -> 1, "/b".
struct meta_refresh {
  bool ok = false;
  int delay = 0;
  bool has_url = false;
  std::string url;
};
meta_refresh parse_meta_refresh(std::string_view content);

/// Scrapy's METAREFRESH_MAXDELAY: the sample spiders follow refreshes shorter than this.
inline constexpr int meta_refresh_max_delay = 100;

/// Parses `html` (UTF-8; invalid bytes are tolerated; <meta charset> is not looked at:
/// decode the page first) and resolves every link against `<base href>` when the page has
/// one, else against `base_url` (the page's final URL). Links with schemes other than
/// http/https (javascript:, mailto:, tel:, data:, ...) are dropped. `document_encoding`
/// (a WHATWG name, "" = UTF-8) is the encoding the page came in: as browsers do, a link's
/// query is percent-encoded in it, its path in UTF-8. Never throws on malformed HTML.
page_info extract_links(std::string_view html, const std::string& base_url,
                        const std::string& document_encoding = {});

} // namespace spiderhub::sdk
