"""The worker role of spiderhub in Python: spider logic that the broker's nodes download for.

A :class:`Spider` gives start requests and parses responses into new requests and items;
a :class:`Worker` connects it to the broker's ``/worker`` hub (docs/protocol.md) and runs
every run the broker starts for its class name::

    Run -> Push start requests -> Complete -> loop: Poll -> parse -> Push children
                                                     -> items -> Ack      ... until Exit

The loop is pipelined like the C++ SDK's: the next Poll travels while a batch is parsed,
and a batch's results are acked only after its children were pushed (stored by the
broker) and its items written, which is what lets the broker tell when a run is done and
why nothing is lost when the worker dies: unacked results are delivered again.

Delivery is at-least-once; items are exactly-once: the worker's sinks
(:mod:`spiderhub.sinks`: JSON lines, CSV, SQLite, PostgreSQL) commit a batch's items
together with the record of the pages they came from before its results are acked, and a
restarted worker skips the pages a sink already committed.

Command line: ``python3 -m spiderhub.worker --help``.
"""
from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import json
import os
import sys
import threading
import time
import urllib.parse
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional

from . import encoding as _enc
from .hub import ConnectionLost, HubConnection, HubError, split_brokers, worker_query
from .links import find_base_href, meta_refresh_url, resolve_link  # noqa: F401 - re-exported
from .sinks import (JsonLinesSink, Page, Sink, SinkError, open_sink,  # noqa: F401 - re-exported
                    redact, scrub)

# What went wrong with a download: a Result's errorKind is one of these, or "" (docs/protocol.md).
ERROR_KINDS = frozenset({
    "dns", "connect", "tls", "timeout", "too_large", "skipped_type", "http_4xx", "http_5xx",
    "robots", "redirect_loop", "blocked_address", "network"})

# Extensions of links a crawler of HTML pages does not follow: binary files. The kinds of
# Scrapy's IGNORED_EXTENSIONS (without its text ones, css and rss) plus fonts and a few more
# of each kind; written out here because the SDK must work without Scrapy.
BINARY_EXTENSIONS = frozenset({
    # archives and compressed files
    "7z", "7zip", "ace", "arj", "bz2", "cab", "gz", "lz", "lzma", "rar", "tar", "tbz", "tbz2",
    "tgz", "txz", "xz", "z", "zip", "zst",
    # images
    "ai", "avif", "bmp", "cdr", "drw", "dxf", "eps", "gif", "heic", "heif", "ico", "jp2",
    "jpe", "jpeg", "jpg", "mng", "pct", "png", "ps", "psd", "psp", "pst", "svg", "svgz", "tif",
    "tiff", "webp",
    # audio
    "aac", "aif", "aiff", "amr", "ape", "au", "flac", "m4a", "mid", "midi", "mka", "mp3",
    "oga", "ogg", "opus", "ra", "wav", "wma",
    # video
    "3g2", "3gp", "asf", "asx", "avi", "f4v", "flv", "m2ts", "m4v", "mkv", "mov", "mp4",
    "mpeg", "mpg", "mts", "ogv", "qt", "rm", "rmvb", "swf", "vob", "webm", "wmv",
    # office documents, e-books, pdf
    "doc", "docm", "docx", "dot", "dotx", "epub", "mobi", "odg", "odp", "ods", "odt", "pdf",
    "pps", "ppsx", "ppt", "pptm", "pptx", "rtf", "xls", "xlsb", "xlsm", "xlsx", "xps", "djvu",
    # executables, packages, disk images
    "apk", "appimage", "bin", "class", "deb", "dll", "dmg", "exe", "img", "iso", "jar", "msi",
    "pkg", "rpm", "so",
    # fonts
    "eot", "otf", "ttf", "woff", "woff2",
})


