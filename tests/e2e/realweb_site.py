#!/usr/bin/env python3
"""A generated web site served by a threaded stdlib HTTP server on 127.0.0.1, for tests and
benchmarks that need pages like the real web's: large HTML pages, huge pages, binary
downloads behind URLs without an extension, links that must never be followed. Standard
library only; usable as a module (the server runs in a thread of the caller) or from the
command line (the server runs until SIGTERM/SIGINT).

The site, described in code:
  * `pages` ordinary HTML pages: page 0 is /index.html (the start page), page i is
    /p/<i>.html. Each is exactly `page_kb` KiB of UTF-8 HTML (headings, paragraphs of words
    with some non-ASCII ones, lists, a table, a few cross links) with a unique title
    "Page <i> ...". Page i links to pages 10i+1 .. 10i+10 (those below `pages`), to i-1,
    i+1 and the index, so a crawl from the start page reaches every page within
    ceil(log10(pages)) + 1 hops.
  * special paths, all linked from the start page (section "Downloads"):
      add_big_html(path, size)   an HTML page of exactly `size` bytes (valid UTF-8),
                                 written in 64 KiB chunks with Content-Length;
      add_stream(path, size, content_type, chunk, sleep)
                                 a binary-ish body (e.g. application/pdf) of `size` bytes
                                 with Content-Length, written `chunk` bytes at a time with
                                 `sleep` seconds between chunks; the bytes it managed to
                                 write before the client went away are recorded;
      add_page(path, body, content_type)
                                 any fixed body;
      add_redirect(path, location, status, content_type)
                                 a redirect (by default 302 whose own Content-Type is
                                 application/octet-stream);
      add_never(path)            a link that should never be followed (served if asked,
                                 so a request is visible in the counters).
  * /robots.txt allows everything (text/plain); anything else is 404.

Counters (thread-safe): requests(path) per request target (path and query, e.g.
"/download?id=1"), written(path) (a list: bytes written by each finished response of that
path, so an aborted download shows how far it got), inflight(path) (bytes written so far by
responses still going: a peer that stopped reading without closing shows up here),
bytes_total(). `GET /__stats` answers them as
JSON (for a server run as a subprocess); it is not linked from anywhere.

Command line:
  realweb_site.py --pages 1000 --page-kb 1024 [--port 0] [--big /big/20mb.html=20000000]
                  [--stream '/download?id=1=5242880:application/pdf'] [--never /files/x.pdf]
prints "realweb_site: serving http://127.0.0.1:PORT/index.html ..." on stdout once it
listens.
"""
import argparse
import http.server
import json
import random
import signal
import socket
import sys
import threading
import time

# Words of the filler text; a few are not ASCII so every page is real UTF-8.
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from "
         "at which but have an they you were her she there been one all we their has would "
         "when if so no will more can who out about up them some could what into only time "
         "other than then its over also after two new first any these may people year "
         "spider crawl broker node worker request result queue page index link depth fetch "
         "parse block lease storage archive library museum river harbour market station "
         "café naïve façade Zürich Straße señor déjà-vu coöperate 東京 日本語 Ελληνικά русский "
         "—").split()
CHUNK = 64 * 1024


def _sentence(rng, n):
    words = [rng.choice(WORDS) for _ in range(n)]
    words[0] = words[0].capitalize()
    s = " ".join(words)
    if rng.random() < 0.3:  # some inline markup and an entity now and then
        k = rng.randrange(len(words))
        s = s.replace(words[k], f"<em>{words[k]}</em>", 1)
    if rng.random() < 0.1:
        s += " &amp; more"
    return s + rng.choice([".", ".", ".", "?", "!"])


def _paragraph_pool(seed, count=256):
    """HTML fragments (bytes) pages are assembled from: paragraphs, lists, tables."""
    rng = random.Random(seed)
    pool = []
    for k in range(count):
        kind = rng.random()
        if kind < 0.75:
            text = " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(3, 7)))
            frag = f"<p>{text}</p>\n"
        elif kind < 0.9:
            items = "".join(f"<li>{_sentence(rng, rng.randint(4, 10))}</li>"
                            for _ in range(rng.randint(3, 8)))
            frag = f"<ul class=\"l{k}\">{items}</ul>\n"
        else:
            rows = "".join("<tr>" + "".join(f"<td>{rng.choice(WORDS)} {rng.randint(0, 9999)}</td>"
                                            for _ in range(4)) + "</tr>"
                           for _ in range(rng.randint(3, 6)))
            frag = f"<table><tr><th>a</th><th>b</th><th>c</th><th>d</th></tr>{rows}</table>\n"
        if rng.random() < 0.2:
            frag = f"<h2>{_sentence(rng, rng.randint(3, 6))}</h2>\n" + frag
        pool.append(frag.encode())
    return pool



