"""The cluster tests' web server: a deterministic N-page site with a fixed per-request
latency, counting every download so a test can tell how many pages were fetched again.

Page i (1 <= i < N) links to its children 10i .. 10i+9 that exist and to the index; the
index links to pages 1-9; every page carries ~4.3 KB of filler (the same shape as the e2e
template site). GET /__stats returns {"hits": total, "pages": distinct pages fetched,
"again": downloads beyond the first of a page}.

  python3 site.py --address 10.1.2.3 --port 8080 --pages 3000 --latency-ms 20
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILLER = ("<p>spider crawl block lease node broker worker request result queue actor "
          "dispatch cron storage shard fetch parse link page index depth</p>\n") * 29


def page(n, pages):
    if n == 0:
        kids = range(1, min(pages, 10))
    else:
        kids = [k for k in range(10 * n, 10 * n + 10) if k < pages]
    links = "".join(f"<li><a href='/p/{k}.html'>page {k}</a></li>" for k in kids)
    if n:
        links += "<li><a href='/index.html'>index</a></li>"
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Page {n}</title>"
            f"</head><body><h1>Page {n}</h1><ul>{links}</ul>{FILLER}</body></html>\n").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pages", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=0)
    a = ap.parse_args()
    hits = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body, ctype="text/html"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/__stats":
                with lock:
                    total = sum(hits.values())
                    body = json.dumps({"hits": total, "pages": len(hits),
                                       "again": total - len(hits)}).encode()
                return self.send(200, body, "application/json")
            n = None
            if path == "/index.html":
                n = 0
            elif path.startswith("/p/") and path.endswith(".html"):
                try:
                    n = int(path[3:-5])
                except ValueError:
                    n = None
                if n is not None and not 1 <= n < a.pages:
                    n = None
            if n is None:
                return self.send(404, b"not found\n", "text/plain")
            with lock:
                hits[n] = hits.get(n, 0) + 1
            if a.latency_ms:
                time.sleep(a.latency_ms / 1000.0)
            self.send(200, page(n, a.pages))

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((a.address, a.port), Handler)
    print(f"site: {a.pages} pages on http://{a.address}:{a.port}/", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
