"""Unit tests of the Scrapy bridge (clients/python/spiderhub/scrapy_*.py): no broker, no
network, no reactor running.

    /usr/bin/python3 tests/python/test_scrapy_units.py [-v]

Needs Scrapy (Debian's python3-scrapy 2.8 in /usr/bin/python3); every case is skipped
without it. Covers: payloads (round trip, signature, size limit, what does not pickle),
fingerprints (dont_filter counts, long fingerprints), request dicts (callbacks by name,
lambdas refused, the bridge's meta kept out), the Push JSON, the settings review (refusals,
warnings, the bridge's settings over a project's and a spider's), the scheduler and
downloader on a real Crawler (duplicate filter, dont_filter, BaseDupeFilter, headers from
USER_AGENT/DEFAULT_REQUEST_HEADERS/HttpAuth/a project middleware/cookies, cookies taken
from a result's Set-Cookie, a middleware answering or rescheduling, invalid URLs and
unserializable requests), results back to requests (payload, redirects, stand-ins), the
hub side (acks wait for request sides, Push split on refusal, duplicates counted, Poll
arguments, start requests then Complete), the items file, the command line's bad input.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import os
import sys
import tempfile
import textwrap
import unittest
from types import SimpleNamespace
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))

HAS_SCRAPY = importlib.util.find_spec("scrapy") is not None
needs_scrapy = unittest.skipUnless(HAS_SCRAPY, "Scrapy not importable here "
                                   "(run with /usr/bin/python3)")

if HAS_SCRAPY:
    import scrapy
    from scrapy import signals
    from scrapy.http import HtmlResponse
    from scrapy.utils.test import get_crawler

    from spiderhub import scrapy_bridge as sb
    from spiderhub import scrapy_components as sc
    from spiderhub import scrapy_hub as shub
    from spiderhub import scrapy_requests as sr
    from spiderhub import scrapy_settings as ss
    from spiderhub.encoding import python_codec
    from spiderhub.links import resolve_link

TOKEN = "unit-token"


def result(**kw):
    r = {"resultId": 7, "requestHash": "abc", "url": "http://h/", "statusCode": 200,
         "responseTime": 3, "headers": {}, "content": "", "error": "", "depth": 0}
    r.update(kw)
    return r


def b64(raw: bytes) -> dict:
    return {"content": base64.b64encode(raw).decode(), "contentEncoding": "base64"}


if HAS_SCRAPY:
    class Site(scrapy.Spider):
        name = "site"
        http_user, http_pass, http_auth_domain = "u", "p", "h"

        def parse(self, response):
            pass

        def other(self, response):
            pass

        alias = other

        def failed(self, failure):
            pass

    class AddHeader:
        """A project's downloader middleware: a header on every request."""

        def process_request(self, request, spider):
            request.headers["X-Project"] = "mw"

    class CacheHit:
        """Answers /cached itself (as HttpCacheMiddleware does for a cache hit)."""

        def process_request(self, request, spider):
            if request.url.endswith("/cached"):
                return HtmlResponse(request.url, body=b"<p>cached</p>", request=request)
            if request.url.endswith("/moved"):
                return request.replace(url="http://h/elsewhere")
            if request.url.endswith("/boom"):
                raise ValueError("boom")

    class MetaRefresh:
        def process_response(self, request, response, spider):
            if response.url.endswith("/refresh"):
                return request.replace(url="http://h/refreshed")
            return response


class FakeBridge:
    """The hub side without a hub: what the reactor-side components call."""


def make_world(settings=None, spidercls=None, **spider_kw):
    """A real Crawler with the bridge's settings, scheduler and downloader, a real Bridge
    (hub calls faked) and a stand-in engine."""
    spidercls = spidercls or Site
    base = {"DOWNLOADER_MIDDLEWARES": {f"{__name__}.AddHeader": 543},
            "USER_AGENT": "unitbot/1.0", "TELNETCONSOLE_ENABLED": False,
            "DEFAULT_REQUEST_HEADERS": {"Accept": "text/html", "Accept-Language": "fr"},
            "LOG_ENABLED": False}
    base.update(settings or {})
    crawler = get_crawler(sb.bridged_spider_class(spidercls), base)
    bridge = shub.Bridge("http://127.0.0.1:1/", TOKEN, "cls", log=lambda m: None)
    bridge.run = {"identity": "r"}
    bridge.completed = True
    crawler.spiderhub = bridge
    engine = SimpleNamespace(crawled=[], closed=None)
    engine.crawl = engine.crawled.append
    engine.close_spider = lambda spider, reason: setattr(engine, "closed", reason)
    engine.slot = SimpleNamespace(nextcall=SimpleNamespace(schedule=lambda: None),
                                  remove_request=lambda r: None)
    crawler.engine = engine
    spider = crawler._create_spider(**spider_kw)
    crawler.spider = spider
    engine.downloader = sc.SpiderhubDownloader(crawler)
    engine.slot.scheduler = sc.SpiderhubScheduler.from_crawler(crawler)
    engine.slot.scheduler.open(spider)
    bridge.wake = lambda: None
    bridge.count = lambda k, n: crawler.stats.inc_value(k, n)
    crawler.stats.open_spider(spider)
    crawler.signals.send_catch_log(signals.spider_opened, spider=spider)
    return SimpleNamespace(crawler=crawler, bridge=bridge, engine=engine, spider=spider,
                           scheduler=engine.slot.scheduler, downloader=engine.downloader)


