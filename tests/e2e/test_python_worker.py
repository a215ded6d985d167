"""The Python worker SDK (clients/python/spiderhub) against a real broker and two nodes.

1. The 2,000-page generated site crawled by spiderhub.samples.LinkSpider through
   `python3 -m spiderhub.worker`: every page once in the items file, JobStatus exact.
2. The same with the worker killed (SIGKILL) mid-crawl and started again on the same items
   file: the run finishes, no page is lost, and the file still has every page exactly once
   (the sink skips responses already written; the broker redelivers unacked results).
3. The broker killed (SIGKILL) mid-crawl and restarted on its database: the worker
   reconnects by itself and the run finishes with every page once.
4. Malformed Run and Exit invocations (from a fake hub in this process) are logged and
   ignored; the worker keeps serving.
"""
import collections
import json
import os
import signal
import sys
import threading
import time

import harness as h

PAGES = 2000
CLS = "py.LinkSpider"


def start_py_worker(env, broker, name, output, extra=()):
    return h.start_py_worker(env, broker.base + "/", CLS, output, name, extra)


def create_job(broker, start_url):
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "py", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": CLS,
                       "Arguments": json.dumps({"startUrl": start_url, "maxDepth": 50})}})
    assert status == 201, (status, job)
    return job


def check_items(output, expected, what):
    items = h.read_items(output)
    urls = collections.Counter(i["url"] for i in items)
    dupes = [u for u, c in urls.items() if c > 1]
    assert not dupes, f"{what}: {len(dupes)} pages twice in the items file, e.g. {dupes[:3]}"
    missing = expected - set(urls)
    assert not missing, f"{what}: {len(missing)} pages missing, e.g. {sorted(missing)[:3]}"
    assert set(urls) == expected, f"{what}: unexpected {sorted(set(urls) - expected)[:3]}"


def wait_success(broker, job, timeout=120):
    def done():
        r = h.run_of(broker, job["id"]) or {}
        assert r.get("status") in (None, "Running", "Success"), r
        return r if r.get("status") == "Success" else None
    return h.wait_until("run Success", done, timeout=timeout, interval=0.5)


