"""The Scrapy bridge's side of the worker hub (docs/protocol.md): one run, its results
polled in a thread of their own, pushes and acks settled together.

Threads: Scrapy's reactor thread queues requests to push (``queue_push``), tells which
results Scrapy is done with (``done``) and which downloader-middleware request sides are
under way (``chain_opened``/``chain_closed``); the pump thread polls, and every 50 ms
pushes what was queued and then acks what was done (``settle``), so a result is acked
only after the requests its callback made are stored by the broker and its items are on
disk. No Scrapy import here.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from .hub import ConnectionLost, HubError
from .scrapy_requests import PayloadCodec
from .worker import JsonLinesSink, Spider, Worker

SETTLE_EVERY = 0.05        # s between two settles (one Push and one Ack for all pages)
POLL_WAIT_MS = 1000        # a Poll that finds nothing is held this long by the broker
PUSH_CHUNK = 500           # requests per Push


class ItemsFile(JsonLinesSink):
    """The exactly-once items file (JSON lines with each page's requestHash). A page's
    lines stay in memory until ``flush`` is given its hash, right before the page is acked:
    a bridge killed before the ack left nothing of it on disk (its result goes to another
    bridge of the run, or comes back to this one started again), and one killed between
    the write and the ack's answer (a round trip) left lines another bridge writes again
    (with a restart on the same file, the page is skipped: exactly once)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._pending: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def write_hash(self, request_hash: str, items: list[dict]) -> None:
        out = []
        for item in items:
            item = dict(item)
            item.setdefault("requestHash", request_hash)
            out.append(json.dumps(item, ensure_ascii=False, default=str).encode() + b"\n")
        with self._lock:
            self._pending.setdefault(request_hash, []).extend(out)
        if items:
            self.seen.add(request_hash)

    def flush(self, hashes=None) -> None:
        """Writes and fsyncs the lines of the pages ``hashes`` (all when None; lines of no
        page, from responses a middleware answered here, always)."""
        with self._lock:
            keys = list(self._pending) if hashes is None else [*hashes, ""]
            lines = [line for k in keys for line in self._pending.pop(k, ())]
        if lines:
            self.f.write(b"".join(lines))
            self.f.flush()
            os.fsync(self.f.fileno())


class Bridge:
    """Serves one run of a job whose FullClassName is ``cls``."""

    def __init__(self, broker: str, token: str, cls: str, log: Callable[[str], None] = print,
                 poll_max: int = 200, poll_max_bytes: int = 4 * 1024 * 1024,
                 sink: JsonLinesSink | None = None) -> None:
        self.w = Worker(broker, token, cls, Spider(), log=log, poll_max=poll_max,
                        poll_max_bytes=poll_max_bytes)
        self.log = log
        self.sink = sink
        self.codec = PayloadCodec(token)   # requests as payloads, signed with the token
        self.run: dict[str, Any] | None = None
        self.exited = threading.Event()    # the broker ended the run (Exit)
        self.stopped = threading.Event()   # this process is done with the run
        self.lock = threading.Lock()
        self.ready: collections.deque = collections.deque()  # results for the engine
        self.ready_bytes = 0
        self.to_push: list[dict] = []      # Push JSON, sent at the next settle
        self.finished: list[dict] = []     # results Scrapy is done with, acked at a settle
        self.held: list[dict] = []         # done while request sides were under way
        self.open_chains = 0               # request sides under way (their pushes pending)
        self.start_done = False            # every start request went through the scheduler
        self.completed = False             # start requests pushed, Complete answered
        self.closing = False               # the spider is closing: no more Polls
        self.fatal = ""                    # bad input seen before anything was pushed
        self.no_payload_seen = False
        self.unserializable = 0            # requests dropped as not serializable (mid-crawl)
        self.wake: Callable[[], None] = lambda: None          # the engine, to look again
        self.count: Callable[[str, int], None] = lambda k, n: None  # Scrapy's stats
        self.stats: collections.Counter = collections.Counter()
        self._pump_thread: threading.Thread | None = None

    # ---- run lifecycle (main thread) ------------------------------------------------------

    def wait_for_run(self) -> dict[str, Any]:
        """Connects and waits for the broker's Run; then polls in the background."""
        self.w._connect()
        while self.run is None:
            for kind, x in self.w.take_events(wait=0.2):
                if kind == "run" and self.run is None:
                    self.run = x
                elif kind == "exit" and self.run and x == self.run["identity"]:
                    self.exited.set()
            if self.run is None and (self.w.hub is None or self.w.hub.closed):
                self.w._connect()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True,
                                             name="spiderhub-pump")
        self._pump_thread.start()
        return self.run

    def stop(self) -> None:
        """The crawl is over in this process: the last pushes and acks, then the link
        closes (results polled but not handled go to the run's other workers, or come back
        to a bridge started again)."""
        self.closing = True
        self.stopped.set()
        if self._pump_thread is not None:
            self._pump_thread.join(30)
        if self.completed and not self.fatal:
            self.settle()
        if self.w.hub is not None:
            self.w.hub.close()

    # ---- what the reactor thread calls ----------------------------------------------------

    def queue_push(self, wire: dict) -> None:
        with self.lock:
            self.to_push.append(wire)

    def chain_opened(self) -> None:
        with self.lock:
            self.open_chains += 1

    def chain_closed(self) -> None:
        with self.lock:
            self.open_chains -= 1
            if self.open_chains == 0 and self.held:
                self.finished.extend(self.held)
                self.held = []

    def done(self, result: dict) -> None:
        """Scrapy is done with ``result``: acked at the next settle, after the requests
        queued so far. While a downloader middleware's request side is under way (one that
        answers later: its request may come from ``result``) it is held until none is.
        Called on the reactor thread, like chain_opened/closed: a request side that
        finishes at once is never seen under way."""
        with self.lock:
            (self.held if self.open_chains else self.finished).append(result)

    def take_result(self) -> dict | None:
        with self.lock:
            if not self.ready:
                return None
            r = self.ready.popleft()
            self.ready_bytes -= len(r.get("content") or "")
            return r

    def pending(self) -> bool:
        """Whether the crawl can still give this process work: the run goes on, results
        wait, or request sides are under way."""
        with self.lock:
            busy = bool(self.ready) or self.open_chains > 0
        return busy or not (self.exited.is_set() or self.stopped.is_set() or self.fatal)

    # ---- the pump thread --------------------------------------------------------------------

    def _pump(self) -> None:
        identity = self.run["identity"]
        poll = None
        while not self.stopped.is_set():
            for kind, x in self.w.take_events():
                if kind == "exit" and x == identity:
                    self.exited.set()
            if self.exited.is_set() or self.fatal:
                break
            if not self.completed:
                with self.lock:
                    ready = self.start_done and self.open_chains == 0 and not self.fatal
                if ready:
                    self._complete(identity)
                else:
                    time.sleep(SETTLE_EVERY)
                continue
            self.settle()
            if poll is None and not self.closing and self._room():
                poll = self._send("Poll", identity, self.w.poll_max, POLL_WAIT_MS,
                                  self.w.poll_max_bytes)
            if poll is None:
                time.sleep(SETTLE_EVERY)
                continue
            try:
                batch = poll.result(timeout=SETTLE_EVERY)
            except FutureTimeout:
                continue
            except HubError as e:  # the connection dropped (reconnect below) or the run ended
                if not isinstance(e, ConnectionLost):
                    if "unknown or finished run" not in str(e):  # Exit is on its way
                        self.log(f"spiderhub-scrapy: Poll failed: {e}")
                    time.sleep(SETTLE_EVERY)
                batch = []
            poll = None
            if isinstance(batch, list) and batch:
                size = sum(len(r.get("content") or "") for r in batch)
                with self.lock:
                    self.ready.extend(batch)
                    self.ready_bytes += size
                self.stats["results"] += len(batch)
                self.count("spiderhub/results", len(batch))
                self.wake()
        if self.completed:
            self.settle()
        self.wake()

    def _send(self, target: str, *args: Any):
        """A call whose answer comes later (a Future), on a connection made again first if
        it dropped; None while the process stops."""
        if self.w.hub is None or self.w.hub.closed:
            self.w._connect()
            if self.w.hub is None or self.w.hub.closed:
                return None
        return self.w.hub.send(target, *args)

    def _room(self) -> bool:
        """Results waiting for Scrapy: fewer than a Poll's count and bytes (brokers that
        know maxBytes answer about that much at most)."""
        with self.lock:
            return len(self.ready) < self.w.poll_max and self.ready_bytes < self.w.poll_max_bytes

    def _complete(self, identity: str) -> None:
        with self.lock:
            batch, self.to_push = self.to_push, []
        self.push(batch)
        self.w._call("Complete", identity)
        self.completed = True
        self.log(f"spiderhub-scrapy: {len(batch)} start requests pushed, run complete")

    def settle(self) -> None:
        """Pushes what was queued, then acks the results Scrapy finished with (taken in one
        go: a result is in ``finished`` only after its requests are in ``to_push``)."""
        with self.lock:
            finished, self.finished = self.finished, []
            batch, self.to_push = self.to_push, []
        if batch:
            self.push(batch)
        if finished:
            if self.sink:  # items on disk before their pages are acked
                self.sink.flush([r.get("requestHash", "") for r in finished])
            ids = [int(r["resultId"]) for r in finished]
            try:
                self.w._call("Ack", self.run["identity"], ids)
                self.stats["acked"] += len(ids)
                self.count("spiderhub/acked", len(ids))
            except HubError as e:  # the run ended meanwhile: nothing left to ack
                self.log(f"spiderhub-scrapy: Ack refused: {e}")

    def push(self, wire: list[dict]) -> None:
        """Pushes ``wire`` (Push JSON) PUSH_CHUNK at a time; what the broker did not take
        (duplicates of requests it has, requests past the run's scope limits) is counted as
        Scrapy's duplicate filter counts. A chunk the broker refuses is pushed again one
        request at a time, so only the requests it refuses are lost (and logged)."""
        identity = self.run["identity"]
        for i in range(0, len(wire), PUSH_CHUNK):
            chunk = wire[i:i + PUSH_CHUNK]
            try:
                taken = int(self.w._call("Push", identity, chunk) or 0)
            except ConnectionLost:
                return  # this process stops
            except HubError as e:
                if len(chunk) == 1:
                    self.stats["refused"] += 1
                    self.count("spiderhub/push/refused", 1)
                    self.log(f"spiderhub-scrapy: the broker refused {chunk[0]['url']!r}: {e}")
                    continue
                for one in chunk:
                    self.push([one])
                continue
            self.stats["pushed"] += len(chunk)
            self.stats["taken"] += taken
            self.count("spiderhub/pushed", len(chunk))
            if len(chunk) > taken:
                self.count("dupefilter/filtered", len(chunk) - taken)
                self.count("spiderhub/dupefilter/broker", len(chunk) - taken)
