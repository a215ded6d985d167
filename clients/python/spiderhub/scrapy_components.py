"""The pieces of Scrapy (2.8) the bridge swaps in; the rest of the engine runs as it is.

* ``SpiderhubScheduler`` (SCHEDULER): a request the spider makes goes through the crawl's
  duplicate filter as in Scrapy's scheduler (``dont_filter``, DUPEFILTER_CLASS,
  DUPEFILTER_DEBUG, ``dupefilter/filtered``, ``request_dropped``), then through the
  downloader middlewares' request side (SpiderhubDownloader.send) and to the broker, with
  its fingerprint (the broker deduplicates the bridges of the run) and itself as payload.
  ``next_request`` hands the engine the request of each result, rebuilt from the payload.
* ``SpiderhubDownloader`` (DOWNLOADER): ``send`` runs ``process_request`` of every
  downloader middleware, in order, as Scrapy's downloader would before a download, then
  queues the request for the broker; ``fetch`` turns a result into the response
  (ResultHandler) and runs the middlewares' ``process_response``/``process_exception``, so
  cookies are taken from Set-Cookie, stats counted, meta refreshes followed.
  A middleware answering the request itself (a Response, e.g. HttpCacheMiddleware, or an
  exception) is handled here, in this process, as Scrapy would; one answering with a new
  Request reschedules it.
* ``ResultHandler``: a node's result as a Scrapy response.
* ``BridgeSpiderMiddleware``: notes when the start requests are all scheduled (then the
  run is completed) and drops the items of pages the items file already has.
* acks: a result is done when the engine is done with its request (the callback ran, its
  requests went through the scheduler, its items through the pipelines): the engine
  slot's ``remove_request``, which Scrapy calls right after.
"""
from __future__ import annotations

import collections
import copy
import logging
import re

from scrapy import Request, signals
from scrapy.core.downloader import Downloader
from scrapy.core.scheduler import BaseScheduler
from scrapy.dupefilters import BaseDupeFilter, RFPDupeFilter
from scrapy.exceptions import NotSupported, _InvalidOutput
from scrapy.http import Headers, Response, TextResponse
from scrapy.utils.defer import deferred_from_coro, mustbe_deferred
from scrapy.utils.misc import create_instance, load_object
from scrapy.utils.request import RequestFingerprinter
from twisted.internet import defer
from twisted.python.failure import Failure

from .encoding import python_codec
from .scrapy_requests import (DownloadError, UnserializableRequest, broker_fingerprint,
                              replay_request, request_dict, result_url, url_problem,
                              wire_request)

logger = logging.getLogger("spiderhub.scrapy")

DEFAULT_CONCURRENCY = 64  # results handled at once when CONCURRENT_REQUESTS is not set

# Meta keys Scrapy's downloader reads that the nodes cannot apply: warned once each.
IGNORED_META = {
    "download_timeout": "the node's download.timeout applies",
    "dont_redirect": "the broker follows redirects; a 3xx never reaches a callback",
    "handle_httpstatus_all": "the broker follows redirects; a 3xx never reaches a callback",
    "max_retry_times": "the nodes retry failed downloads",
    "dont_retry": "the nodes retry failed downloads",
    "bindaddress": "the nodes choose their addresses",
    "download_maxsize": "job property MaxBodyBytes applies",
    "download_warnsize": "job property MaxBodyBytes applies",
    "download_fail_on_dataloss": "the node reports a cut body as an error",
    "download_slot": "the broker's politeness keys apply",
}


