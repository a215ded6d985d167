// robots.txt matching (RFC 9309), table driven: each case is a file, a crawler and the
// verdicts for some paths.
#include "core/robots.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using spiderhub::core::robots_product_token;
using spiderhub::core::robots_rules;
using spiderhub::core::url_path_and_query;

namespace {

struct verdict {
  const char* path;
  bool allowed;
};

struct robots_case {
  const char* name;
  const char* text;
  const char* agent;
  std::vector<verdict> verdicts;
};

} // namespace

TEST_CASE("robots: RFC 9309 rules, table") {
  const std::vector<robots_case> cases = {
    {"no rules allow everything", "", "spiderhub", {{"/", true}, {"/a/b?c", true}}},
    {"simple disallow is a prefix",
     "User-agent: *\nDisallow: /p/1\n",
     "spiderhub",
     {{"/p/1", false}, {"/p/10", false}, {"/p/1/x", false}, {"/p/2", true}, {"/", true}}},
    {"longest match wins: allow inside a disallowed folder",
     "user-agent: *\ndisallow: /folder/\nallow: /folder/page\n",
     "spiderhub",
     {{"/folder/x", false}, {"/folder/page", true}, {"/folder/pages", true}}},
    {"longest match wins: disallow inside an allowed folder",
     "user-agent: *\nallow: /a\ndisallow: /a/b\n",
     "spiderhub",
     {{"/a/c", true}, {"/a/b", false}, {"/a/bc", false}}},
    {"equal length: allow wins",
     "user-agent: *\ndisallow: /same\nallow: /same\n",
     "spiderhub",
     {{"/same", true}}},
    {"wildcard in the middle",
     "user-agent: *\ndisallow: /*.pdf\n",
     "spiderhub",
     {{"/x.pdf", false}, {"/a/b/c.pdf?x=1", false}, {"/x.html", true}, {"/pdf", true}}},
    {"end anchor",
     "user-agent: *\ndisallow: /*.php$\n",
     "spiderhub",
     {{"/index.php", false}, {"/index.php?x=1", true}, {"/index.phpx", true}}},
    {"anchor alone: only the root",
     "user-agent: *\ndisallow: /$\n",
     "spiderhub",
     {{"/", false}, {"/a", true}}},
    {"several wildcards",
     "user-agent: *\ndisallow: /a*b*c\n",
     "spiderhub",
     {{"/abc", false}, {"/a-x-b-y-c-z", false}, {"/acb", true}, {"/ab", true}}},
    {"empty disallow allows all",
     "user-agent: *\ndisallow:\n",
     "spiderhub",
     {{"/anything", true}}},
    {"our group beats the star group",
     "user-agent: *\ndisallow: /\n\nuser-agent: spiderhub\ndisallow: /private\n",
     "spiderhub",
     {{"/", true}, {"/public", true}, {"/private/x", false}}},
    {"product token compared case-insensitively, version ignored",
     "User-Agent: SpiderHub/2.0\nDisallow: /x\n\nUser-agent: *\nDisallow: /\n",
     "spiderhub",
     {{"/x", false}, {"/y", true}}},
    {"another crawler's group does not apply",
     "user-agent: otherbot\ndisallow: /\n",
     "spiderhub",
     {{"/", true}, {"/a", true}}},
    {"groups for one crawler are merged",
     "user-agent: spiderhub\ndisallow: /a\n\nuser-agent: otherbot\ndisallow: /\n\n"
     "user-agent: spiderhub\ndisallow: /b\n",
     "spiderhub",
     {{"/a", false}, {"/b", false}, {"/c", true}}},
    {"consecutive user-agent lines share one group",
     "user-agent: otherbot\nuser-agent: spiderhub\ndisallow: /shared\n",
     "spiderhub",
     {{"/shared", false}, {"/other", true}}},
    {"rules before any user-agent belong to no group",
     "disallow: /\nuser-agent: *\ndisallow: /only\n",
     "spiderhub",
     {{"/", true}, {"/only", false}}},
    {"comments, blank lines, CRLF, spaces and unknown keys",
     "# hello\r\nUser-agent: *   # all\r\n\r\nSitemap: http://x/s.xml\r\n"
     "Disallow:   /tmp/   # temp\r\nFoo: bar\r\n",
     "spiderhub",
     {{"/tmp/a", false}, {"/tmp", true}}},
    {"robots.txt itself is always allowed",
     "user-agent: *\ndisallow: /\n",
     "spiderhub",
     {{"/robots.txt", true}, {"/", false}}},
    {"percent-encoding: unreserved escapes decoded on both sides",
     "user-agent: *\ndisallow: /%7Ejoe/\ndisallow: /a%2fb\n",
     "spiderhub",
     {{"/~joe/index", false}, {"/%7ejoe/x", false}, {"/a%2Fb", false}, {"/a/b", true}}},
    {"non-ASCII paths compared in percent-encoded form",
     "user-agent: *\ndisallow: /caf\xc3\xa9\n",
     "spiderhub",
     {{"/caf%C3%A9/menu", false}, {"/cafe", true}}},
    {"a byte order mark before the first line",
     "\xEF\xBB\xBFuser-agent: *\ndisallow: /bom\n",
     "spiderhub",
     {{"/bom", false}}},
    {"query strings take part in matching",
     "user-agent: *\ndisallow: /*?session=\n",
     "spiderhub",
     {{"/page?session=1", false}, {"/page?x=1", true}}},
  };
  for (auto& c : cases) {
    auto rules = robots_rules::parse(c.text, c.agent);
    for (auto& v : c.verdicts) {
      INFO(c.name << ": " << v.path);
      CHECK(rules.allowed(v.path) == v.allowed);
    }
  }
}

