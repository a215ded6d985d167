// Unit tests for sdk/html_links: URL resolution (RFC 3986 section 5.4 examples plus the
// browser habits we copy), <base href>, titles, dropped schemes, and tag soup.
#include "core/url.hpp"
#include "sdk/html_links.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using spiderhub::sdk::extract_links;
using spiderhub::core::normalize_url;
using spiderhub::core::resolve_url;
using spiderhub::core::url_host;

struct resolve_case {
  const char* ref;
  const char* expected;  // "" = dropped
};

} // namespace

TEST_CASE("resolve_url: reference resolution table") {
  const std::string base = "http://a.example/b/c/d;p?q";
  const std::vector<resolve_case> cases = {
    // RFC 3986 5.4.1 normal examples (http-only ones; "g:h" is another scheme)
    {"g:h", ""},
    {"g", "http://a.example/b/c/g"},
    {"./g", "http://a.example/b/c/g"},
    {"g/", "http://a.example/b/c/g/"},
    {"/g", "http://a.example/g"},
    {"//g", "http://g/"},
    {"?y", "http://a.example/b/c/d;p?y"},
    {"g?y", "http://a.example/b/c/g?y"},
    {"#s", "http://a.example/b/c/d;p?q"},
    {"g#s", "http://a.example/b/c/g"},
    {";x", "http://a.example/b/c/;x"},
    {"", "http://a.example/b/c/d;p?q"},
    {".", "http://a.example/b/c/"},
    {"./", "http://a.example/b/c/"},
    {"..", "http://a.example/b/"},
    {"../", "http://a.example/b/"},
    {"../g", "http://a.example/b/g"},
    {"../..", "http://a.example/"},
    {"../../g", "http://a.example/g"},
    // 5.4.2 abnormal examples
    {"../../../g", "http://a.example/g"},
    {"/./g", "http://a.example/g"},
    {"/../g", "http://a.example/g"},
    {"g.", "http://a.example/b/c/g."},
    {"..g", "http://a.example/b/c/..g"},
    {"./../g", "http://a.example/b/g"},
    {"g/./h", "http://a.example/b/c/g/h"},
    {"g/../h", "http://a.example/b/c/h"},
    {"http:g", "http://a.example/b/c/g"},  // browsers read it as relative
    // absolute and scheme-relative
    {"https://Other.EXAMPLE:443/x?y#z", "https://other.example/x?y"},
    {"HTTP://other.example:80", "http://other.example/"},
    {"http://other.example:8080/", "http://other.example:8080/"},
    {"//cdn.example/lib.js", "http://cdn.example/lib.js"},
    // browser habits
    {"  /padded \n", "http://a.example/padded"},
    {"/a\tb\nc", "http://a.example/abc"},
    {"\\back\\slash", "http://a.example/back/slash"},
    {"/with space", "http://a.example/with%20space"},
    {"/pct%2fok", "http://a.example/pct%2Fok"},
    {"/bad%zz", "http://a.example/bad%25zz"},
    {"?", "http://a.example/b/c/d;p"},
    // schemes other than http(s) are dropped
    {"javascript:void(0)", ""},
    {" JavaScript:alert(1)", ""},
    {"mailto:someone@example.com", ""},
    {"tel:+123", ""},
    {"data:text/html,hi", ""},
    {"ftp://files.example/x", ""},
    // invalid hosts and ports
    {"http://", ""},
    {"http://host:99999/", ""},
    {"http://host:12ab/", ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.ref);
    CHECK(resolve_url(base, c.ref) == c.expected);
  }
}

TEST_CASE("resolve_url: bases without a path and unusable bases") {
  CHECK(resolve_url("http://a.example", "g") == "http://a.example/g");
  CHECK(resolve_url("http://a.example", "?q") == "http://a.example/?q");
  CHECK(resolve_url("not a url", "g") == "");
  CHECK(resolve_url("not a url", "https://x.example/") == "https://x.example/");
  CHECK(resolve_url("mailto:x@y", "/g") == "");
}

TEST_CASE("normalize_url and url_host") {
  CHECK(normalize_url("HTTPS://Example.COM:443/a/./b/../c#frag") == "https://example.com/a/c");
  CHECK(normalize_url("example.com/x") == "");
  CHECK(normalize_url("http://[::1]:8080/x") == "http://[::1]:8080/x");
  CHECK(url_host("http://Example.COM/x") == "example.com");
  CHECK(url_host("http://example.com:80/x") == "example.com");
  CHECK(url_host("https://user:pw@example.com:8443/") == "example.com:8443");
  CHECK(url_host("http://[::1]:8080/") == "[::1]:8080");
  CHECK(url_host("ftp://example.com/") == "");
  CHECK(url_host("garbage") == "");
}

