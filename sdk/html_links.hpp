#pragma once
// Link and title extraction for spiders (libxml2's HTML parser in SAX mode), plus the URL
// resolution it needs. Every URL this header returns is absolute http(s), normalised
// (lower-case scheme and host, default port dropped, dot segments removed, no fragment,
// unsafe bytes percent-encoded), so spiders can compare URLs as plain strings.
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::sdk {

struct page_info {
  std::string title;               // first <title>, whitespace collapsed; "" when none
  std::vector<std::string> links;  // <a href> and <area href>, resolved, unique, in order
};

/// Parses `html` (UTF-8; invalid bytes are tolerated) and resolves every link against
/// `<base href>` when the page has one, else against `base_url`. Links with schemes other
/// than http/https (javascript:, mailto:, tel:, data:, ...) are dropped. Never throws on
/// malformed HTML.
page_info extract_links(std::string_view html, const std::string& base_url);

/// Resolves the reference `ref` against the absolute URL `base` (RFC 3986 section 5.2,
/// with the browser habits of trimming whitespace and reading '\' as '/'), then
/// normalises it. Returns "" when the result is not a valid http/https URL.
std::string resolve_url(const std::string& base, std::string_view ref);

/// Normalises an absolute http/https URL; "" when `url` is not one.
std::string normalize_url(std::string_view url);

/// Lower-case "host" or "host:port" of an http/https URL (default ports dropped);
/// "" when `url` is not one.
std::string url_host(const std::string& url);

} // namespace spiderhub::sdk
