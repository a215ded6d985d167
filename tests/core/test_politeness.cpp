// Politeness keys and Retry-After parsing.
#include "core/politeness.hpp"

#include "core/error.hpp"

#include <doctest/doctest.h>

using namespace spiderhub::core;

TEST_CASE("politeness: keys by host and port, or by registered domain") {
  auto host = politeness_key_kind::host;
  auto domain = politeness_key_kind::domain;
  CHECK(politeness_key("http://Example.com/a", host) == "http://example.com:80");
  CHECK(politeness_key("http://example.com:80/b", host) == "http://example.com:80");
  CHECK(politeness_key("https://example.com/", host) == "https://example.com:443");
  CHECK(politeness_key("http://127.0.0.1:8081/x", host) == "http://127.0.0.1:8081");
  CHECK(politeness_key("http://[::1]:9/x", host) == "http://[::1]:9");
  CHECK(politeness_key("http://www.a.example.co.uk/", domain) == "http://example.co.uk");
  CHECK(politeness_key("http://127.0.0.1:8081/", domain) == "http://127.0.0.1");
  CHECK(politeness_key("http://localhost:1/", domain) == "http://localhost");
  CHECK(politeness_key("ftp://example.com/", host) == "");
  CHECK(politeness_key("example.com/x", host) == "");
  CHECK(robots_base("http://a.test:80/x?y") == "http://a.test");
  CHECK(robots_base("https://a.test:8443/x") == "https://a.test:8443");
  CHECK(parse_politeness_key_kind("domain") == politeness_key_kind::domain);
  CHECK(parse_politeness_key_kind("ip") == politeness_key_kind::ip);
  CHECK_FALSE(parse_politeness_key_kind("IP"));
  CHECK_FALSE(parse_politeness_key_kind(""));
  for (auto k : {host, domain, politeness_key_kind::ip})
    CHECK(parse_politeness_key_kind(to_string(k)) == k);
}

TEST_CASE("politeness: keys by IP address; names need resolving first") {
  auto ip = politeness_key_kind::ip;
  CHECK(politeness_key("http://127.0.0.1:8081/x", ip) == "ip:127.0.0.1");
  CHECK(politeness_key("https://127.0.0.1/", ip) == "ip:127.0.0.1");
  CHECK(politeness_key("http://[::1]:9/x", ip) == "ip:::1");
  CHECK(politeness_key("http://example.com/", ip) == "");  // the caller resolves it
  CHECK(politeness_key("http://1.2.3/", ip) == "");        // not an IPv4 literal
  CHECK(url_host("http://[::1]:9/x") == "::1");
  CHECK(url_host("http://Example.COM:8080/") == "example.com");
  CHECK(url_host("mailto:x@y") == "");
  CHECK(is_ip_literal("10.1.2.3"));
  CHECK(is_ip_literal("fe80::1"));
  CHECK_FALSE(is_ip_literal("10.1.2.300"));
  CHECK_FALSE(is_ip_literal("localhost"));
  std::string error;
  CHECK(resolve_host("127.0.0.1", &error) == "127.0.0.1");
  auto local = resolve_host("localhost", &error);  // /etc/hosts: 127.0.0.1 or ::1
  CHECK((local == "127.0.0.1" || local == "::1"));
  error.clear();
  CHECK(resolve_host("", &error) == "");  // no DNS query: tests must not need a resolver
  CHECK_FALSE(error.empty());
  CHECK_THROWS_WITH_AS(parse_politeness_properties({{"PolitenessKey", "address"}}),
                       "property 'PolitenessKey' must be 'host', 'domain' or 'ip'",
                       input_error);
  CHECK(parse_politeness_properties({{"PolitenessKey", "ip"}}).key_kind == ip);
}

TEST_CASE("politeness: Retry-After as seconds or an HTTP date") {
  // 1994-11-06T08:49:37Z = 784111777 s
  const std::int64_t now = 784111777000;
  CHECK(parse_retry_after("120", now) == 120000);
  CHECK(parse_retry_after(" 0 ", now) == 0);
  CHECK(parse_retry_after("99999999999", now) == 86400000);  // a day at most
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == 10000);
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now) == 60000);
  CHECK(parse_retry_after("Sun Nov  6 08:49:57 1994", now) == 20000);
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == 0);  // in the past
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("-5", now));
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT trailing", now));
}
