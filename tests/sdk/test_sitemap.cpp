#include <doctest/doctest.h>

#include <zlib.h>

#include <string>
#include <vector>

#include "sdk/html_links.hpp"
#include "sdk/sitemap.hpp"

using namespace spiderhub::sdk;

namespace {
std::string gzip(const std::string& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

const std::string ns = R"( xmlns="http://www.sitemaps.org/schemas/sitemap/0.9")";

std::string urlset(const std::vector<std::string>& locs, const std::string& xmlns = ns) {
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset" + xmlns + ">\n";
  for (auto& l : locs)
    x += "<url><loc>" + l + "</loc><lastmod>2024-01-01</lastmod></url>\n";
  return x + "</urlset>\n";
}
} // namespace

TEST_CASE("sitemap: Sitemap lines of robots.txt, in any case, resolved, unique") {
  auto got = robots_sitemaps(
    "User-agent: *\nDisallow: /admin/\n\nSitemap: http://a.test/s1.xml\n"
    "sitemap:http://a.test/s2.xml.gz # the second\r\n  SITEMAP  :  /relative.xml  \n"
    "Sitemap: http://a.test/s1.xml\nSitemap:\nSitemap: ftp://a.test/no.xml\n"
    "# Sitemap: http://a.test/commented.xml\nAllow: /sitemap: not a field\n",
    "http://a.test/robots.txt");
  CHECK(got == std::vector<std::string>{"http://a.test/s1.xml", "http://a.test/s2.xml.gz",
                                        "http://a.test/relative.xml"});
  CHECK(robots_sitemaps("User-agent: *\nDisallow:\n", "http://a.test/robots.txt").empty());
  CHECK(robots_sitemaps("", "http://a.test/robots.txt").empty());
}

TEST_CASE("sitemap: urlset and index, with and without namespace, plain and gzip") {
  auto plain = parse_sitemap(urlset({"http://a.test/1.html", " http://a.test/2.html\n"}));
  CHECK(plain.type == sitemap::kind::urlset);
  CHECK(plain.locs == std::vector<std::string>{"http://a.test/1.html", "http://a.test/2.html"});
  CHECK(plain.error.empty());
  auto bare = parse_sitemap(urlset({"http://a.test/x"}, ""));
  CHECK(bare.type == sitemap::kind::urlset);
  CHECK(bare.locs.size() == 1);
  auto zipped = parse_sitemap(gzip(urlset({"http://a.test/z.html"})));
  CHECK(zipped.type == sitemap::kind::urlset);
  CHECK(zipped.locs == std::vector<std::string>{"http://a.test/z.html"});
  auto index = parse_sitemap(
    "<sitemapindex" + ns + "><sitemap><loc>http://a.test/s1.xml.gz</loc></sitemap>"
    "<sitemap><loc>/s2.xml</loc></sitemap><sitemap><lastmod>x</lastmod></sitemap>"
    "</sitemapindex>", "http://a.test/index.xml");
  CHECK(index.type == sitemap::kind::index);
  CHECK(index.locs == std::vector<std::string>{"http://a.test/s1.xml.gz", "http://a.test/s2.xml"});
  // Prefixed namespace, entities of XML itself (&amp;), non-http locs and repeats dropped.
  auto prefixed = parse_sitemap(
    "<sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
    "<sm:url><sm:loc>http://a.test/q?a=1&amp;b=2</sm:loc></sm:url>"
    "<sm:url><sm:loc>mailto:x@a.test</sm:loc></sm:url>"
    "<sm:url><sm:loc>http://a.test/q?a=1&amp;b=2</sm:loc></sm:url></sm:urlset>");
  CHECK(prefixed.type == sitemap::kind::urlset);
  CHECK(prefixed.locs == std::vector<std::string>{"http://a.test/q?a=1&b=2"});
}

TEST_CASE("sitemap: what is not a sitemap, damaged ones, bombs, DTDs and the URL cap") {
  CHECK(parse_sitemap("<html><body>hi</body></html>").type == sitemap::kind::none);
  CHECK(parse_sitemap("<html><body>hi</body></html>").error.empty());
  CHECK(parse_sitemap("just text").type == sitemap::kind::none);
  CHECK(parse_sitemap("<?xml version=\"1.0\"?><rss><channel/></rss>").type == sitemap::kind::none);
  auto broken = parse_sitemap("<?xml version=\"1.0\"?><urlset><url><loc>http://a.test/");
  CHECK(broken.type == sitemap::kind::none);
  CHECK(broken.error == "malformed sitemap XML");
  auto damaged = parse_sitemap(gzip(urlset({"http://a.test/1"})).substr(0, 20));
  CHECK(damaged.type == sitemap::kind::none);
  CHECK(damaged.error.find("gzip") != std::string::npos);
  // 60 MiB of zeros inflate past the 50 MiB cap: refused, not read to the end.
  auto bomb = parse_sitemap(gzip(std::string(60u << 20, ' ')));
  CHECK(bomb.type == sitemap::kind::none);
  CHECK(bomb.error.find("inflates to more than") != std::string::npos);
  auto dtd = parse_sitemap("<?xml version=\"1.0\"?><!DOCTYPE urlset [<!ENTITY a \"aaaa\">]>"
                           "<urlset><url><loc>http://a.test/&a;</loc></url></urlset>");
  CHECK(dtd.type == sitemap::kind::none);
  CHECK(dtd.error.find("DTD") != std::string::npos);
  std::vector<std::string> many;
  for (std::size_t i = 0; i < max_sitemap_locs + 5; ++i)
    many.push_back("http://a.test/p" + std::to_string(i));
  auto capped = parse_sitemap(urlset(many));
  CHECK(capped.locs.size() == max_sitemap_locs);
  CHECK(capped.truncated);
}

TEST_CASE("html links: meta refresh as HTML's declarative refresh steps read it") {
  struct row {
    const char* content;
    bool ok;
    int delay;
    bool has_url;
    const char* url;
  };
  const row rows[] = {
    {"5; url='/next'", true, 5, true, "/next"},
    {"0;URL=/a", true, 0, true, "/a"},
    {"3", true, 3, false, ""},
    {"1.5, /b", true, 1, true, "/b"},
    {"soon", false, 0, false, ""},
    {"  7 ; url = \"/q?x=1\" trailing", true, 7, true, "/q?x=1"},
    {".5;url=/half", true, 0, true, "/half"},
    {"2;ur/odd", true, 2, true, "ur/odd"},
    {"2x", false, 0, false, ""},
    {"10 /plain", true, 10, true, "/plain"},
    {"4; ", true, 4, false, ""},
  };
  for (const auto& r : rows) {
    auto got = parse_meta_refresh(r.content);
    CHECK_MESSAGE(got.ok == r.ok, r.content);
    if (!r.ok)
      continue;
    CHECK_MESSAGE(got.delay == r.delay, r.content);
    CHECK_MESSAGE(got.has_url == r.has_url, r.content);
    if (r.has_url)
      CHECK_MESSAGE(got.url == r.url, r.content);
  }
  auto page = extract_links(
    "<html><head><meta http-equiv=\"Refresh\" content=\"0; url=moved.html\">"
    "<meta http-equiv=refresh content=\"1;url=/second\"></head><body>x</body></html>",
    "http://a.test/dir/page.html");
  CHECK(page.refresh_delay == 0);
  CHECK(page.refresh_url == "http://a.test/dir/moved.html");
  auto self = extract_links("<meta http-equiv=refresh content=\"30\">", "http://a.test/p");
  CHECK(self.refresh_delay == 30);
  CHECK(self.refresh_url.empty());
  CHECK(extract_links("<p>no refresh</p>", "http://a.test/p").refresh_delay == -1);
}

TEST_CASE("sitemap: an XML page with a DOCTYPE is no sitemap (and no error)") {
  auto xhtml = parse_sitemap(
    "<?xml version=\"1.0\"?><!DOCTYPE html><html xmlns=\"http://www.w3.org/1999/xhtml\">"
    "<body>x</body></html>");
  CHECK(xhtml.type == sitemap::kind::none);
  CHECK(xhtml.error.empty());
}
