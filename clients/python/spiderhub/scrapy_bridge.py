"""Run an unchanged Scrapy spider on spiderhub: the nodes download, Scrapy parses.

``spiderhub-scrapy myspider.py --broker URL --token T --class NAME -o items.jsonl`` (or
``python3 -m spiderhub.scrapy_bridge``) loads the spider file, connects to the broker's
worker hub as ``NAME``, waits for a run of a job whose FullClassName is ``NAME``, and runs
Scrapy's own engine with three pieces swapped in (Scrapy 2.8, Debian's python3-scrapy):

* **scheduler** (``SpiderhubScheduler``): ``enqueue_request`` stores the Scrapy request
  (``Request.to_dict``, pickled as Scrapy's own disk queues do: callback and errback by
  name, ``cb_kwargs``, ``meta``, headers, body) in a local SQLite file under the request
  hash the broker gives it (on its canonical URL), then pushes it to the broker (which
  deduplicates, applies politeness and leases it to a node); URLs no node can download are
  logged and dropped. ``next_request`` hands the engine the stored request of the next
  downloaded result (found by ``redirectedFrom``, ``requestHash`` or canonical URL:
  Bridge.stored_request); a result that maps to nothing, or whose request cannot be
  rebuilt, is logged and acked (the errback gets a failure when there is one).
* **download handler** (``ResultHandler``) for http and https: no network; the response is
  built from the result the node sent (status, headers, body), at the node's final URL
  (``finalUrl``, so ``response.urljoin`` and ``response.follow`` resolve against it), with
  the node's encoding (``encoding``, as a Python codec: ``TextResponse(encoding=...)``),
  and the redirect hops in the request's meta as Scrapy's RedirectMiddleware leaves them
  (``redirect_urls``, ``redirect_reasons``, ``redirect_times``).
* **acks**: a result is acked once Scrapy finished with it — callbacks ran, their requests
  were pushed, their items went through the item pipelines — so a killed bridge loses
  nothing: unacked results come back after a restart, and the local SQLite file still maps
  them to their Scrapy requests.

Start requests are consumed at once (a spider middleware), pushed, and the run is marked
complete: from then on the broker decides when the crawl is over (no request left) and
ends the run, which closes the spider.

Not supported: downloader middlewares or settings that need the connection itself
(proxies, cookies middleware state per connection, ``DOWNLOAD_DELAY`` and AutoThrottle —
spiderhub's politeness applies instead, ``ROBOTSTXT_OBEY`` — the broker obeys robots.txt),
Scrapy's retry and redirect middlewares (nodes retry, the broker follows redirects and
the bridge fills the redirect meta), and Scrapy's
duplicate filter (the broker deduplicates by URL; ``dont_filter`` is not honoured).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import sqlite3
import sys
import threading
import time
from collections import deque
from typing import Any

from .encoding import python_codec
from .links import canonical_url
from .hub import HubError, split_brokers
from .worker import JsonLinesSink, Request as HubRequest, Spider as _Unused, Worker  # noqa: F401
from .worker import _redirects_of

_bridge: "Bridge | None" = None  # one per process (Scrapy builds its components itself)


def request_hash(url: str, method: str = "GET", content: str = "", referer: str = "",
                 origin: str = "") -> str:
    """The broker's dedup key (docs/protocol.md): md5 of referer.origin.method.content.url.
    The broker takes it on the canonical URL (docs/urls.md): pass ``canonical_url(url)``
    to get the ``requestHash`` its results carry."""
    return hashlib.md5(f"{referer}.{origin}.{method}.{content}.{url}".encode()).hexdigest()[:16]


def url_problem(url: str) -> str:
    """Why the nodes cannot download ``url`` ("" when they can): not http(s), no host, a
    port that is no number (w3lib encodes the port of a link found on a UTF-16 page in
    UTF-16), or no canonical form (docs/urls.md). Scrapy's downloader fails these."""
    import urllib.parse
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as e:
        return f"bad URL: {e}"
    if u.scheme.lower() not in ("http", "https"):
        return f"unsupported URL scheme {u.scheme!r}"
    if not u.hostname:
        return "no host"
    if not canonical_url(url):
        return "not an absolute http(s) URL the broker accepts"
    return ""