def malformed_invocations(args):
    """A fake /worker hub: negotiation and the handshake, then a Run that is not an object,
    a Run without identity and an Exit that is not a string; then a good Run. The worker
    must ignore the bad ones and start the good run (it Pushes its start request)."""
    import socketserver
    sys.path.insert(0, os.path.join(args.source, "clients", "python"))
    from spiderhub import worker as sw

    pushed = threading.Event()

    class Hub(socketserver.BaseRequestHandler):
        def handle(self):
            import base64
            import hashlib
            data = b""
            while b"\r\n\r\n" not in data:
                data += self.request.recv(4096)
            head = data.split(b"\r\n\r\n")[0].decode()
            if head.startswith("POST"):
                body = json.dumps({"negotiateVersion": 1, "connectionId": "x",
                                   "connectionToken": "x", "availableTransports": []}).encode()
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                     b"Connection: close\r\n\r\n" % len(body) + body)
                return
            key = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
                   if l.lower().startswith("sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.request.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                                  ).encode())

            def send(obj):
                p = (json.dumps(obj) + "\x1e").encode()
                head = bytes([0x81, len(p)]) if len(p) < 126 else \
                    bytes([0x81, 126]) + len(p).to_bytes(2, "big")
                self.request.sendall(head + p)

            def records():
                buf = b""
                while True:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    while len(buf) >= 2:
                        n = buf[1] & 0x7F
                        off = 2
                        if n == 126:
                            n = int.from_bytes(buf[2:4], "big")
                            off = 4
                        if len(buf) < off + 4 + n:
                            break
                        mask = buf[off:off + 4]
                        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[off + 4:off + 4 + n]))
                        buf = buf[off + 4 + n:]
                        for rec in payload.decode().split("\x1e"):
                            if rec:
                                yield json.loads(rec)
            it = records()
            next(it)              # handshake
            send({})
            send({"type": 1, "target": "Run", "arguments": ["not an object"]})
            send({"type": 1, "target": "Run", "arguments": [{"jobId": "j"}]})
            send({"type": 1, "target": "Exit", "arguments": [42]})
            send({"type": 1, "target": "Run", "arguments": [
                {"jobId": "j", "identity": "good-run", "arguments": json.dumps(
                    {"startUrl": "http://127.0.0.1:1/"})}]})
            for m in it:
                if m.get("type") == 1 and m.get("target") == "Push":
                    pushed.set()
                    send({"type": 3, "invocationId": m["invocationId"], "result": 1})
                    return

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    srv = Server(("127.0.0.1", 0), Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    log = []
    from spiderhub.samples import LinkSpider
    w = sw.Worker(f"http://127.0.0.1:{srv.server_address[1]}/", "t", CLS, LinkSpider(),
                  log=log.append)
    t = threading.Thread(target=w.serve, daemon=True)
    t.start()
    assert pushed.wait(10), log[-10:]
    w.stop()
    srv.shutdown()
    bad = [m for m in log if "malformed" in m]
    assert len(bad) == 3, log[-10:]
    print("malformed Run/Exit: 3 ignored with a log line, the good Run served", flush=True)


def main():
    args = h.parse_args()
    with h.Env(args, "pyworker") as env:
        malformed_invocations(args)
        site = env.start_site(PAGES)
        expected = {site.base + "/index.html"} | {f"{site.base}/p/{i}.html"
                                                  for i in range(1, PAGES)}
        db = env.path("data", "broker.db")
        broker = env.start_broker(db=db, extra_yaml="dispatch:\n  block_size: 50\n")
        for n in ("node1", "node2"):
            env.start_node(broker, n)

        # 1. A plain crawl.
        out1 = env.path("items1.jsonl")
        w = start_py_worker(env, broker, "pyworker1", out1)
        job = create_job(broker, site.base + "/index.html")
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        run = wait_success(broker, job)
        took = time.monotonic() - t0
        check_items(out1, expected, "plain crawl")
        assert run["success"] == PAGES and run["error"] == 0 and run["left"] == 0, run
        print(f"python worker: {PAGES} pages once in {took:.1f}s ({PAGES / took:.0f} pages/s)",
              flush=True)
        env.stop(w)

        # 2. kill -9 of the worker mid-crawl, restarted on the same file.
        out2 = env.path("items2.jsonl")
        w = start_py_worker(env, broker, "pyworker2", out2)
        job2 = create_job(broker, site.base + "/index.html")
        h.trigger_run(broker, job2["id"])
        h.wait_until("some items", lambda: h.count_lines(out2) >= PAGES // 4, timeout=60, interval=0.05)
        w.send_signal(signal.SIGKILL)
        w.wait()
        before = h.count_lines(out2)
        w = start_py_worker(env, broker, "pyworker2b", out2)
        run = wait_success(broker, job2)
        check_items(out2, expected, "worker killed at " + str(before))
        assert run["success"] == PAGES and run["left"] == 0, run
        print(f"python worker killed -9 after {before} items, restarted: every page once",
              flush=True)

        # 3. The broker killed -9 mid-crawl and restarted; the worker follows by itself.
        out3 = env.path("items3.jsonl")
        env.stop(w)
        w = start_py_worker(env, broker, "pyworker3", out3)
        job3 = create_job(broker, site.base + "/index.html")
        h.trigger_run(broker, job3["id"])
        h.wait_until("some items", lambda: h.count_lines(out3) >= PAGES // 4, timeout=60, interval=0.05)
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        broker = env.start_broker(name="broker2", port=broker.port, db=db,
                                  extra_yaml="dispatch:\n  block_size: 50\n")
        run = wait_success(broker, job3)
        check_items(out3, expected, "broker killed")
        assert run["success"] == PAGES and run["left"] == 0, run
        print("broker killed -9 and restarted: the python worker reconnected, every page once",
              flush=True)

        # 4. A frozen broker (SIGSTOP: the TCP link stays up, nothing comes): the worker
        # notices within its idle timeout, drops the link and reconnects once it answers.
        # The broker pings its workers every heartbeat interval: 0.5 s here.
        env.stop(w)
        env.stop(broker)
        broker = env.start_broker(name="broker3", port=broker.port, db=db, extra_yaml=(
            "dispatch:\n  block_size: 50\nsessions:\n  heartbeat_interval_ms: 500\n"))
        w = start_py_worker(env, broker, "pyworker4", env.path("items4.jsonl"),
                            ["--idle-timeout", "2"])
        h.wait_until("the worker connected", lambda: "worker: connected to" in env.log("pyworker4"))
        time.sleep(4)  # pinged, a quiet but live broker keeps the link
        assert "lost" not in env.log("pyworker4"), env.log("pyworker4")[-2000:]
        broker.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            h.wait_until("the worker dropping the silent link", lambda: "nothing received from the "
                         "broker for 2s" in env.log("pyworker4"), timeout=15)
            noticed = time.monotonic() - frozen
        finally:
            broker.send_signal(signal.SIGCONT)
        h.wait_until("the worker connected again",
                     lambda: env.log("pyworker4").count("worker: connected to") >= 2, timeout=30)
        assert noticed < 8, noticed
        print(f"frozen broker: the python worker dropped the link after {noticed:.1f}s "
              "(idle timeout 2 s) and reconnected once it answered", flush=True)


if __name__ == "__main__":
    main()
