#!/usr/bin/env python3
"""A small site that behaves like real ones, for tests/e2e/test_real_web.py (issue #35,
"Real-web HTTP semantics"): redirects, character encodings, URL spellings, a calendar trap,
robots.txt and gzip sitemaps. Standard library only; two threaded servers on 127.0.0.1
(two ports = two origins, "A" and "B", since no other host name resolves here).

Every page has a unique title, non-ASCII wherever the encoding matters, so a page decoded
with the wrong charset shows in its title. Every page is reachable from A's /index.html,
except the orphans of group "sitemaps", which only the sitemaps list.

Groups (Page.group) and what a browser, or Scrapy 2.8, does with them:

  redirects
    * /blog answers 301 with the relative `Location: /blog/`; /blog/ links `a.html` and
      `b.html` (relative), which resolve against the final URL: /blog/a.html and
      /blog/b.html (against /blog they would be /a.html and /b.html: 404). The index
      links /blog/ directly too, after /blog: one page, downloaded once.
    * /go answers 302 -> /go/step, which answers 307 -> /go/final.html.
    * /out/public answers 302 -> B's /public/page.html, which links `other.html`
      (B's /public/other.html: only a crawler that follows links to other origins than
      the start page's finds it, see expected(other_origins)); /out/private answers 302 ->
      B's /private/page.html, which B's robots.txt disallows: a crawler that obeys
      robots.txt does not download it.
    * /admin/secret.html is linked from the index and disallowed by A's robots.txt.
  encodings (the charset in the Content-Type header only unless said otherwise)
    * /gbk/index.html: GBK, title "中文首页"; links /gbk/搜索 (the href in GBK bytes; a
      browser requests the path as UTF-8, percent-encoded: /gbk/%E6%90%9C%E7%B4%A2) and
      /gbk/search?q=中文 (a browser encodes a query in the page's encoding:
      ?q=%D6%D0%CE%C4). The UTF-8 form of that query (?q=%E4%B8%AD%E6%96%87) is served
      too, as a GBK server would (its title is then mojibake), and counted apart
      (page id "gbk-query-utf8": no crawler should ask for it).
    * Shift_JIS, EUC-KR and windows-1251 pages.
    * /enc/euckr-meta.html: no charset in the header, `<meta charset="euc-kr">` after
      <title> (within the first 1024 bytes).
    * /enc/bom-utf8.html: UTF-8 with a BOM, header charset=iso-8859-1 (the BOM wins).
    * /enc/utf16le.html: UTF-16LE with a BOM, no charset; it links /enc/utf16-child.html
      (only a crawler that decoded it finds the link).
  urls: /urls.html links one page in many spellings (fragments, scheme case, absolute
    and scheme-relative forms, dot segments, an empty query, `%7E` for `~`, `&amp;` in a
    query) and the plain spelling first; each page must be downloaded once. /same/PAGE.html
    is a different page from /same/page.html (paths are case-sensitive). The start page
    is in this group too (downloaded once, however often it is linked back to).
  calendar: /calendar?month=1 links `?month=2` and so on forever (and back to the
    previous month); a crawl with depth limit D sees months 1..D (the index is depth 0).
  sitemaps: A's robots.txt names /sitemap_index.xml (application/xml), which lists two
    gzip sitemaps (/sitemaps/pages-N.xml.gz, application/x-gzip, no Content-Encoding: the
    body is the gzip file). They list pages the index links too, and three orphans no page
    links to: /verwaist/eins.html (in pages-1), /verwaist/deux.html?lang=fr&v=2 (in
    pages-2, its loc written with `&amp;` as XML needs) and /verwaist/%E4%B8%89.html
    (pages-2, a percent-encoded UTF-8 path); they link only to pages found anyway. Only a
    crawler that reads sitemaps finds them: expected(sitemaps=True). The sitemap files are
    never items; sitemap_fetches() counts their downloads.

`expected()` is the set {url: title} a crawler that obeys robots.txt, follows every <a
href> of the two origins and stops at depth D should report (the final URL of a redirect,
the plain spelling of a page); with sitemaps=True, of one that also reads the sitemaps of
A's robots.txt: the orphans added. That set does not depend on the depth a crawler gives
a sitemap's pages (the samples 1, Scrapy's SitemapSpider 3: robots.txt, index, sitemap):
what they link is at most two levels further, within a depth limit of 5.
scrapy_deviations() where Scrapy 2.8 reports otherwise, and why; `classify(url)` names
the page and group of a URL.

Counters (thread-safe): every request by (origin, request target as sent), every
request by page id (after the server's own normalisation: unreserved escapes decoded,
dot segments removed, an empty query dropped), and 404s. snapshot() copies them so a test
can take the difference around one crawl (since()).

Command line: quirks_site.py [--depth 5] prints the two base URLs and serves until
SIGTERM/SIGINT; prints the expected set with --expected.
"""
import argparse
import collections
import gzip
import html
import http.server
import json
import re
import signal
import sys
import threading
import urllib.parse

