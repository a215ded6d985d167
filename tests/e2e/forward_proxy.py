"""A small HTTP forward proxy for the e2e tests (tests/e2e/test_proxies.py): plain-HTTP
requests in absolute form (GET/HEAD/POST), forwarded to 127.0.0.1 targets only, with a
`Via: 1.1 NAME` header the target can see; counts what it forwarded. `stop()` closes the
listening socket, so later connections are refused, and hangs up on connections kept alive
from before (a dead proxy). Standard library only."""
import http.client
import http.server
import threading
import urllib.parse


class ForwardProxy:
    def __init__(self, name):
        self.name = name
        self.count = 0
        self.dead = False
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                if proxy.dead:
                    # A connection kept alive from before the stop: hang up, no answer.
                    self.close_connection = True
                    return
                u = urllib.parse.urlsplit(self.path)
                if u.scheme != "http" or u.hostname != "127.0.0.1":
                    # Never a hop off this machine.
                    self.send_error(403, "this test proxy only forwards to 127.0.0.1")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection",
                                                "proxy-authorization", "keep-alive")}
                headers["Via"] = f"1.1 {proxy.name}"
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
                try:
                    target = u.path or "/"
                    if u.query:
                        target += "?" + u.query
                    conn.request(self.command, target, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.count += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = _forward

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.dead = True
        self.server.shutdown()
        self.server.server_close()