TEST_CASE("robots: crawl-delay of the matched groups") {
  auto r = robots_rules::parse("user-agent: *\ncrawl-delay: 2\n\nuser-agent: spiderhub\n"
                               "crawl-delay: 0.5\ndisallow: /x\n",
                               "spiderhub");
  REQUIRE(r.crawl_delay_ms());
  CHECK(*r.crawl_delay_ms() == 500);
  auto star = robots_rules::parse("user-agent: *\ncrawl-delay: 2\n", "spiderhub");
  CHECK(star.crawl_delay_ms().value_or(-1) == 2000);
  CHECK_FALSE(robots_rules::parse("user-agent: *\ncrawl-delay: soon\n", "spiderhub")
                .crawl_delay_ms());
  CHECK_FALSE(robots_rules::parse("user-agent: *\ncrawl-delay: -3\n", "spiderhub")
                .crawl_delay_ms());
  CHECK(robots_rules::parse("user-agent: *\ncrawl-delay: 1e9\n", "spiderhub")
          .crawl_delay_ms()
          .value_or(0) == 86400000);
}

TEST_CASE("robots: allow all, disallow all, size limit") {
  CHECK(robots_rules::allow_all().allowed("/x"));
  CHECK_FALSE(robots_rules::disallow_all().allowed("/x"));
  CHECK(robots_rules::disallow_all().allowed("/robots.txt"));
  // A rule past 500 KiB is not read.
  std::string big = "user-agent: *\n";
  big += std::string(spiderhub::core::robots_max_bytes, '#');
  big += "\ndisallow: /late\n";
  CHECK(robots_rules::parse(big, "spiderhub").allowed("/late"));
}

TEST_CASE("robots: product token and url path") {
  CHECK(robots_product_token("spiderhub/0.1 (+https://x)") == "spiderhub");
  CHECK(robots_product_token("Mozilla/5.0") == "Mozilla");
  CHECK(robots_product_token("my_bot-2") == "my_bot-");
  CHECK(url_path_and_query("http://a.example") == "/");
  CHECK(url_path_and_query("http://a.example?x=1") == "/?x=1");
  CHECK(url_path_and_query("https://a.example:8080/p/q?x=1#frag") == "/p/q?x=1");
  CHECK(url_path_and_query("not a url") == "");
}