import realweb_site

GROUPS = ("redirects", "encodings", "urls", "calendar", "sitemaps")
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

FILLER = {
    "utf-8": "Ein Absatz mit Umlauten: Grüße aus Zürich, café, naïve – und 東京.",
    "gbk": "这是一个测试网页，用于检查爬虫是否正确地解码了中文字符。北京欢迎你。",
    "shift_jis": "これはクローラーのテストページです。東京タワーと富士山。",
    "euc-kr": "이 페이지는 크롤러 테스트용입니다. 서울의 봄은 아름답습니다.",
    "cp1251": "Это тестовая страница для поискового робота. Привет из Москвы!",
    "utf-16-le": "UTF-16 文本：这是一个测试页面。Текст страницы.",
}


class Page:
    """One response of the site. kind "page" (HTML), "redirect", "text" or "gzip"."""

    def __init__(self, pid, group, origin, path, title=None, links=(), charset="utf-8",
                 ctype=None, meta=None, bom=False, expected=True, kind="page", status=200,
                 location=None, body=None, depth=None, alias=(), cross_origin_link=False,
                 sitemap_only=False):
        self.id, self.group, self.origin, self.path = pid, group, origin, path
        self.title, self.links, self.charset = title, list(links), charset
        self.ctype = ctype if ctype is not None else f"text/html; charset={charset}"
        self.meta, self.bom, self.expected = meta, bom, expected
        self.kind, self.status, self.location, self.body = kind, status, location, body
        self.depth = depth            # for the record: the depth a crawl finds it at
        self.alias = list(alias)      # other normalised targets served by this page
        # only reachable through a link to another origin than the start page's
        self.cross_origin_link = cross_origin_link
        self.sitemap_only = sitemap_only  # linked from no page: only a sitemap lists it