class SpiderhubScheduler(BaseScheduler):
    def __init__(self, crawler, dupefilter) -> None:
        self.crawler = crawler
        self.bridge = crawler.spiderhub
        self.df = dupefilter
        self.stats = crawler.stats
        # BaseDupeFilter filters nothing: every request is one "the broker must not filter".
        self.filters = type(dupefilter) is not BaseDupeFilter
        # Scrapy's own fingerprint is the URL's (with method and body): the broker may take
        # a GET to a URL it has as a duplicate. Any other must be the only key.
        own = getattr(type(dupefilter), "request_fingerprint", None)
        self.by_url = self.filters and own is RFPDupeFilter.request_fingerprint and \
            type(crawler.request_fingerprinter) is RequestFingerprinter
        self.dont_filter_pushed: collections.Counter = collections.Counter()
        self.local: collections.deque = collections.deque()  # answered in this process
        self.warned: set[str] = set()
        self.spider = None

    @classmethod
    def from_crawler(cls, crawler):
        df_cls = load_object(crawler.settings["DUPEFILTER_CLASS"])
        return cls(crawler, create_instance(df_cls, crawler.settings, crawler))

    def open(self, spider):
        from twisted.internet import reactor
        self.spider = spider
        engine = self.crawler.engine
        stats = self.stats

        def wake():
            if engine.slot is not None:
                engine.slot.nextcall.schedule()
        self.bridge.wake = lambda: reactor.callFromThread(wake)
        self.bridge.count = lambda key, n: reactor.callFromThread(
            stats.inc_value, key, n, spider=spider)
        slot = engine.slot
        remove_request = slot.remove_request

        def done(request):
            # The engine is done with `request`: its output was scraped (or rescheduled).
            meta = request.meta
            r = meta.get("_spiderhub")
            if r is not None:
                self.bridge.done(r)
            if meta.pop("_spiderhub_chain", False):
                self.bridge.chain_closed()
            engine.downloader.handled(request)
            remove_request(request)
        slot.remove_request = done
        sink = self.bridge.sink
        if sink is not None:
            from itemadapter import ItemAdapter

            def item_scraped(item, response, spider):
                r = getattr(response, "request", None)
                h = (r.meta.get("_spiderhub") or {}).get("requestHash", "") if r else ""
                sink.write_hash(h, [ItemAdapter(item).asdict()])
            self._item_scraped = item_scraped  # signals hold weak references
            self.crawler.signals.connect(item_scraped, signal=signals.item_scraped)
        return self.df.open()

    def close(self, reason):
        self.bridge.closing = True
        return self.df.close(reason)

    def __len__(self) -> int:
        return len(self.local) + len(self.bridge.ready)

    def has_pending_requests(self) -> bool:
        return bool(self.local) or self.bridge.pending()

    def enqueue_request(self, request) -> bool:
        if not request.dont_filter and self.df.request_seen(request):
            self.df.log(request, self.spider)
            return False
        if hasattr(self.df, "request_fingerprint"):
            fp = self.df.request_fingerprint(request)
        else:
            fp = self.crawler.request_fingerprinter.fingerprint(request).hex()
        n = 0
        if request.dont_filter or not self.filters:
            self.dont_filter_pushed[fp] += 1
            n = self.dont_filter_pushed[fp]
        self._warn_unsupported(request)
        self.crawler.engine.downloader.send(request, self.spider, broker_fingerprint(fp, n),
                                            self.by_url)
        self.stats.inc_value("scheduler/enqueued/spiderhub", spider=self.spider)
        self.stats.inc_value("scheduler/enqueued", spider=self.spider)
        return True

    def add_local(self, request) -> None:
        """A request a downloader middleware answered here (meta _spiderhub_local)."""
        self.local.append(request)
        engine = self.crawler.engine
        if engine.slot is not None:
            engine.slot.nextcall.schedule()

    def next_request(self):
        while True:
            if self.local:
                request = self.local.popleft()
            else:
                r = self.bridge.take_result()
                if r is None:
                    return None
                request = self._request_of(r)
                if request is None:
                    self.bridge.done(r)  # acked at the next settle
                    continue
            self.stats.inc_value("scheduler/dequeued/spiderhub", spider=self.spider)
            self.stats.inc_value("scheduler/dequeued", spider=self.spider)
            return request

    def _request_of(self, r: dict):
        payload = r.get("payload")
        url = r.get("finalUrl") or r.get("url")
        if not payload:
            self.stats.inc_value("spiderhub/unmapped", spider=self.spider)
            if not self.bridge.no_payload_seen:
                self.bridge.no_payload_seen = True
                logger.error("spiderhub-scrapy: a result without payload (%s): the broker is "
                             "older than request payloads, or the request was not pushed by a "
                             "Scrapy bridge; such results are acked and dropped", url)
            return None
        try:
            d = self.bridge.codec.decode(payload)
        except Exception as e:  # noqa: BLE001 - a result must never stay unacked
            self.stats.inc_value("spiderhub/unmapped", spider=self.spider)
            logger.error("spiderhub-scrapy: result for %s: its payload is not a request of "
                         "this job's bridges (%r); acked and dropped", url, e)
            return None
        request = replay_request(r, d, self.spider, lambda m: logger.error("%s", m))
        if request is None:
            self.stats.inc_value("spiderhub/failed", spider=self.spider)
        return request

    def _warn_unsupported(self, request) -> None:
        meta = request.meta
        for key, why in IGNORED_META.items():
            if key in meta and key not in self.warned:
                self.warned.add(key)
                logger.warning("spiderhub-scrapy: meta[%r] (first seen on %s) is not applied: "
                               "%s", key, request, why)
        codes = meta.get("handle_httpstatus_list") or ()
        if any(300 <= int(c) < 400 for c in codes if str(c).isdigit()) \
                and "3xx" not in self.warned:
            self.warned.add("3xx")
            logger.warning("spiderhub-scrapy: handle_httpstatus_list with 3xx codes (first "
                           "seen on %s) is not applied: the broker follows redirects", request)
        if request.priority and "priority" not in self.warned:
            self.warned.add("priority")
            logger.warning("spiderhub-scrapy: request priorities (first seen on %s) are not "
                           "applied: the broker's queues have none", request)


