#include "sdk/html_links.hpp"

#include <libxml/HTMLparser.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "core/encoding.hpp"
#include "core/url.hpp"

namespace spiderhub::sdk {

namespace {

constexpr std::string_view html_ws = " \t\n\f\r";

std::string_view trim_ws(std::string_view s) {
  auto b = s.find_first_not_of(html_ws);
  if (b == std::string_view::npos)
    return {};
  return s.substr(b, s.find_last_not_of(html_ws) - b + 1);
}

std::string collapse_whitespace(const std::string& s) {
  std::string out;
  bool pending_space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
      pending_space = !out.empty();
    } else {
      if (pending_space)
        out += ' ';
      pending_space = false;
      out += c;
    }
  }
  return out;
}

// What the SAX callbacks collect in one pass over the page. No tree is built: libxml2's
// HTML tokenizer drives these callbacks directly, which is what makes parsing cheap.
struct sax_state {
  std::vector<std::string> hrefs;  // raw, in document order
  std::string base_href;
  bool have_base = false;
  bool have_title = false;
  bool in_title = false;
  std::string title;
  int inert_depth = 0;             // inside <template> or <svg>: links/titles don't count
  meta_refresh refresh;            // the first <meta http-equiv=refresh> that parses
};

const char* attr(const xmlChar** attrs, const char* name) {
  if (!attrs)
    return nullptr;
  for (auto a = attrs; a[0]; a += 2)
    if (xmlStrcasecmp(a[0], reinterpret_cast<const xmlChar*>(name)) == 0)
      return a[1] ? reinterpret_cast<const char*>(a[1]) : "";
  return nullptr;
}

bool is(const xmlChar* name, const char* tag) {
  return xmlStrcasecmp(name, reinterpret_cast<const xmlChar*>(tag)) == 0;
}

// Element names of interest, by their first letter: most tags of a page (p, li, div, ...)
// are rejected by one byte compare instead of a case-insensitive compare per name.
enum class tag { other, a_or_area, base, inert, title, meta };

tag classify(const xmlChar* name) {
  switch (name[0] | 0x20) { // ASCII lower case; libxml2 lower-cases names already
    case 'a':
      return is(name, "a") || is(name, "area") ? tag::a_or_area : tag::other;
    case 'b':
      return is(name, "base") ? tag::base : tag::other;
    case 'm':
      return is(name, "meta") ? tag::meta : tag::other;
    case 's':
      return is(name, "svg") ? tag::inert : tag::other;
    case 't':
      return is(name, "template") ? tag::inert : is(name, "title") ? tag::title : tag::other;
    default:
      return tag::other;
  }
}

void on_start(void* ctx, const xmlChar* name, const xmlChar** attrs) {
  auto& st = *static_cast<sax_state*>(ctx);
  const tag t = classify(name);
  if (t == tag::inert) {
    ++st.inert_depth;
    return;
  }
  if (st.inert_depth > 0)
    return;
  if (t == tag::a_or_area) {
    if (auto href = attr(attrs, "href"))
      st.hrefs.emplace_back(href);
  } else if (t == tag::base && !st.have_base) {
    if (auto href = attr(attrs, "href")) {
      st.have_base = true;
      st.base_href = href;
    }
  } else if (t == tag::title && !st.have_title) {
    st.in_title = true;
  } else if (t == tag::meta && !st.refresh.ok) {
    auto equiv = attr(attrs, "http-equiv");
    auto content = attr(attrs, "content");
    if (equiv && content && *content &&
        xmlStrcasecmp(reinterpret_cast<const xmlChar*>(std::string(trim_ws(equiv)).c_str()),
                      reinterpret_cast<const xmlChar*>("refresh")) == 0)
      st.refresh = parse_meta_refresh(content);
  }
}

void on_end(void* ctx, const xmlChar* name) {
  auto& st = *static_cast<sax_state*>(ctx);
  const tag t = classify(name);
  if (t == tag::inert) {
    if (st.inert_depth > 0)
      --st.inert_depth;
  } else if (t == tag::title && st.in_title) {
    st.in_title = false;
    st.have_title = true;
  }
}

void on_text(void* ctx, const xmlChar* ch, int len) {
  auto& st = *static_cast<sax_state*>(ctx);
  if (st.in_title && st.inert_depth == 0)
    st.title.append(reinterpret_cast<const char*>(ch), static_cast<std::size_t>(len));
}

const htmlSAXHandler& sax_handler() {
  static const htmlSAXHandler handler = [] {
    htmlSAXHandler h{};
    h.startElement = on_start;
    h.endElement = on_end;
    h.characters = on_text;
    h.cdataBlock = on_text;
    return h;
  }();
  return handler;
}