def has_binary_extension(url: str) -> bool:
    """Whether the last segment of ``url``'s path ends with one of BINARY_EXTENSIONS
    (case-insensitive; the query, the fragment and ``;params`` are not looked at, and a
    dot in a directory name does not count): ``/a/b.PDF?x=1`` yes, ``/v1.2/page`` no."""
    path = urllib.parse.urlsplit(url).path
    last = urllib.parse.unquote(path.rsplit("/", 1)[-1].split(";", 1)[0])
    stem, dot, ext = last.rpartition(".")
    return bool(dot) and bool(stem) and ext.lower() in BINARY_EXTENSIONS


@dataclass
class Request:
    """A request for the nodes to download (the broker's ``Request`` type)."""
    url: str
    method: str = "GET"
    referer: str = ""
    origin: str = ""
    content: str = ""
    depth: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    # Optional: the dedup key instead of the canonical URL (1-256 bytes), and opaque text
    # (at most 262,144 bytes) the result of this request carries back as Response.payload.
    fingerprint: str = ""
    payload: str = ""
    # This request's proxy URL (scheme://[user:password@]host:port), or "direct" for none,
    # instead of the run's pool (job property Proxies).
    proxy: str = ""

    def to_json(self) -> dict[str, Any]:
        j = {"url": self.url, "method": self.method, "referer": self.referer,
             "origin": self.origin, "content": self.content, "depth": self.depth,
             "cycleTriedTimes": 0, "headers": self.headers}
        if self.fingerprint:
            j["fingerprint"] = self.fingerprint
        if self.payload:
            j["payload"] = self.payload
        if self.proxy:
            j["proxy"] = self.proxy
        return j


class Redirect(NamedTuple):
    """One redirect hop of a download: the status of the 3xx answer and the absolute URL it
    pointed to. A tuple, so ``status, url = hop`` works too."""
    status: int
    url: str


def _redirects_of(value: Any) -> List[Redirect]:
    """The result's ``redirects`` as Redirect tuples; malformed hops are left out (the
    field is informative, a bad one must not cost the page)."""
    hops: List[Redirect] = []
    for h in value if isinstance(value, (list, tuple)) else []:
        try:
            if isinstance(h, dict):
                status, url = h.get("status"), h.get("url")
            else:
                status, url = h
            if isinstance(url, str) and url:
                hops.append(Redirect(int(status or 0), url))
        except (TypeError, ValueError):
            continue
    return hops