TEST_CASE("extract_links: links, order, duplicates, and area tags") {
  const char* html = R"html(<!doctype html><html><head><title>  Hello
      &amp;   World </title></head><body>
      <a href="/one">1</a> <a href="two#x">2</a> <a href="/one#again">dup</a>
      <map><area href="three" alt=""></map>
      <a>no href</a> <a href="">self</a>
      <a href="javascript:void(0)">js</a> <a href="mailto:a@b.c">mail</a>
      <a href="ftp://x/">ftp</a> <a href="HTTPS://Else.example/Z">else</a>
      </body></html>)html";
  auto info = extract_links(html, "http://site.example/dir/page.html");
  CHECK(info.title == "Hello & World");
  const std::vector<std::string> expected = {
    "http://site.example/one",        "http://site.example/dir/two",
    "http://site.example/dir/three",  "http://site.example/dir/page.html",
    "https://else.example/Z",
  };
  CHECK(info.links == expected);
}

TEST_CASE("extract_links: <base href> applies to every link, relative bases resolve") {
  auto info = extract_links(
    R"(<a href="early">e</a><head><base href="https://cdn.example/sub/"></head><a href="x">x</a>)",
    "http://site.example/p");
  const std::vector<std::string> expected = {"https://cdn.example/sub/early",
                                             "https://cdn.example/sub/x"};
  CHECK(info.links == expected);

  auto rel = extract_links(R"(<base href="/other/"><a href="y">y</a>)", "http://site.example/p/q");
  REQUIRE(rel.links.size() == 1);
  CHECK(rel.links[0] == "http://site.example/other/y");

  // Only the first <base> with an href counts; an unusable one is ignored.
  auto first = extract_links(R"(<base target="_top"><base href="/b1/"><base href="/b2/"><a href="z">)",
                             "http://site.example/");
  REQUIRE(first.links.size() == 1);
  CHECK(first.links[0] == "http://site.example/b1/z");
  auto bad = extract_links(R"(<base href="javascript:x"><a href="z">)", "http://site.example/d/");
  REQUIRE(bad.links.size() == 1);
  CHECK(bad.links[0] == "http://site.example/d/z");
}

TEST_CASE("extract_links: title edge cases") {
  CHECK(extract_links("<p>no title</p>", "http://a.example/").title == "");
  CHECK(extract_links("<title>first</title><title>second</title>", "http://a.example/").title ==
        "first");
  // An SVG <title> is a tooltip, not the page title.
  CHECK(extract_links("<body><svg><title>tip</title></svg></body>", "http://a.example/").title ==
        "");
  CHECK(extract_links("<title>caf\xc3\xa9 &lt;3</title>", "http://a.example/").title ==
        "caf\xc3\xa9 <3");
}

TEST_CASE("extract_links: tag and attribute names in any case") {
  auto info = extract_links(
    R"(<HTML><HEAD><TITLE>Upper</TITLE><BASE HREF="/b/"></HEAD><BODY>)"
    R"(<A HREF="one">1</A><Area Href="two"><aReA hReF="three">)"
    R"(<TEMPLATE><a href="inert1"></a></TEMPLATE><SVG><A HREF="inert2"></A><TITLE>t</TITLE></SVG>)"
    R"(<Abbr href="not-a-link">x</Abbr><B href="no">b</B><Table><Tr><Td><a href="four">4</a>)",
    "http://a.example/p");
  CHECK(info.title == "Upper");
  const std::vector<std::string> expected = {"http://a.example/b/one", "http://a.example/b/two",
                                             "http://a.example/b/three",
                                             "http://a.example/b/four"};
  CHECK(info.links == expected);
  // An unclosed <svg> or <template> keeps what follows inert; their end tags in any case
  // close them again.
  auto closed = extract_links(R"(<svg><a href="in"></a></SVG><a href="out"></a>)",
                              "http://a.example/");
  CHECK(closed.links == std::vector<std::string>{"http://a.example/out"});
}