def url_keys(url: str) -> list[str]:
    """Keys a stored request is found by from a result's ``url`` or ``redirectedFrom``: its
    canonical URL ("u:"), and the canonical URL with the three per-job options on ("l:",
    in case the job sorts queries or strips session ids and trackers)."""
    keys = []
    plain = canonical_url(url)
    if plain:
        keys.append("u:" + plain)
        loose = canonical_url(url, True, True, True)
        if loose:
            keys.append("l:" + loose)
    return keys


class Bridge:
    """The hub side: one run at a time, stored Scrapy requests, results ready for the
    engine, acks once Scrapy is done with them."""

    def __init__(self, broker: str, token: str, cls: str, state: str, sink: JsonLinesSink | None,
                 log=print) -> None:
        self.w = Worker(broker, token, cls, _Unused(), log=log)
        self.log = log
        self.db = sqlite3.connect(state, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS req (hash TEXT PRIMARY KEY, data BLOB)")
        # Other ways to a stored request: "h:" + the hash of the URL as pushed (brokers that
        # hash it as is), "u:"/"l:" + its canonical URL (url_keys), for results that come
        # back under another hash: redirect targets (redirectedFrom) and URLs whose
        # canonical form Python and the broker disagree on.
        self.db.execute("CREATE TABLE IF NOT EXISTS alias (key TEXT PRIMARY KEY, hash TEXT)")
        self.db_lock = threading.Lock()
        self.sink = sink
        self.run: dict[str, Any] | None = None
        self.completed = False  # start requests pushed and Complete answered
        self.exited = threading.Event()
        self.ready: deque = deque()
        self.to_push: list = []
        self.finished: list = []  # results Scrapy is done with, acked at the next settle()
        self.acks: list[int] = []
        self.lock = threading.Lock()
        self.engine = None
        self.spider = None
        self.origin: dict[int, str] = {}  # id(item) -> request hash of its response
        self.stats = {"pushed": 0, "results": 0, "acked": 0, "items": 0, "invalid": 0,
                      "unmapped": 0, "failed": 0}

    # ---- run lifecycle (hub thread) ---------------------------------------------------

    def wait_for_run(self) -> dict[str, Any]:
        self.w._connect()
        while True:
            for kind, x in self.w.take_events(wait=0.2):
                if kind == "run" and self.run is None:
                    self.run = x
                elif kind == "exit" and self.run and x == self.run["identity"]:
                    self.exited.set()
            if self.run:
                threading.Thread(target=self._pump, daemon=True, name="spiderhub-poll").start()
                return self.run
            if self.w.hub is None or self.w.hub.closed:
                self.w._connect()

    def _wake_engine(self) -> None:
        engine = self.engine
        if engine is not None and engine.slot is not None:
            from twisted.internet import reactor
            reactor.callFromThread(engine.slot.nextcall.schedule)

    def _pump(self) -> None:
        """Polls results, flushes acks, watches for Exit (its own thread)."""
        identity = self.run["identity"]
        while not self.exited.is_set():
            for kind, x in self.w.take_events():
                if kind == "exit" and x == identity:
                    self.exited.set()
            self.settle()
            # Results waiting for Scrapy: at most 200, and (from brokers that know maxBytes)
            # about poll_max_bytes of bodies plus one Poll's worth.
            if len(self.ready) < 200 and self.completed and \
                    self.ready_bytes() < self.w.poll_max_bytes:
                try:
                    batch = self.w._call("Poll", identity, 200, 0, self.w.poll_max_bytes)
                except Exception as e:  # noqa: BLE001 - a lost run ends below via Exit
                    self.log(f"spiderhub-scrapy: Poll failed: {e}")
                    batch = []
                if batch:
                    with self.lock:
                        self.ready.extend(batch)
                    self.stats["results"] += len(batch)
                    self._wake_engine()
                    continue
            time.sleep(0.05)
        self.settle()
        self._wake_engine()

    def ready_bytes(self) -> int:
        with self.lock:
            return sum(len(r.get("content") or "") for r in self.ready)

    def settle(self) -> None:
        """Every 50 ms at most: the results Scrapy finished since the last time are acked
        after the requests queued until then were committed and pushed (one SQLite commit
        and one Push for all the pages of that time, instead of one per page)."""
        with self.lock:
            finished, self.finished = self.finished, []
        self.flush()
        with self.lock:
            self.acks.extend(int(r["resultId"]) for r in finished)
        self.flush_acks()

    def flush_acks(self) -> None:
        with self.lock:
            ids, self.acks = self.acks, []
        if ids:
            if self.sink:
                self.sink.flush()  # items on disk before their pages are acked
            try:
                self.w._call("Ack", self.run["identity"], ids)
                self.stats["acked"] += len(ids)
            except HubError as e:  # the run already ended: nothing left to ack
                self.log(f"spiderhub-scrapy: Ack refused: {e}")

    # ---- what Scrapy calls (reactor thread) ---------------------------------------------

    def queue(self, request) -> None:
        """Requests are pushed in batches: before the result that produced them is acked
        (flush), so one SQLite commit and one Push serve all the links of a page."""
        with self.lock:
            self.to_push.append(request)

    def flush(self) -> None:
        with self.lock:
            batch, self.to_push = self.to_push, []
        if batch:
            self.push(batch, self.spider)

    def push(self, requests: list, spider) -> None:
        rows, aliases, wire = [], [], []
        for r in requests:
            problem = url_problem(r.url)
            if problem:  # what Scrapy's downloader would fail: never pushed
                self.stats["invalid"] += 1
                self.log(f"spiderhub-scrapy: {r.url!r} not crawled: {problem}")
                continue
            try:
                # What Scrapy's own disk queues (JOBDIR) store: the request as a dict,
                # callbacks by name, pickled (without the result a response.meta copy
                # may carry along).
                d = r.to_dict(spider=spider)
                if isinstance(d.get("meta"), dict):
                    d["meta"] = {k: v for k, v in d["meta"].items()
                                 if k not in ("_spiderhub", "_spiderhub_error")}
                data = pickle.dumps(d, protocol=4)
            except Exception as e:  # noqa: BLE001 - e.g. a lambda callback, an open file in meta
                self.stats["unserializable"] = self.stats.get("unserializable", 0) + 1
                self.log(f"spiderhub-scrapy: cannot store {r} ({e!r}); not crawled "
                         "(callbacks must be spider methods, meta and cb_kwargs picklable)")
                continue
            content = r.body.decode("utf-8", errors="replace") if r.body else ""
            # Stored under the hash its results carry: the broker's, on the canonical URL.
            h = request_hash(canonical_url(r.url), r.method, content)
            raw = request_hash(r.url, r.method, content)
            if raw != h:
                aliases.append(("h:" + raw, h))
            aliases.extend((k, h) for k in url_keys(r.url))
            headers = {k.decode("latin-1"): b", ".join(v).decode("latin-1")
                       for k, v in r.headers.items()}
            rows.append((h, data))
            wire.append(HubRequest(r.url, method=r.method, content=content,
                                   depth=int(r.meta.get("depth", 0)), headers=headers).to_json())
        with self.db_lock:  # stored before the broker knows them: a result always has its request
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO req VALUES (?, ?)", rows)
            self.db.executemany("INSERT OR IGNORE INTO alias VALUES (?, ?)", aliases)
            self.db.execute("COMMIT")
        for i in range(0, len(wire), 500):
            self.w._call("Push", self.run["identity"], wire[i:i + 500])
        self.stats["pushed"] += len(wire)

    def complete(self) -> None:
        self.w._call("Complete", self.run["identity"])
        self.completed = True

    def stored_request(self, r: dict) -> bytes | None:
        """The stored Scrapy request (pickled dict) result ``r`` answers, or None.

        A redirect target's result names the request first asked for in ``redirectedFrom``
        (its canonical URL): that request is the one Scrapy's RedirectMiddleware would have
        replaced, so it wins. Otherwise the result's ``requestHash``, which the broker takes
        on the canonical URL, is the key the request was stored under (or, from brokers that
        hash the URL as pushed, an alias of it); last, the result's URL by its canonical
        form (url_keys), for URLs Python and the broker canonicalise differently."""
        def by_hash(h: str):
            row = self.db.execute("SELECT data FROM req WHERE hash=?", (h,)).fetchone()
            if row is None:
                row = self.db.execute("SELECT req.data FROM alias JOIN req ON req.hash=alias.hash"
                                      " WHERE alias.key=?", ("h:" + h,)).fetchone()
            return row[0] if row else None

        def by_url(url: str):
            for key in url_keys(url):
                row = self.db.execute("SELECT req.data FROM alias JOIN req ON req.hash=alias.hash"
                                      " WHERE alias.key=?", (key,)).fetchone()
                if row:
                    return row[0]
            return None
        first = str(r.get("redirectedFrom") or "")
        with self.db_lock:
            return (first and by_url(first)) or by_hash(str(r.get("requestHash") or "")) \
                or by_url(str(r.get("url") or "")) or None

    def next_result(self) -> tuple[dict, bytes] | None:
        """The next result with its stored Scrapy request (pickled); results no stored
        request answers are logged and acked."""
        while True:
            with self.lock:
                if not self.ready:
                    return None
                r = self.ready.popleft()
            try:
                data = self.stored_request(r)
            except Exception as e:  # noqa: BLE001 - a result must never stay unacked
                data = None
                self.log(f"spiderhub-scrapy: result for {r.get('url')!r}: lookup failed: {e!r}")
            if data is not None:
                return r, data
            self.stats["unmapped"] += 1
            self.log(f"spiderhub-scrapy: result for {r.get('url')!r} (requestHash "
                     f"{r.get('requestHash')}, redirectedFrom {r.get('redirectedFrom')!r}) "
                     "has no stored request; acked")
            self.done(r)

    def done(self, result: dict) -> None:
        """Scrapy is done with `result`: acked at the next settle()."""
        with self.lock:
            self.finished.append(result)


# ---- Scrapy components ------------------------------------------------------------------

try:
    from scrapy.core.scheduler import BaseScheduler as _BaseScheduler
except ImportError:  # the plain SDK works without Scrapy
    _BaseScheduler = object


class SpiderhubScheduler(_BaseScheduler):
    def __init__(self, crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open(self, spider):
        _bridge.engine = self.crawler.engine
        _bridge.spider = spider

    def close(self, reason):
        pass

    def has_pending_requests(self) -> bool:
        return not _bridge.exited.is_set() or bool(_bridge.ready)

    def enqueue_request(self, request) -> bool:
        _bridge.queue(request)
        return True

    def next_request(self):
        while True:
            got = _bridge.next_result()
            if got is None:
                return None
            result, data = got
            req = replay_request(result, data, self.crawler.spider, _bridge.log)
            if req is not None:
                return req
            _bridge.stats["failed"] += 1
            _bridge.done(result)


def replay_request(result: dict, data: bytes, spider, log=print):
    """The Scrapy request result ``result`` answers, rebuilt from its stored dict, with the
    result in ``meta["_spiderhub"]``; after broker redirects, the request as Scrapy's
    RedirectMiddleware would have made it (redirected_request).

    A request that cannot be rebuilt (its callback gone, a URL the Request refuses...) is
    logged once and replaced by a stand-in at the result's URL with the stored errback,
    callback and meta, which the download handler fails (``meta["_spiderhub_error"]``, an
    IgnoreRequest: Scrapy calls the errback and logs nothing more), so the result is acked
    like any other. None when not even that can be built: the caller acks it."""
    from scrapy import Request
    from scrapy.utils.request import request_from_dict
    d: dict = {}
    try:
        d = pickle.loads(data)
        req = redirected_request(request_from_dict(d, spider=spider), result)
        req.meta["_spiderhub"] = result
        return req
    except Exception as e:  # noqa: BLE001 - a result must never stay unacked
        error = e
    url = result.get("finalUrl") or result.get("url") or ""
    log(f"spiderhub-scrapy: result for {url!r} cannot be turned back into its Scrapy request "
        f"{d.get('url')!r}: {error!r}; failed to its errback, acked")
    from scrapy.exceptions import IgnoreRequest
    failure = IgnoreRequest(f"spiderhub: {d.get('url')!r} cannot be rebuilt: {error!r}")
    meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
    for attempt in ({**d, "url": url, "method": "GET", "body": b""},
                    {"url": url, "errback": d.get("errback")}, {"url": url}):
        try:
            req = request_from_dict(attempt, spider=spider) if len(attempt) > 1 \
                else Request(url, dont_filter=True)
        except Exception:  # noqa: BLE001
            continue
        try:
            req.meta.update(meta)
        except Exception:  # noqa: BLE001
            pass
        req.meta["_spiderhub"] = result
        req.meta["_spiderhub_error"] = failure
        return req
    return None


def redirected_request(request, r: dict):
    """``request`` as Scrapy's RedirectMiddleware leaves it when result ``r`` is a page the
    broker reached through redirects: at the final URL, a POST turned into a GET by a 301,
    302 or 303 (body and Content-* headers dropped), the hops in its meta (result_url)."""
    final = str(r.get("finalUrl") or "")
    hops = _redirects_of(r.get("redirects"))
    if not final and hops:
        final = hops[-1].url
    if not final or (not hops and not r.get("redirectedFrom")):
        return request
    kw = {}
    if request.method not in ("GET", "HEAD") and any(h.status in (301, 302, 303) for h in hops):
        kw = {"method": "GET", "body": b""}
        headers = request.headers.copy()
        for name in ("Content-Type", "Content-Length", "Content-Encoding", "Content-Language",
                     "Content-Location"):
            headers.pop(name, None)
        kw["headers"] = headers
    if final != request.url or kw:
        request = request.replace(url=final, **kw)
    return request


class DownloadError(IOError):
    """A download the node could not make (the errback's ``failure.value``): ``error_kind``
    is one of spiderhub.worker.ERROR_KINDS ("" from older brokers)."""

    def __init__(self, message: str, error_kind: str = "") -> None:
        super().__init__(f"{message} ({error_kind})" if error_kind else message)
        self.error_kind = error_kind


def result_url(r: dict, request) -> str:
    """The URL of the response built from result `r`: where the download ended (the node's
    ``finalUrl``, else the last redirect hop, else the result's URL). The hops go into
    ``request.meta`` as Scrapy's RedirectMiddleware writes them for a request redirected
    A -> B -> C: ``redirect_urls`` [A, B] (the URLs before the final one),
    ``redirect_reasons`` [their statuses], ``redirect_times`` 2. A is the result's
    ``redirectedFrom`` when the broker followed the redirects (the result is C's then),
    else its ``url``."""
    url = r.get("url") or request.url
    hops = _redirects_of(r.get("redirects"))
    if hops:
        # Redirects the broker followed: the result is the target's (``url``), and
        # ``redirectedFrom`` names the URL first asked for; nodes that followed them
        # themselves sent the first URL as ``url``.
        first = r.get("redirectedFrom") or url
        request.meta["redirect_urls"] = [first] + [h.url for h in hops[:-1]]
        request.meta["redirect_reasons"] = [h.status for h in hops]
        request.meta["redirect_times"] = len(hops)
    return r.get("finalUrl") or (hops[-1].url if hops else url)


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
        import base64
        from twisted.internet import defer
        from scrapy.http import TextResponse
        from scrapy.responsetypes import responsetypes
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
        from twisted.internet import defer
        from scrapy.http import TextResponse
        from scrapy.responsetypes import responsetypes
        kind = str(r.get("errorKind") or "")
        if not r.get("statusCode"):
            return defer.fail(DownloadError(r.get("error") or "download failed", kind))
        content = r.get("content") or ""
        body = base64.b64decode(content) if r.get("contentEncoding") == "base64" \
            else content.encode("utf-8")
        # The node sends the body decoded: its transfer headers no longer apply.
        headers = {k: v for k, v in (r.get("headers") or {}).items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")}
        url = result_url(r, request)
        cls = responsetypes.from_args(headers=headers, url=url, body=body)
        kw = {}
        codec = python_codec(r.get("encoding"))
        if codec and issubclass(cls, TextResponse):
            kw["encoding"] = codec  # decoded as the node decided (TextResponse.encoding)
        return defer.succeed(cls(url=url, status=int(r["statusCode"]), headers=headers,
                                 body=body, request=request, flags=[kind] if kind else None,
                                 **kw))


class StartAndItemsMiddleware:
    """Spider middleware: pushes every start request at once and completes the run; notes
    which response each item came from (for the exactly-once items file)."""

    def process_start_requests(self, start_requests, spider):
        reqs = list(start_requests)
        _bridge.push(reqs, spider)
        _bridge.complete()
        _bridge.log(f"spiderhub-scrapy: {len(reqs)} start requests pushed, run complete")
        return []

    def process_spider_output(self, response, result, spider):
        from scrapy import Request
        h = (response.meta.get("_spiderhub") or {}).get("requestHash", "")
        for x in result:
            if isinstance(x, Request):
                yield x
                continue
            if _bridge.sink and _bridge.sink.already_hash(h):
                continue  # written before a restart: exactly once
            _bridge.origin[id(x)] = h
            yield x


class ItemsFilePipeline:
    """Item pipeline writing items as JSON lines, each with its page's request hash."""

    def process_item(self, item, spider):
        if _bridge.sink:
            from itemadapter import ItemAdapter
            h = _bridge.origin.pop(id(item), "")
            _bridge.sink.write_hash(h, [ItemAdapter(item).asdict()])
            _bridge.stats["items"] += 1
        return item


def _ack_when_scraped() -> None:
    """Acks a result when Scrapy's scraper is done with its response (callbacks, their
    requests pushed, their items through the pipelines). Scrapy 2.8 has no signal for
    that moment, so the scraper's enqueue_scrape is wrapped."""
    from scrapy.core.scraper import Scraper
    original = Scraper.enqueue_scrape
    if getattr(original, "_spiderhub", False):
        return

    def enqueue_scrape(self, result, request, spider):
        d = original(self, result, request, spider)
        r = request.meta.get("_spiderhub")
        if r is not None:
            def ack(x):
                _bridge.done(r)  # acked once its children are stored and pushed (settle)
                return x
            d.addBoth(ack)
        return d
    enqueue_scrape._spiderhub = True
    Scraper.enqueue_scrape = enqueue_scrape


def load_spider_class(path: str, name: str | None):
    import scrapy
    # Imported under its file name with its folder on the path, as `scrapy runspider`
    # does: settings may name the file's own pipelines ("myspider.MyPipeline").
    folder, module = os.path.split(os.path.abspath(path))
    module = os.path.splitext(module)[0]
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    found = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, scrapy.Spider)
             and v.__module__ == mod.__name__ and (name is None or v.__name__ == name)]
    if len(found) != 1:
        raise SystemExit(f"{path}: expected one scrapy.Spider subclass"
                         f"{' named ' + name if name else ''}, found {[c.__name__ for c in found]}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    global _bridge
    ap = argparse.ArgumentParser(
        prog="spiderhub-scrapy",
        description="Runs an unchanged Scrapy spider on spiderhub: the broker's nodes download "
                    "(with its dedup, politeness and leases), this process parses with Scrapy "
                    "(callbacks, cb_kwargs, meta, item pipelines). Serves one run of a job "
                    "whose FullClassName is --class, then exits.")
    ap.add_argument("spider_file", help="a .py file with a scrapy.Spider subclass")
    ap.add_argument("--spider", help="the class name, when the file has several")
    ap.add_argument("--broker", default="http://127.0.0.1:55626/",
                    help="broker base URL, or several comma-separated (brokers sharing one "
                         "database: the bridge connects to the active one)")
    ap.add_argument("--token", default=os.environ.get("SPIDERHUB_TOKEN", ""),
                    help="worker secret (default $SPIDERHUB_TOKEN)")
    ap.add_argument("--class", dest="cls", help="FullClassName of the jobs (default: the "
                    "spider's name)")
    ap.add_argument("-o", "--output", help="items file, JSON lines, exactly once per page")
    ap.add_argument("--state", help="SQLite file of pushed requests (default: "
                    ".spiderhub-scrapy-CLASS.db); keep it across restarts")
    ap.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a Scrapy setting")
    a = ap.parse_args(argv)
    try:
        split_brokers(a.broker)
    except ValueError as e:
        ap.error(str(e))
    spidercls = load_spider_class(a.spider_file, a.spider)
    cls = a.cls or spidercls.name
    state = a.state or f".spiderhub-scrapy-{cls}.db"
    sink = JsonLinesSink(a.output) if a.output else None
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    _bridge = Bridge(a.broker, a.token, cls, state, sink, log)
    # Scrapy imports this module by name for the settings below: under `python -m` that
    # is a second module object, which must see the same bridge.
    importlib.import_module("spiderhub.scrapy_bridge")._bridge = _bridge
    run = _bridge.wait_for_run()
    log(f"spiderhub-scrapy: run {run['identity']} of job {run.get('jobId')}: {spidercls.name}")

    from scrapy.crawler import CrawlerProcess
    settings = {
        "SCHEDULER": "spiderhub.scrapy_bridge.SpiderhubScheduler",
        "DOWNLOAD_HANDLERS": {"http": "spiderhub.scrapy_bridge.ResultHandler",
                              "https": "spiderhub.scrapy_bridge.ResultHandler"},
        "SPIDER_MIDDLEWARES": {"spiderhub.scrapy_bridge.StartAndItemsMiddleware": 1},
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": None,
        },
        "ROBOTSTXT_OBEY": False,
        "CONCURRENT_REQUESTS": 64,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }
    # The spider's custom_settings win over a project's: ours go in there too (merged with
    # the user's pipelines and middlewares), so the bridge's pieces cannot be dropped.
    user = dict(getattr(spidercls, "custom_settings", None) or {})
    for key in ("SPIDER_MIDDLEWARES", "DOWNLOADER_MIDDLEWARES"):
        settings[key] = {**dict(user.get(key, {})), **settings[key]}
    pipelines = dict(user.get("ITEM_PIPELINES", {}))
    pipelines["spiderhub.scrapy_bridge.ItemsFilePipeline"] = 1000  # after the user's
    settings["ITEM_PIPELINES"] = pipelines
    user_set = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        user_set[k] = v
    bridged = type(spidercls.__name__, (spidercls,), {
        "custom_settings": {**user, **user_set, **settings},
        "__module__": spidercls.__module__})
    importlib.import_module("spiderhub.scrapy_bridge")._ack_when_scraped()
    process = CrawlerProcess({"LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False})
    # A job's Arguments that are a JSON object become spider arguments (like scrapy's -a).
    try:
        kwargs = json.loads(run.get("arguments") or "{}")
    except ValueError:
        kwargs = {}
    process.crawl(bridged, **(kwargs if isinstance(kwargs, dict) else {}))
    process.start()
    _bridge.settle()
    log("spiderhub-scrapy: " + json.dumps(_bridge.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