def fetch(world, request):
    got = []
    world.downloader.fetch(request, world.spider).addBoth(got.append)
    assert got, "fetch did not answer at once"
    return got[0]


@needs_scrapy
class Payloads(unittest.TestCase):
    def test_round_trip_and_signature(self):
        codec = sr.PayloadCodec(TOKEN)
        d = Site().parse and sr.request_dict(
            scrapy.Request("http://h/a", meta={"k": [1, 2]}, cb_kwargs={"x": "é"}), Site())
        text = codec.encode(d)
        self.assertTrue(text.startswith("s1."))
        self.assertEqual(codec.decode(text), d)
        with self.assertRaisesRegex(ValueError, "signature"):
            sr.PayloadCodec("another token").decode(text)
        version, sig, body = text.split(".")
        forged = base64.b64encode(base64.b64decode(body) + b".").decode()
        with self.assertRaises(ValueError):
            codec.decode(f"{version}.{sig}.{forged}")
        for bad in ("", "s2.x.eA==", "s1..", "not a payload", "s1.abc.***"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                codec.decode(bad)

    def test_limits(self):
        codec = sr.PayloadCodec(TOKEN)
        with self.assertRaisesRegex(sr.UnserializableRequest, "over the broker's payload"):
            codec.encode({"url": "http://h/", "meta": {"blob": "x" * sr.PAYLOAD_LIMIT}})
        with self.assertRaisesRegex(sr.UnserializableRequest, "pickled"):
            codec.encode({"url": "http://h/", "meta": {"f": lambda: 1}})

    def test_fingerprints(self):
        self.assertEqual(sr.broker_fingerprint("ab12"), "ab12")
        self.assertEqual(sr.broker_fingerprint("ab12", 3), "ab12#3")
        long = sr.broker_fingerprint("f" * 300, 2)
        self.assertLessEqual(len(long), sr.FINGERPRINT_LIMIT)
        self.assertTrue(long.startswith("sha1:") and long.endswith("#2"))
        self.assertEqual(sr.fingerprint_hash("x"),
                         __import__("hashlib").md5(b"fp:x").hexdigest()[:16])

    def test_request_dict(self):
        spider = Site()
        d = sr.request_dict(scrapy.Request("http://h/a", callback=spider.other,
                                           errback=spider.failed,
                                           meta={"k": 1, "_spiderhub": {"content": "x"},
                                                 "_spiderhub_local": 1}), spider)
        self.assertEqual((d["callback"], d["errback"], d["meta"]), ("other", "failed", {"k": 1}))
        self.assertNotIn("_class", d)
        self.assertEqual(sr.request_dict(scrapy.Request("http://h/", callback=spider.alias),
                                         spider)["callback"], "other")  # Scrapy finds "alias" or "other"
        form = sr.request_dict(scrapy.FormRequest("http://h/f", formdata={"a": "1"}), spider)
        self.assertEqual(form["_class"], "scrapy.http.request.form.FormRequest")
        for cb in (lambda r: None, print, Payloads.test_limits):
            with self.subTest(cb=cb), self.assertRaises(sr.UnserializableRequest):
                sr.request_dict(scrapy.Request("http://h/", callback=cb), spider)
        # Scrapy itself rebuilds it.
        from scrapy.utils.request import request_from_dict
        again = request_from_dict(d, spider=spider)
        self.assertEqual((again.callback, again.errback), (spider.other, spider.failed))

    def test_wire_request(self):
        req = scrapy.Request("http://h/form", method="POST", body="a=é".encode(),
                             headers={"X-A": ["1", "2"], "User-Agent": "ua"}, meta={"depth": 3})
        w = sr.wire_request(req, "fp#1", "s1.x.y")
        self.assertEqual((w["url"], w["method"], w["content"], w["depth"], w["fingerprint"],
                          w["payload"]), ("http://h/form", "POST", "a=é", 3, "fp#1", "s1.x.y"))
        self.assertEqual(w["headers"], {"X-A": "1, 2", "User-Agent": "ua"})
        self.assertNotIn("dontFilter", w)  # the broker may take it as a duplicate by URL too
        self.assertTrue(sr.wire_request(scrapy.Request("http://h/", dont_filter=True), "f#1",
                                        "p")["dontFilter"])
        self.assertTrue(sr.wire_request(scrapy.Request("http://h/"), "f", "p",
                                        by_url=False)["dontFilter"])
        with self.assertRaisesRegex(sr.UnserializableRequest, "UTF-8"):
            sr.wire_request(scrapy.Request("http://h/", method="POST", body=b"\xff\xfe"), "f", "p")
        # meta["proxy"]: the request's own proxy on the node; None = none; credentials kept
        # on the wire (the node needs them) and out of the error message.
        self.assertNotIn("proxy", w)
        self.assertEqual(sr.wire_request(scrapy.Request("http://h/", meta={
            "proxy": "http://u:pw@p.test:3128"}), "f", "p")["proxy"], "http://u:pw@p.test:3128")
        self.assertEqual(sr.wire_request(scrapy.Request("http://h/", meta={"proxy": None}),
                                         "f", "p")["proxy"], "direct")
        for bad in ("p.test:3128", "ftp://p.test:21", "http://u:pw@p.test", "http://p.test:1/x"):
            with self.subTest(proxy=bad):
                with self.assertRaises(sr.UnserializableRequest) as ctx:
                    sr.wire_request(scrapy.Request("http://h/", meta={"proxy": bad}), "f", "p")
                self.assertNotIn("pw", str(ctx.exception))

    def test_url_problem(self):
        self.assertEqual(sr.url_problem("http://h/a"), "")
        for url in ("http://127.0.0.1:3\x004\x00/x", "ftp://h/", "mailto:a@h", "http:///x",
                    "http://h:99999/"):
            with self.subTest(url=url):
                self.assertNotEqual(sr.url_problem(url), "")


@needs_scrapy
class Settings(unittest.TestCase):
    def review(self, settings=None, spidercls=None):
        crawler_settings = scrapy.settings.Settings(settings or {})
        return ss.review(crawler_settings, spidercls)

    def test_defaults_pass_quietly(self):
        self.assertEqual(self.review(), ([], []))

    def test_refusals(self):
        table = [
            {"DUPEFILTER_CLASS": "scrapy.dupefilters.BaseDupeFilter"},
            {"DUPEFILTER_CLASS": "scrapy.dupefilters.RFPDupeFilter"},
            {"DUPEFILTER_CLASS": f"{__name__}.MyFilter"},
        ]
        for settings in table:
            with self.subTest(settings=settings):
                self.assertEqual(self.review(settings)[0], [])
        table = [
            ({"DUPEFILTER_CLASS": f"{__name__}.OtherFilter"}, "DUPEFILTER_CLASS"),
            ({"DUPEFILTER_CLASS": "no.such.Filter"}, "cannot be loaded"),
            ({"SCHEDULER": "scrapy_redis.scheduler.Scheduler"}, "SCHEDULER"),
            ({"DOWNLOADER": "my.Downloader"}, "DOWNLOADER"),
            ({"DOWNLOAD_HANDLERS": {"https": "scrapy_playwright.handler.Handler"}},
             "DOWNLOAD_HANDLERS['https']"),
        ]
        for settings, word in table:
            with self.subTest(settings=settings):
                refusals, _ = self.review(settings)
                self.assertEqual(len(refusals), 1, refusals)
                self.assertIn(word, refusals[0])

    def test_warnings(self):
        class Slow(scrapy.Spider):
            name = "slow"
            download_delay = 2
        _, warnings = self.review({"DOWNLOAD_DELAY": 1, "ROBOTSTXT_OBEY": True,
                                   "RETRY_TIMES": 5, "JOBDIR": "/tmp/x",
                                   "CONCURRENT_REQUESTS_PER_DOMAIN": 8,  # the default
                                   "DOWNLOADER_MIDDLEWARES": {
                                       "scrapy.downloadermiddlewares.retry.RetryMiddleware": 551}},
                                  Slow)
        text = "\n".join(warnings)
        for word in ("DOWNLOAD_DELAY = 1", "ROBOTSTXT_OBEY", "RETRY_TIMES", "JOBDIR",
                     "RetryMiddleware", "download_delay", "DelayMs"):
            with self.subTest(word=word):
                self.assertIn(word, text)
        self.assertNotIn("CONCURRENT_REQUESTS_PER_DOMAIN", text)

    def test_bridge_settings_win(self):
        class Custom(scrapy.Spider):
            name = "custom"
            custom_settings = {"DOWNLOADER_MIDDLEWARES": {
                "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": 600,
                f"{__name__}.AddHeader": 10}, "SCHEDULER": "x.Y", "JOBDIR": "/tmp/j"}
        crawler = get_crawler(sb.bridged_spider_class(Custom),
                              {"DOWNLOADER_MIDDLEWARES": {f"{__name__}.CacheHit": 20}})
        s = crawler.settings
        self.assertEqual((s["SCHEDULER"], s["DOWNLOADER"], s["JOBDIR"]),
                         (ss.SCHEDULER, ss.DOWNLOADER, None))
        mws = s.getwithbase("DOWNLOADER_MIDDLEWARES")
        for path in ss.OFF_MIDDLEWARES:
            self.assertIsNone(mws[path], path)
        self.assertEqual(mws[f"{__name__}.AddHeader"], 10)  # the spider's own kept
        self.assertNotIn(f"{__name__}.CacheHit", mws)         # custom_settings replaced it, as in Scrapy
        self.assertEqual(s.getwithbase("SPIDER_MIDDLEWARES")[ss.SPIDER_MIDDLEWARE], -1_000_000)


if HAS_SCRAPY:
    from scrapy.dupefilters import BaseDupeFilter, RFPDupeFilter

    class MyFilter(RFPDupeFilter):
        pass

    class QueryBlindFilter(RFPDupeFilter):
        """A project's filter with its own rule: the URL without its query."""

        def request_fingerprint(self, request):
            return request.url.split("?")[0]

    class OtherFilter(BaseDupeFilter):
        def request_seen(self, request):
            return "x" in request.url


@needs_scrapy
class SchedulerAndDownloader(unittest.TestCase):
    def test_headers_as_scrapy_sends_them(self):
        w = make_world()
        req = scrapy.Request("http://h/a", cookies={"c": "1"})
        self.assertTrue(w.scheduler.enqueue_request(req))
        [wire] = w.bridge.to_push
        h = wire["headers"]
        self.assertEqual(h["User-Agent"], "unitbot/1.0")
        self.assertEqual((h["Accept"], h["Accept-Language"]), ("text/html", "fr"))
        self.assertEqual(h["X-Project"], "mw")
        self.assertEqual(h["Authorization"], "Basic " + base64.b64encode(b"u:p").decode())
        self.assertEqual(h["Cookie"], "c=1")
        self.assertNotIn("Accept-Encoding", h)  # HttpCompressionMiddleware is off
        fp = w.crawler.request_fingerprinter.fingerprint(req).hex()
        self.assertEqual(wire["fingerprint"], fp)
        self.assertEqual(w.bridge.open_chains, 0)
        self.assertEqual(w.crawler.stats.get_value("downloader/request_count"), 1)
        # The payload is the request as the middlewares left it: any bridge rebuilds it.
        d = w.bridge.codec.decode(wire["payload"])
        self.assertEqual((d["url"], d["callback"]), ("http://h/a", None))
        self.assertEqual(d["headers"][b"User-Agent"], [b"unitbot/1.0"])

    def test_cookies_from_a_result(self):
        w = make_world()
        w.scheduler.enqueue_request(scrapy.Request("http://h/a", callback=w.spider.other,
                                                   meta={"k": 1}))
        wire = w.bridge.to_push.pop()
        w.bridge.ready.append(result(url="http://h/a", payload=wire["payload"], resultId=9,
                                     headers={"Set-Cookie": "s=2; Path=/",
                                              "Content-Type": "text/html"},
                                     content="<title>t</title>"))
        req = w.scheduler.next_request()
        self.assertEqual((req.url, req.callback, req.meta["k"]), ("http://h/a", w.spider.other, 1))
        resp = fetch(w, req)
        self.assertIsInstance(resp, HtmlResponse)
        self.assertEqual(resp.css("title::text").get(), "t")
        self.assertEqual(w.crawler.stats.get_value("downloader/response_count"), 1)
        w.scheduler.enqueue_request(scrapy.Request("http://h/b"))
        self.assertEqual(w.bridge.to_push.pop()["headers"]["Cookie"], "s=2")
        # The engine done with it: acked at the next settle.
        w.engine.slot.remove_request(req)
        self.assertEqual([r["resultId"] for r in w.bridge.finished], [9])

    def test_signals_around_a_result(self):
        w = make_world()
        seen = []
        for sig in (signals.request_reached_downloader, signals.response_downloaded,
                    signals.request_left_downloader):
            def on(sig=sig, **kw):
                seen.append(sig)
            w.crawler.signals.connect(on, signal=sig, weak=False)
        w.scheduler.enqueue_request(scrapy.Request("http://h/a"))
        w.bridge.ready.append(result(payload=w.bridge.to_push.pop()["payload"]))
        fetch(w, w.scheduler.next_request())
        self.assertEqual(seen, [signals.request_reached_downloader, signals.response_downloaded,
                                signals.request_left_downloader])

    def test_duplicates_and_dont_filter(self):
        w = make_world()
        self.assertTrue(w.scheduler.enqueue_request(scrapy.Request("http://h/a")))
        self.assertFalse(w.scheduler.enqueue_request(scrapy.Request("http://h/a#frag")))
        self.assertEqual(w.crawler.stats.get_value("dupefilter/filtered"), 1)
        for _ in range(2):
            self.assertTrue(w.scheduler.enqueue_request(
                scrapy.Request("http://h/a", dont_filter=True)))
        fps = [x["fingerprint"] for x in w.bridge.to_push]
        self.assertEqual(fps[1:], [fps[0] + "#1", fps[0] + "#2"])
        self.assertEqual([x.get("dontFilter") for x in w.bridge.to_push], [None, True, True])
        # Start requests of two bridges (each its first dont_filter push): one key.
        other = make_world()
        other.scheduler.enqueue_request(scrapy.Request("http://h/a", dont_filter=True))
        self.assertEqual(other.bridge.to_push[0]["fingerprint"], fps[1])

    def test_base_dupefilter_filters_nothing(self):
        w = make_world({"DUPEFILTER_CLASS": "scrapy.dupefilters.BaseDupeFilter"})
        for _ in range(3):
            self.assertTrue(w.scheduler.enqueue_request(scrapy.Request("http://h/a")))
        self.assertEqual([x["fingerprint"][-2:] for x in w.bridge.to_push], ["#1", "#2", "#3"])
        self.assertTrue(all(x["dontFilter"] for x in w.bridge.to_push))

    def test_fingerprinter_setting_is_the_broker_key(self):
        w = make_world({"REQUEST_FINGERPRINTER_CLASS": f"{__name__}.PathFingerprinter"})
        w.scheduler.enqueue_request(scrapy.Request("http://h/a?x=1"))
        self.assertFalse(w.scheduler.enqueue_request(scrapy.Request("http://h/a?x=2")))
        self.assertEqual(w.bridge.to_push[0]["fingerprint"], b"/a".hex())
        self.assertTrue(w.bridge.to_push[0]["dontFilter"])  # its fingerprint is the only key
        w = make_world({"DUPEFILTER_CLASS": f"{__name__}.QueryBlindFilter"})
        w.scheduler.enqueue_request(scrapy.Request("http://h/a?x=1"))
        self.assertFalse(w.scheduler.enqueue_request(scrapy.Request("http://h/a?x=2")))
        self.assertEqual((w.bridge.to_push[0]["fingerprint"], w.bridge.to_push[0]["dontFilter"]),
                         ("http://h/a", True))
        for settings in ({"DUPEFILTER_CLASS": f"{__name__}.MyFilter"}, {}):
            w = make_world(settings)
            w.scheduler.enqueue_request(scrapy.Request("http://h/a"))
            self.assertNotIn("dontFilter", w.bridge.to_push[0])

    def test_a_middleware_answers_or_reschedules(self):
        w = make_world({"DOWNLOADER_MIDDLEWARES": {f"{__name__}.CacheHit": 543,
                                                   f"{__name__}.MetaRefresh": 544}})
        w.scheduler.enqueue_request(scrapy.Request("http://h/moved"))
        self.assertEqual([r.url for r in w.engine.crawled], ["http://h/elsewhere"])
        w.scheduler.enqueue_request(scrapy.Request("http://h/cached"))
        w.scheduler.enqueue_request(scrapy.Request("http://h/boom", errback=w.spider.failed))
        self.assertEqual(w.bridge.to_push, [])
        self.assertEqual(w.bridge.open_chains, 2)  # held until the engine is done with them
        cached = w.scheduler.next_request()
        resp = fetch(w, cached)
        self.assertEqual(resp.text, "<p>cached</p>")
        boom = w.scheduler.next_request()
        failure = fetch(w, boom)
        self.assertIsInstance(failure.value, ValueError)
        for r in (cached, boom):
            w.engine.slot.remove_request(r)
        self.assertEqual(w.bridge.open_chains, 0)
        # A process_response returning a request (a meta refresh): the engine reschedules it.
        w.scheduler.enqueue_request(scrapy.Request("http://h/refresh"))
        w.bridge.ready.append(result(url="http://h/refresh",
                                     payload=w.bridge.to_push.pop()["payload"]))
        out = fetch(w, w.scheduler.next_request())
        self.assertEqual(out.url, "http://h/refreshed")

    def test_results_handled_at_once(self):
        self.assertEqual(make_world().downloader.total_concurrency, sc.DEFAULT_CONCURRENCY)
        w = make_world({"CONCURRENT_REQUESTS": 2})
        self.assertEqual(w.downloader.total_concurrency, 2)
        for i in range(3):
            w.scheduler.enqueue_request(scrapy.Request(f"http://h/{i}"))
        w.bridge.ready.extend(result(resultId=i, payload=x["payload"])
                              for i, x in enumerate(w.bridge.to_push))
        got = [w.scheduler.next_request() for _ in range(2)]
        for r in got:
            fetch(w, r)
        self.assertTrue(w.downloader.needs_backout())  # fetched, their callbacks not done
        w.engine.slot.remove_request(got[0])
        self.assertFalse(w.downloader.needs_backout())

    def test_invalid_url_fails_to_the_errback(self):
        w = make_world()
        w.scheduler.enqueue_request(scrapy.Request("ftp://h/f", errback=w.spider.failed))
        self.assertEqual(w.bridge.to_push, [])
        failure = fetch(w, w.scheduler.next_request())
        self.assertIn("http(s) only", str(failure.value))
        self.assertEqual(w.crawler.stats.get_value("spiderhub/invalid_url"), 1)

    def test_unserializable_requests(self):
        # Among the start requests: nothing pushed, the crawl stops.
        w = make_world()
        w.bridge.completed = False
        with self.assertLogs("spiderhub.scrapy", "ERROR") as logs:
            w.scheduler.enqueue_request(scrapy.Request("http://h/a", callback=lambda r: None))
        self.assertIn("lambda", logs.output[0])
        self.assertEqual((w.bridge.to_push, w.engine.closed, w.bridge.open_chains),
                         ([], "spiderhub_bad_input", 0))
        self.assertIn("cannot be handed to the broker", w.bridge.fatal)
        # Later: counted, not pushed, its errback gets the error.
        w = make_world()
        with self.assertLogs("spiderhub.scrapy", "ERROR"):
            w.scheduler.enqueue_request(scrapy.Request("http://h/b", errback=w.spider.failed,
                                                       meta={"f": open(os.devnull)}))
        self.assertEqual((w.bridge.to_push, w.bridge.unserializable, w.engine.closed),
                         ([], 1, None))
        failure = fetch(w, w.scheduler.next_request())
        self.assertIsInstance(failure.value, sr.UnserializableRequest)

    def test_meta_the_nodes_cannot_apply_is_warned_once(self):
        w = make_world()
        with self.assertLogs("spiderhub.scrapy", "WARNING") as logs:
            for i in range(3):
                w.scheduler.enqueue_request(scrapy.Request(f"http://h/{i}", priority=1, meta={
                    "proxy": "http://p:1", "download_timeout": 5,
                    "handle_httpstatus_list": [301]}))
        # meta["proxy"] is applied (the request's own proxy on the node), the others warned.
        self.assertEqual(len(logs.output), 3, logs.output)
        self.assertEqual(len(w.bridge.to_push), 3)
        self.assertEqual(w.bridge.to_push[0]["proxy"], "http://p:1")
        self.assertNotIn("Proxy-Authorization", w.bridge.to_push[0]["headers"])

    def test_results_without_or_with_a_foreign_payload_are_acked(self):
        w = make_world()
        w.bridge.ready.extend([result(resultId=1), result(resultId=2, payload="s1.x.eA=="),
                               result(resultId=3, payload=sr.PayloadCodec("other").encode(
                                   {"url": "http://h/"}))])
        with self.assertLogs("spiderhub.scrapy", "ERROR") as logs:
            self.assertIsNone(w.scheduler.next_request())
        self.assertEqual(len(logs.output), 3)
        self.assertEqual([r["resultId"] for r in w.bridge.finished], [1, 2, 3])
        self.assertEqual(w.crawler.stats.get_value("spiderhub/unmapped"), 3)

    def test_a_redirect_targets_result(self):
        w = make_world()
        w.scheduler.enqueue_request(scrapy.Request("http://h/go/start", callback=w.spider.other,
                                                   meta={"k": 1}))
        payload = w.bridge.to_push.pop()["payload"]
        w.bridge.ready.append(result(
            url="http://h/go/final.html", finalUrl="http://h/go/final.html",
            redirectedFrom="http://h/go/start", payload=payload, content="<title>t</title>",
            headers={"content-type": "text/html"},
            redirects=[{"status": 302, "url": "http://h/go/mid"},
                       {"status": 307, "url": "http://h/go/final.html"}]))
        resp = fetch(w, w.scheduler.next_request())
        self.assertEqual((resp.url, resp.request.url, resp.meta["k"], resp.request.callback),
                         ("http://h/go/final.html", "http://h/go/final.html", 1, w.spider.other))
        self.assertEqual(resp.meta["redirect_urls"], ["http://h/go/start", "http://h/go/mid"])

    def test_items_of_a_page_already_written_are_dropped(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "items.jsonl")
            with open(path, "w") as f:
                f.write('{"url": "http://h/a", "requestHash": "h1"}\n')
            w = make_world()
            w.bridge.sink = shub.ItemsFile(path)
            mw = sc.BridgeSpiderMiddleware(w.crawler)
            req = scrapy.Request("http://h/a", meta={"_spiderhub": result(requestHash="h1")})
            resp = HtmlResponse("http://h/a", body=b"", request=req)
            out = list(mw.process_spider_output(resp, [{"a": 1}, scrapy.Request("http://h/b")],
                                                w.spider))
            self.assertEqual([type(x).__name__ for x in out], ["Request"])
            req.meta["_spiderhub"]["requestHash"] = "h2"
            self.assertEqual(len(list(mw.process_spider_output(resp, [{"a": 1}], w.spider))), 1)
            w.bridge.sink.f.close()

    def test_start_requests_end(self):
        w = make_world()
        mw = sc.BridgeSpiderMiddleware(w.crawler)
        it = mw.process_start_requests(iter([scrapy.Request("http://h/")]), w.spider)
        next(it)
        self.assertFalse(w.bridge.start_done)
        self.assertEqual(list(it), [])
        self.assertTrue(w.bridge.start_done)

        def broken():
            yield scrapy.Request("http://h/")
            raise RuntimeError("start_requests failed")
        w.bridge.start_done = False
        it = mw.process_start_requests(broken(), w.spider)
        next(it)
        with self.assertRaises(RuntimeError):
            next(it)
        self.assertTrue(w.bridge.start_done)  # Scrapy logs it and goes on: so do we


if HAS_SCRAPY:
    class PathFingerprinter:
        """REQUEST_FINGERPRINTER_CLASS of a project: the path alone."""

        def fingerprint(self, request):
            from urllib.parse import urlsplit
            return urlsplit(request.url).path.encode()


@needs_scrapy
class Replay(unittest.TestCase):
    def test_failing_result_goes_to_errback(self):
        """A request Scrapy cannot rebuild: logged once, the errback gets a failure through
        the download handler, the result is acked as any other."""
        from scrapy.exceptions import IgnoreRequest
        spider = Site()
        bad = {**scrapy.Request("http://h/x", errback=spider.failed,
                                meta={"k": 1}).to_dict(spider=spider),
               "url": "http://127.0.0.1:3\x004\x00/x"}
        logs = []
        r = result(url="http://127.0.0.1/x")
        req = sr.replay_request(r, bad, spider, logs.append)
        self.assertEqual(len(logs), 1)
        self.assertIn("ValueError", logs[0])
        self.assertEqual((req.url, req.meta["k"], req.errback),
                         ("http://127.0.0.1/x", 1, spider.failed))
        got = []
        sc.ResultHandler().download_request(req, spider).addBoth(got.append)
        self.assertIsInstance(got[0].value, IgnoreRequest)
        req = sr.replay_request(r, b"not a pickle", spider, logs.append)
        self.assertEqual((req.url, req.errback), ("http://127.0.0.1/x", None))
        # A callback the spider no longer has.
        req = sr.replay_request(r, {"url": "http://h/y", "callback": "gone"}, spider,
                                logs.append)
        self.assertIsInstance(req.meta["_spiderhub_error"], IgnoreRequest)

    def test_redirected_post(self):
        post = scrapy.Request("http://h/form", method="POST", body=b"a=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        req = sr.redirected_request(post, result(url="http://h/done", redirectedFrom="http://h/form",
                                                 redirects=[{"status": 303,
                                                             "url": "http://h/done"}]))
        self.assertEqual((req.method, req.body, req.url, "Content-Type" in req.headers),
                         ("GET", b"", "http://h/done", False))
        plain = scrapy.Request("http://h/p")
        self.assertIs(sr.redirected_request(plain, result(url="http://h/p")), plain)

    def test_result_handler(self):
        def handle(r):
            got = []
            req = scrapy.Request(r["url"], meta={"_spiderhub": r})
            sc.ResultHandler().download_request(req, None).addBoth(got.append)
            return got[0]
        f = handle(result(statusCode=0, error="refused", errorKind="connect"))
        self.assertIsInstance(f.value, sr.DownloadError)
        self.assertEqual(f.value.error_kind, "connect")
        resp = handle(result(statusCode=404, content="nope", errorKind="http_4xx"))
        self.assertEqual((resp.status, resp.flags), (404, ["http_4xx"]))
        resp = handle(result(content="<html></html>", responseTime=250))
        self.assertEqual((resp.status, resp.flags, resp.meta["download_latency"]), (200, [], 0.25))
        html = "<html><head><title>中文首页</title></head><a href='p?q=中文'>p</a></html>"
        resp = handle(result(url="http://h/blog", **b64(html.encode("gbk")),
                             headers={"content-type": "text/html"}, finalUrl="http://h/blog/",
                             redirects=[{"status": 301, "url": "http://h/blog/"}],
                             encoding="GBK", encodingSource="meta"))
        self.assertEqual((resp.url, resp.encoding), ("http://h/blog/", python_codec("GBK")))
        self.assertEqual(resp.css("title::text").get(), "中文首页")
        self.assertEqual(resp.meta["redirect_urls"], ["http://h/blog"])
        self.assertEqual(resp.follow("p?q=中文").url,
                         resolve_link("http://h/blog/", "p?q=中文", "GBK"))

    def test_set_cookie_joined_by_the_node(self):
        table = [
            ("a=1", ["a=1"]),
            ("a=1; Path=/, b=2; Path=/x", ["a=1; Path=/", "b=2; Path=/x"]),
            ("a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/, b=2",
             ["a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/", "b=2"]),
            ("a=x,y", ["a=x,y"]),
            # Nodes now put one per line.
            ("a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\nb=x,y", [
                "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=x,y"]),
        ]
        for value, cookies in table:
            with self.subTest(value=value):
                self.assertEqual(sc.split_set_cookie(value), cookies)
        w = make_world()
        w.scheduler.enqueue_request(scrapy.Request("http://h/a"))
        w.bridge.ready.append(result(payload=w.bridge.to_push.pop()["payload"], headers={
            "set-cookie": "a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/, b=2; Path=/"}))
        fetch(w, w.scheduler.next_request())
        w.scheduler.enqueue_request(scrapy.Request("http://h/b"))
        self.assertEqual(sorted(w.bridge.to_push.pop()["headers"]["Cookie"].split("; ")),
                         ["a=1", "b=2"])

    def test_scrapy_bridge_names_still_there(self):
        for name in ("url_problem", "replay_request", "redirected_request", "DownloadError",
                     "result_url", "request_hash"):
            self.assertTrue(callable(getattr(sb, name)), name)


