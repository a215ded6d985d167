"""Unit tests of the Python worker SDK (clients/python/spiderhub): no broker, no network.

    python3 tests/python/test_sdk_units.py [-v]

Standard library only; the cases about the Scrapy bridge's download handler run when
Scrapy is importable (Debian's python3-scrapy in /usr/bin/python3) and are skipped
otherwise.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import threading
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

from spiderhub import encoding as se  # noqa: E402
from spiderhub import links as sl  # noqa: E402
from spiderhub import worker as sw  # noqa: E402
from spiderhub.samples import LinkSpider  # noqa: E402

HAS_SCRAPY = importlib.util.find_spec("scrapy") is not None

RUN = {"jobId": 1, "identity": "run-1", "arguments": '{"startUrl": "http://h/", "maxDepth": 5}'}


def result(**kw):
    r = {"resultId": 7, "requestHash": "abc", "url": "http://h/", "statusCode": 200,
         "responseTime": 3, "headers": {}, "content": "", "error": "", "depth": 0}
    r.update(kw)
    return r


class BinaryExtensions(unittest.TestCase):
    TABLE = [
        # url, expected
        ("http://h/a/file.pdf", True),
        ("http://h/a/file.PDF", True),
        ("http://h/IMG_0001.JpG", True),
        ("http://h/file.pdf?download=1", True),
        ("http://h/file.zip#part", True),
        ("http://h/dist/pkg-1.2.3.tar.gz", True),
        ("http://h/video.mp4?t=10&x=.html", True),
        ("https://h/fonts/a.woff2", True),
        ("http://h/setup.exe", True),
        ("http://h/slides.pptx", True),
        ("http://h/song.mp3", True),
        ("http://h/report%2Epdf", True),              # an encoded dot
        ("http://h/doc.pdf;jsessionid=1A2B", True),   # path parameters are not the extension
        ("/relative/img.png", True),                  # a relative link
        ("http://h/page.html", False),
        ("http://h/", False),
        ("http://h", False),
        ("http://h/about", False),                    # no extension
        ("http://h/v1.2/page", False),                # a dotted directory
        ("http://h/files.zip/", False),               # a dotted directory, trailing slash
        ("http://h/archive.tar.gz/index.html", False),
        ("http://h/download.php?file=a.zip", False),  # the query is not the path
        ("http://h/page?x=photo.jpg", False),
        ("http://h/page#image.png", False),
        ("http://h/.png", False),                     # a dot file, not an extension
        ("http://h/style.css", False),                # text: not a binary extension
        ("http://h/feed.rss", False),
        ("http://h/name.", False),
        ("http://example.zip/page", False),           # the host is not the path
    ]

    def test_table(self):
        self.assertGreaterEqual(len(self.TABLE), 15)
        for url, expected in self.TABLE:
            with self.subTest(url=url):
                self.assertIs(sw.has_binary_extension(url), expected)

    def test_constant(self):
        self.assertIsInstance(sw.BINARY_EXTENSIONS, frozenset)
        for ext in sw.BINARY_EXTENSIONS:
            self.assertEqual(ext, ext.lower().strip("."), ext)
        for kind in ("zip", "7z", "gz", "png", "jpg", "svg", "mp3", "ogg", "mp4", "webm",
                     "doc", "xlsx", "odt", "pdf", "exe", "apk", "iso", "dmg", "woff", "ttf"):
            self.assertIn(kind, sw.BINARY_EXTENSIONS)

    @unittest.skipUnless(HAS_SCRAPY, "Scrapy not importable here")
    def test_covers_scrapy_ignored_extensions(self):
        from scrapy.linkextractors import IGNORED_EXTENSIONS
        for ext in IGNORED_EXTENSIONS:
            if ext in ("css", "rss"):  # text, left out on purpose
                continue
            with self.subTest(ext=ext):
                self.assertTrue(sw.has_binary_extension(f"http://h/f.{ext}"))

    def test_exported(self):
        import spiderhub
        self.assertIs(spiderhub.has_binary_extension, sw.has_binary_extension)
        self.assertIs(spiderhub.ERROR_KINDS, sw.ERROR_KINDS)


class ErrorKinds(unittest.TestCase):
    def test_closed_list(self):
        self.assertIsInstance(sw.ERROR_KINDS, frozenset)
        self.assertEqual(sw.ERROR_KINDS, {
            "dns", "connect", "tls", "timeout", "too_large", "skipped_type", "http_4xx",
            "http_5xx", "robots", "redirect_loop", "blocked_address", "network"})


class ResponseFields(unittest.TestCase):
    def test_older_broker_defaults(self):
        r = sw.Response.from_json(RUN, result(content="hello"))
        self.assertEqual(r.error_kind, "")
        self.assertEqual(r.size, 5)
        self.assertEqual(r.body, b"hello")

    def test_older_broker_error(self):
        r = sw.Response.from_json(RUN, result(statusCode=0, error="connection refused"))
        self.assertEqual((r.error, r.error_kind, r.size), ("connection refused", "", 0))

    def test_base64_body_size(self):
        raw = bytes(range(256)) * 3
        r = sw.Response.from_json(RUN, result(content=base64.b64encode(raw).decode(),
                                              contentEncoding="base64"))
        self.assertEqual((r.body, r.size), (raw, 768))

    def test_new_fields(self):
        r = sw.Response.from_json(RUN, result(content="", error="body over 10485760 bytes",
                                              errorKind="too_large", size=52428800))
        self.assertEqual((r.error_kind, r.size, r.body), ("too_large", 52428800, b""))
        r = sw.Response.from_json(RUN, result(statusCode=0, error="no such host",
                                              errorKind="dns", size=0))
        self.assertEqual((r.error_kind, r.size), ("dns", 0))
        self.assertIn(r.error_kind, sw.ERROR_KINDS)

    def test_null_fields(self):
        r = sw.Response.from_json(RUN, result(content="abc", errorKind=None, size=None))
        self.assertEqual((r.error_kind, r.size), ("", 3))

    def test_older_node_defaults(self):
        r = sw.Response.from_json(RUN, result(content="<a href='x'>é</a>"))
        self.assertEqual((r.final_url, r.redirects, r.encoding, r.encoding_source),
                         ("http://h/", [], "", ""))
        self.assertEqual((r.document_encoding, r.base_url, r.text),
                         ("UTF-8", "http://h/", "<a href='x'>é</a>"))
        r = sw.Response.from_json(RUN, result(content="x", finalUrl=None, redirects=None,
                                              encoding=None, encodingSource=None))
        self.assertEqual((r.final_url, r.redirects, r.encoding), ("http://h/", [], ""))

    def test_redirect_fields(self):
        r = sw.Response.from_json(RUN, result(url="http://h/a", finalUrl="https://h/c",
                                              redirects=[{"status": 301, "url": "https://h/a"},
                                                         {"status": 302, "url": "https://h/c"}]))
        self.assertEqual(r.final_url, "https://h/c")
        self.assertEqual(r.redirects, [(301, "https://h/a"), (302, "https://h/c")])
        self.assertEqual((r.redirects[0].status, r.redirects[1].url), (301, "https://h/c"))
        self.assertIsInstance(r.redirects[0], sw.Redirect)
        # Malformed hops are left out rather than costing the page.
        r = sw.Response.from_json(RUN, result(redirects=[{"status": "x", "url": "u"}, "junk",
                                                         {"status": 307}, {"url": "http://h/b"}]))
        self.assertEqual(r.redirects, [(0, "http://h/b")])
        r = sw.Response.from_json(RUN, result(redirects="junk"))
        self.assertEqual(r.redirects, [])

    def test_constructed_directly(self):
        r = sw.Response(RUN, "http://h/", 200, {}, b"x", 0, "h", 1,
                        redirects=[(301, "http://h/b")])
        self.assertEqual((r.final_url, r.redirects),
                         ("http://h/", [sw.Redirect(301, "http://h/b")]))

        r = sw.Response(RUN, "http://h/", 200, {}, b"12345", 0, "h", 1)
        self.assertEqual((r.error, r.error_kind, r.size), ("", "", 5))
        r = sw.Response(RUN, "http://h/", 200, {}, b"", 0, "h", 1, error_kind="too_large",
                        size=99)
        self.assertEqual(r.size, 99)


def b64(raw: bytes) -> dict:
    return {"content": base64.b64encode(raw).decode(), "contentEncoding": "base64"}


class EncodingNames(unittest.TestCase):
    """WHATWG name (as the node reports it) -> Python codec, decoding real bytes."""
    TABLE = [
        # name, python codec, body, text
        ("UTF-8", "utf-8", "中文 é".encode("utf-8"), "中文 é"),
        ("UTF-8", "utf-8", b"\xef\xbb\xbfbom", "bom"),                   # BOM dropped
        ("GBK", "gb18030", "中文首页".encode("gbk"), "中文首页"),
        ("GBK", "gb18030", "𠀀".encode("gb18030"), "𠀀"),        # four-byte form: gb18030 decoder
        ("gb18030", "gb18030", "中文€".encode("gb18030"), "中文€"),
        ("Shift_JIS", "cp932", "日本語".encode("cp932"), "日本語"),
        ("Shift_JIS", "cp932", "①髙".encode("cp932"), "①髙"),    # Windows-31J extensions
        ("EUC-KR", "cp949", "한국어".encode("cp949"), "한국어"),
        ("EUC-KR", "cp949", "똠방각하".encode("cp949"), "똠방각하"),  # UHC, not in plain EUC-KR
        ("Big5", "big5hkscs", "中文".encode("big5"), "中文"),
        ("Big5", "big5hkscs", "㐵".encode("big5hkscs"), "㐵"),      # HKSCS
        ("EUC-JP", "euc_jp", "日本語".encode("euc_jp"), "日本語"),
        ("ISO-2022-JP", "iso2022_jp", "日本語".encode("iso2022_jp"), "日本語"),
        ("windows-1251", "cp1251", "Русский".encode("cp1251"), "Русский"),
        ("windows-1252", "cp1252", "café €".encode("cp1252"), "café €"),
        ("windows-1250", "cp1250", "Łódź".encode("cp1250"), "Łódź"),
        ("windows-1253", "cp1253", "Ελληνικά".encode("cp1253"), "Ελληνικά"),
        ("windows-1256", "cp1256", "عربي".encode("cp1256"), "عربي"),
        ("windows-874", "cp874", "ภาษาไทย".encode("cp874"), "ภาษาไทย"),
        ("ISO-8859-2", "iso8859_2", "Łódź".encode("iso8859_2"), "Łódź"),
        ("ISO-8859-15", "iso8859_15", "€uro".encode("iso8859_15"), "€uro"),
        ("ISO-8859-8-I", "iso8859_8", "עברית".encode("iso8859_8"), "עברית"),
        ("KOI8-R", "koi8_r", "Русский".encode("koi8_r"), "Русский"),
        ("KOI8-U", "koi8_u", "Україна".encode("koi8_u"), "Україна"),
        ("x-mac-cyrillic", "mac_cyrillic", "Русский".encode("mac_cyrillic"), "Русский"),
        ("macintosh", "mac_roman", "café".encode("mac_roman"), "café"),
        ("IBM866", "cp866", "Русский".encode("cp866"), "Русский"),
        ("UTF-16LE", "utf-16-le", b"\xff\xfe" + "中文".encode("utf-16-le"), "中文"),
        ("UTF-16LE", "utf-16-le", "中文".encode("utf-16-le"), "中文"),
        ("UTF-16BE", "utf-16-be", b"\xfe\xff" + "中文".encode("utf-16-be"), "中文"),
    ]

    def test_table(self):
        self.assertGreaterEqual(len(self.TABLE), 10)
        for name, codec, body, text in self.TABLE:
            with self.subTest(name=name, body=body):
                self.assertEqual(se.python_codec(name), codec)
                self.assertEqual(se.decode(body, name), text)
                r = sw.Response.from_json(RUN, result(**b64(body), encoding=name,
                                                      encodingSource="http"))
                self.assertEqual((r.encoding, r.encoding_source), (name, "http"))
                self.assertEqual(r.text, text)

    def test_standard_quirks(self):
        table = [
            # name, body, text: where the standard's decoder differs from the bare codec
            ("windows-1252", b"\x80\x81\x8d\x9d", "€\x81\x8d\x9d"),   # holes are C1 controls
            ("windows-1251", b"\x98", "\x98"),
            ("windows-874", b"\x81\xdb", "\x81\ufffd"),
            ("windows-1255", b"\xca", "\u05ba"),
            ("KOI8-U", b"\xae\xbe", "ўЎ"),                            # KOI8-RU, as the index
            ("GBK", b"a\x80b", "a€b"),                                  # a lone 0x80
            ("gb18030", b"\x80", "€"),
            ("Shift_JIS", b"\xa0\xfdA", "\ufffd\ufffdA"),
            ("replacement", b"ISO-2022-KR bytes", "\ufffd"),
            ("replacement", b"", ""),
            ("x-user-defined", b"a\x80\xff", "a\uf780\uf7ff"),
            ("UTF-8", b"a\xffb", "a\ufffdb"),
            ("windows-1252", b"\xef\xbb\xbf\xc3\xa9", "é"),          # a BOM wins over the name
            ("latin1", b"\x80", "€"),                                  # a label, not a name
            ("no-such-encoding", "é".encode(), "é"),                   # unknown: UTF-8
        ]
        for name, body, text in table:
            with self.subTest(name=name, body=body):
                self.assertEqual(se.decode(body, name), text)

    def test_labels(self):
        for label, name in [("latin1", "windows-1252"), ("ISO-8859-1", "windows-1252"),
                            ("us-ascii", "windows-1252"), (" GB2312\n", "GBK"),
                            ("x-sjis", "Shift_JIS"), ("ks_c_5601-1987", "EUC-KR"),
                            ("utf8", "UTF-8"), ("utf-16", "UTF-16LE"), ("iso-8859-9",
                            "windows-1254"), ("tis-620", "windows-874"),
                            ("hz-gb-2312", "replacement"), ("big5-hkscs", "Big5"),
                            ("nonsense", None), ("", None)]:
            with self.subTest(label=label):
                self.assertEqual(se.encoding_for_label(label), name)
        self.assertEqual(len(se.LABELS), 228)  # the standard's table
        for name in se.NAMES:
            self.assertEqual(se.encoding_for_label(name), name)
            if name not in ("replacement", "x-user-defined"):
                self.assertIn(name, se.PYTHON_CODECS)
        self.assertIsNone(se.python_codec("replacement"))

    def test_encode_for_urls(self):
        self.assertEqual(se.encode("中文😀€", "GBK"), b"\xd6\xd0\xce\xc4&#128512;\x80")
        self.assertEqual(se.encode("€", "gb18030"), b"\xa2\xe3")
        self.assertEqual(se.encode("Жx中", "windows-1251"), b"\xc6x&#20013;")
        self.assertEqual(se.encode("é", "UTF-16LE"), "é".encode())   # output encoding UTF-8
        self.assertEqual(se.encode("¥", "Shift_JIS"), b"\\")


class FallbackSniff(unittest.TestCase):
    """Results without ``encoding`` (older nodes): BOM, Content-Type charset, <meta>, UTF-8."""
    META_GBK = b'<html><head><meta charset="gbk"><title>t</title>'
    TABLE = [
        # body, content type, (name, source)
        (b"\xef\xbb\xbf<p>x", "text/html; charset=gbk", ("UTF-8", "bom")),
        (b"\xff\xfe<\x00", "text/html; charset=utf-8", ("UTF-16LE", "bom")),
        (b"\xfe\xff\x00<", "", ("UTF-16BE", "bom")),
        (META_GBK, "text/html; charset=Shift_JIS", ("Shift_JIS", "http")),
        (META_GBK, 'text/html; charset="windows-1251"', ("windows-1251", "http")),
        (META_GBK, "text/html;charset=latin1", ("windows-1252", "http")),
        (META_GBK, "text/html; charset=bogus", ("GBK", "meta")),      # unknown label: next step
        (META_GBK, "text/html", ("GBK", "meta")),
        (b'<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">', "",
         ("EUC-KR", "meta")),
        (b"<META CONTENT='text/html; charset=Shift_JIS' HTTP-EQUIV=content-type>", "",
         ("Shift_JIS", "meta")),
        (b'<meta content="text/html; charset=euc-kr">', "", ("UTF-8", "default")),  # no pragma
        (b'<!-- <meta charset="gbk"> --><p>', "", ("UTF-8", "default")),  # in a comment
        (b'<meta charset="utf-16le">', "", ("UTF-8", "meta")),            # UTF-16 in meta: UTF-8
        (b'<meta charset="x-user-defined">', "", ("windows-1252", "meta")),
        (b"<p>" + b"x" * 1100 + b'<meta charset="gbk">', "", ("UTF-8", "default")),  # past 1024
        (b"<p>plain</p>", "text/html", ("UTF-8", "default")),
        ("<p>中文</p>".encode("gbk"), "", ("UTF-8", "default")),          # no label at all
    ]

    def test_table(self):
        self.assertGreaterEqual(len(self.TABLE), 10)
        for body, ct, expected in self.TABLE:
            with self.subTest(body=body[:40], ct=ct):
                self.assertEqual(se.sniff(body, ct), expected)

    def test_charset_of_content_type(self):
        for ct, charset in [("text/html; charset=gbk", "gbk"), ('text/html;charset="a\\"b"', 'a"b'),
                            ("text/html; q=1; CHARSET = x ;", ""), ("text/html; Charset=x ;", "x"),
                            ("text/html", ""), ("", ""), (None, "")]:
            with self.subTest(ct=ct):
                self.assertEqual(se.charset_of_content_type(ct), charset)

    def test_response_text_without_node_encoding(self):
        page = '<html><head><meta charset="gbk"><title>中文首页</title></head></html>'
        r = sw.Response.from_json(RUN, result(**b64(page.encode("gbk"))))
        self.assertEqual((r.encoding, r.encoding_source, r.document_encoding), ("", "", "GBK"))
        self.assertEqual(r.text, page)
        ct = {"content-type": "text/html; charset=cp1251"}
        r = sw.Response.from_json(RUN, result(**b64("Привет".encode("cp1251")), headers=ct))
        self.assertEqual(r.text, "Привет")
        r = sw.Response.from_json(RUN, result(content="héllo"))        # UTF-8, as before
        self.assertEqual((r.text, r.document_encoding), ("héllo", "UTF-8"))
        r = sw.Response.from_json(RUN, result(**b64(b"\xff\xfeh\x00i\x00")))
        self.assertEqual(r.text, "hi")

    def test_node_encoding_wins(self):
        # The node decided windows-1251 (its detector, say): the page's <meta> does not count.
        body = '<meta charset="utf-8"><p>Русский'.encode("cp1251")
        r = sw.Response.from_json(RUN, result(**b64(body), encoding="windows-1251",
                                              encodingSource="detector"))
        self.assertEqual(r.text, '<meta charset="utf-8"><p>Русский')
        r = sw.Response.from_json(RUN, result(**b64(body), encoding="no-such-name"))
        self.assertEqual(r.document_encoding, "UTF-8")               # unknown: sniffed instead


class ResolveLink(unittest.TestCase):
    TABLE = [
        # base, href, encoding, expected
        ("http://h/blog/", "post.html", "UTF-8", "http://h/blog/post.html"),
        ("http://h/blog", "post.html", "UTF-8", "http://h/post.html"),
        ("http://h/a/b/c", "../x", "UTF-8", "http://h/a/x"),
        ("http://h/a/b/c", "../../../../x", "UTF-8", "http://h/x"),   # not above the root
        ("http://h/a/b/c", "./d/../e", "UTF-8", "http://h/a/b/e"),
        ("http://h/a/b/c", "%2e%2E/x", "UTF-8", "http://h/a/x"),      # %2e dot segments
        ("http://h/gbk/", "?q=中文", "GBK", "http://h/gbk/?q=%D6%D0%CE%C4"),
        ("http://h/", "/gbk/搜索?q=中文", "GBK", "http://h/gbk/%E6%90%9C%E7%B4%A2?q=%D6%D0%CE%C4"),
        ("http://h/", "/gbk/搜索?q=中文", "UTF-8",
         "http://h/gbk/%E6%90%9C%E7%B4%A2?q=%E4%B8%AD%E6%96%87"),
        ("http://h/", "?q=中文😀", "GBK", "http://h/?q=%D6%D0%CE%C4%26%23128512%3B"),
        ("http://h/", "?q=€", "GBK", "http://h/?q=%80"),
        # 本 is 0x96 0x7B in Shift_JIS: "{" is not in the query percent-encode set.
        ("http://h/", "?q=日本語", "Shift_JIS", "http://h/?q=%93%FA%96{%8C%EA"),
        ("http://h/", "?q=Ж&x=中", "windows-1251", "http://h/?q=%C6&x=%26%2320013%3B"),
        ("http://h/", "?q=é", "windows-1252", "http://h/?q=%E9"),
        ("http://h/", "?q=é", "UTF-16LE", "http://h/?q=%C3%A9"),       # output encoding UTF-8
        ("http://h/", "?q=a b'\"<>", "UTF-8", "http://h/?q=a%20b%27%22%3C%3E"),
        ("http://h/", "?q=%D6%D0&r=%zz+1", "GBK", "http://h/?q=%D6%D0&r=%zz+1"),  # kept
        ("http://h/", "/a b/\"{}`", "UTF-8", "http://h/a%20b/%22%7B%7D%60"),
        ("http://h/a?x=1#f", "#top", "UTF-8", "http://h/a?x=1"),        # fragments dropped
        ("http://h/a", "b#frag", "UTF-8", "http://h/b"),
        ("http://h/a", "", "UTF-8", "http://h/a"),
        ("https://h/a", "//other.example/x?y", "UTF-8", "https://other.example/x?y"),
        ("http://h/a", "HTTPS://Example.COM:443/P", "UTF-8", "https://example.com/P"),
        ("http://h/a", "http://h:8080/p", "UTF-8", "http://h:8080/p"),
        ("http://h/a/b", "..\\c\\d", "UTF-8", "http://h/c/d"),            # \ is /
        ("http://h/a", "  /b\tc\n ", "UTF-8", "http://h/bc"),
        ("http://h/", "http://[::1]:8080/x", "UTF-8", "http://[::1]:8080/x"),
        ("http://h/", "http://例え.jp/", "UTF-8", "http://xn--r8jz45g.jp/"),
        ("http://u:p@h/", "x", "UTF-8", "http://u:p@h/x"),
        ("http://h/", "mailto:a@b.c", "UTF-8", None),
        ("http://h/", "javascript:void(0)", "UTF-8", None),
        ("http://h/", "tel:+1", "UTF-8", None),
        ("http://h/", "data:text/html,x", "UTF-8", None),
        ("http://h/", "ftp://h/x", "UTF-8", None),
        ("http://h/", "http://h:99999/", "UTF-8", None),
        ("http://h/", "http://a b/", "UTF-8", None),
    ]

    def test_table(self):
        self.assertGreaterEqual(len(self.TABLE), 10)
        for base, href, enc, expected in self.TABLE:
            with self.subTest(base=base, href=href, enc=enc):
                self.assertEqual(sl.resolve_link(base, href, enc), expected)

    def test_idempotent(self):
        for base, href, enc, expected in self.TABLE:
            if expected:
                with self.subTest(url=expected):
                    self.assertEqual(sl.resolve_link("http://x/", expected, enc), expected)

    def test_exported(self):
        import spiderhub
        self.assertIs(spiderhub.resolve_link, sl.resolve_link)
        self.assertIs(spiderhub.meta_refresh_url, sl.meta_refresh_url)
        self.assertIs(sw.resolve_link, sl.resolve_link)


def page(html: str, url: str = "http://h/blog", final: str = "http://h/blog/",
         enc: str = "UTF-8", **kw) -> sw.Response:
    """A response for `html` as the node sends it: redirected url -> final, encoded in `enc`."""
    codec = se.python_codec(enc)
    extra = {"finalUrl": final, "redirects": [{"status": 301, "url": final}]} \
        if final and final != url else {}
    return sw.Response.from_json(RUN, result(url=url, **b64(html.encode(codec)),
                                             encoding=enc, encodingSource="http",
                                             **extra, **kw))


class CanonicalUrl(unittest.TestCase):
    """links.canonical_url against every row of the broker's own table
    (tests/core/test_canonical_url.cpp, docs/urls.md), and idempotent."""
    CPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core",
                       "test_canonical_url.cpp")
    OPTIONS = {"plain": {}, "sorted": {"sort_query": True},
               "no_sessions": {"strip_session_ids": True},
               "no_trackers": {"strip_tracking": True},
               "all_options": {"sort_query": True, "strip_session_ids": True,
                               "strip_tracking": True}}

    def test_table_of_the_broker(self):
        import ast
        import re
        with open(self.CPP, encoding="utf-8") as f:
            src = f.read()
        start = src.index("canonical_cases[] = {")
        rows = re.findall(r'\{("(?:[^"\\]|\\.)*"),\s*("(?:[^"\\]|\\.)*"),\s*(\w+)\}',
                          src[start:src.index("};", start)])
        self.assertGreaterEqual(len(rows), 70)
        for raw, want, opts in rows:
            url, want = ast.literal_eval(raw), ast.literal_eval(want)
            with self.subTest(url=url, options=opts):
                got = sl.canonical_url(url, **self.OPTIONS[opts])
                self.assertEqual(got, want)
                self.assertEqual(sl.canonical_url(got, **self.OPTIONS[opts]), got)


class ResponseLinks(unittest.TestCase):
    def test_urljoin_against_final_url(self):
        r = page("<a href='post.html'>")
        self.assertEqual((r.url, r.final_url, r.base_url), ("http://h/blog", "http://h/blog/",
                                                             "http://h/blog/"))
        self.assertEqual(r.urljoin("post.html"), "http://h/blog/post.html")
        self.assertEqual(r.urljoin("mailto:x@y"), None)
        req = r.follow("post.html#c")
        self.assertEqual((req.url, req.depth, req.headers), ("http://h/blog/post.html", 1,
                                                             {"Referer": "http://h/blog/"}))
        self.assertEqual(req.referer, "")

    def test_base_href(self):
        table = [
            # html, base_url
            ("<head><base href='http://cdn.example/x/'></head>", "http://cdn.example/x/"),
            ("<base href='/root/'>", "http://h/root/"),                 # relative to final URL
            ("<BASE HREF=sub/>", "http://h/blog/sub/"),
            ("<base target=_top><base href='/second/'>", "http://h/second/"),  # first with href
            ("<!-- <base href='/no/'> --><script>'<base href=/no/>'</script>", "http://h/blog/"),
            ("<base href='javascript:x'>", "http://h/blog/"),          # unusable: ignored
            ("<p>no base</p>", "http://h/blog/"),
        ]
        for html, base in table:
            with self.subTest(html=html):
                r = page(html)
                self.assertEqual(r.base_url, base)
                self.assertEqual(r.urljoin("p?a=1"), base + "p?a=1")

    def test_query_in_page_encoding(self):
        r = page("<a href='?q=中文'>中文</a>", enc="GBK")
        self.assertEqual(r.urljoin("?q=中文"), "http://h/blog/?q=%D6%D0%CE%C4")
        self.assertEqual(r.follow("/gbk/搜索").url, "http://h/gbk/%E6%90%9C%E7%B4%A2")
        r = page("<a>", final="", enc="Shift_JIS")
        self.assertEqual(r.urljoin("?q=日本語"), "http://h/blog?q=%93%FA%96{%8C%EA")

    def test_follow_non_http_as_before(self):
        r = page("<a>")
        self.assertEqual(r.follow("mailto:a@b").url, "mailto:a@b")


class MetaRefresh(unittest.TestCase):
    PARSE = [
        # content, (delay, url) or None
        ("5; url=/next", (5, "/next")),
        ("5;URL='/next'", (5, "/next")),
        ('0; Url = "/q" trailing', (0, "/q")),
        ("0;url='/a b'", (0, "/a b")),
        ("  10 ; url=/c", (10, "/c")),
        ("1.5, /b", (1, "/b")),                 # a comma, no "url=", fraction ignored
        (".5;url=/d", (0, "/d")),
        ("3", (3, None)),                       # no URL: the page reloads itself
        ("7;", (7, None)),
        ("0; url=''", (0, "")),
        ("0; ur=/g", (0, "ur=/g")),             # not "url=": the whole rest is the URL
        ("soon; url=/x", None),
        ("", None),
        ("5x; url=/y", None),
    ]

    def test_parse(self):
        self.assertGreaterEqual(len(self.PARSE), 10)
        for content, expected in self.PARSE:
            with self.subTest(content=content):
                self.assertEqual(sl.parse_meta_refresh(content), expected)

    def test_meta_refresh_url(self):
        table = [
            # html, expected target
            ('<meta http-equiv="refresh" content="0; url=/moved">', "http://h/moved"),
            ("<META HTTP-EQUIV='Refresh' CONTENT='5;URL=new.html'>", "http://h/blog/new.html"),
            ('<meta http-equiv=refresh content="0;url=http://other.example/">',
             "http://other.example/"),
            ('<meta http-equiv="refresh" content="99.9; url=/slow">', "http://h/slow"),
            ('<meta http-equiv="refresh" content="100; url=/slower">', None),  # not under 100
            ('<meta http-equiv="refresh" content="1800; url=/logout">', None),
            ('<meta http-equiv="refresh" content="30">', None),             # no URL
            ('<meta http-equiv="refresh" content="0; url=/blog/">', None),    # the page itself
            ('<meta http-equiv="refresh" content="0; url=mailto:a@b">', None),
            ('<meta name="refresh" content="0; url=/x">', None),             # not http-equiv
            ('<!-- <meta http-equiv="refresh" content="0; url=/c"> -->', None),
            ('<noscript><meta http-equiv="refresh" content="0;url=/ns"></noscript>',
             "http://h/ns"),                                  # markup for clients without JS
            ('<script>"<meta http-equiv=refresh content=0;url=/js>"</script>', None),
            ('<title><meta http-equiv="refresh" content="0; url=/t"></title>', None),
            ('<meta http-equiv="refresh" content="bad"><meta http-equiv="refresh" '
             'content="2; url=/second">', "http://h/second"),               # first that parses
            ('<base href="/b/"><meta http-equiv="refresh" content="0; url=x">', "http://h/b/x"),
            ('<meta http-equiv="refresh" content="0; url=/p?a=1&amp;b=2#f">',
             "http://h/p?a=1&b=2"),
        ]
        self.assertGreaterEqual(len(table), 10)
        for html, target in table:
            with self.subTest(html=html):
                self.assertEqual(sl.meta_refresh_url(page(html)), target)
        r = page('<meta http-equiv="refresh" content="0; url=?q=中文">', enc="GBK")
        self.assertEqual(sl.meta_refresh_url(r), "http://h/blog/?q=%D6%D0%CE%C4")
        r = page('<meta http-equiv="refresh" content="20; url=/x">')
        self.assertIsNone(sl.meta_refresh_url(r, max_delay=10))
        self.assertEqual(sl.meta_refresh_url(r, max_delay=21), "http://h/x")
        self.assertEqual(sl.META_REFRESH_MAX_DELAY, 100)


    @unittest.skipUnless(HAS_SCRAPY, "Scrapy not importable here")
    def test_same_refreshes_as_scrapy(self):
        # What Scrapy 2.8's MetaRefreshMiddleware follows on the bridge (interval <
        # METAREFRESH_MAXDELAY, no ignored tags), on the refreshes both read.
        from scrapy.http import HtmlResponse
        from scrapy.settings import default_settings
        from scrapy.utils.response import get_meta_refresh
        maxdelay = default_settings.METAREFRESH_MAXDELAY
        for html in ['<meta http-equiv="refresh" content="0; url=/a">',
                     "<META HTTP-EQUIV='Refresh' CONTENT='5;URL=b.html'>",
                     '<meta http-equiv="refresh" content="99; url=/c">',
                     '<meta http-equiv="refresh" content="100; url=/d">',
                     '<meta http-equiv="refresh" content="3600; url=/e">',
                     '<noscript><meta http-equiv="refresh" content="0;url=/f"></noscript>',
                     '<p>no refresh</p>']:
            # (Not compared: with a <base href>, Scrapy resolves against the page URL;
            # meta_refresh_url against the base, as HTML and browsers do.)
            with self.subTest(html=html):
                r = page(html)
                sr = HtmlResponse(r.final_url, body=html.encode(), encoding="utf-8")
                interval, url = get_meta_refresh(sr, ignore_tags=default_settings.
                                                 METAREFRESH_IGNORE_TAGS)
                expected = url if url and interval < maxdelay else None
                self.assertEqual(sl.meta_refresh_url(r), expected)


class _FakeHub:
    closed = False

    def __init__(self):
        self.sent = []

    def send(self, target, *args):
        self.sent.append((target, args))
        return None


class PollArguments(unittest.TestCase):
    def worker(self, **kw):
        return sw.Worker("http://127.0.0.1:1/", "t", "cls", sw.Spider(), log=lambda m: None, **kw)

    def test_defaults(self):
        w = self.worker()
        self.assertEqual(w.poll_max_bytes, 4 * 1024 * 1024)
        w.runs = {"a": sw._RunState({"identity": "a"})}
        self.assertEqual(w._poll_args("a"), ("a", 500, 1000, 4194304))

    def test_not_long_polling_sends_wait_0(self):
        w = self.worker(poll_max=20, poll_max_bytes=1000)
        self.assertEqual(w._poll_args("a"), ("a", 20, 0, 1000))    # no run yet
        w.runs = {"a": sw._RunState({"identity": "a"}), "b": sw._RunState({"identity": "b"})}
        self.assertEqual(w._poll_args("a"), ("a", 20, 0, 1000))    # two runs
        w = self.worker(poll_wait=0, poll_max_bytes=1)
        w.runs = {"a": sw._RunState({"identity": "a"})}
        self.assertEqual(w._poll_args("a"), ("a", 500, 0, 1))      # --poll-wait 0
        w = self.worker(poll_wait=2.5)
        w.runs = {"a": sw._RunState({"identity": "a"})}
        self.assertEqual(w._poll_args("a")[2], 2500)

    def test_bad_values_refused(self):
        for bad in (0, -1, True, 1.5, "4096", None):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    self.worker(poll_max_bytes=bad)

    def test_step_sends_max_bytes_in_poll_and_prefetch(self):
        w = self.worker(poll_max_bytes=12345)
        rs = sw._RunState({"identity": "r", "arguments": ""}, phase="polling")
        w.runs = {"r": rs}
        w.hub = _FakeHub()
        calls = []

        def call(target, *args):
            calls.append((target, args))
            return [result(resultId=1)] if target == "Poll" else True
        w._call = call
        self.assertTrue(w._step(rs))
        self.assertEqual(calls[0], ("Poll", ("r", 500, 1000, 12345)))
        self.assertEqual(w.hub.sent, [("Poll", ("r", 500, 1000, 12345))])  # the prefetch
        self.assertEqual(calls[-1], ("Ack", ("r", [1])))


class CommandLine(unittest.TestCase):
    def run_main(self, *extra):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), mock.patch.object(sw, "Worker") as W:
            W.return_value.stats = {}
            try:
                code = sw.main(["--class", "c", "--spider", "spiderhub.samples:LinkSpider",
                                *extra])
            except SystemExit as e:
                code = e.code
        return code, err.getvalue(), W

    def test_poll_max_bytes_below_1_refused(self):
        for bad in ("0", "-5"):
            with self.subTest(bad=bad):
                code, err, W = self.run_main("--poll-max-bytes", bad)
                self.assertEqual(code, 2)
                self.assertIn("--poll-max-bytes must be an integer >= 1", err)
                W.assert_not_called()

    def test_poll_max_bytes_not_an_integer(self):
        code, err, W = self.run_main("--poll-max-bytes", "4M")
        self.assertEqual(code, 2)
        self.assertIn("--poll-max-bytes", err)

    def test_poll_max_bytes_passed_to_worker(self):
        code, _, W = self.run_main("--poll-max-bytes", "65536")
        self.assertEqual(code, 0)
        self.assertEqual(W.call_args.kwargs["poll_max_bytes"], 65536)
        code, _, W = self.run_main()
        self.assertEqual(W.call_args.kwargs["poll_max_bytes"], 4 * 1024 * 1024)


class SampleSpider(unittest.TestCase):
    def parse(self, **kw):
        spider = LinkSpider()
        list(spider.start_requests(RUN))
        return list(spider.parse(sw.Response.from_json(RUN, result(**kw))))

    def test_failed_page_item_has_error_kind(self):
        out = self.parse(statusCode=0, error="timed out after 30s", errorKind="timeout")
        self.assertEqual(out, [{"url": "http://h/", "depth": 0, "status": 0,
                                "error": "timed out after 30s", "errorKind": "timeout"}])
        out = self.parse(statusCode=404, error="HTTP 404", errorKind="http_4xx",
                         content="<a href='/x'>x</a>")
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]["errorKind"], "http_4xx")
        out = self.parse(statusCode=200, error="body over the limit", errorKind="too_large",
                         size=1 << 30)
        self.assertEqual([i["errorKind"] for i in out], ["too_large"])

    def test_failed_page_from_older_broker(self):
        out = self.parse(statusCode=500, content="oops")
        self.assertEqual(out, [{"url": "http://h/", "depth": 0, "status": 500, "error": "",
                                "errorKind": ""}])

    def test_binary_links_not_followed(self):
        html = ("<title>T</title>"
                "<a href='/a.html'>a</a><a href='/b'>b</a><a href='/v1.2/c'>c</a>"
                "<a href='/doc.PDF'>pdf</a><a href='/pic.jpg?w=100'>jpg</a>"
                "<a href='/f.zip'>zip</a><a href='/get.php?f=x.zip'>php</a>"
                "<a href='http://other/x.html'>other host</a>")
        out = self.parse(content=html)
        items = [o for o in out if isinstance(o, dict)]
        self.assertEqual(items, [{"url": "http://h/", "title": "T", "depth": 0}])
        urls = [o.url for o in out if isinstance(o, sw.Request)]
        self.assertEqual(urls, ["http://h/a.html", "http://h/b", "http://h/v1.2/c",
                                "http://h/get.php?f=x.zip"])


class SampleSpiderRedirectsAndEncodings(unittest.TestCase):
    def parse(self, response, start="http://h/"):
        spider = LinkSpider()
        run = dict(RUN, arguments='{"startUrl": "%s", "maxDepth": 5}' % start)
        list(spider.start_requests(run))
        out = list(spider.parse(response))
        return ([o for o in out if isinstance(o, dict)],
                [o.url for o in out if isinstance(o, sw.Request)])

    def test_redirected_page(self):
        items, urls = self.parse(page("<title> Blog\n home </title><a href='post.html'>"
                                      "<a href='/blog/'>self</a><a href='#top'>top</a>"))
        self.assertEqual(items, [{"url": "http://h/blog", "title": "Blog home", "depth": 0,
                                  "finalUrl": "http://h/blog/"}])
        self.assertEqual(urls, ["http://h/blog/post.html"])    # not the page itself

    def test_not_redirected_has_no_final_url(self):
        items, _ = self.parse(page("<title>T</title>", url="http://h/", final="http://h/"))
        self.assertEqual(items, [{"url": "http://h/", "title": "T", "depth": 0}])

    def test_failed_redirected_page(self):
        items, _ = self.parse(page("gone", statusCode=404, error="HTTP 404", errorKind="http_4xx"))
        self.assertEqual(items[0]["finalUrl"], "http://h/blog/")
        self.assertEqual(items[0]["errorKind"], "http_4xx")

    def test_unicode_title_and_query_in_page_encoding(self):
        for enc, title in [("GBK", "中文首页"), ("Shift_JIS", "日本語のページ"),
                           ("EUC-KR", "한국어"), ("windows-1251", "Русский"),
                           ("UTF-16LE", "中文")]:
            with self.subTest(enc=enc):
                html = f"<title>{title}</title><a href='/s?q={title}'>x</a>"
                items, urls = self.parse(page(html, url="http://h/", final="", enc=enc))
                self.assertEqual(items[0]["title"], title)
                self.assertEqual(urls, [sl.resolve_link("http://h/", f"/s?q={title}", enc)])
        # Without the node's encoding (an older node): the page's <meta> charset.
        html = '<meta charset="gbk"><title>中文首页</title>'.encode("gbk")
        items, _ = self.parse(sw.Response.from_json(RUN, result(**b64(html))))
        self.assertEqual(items[0]["title"], "中文首页")

    def test_meta_refresh_followed(self):
        _, urls = self.parse(page('<meta http-equiv="refresh" content="0; url=/new/">'
                                  "<a href='a'>a</a>"))
        self.assertEqual(urls, ["http://h/new/", "http://h/blog/a"])
        _, urls = self.parse(page('<meta http-equiv="refresh" content="600; url=/new/">'))
        self.assertEqual(urls, [])
        _, urls = self.parse(page('<meta http-equiv="refresh" content="0; url=http://x.example/">'))
        self.assertEqual(urls, [])                               # another host

    def test_www_host_counts_as_the_start_host(self):
        r = page("<a href='/a'>a</a><a href='http://h/b'>b</a><a href='http://x/c'>c</a>",
                 url="http://h/", final="https://www.h/")
        _, urls = self.parse(r)
        self.assertEqual(urls, ["https://www.h/a", "http://h/b"])


class ScrapyBridge(unittest.TestCase):
    def test_redirected_request(self):
        """A redirect target's page reaches the first request's callback as Scrapy's
        RedirectMiddleware hands it over."""
        import scrapy
        from spiderhub import scrapy_bridge as sb
        r = result(url="http://h/go/final.html", finalUrl="http://h/go/final.html",
                   redirectedFrom="http://h/go/start", content="<title>t</title>",
                   headers={"content-type": "text/html"},
                   redirects=[{"status": 302, "url": "http://h/go/mid"},
                              {"status": 307, "url": "http://h/go/final.html"}])
        req = sb.redirected_request(scrapy.Request("http://h/go/start", meta={"k": 1}), r)
        req.meta["_spiderhub"] = r
        got = []
        sb.ResultHandler().download_request(req, None).addBoth(got.append)
        resp = got[0]
        self.assertEqual((resp.url, resp.request.url, resp.meta["k"]),
                         ("http://h/go/final.html", "http://h/go/final.html", 1))
        self.assertEqual(resp.meta["redirect_urls"], ["http://h/go/start", "http://h/go/mid"])
        self.assertEqual((resp.meta["redirect_reasons"], resp.meta["redirect_times"]),
                         ([302, 307], 2))
        post = scrapy.Request("http://h/form", method="POST", body=b"a=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        req = sb.redirected_request(post, result(url="http://h/done", redirectedFrom="http://h/form",
                                                 redirects=[{"status": 303,
                                                             "url": "http://h/done"}]))
        self.assertEqual((req.method, req.body, req.url, "Content-Type" in req.headers),
                         ("GET", b"", "http://h/done", False))
        plain = scrapy.Request("http://h/p")
        self.assertIs(sb.redirected_request(plain, result(url="http://h/p")), plain)

    def test_download_error_carries_kind(self):
        from spiderhub.scrapy_bridge import DownloadError
        e = DownloadError("no such host", "dns")
        self.assertIsInstance(e, IOError)
        self.assertEqual((e.error_kind, str(e)), ("dns", "no such host (dns)"))
        e = DownloadError("download failed")
        self.assertEqual((e.error_kind, str(e)), ("", "download failed"))

    @unittest.skipUnless(HAS_SCRAPY, "Scrapy not importable here")
    def test_result_handler(self):
        from scrapy import Request
        from spiderhub.scrapy_bridge import DownloadError, ResultHandler
        got = []

        def handle(r):
            req = Request("http://h/", meta={"_spiderhub": r})
            d = ResultHandler().download_request(req, None)
            d.addBoth(got.append)
            return got.pop()
        f = handle(result(statusCode=0, error="refused", errorKind="connect"))
        self.assertIsInstance(f.value, DownloadError)
        self.assertEqual(f.value.error_kind, "connect")
        resp = handle(result(statusCode=404, content="nope", error="HTTP 404",
                             errorKind="http_4xx"))
        self.assertEqual((resp.status, resp.flags), (404, ["http_4xx"]))
        resp = handle(result(content="<html></html>"))
        self.assertEqual((resp.status, resp.flags), (200, []))

    def test_result_url_and_redirect_meta(self):
        from spiderhub.scrapy_bridge import result_url

        class Req:
            url = "http://h/req"

            def __init__(self):
                self.meta = {}
        table = [
            # result fields, url, meta
            ({}, "http://h/", {}),
            ({"url": ""}, "http://h/req", {}),
            ({"finalUrl": "http://h/js"}, "http://h/js", {}),      # a rendered page navigated
            ({"url": "http://h/a", "finalUrl": "https://h/c",
              "redirects": [{"status": 301, "url": "https://h/a"},
                            {"status": 302, "url": "https://h/c"}]},
             "https://h/c", {"redirect_urls": ["http://h/a", "https://h/a"],
                             "redirect_reasons": [301, 302], "redirect_times": 2}),
            ({"url": "http://h/c", "finalUrl": "http://h/c", "redirectedFrom": "http://h/a",
              "redirects": [{"status": 302, "url": "http://h/b"},
                            {"status": 307, "url": "http://h/c"}]},
             "http://h/c", {"redirect_urls": ["http://h/a", "http://h/b"],
                            "redirect_reasons": [302, 307], "redirect_times": 2}),
            ({"url": "http://h/blog", "redirects": [{"status": 308, "url": "http://h/blog/"}]},
             "http://h/blog/", {"redirect_urls": ["http://h/blog"], "redirect_reasons": [308],
                                "redirect_times": 1}),
        ]
        for fields, url, meta in table:
            with self.subTest(fields=fields):
                req = Req()
                self.assertEqual(result_url(result(**fields), req), url)
                self.assertEqual(req.meta, meta)

    @unittest.skipUnless(HAS_SCRAPY, "Scrapy not importable here")
    def test_result_handler_final_url_and_encoding(self):
        from scrapy import Request
        from scrapy.http import HtmlResponse
        from spiderhub.scrapy_bridge import ResultHandler

        def handle(r):
            got = []
            req = Request(r["url"], meta={"_spiderhub": r})
            ResultHandler().download_request(req, None).addBoth(got.append)
            return got[0]
        html = "<html><head><title>中文首页</title></head><a href='p?q=中文'>p</a></html>"
        resp = handle(result(url="http://h/blog", **b64(html.encode("gbk")),
                             headers={"content-type": "text/html"}, finalUrl="http://h/blog/",
                             redirects=[{"status": 301, "url": "http://h/blog/"}],
                             encoding="GBK", encodingSource="meta"))
        self.assertIsInstance(resp, HtmlResponse)
        self.assertEqual((resp.url, resp.encoding), ("http://h/blog/", "gb18030"))
        self.assertEqual(resp.css("title::text").get(), "中文首页")
        self.assertEqual(resp.meta["redirect_urls"], ["http://h/blog"])
        self.assertEqual(resp.meta["redirect_reasons"], [301])
        self.assertEqual(resp.urljoin("p"), "http://h/blog/p")
        # Scrapy's follow encodes the query in the page's encoding, as resolve_link does.
        self.assertEqual(resp.follow("p?q=中文").url,
                         sl.resolve_link("http://h/blog/", "p?q=中文", "GBK"))
        for enc, text in [("Shift_JIS", "日本語"), ("EUC-KR", "한국어"),
                          ("windows-1251", "Русский"), ("Big5", "中文")]:
            with self.subTest(enc=enc):
                body = f"<title>{text}</title>".encode(se.python_codec(enc))
                # The node's answer wins over a wrong header charset.
                resp = handle(result(**b64(body), encoding=enc,
                                     headers={"content-type": "text/html; charset=utf-8"}))
                self.assertEqual(resp.encoding, se.python_codec(enc))
                self.assertEqual(resp.css("title::text").get(), text)
        # An older node (no encoding): Scrapy's own detection, from the header here.
        resp = handle(result(**b64("<p>Русский</p>".encode("cp1251")),
                             headers={"content-type": "text/html; charset=windows-1251"}))
        self.assertEqual((resp.url, resp.encoding, "redirect_urls" in resp.meta),
                         ("http://h/", "cp1251", False))
        self.assertIn("Русский", resp.text)


if __name__ == "__main__":
    unittest.main()