// The href with the non-ASCII characters of its query written as percent-escapes of their
// bytes in `encoding` (WHATWG URL parser, "query state"); unchanged when there are none.
std::string query_in_encoding(const std::string& href, const std::string& encoding) {
  auto end = href.find('#');
  auto q = href.find('?');
  if (q == std::string::npos || (end != std::string::npos && q > end))
    return href;
  auto query = std::string_view(href).substr(q + 1, end == std::string::npos ? end : end - q - 1);
  if (std::all_of(query.begin(), query.end(), [](char c) { return (c & 0x80) == 0; }))
    return href;
  std::string bytes;
  try {
    bytes = core::encode_from_utf8(query, encoding);
  } catch (const std::exception&) {
    return href;  // not an encoding we know: UTF-8, as for any other page
  }
  std::string out = href.substr(0, q + 1);
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : bytes) {
    // '#' can only come from an "&#NNNN;" the encoding wrote for a character it lacks.
    if (c < 0x80 && c != '#') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (end != std::string::npos)
    out.append(href, end, std::string::npos);
  return out;
}

struct parser_init {
  parser_init() { xmlInitParser(); }  // once per process, before any thread parses
};

} // namespace

meta_refresh parse_meta_refresh(std::string_view s) {
  meta_refresh out;
  const std::size_t n = s.size();
  auto ws = [&](std::size_t k) { return k < n && html_ws.find(s[k]) != std::string_view::npos; };
  auto digit = [&](std::size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  std::size_t i = 0;
  while (ws(i))
    ++i;
  std::size_t j = i;
  while (digit(j))
    ++j;
  if (j == i && (i >= n || s[i] != '.'))
    return out;  // no delay: not a refresh
  long long delay = 0;
  for (std::size_t k = i; k < j && delay < 1000000000; ++k)
    delay = delay * 10 + (s[k] - '0');
  i = j;
  while (digit(i) || (i < n && s[i] == '.'))
    ++i;
  out.ok = true;
  out.delay = static_cast<int>(delay);
  if (i >= n)
    return out;
  if (s[i] != ';' && s[i] != ',' && !ws(i)) {
    out.ok = false;
    return out;
  }
  while (ws(i))
    ++i;
  if (i < n && (s[i] == ';' || s[i] == ','))
    ++i;
  while (ws(i))
    ++i;
  if (i >= n)
    return out;
  // "url=" (any case, blanks around '=') may come first, then the URL, maybe quoted.
  std::size_t k = i;
  bool skip_quotes = true;
  if (s[k] == 'U' || s[k] == 'u') {
    ++k;
    skip_quotes = false;
    if (k < n && (s[k] == 'R' || s[k] == 'r')) {
      ++k;
      if (k < n && (s[k] == 'L' || s[k] == 'l')) {
        ++k;
        while (ws(k))
          ++k;
        if (k < n && s[k] == '=') {
          ++k;
          while (ws(k))
            ++k;
          skip_quotes = true;
        }
      }
    }
  }
  std::string_view url = s.substr(i);
  if (skip_quotes) {
    char quote = k < n && (s[k] == '\'' || s[k] == '"') ? s[k] : 0;
    if (quote)
      ++k;
    url = s.substr(k);
    if (quote) {
      auto q = url.find(quote);
      if (q != std::string_view::npos)
        url = url.substr(0, q);
    }
  }
  out.has_url = true;
  out.url = std::string(url);
  return out;
}

page_info extract_links(std::string_view html, const std::string& base_url,
                        const std::string& document_encoding) {
  static parser_init init;
  sax_state st;
  if (!html.empty()) {
    auto* ctxt = htmlCreatePushParserCtxt(const_cast<htmlSAXHandler*>(&sax_handler()), &st,
                                          nullptr, 0, nullptr, XML_CHAR_ENCODING_UTF8);
    if (ctxt) {
      // The text is UTF-8 already: a <meta charset> in it must not switch the decoder.
      htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                 HTML_PARSE_NONET | HTML_PARSE_IGNORE_ENC);
      // Pages over 2 GiB are not a concern: the node caps bodies far below that.
      htmlParseChunk(ctxt, html.data(), static_cast<int>(html.size()), 1);
      htmlFreeParserCtxt(ctxt);
    }
  }
  page_info info;
  info.title = collapse_whitespace(st.title);
  const auto& hrefs = st.hrefs;
  const auto& base_href = st.base_href;
  const bool have_base = st.have_base;

  std::string base = base_url;
  if (have_base) {
    // A relative or non-http <base> resolves against the page URL; an unusable one is
    // ignored as browsers do.
    auto resolved = core::resolve_url(base_url, base_href);
    if (!resolved.empty())
      base = std::move(resolved);
  }
  const bool legacy = !document_encoding.empty() && document_encoding != "UTF-8";
  if (st.refresh.ok) {
    info.refresh_delay = st.refresh.delay;
    if (st.refresh.has_url) {
      auto url = core::resolve_url(
        base, legacy ? query_in_encoding(st.refresh.url, document_encoding) : st.refresh.url);
      if (url != base_url)
        info.refresh_url = std::move(url);
    }
  }
  std::unordered_set<std::string> seen;
  for (const auto& h : hrefs) {
    auto url = core::resolve_url(base, legacy ? query_in_encoding(h, document_encoding) : h);
    if (!url.empty() && seen.insert(url).second)
      info.links.push_back(std::move(url));
  }
  return info;
}

} // namespace spiderhub::sdk