class SpiderhubDownloader(Downloader):
    """Scrapy's downloader with its request side run before the push (``send``) and its
    response side on the results (``fetch``); no download slots (the broker's politeness
    applies) and no network."""

    def __init__(self, crawler) -> None:
        super().__init__(crawler)
        self.crawler = crawler
        self.bridge = crawler.spiderhub
        # The middlewares' response side alone: process_request ran before the push.
        self.response_side = copy.copy(self.middleware)
        self.response_side.methods = collections.defaultdict(
            collections.deque, self.middleware.methods)
        self.response_side.methods["process_request"] = collections.deque()
        self.handler = ResultHandler(crawler.settings, crawler)
        # Results the engine handles at once (fetch to the end of their scraping): what
        # paces it, as downloads pace Scrapy. Scrapy's default 16 is raised: with no
        # download time, 16 would cap a process near 160 pages/s, Scrapy waiting 0.1 s
        # before each callback.
        if crawler.settings.getpriority("CONCURRENT_REQUESTS") <= 0:
            self.total_concurrency = max(self.total_concurrency, DEFAULT_CONCURRENCY)
        self.handling: set = set()

    # ---- out: the request side, then the broker ------------------------------------------

    def send(self, request, spider, fingerprint: str, by_url: bool = True) -> None:
        """Runs the middlewares' process_request on ``request`` (its headers, meta, cookies
        as Scrapy sends them), then queues it for the broker under ``fingerprint`` (and its
        URL, when ``by_url``: wire_request)."""
        self.bridge.chain_opened()
        d = self._request_side(request, spider)
        d.addCallbacks(self._sent, self._answered_here,
                       callbackArgs=(request, spider, fingerprint, by_url),
                       errbackArgs=(request,))
        d.addErrback(self._bug, request)

    @defer.inlineCallbacks
    def _request_side(self, request, spider):
        """What Scrapy's DownloaderMiddlewareManager.download does before download_func."""
        for method in self.middleware.methods["process_request"]:
            out = yield deferred_from_coro(method(request=request, spider=spider))
            if out is not None and not isinstance(out, (Response, Request)):
                raise _InvalidOutput(
                    f"Middleware {method.__qualname__} must return None, Response or "
                    f"Request, got {out.__class__.__name__}")
            if out:
                return out
        return None

    def _sent(self, out, request, spider, fingerprint: str, by_url: bool) -> None:
        if isinstance(out, Response):  # e.g. an HTTP cache hit: never leaves this process
            self._answered_here(out, request)
            return
        if isinstance(out, Request):  # what the engine does with a Request from downloading
            self.bridge.chain_closed()
            self.crawler.engine.crawl(out)
            return
        problem = url_problem(request.url)
        if problem:  # what Scrapy's download handlers would fail
            self.crawler.stats.inc_value("spiderhub/invalid_url", spider=spider)
            logger.warning("spiderhub-scrapy: %s not crawled: %s", request, problem)
            self._answered_here(Failure(NotSupported(f"{request.url}: {problem}")), request)
            return
        try:
            payload = self.bridge.codec.encode(request_dict(request, spider))
            wire = wire_request(request, fingerprint, payload, by_url)
        except UnserializableRequest as e:
            self._unserializable(request, spider, e)
            return
        self.bridge.queue_push(wire)
        self.bridge.chain_closed()

    def _answered_here(self, outcome, request) -> None:
        """A Response or a Failure for ``request`` without the broker: handed to the engine
        through the scheduler like a result (fetch), the chain held open until the engine is
        done with it (its requests are pushed before the result it came from is acked)."""
        request.meta["_spiderhub_local"] = outcome
        request.meta["_spiderhub_chain"] = True
        self.crawler.engine.slot.scheduler.add_local(request)

    def _unserializable(self, request, spider, error: Exception) -> None:
        self.crawler.stats.inc_value("spiderhub/unserializable", spider=spider)
        why = (f"{request} cannot be handed to the broker: {error} (callbacks and errbacks "
               "must be methods of the spider, meta and cb_kwargs picklable)")
        if not self.bridge.completed:
            # Among the start requests, before anything was pushed: the crawl stops here.
            self.bridge.fatal = why
            self.bridge.chain_closed()
            logger.error("spiderhub-scrapy: %s; nothing pushed, stopping", why)
            self.crawler.engine.close_spider(spider, "spiderhub_bad_input")
            return
        self.bridge.unserializable += 1
        logger.error("spiderhub-scrapy: %s; not crawled, its errback gets the error", why)
        self._answered_here(Failure(error), request)

    def _bug(self, failure, request) -> None:
        logger.error("spiderhub-scrapy: %s was lost: %s", request, failure.getTraceback())

    # ---- in: results and what was answered here ----------------------------------------

    def needs_backout(self) -> bool:
        return len(self.handling) >= self.total_concurrency

    def handled(self, request) -> None:
        """The engine is done with ``request`` (its output scraped or rescheduled)."""
        self.handling.discard(request)

    def fetch(self, request, spider):
        local = request.meta.pop("_spiderhub_local", None)
        if local is not None:
            def download(request, spider):
                return defer.fail(local) if isinstance(local, Failure) else defer.succeed(local)
        elif "_spiderhub" in request.meta:
            download = self._deliver
        else:
            def download(request, spider):
                return defer.fail(IOError(
                    f"{request} was not downloaded: on spiderhub only the requests the spider "
                    "yields go to the nodes (crawler.engine.download() has no network here)"))
        self.active.add(request)
        self.handling.add(request)

        def deactivate(response):
            self.active.remove(request)
            return response
        return self.response_side.download(download, request, spider).addBoth(deactivate)

    def _deliver(self, request, spider):
        """The response of a result, with the signals Scrapy's downloader sends around a
        download."""
        self.signals.send_catch_log(signal=signals.request_reached_downloader,
                                    request=request, spider=spider)
        d = mustbe_deferred(self.handler.download_request, request, spider)

        def downloaded(response):
            self.signals.send_catch_log(signal=signals.response_downloaded, response=response,
                                        request=request, spider=spider)
            return response

        def left(x):
            self.signals.send_catch_log(signal=signals.request_left_downloader,
                                        request=request, spider=spider)
            return x
        return d.addCallback(downloaded).addBoth(left)


