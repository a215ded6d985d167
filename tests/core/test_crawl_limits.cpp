#include <doctest/doctest.h>

#include <string>

#include "core/crawl_limits.hpp"

using namespace spiderhub::core;

TEST_CASE("crawl limits: repeated path segments") {
  struct row {
    const char* url;
    int most;
  };
  for (const auto& r : {row{"http://h/", 0}, row{"http://h", 0}, row{"http://h/a", 1},
                           row{"http://h/a/b/c", 1}, row{"http://h/a/b/a/b/a", 3},
                           row{"http://h/a//a/", 2}, row{"http://h/x?p=/a/a/a/a", 1},
                           row{"http://h/cal/2026/cal/2027/cal/2028#cal/cal", 3},
                           row{"/a/a", 2}})
    CHECK_MESSAGE(repeated_segments(r.url) == r.most, r.url);
}

TEST_CASE("crawl limits: each limit cuts with its reason; nothing cut is counted") {
  crawl_limits l;
  l.max_url_length = 40;
  l.max_depth = 3;
  l.max_pages = 5;
  l.max_pages_per_host = 2;
  l.max_repeated_segments = 2;
  crawl_scope s(l);
  CHECK(s.admit("http://a/1", 0) == nullptr);
  CHECK(std::string(s.admit("http://a/" + std::string(40, 'x'), 0)) == "url_too_long");
  CHECK(std::string(s.admit("http://a/deep", 4)) == "too_deep");
  CHECK(s.admit("http://a/ok-at-the-limit", 3) == nullptr);
  CHECK(std::string(s.admit("http://a/3", 1)) == "max_pages_per_host");  // a: 2 taken
  CHECK(std::string(s.admit("http://b/x/x/x", 1)) == "repeated_segments");
  CHECK(s.admit("http://b/x/x", 1) == nullptr);
  CHECK(s.admit("http://b:8080/1", 1) == nullptr);  // another port, another host
  CHECK(s.admit("http://c/1", 1) == nullptr);       // 5 taken
  CHECK(std::string(s.admit("http://d/1", 1)) == "max_pages");
  // Defaults: 2083 bytes, 3 repeats; no page, depth or host limit.
  crawl_scope d(crawl_limits{});
  CHECK(d.admit("http://a/" + std::string(2074, 'y'), 100) == nullptr);  // 2083 bytes
  CHECK(std::string(d.admit("http://a/" + std::string(2075, 'y'), 0)) == "url_too_long");
  CHECK(std::string(d.admit("http://a/s/s/s/s", 0)) == "repeated_segments");
  // After a restart the run's total counts against max_pages.
  crawl_limits two;
  two.max_pages = 2;
  crawl_scope r(two);
  r.restored(2);
  CHECK(std::string(r.admit("http://a/1", 0)) == "max_pages");
}