class _Future:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


@needs_scrapy
class HubSide(unittest.TestCase):
    def bridge(self):
        b = shub.Bridge("http://127.0.0.1:1/", TOKEN, "cls", log=lambda m: None)
        b.run = {"identity": "r"}
        b.completed = True
        b.calls = []

        def call(target, *args):
            b.calls.append((target, args))
            if target == "Push":
                return len(args[1]) - 1  # one duplicate per Push
            return True
        b.w._call = call
        return b

    def test_acks_wait_for_request_sides(self):
        b = self.bridge()
        b.chain_opened()                  # a request side that answers later
        b.done(result(resultId=1))
        b.settle()
        self.assertEqual(b.calls, [])
        b.queue_push({"url": "http://h/child"})
        b.chain_closed()
        b.done(result(resultId=2))
        b.settle()
        self.assertEqual([c[0] for c in b.calls], ["Push", "Ack"])  # children first
        self.assertEqual(b.calls[1][1], ("r", [1, 2]))

    def test_push_counts_duplicates_and_splits_refusals(self):
        b = self.bridge()
        counted = []
        b.count = lambda k, n: counted.append((k, n))

        def call(target, ident, reqs):
            if len(reqs) > 1:
                raise shub.HubError("payload too large")
            if reqs[0]["url"].endswith("bad"):
                raise shub.HubError("payload too large")
            return 1
        b.w._call = call
        with mock.patch.object(shub, "PUSH_CHUNK", 3):
            b.push([{"url": f"http://h/{i}"} for i in range(3)] + [{"url": "http://h/bad"}])
        self.assertEqual((b.stats["pushed"], b.stats["taken"], b.stats["refused"]), (3, 3, 1))
        b.w._call = lambda target, ident, reqs: 1
        b.push([{"url": "http://h/a"}, {"url": "http://h/a"}])
        self.assertIn(("dupefilter/filtered", 1), counted)

    def test_poll_arguments_and_results(self):
        b = self.bridge()
        sent = []

        def send(target, *args):
            sent.append((target, args))
            b.stopped.set()
            return _Future([result(resultId=4, content="abc")])
        b.w.hub = SimpleNamespace(closed=False, send=send, close=lambda: None)
        b.w.take_events = lambda wait=0: []
        b._pump()
        self.assertEqual(sent, [("Poll", ("r", 200, shub.POLL_WAIT_MS, 4 * 1024 * 1024))])
        self.assertEqual((len(b.ready), b.ready_bytes), (1, 3))
        self.assertEqual(b.take_result()["resultId"], 4)
        self.assertEqual(b.ready_bytes, 0)

    def test_no_poll_while_enough_waits(self):
        b = self.bridge()
        b.w.poll_max_bytes = 10
        b.ready.append(result(content="x" * 10))
        b.ready_bytes = 10
        self.assertFalse(b._room())
        b.ready_bytes = 9
        self.assertTrue(b._room())

    def test_start_requests_then_complete(self):
        b = self.bridge()
        b.completed = False
        b.queue_push({"url": "http://h/"})
        b.start_done = True
        b._complete("r")
        self.assertEqual([c[0] for c in b.calls], ["Push", "Complete"])
        self.assertTrue(b.completed)

    def test_exit_ends_the_pump_and_pending(self):
        b = self.bridge()
        b.w.take_events = lambda wait=0: [("exit", "r")]
        b.w.hub = SimpleNamespace(closed=False, send=lambda *a: _Future([]), close=lambda: None)
        b._pump()
        self.assertTrue(b.exited.is_set())
        self.assertFalse(b.pending())
        b.ready.append(result())
        self.assertTrue(b.pending())

    def test_items_file_writes_at_flush(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "items.jsonl")
            f = shub.ItemsFile(path)
            f.write_hash("h1", [{"a": "é"}])
            f.write_hash("h2", [{"b": 2}])
            f.write_hash("", [{"c": 3}])
            self.assertEqual(os.path.getsize(path), 0)
            self.assertTrue(f.already_hash("h1"))
            f.flush(["h1"])  # h1 acked, h2 still being scraped
            with open(path, encoding="utf-8") as fh:
                self.assertEqual(fh.read(), '{"a": "é", "requestHash": "h1"}\n'
                                 '{"c": 3, "requestHash": ""}\n')
            f.flush()
            f.f.close()
            again = shub.ItemsFile(path)
            self.assertTrue(again.already_hash("h1") and again.already_hash("h2"))
            again.f.close()