class QuirksSite:
    """`with QuirksSite(depth=5) as site:` starts both origins."""

    def __init__(self, depth=5):
        if depth < 3:
            raise ValueError("the non-calendar pages need a depth limit of at least 3")
        self.depth = depth
        self.bases = {}
        self._servers = {}
        self._lock = threading.Lock()
        self._raw = collections.Counter()    # (origin, target as sent) -> requests
        self._pages = collections.Counter()  # page id -> requests
        self._404 = collections.Counter()    # (origin, normalised target) -> requests
        self.pages = {}
        self._routes = {}

    # ---- the site -----------------------------------------------------------------

    def _define(self):
        A, B = self.bases["A"], self.bases["B"]
        P = []
        add = P.append
        # -- the start page
        add(Page("index", "urls", "A", "/index.html", "Quirks — Startseite (Übersicht)", links=[
            "/blog", "/blog/", "/go", "/out/public", "/out/private", "/admin/secret.html",
            "/gbk/index.html", "/enc/sjis.html", "/enc/euckr.html", "/enc/cp1251.html",
            "/enc/euckr-meta.html", "/enc/bom-utf8.html", "/enc/utf16le.html",
            "/urls.html", "/calendar?month=1"], meta="utf-8", ctype="text/html", depth=0))
        # -- redirects
        add(Page("blog-redirect", "redirects", "A", "/blog", kind="redirect", status=301,
                 location="/blog/"))
        add(Page("blog", "redirects", "A", "/blog/", "Блог — главная страница",
                 links=["a.html", "b.html", "/index.html"], depth=1))
        add(Page("blog-a", "redirects", "A", "/blog/a.html", "Блог: запись А (relative a.html)",
                 links=["b.html", "./"], depth=2))
        add(Page("blog-b", "redirects", "A", "/blog/b.html", "Блог: запись Б (relative b.html)",
                 links=["a.html"], depth=2))
        add(Page("go", "redirects", "A", "/go", kind="redirect", status=302,
                 location="/go/step"))
        add(Page("go-step", "redirects", "A", "/go/step", kind="redirect", status=307,
                 location=A + "/go/final.html"))
        add(Page("go-final", "redirects", "A", "/go/final.html",
                 "Ziel der Kette 302 → 307 → 200", links=["../index.html"], depth=1))
        add(Page("out-public", "redirects", "A", "/out/public", kind="redirect", status=302,
                 location=B + "/public/page.html"))
        add(Page("b-public", "redirects", "B", "/public/page.html",
                 "Zweiter Host: öffentliche Seite", links=["other.html"], depth=1))
        add(Page("b-other", "redirects", "B", "/public/other.html",
                 "Zweiter Host: andere Seite (relativ verlinkt)", links=["page.html"], depth=2,
                 cross_origin_link=True))
        add(Page("out-private", "redirects", "A", "/out/private", kind="redirect", status=302,
                 location=B + "/private/page.html"))
        add(Page("b-private", "redirects", "B", "/private/page.html",
                 "Zweiter Host: verboten (robots.txt)", expected=False, depth=1))
        add(Page("a-admin", "redirects", "A", "/admin/secret.html",
                 "Verwaltung: verboten (robots.txt)", expected=False, depth=1))
        # -- encodings
        add(Page("gbk", "encodings", "A", "/gbk/index.html", "中文首页", charset="gbk",
                 links=["/gbk/搜索", "/gbk/search?q=中文"], depth=1))
        add(Page("gbk-path", "encodings", "A", "/gbk/%E6%90%9C%E7%B4%A2", "搜索页面：路径是中文",
                 charset="gbk", links=["index.html"], depth=2))
        add(Page("gbk-query", "encodings", "A", "/gbk/search?q=%D6%D0%CE%C4", "搜索结果：中文",
                 charset="gbk", depth=2))
        # What a GBK server makes of the query sent as UTF-8: the same bytes read as GBK.
        wrong = "搜索结果：" + "中文".encode("utf-8").decode("gbk", errors="replace").replace(
            "\ufffd", "?")
        add(Page("gbk-query-utf8", "encodings", "A", "/gbk/search?q=%E4%B8%AD%E6%96%87", wrong,
                 charset="gbk", expected=False, depth=2))
        add(Page("sjis", "encodings", "A", "/enc/sjis.html", "日本語のページ：東京と大阪",
                 charset="shift_jis", depth=1))
        add(Page("euckr", "encodings", "A", "/enc/euckr.html", "한국어 페이지: 서울",
                 charset="euc-kr", depth=1))
        add(Page("cp1251", "encodings", "A", "/enc/cp1251.html", "Русская страница — Москва",
                 charset="cp1251", ctype="text/html; charset=windows-1251", depth=1))
        add(Page("euckr-meta", "encodings", "A", "/enc/euckr-meta.html",
                 "메타 태그는 제목 뒤에: 부산", charset="euc-kr", ctype="text/html",
                 meta="late", depth=1))
        add(Page("bom-utf8", "encodings", "A", "/enc/bom-utf8.html",
                 "UTF-8 mit BOM: Größe, café, Ärger", charset="utf-8",
                 ctype="text/html; charset=iso-8859-1", bom=True, depth=1))
        add(Page("utf16", "encodings", "A", "/enc/utf16le.html", "UTF-16LE 页面 — страница",
                 charset="utf-16-le", ctype="text/html", bom=True,
                 links=["utf16-child.html"], depth=1))
        add(Page("utf16-child", "encodings", "A", "/enc/utf16-child.html",
                 "Kind der UTF-16-Seite: nur nach dem Dekodieren gefunden", depth=2))
        # -- URL spellings (the plain one first in the document)
        add(Page("urls", "urls", "A", "/urls.html", "Schreibweisen einer URL", links=[
            "/same/page.html", "same/page.html#a", "/same/page.html#b",
            f"HTTP://{A[len('http://'):]}/same/page.html", f"{A}/same/page.html",
            f"//{A[len('http://'):]}/same/page.html", "/same/dir/../page.html",
            "/same/./page.html", "/same/page.html?", "./same/page.html",
            "/same/PAGE.html",
            "/~team/about.html", "/%7Eteam/about.html", "/%7eteam/about.html",
            "/same/query.html?x=1&amp;y=2", "/same/query.html?x=1&y=2#top"], depth=1))
        add(Page("same", "urls", "A", "/same/page.html", "Dieselbe Seite in vielen Schreibweisen",
                 links=["page.html#self", "../urls.html"], depth=2))
        add(Page("same-upper", "urls", "A", "/same/PAGE.html",
                 "GROSSE Seite: ein anderer Pfad (Groß-/Kleinschreibung zählt)", depth=2))
        add(Page("tilde", "urls", "A", "/~team/about.html", "Über das Team (~ und %7E)",
                 depth=2))
        add(Page("query", "urls", "A", "/same/query.html?x=1&y=2", "Abfrage x=1 & y=2 (&amp; im Link)",
                 depth=2))
        # -- the calendar trap (months 1, 2, ... forever; the depth limit stops a crawl)
        add(Page("calendar", "calendar", "A", "/calendar", kind="calendar"))
        # -- robots.txt and sitemaps
        add(Page("orphan-1", "sitemaps", "A", "/verwaist/eins.html",
                 "Verwaiste Seite eins – nur in der Sitemap (Köln)", links=["/index.html"],
                 depth=1, sitemap_only=True))
        add(Page("orphan-2", "sitemaps", "A", "/verwaist/deux.html?lang=fr&v=2",
                 "Page orpheline deux : seulement dans le plan du site (Genève)",
                 links=["../urls.html"], depth=1, sitemap_only=True))
        add(Page("orphan-3", "sitemaps", "A", "/verwaist/%E4%B8%89.html",
                 "孤立页面三：只在站点地图中", links=["eins.html"], depth=1, sitemap_only=True))
        sitemap_index = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"<sitemap><loc>{A}/sitemaps/pages-1.xml.gz</loc></sitemap>\n"
            f"<sitemap><loc>{A}/sitemaps/pages-2.xml.gz</loc></sitemap>\n"
            "</sitemapindex>\n").encode()
        add(Page("robots-A", "robots", "A", "/robots.txt", kind="text", ctype="text/plain",
                 body=(f"User-agent: *\nDisallow: /admin/\n\nSitemap: {A}/sitemap_index.xml\n"
                       ).encode()))
        add(Page("robots-B", "robots", "B", "/robots.txt", kind="text", ctype="text/plain",
                 body=b"User-agent: *\nDisallow: /private/\n"))
        add(Page("sitemap-index", "sitemaps", "A", "/sitemap_index.xml", kind="text",
                 ctype="application/xml", body=sitemap_index))
        halves = (["/index.html", "/blog/", "/blog/a.html", "/verwaist/eins.html",
                   "/blog/b.html", "/go/final.html"],
                  ["/urls.html", "/same/page.html", "/verwaist/deux.html?lang=fr&v=2",
                   "/same/PAGE.html", "/~team/about.html", "/verwaist/%E4%B8%89.html"])
        for k, paths in enumerate(halves, 1):
            xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                   '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n' +
                   "".join(f"<url><loc>{html.escape(A + p)}</loc></url>\n" for p in paths) +
                   "</urlset>\n")
            add(Page(f"sitemap-{k}", "sitemaps", "A", f"/sitemaps/pages-{k}.xml.gz",
                     kind="text", ctype="application/x-gzip",
                     body=gzip.compress(xml.encode(), mtime=0)))
        self.pages = {p.id: p for p in P}
        self._routes = {}
        for p in P:
            for target in [p.path] + p.alias:
                self._routes[(p.origin, normalise_target(target))] = p.id

    # ---- what a crawler should report ----------------------------------------------

    def url(self, path, origin="A"):
        return self.bases[origin] + path

    def start_url(self):
        return self.url("/index.html")

    def calendar_url(self, month):
        return self.url(f"/calendar?month={month}")

    def calendar_title(self, month):
        return f"Kalender – Monat {month} (Falle)"

    def expected(self, other_origins=True, sitemaps=False):
        """{url: title} of every page a crawl with depth limit self.depth reports.
        other_origins=False: of a crawler that follows links to the start page's origin
        only (a redirect to B is still followed, B's own links are not). sitemaps=True: of
        a crawler that also reads the sitemaps robots.txt names (the orphans too)."""
        out = {}
        for p in self.pages.values():
            if p.kind == "page" and self._reported(p, other_origins, sitemaps):
                out[self.url(p.path, p.origin)] = p.title
        for m in range(1, self.depth + 1):
            out[self.calendar_url(m)] = self.calendar_title(m)
        return out

    def scrapy_deviations(self):
        """{url: (what Scrapy 2.8 reports instead: a title, or None for nothing), why}:
        where Debian's Scrapy 2.8 (w3lib 2.1) differs from expected(), and why. A crawler
        that parses with Scrapy (the Scrapy bridge) shares these; the others should not."""
        return {self.url("/enc/utf16-child.html"): (None, (
            "not crawled by Scrapy: w3lib 2.1 safe_url_string() encodes the port with the "
            "page's encoding (str(port).encode('utf-16-le')), so response.follow() on a "
            "UTF-16 page makes http://127.0.0.1:3\\x004\\x00.../ and the download fails "
            "with 'Port could not be cast to integer value'; browsers (and Scrapy on a "
            "default port) follow the link"))}

    @staticmethod
    def _reported(p, other_origins, sitemaps):
        return p.expected and (other_origins or not p.cross_origin_link) and \
            (sitemaps or not p.sitemap_only)

    def expected_downloads(self, sitemaps=False):
        """{page id: downloads a crawl should make}: the pages of expected() once each, the
        robots-disallowed pages, the UTF-8 spelling of the GBK query and (without sitemaps)
        the orphans never."""
        out = {pid: int(self._reported(p, True, sitemaps))
               for pid, p in self.pages.items() if p.kind == "page"}
        for m in range(1, self.depth + 1):
            out[f"calendar:{m}"] = 1
        out[f"calendar:{self.depth + 1}"] = 0
        return out

    def classify(self, url):
        """(page id or None, group) of a URL as a crawler reported or requested it. A URL
        the site does not serve is given the group its path looks like (None: no group)."""
        parts = urllib.parse.urlsplit(url)
        origin = next((o for o, b in self.bases.items()
                       if urllib.parse.urlsplit(b).netloc == parts.netloc.lower()), None)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if origin is None:
            return None, None
        pid = self.route(origin, target)
        if pid is not None:
            return pid, self.group_of(pid)
        return None, guess_group(origin, normalise_target(target))

    def group_of(self, pid):
        if pid.startswith("calendar:"):
            return "calendar"
        return self.pages[pid].group

    def route(self, origin, target):
        """The page id serving a request target (as sent) on an origin, or None."""
        key = normalise_target(target)
        pid = self._routes.get((origin, key))
        if pid is not None:
            return pid
        m = re.fullmatch(r"/calendar\?month=([1-9][0-9]{0,5})", key)
        if origin == "A" and m:
            return f"calendar:{int(m.group(1))}"
        return None

    # ---- counters -----------------------------------------------------------------

    def snapshot(self):
        with self._lock:
            return {"raw": collections.Counter(self._raw), "pages": collections.Counter(self._pages),
                    "404": collections.Counter(self._404)}

    @staticmethod
    def since(before, after):
        return {k: after[k] - before[k] for k in after}

    def sitemap_fetches(self, counts):
        """{page id: requests} of the sitemap files in a counters dict (snapshot/since)."""
        return {pid: counts["pages"].get(pid, 0) for pid in
                ("sitemap-index", "sitemap-1", "sitemap-2")}

    # ---- bodies -------------------------------------------------------------------

    def body(self, p, title=None, links=None):
        title = html.escape(p.title if title is None else title, quote=False)
        links = p.links if links is None else links
        head = "<!DOCTYPE html>\n<html><head>\n"
        if p.meta == "late":
            head += f"<title>{title}</title>\n<meta charset=\"{p.charset}\">\n"
        else:
            if p.meta:
                head += f"<meta charset=\"{p.meta}\">\n"
            head += f"<title>{title}</title>\n"
        head += "</head><body>\n"
        items = "".join(f"<li><a href=\"{h}\">{h}</a></li>\n" for h in links)
        text = FILLER.get(p.charset, FILLER["utf-8"])
        doc = (head + f"<h1>{title}</h1>\n<p>{text}</p>\n<ul>\n{items}</ul>\n"
               f"<p>{text}</p>\n</body></html>\n")
        data = doc.encode(p.charset)
        if p.bom:
            data = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe"}[p.charset] + data
        if p.meta == "late":
            assert data.index(b"<meta charset") < 1024 - 40
        return data

    # ---- server -------------------------------------------------------------------

    def start(self):
        for origin in ("A", "B"):
            handler = type(f"Handler{origin}", (_Handler,), {"site": self, "origin": origin})
            srv = realweb_site.QuietServer(("127.0.0.1", 0), handler)
            self._servers[origin] = srv
            self.bases[origin] = f"http://127.0.0.1:{srv.server_address[1]}"
        self._define()
        for origin, srv in self._servers.items():
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                             name=f"quirks_site-{origin}", daemon=True).start()
        return self

    def stop(self):
        for srv in self._servers.values():
            srv.shutdown()
            srv.server_close()
        self._servers = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def normalise_target(target):
    """A request target as this server reads it: absolute form cut to path and query,
    the fragment dropped, bytes above 0x7F and spaces percent-encoded, escapes of unreserved
    bytes decoded, other escapes in upper case, dot segments removed, an empty query
    dropped."""
    if target.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        rest = target.split("//", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")

    def escape(s, decode_unreserved):
        raw = s.encode("latin-1", errors="replace") if isinstance(s, str) else s
        out = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == 0x25 and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1:i + 3]):
                v = int(raw[i + 1:i + 3], 16)
                out.append(chr(v) if decode_unreserved and v in UNRESERVED else "%%%02X" % v)
                i += 3
                continue
            out.append(chr(c) if 0x20 < c < 0x7F else "%%%02X" % c)
            i += 1
        return "".join(out)

    path = escape(path, True) or "/"
    segs = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if segs:
                segs.pop()
        elif seg != ".":
            segs.append(seg)
    if path.endswith(("/.", "/..")):
        segs.append("")
    path = "/" + "/".join(segs)
    query = escape(query, False)
    return path + ("?" + query if query else "")


