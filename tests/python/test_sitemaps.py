"""Unit tests of sitemap reading in the Python SDK (clients/python/spiderhub/sitemaps.py)
and of the sample LinkSpider's ``"sitemaps": true``: no broker, no network.

    python3 tests/python/test_sitemaps.py [-v]

Standard library only. Tables: robots.txt ``Sitemap:`` lines (case, spaces, comments,
relative URLs, none), urlsets and indexes (namespaced or not, gzip), what is not a sitemap,
what is refused (malformed XML, DOCTYPE, bad gzip, a gzip bomb over the cap), non-http
locs dropped, more than 50,000 locs capped.
"""
from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

from spiderhub import sitemaps as sm  # noqa: E402
from spiderhub import worker as sw  # noqa: E402
from spiderhub.samples import LinkSpider  # noqa: E402

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def urlset(*locs: str, ns: str = NS) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc></url>\n" for loc in locs)
    return f"{DECL}<urlset {ns}>\n{entries}</urlset>\n".encode()


def index(*locs: str) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>\n" for loc in locs)
    return f"{DECL}<sitemapindex {NS}>\n{entries}</sitemapindex>\n".encode()


class RobotsSitemaps(unittest.TestCase):
    BASE = "http://h:8080/robots.txt"
    TABLE = [
        # robots.txt text, sitemap URLs
        ("User-agent: *\nDisallow: /x\nSitemap: http://h:8080/s.xml\n", ["http://h:8080/s.xml"]),
        ("sitemap: http://h/a.xml\nSITEMAP: http://h/b.xml\nSiteMap: http://h/c.xml",
         ["http://h/a.xml", "http://h/b.xml", "http://h/c.xml"]),            # any case
        ("  Sitemap :\t http://h/a.xml  \t\n", ["http://h/a.xml"]),          # spaces, tabs
        ("Sitemap:http://h/a.xml\r\nSitemap: http://h/b.xml\r\n",
         ["http://h/a.xml", "http://h/b.xml"]),                             # no space, CRLF
        ("Sitemap: http://h/a.xml # the old one\n", ["http://h/a.xml"]),     # comment after
        ("# Sitemap: http://h/old.xml\n#Sitemap: http://h/old2.xml\n", []),  # commented out
        ("Sitemap: /sitemap.xml\nSitemap: maps/b.xml.gz\n",
         ["http://h:8080/sitemap.xml", "http://h:8080/maps/b.xml.gz"]),      # relative
        ("Sitemap: //cdn.example/s.xml\n", ["http://cdn.example/s.xml"]),    # scheme-relative
        ("Sitemap: https://other.example/s.xml\n", ["https://other.example/s.xml"]),
        ("User-agent: *\nDisallow: /private/\nAllow: /\n", []),             # none
        ("", []),
        ("Sitemap:\nSitemap:   \nSitemap: # nothing\n", []),                 # empty values
        ("Sitemap: ftp://h/s.xml\nSitemap: mailto:a@h\nSitemap: javascript:x\n", []),
        ("Sitemaps: http://h/a.xml\nXSitemap: http://h/b.xml\nSitemap http://h/c.xml\n", []),
        ("Disallow: /sitemap: x\nUser-agent: Sitemap: http://h/a.xml\n", []),
        ("Sitemap: http://h/a.xml\nsitemap: http://h/a.xml\nSitemap: http://H/a.xml#top\n",
         ["http://h/a.xml"]),                                               # once each
        ("\ufeffSitemap: http://h/a.xml\n", ["http://h/a.xml"]),              # a BOM
        ("Sitemap: http://h/karte/straße.xml\n", ["http://h/karte/stra%C3%9Fe.xml"]),
    ]

    def test_table(self):
        for text, want in self.TABLE:
            with self.subTest(text=text):
                self.assertEqual(sm.robots_sitemaps(text, self.BASE), want)

    def test_relative_to_the_robots_url(self):
        self.assertEqual(sm.robots_sitemaps("Sitemap: s.xml", "https://h/sub/robots.txt"),
                         ["https://h/sub/s.xml"])


