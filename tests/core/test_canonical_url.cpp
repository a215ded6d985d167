// Canonical URLs (#35): the table of docs/urls.md, idempotence, agreement with
// normalize_url, registrable domains.
#include "core/canonical_url.hpp"

#include "core/url.hpp"

#include <doctest/doctest.h>

#include <iterator>
#include <string>

using namespace spiderhub::core;

namespace {

constexpr canonical_options plain{};
constexpr canonical_options sorted{true, false, false};
constexpr canonical_options no_sessions{false, true, false};
constexpr canonical_options no_trackers{false, false, true};
constexpr canonical_options all_options{true, true, true};

struct canonical_case {
  const char* input;
  const char* canonical; // "" when the input is no absolute http(s) URL
  canonical_options options;
};

// One row a line: docs/urls.md shows this table as it is.
const canonical_case canonical_cases[] = {
  // Case, default ports
  {"HTTP://Example.COM:80/x", "http://example.com/x", plain},
  {"HTTPS://EXAMPLE.COM", "https://example.com/", plain},
  {"https://example.com:443/", "https://example.com/", plain},
  {"https://example.com:80/", "https://example.com:80/", plain},
  {"http://example.com:/x", "http://example.com/x", plain},
  {"http://example.com:08080/", "http://example.com:8080/", plain},
  {"http://example.com/Path/CASE", "http://example.com/Path/CASE", plain},
  // Fragments, empty path and query
  {"http://example.com/a#b", "http://example.com/a", plain},
  {"http://example.com/a?q=1#frag?x", "http://example.com/a?q=1", plain},
  {"http://example.com", "http://example.com/", plain},
  {"http://example.com?q", "http://example.com/?q", plain},
  {"http://example.com/x?", "http://example.com/x", plain},
  {"http://example.com/?#top", "http://example.com/", plain},
  // Dot segments, separators
  {"http://example.com/a/./b/../c", "http://example.com/a/c", plain},
  {"http://example.com/a/b/..", "http://example.com/a/", plain},
  {"http://example.com/../../x", "http://example.com/x", plain},
  {"http://example.com/a/%2e%2E/b/%2E", "http://example.com/b/", plain},
  {"http://example.com/a//b/", "http://example.com/a//b/", plain},
  {"http:\\\\example.com\\a\\b?c\\d", "http://example.com/a/b?c%5Cd", plain},
  // Percent-encoding
  {"http://example.com/%7euser/%41%2f", "http://example.com/~user/A%2F", plain},
  {"http://example.com/a%2fb%3a?x=%2f%3d", "http://example.com/a%2Fb%3A?x=%2F%3D", plain},
  {"http://example.com/a b?c d", "http://example.com/a%20b?c%20d", plain},
  {"http://example.com/café?q=ü", "http://example.com/caf%C3%A9?q=%C3%BC", plain},
  {"http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9", plain},
  {"http://example.com/100%?x=5%", "http://example.com/100%25?x=5%25", plain},
  {"http://example.com/%zz%4", "http://example.com/%25zz%254", plain},
  {"http://example.com/{a}|b^c`\"<>", "http://example.com/%7Ba%7D%7Cb%5Ec%60%22%3C%3E", plain},
  {"http://example.com/a\x01/b\x7f", "http://example.com/a%01/b%7F", plain},
  {"http://example.com/?a=1+2&b=%2B&c=%20", "http://example.com/?a=1+2&b=%2B&c=%20", plain},
  {"http://example.com/p:@!$&'()*+,;=", "http://example.com/p:@!$&'()*+,;=", plain},
  // Hosts: IDN, escapes, trailing dots, IPv4, IPv6
  {"http://Bücher.example/", "http://xn--bcher-kva.example/", plain},
  {"http://BÜCHER.EXAMPLE/", "http://xn--bcher-kva.example/", plain},
  {"http://ｂüｃｈｅｒ．ｅｘａｍｐｌｅ/", "http://xn--bcher-kva.example/", plain},
  {"http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/", plain},
  {"http://WWW.XN--BCHER-KVA.Example/", "http://www.xn--bcher-kva.example/", plain},
  {"http://b%C3%BCcher.example/", "http://xn--bcher-kva.example/", plain},
  {"http://faß.de/", "http://xn--fa-hia.de/", plain},
  {"http://Ⅷ.example/", "http://viii.example/", plain},
  {"http://xn--zz.example/", "http://xn--zz.example/", plain},
  {"http://☃.example/", "", plain},
  {"http://%65xample.com/", "http://example.com/", plain},
  {"http://example.com./x", "http://example.com/x", plain},
  {"http://example.com../", "http://example.com/", plain},
  {"http://192.168.0.1:80/", "http://192.168.0.1/", plain},
  {"http://0x7f.1/", "http://127.0.0.1/", plain},
  {"http://0300.0250.0.1/", "http://192.168.0.1/", plain},
  {"http://3232235521/", "http://192.168.0.1/", plain},
  {"http://1.2.3.256/", "", plain},
  {"http://1.2.3.09/", "", plain},
  {"http://example.123/", "", plain},
  {"http://[2001:DB8:0:0:0:0:0:1]:8080/", "http://[2001:db8::1]:8080/", plain},
  {"http://[::FFFF:192.168.0.1]/", "http://[::ffff:c0a8:1]/", plain},
  {"http://[fe80::1%25eth0]/", "", plain},
  // Userinfo
  {"http://User:Pa%73s@Example.com/", "http://User:Pass@example.com/", plain},
  {"http://:@example.com/", "http://example.com/", plain},
  {"http://a@b:c@example.com/", "http://a%40b:c@example.com/", plain},
  // Query order, session ids, trackers
  {"http://example.com/?b=2&a=1&a=0", "http://example.com/?b=2&a=1&a=0", plain},
  {"http://example.com/?b=2&a=1&c&a=0", "http://example.com/?a=1&a=0&b=2&c", sorted},
  {"http://example.com/?b=1&&a=2&", "http://example.com/?a=2&b=1", sorted},
  {"http://example.com/a;jsessionid=A1?PHPSESSID=1&x=2&utm_source=n",
   "http://example.com/a;jsessionid=A1?PHPSESSID=1&x=2&utm_source=n", plain},
  {"http://example.com/a;jsessionid=A1?PHPSESSID=1&x=2&utm_source=n",
   "http://example.com/a?x=2&utm_source=n", no_sessions},
  {"http://example.com/?ASPSESSIONIDQQGG=1&sid=2&sessionid=3&side=4", "http://example.com/?side=4",
   no_sessions},
  {"http://example.com/?utm_source=a&UTM_Medium=b&gclid=1&fbclid=2&mc_cid=3&mc_eid=4&id=7",
   "http://example.com/?id=7", no_trackers},
  {"http://example.com/?utm_source=a", "http://example.com/", no_trackers},
  {"http://example.com/p;JSESSIONID=1;v=2?utm_x=1&b=2&sid=9&a=1",
   "http://example.com/p;v=2?a=1&b=2", all_options},
  // Not absolute http(s), or broken
  {"ftp://example.com/", "", plain},
  {"mailto:a@example.com", "", plain},
  {"javascript:alert(1)", "", plain},
  {"//example.com/x", "", plain},
  {"not a url", "", plain},
  {"", "", plain},
  {"http://", "", plain},
  {"http:///x", "", plain},
  {"http:example.com/", "", plain},
  {"http://exa mple.com/", "", plain},
  {"http://example.com:8o/", "", plain},
  {"http://example.com:65536/", "", plain},
  // Blanks around, tabs and newlines inside
  {" \thttp://exa\nmple.com/a b \n", "http://example.com/a%20b", plain},
};

} // namespace