TEST_CASE("extract_links: malformed HTML does not crash") {
  const std::vector<std::string> soup = {
    "",
    "<",
    "<a href=",
    "<a href=\"unterminated",
    "<<<>>><a href='/ok'>ok</a></b></i></table><td><tr>",
    std::string("\0\0<a href=\"/nul\">\0</a>", 22),
    "\xff\xfe<a href=\"/\xff\xfe bad utf8\">x</a><title>\xc3(</title>",
    "<template><a href=\"/inert\"></a></template><a href=\"/live\"></a>",
  };
  for (const auto& html : soup) {
    CAPTURE(html);
    auto info = extract_links(html, "http://a.example/");
    for (const auto& link : info.links)
      CHECK(link.rfind("http://a.example/", 0) == 0);
  }
  auto inert = extract_links(soup.back(), "http://a.example/");
  CHECK(inert.links == std::vector<std::string>{"http://a.example/live"});
  auto bad = extract_links(soup[6], "http://a.example/");
  REQUIRE(bad.links.size() == 1);
  // libxml2 recovers from invalid UTF-8 by reading the bytes as Latin-1 (0xFF -> U+00FF,
  // 0xFE -> U+00FE); the result is valid UTF-8, then percent-encoded.
  CHECK(bad.links[0] == "http://a.example/%C3%BF%C3%BE%20bad%20utf8");

  // Deep nesting: the traversal is iterative, so this is only a matter of time.
  std::string deep;
  for (int i = 0; i < 20000; ++i)
    deep += "<div>";
  deep += "<a href=\"/deep\">d</a>";
  auto info = extract_links(deep, "http://a.example/");
  CHECK(info.links == std::vector<std::string>{"http://a.example/deep"});
}

TEST_CASE("extract_links: a legacy page's queries are encoded in its encoding, paths in UTF-8") {
  // The page as the node's sniffing decoded it: UTF-8 text of a GBK page.
  const std::string html =
    "<html><head><meta charset=\"gbk\"><title>\xe4\xb8\xad\xe6\x96\x87\xe9\xa6\x96\xe9\xa1\xb5"
    "</title></head><body>"
    "<a href=\"/gbk/\xe6\x90\x9c\xe7\xb4\xa2\">search</a>"          // path: UTF-8
    "<a href=\"?q=\xe4\xb8\xad\xe6\x96\x87\">query</a>"              // query: GBK
    "<a href=\"s?q=\xe4\xb8\xad#\xe6\x96\x87\">fragment dropped</a>"
    "<a href=\"s?q=%E4%B8%AD\">escapes kept as written</a>"
    "<a href=\"s?a=1&b=\xe2\x82\xac\">euro</a>"                      // GBK has U+20AC: 0x80
    "<a href=\"s?x=\xf0\x9f\x98\x80\">emoji</a>"                     // GBK lacks it
    "</body></html>";
  auto info = extract_links(html, "http://h/dir/page.html", "GBK");
  CHECK(info.title == "\xe4\xb8\xad\xe6\x96\x87\xe9\xa6\x96\xe9\xa1\xb5");  // the meta did not re-decode it
  CHECK(info.links == std::vector<std::string>{
                        "http://h/gbk/%E6%90%9C%E7%B4%A2",
                        "http://h/dir/page.html?q=%D6%D0%CE%C4",
                        "http://h/dir/s?q=%D6%D0",
                        "http://h/dir/s?q=%E4%B8%AD",
                        "http://h/dir/s?a=1&b=%80",
                        "http://h/dir/s?x=&%23128512;",
                      });
  // The same hrefs on a UTF-8 page (or with no encoding named): UTF-8 everywhere.
  auto utf8 = extract_links(html, "http://h/dir/page.html");
  CHECK(utf8.links[1] == "http://h/dir/page.html?q=%E4%B8%AD%E6%96%87");
  CHECK(extract_links(html, "http://h/dir/page.html", "UTF-8").links == utf8.links);
  // windows-1251 and Shift_JIS queries.
  CHECK(extract_links("<a href='?q=\xd0\x9c\xd0\xb8\xd1\x80'>x</a>", "http://h/", "windows-1251")
          .links == std::vector<std::string>{"http://h/?q=%CC%E8%F0"});
  CHECK(extract_links("<a href='?q=\xe6\x97\xa5\xe6\x9c\xac'>x</a>", "http://h/", "Shift_JIS")
          .links == std::vector<std::string>{"http://h/?q=%93%FA%96%7B"});
  // An encoding this worker does not know leaves the query in UTF-8.
  CHECK(extract_links("<a href='?q=\xe4\xb8\xad'>x</a>", "http://h/", "x-unknown").links ==
        std::vector<std::string>{"http://h/?q=%E4%B8%AD"});
}