class ParseSitemap(unittest.TestCase):
    TABLE = [
        # body, (kind, locs)
        (urlset("http://h/a.html", "http://h/b/"), ("urlset", ["http://h/a.html", "http://h/b/"])),
        (urlset("http://h/a.html", ns=""), ("urlset", ["http://h/a.html"])),  # no namespace
        (urlset("http://h/a", ns='xmlns="urn:other"'), ("urlset", ["http://h/a"])),
        (b'<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9">'
         b"<sm:url><sm:loc>http://h/p</sm:loc></sm:url></sm:urlset>", ("urlset", ["http://h/p"])),
        (b"<urlset><url><loc>http://h/p</loc></url></urlset>", ("urlset", ["http://h/p"])),
        (index("http://h/s1.xml.gz", "http://h/s2.xml"),
         ("sitemapindex", ["http://h/s1.xml.gz", "http://h/s2.xml"])),
        (b"<sitemapindex><sitemap><loc>http://h/s.xml</loc><lastmod>2024-01-01</lastmod>"
         b"</sitemap></sitemapindex>", ("sitemapindex", ["http://h/s.xml"])),
        (urlset(), ("urlset", [])),
        (b"<urlset/>", ("urlset", [])),
        # locs: trimmed, entities and CDATA read, normalised like links
        (urlset("\n   http://h/a   \n"), ("urlset", ["http://h/a"])),
        (urlset("http://h/q?a=1&amp;b=2"), ("urlset", ["http://h/q?a=1&b=2"])),
        (urlset("<![CDATA[http://h/q?a=1&b=2]]>"), ("urlset", ["http://h/q?a=1&b=2"])),
        (urlset("HTTP://H:80/a#frag"), ("urlset", ["http://h/a"])),
        (urlset("http://h/über"), ("urlset", ["http://h/%C3%BCber"])),
        # non-http(s) and relative locs dropped
        (urlset("ftp://h/a", "mailto:a@h", "javascript:alert(1)", "/relative", "page.html", "",
                "https://h/ok"), ("urlset", ["https://h/ok"])),
        # only the <loc> of the root's <url> (<sitemap>) children
        (b"<urlset><loc>http://h/direct</loc><url><loc>http://h/a</loc>"
         b'<image:image xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">'
         b"<image:loc>http://h/pic.jpg</image:loc></image:image>"
         b'<xhtml:link xmlns:xhtml="http://www.w3.org/1999/xhtml" rel="alternate" '
         b'href="http://h/de/a"/></url></urlset>', ("urlset", ["http://h/a"])),
        (b"<urlset><sitemap><loc>http://h/s.xml</loc></sitemap></urlset>", ("urlset", [])),
        (b"<sitemapindex><url><loc>http://h/a</loc></url></sitemapindex>", ("sitemapindex", [])),
        (b"<urlset><url><loc>http://h/<b>x</b>y</loc><loc>http://h/2</loc></url></urlset>",
         ("urlset", ["http://h/xy", "http://h/2"])),
        # byte order marks, blanks before the declaration, UTF-16
        (b"\xef\xbb\xbf" + urlset("http://h/a"), ("urlset", ["http://h/a"])),
        (b"\n\n  " + urlset("http://h/a"), ("urlset", ["http://h/a"])),
        ('<?xml version="1.0" encoding="UTF-16"?><urlset><url><loc>http://h/ü</loc></url>'
         "</urlset>".encode("utf-16"), ("urlset", ["http://h/%C3%BC"])),
        # gzip: one member, two members, zero padding after it
        (gzip.compress(urlset("http://h/z")), ("urlset", ["http://h/z"])),
        (gzip.compress(index("http://h/s.gz"), mtime=0), ("sitemapindex", ["http://h/s.gz"])),
        (gzip.compress(b"<urlset><url><loc>http://h/a</loc></url>") +
         gzip.compress(b"<url><loc>http://h/b</loc></url></urlset>"),
         ("urlset", ["http://h/a", "http://h/b"])),
        (gzip.compress(urlset("http://h/z")) + b"\0" * 512, ("urlset", ["http://h/z"])),
    ]
    NOT_SITEMAPS = [
        b"", b"   ", b"hello", b"User-agent: *\nSitemap: http://h/s.xml\n",
        b'{"urlset": ["http://h/a"]}',
        b"<!DOCTYPE html>\n<html><head><title>urlset</title></head></html>",
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd"><html/>',
        b"<html><body><urlset><url><loc>http://h/a</loc></url></urlset></body></html>",
        b'<?xml version="1.0"?><rss version="2.0"><channel><link>http://h/</link></channel></rss>',
        b"<meta charset=utf-8><title>not well-formed & not a sitemap",
        b"<url><loc>http://h/a</loc></url>",                 # an entry without its root
        gzip.compress(b"<!DOCTYPE html><html><title>x</title></html>"),
    ]
    REFUSED = [
        # body, words of the error
        (b"<urlset><url><loc>http://h/a</loc></url>", "no element found"),  # cut short
        (b"<urlset><url><loc>http://h/a</lo></url></urlset>", "mismatched tag"),
        (b"<urlset></urlset><urlset></urlset>", "junk after document element"),
        (b"<urlset><url><loc>http://h/?a=1&b=2</loc></url></urlset>", "not well-formed"),
        (b"<sitemapindex><sitemap><loc>&nbsp;</loc></sitemap></sitemapindex>", "undefined entity"),
        # a DOCTYPE is refused before its internal subset is read: billion laughs, XXE
        (b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY a "aaaaaaaaaa">'
         b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
         b"<urlset><url><loc>http://h/&c;</loc></url></urlset>", "DOCTYPE"),
        (b'<!DOCTYPE sitemapindex [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b"<sitemapindex><sitemap><loc>&x;</loc></sitemap></sitemapindex>", "DOCTYPE"),
        (b'<!DOCTYPE sm:urlset SYSTEM "urlset.dtd"><sm:urlset/>', "DOCTYPE"),
        # gzip that cannot be read
        (b"\x1f\x8b" + b"not gzip at all", "bad gzip"),
        (gzip.compress(urlset("http://h/a"))[:-20], "cut short"),
        (gzip.compress(urlset("http://h/a")) + b"trailing junk", "bad gzip"),
        (gzip.compress(b"<urlset><url><loc>http://h/a</loc>"), "no element found"),
    ]

    def test_table(self):
        for body, want in self.TABLE:
            with self.subTest(body=body[:120]):
                self.assertEqual(sm.parse_sitemap(body), want)

    def test_not_sitemaps(self):
        for body in self.NOT_SITEMAPS:
            with self.subTest(body=body[:120]):
                self.assertIsNone(sm.parse_sitemap(body))

    def test_refused(self):
        for body, words in self.REFUSED:
            with self.subTest(body=body[:120]):
                with self.assertRaises(sm.SitemapError) as cm:
                    sm.parse_sitemap(body)
                self.assertIn(words, str(cm.exception))

    def test_gzip_bomb_over_the_cap(self):
        # 51 MiB of zeros in ~50 KiB: decompression stops at the cap, not at the end.
        bomb = gzip.compress(b"<urlset>" + b"\0" * (51 << 20), compresslevel=1)
        self.assertLess(len(bomb), 1 << 20)
        with self.assertRaises(sm.SitemapError) as cm:
            sm.parse_sitemap(bomb)
        self.assertIn("gzip bomb", str(cm.exception))

    def test_gunzip_limit_is_exact(self):
        data = gzip.compress(b"x" * 1000)
        self.assertEqual(sm.gunzip(data, limit=1000), b"x" * 1000)
        with self.assertRaises(sm.SitemapError):
            sm.gunzip(data, limit=999)
        two = data + gzip.compress(b"y" * 10)        # the cap counts every member
        self.assertEqual(len(sm.gunzip(two, limit=1010)), 1010)
        with self.assertRaises(sm.SitemapError):
            sm.gunzip(two, limit=1009)

    def test_gzip_just_under_the_cap_is_read(self):
        # Decompressed in full (an <html> root then says it is no sitemap: None, no error).
        page = gzip.compress(b"<html>" + b"x" * (sm.MAX_SITEMAP_BYTES - 6), compresslevel=1)
        self.assertIsNone(sm.parse_sitemap(page))
        with self.assertRaises(sm.SitemapError):
            sm.parse_sitemap(gzip.compress(b"<html>" + b"x" * (sm.MAX_SITEMAP_BYTES - 5),
                                           compresslevel=1))

    def test_locs_capped(self):
        n = sm.MAX_LOCS + 10
        body = urlset(*(f"http://h/p{i}" for i in range(n)))
        kind, locs = sm.parse_sitemap(body)
        self.assertEqual(kind, "urlset")
        self.assertEqual(len(locs), sm.MAX_LOCS)
        self.assertEqual(locs[0], "http://h/p0")
        self.assertEqual(locs[-1], f"http://h/p{sm.MAX_LOCS - 1}")
        # the rest of the file is not read: what follows the cap cannot fail it
        cut = urlset(*(f"http://h/p{i}" for i in range(sm.MAX_LOCS)))
        cut = cut.replace(b"</urlset>\n", b"<url><loc>broken</lo></url>")
        self.assertEqual(len(sm.parse_sitemap(gzip.compress(cut))[1]), sm.MAX_LOCS)

    def test_dropped_locs_do_not_count(self):
        body = urlset(*(["ftp://h/x"] * 10 + [f"http://h/p{i}" for i in range(sm.MAX_LOCS)]))
        self.assertEqual(len(sm.parse_sitemap(body)[1]), sm.MAX_LOCS)


# ---- the sample spider ----------------------------------------------------------------

START = "http://h:8080/index.html"


def run(**args) -> dict:
    return {"jobId": 1, "identity": "run-1",
            "arguments": json.dumps({"startUrl": START, "maxDepth": 5, **args})}


def response(r: dict, url: str, body: bytes, status: int = 200, depth: int = 0,
             **kw) -> sw.Response:
    return sw.Response.from_json(r, {
        "resultId": 1, "requestHash": "h1", "url": url, "statusCode": status,
        "headers": {}, "content": base64.b64encode(body).decode(),
        "contentEncoding": "base64", "error": "", "depth": depth, **kw})


class SampleSpiderSitemaps(unittest.TestCase):
    def crawl(self, url, body, sitemaps=True, **kw):
        """(items, [(url, depth)]) the sample yields for one response."""
        r = run(sitemaps=sitemaps, **kw.pop("args", {}))
        spider = LinkSpider()
        list(spider.start_requests(r))
        out = list(spider.parse(response(r, url, body, **kw)))
        return ([o for o in out if isinstance(o, dict)],
                [(o.url, o.depth) for o in out if isinstance(o, sw.Request)])

    def test_start_requests(self):
        self.assertEqual([(q.url, q.depth) for q in LinkSpider().start_requests(run())], [
            (START, 0)])
        self.assertEqual([(q.url, q.depth) for q in LinkSpider().start_requests(
            run(sitemaps=True))], [(START, 0), ("http://h:8080/robots.txt", 0)])
        self.assertEqual(len(LinkSpider().start_requests(run(sitemaps=False))), 1)

    def test_robots_txt(self):
        robots = (b"User-agent: *\nDisallow: /admin/\nSitemap: /sitemap_index.xml\n"
                  b"sitemap: http://other.example/s.xml\n")
        items, reqs = self.crawl("http://h:8080/robots.txt", robots)
        self.assertEqual(items, [])
        # Sitemap lines are not scoped: a robots.txt may name a sitemap elsewhere.
        self.assertEqual(reqs, [("http://h:8080/sitemap_index.xml", 0),
                                ("http://other.example/s.xml", 0)])

    def test_robots_txt_missing(self):
        self.assertEqual(self.crawl("http://h:8080/robots.txt", b"<title>Not found</title>",
                                    status=404, error="HTTP 404", errorKind="http_4xx"),
                         ([], []))

    def test_index_and_urlset(self):
        items, reqs = self.crawl("http://h:8080/sitemap_index.xml", index(
            "http://h:8080/s1.xml.gz", "http://www.h:8080/s2.xml", "http://other/s3.xml"))
        self.assertEqual(items, [])
        self.assertEqual(reqs, [("http://h:8080/s1.xml.gz", 0), ("http://www.h:8080/s2.xml", 0)])
        body = gzip.compress(urlset("http://h:8080/orphan.html", "http://h:8080/a.pdf",
                                    "http://h:9090/other-port.html", "mailto:x@h"))
        items, reqs = self.crawl("http://h:8080/s1.xml.gz", body)
        self.assertEqual(items, [])
        self.assertEqual(reqs, [("http://h:8080/orphan.html", 1), ("http://h:8080/a.pdf", 1)])

    def test_urlset_past_max_depth(self):
        self.assertEqual(self.crawl("http://h:8080/s.xml", urlset("http://h:8080/a"),
                                    args={"maxDepth": 0}), ([], []))

    def test_malformed_sitemap_logged_and_skipped(self):
        with self.assertLogs("spiderhub.samples", "WARNING") as logs:
            out = self.crawl("http://h:8080/s.xml.gz", b"\x1f\x8bbroken")
        self.assertEqual(out, ([], []))
        self.assertIn("http://h:8080/s.xml.gz", logs.output[0])

    def test_pages_stay_pages(self):
        html = b"<!DOCTYPE html><title>Page</title><a href='/b.html'>b</a>"
        items, reqs = self.crawl("http://h:8080/a.html", html, depth=1)
        self.assertEqual(items, [{"url": "http://h:8080/a.html", "title": "Page", "depth": 1}])
        self.assertEqual(reqs, [("http://h:8080/b.html", 2)])
        items, _ = self.crawl("http://h:8080/gone.xml", urlset("http://h:8080/a"), status=404)
        self.assertEqual(items[0]["status"], 404)        # a failed sitemap is a failed page

    def test_requests_of_the_running_workers_class(self):
        # `python -m spiderhub.worker` runs a second copy of the module as __main__, whose
        # Worker keeps only the Requests of its own class: they must come from the response.
        spec = importlib.util.spec_from_file_location("spiderhub.worker_as_main", sw.__file__)
        main = importlib.util.module_from_spec(spec)
        with mock.patch.dict(sys.modules, {spec.name: main}):  # dataclasses look it up
            spec.loader.exec_module(main)
        r = run(sitemaps=True)
        spider = LinkSpider()
        list(spider.start_requests(r))
        for url, body in [("http://h:8080/robots.txt", b"Sitemap: /s.xml"),
                          ("http://h:8080/i.xml", index("http://h:8080/s.xml")),
                          ("http://h:8080/s.xml", urlset("http://h:8080/a"))]:
            with self.subTest(url=url):
                resp = main.Response.from_json(r, {
                    "resultId": 1, "url": url, "statusCode": 200, "depth": 0,
                    "content": base64.b64encode(body).decode(), "contentEncoding": "base64"})
                out = list(spider.parse(resp))
                self.assertEqual(len(out), 1)
                self.assertIsInstance(out[0], main.Request)

    def test_off_by_default(self):
        items, reqs = self.crawl("http://h:8080/robots.txt", b"Sitemap: /s.xml\n",
                                 sitemaps=False)
        self.assertEqual([i["url"] for i in items], ["http://h:8080/robots.txt"])
        self.assertEqual(reqs, [])
        items, reqs = self.crawl("http://h:8080/s.xml", urlset("http://h:8080/a"),
                                 sitemaps=False)
        self.assertEqual(len(items), 1)
        self.assertEqual(reqs, [])


if __name__ == "__main__":
    unittest.main()