TEST_CASE("canonical_url: the table of docs/urls.md") {
  CHECK(std::size(canonical_cases) >= 40);
  for (const auto& c : canonical_cases) {
    std::string input = c.input, canonical = c.canonical; // doctest prints strings, not char*
    CAPTURE(input);
    CHECK(canonical_url(input, c.options) == canonical);
  }
}

TEST_CASE("canonical_url: a canonical URL is its own canonical form") {
  for (const auto& c : canonical_cases) {
    auto once = canonical_url(c.input, c.options);
    CAPTURE(once);
    CHECK(canonical_url(once, c.options) == once);
  }
}

TEST_CASE("canonical_url: what normalize_url (the C++ SDK) wrote keeps the key of the input") {
  // A URL the SDK normalised before pushing gets the key of the URL as written.
  for (const auto& c : canonical_cases) {
    auto normalized = normalize_url(c.input);
    if (normalized.empty())
      continue;
    std::string input = c.input;
    CAPTURE(input);
    CHECK(canonical_url(normalized, c.options) == canonical_url(c.input, c.options));
  }
}

TEST_CASE("canonical_url: spellings of one URL share one form") {
  const char* spellings[] = {
    "http://example.com/a/b?x=1",        "HTTP://EXAMPLE.com:80/a/b?x=1#top",
    "http://example.com/a/./c/../b?x=1", "http://example.com./a/%62?x=%31",
    "http:\\\\example.com\\a\\b?x=1",    " http://example.com/a/b?x=1\n",
  };
  for (std::string s : spellings) {
    CAPTURE(s);
    CHECK(canonical_url(s) == std::string("http://example.com/a/b?x=1"));
  }
  // Paths are case-sensitive and escapes of reserved bytes mean something: all differ.
  CHECK(canonical_url("http://example.com/A") != canonical_url("http://example.com/a"));
  CHECK(canonical_url("http://example.com/a%2Fb") != canonical_url("http://example.com/a/b"));
  CHECK(canonical_url("http://example.com/?a=1&b=2") !=
        canonical_url("http://example.com/?b=2&a=1"));
  CHECK(canonical_url("http://example.com/?a=1&b=2", sorted) ==
        canonical_url("http://example.com/?b=2&a=1", sorted));
}

TEST_CASE("registrable_domain: by the public suffix list") {
  CHECK(registrable_domain("a.b.example.co.uk") == "example.co.uk");
  CHECK(registrable_domain("WWW.Example.COM") == "example.com");
  CHECK(registrable_domain("example.com") == "example.com");
  CHECK(registrable_domain("www.xn--bcher-kva.example") == "xn--bcher-kva.example");
  CHECK(registrable_domain("www.xn--85x722f.xn--55qx5d.cn") == "xn--85x722f.xn--55qx5d.cn");
  CHECK(registrable_domain("co.uk") == "co.uk");         // a public suffix
  CHECK(registrable_domain("localhost") == "localhost"); // a single label
  CHECK(registrable_domain("192.168.0.1") == "192.168.0.1");
  CHECK(registrable_domain("[2001:db8::1]") == "[2001:db8::1]");
  CHECK(registrable_domain("2001:db8::1") == "2001:db8::1");
  CHECK(registrable_domain("") == "");
}
