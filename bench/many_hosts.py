#!/usr/bin/env python3
"""A many-host test web on loopback: the ground truth of politeness tests and benchmarks.

One Python process serves N independent "hosts", each on its own TCP port of 127.0.0.1
(ports chosen by the OS), from one asyncio event loop with a small hand-written HTTP/1.1
server (keep-alive, GET and HEAD). Python 3.11 standard library only.

Content of host ``name`` with ``pages`` pages:

* ``/p/i`` (0 <= i < pages, decimal without leading zeros) is HTML titled
  ``"{name} page {i}"`` linking to the same host's ``/p/{2i+1}`` and ``/p/{2i+2}`` (those
  below ``pages``), so every page is reachable from ``/p/0``. Page ``/p/0`` also links to
  ``http://{link_host}:{port}/p/0`` (``link_host`` defaults to 127.0.0.1; "localhost"
  gives a crawler names to resolve) of EVERY host of the web (itself and down hosts
  included), so a crawl started at any host's ``/p/0`` discovers all hosts. Every page
  carries about 1 KB of filler text (varied per page, so no two pages are near-duplicates).
* ``/robots.txt`` answers ``HostSpec.robots`` as text/plain, or 404 when it is None.
* Any other path answers 404; methods other than GET and HEAD answer 405; a malformed
  request (request line, header line, Content-Length) answers 400 and closes; a request
  with Transfer-Encoding answers 501 and closes (request bodies are only supported as
  Content-Length bytes, which are read and ignored).

Behaviours (see ``HostSpec``):

* ``latency_ms``: every request whose path starts with ``/p/`` (whatever its status:
  200, 404, 429 or 503) sleeps that long before its response is written; ``/robots.txt``
  and other paths are answered at once.
* ``throttle_at = N``: the Nth ``/p/`` request (1-based, GET or HEAD, counting every
  ``/p/`` request the host received, in order of arrival) is answered
  ``429 Too Many Requests`` with ``Retry-After: throttle_retry_after_s``; all others are
  served normally.
* ``error_until = S``: ``/p/`` requests arriving less than S seconds after the web started
  serving (``ManyHostWeb.started_monotonic``) are answered 503 without Retry-After; later
  ones normally. The 429 takes precedence when both apply.
* ``down``: the host has a port in the layout (and links point to it) but nothing
  listens there: connections are refused. The port is found by binding a socket to port
  0, and that socket is kept bound, never listening, until ``stop()``: a bound socket
  that does not listen refuses connections exactly like a closed port, and holding it
  keeps the OS from handing the port to another listener or to an outgoing connection
  (which could turn a down host into a self-connected "up" one).

Ground truth recorded per host (``HostRecord``):

* ``requests``: every request answered, as ``(monotonic_s, unix_s, path, status)``.
  The times are taken when the request line has been read (its arrival); ``path`` is the
  request target as sent (query string included; for a malformed request line, the line
  itself, truncated to 200 characters); ``status`` is the status answered (also recorded
  when the client went away before the response was written). Requests cut off before
  their header ended are not recorded. Snapshots list requests in order of arrival.
* ``peak_concurrency``: the largest number of requests handled at the same time by the
  host. A request is in flight from the moment its request line has been read until its
  response has been fully handed to the kernel, including the latency sleep. A polite
  crawler with one connection per host reads 1. ``ManyHostWeb.peak_concurrency_all()``
  is the same over all hosts together (for budgets shared by every host of one address).
* ``throttled_at``: the unix time at which the 429 response was written (after its
  latency sleep), and ``throttle_until = throttled_at + throttle_retry_after_s``: a
  crawler honouring Retry-After sends no request to that host that arrives before
  ``throttle_until`` (a request already in flight when the 429 was sent excepted).

Helpers for the expected outcome: ``HostSpec.crawl_delay_s`` (the Crawl-delay of its
robots.txt) and ``expected_pages(spec)`` (the pages a robots-obeying crawler that retries
429 and 503 fetches). Note that robots.txt rules are path PREFIXES: ``Disallow: /p/1``
also disallows /p/10 .. /p/19, /p/100 .. /p/199 and so on, and since /p/1 is the root of
the left half of the link tree, every page below it becomes unreachable as well.

Library use::

    from many_hosts import ManyHostWeb, HostSpec, standard_web
    web = ManyHostWeb([HostSpec("h000", pages=10), HostSpec("h001", latency_ms=200)])
    web.start()                       # returns once every host listens
    url = web.url("h000")             # "http://127.0.0.1:PORT/p/0"
    ...                               # crawl
    rec = web.records()["h001"]       # thread-safe snapshot
    web.stop()

Command line: ``python3 bench/many_hosts.py --hosts 200 --pages 20`` (see ``--help``).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["HostSpec", "HostRecord", "ManyHostWeb", "standard_web", "expected_pages",
           "robots_allows"]

HOST_ADDR = "127.0.0.1"
MAX_LINE = 16 * 1024            # request line / header line limit (bytes)
MAX_HEADERS = 100
DEFAULT_IDLE_TIMEOUT_S = 75.0   # an idle keep-alive connection is closed after this

REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    429: "Too Many Requests", 501: "Not Implemented", 503: "Service Unavailable",
}

WORDS = ("spider crawl block lease node broker worker request result queue actor "
         "dispatch cron storage shard fetch parse link page index depth host delay "
         "robots politeness throttle retry").split()


# --------------------------------------------------------------------------- specs

@dataclass
class HostSpec:
    """One host of the web. Only ``name`` is required; the defaults give a normal,
    fast host with 20 pages, no robots.txt (404) and no faults."""

    name: str
    pages: int = 20
    latency_ms: int = 0
    robots: str | None = None
    throttle_at: int | None = None
    throttle_retry_after_s: int = 2
    error_until: float | None = None
    down: bool = False

    def __post_init__(self) -> None:
        if self.pages < 1:
            raise ValueError(f"{self.name}: pages must be >= 1")
        if self.latency_ms < 0:
            raise ValueError(f"{self.name}: latency_ms must be >= 0")
        if self.throttle_at is not None and self.throttle_at < 1:
            raise ValueError(f"{self.name}: throttle_at is 1-based")
        if self.throttle_retry_after_s < 0:
            raise ValueError(f"{self.name}: throttle_retry_after_s must be >= 0")

    @property
    def crawl_delay_s(self) -> float | None:
        """The Crawl-delay of the ``User-agent: *`` group of ``robots``, if any."""
        for ua, key, value in _robots_lines(self.robots):
            if ua and key == "crawl-delay":
                try:
                    return float(value)
                except ValueError:
                    return None
        return None

    def describe(self) -> str:
        """Short comma-separated tags, e.g. ``latency=45ms,robots,crawl-delay=1``."""
        if self.down:
            return "down"
        tags = [f"pages={self.pages}", f"latency={self.latency_ms}ms"]
        if self.robots is not None:
            tags.append("robots")
        if self.crawl_delay_s is not None:
            tags.append(f"crawl-delay={self.crawl_delay_s:g}")
        if self.throttle_at is not None:
            tags.append(f"429@{self.throttle_at}/retry-after={self.throttle_retry_after_s}")
        if self.error_until is not None:
            tags.append(f"503<{self.error_until:g}s")
        return ",".join(tags)


def _robots_lines(robots: str | None) -> Iterable[tuple[bool, str, str]]:
    """Yields (applies_to_star, key, value) for each rule line of a robots.txt."""
    if not robots:
        return
    star = False
    in_agents = False
    for raw in robots.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if not in_agents:
                star = False
            in_agents = True
            star = star or value == "*"
        else:
            in_agents = False
            yield star, key, value


def robots_allows(robots: str | None, path: str) -> bool:
    """Whether ``path`` may be fetched under the ``User-agent: *`` rules of ``robots``.

    Covers the subset this module generates: plain path prefixes in Allow and
    Disallow (no ``*`` or ``$`` wildcards), longest match wins, Allow wins a tie, an
    empty Disallow allows everything."""
    best_len, allowed = -1, True
    for star, key, value in _robots_lines(robots):
        if not star or key not in ("allow", "disallow") or not value:
            continue
        if path.startswith(value) and (len(value) > best_len or
                                       (len(value) == best_len and key == "allow")):
            best_len, allowed = len(value), key == "allow"
    return allowed


def expected_pages(spec: HostSpec) -> set[int]:
    """Page numbers a crawler starting at ``/p/0`` fetches from this host when it obeys
    robots.txt and retries 429 and 503: the pages reachable from /p/0 through pages
    robots.txt allows. Empty for a down host."""
    if spec.down:
        return set()
    seen: set[int] = set()
    stack = [0]
    while stack:
        i = stack.pop()
        if i >= spec.pages or i in seen or not robots_allows(spec.robots, f"/p/{i}"):
            continue
        seen.add(i)
        stack += [2 * i + 1, 2 * i + 2]
    return seen


ROBOTS_DISALLOW = "User-agent: *\nDisallow: /p/1\n"
ROBOTS_CRAWL_DELAY = "User-agent: *\nCrawl-delay: 1\nDisallow: /p/1\n"


def standard_web(n_hosts: int, pages_per_host: int, seed: int = 1) -> list[HostSpec]:
    """A mixed web of ``n_hosts`` hosts named h000, h001, ... (sorted), deterministic for
    a given seed.

    Host h000 is always normal (it is the natural start). Among the others, in this
    order of priority when hosts are few: one down; one with ``throttle_at=5`` and
    ``Retry-After: 2``; one with ``error_until=3.0``; one (two from 100 hosts on) with
    robots.txt ``Crawl-delay: 1`` plus ``Disallow: /p/1``; about 3 % slow (latency
    300 ms); about 5 % with robots.txt ``User-agent: *`` / ``Disallow: /p/1``. All other
    hosts (and the robots, throttle and error ones) have a latency of 20-60 ms.

    ``Disallow: /p/1`` is a prefix rule: it also disallows /p/10-/p/19, /p/100-/p/199
    and so on, and the pages only linked from disallowed ones (/p/3, /p/4, /p/7 ... the
    whole subtree under /p/1) become unreachable: see ``expected_pages``."""
    if n_hosts < 1:
        raise ValueError("n_hosts must be >= 1")
    rng = random.Random(seed)
    width = max(3, len(str(n_hosts - 1)))
    specs = [HostSpec(f"h{i:0{width}d}", pages=pages_per_host, latency_ms=rng.randint(20, 60))
             for i in range(n_hosts)]
    roles = ["down", "throttle", "error"]
    roles += ["crawl-delay"] * (1 if n_hosts < 100 else 2)
    roles += ["slow"] * max(1, round(n_hosts * 0.03))
    roles += ["robots"] * max(1, round(n_hosts * 0.05))
    roles = roles[:n_hosts - 1]
    for role, idx in zip(roles, rng.sample(range(1, n_hosts), len(roles))):
        s = specs[idx]
        if role == "down":
            s.down = True
        elif role == "throttle":
            s.throttle_at, s.throttle_retry_after_s = 5, 2
        elif role == "error":
            s.error_until = 3.0
        elif role == "crawl-delay":
            s.robots = ROBOTS_CRAWL_DELAY
        elif role == "slow":
            s.latency_ms = 300
        elif role == "robots":
            s.robots = ROBOTS_DISALLOW
    return specs


def uniform_web(n_hosts: int, pages_per_host: int, latency_ms: int) -> list[HostSpec]:
    """``n_hosts`` normal hosts h000, h001, ... with the same latency."""
    width = max(3, len(str(n_hosts - 1)))
    return [HostSpec(f"h{i:0{width}d}", pages=pages_per_host, latency_ms=latency_ms)
            for i in range(n_hosts)]


# --------------------------------------------------------------------------- records

@dataclass
class HostRecord:
    """What one host saw. ``requests``: (monotonic_s, unix_s, path, status) in order of
    arrival; see the module docstring for the exact semantics."""

    requests: list[tuple[float, float, str, int]] = field(default_factory=list)
    peak_concurrency: int = 0
    throttled_at: float | None = None
    throttle_until: float | None = None

    def to_json(self) -> dict:
        return {"requests": [list(r) for r in self.requests],
                "peak_concurrency": self.peak_concurrency,
                "throttled_at": self.throttled_at,
                "throttle_until": self.throttle_until}


class _Host:
    """Serving state of one host (mutated on the loop thread only)."""

    __slots__ = ("spec", "index", "port", "record", "in_flight", "page_requests",
                 "latency_s", "robots_body", "server", "sock")

    def __init__(self, spec: HostSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.port = 0
        self.record = HostRecord()
        self.in_flight = 0
        self.page_requests = 0
        self.latency_s = spec.latency_ms / 1000.0
        self.robots_body = None if spec.robots is None else spec.robots.encode()
        self.server: asyncio.AbstractServer | None = None
        self.sock: socket.socket | None = None   # the bound, non-listening socket if down


class _BadRequest(Exception):
    pass


# --------------------------------------------------------------------------- server

class ManyHostWeb:
    """Serves ``specs`` (names must be unique) from an event loop in a daemon thread."""

    def __init__(self, specs: Iterable[HostSpec],
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 link_host: str = HOST_ADDR) -> None:
        specs = list(specs)
        if not specs:
            raise ValueError("no hosts")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("host names must be unique")
        self.specs = specs
        self.idle_timeout_s = idle_timeout_s
        # The host name written in links and url() (the servers listen on HOST_ADDR):
        # e.g. "localhost", so a crawler has names to resolve.
        self.link_host = link_host
        self._in_flight_all = 0
        self._peak_all = 0                         # requests at once over every host
        self._hosts = {s.name: _Host(s, i) for i, s in enumerate(specs)}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hosts_block = b""
        self._sentences: list[bytes] = []
        self.started_monotonic: float | None = None
        self.started_unix: float | None = None

    # ---- public API

    def start(self, timeout_s: float = 60.0) -> None:
        """Starts the event loop in a daemon thread; returns once every host listens."""
        if self._thread is not None:
            raise RuntimeError("already started")
        _raise_fd_limit(len(self._hosts) + 1024)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="many_hosts", daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._startup(), self._loop)
        try:
            fut.result(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """Closes every listener and connection and ends the loop thread. Idempotent;
        ``records()`` still works afterwards."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout_s)
            except Exception:  # noqa: BLE001 - stop anyway
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()
        for h in self._hosts.values():
            if h.sock is not None:
                h.sock.close()
                h.sock = None

    def __enter__(self) -> "ManyHostWeb":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def port(self, name: str) -> int:
        port = self._hosts[name].port
        if not port:
            raise RuntimeError("not started")
        return port

    def url(self, name: str, path: str = "/p/0") -> str:
        return f"http://{self.link_host}:{self.port(name)}{path}"

    def start_url(self) -> str:
        """``/p/0`` of the first host that is up and has no throttle or error window."""
        for s in self.specs:
            if not s.down and s.throttle_at is None and s.error_until is None:
                return self.url(s.name)
        return self.url(self.specs[0].name)

    def records(self) -> dict[str, HostRecord]:
        """Thread-safe snapshot (copies) of every host's record, requests sorted by
        arrival."""
        with self._lock:
            snap = {name: HostRecord(list(h.record.requests), h.record.peak_concurrency,
                                     h.record.throttled_at, h.record.throttle_until)
                    for name, h in self._hosts.items()}
        for rec in snap.values():
            rec.requests.sort(key=lambda r: r[0])
        return snap

    def peak_concurrency_all(self) -> int:
        """The largest number of requests handled at once over all hosts together (the
        ground truth of a budget shared by every host of one address)."""
        with self._lock:
            return self._peak_all

    def to_json(self, full: bool = True) -> dict:
        """Records as a JSON-ready dict: full records (and specs) or a summary."""
        recs = self.records()
        hosts = {}
        for name, rec in recs.items():
            h = self._hosts[name]
            statuses = Counter(str(r[3]) for r in rec.requests)
            entry = {"port": h.port, "down": h.spec.down,
                     "requests": len(rec.requests),
                     "page_requests": sum(1 for r in rec.requests if r[2].startswith("/p/")),
                     "peak_concurrency": rec.peak_concurrency,
                     "statuses": dict(sorted(statuses.items())),
                     "throttled_at": rec.throttled_at,
                     "throttle_until": rec.throttle_until}
            if full:
                entry["spec"] = dataclasses.asdict(h.spec)
                entry["crawl_delay_s"] = h.spec.crawl_delay_s
                entry["expected_pages"] = len(expected_pages(h.spec))
                entry["log"] = [list(r) for r in rec.requests]
            hosts[name] = entry
        return {"started_unix": self.started_unix,
                "started_monotonic": self.started_monotonic,
                "total_requests": sum(e["requests"] for e in hosts.values()),
                "hosts": hosts}

    # ---- loop side

    async def _startup(self) -> None:
        for h in self._hosts.values():
            if h.spec.down:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((HOST_ADDR, 0))      # reserved, never listening: refuses
                h.port = s.getsockname()[1]
                h.sock = s
                continue
            h.server = await asyncio.start_server(
                lambda r, w, h=h: self._serve_connection(h, r, w),
                HOST_ADDR, 0, limit=MAX_LINE, backlog=1024, start_serving=False)
            h.port = h.server.sockets[0].getsockname()[1]
        self._build_shared_content()
        self.started_monotonic = time.monotonic()
        self.started_unix = time.time()
        for h in self._hosts.values():
            if h.server is not None:
                await h.server.start_serving()

    async def _shutdown(self) -> None:
        for h in self._hosts.values():
            if h.server is not None:
                h.server.close()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _build_shared_content(self) -> None:
        links = "".join(f'<li><a href="http://{self.link_host}:{h.port}/p/0">{h.spec.name}</a></li>\n'
                        for h in self._hosts.values())
        self._hosts_block = f'<h2>Hosts</h2>\n<ul class="hosts">\n{links}</ul>\n'.encode()
        rng = random.Random(4242)
        self._sentences = [("<p>" + " ".join(rng.choice(WORDS) for _ in range(11))
                            + ".</p>\n").encode() for _ in range(61)]

    def _page_parts(self, h: _Host, i: int) -> list[bytes]:
        name = h.spec.name
        kids = "".join(f'<li><a href="/p/{j}">page {j}</a></li>\n'
                       for j in (2 * i + 1, 2 * i + 2) if j < h.spec.pages)
        head = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
                f"<title>{name} page {i}</title></head><body>\n<h1>{name} page {i}</h1>\n"
                f"<ul>\n{kids}</ul>\n").encode()
        n = len(self._sentences)
        a, b = (h.index * 7 + i * 3) % n, (h.index + 5 * i) % (n - 1) + 1
        filler = b"".join(self._sentences[(a + k * b) % n] for k in range(14))
        tail = filler + b"</body></html>\n"
        return [head, self._hosts_block, tail] if i == 0 else [head, tail]

    async def _serve_connection(self, h: _Host, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        try:
            writer.transport.set_write_buffer_limits(high=0)   # drain() = fully written
            while await self._serve_request(h, reader, writer):
                pass
        except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
            pass                                  # client went away or idled out
        except asyncio.CancelledError:
            pass                                  # stop()
        except Exception:  # noqa: BLE001 - never let one connection hurt the loop
            traceback.print_exc(file=sys.stderr)
        finally:
            writer.close()

    async def _serve_request(self, h: _Host, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> bool:
        """Serves one request; returns whether the connection stays open."""
        try:
            async with asyncio.timeout(self.idle_timeout_s):
                line = await reader.readline()
        except ValueError:                        # line longer than MAX_LINE
            t_mono, t_unix = time.monotonic(), time.time()
            return await self._answer_bad(h, writer, t_mono, t_unix, "<request line too long>")
        if not line or not line.endswith(b"\n"):
            return False                          # EOF (possibly mid-line)
        if line == b"\r\n" or line == b"\n":
            return True                           # tolerated empty line between requests
        t_mono, t_unix = time.monotonic(), time.time()
        h.in_flight += 1
        if h.in_flight > h.record.peak_concurrency:
            h.record.peak_concurrency = h.in_flight
        self._in_flight_all += 1
        self._peak_all = max(self._peak_all, self._in_flight_all)
        try:
            return await self._handle(h, reader, writer, line, t_mono, t_unix)
        finally:
            h.in_flight -= 1
            self._in_flight_all -= 1

    async def _answer_bad(self, h: _Host, writer: asyncio.StreamWriter, t_mono: float,
                          t_unix: float, what: str) -> bool:
        h.in_flight += 1
        if h.in_flight > h.record.peak_concurrency:
            h.record.peak_concurrency = h.in_flight
        self._in_flight_all += 1
        self._peak_all = max(self._peak_all, self._in_flight_all)
        try:
            self._log(h, t_mono, t_unix, what, 400)
            await self._respond(writer, 400, b"bad request\n", "text/plain", False)
        finally:
            h.in_flight -= 1
            self._in_flight_all -= 1
        return False

    def _log(self, h: _Host, t_mono: float, t_unix: float, path: str, status: int) -> None:
        with self._lock:
            h.record.requests.append((t_mono, t_unix, path, status))

    async def _handle(self, h: _Host, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, line: bytes, t_mono: float,
                      t_unix: float) -> bool:
        parts = line.rstrip(b"\r\n").split(b" ")
        target = parts[1].decode("latin-1") if len(parts) == 3 else ""
        try:
            if (len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper()
                    or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")
                    or not (target.startswith("/") or target.startswith("http://"))):
                target = line.rstrip(b"\r\n")[:200].decode("latin-1")
                raise _BadRequest
            method = parts[0]
            http11 = parts[2] == b"HTTP/1.1"
            conn_tokens: set[str] = set()
            content_length = 0
            chunked = False
            for _ in range(MAX_HEADERS + 1):
                try:
                    hl = await reader.readline()
                except ValueError:
                    raise _BadRequest from None
                if not hl.endswith(b"\n"):
                    return False                  # EOF in the header: nothing to answer
                if hl == b"\r\n" or hl == b"\n":
                    break
                key, sep, value = hl.partition(b":")
                if not sep or not key or key != key.strip():
                    raise _BadRequest
                key = key.lower()
                if key == b"connection":
                    conn_tokens.update(t.strip().lower() for t in
                                       value.decode("latin-1").split(","))
                elif key == b"content-length":
                    v = value.strip()
                    if not v.isdigit():
                        raise _BadRequest
                    content_length = int(v)
                elif key == b"transfer-encoding":
                    chunked = True
            else:
                raise _BadRequest                 # too many header lines
        except _BadRequest:
            self._log(h, t_mono, t_unix, target, 400)
            await self._respond(writer, 400, b"bad request\n", "text/plain", False)
            return False

        if chunked:
            self._log(h, t_mono, t_unix, target, 501)
            await self._respond(writer, 501, b"request bodies: Content-Length only\n",
                                "text/plain", False)
            return False
        while content_length > 0:                 # read and ignore the body
            chunk = await reader.readexactly(min(content_length, 65536))
            content_length -= len(chunk)
        keep = ("close" not in conn_tokens) if http11 else ("keep-alive" in conn_tokens)

        path = target
        if path.startswith("http://"):            # absolute form: keep the path only
            slash = path.find("/", 7)
            path = path[slash:] if slash >= 0 else "/"
        path = path.split("?", 1)[0].split("#", 1)[0]

        head_only = method == b"HEAD"
        extra = ""
        ctype = "text/plain"
        parts_out: list[bytes]
        sleep = False
        if method != b"GET" and not head_only:
            status, parts_out, extra = 405, [b"method not allowed\n"], "Allow: GET, HEAD\r\n"
        elif path == "/robots.txt":
            if h.robots_body is None:
                status, parts_out = 404, [b"no robots.txt\n"]
            else:
                status, parts_out = 200, [h.robots_body]
        elif path.startswith("/p/"):
            sleep = True
            h.page_requests += 1
            spec = h.spec
            if spec.throttle_at is not None and h.page_requests == spec.throttle_at:
                status, parts_out = 429, [b"too many requests\n"]
                extra = f"Retry-After: {spec.throttle_retry_after_s}\r\n"
            elif (spec.error_until is not None
                  and t_mono - (self.started_monotonic or 0.0) < spec.error_until):
                status, parts_out = 503, [b"service unavailable\n"]
            else:
                num = path[3:]
                if num.isdigit() and str(int(num)) == num and int(num) < spec.pages:
                    status, parts_out = 200, self._page_parts(h, int(num))
                    ctype = "text/html; charset=utf-8"
                else:
                    status, parts_out = 404, [b"no such page\n"]
        else:
            status, parts_out = 404, [b"not found\n"]

        self._log(h, t_mono, t_unix, target, status)
        if sleep and h.latency_s > 0:
            await asyncio.sleep(h.latency_s)
        if status == 429:
            now = time.time()
            with self._lock:
                h.record.throttled_at = now
                h.record.throttle_until = now + h.spec.throttle_retry_after_s
        await self._respond(writer, status, parts_out, ctype, keep, head_only=head_only,
                            extra=extra)
        return keep

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes | list[bytes],
                       ctype: str, keep: bool, *, head_only: bool = False,
                       extra: str = "") -> None:
        parts = body if isinstance(body, list) else [body]
        length = sum(len(p) for p in parts)
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nServer: many_hosts\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n{extra}"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode()
        if head_only:
            writer.write(head)
        else:
            writer.writelines([head, *parts])
        await writer.drain()


def _raise_fd_limit(needed: int) -> None:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        pass


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Serves a many-host test web on 127.0.0.1 (one port per host) and "
                    "records every request per host: the ground truth of politeness "
                    "tests. Prints 'many_hosts: N hosts on 127.0.0.1 ports A-B, start URL' "
                    "once every host listens; on SIGTERM or SIGINT prints a one-line JSON "
                    "summary per host and exits 0. See the module docstring for the "
                    "content and the behaviours.",
        epilog="The standard web: h000 normal; one host down, one answering 429 "
               "(Retry-After: 2) to its 5th page request, one answering 503 for its "
               "first 3 s, one or two with robots.txt Crawl-delay: 1 and Disallow: /p/1, "
               "~3% slow (300 ms), ~5% with Disallow: /p/1 (a prefix: it also blocks "
               "/p/10.., /p/1xx and cuts off every page under /p/1); others 20-60 ms.")
    ap.add_argument("--hosts", type=int, default=200, help="number of hosts (default 200)")
    ap.add_argument("--pages", type=int, default=20,
                    help="pages per host, /p/0 .. /p/PAGES-1 (default 20)")
    ap.add_argument("--uniform", action="store_true",
                    help="all hosts normal with --latency-ms instead of the mixed standard web")
    ap.add_argument("--latency-ms", type=int, default=50,
                    help="page latency of every host with --uniform (default 50; the "
                         "standard web draws 20-60 ms, 300 ms for slow hosts)")
    ap.add_argument("--seed", type=int, default=1,
                    help="seed of the standard web's layout (default 1)")
    ap.add_argument("--print-urls", action="store_true",
                    help="before the banner, print one line per host: 'NAME URL TAGS' "
                         "(URL of its /p/0; TAGS e.g. latency=45ms,robots or down)")
    ap.add_argument("--record", metavar="FILE",
                    help="on exit, write the full records (every request of every host, "
                         "peak concurrency, throttle times, specs) as JSON to FILE")
    ap.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S,
                    help="close keep-alive connections idle this many seconds "
                         f"(default {DEFAULT_IDLE_TIMEOUT_S:g})")
    args = ap.parse_args(argv)
    if args.hosts < 1:
        ap.error("--hosts must be >= 1")
    if args.pages < 1:
        ap.error("--pages must be >= 1")
    if args.latency_ms < 0:
        ap.error("--latency-ms must be >= 0")

    specs = (uniform_web(args.hosts, args.pages, args.latency_ms) if args.uniform
             else standard_web(args.hosts, args.pages, seed=args.seed))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    web = ManyHostWeb(specs, idle_timeout_s=args.idle_timeout)
    web.start()
    try:
        if args.print_urls:
            for s in specs:
                print(f"{s.name} {web.url(s.name)} {s.describe()}")
        ports = [web.port(s.name) for s in specs]
        print(f"many_hosts: {len(specs)} hosts on {HOST_ADDR} ports {min(ports)}-{max(ports)}, "
              f"start {web.start_url()}", flush=True)
        while not stop.wait(3600):
            pass
    except BrokenPipeError:
        pass
    finally:
        web.stop()
    if args.record:
        with open(args.record, "w") as f:
            json.dump(web.to_json(full=True), f)
    try:
        print(json.dumps(web.to_json(full=False), separators=(",", ":")), flush=True)
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