# A cookie after ", ": a name and "=" before any space, ";" or "," (an Expires date's
# ", 21 Oct 2026 ..." has a space first).
_NEXT_COOKIE = re.compile(r",\s*(?=[^;,=\s]+=)")


def split_set_cookie(value: str) -> list[str]:
    """The Set-Cookie headers of a result: nodes put one per line; older nodes joined them
    with ", " like other repeated headers, which Set-Cookie cannot take (RFC 9110 5.3):
    those are cut again before each cookie."""
    if "\n" in value:
        return [v for v in value.split("\n") if v.strip()]
    return [v for v in _NEXT_COOKIE.split(value) if v.strip()]


class ResultHandler:
    """Download handler: the response is the result a node downloaded. A result with an
    errorKind and a status (http_4xx, too_large...) becomes a response flagged with it."""
    lazy = False

    def __init__(self, settings=None, crawler=None) -> None:
        pass

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings, crawler)

    def download_request(self, request, spider):
        r = request.meta.get("_spiderhub")
        if r is None:
            return defer.fail(IOError(f"{request.url} was not downloaded by spiderhub"))
        if request.meta.get("_spiderhub_error") is not None:
            return defer.fail(request.meta["_spiderhub_error"])
        try:
            return self._response(r, request)
        except Exception as e:  # noqa: BLE001 - the errback gets it, the result is acked
            return defer.fail(e)

    def _response(self, r, request):
        import base64
        from scrapy.responsetypes import responsetypes
        kind = str(r.get("errorKind") or "")
        if r.get("responseTime") is not None:
            request.meta["download_latency"] = float(r.get("responseTime") or 0) / 1000.0
        if not r.get("statusCode"):
            return defer.fail(DownloadError(r.get("error") or "download failed", kind))
        content = r.get("content") or ""
        body = base64.b64decode(content) if r.get("contentEncoding") == "base64" \
            else content.encode("utf-8")
        # The node sends the body decoded: its transfer headers no longer apply.
        headers = Headers({k: split_set_cookie(v) if k.lower() == "set-cookie" else v
                           for k, v in (r.get("headers") or {}).items()
                           if k.lower() not in ("content-encoding", "content-length",
                                                "transfer-encoding")})
        url = result_url(r, request)
        cls = responsetypes.from_args(headers=headers, url=url, body=body)
        kw = {}
        codec = python_codec(r.get("encoding"))
        if codec and issubclass(cls, TextResponse):
            kw["encoding"] = codec  # decoded as the node decided (TextResponse.encoding)
        return defer.succeed(cls(url=url, status=int(r["statusCode"]), headers=headers,
                                 body=body, request=request, flags=[kind] if kind else None,
                                 **kw))


class BridgeSpiderMiddleware:
    """The outermost spider middleware: tells the bridge when every start request went
    through the scheduler (the run is then completed), and drops the items of a page the
    items file already has (a result handled again after a restart)."""

    def __init__(self, crawler) -> None:
        self.bridge = crawler.spiderhub

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_start_requests(self, start_requests, spider):
        try:
            yield from start_requests
        finally:
            with self.bridge.lock:
                self.bridge.start_done = True

    def _written(self, response) -> bool:
        sink = self.bridge.sink
        if sink is None:
            return False
        r = getattr(response, "request", None)
        h = (r.meta.get("_spiderhub") or {}).get("requestHash") if r is not None else None
        return bool(h) and sink.already_hash(h)

    def process_spider_output(self, response, result, spider):
        if not self._written(response):
            yield from result
            return
        for x in result:
            if isinstance(x, Request):
                yield x

    async def process_spider_output_async(self, response, result, spider):
        written = self._written(response)
        async for x in result:
            if not written or isinstance(x, Request):
                yield x