class QuietServer(http.server.ThreadingHTTPServer):
    """A threaded test server that does not print a traceback when a crawler hangs up (an
    aborted download, an idle keep-alive connection it closed): that is normal here."""
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)

class Site:
    """The generated site and its server. `with Site(pages=20) as site:` starts it."""

    def __init__(self, pages=20, page_kb=200, seed=1, host="127.0.0.1", port=0, fanout=10):
        if pages < 1:
            raise ValueError("a site has at least the start page")
        self.pages = pages
        self.page_bytes = int(page_kb * 1024)
        self.seed = seed
        self.fanout = fanout
        self.host = host
        self.port = port
        self.special = {}  # request target -> (kind, params)
        self.unlinked = set()  # special paths the start page does not link
        self._pool = _paragraph_pool(seed)
        # ~1 MiB of whole fragments: big pages repeat it (valid UTF-8 at every repeat).
        block, n, i = [], 0, 0
        while n < (1 << 20):
            frag = self._pool[i % len(self._pool)]
            block.append(frag)
            n += len(frag)
            i += 1
        self._big_block = b"".join(block)
        self._lock = threading.Lock()
        self._requests = {}
        self._written = {}
        self._inflight = {}  # id of a response being written -> (target, bytes so far)
        self._bytes_total = 0
        self._server = None
        self._thread = None
        self.base = None

    # ---- description ---------------------------------------------------------------

    def add_big_html(self, path, size):
        self.special[path] = ("big", {"size": int(size)})
        return self

    def add_stream(self, path, size, content_type="application/pdf", chunk=CHUNK, sleep=0.02):
        self.special[path] = ("stream", {"size": int(size), "type": content_type,
                                         "chunk": int(chunk), "sleep": float(sleep)})
        return self

    def add_page(self, path, body, content_type="text/html; charset=utf-8", linked=True):
        """A page of fixed bytes; `linked=False` keeps it off the start page (reached only
        through a redirect, say)."""
        self.special[path] = ("fixed", {"body": body if isinstance(body, bytes) else body.encode(),
                                        "type": content_type})
        if not linked:
            self.unlinked.add(path)
        return self

    def add_redirect(self, path, location, status=302,
                     content_type="application/octet-stream"):
        """A redirect to `location`; its own Content-Type is deliberately not HTML (a
        crawler judges the target, not the hop)."""
        self.special[path] = ("redirect", {"location": location, "status": int(status),
                                           "type": content_type})
        return self

    def add_never(self, path, content_type="application/pdf"):
        self.special[path] = ("never", {"type": content_type})
        return self

    # ---- what it serves --------------------------------------------------------------

    @staticmethod
    def page_path(i):
        return "/index.html" if i == 0 else f"/p/{i}.html"

    def url(self, path):
        return self.base + path

    def page_urls(self):
        """URLs of the ordinary pages (the start page included)."""
        return {self.url(self.page_path(i)) for i in range(self.pages)}

    def title(self, i):
        rng = random.Random(self.seed * 7919 + i)
        return f"Page {i}: {rng.choice(WORDS)} {rng.choice(WORDS)}"

    def page(self, i):
        """The bytes of ordinary page i: exactly page_bytes long (unless the links alone
        are longer)."""
        rng = random.Random(self.seed * 1000003 + i)
        links = [j for j in range(self.fanout * i + 1, self.fanout * i + self.fanout + 1)
                 if j < self.pages]
        links += [j for j in (i - 1, i + 1, 0) if 0 <= j < self.pages and j != i]
        head = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
                f"<title>{self.title(i)}</title>\n",
                f"<meta name=\"description\" content=\"generated page {i} of {self.pages}\">\n",
                "</head><body>\n<header><nav><ul>\n"]
        head += [f"<li><a href=\"{self.page_path(j)}\">page {j}</a></li>\n" for j in links]
        head.append("</ul></nav></header>\n")
        if i == 0 and self.special:
            head.append("<section id=\"downloads\"><h2>Downloads</h2><ul>\n")
            for path in (p for p in self.special if p not in self.unlinked):
                head.append(f"<li><a href=\"{path.replace('&', '&amp;')}\">{path}</a></li>\n")
            head.append("</ul></section>\n")
        head.append(f"<main><h1>{self.title(i)}</h1>\n")
        out = [s.encode() for s in head]
        tail = b"</main>\n<footer>generated by realweb_site</footer>\n</body></html>\n"
        size = sum(len(b) for b in out) + len(tail)
        budget = self.page_bytes - 64  # room for the padding comment
        n = 0
        while True:
            frag = self._pool[rng.randrange(len(self._pool))]
            if size + len(frag) > budget:
                break
            out.append(frag)
            size += len(frag)
            n += 1
            if n % 12 == 0 and self.pages > 1:  # a cross link now and then, like real text
                j = rng.randrange(self.pages)
                link = f"<p>See also <a href=\"{self.page_path(j)}\">page {j}</a>.</p>\n".encode()
                out.append(link)
                size += len(link)
        pad = self.page_bytes - size - len(b"<!--  -->\n")
        if pad >= 0:
            out.append(b"<!-- " + b"." * pad + b" -->\n")
        out.append(tail)
        return b"".join(out)

    # ---- counters --------------------------------------------------------------------

    def _count(self, target):
        with self._lock:
            self._requests[target] = self._requests.get(target, 0) + 1

    def _wrote(self, target, n):
        with self._lock:
            self._written.setdefault(target, []).append(n)
            self._bytes_total += n

    def requests(self, target=None):
        """Requests of one target so far, or a copy of every count."""
        with self._lock:
            if target is None:
                return dict(self._requests)
            return self._requests.get(target, 0)

    def written(self, target=None):
        """Bytes of the body written by each response of `target` (a list), or a copy of
        them all."""
        with self._lock:
            if target is None:
                return {k: list(v) for k, v in self._written.items()}
            return list(self._written.get(target, []))

    def inflight(self, target=None):
        """Bytes written so far by the responses still being written (of `target`)."""
        with self._lock:
            return [n for t, n in self._inflight.values() if target is None or t == target]

    def bytes_total(self):
        with self._lock:
            return self._bytes_total

    def stats(self):
        with self._lock:
            return {"requests": dict(self._requests),
                    "written": {k: list(v) for k, v in self._written.items()},
                    "bytesTotal": self._bytes_total}

    # ---- server ----------------------------------------------------------------------

    def start(self):
        site = self

        class Handler(_Handler):
            pass
        Handler.site = site

        self._server = QuietServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self.base = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="realweb_site", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as crawlers expect
    timeout = 30                   # an idle keep-alive connection is dropped after this
    site = None                    # set per server by Site.start

    def log_message(self, fmt, *args):  # quiet: tests print their own figures
        pass

    def _headers(self, status, content_type, length):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, target, status, content_type, body):
        self._headers(status, content_type, len(body))
        if self.command == "HEAD":
            return
        self._write_chunks(target, [body], 0)

    def _write_chunks(self, target, chunks, sleep):
        """Writes the chunks, sleeping between them; records how many bytes got written
        before the peer went away (or all of them)."""
        n = 0
        key = object()
        site = self.site
        try:
            for k, c in enumerate(chunks):
                if k and sleep:
                    time.sleep(sleep)
                self.wfile.write(c)
                n += len(c)
                if sleep or k % 16 == 15:  # slow or long responses show their progress
                    with site._lock:
                        site._inflight[key] = (target, n)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True
        finally:
            with site._lock:
                site._inflight.pop(key, None)
            site._wrote(target, n)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        site = self.site
        target = self.path
        if target.startswith("http://") or target.startswith("https://"):  # absolute form
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        if target == "/__stats":  # not counted: it is not part of the site
            body = json.dumps(site.stats()).encode()
            self._headers(200, "application/json", len(body))
            self.wfile.write(body)
            return
        site._count(target)
        if target == "/robots.txt":
            return self._send(target, 200, "text/plain", b"User-agent: *\nAllow: /\n")
        if target in site.special:
            kind, p = site.special[target]
            if kind == "big":
                return self._big(target, p["size"])
            if kind == "stream":
                return self._stream(target, p)
            if kind == "fixed":
                return self._send(target, 200, p["type"], p["body"])
            if kind == "redirect":
                body = b"moved\n"
                self.send_response(p["status"])
                self.send_header("Location", p["location"])
                self.send_header("Content-Type", p["type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self._write_chunks(target, [body], 0)
                return
            body = b"%PDF-1.4\n% a file no crawler should fetch\n%%EOF\n"
            return self._send(target, 200, p["type"], body)
        page = None
        if target == "/" or target == "/index.html":
            page = 0
        elif target.startswith("/p/") and target.endswith(".html"):
            num = target[3:-5]
            if num.isascii() and num.isdigit() and 1 <= int(num) < site.pages \
                    and target == site.page_path(int(num)):
                page = int(num)
        if page is None:
            return self._send(target, 404, "text/html; charset=utf-8",
                              b"<!DOCTYPE html><html><head><title>Not found</title></head>"
                              b"<body>not found</body></html>\n")
        return self._send(target, 200, "text/html; charset=utf-8", site.page(page))

    def _big(self, target, size):
        site = self.site
        head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>Big page {target} ({size} bytes)</title></head><body>\n"
                f"<p><a href=\"/index.html\">index</a></p>\n").encode()
        tail = b"</body></html>\n"
        self._headers(200, "text/html; charset=utf-8", size)
        if self.command == "HEAD":
            return

        def chunks():
            # head, the ~1 MiB block repeated, ASCII padding, tail: exactly `size` bytes.
            left = size - len(head) - len(tail)
            yield head
            block = site._big_block
            while left >= len(block):
                for off in range(0, len(block), CHUNK):
                    yield block[off:off + CHUNK]
                left -= len(block)
            while left > 0:
                k = min(left, CHUNK)
                yield b" " * k
                left -= k
            yield tail
        self._write_chunks(target, chunks(), 0)

    def _stream(self, target, p):
        size, chunk = p["size"], p["chunk"]
        self._headers(200, p["type"], size)
        if self.command == "HEAD":
            return
        self.wfile.flush()
        magic = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        rnd = random.Random(size).randbytes(chunk)

        def chunks():
            left = size
            first = True
            while left > 0:
                c = (magic + rnd)[:chunk] if first else rnd
                c = c[:left]
                first = False
                left -= len(c)
                yield c
        self._write_chunks(target, chunks(), p["sleep"])


def _parse_sized(spec, what):
    """'PATH=BYTES[:TYPE]' -> (path, bytes, type or None). The path may hold '='
    (a query): the last '=' separates the size."""
    path, sep, rest = spec.rpartition("=")
    if not sep or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"{what}: expected PATH=BYTES, got {spec!r}")
    size, _, ctype = rest.partition(":")
    try:
        return path, int(size), ctype or None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: bad size in {spec!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=20, help="ordinary pages (default 20)")
    ap.add_argument("--page-kb", type=float, default=200, help="KiB per ordinary page (200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    ap.add_argument("--big", action="append", default=[], metavar="PATH=BYTES",
                    help="a big HTML page, linked from the start page")
    ap.add_argument("--stream", action="append", default=[], metavar="PATH=BYTES[:TYPE]",
                    help="a slow binary download (default type application/pdf, 64 KiB "
                         "chunks, --stream-sleep between them), linked from the start page")
    ap.add_argument("--stream-sleep", type=float, default=0.02)
    ap.add_argument("--never", action="append", default=[], metavar="PATH",
                    help="a link that must never be requested")
    a = ap.parse_args(argv)
    site = Site(pages=a.pages, page_kb=a.page_kb, seed=a.seed, port=a.port)
    for spec in a.big:
        path, size, _ = _parse_sized(spec, "--big")
        site.add_big_html(path, size)
    for spec in a.stream:
        path, size, ctype = _parse_sized(spec, "--stream")
        site.add_stream(path, size, ctype or "application/pdf", sleep=a.stream_sleep)
    for path in a.never:
        site.add_never(path)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    site.start()
    print(f"realweb_site: serving {site.url('/index.html')} ({a.pages} pages of "
          f"{site.page_bytes} bytes, {len(site.special)} special paths)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        site.stop()
        print(f"realweb_site: stopped; {site.bytes_total()} body bytes written, "
              f"{sum(site.requests().values())} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