@dataclass
class Response:
    """A downloaded page (the broker's ``Result``).

    ``error`` says what went wrong ("" when nothing did) and ``error_kind`` which of
    ERROR_KINDS it was ("" when the download went well, and from brokers older than the
    ``errorKind`` field). ``size`` is the body's size as the node saw it: for ``too_large``
    the size announced or received before the node gave up, when ``body`` is cut or empty;
    ``len(body)`` from older brokers.

    ``final_url`` is where the page ended after redirects (``url`` when it was not
    redirected, and from nodes older than the ``finalUrl`` field); ``redirects`` the hops
    that led there, in order (:class:`Redirect`: status, url). ``encoding`` is the WHATWG
    encoding name the node's sniffing decided for a text body ("UTF-8", "GBK",
    "Shift_JIS"...) and ``encoding_source`` which step decided it ("bom", "override",
    "http", "meta", "detector", "default"); both "" when the node did not say (older
    nodes, bodies that are not text). ``body`` is always the bytes as sent; ``text``
    decodes them with :attr:`document_encoding`."""
    run: dict[str, Any]
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    depth: int
    request_hash: str
    result_id: int
    error: str = ""
    response_time_ms: int = 0
    error_kind: str = ""
    size: int = -1  # -1: len(body)
    final_url: str = ""  # "": url
    redirects: List[Redirect] = field(default_factory=list)
    encoding: str = ""
    encoding_source: str = ""
    payload: str = ""  # the request's payload, as pushed
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.body)
        if not self.final_url:
            self.final_url = self.url
        self.redirects = _redirects_of(self.redirects)

    def header(self, name: str, default: str = "") -> str:
        """A response header by name, in any case (the node sends lower-case names)."""
        if name in self.headers:
            return self.headers[name]
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return default

    @property
    def document_encoding(self) -> str:
        """The WHATWG name of the encoding ``text`` decodes with: the node's ``encoding``;
        without one (older nodes), the SDK's own sniffing
        (:func:`spiderhub.encoding.sniff`: BOM, Content-Type charset, ``<meta>`` charset in
        the first 1024 bytes, else UTF-8). Link queries are encoded in it."""
        name = self._cache.get("encoding")
        if name is None:
            name = _enc.encoding_for_label(self.encoding) or \
                _enc.sniff(self.body, self.header("content-type"))[0]
            self._cache["encoding"] = name
        return name

    @property
    def text(self) -> str:
        """The body as text: decoded with :attr:`document_encoding` (a byte order mark wins,
        as in browsers), invalid bytes as U+FFFD."""
        text = self._cache.get("text")
        if text is None:
            text = self._cache["text"] = _enc.decode(self.body, self.document_encoding)
        return text

    @property
    def selector(self) -> Any:
        """A parsel ``Selector`` over :attr:`text` (XML for XML content types), made on first
        use (:mod:`spiderhub.selectors`; needs Debian's python3-parsel)."""
        sel = self._cache.get("selector")
        if sel is None:
            from .selectors import selector_for
            sel = self._cache["selector"] = selector_for(
                self.text, self.header("content-type"), self.final_url)
        return sel

    def css(self, query: str) -> Any:
        """``selector.css(query)``: a parsel SelectorList (``.get()``, ``.getall()``,
        ``.re()``...)."""
        return self.selector.css(query)

    def xpath(self, query: str, **variables: Any) -> Any:
        """``selector.xpath(query, **variables)``: a parsel SelectorList."""
        return self.selector.xpath(query, **variables)

    @property
    def base_url(self) -> str:
        """What this page's links are relative to: its first ``<base href>`` (resolved
        against the final URL) when it has a usable one, else ``final_url``."""
        base = self._cache.get("base")
        if base is None:
            href = find_base_href(self.text)
            base = resolve_link(self.final_url, href, self.document_encoding) \
                if href is not None else None
            base = self._cache["base"] = base or self.final_url
        return base

    def urljoin(self, href: str) -> Optional[str]:
        """``href`` resolved as a browser would on this page
        (:func:`spiderhub.links.resolve_link` against :attr:`base_url`, the query in the
        page's encoding, the fragment dropped); None when it is not an http(s) link
        (``mailto:``, ``javascript:``...)."""
        return resolve_link(self.base_url, href, self.document_encoding)

    def follow(self, href: str, **kw: Any) -> Request:
        """A request for ``href`` resolved against this page (:meth:`urljoin`), one level
        deeper. The page (its final URL) travels as a Referer header, not as
        ``Request.referer``: the broker's dedup key includes ``referer``, and a page linked
        from two pages must be crawled once. A link that is not http(s) is joined with
        ``urllib.parse.urljoin`` as before; check :meth:`urljoin` for None to skip those."""
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("Referer", self.final_url)
        url = self.urljoin(href)
        if url is None:
            url = urllib.parse.urljoin(self.base_url, href)
        return Request(url, depth=self.depth + 1, headers=headers, **kw)

    @staticmethod
    def from_json(run: dict[str, Any], r: dict[str, Any]) -> "Response":
        content = r.get("content") or ""
        body = base64.b64decode(content) if r.get("contentEncoding") == "base64" \
            else content.encode("utf-8")
        size = r.get("size")  # absent from older brokers, and when the node did not know
        return Response(run=run, url=r.get("url", ""), status=int(r.get("statusCode") or 0),
                        headers=r.get("headers") or {}, body=body, depth=int(r.get("depth") or 0),
                        request_hash=r.get("requestHash", ""), result_id=int(r["resultId"]),
                        error=r.get("error") or "",
                        response_time_ms=int(r.get("responseTime") or 0),
                        error_kind=str(r.get("errorKind") or ""),
                        size=-1 if size is None else int(size),
                        final_url=str(r.get("finalUrl") or ""),
                        redirects=_redirects_of(r.get("redirects")),
                        encoding=str(r.get("encoding") or ""),
                        encoding_source=str(r.get("encodingSource") or ""),
                        payload=str(r.get("payload") or ""))