@needs_scrapy
class CommandLine(unittest.TestCase):
    def run_main(self, argv, cwd):
        err = io.StringIO()
        old = os.getcwd()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPY_")}
        try:
            os.chdir(cwd)
            with mock.patch.dict(os.environ, env, clear=True), \
                    contextlib.redirect_stderr(err), mock.patch.object(sys, "path", list(sys.path)):
                code = sb.main(argv)
        finally:
            os.chdir(old)
            for m in [m for m in sys.modules if m.startswith("unitproj")]:
                del sys.modules[m]
        return code, err.getvalue()

    def project(self, tmp, settings=""):
        os.makedirs(os.path.join(tmp, "unitproj", "spiders"))
        files = {
            "scrapy.cfg": "[settings]\ndefault = unitproj.settings\n",
            "unitproj/__init__.py": "",
            "unitproj/settings.py": "BOT_NAME = 'unitproj'\nSPIDER_MODULES = "
                                    "['unitproj.spiders']\n" + settings,
            "unitproj/spiders/__init__.py": "",
            "unitproj/spiders/one.py": textwrap.dedent("""
                import scrapy
                class One(scrapy.Spider):
                    name = "one"
                    def parse(self, response):
                        pass
                """),
        }
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)

    def test_bad_input_exits_2_before_connecting(self):
        """Nothing listens on port 1: each case must stop before it connects."""
        broker = ["--broker", "http://127.0.0.1:1/"]
        with tempfile.TemporaryDirectory() as tmp:
            code, err = self.run_main(["crawl", "one"] + broker, tmp)
            self.assertEqual(code, 2)
            self.assertIn("not inside a Scrapy project", err)
            self.project(tmp, "DUPEFILTER_CLASS = 'scrapy_redis.dupefilter.RFPDupeFilter'\n")
            code, err = self.run_main(["crawl", "nosuch"] + broker, tmp)
            self.assertEqual(code, 2)
            self.assertIn("no spider named 'nosuch' in this project (spiders: one)", err)
            code, err = self.run_main(["crawl", "one"] + broker, tmp)
            self.assertEqual(code, 2)
            self.assertIn("refused: DUPEFILTER_CLASS", err)
            code, err = self.run_main(["crawl", "one", "-s",
                                       "DOWNLOAD_HANDLERS={\"http\": \"x.Y\"}",
                                       "-s", "DUPEFILTER_CLASS=scrapy.dupefilters.RFPDupeFilter"]
                                      + broker, tmp)
            self.assertEqual(code, 2)
            self.assertIn("DOWNLOAD_HANDLERS['http']", err)
            code, err = self.run_main([os.path.join(tmp, "nosuch.py")] + broker, tmp)
            self.assertEqual(code, 2)
            self.assertIn("no such file", err)


if __name__ == "__main__":
    unittest.main()
