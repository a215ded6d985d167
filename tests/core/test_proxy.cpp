#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/proxy.hpp"

using namespace spiderhub::core;

namespace {
std::string error_of(const std::string& url) {
  try {
    parse_proxy_url(url);
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}
} // namespace

TEST_CASE("proxy: URLs libcurl can use are taken, the others refused without their secret") {
  for (const char* ok : {"http://p.test:3128", "https://p.test:443/", "socks5://10.0.0.1:1080",
                         "socks5h://u:secret@p.test:1080", "SOCKS4a://p.test:9050",
                         "http://[::1]:8080", "  http://p.test:1  "})
    CHECK_MESSAGE(error_of(ok).empty(), ok);
  struct row {
    const char* url;
    const char* error;
  };
  const row bad[] = {
    {"p.test:3128", "proxy 'proxy': no scheme (expected e.g. http://host:3128)"},
    {"ftp://u:pw@p.test:21",
     "proxy 'ftp://(malformed)': scheme 'ftp' is not one of http, https, socks4, socks4a, "
     "socks5, socks5h"},
    {"http://u:pw@p.test", "proxy 'http://(malformed)': no port (proxies have no default port "
                           "worth guessing: write host:port)"},
    {"http://p.test:0", "proxy 'http://(malformed)': port must be 1-65535"},
    {"http://p.test:65536", "proxy 'http://(malformed)': port must be 1-65535"},
    {"http://p.test:80x", "proxy 'http://(malformed)': port must be 1-65535"},
    {"http://:8080", "proxy 'http://(malformed)': no host"},
    {"http://p.test:8080/path", "proxy 'http://(malformed)': a proxy URL has no path, query or fragment"},
    {"http://[::1:8080", "proxy 'http://(malformed)': an IPv6 proxy is written [address]:port"},
  };
  for (const auto& r : bad) {
    CHECK_MESSAGE(error_of(r.url) == r.error, r.url);
    CHECK_MESSAGE(error_of(r.url).find("pw") == std::string::npos, r.url);
  }
}

TEST_CASE("proxy: lists split on commas, blanks and lines; names shown without credentials") {
  CHECK(parse_proxy_list("http://a.test:1, socks5://u:p@b.test:2\nhttp://a.test:1  http://c.test:3") ==
        std::vector<std::string>{"http://a.test:1", "socks5://u:p@b.test:2", "http://c.test:3"});
  CHECK_THROWS_AS(parse_proxy_list(" , \n"), input_error);
  CHECK_THROWS_WITH_AS(parse_proxy_list("http://a.test:1,bad"),
                       "proxy 'proxy': no scheme (expected e.g. http://host:3128)", input_error);
  CHECK(redacted_proxy("socks5h://user:s3cret@p.test:1080") == "socks5h://p.test:1080");
  CHECK(redacted_proxy("HTTP://p.test:8080/") == "http://p.test:8080");
  CHECK(redacted_proxy("http://u:p@[::1]:8080") == "http://[::1]:8080");
  CHECK(redacted_proxy("u:secret@host") == "proxy");
  CHECK(redacted_proxy_list("http://u:p@a.test:1,\nhttp://b.test:2") ==
        "http://a.test:1,http://b.test:2");
  CHECK(valid_proxy_rotation("round_robin"));
  CHECK(valid_proxy_rotation("random"));
  CHECK(valid_proxy_rotation("per_host"));
  CHECK(!valid_proxy_rotation("sticky"));
  CHECK(!valid_proxy_rotation(""));
}