class Spider:
    """User logic. Called on the worker's one thread, so a spider needs no locks; several
    runs may be active at once (``response.run["identity"]`` tells them apart).

    ``item_schema`` (optional): the items' columns for the CSV and SQL sinks, {name: type}
    with types text, integer, real, boolean, json (``ItemSpec.schema()`` makes one); without
    it a sink takes the first item's keys."""

    item_schema: Optional[dict[str, str]] = None

    def start_requests(self, run: dict[str, Any]) -> Iterable[Request]:
        """Requests to start a run with; ``run`` has ``jobId``, ``identity`` and
        ``arguments`` (the job's Arguments text)."""
        return []

    def parse(self, response: Response) -> Iterable[Request | dict]:
        """Yields new requests and items (dicts) of one downloaded page."""
        return []

    def run_finished(self, run: dict[str, Any]) -> None:
        """The broker ended the run (Exit)."""


@dataclass
class _RunState:
    run: dict[str, Any]
    phase: str = "fresh"   # fresh -> completing -> polling
    prefetch: Future | None = None


class Worker:
    """Connects a spider to the broker and serves its runs until ``stop()``.

    ``broker`` is one base URL, or several (a comma-separated string or a list) when
    brokers share one database: connections go round the list until the active one
    answers. Within a round the next broker is tried ``switch_delay`` seconds after a
    failure; after a whole round failed the delay doubles (0.2 s up to ``reconnect_max``).
    After a connection drops, its broker is tried last.

    A Poll asks for at most ``poll_max`` results whose bodies total at most
    ``poll_max_bytes`` (the broker also applies its own ``dispatch.max_poll_bytes``, and
    always answers at least one result when one is there, however large). While a batch is
    parsed the next Poll is already on its way (prefetch), so the worker holds two batches
    at most, each bounded in bytes: its memory for pages is about 2 x ``poll_max_bytes``
    of bodies (more when one page alone is larger), plus what JSON, base64 and the
    decoded bytes add to them. Brokers older than the ``maxBytes`` argument ignore it.

    ``sink`` is one sink or a list of them (:mod:`spiderhub.sinks`; ``sinks`` the same):
    every batch's items are committed to each, in order, before its results are acked.
    A sink that fails (a database down) is tried again, 1 s doubling to 30 s, without
    acking: nothing is lost, the run waits."""

    switch_delay = 0.2  # between two brokers of one round

    def __init__(self, broker: str | list[str], token: str, full_class_name: str, spider: Spider,
                 sink: Sink | list[Sink] | None = None, poll_max: int = 500,
                 push_chunk: int = 500, reconnect_max: float = 10.0,
                 call_timeout: float = 60.0, idle_timeout: float = 20.0,
                 poll_wait: float = 1.0, log=print,
                 poll_max_bytes: int = 4 * 1024 * 1024,
                 sinks: list[Sink] | None = None) -> None:
        if isinstance(poll_max_bytes, bool) or not isinstance(poll_max_bytes, int) \
                or poll_max_bytes < 1:
            raise ValueError(f"poll_max_bytes must be an integer >= 1, got {poll_max_bytes!r}")
        self.brokers = split_brokers(broker)
        self.broker = self.brokers[0]  # the one connected to (or tried) last
        self._broker_index = 0
        self._tried_any = False
        self.token = token
        self.cls = full_class_name
        self.spider = spider
        self.sinks: list[Sink] = (list(sink) if isinstance(sink, (list, tuple)) else
                                  [sink] if sink is not None else []) + list(sinks or [])
        self.poll_max = poll_max
        self.poll_max_bytes = poll_max_bytes  # result body bytes per Poll (maxBytes)
        # Seconds the broker may hold a Poll that finds nothing new (long poll), asked while
        # this worker has one run; 0: every Poll is answered at once.
        self.poll_wait = poll_wait
        self.push_chunk = push_chunk
        self.reconnect_max = reconnect_max
        self.call_timeout = call_timeout
        self.idle_timeout = idle_timeout  # nothing from the broker this long: reconnect
        self.log = log
        self.runs: dict[str, _RunState] = {}
        self.inbox: list[tuple[str, Any]] = []
        self.cv = threading.Condition()
        self.stopping = False
        self.hub: HubConnection | None = None
        self.finished_runs = 0
        self._connected_at = -1e9  # monotonic time of the last connection made
        self._flap = 0.1           # backoff against connections that drop at once
        self.stats = {"pushed": 0, "accepted": 0, "results": 0, "items": 0, "acked": 0,
                      "reconnects": 0, "skipped": 0}

    # ---- connection -------------------------------------------------------------------

    def _on_run(self, run: Any) -> None:
        if not isinstance(run, dict) or not isinstance(run.get("identity"), str) \
                or not run.get("identity"):
            self.log(f"worker: malformed Run ignored: {str(run)[:200]}")
            return
        with self.cv:
            self.inbox.append(("run", run))
            self.cv.notify_all()

    def take_events(self, wait: float = 0.0) -> list[tuple[str, Any]]:
        """Run and Exit events received since the last call (waiting up to `wait` s)."""
        with self.cv:
            if wait and not self.inbox:
                self.cv.wait(wait)
            events, self.inbox = self.inbox, []
        return events

    def _on_exit(self, identity: Any) -> None:
        if not isinstance(identity, str):
            self.log(f"worker: malformed Exit ignored: {str(identity)[:200]}")
            return
        with self.cv:
            self.inbox.append(("exit", identity))
            self.cv.notify_all()

    def _connect(self) -> None:
        if self.hub is not None and self.hub.closed:
            self.log(f"worker: connection to {self.broker} lost: {self.hub.close_reason}")
        # A connection that drops soon after it was made must not make a reconnect storm:
        # such flaps back off like failed attempts.
        now = time.monotonic()
        if now - self._connected_at < 2.0:
            self._flap = min(self._flap * 2, self.reconnect_max)
            time.sleep(self._flap)
        else:
            self._flap = 0.1
        delay = 0.2
        last_ts = 0
        tried = 0  # brokers tried this round
        n = len(self.brokers)
        while not self.stopping:
            # The next broker in turn: after a drop, the one we were on comes last.
            if self._tried_any:
                self._broker_index = (self._broker_index + 1) % n
            self._tried_any = True
            self.broker = self.brokers[self._broker_index]
            which = f" (broker {self._broker_index + 1} of {n})" if n > 1 else ""
            tried += 1
            # A fresh sign per attempt (the broker accepts signs a few minutes old).
            last_ts = max(int(time.time()), last_ts)
            hub = HubConnection(self.broker, "/worker", worker_query(self.token, self.cls, last_ts),
                                timeout=self.call_timeout, idle_timeout=self.idle_timeout)
            hub.on("Run", self._on_run)
            hub.on("Exit", self._on_exit)
            try:
                hub.connect()
                self.hub = hub
                self._connected_at = time.monotonic()
                self.log(f"worker: connected to {self.broker}{which} as {self.cls}")
                return
            except (OSError, HubError) as e:
                if tried < n:
                    # Another broker of this round may be the active one: try it soon.
                    self.log(f"worker: cannot connect to {self.broker}{which} ({e}); "
                             f"trying the next broker")
                    time.sleep(self.switch_delay)
                    continue
                tried = 0
                self.log(f"worker: cannot connect ({e}){which}; again in {delay:.1f}s")
                time.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)

    def _call(self, target: str, *args: Any) -> Any:
        """A call retried across reconnects until it is answered (calls are idempotent at
        the broker: Push dedups, Ack and Complete repeat harmlessly)."""
        while not self.stopping:
            if self.hub is None or self.hub.closed:
                self.stats["reconnects"] += self.hub is not None
                self._connect()
                continue
            try:
                return self.hub.invoke(target, *args)
            except ConnectionLost:
                continue
            except TimeoutError:
                self.hub.close("call timed out")
        raise ConnectionLost("stopping")

    def _result_of(self, fut: Future | None, target: str, *args: Any) -> Any:
        """The result of a pipelined call, or the call again if its connection failed."""
        if fut is not None:
            try:
                return fut.result(self.call_timeout)
            except (ConnectionLost, TimeoutError):
                pass
        return self._call(target, *args)

    # ---- runs -------------------------------------------------------------------------

    def _poll_args(self, identity: str) -> tuple[str, int, int, int]:
        """``Poll``'s arguments: identity, max, waitMs, maxBytes. waitMs (a long poll) only
        while this worker has one run, else 0; maxBytes always (older brokers ignore it)."""
        wait_ms = int(self.poll_wait * 1000) if self.poll_wait > 0 and len(self.runs) == 1 else 0
        return identity, self.poll_max, wait_ms, self.poll_max_bytes

    def _push(self, identity: str, requests: list[Request]) -> None:
        for i in range(0, len(requests), self.push_chunk):
            chunk = [r.to_json() for r in requests[i:i + self.push_chunk]]
            accepted = self._call("Push", identity, chunk)
            self.stats["pushed"] += len(chunk)
            self.stats["accepted"] += int(accepted or 0)

    def _step(self, rs: _RunState) -> bool:
        identity = rs.run["identity"]
        if rs.phase == "fresh":
            try:
                start = list(self.spider.start_requests(rs.run))
            except Exception as e:  # noqa: BLE001
                self.log(f"worker: run {identity}: start_requests failed, completing it empty: {e!r}")
                start = []
            self._push(identity, start)
            rs.phase = "completing"
            return True
        if rs.phase == "completing":
            self._call("Complete", identity)
            rs.phase = "polling"
            return True
        # Polling: this batch (the prefetched one, if any), and the next one on its way;
        # each at most poll_max_bytes of bodies, so two of them at most in memory.
        poll = self._poll_args(identity)
        batch = self._result_of(rs.prefetch, "Poll", *poll)
        rs.prefetch = None
        if not isinstance(batch, list) or not batch:
            return False
        if self.hub and not self.hub.closed:
            rs.prefetch = self.hub.send("Poll", *poll)
        responses: list[Response] = []
        for r in batch:
            try:
                responses.append(Response.from_json(rs.run, r))
            except (KeyError, ValueError, TypeError) as e:
                self.log(f"worker: run {identity}: unreadable result skipped: {e!r}")
        ids = [resp.result_id for resp in responses]
        self.stats["results"] += len(responses)
        keys = [page_key(resp) for resp in responses]
        # Pages each sink committed in an earlier life (killed before its ack): a page every
        # sink has is not parsed again (its children were pushed before that commit).
        done = [self._with_sink(s, "committed", s.committed, identity, keys) if keys else set()
                for s in self.sinks]
        children: list[Request] = []
        pages: list[Page] = []
        for resp, key in zip(responses, keys):
            if self.sinks and all(key in d for d in done):
                self.stats["skipped"] += 1
                continue
            items = []
            try:
                for out in self.spider.parse(resp) or []:
                    if isinstance(out, Request):
                        children.append(out)
                    elif isinstance(out, dict):
                        items.append(out)
            except Exception as e:  # noqa: BLE001 - one page must not stop the run
                self.log(f"worker: run {identity}: parse of {resp.url} failed: {e!r}")
            pages.append(Page(key, resp.result_id, items))
        self._push(identity, children)          # children stored before the ack
        for s, d in zip(self.sinks, done):      # items committed before the ack
            todo = [p for p in pages if p.request_hash not in d]
            if todo:
                self._with_sink(s, "commit", s.commit, identity, todo)
        self.stats["items"] += sum(len(p.items) for p in pages)
        if ids:
            self._call("Ack", identity, ids)
            self.stats["acked"] += len(ids)
        return True

    def _with_sink(self, sink: Sink, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, tried again while it fails (1 s doubling to 30 s): the batch is not
        acked until every sink has it, so its results wait for the sink, not lost."""
        delay = 1.0
        while True:
            try:
                return fn(*args)
            except Exception as e:  # noqa: BLE001 - a database error must not end the worker
                if self.stopping:
                    raise ConnectionLost("stopping") from e
                self.log(f"worker: sink {sink.name}: {what} failed ({type(e).__name__}: "
                         f"{str(e).strip()[:300]}); results not acked, again in {delay:.0f}s")
                with self.cv:
                    self.cv.wait(delay)
                delay = min(delay * 2, 30.0)

    def _apply_inbox(self) -> None:
        for kind, x in self.take_events():
            if kind == "run":
                if x["identity"] in self.runs:
                    continue  # sent again after a reconnect
                self.log(f"worker: run {x['identity']} of job {x.get('jobId', '?')} started")
                self.runs[x["identity"]] = _RunState(x)
            else:
                rs = self.runs.pop(x, None)
                if rs:
                    self.finished_runs += 1
                    self.log(f"worker: run {x} finished")
                    try:
                        self.spider.run_finished(rs.run)
                    except Exception as e:  # noqa: BLE001
                        self.log(f"worker: run_finished failed: {e!r}")

    def serve(self, runs: int = 0) -> None:
        """Serves runs until ``stop()`` (or until ``runs`` runs finished, when > 0)."""
        self._connect()
        while not self.stopping and not (runs and self.finished_runs >= runs):
            self._apply_inbox()
            busy = False
            for rs in list(self.runs.values()):
                try:
                    busy = self._step(rs) or busy
                except ConnectionLost:
                    busy = True
                except HubError as e:
                    # The broker no longer knows the run (it ended while we were away).
                    self.log(f"worker: run {rs.run['identity']}: {e}; dropping it")
                    self.runs.pop(rs.run["identity"], None)
            if self.hub is None or self.hub.closed:
                self._connect()
            if not busy:
                with self.cv:
                    self.cv.wait(0.05)
        if self.hub:
            self.hub.close()

    def stop(self) -> None:
        self.stopping = True
        with self.cv:
            self.cv.notify_all()


def page_key(response: Response) -> str:
    """What sinks remember a page by: its request hash ("result:<id>" without one)."""
    return response.request_hash or f"result:{response.result_id}"


def _load_spider(spec: str) -> Spider:
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--spider must be MODULE:CLASS or FILE.py:CLASS, got {spec!r}")
    if module.endswith(".py"):
        s = importlib.util.spec_from_file_location("user_spider", module)
        if s is None or s.loader is None:
            raise SystemExit(f"cannot load {module}")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    cls = getattr(mod, name, None)
    if cls is None:
        raise SystemExit(f"{module} has no {name}")
    return cls()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m spiderhub.worker",
        description="Runs a Python spider as a spiderhub worker: the broker starts runs for\n"
                    "its class name (jobs whose FullClassName property names it), its nodes\n"
                    "download, and the spider parses. Items go to every --output, exactly\n"
                    "once per page even across restarts of this worker (kill -9 included).",
        epilog="Destinations of -o (repeat it to write several at once):\n"
               "  PATH, jsonl:PATH          JSON lines (each item with its requestHash)\n"
               "  PATH.csv, csv:PATH        CSV with a header (and a request_hash column)\n"
               "  sqlite:PATH[?PARAMS]      SQLite database file (sqlite:///abs/path.db is\n"
               "                            /abs/path.db, sqlite:rel.db is relative)\n"
               "  postgresql://[USER@]HOST[:PORT]/DB[?PARAMS]   PostgreSQL (libpq URI; put\n"
               "                            the password in PGPASSWORD or ~/.pgpass rather\n"
               "                            than in the URL, which ps shows; never printed)\n"
               "PARAMS of the databases: table=NAME (default items), key=FIELD (upsert by\n"
               "that field; default: insert once per page and item index),\n"
               "columns=NAME:TYPE,... (declared schema; types text, integer, real, boolean,\n"
               "json; default: the spider's item_schema, else the first item's keys).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default="http://127.0.0.1:55626/",
                    help="broker base URL, or several comma-separated (brokers sharing one "
                         "database: the worker connects to the active one)")
    ap.add_argument("--token", default=os.environ.get("SPIDERHUB_TOKEN", ""),
                    help="worker secret (auth.token or a worker-role secret; default "
                         "$SPIDERHUB_TOKEN)")
    ap.add_argument("--class", dest="cls", required=True,
                    help="the class name jobs use in FullClassName")
    ap.add_argument("--spider", required=True,
                    help="MODULE:CLASS or FILE.py:CLASS of a spiderhub.worker.Spider")
    ap.add_argument("-o", "--output", action="append", default=[], metavar="DEST",
                    help="where items go (below); repeat for several: each batch is "
                         "committed to every one, in this order, before it is acked")
    ap.add_argument("--runs", type=int, default=0,
                    help="exit after this many runs finished (0: serve until killed)")
    ap.add_argument("--poll-max", type=int, default=500, help="results per Poll")
    ap.add_argument("--poll-max-bytes", type=int, default=4 * 1024 * 1024,
                    help="result body bytes per Poll (default 4194304; the broker caps it at "
                         "its dispatch.max_poll_bytes and always sends at least one result): "
                         "with the next Poll prefetched while a batch is parsed, the worker "
                         "holds about twice this in pages")
    ap.add_argument("--poll-wait", type=float, default=1.0,
                    help="seconds the broker may hold a Poll that finds nothing new and answer "
                         "it as results arrive (long poll; 0: never; at most 60)")
    ap.add_argument("--idle-timeout", type=float, default=20.0,
                    help="seconds without anything from the broker (it pings every "
                         "sessions.heartbeat_interval) before the link counts as dead and "
                         "the worker reconnects, to the next broker of the list first "
                         "(0: rely on TCP alone)")
    a = ap.parse_args(argv)
    if a.idle_timeout < 0:
        ap.error("--idle-timeout must be >= 0")
    if a.poll_max_bytes < 1:
        ap.error(f"--poll-max-bytes must be an integer >= 1, got {a.poll_max_bytes}")
    if not 0 <= a.poll_wait <= 60:
        ap.error("--poll-wait must be from 0 to 60 seconds")
    try:
        split_brokers(a.broker)
    except ValueError as e:
        ap.error(str(e))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    spider = _load_spider(a.spider)
    sinks: list[Sink] = []
    for dest in a.output:
        try:
            sinks.append(open_sink(dest, schema=getattr(spider, "item_schema", None), log=log))
        except SinkError as e:
            ap.error(str(e))
        except Exception as e:  # noqa: BLE001 - a database that refuses, a missing module
            log(f"worker: cannot open {redact(dest)}: {scrub(str(e), dest)}")
            return 1
        log(f"worker: items to {sinks[-1].name}"
            + (f" ({sinks[-1].mode})" if hasattr(sinks[-1], "mode") else ""))
    w = Worker(a.broker, a.token, a.cls, spider, sinks=sinks, poll_max=a.poll_max,
               poll_wait=a.poll_wait, poll_max_bytes=a.poll_max_bytes,
               idle_timeout=a.idle_timeout, log=log)
    try:
        w.serve(runs=a.runs)
    except KeyboardInterrupt:
        w.stop()
    for s in sinks:
        s.close()
    print(json.dumps(dict(w.stats, sinks={s.name: s.stats for s in sinks})),
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    # `python3 -m spiderhub.worker` runs this file as __main__, a second copy of the module
    # next to the spiderhub.worker that spiders import: its Request class would not be
    # theirs, and the Worker would not take their requests. Run the imported module's main.
    from spiderhub import worker as _imported
    sys.exit(_imported.main())
