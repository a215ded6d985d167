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

    def test_constructed_directly(self):
        r = sw.Response(RUN, "http://h/", 200, {}, b"12345", 0, "h", 1)
        self.assertEqual((r.error, r.error_kind, r.size), ("", "", 5))
        r = sw.Response(RUN, "http://h/", 200, {}, b"", 0, "h", 1, error_kind="too_large",
                        size=99)
        self.assertEqual(r.size, 99)


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


class ScrapyBridge(unittest.TestCase):
    def bridge(self, tmp):
        from spiderhub import scrapy_bridge as sb
        b = sb.Bridge("http://127.0.0.1:1/", "t", "cls", os.path.join(tmp, "state.db"), None,
                      log=lambda m: None)
        b.run = {"identity": "r"}
        b.completed = True
        return b

    def test_poll_sends_max_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            b = self.bridge(tmp)
            calls = []

            def call(target, *args):
                calls.append((target, args))
                b.exited.set()
                return []
            b.w._call = call
            b._pump()
            self.assertEqual(calls, [("Poll", ("r", 200, 0, 4 * 1024 * 1024))])
            b.db.close()

    def test_no_poll_while_enough_bytes_wait(self):
        with tempfile.TemporaryDirectory() as tmp:
            b = self.bridge(tmp)
            b.w.poll_max_bytes = 10
            b.ready.append(result(content="x" * 10))
            calls = []
            b.w._call = lambda target, *args: calls.append(target)
            t = threading.Timer(0.3, b.exited.set)
            t.start()
            b._pump()
            t.join()
            self.assertEqual(calls, [])
            b.db.close()

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


if __name__ == "__main__":
    unittest.main()
