#pragma once
// The canonical form of a crawl URL (#35): the broker computes it for every pushed request
// and builds the dedup key from it, so the C++ SDK, the Python SDK and the Scrapy bridge
// dedup alike whatever spelling of a URL they push. Pure code; docs/urls.md has the table.
//
// Rules (WHATWG URL standard where it speaks, w3lib/Google canonicalisation otherwise):
//  - input: leading/trailing C0 controls and spaces trimmed, tab/CR/LF removed anywhere;
//    only absolute http: and https: URLs with "//" (or "\\") and a host, else "";
//  - scheme lower case; fragment removed; '\' reads as '/' before the query;
//  - userinfo kept (it can select what the server returns), escapes normalised as in the
//    path, plus ':' (but the one before the password), ';', '=', '@', '[', ']' escaped;
//    "user:@" -> "user@", an empty ":@" or "@" dropped;
//  - host: percent-escapes decoded first; names with non-ASCII or "xn--" labels through
//    libidn2 (IDNA2008 + TR46 non-transitional, NFC), the rest lower-cased; an ASCII
//    "xn--" host libidn2 rejects is kept lower-cased (fetchable as written), a non-ASCII
//    one it rejects (emoji, invalid UTF-8) gives ""; trailing dots removed; forbidden
//    bytes (controls, space, "<>\^`{|}%/?#@:[] and '"') give "";
//  - IPv4 in every form WHATWG accepts (decimal, 0x hex, 0-octal, 1 to 4 parts) becomes
//    dotted decimal; a host whose last label is a number but no valid IPv4 gives "";
//    IPv6 lower case in brackets, zeros compressed as WHATWG serialises them;
//  - port: default (80/443) and empty ":" removed, leading zeros dropped, > 65535 -> "";
//  - path: empty -> "/"; dot segments (also %2e forms) removed; escapes with upper-case
//    hex, escapes of unreserved bytes (ALPHA DIGIT - . _ ~) decoded, a '%' that starts
//    no escape -> "%25"; controls, space, DEL, non-ASCII bytes and " < > ` { } | ^
//    escaped (UTF-8 bytes as they come); everything else, case included, kept;
//  - query: normalised like the path, '\' escaped too, '+' kept; an empty query ("?")
//    removed; parameter order kept unless sort_query.
#include <string>
#include <string_view>

namespace spiderhub::core {

/// Per-job canonicalisation choices (job properties); all off by default.
struct canonical_options {
  bool sort_query = false;        // sort query parameters (stable, by name)
  bool strip_session_ids = false; // drop jsessionid/phpsessid/sid/sessionid/aspsessionid*
                                  // params (query and ;jsessionid= path params)
  bool strip_tracking = false;    // drop utm_*, gclid, fbclid, mc_cid, mc_eid
};

/// The canonical form of an absolute http(s) URL, the broker's dedup key input; "" when it
/// is not one.
std::string canonical_url(std::string_view url, const canonical_options& o = {});

/// The registrable domain of a host by the public suffix list ("a.b.example.co.uk" ->
/// "example.co.uk"), lower case; IP literals, single labels and public suffixes give the
/// host itself. Pass hosts as canonical_url writes them (punycode); UTF-8 works too.
std::string registrable_domain(std::string_view host);

} // namespace spiderhub::core