def guess_group(origin, key):
    """The group a target the site does not serve belongs to (a link resolved wrongly)."""
    if origin == "B":
        return "redirects"
    if key in ("/a.html", "/b.html", "/public/other.html", "/blog") or \
            key.startswith(("/blog", "/go", "/out", "/admin")):
        return "redirects"
    if key.startswith(("/gbk", "/enc")):
        return "encodings"
    if key.startswith(("/same", "/~", "/%7E", "/urls")):
        return "urls"
    if key.startswith("/calendar"):
        return "calendar"
    if key.startswith(("/sitemap", "/robots.txt", "/verwaist")):
        return "sitemaps"
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    site = None
    origin = None
    server_version = "quirks/1.0"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, ctype, body, extra=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        site = self.site
        target = self.path
        pid = site.route(self.origin, target)
        with site._lock:
            site._raw[(self.origin, target)] += 1
            if pid is None:
                site._404[(self.origin, normalise_target(target))] += 1
            else:
                site._pages[pid] += 1
        if pid is None:
            return self._send(404, "text/html; charset=utf-8",
                              b"<!DOCTYPE html><html><head><title>Not found</title></head>"
                              b"<body><p>not found</p></body></html>\n")
        if pid.startswith("calendar:"):
            m = int(pid.split(":")[1])
            cal = Page("calendar", "calendar", "A", "/calendar")
            links = [f"?month={m + 1}"] + ([f"/calendar?month={m - 1}"] if m > 1 else []) + \
                ["/index.html"]
            return self._send(200, cal.ctype, site.body(cal, site.calendar_title(m), links))
        p = site.pages[pid]
        if p.kind == "redirect":
            return self._send(p.status, "text/html; charset=utf-8",
                              b"<html><body>Moved</body></html>\n", [("Location", p.location)])
        if p.kind == "text":
            return self._send(200, p.ctype, p.body)
        return self._send(200, p.ctype, site.body(p))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--expected", action="store_true", help="print the expected set and exit")
    a = ap.parse_args(argv)
    site = QuirksSite(depth=a.depth).start()
    if a.expected:
        for url, title in sorted(site.expected().items()):
            print(json.dumps({"url": url, "title": title}, ensure_ascii=False))
        site.stop()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"quirks_site: serving {site.start_url()} (second origin {site.bases['B']})",
          flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
