"""Interop with the official @microsoft/signalr JavaScript client: `npm ci` of
tests/e2e/interop into a temp copy (part of the test: CI has no node_modules; no npm or no
registry is a FAILURE, not a skip), then tests/e2e/interop/node_client.js acts as a node:
refused with wrong signs, negotiates and connects, Heartbeat returns an array, receives
Receive(block) pushed by the broker for requests a Python worker (wsclient.py) pushed,
answers with SaveBlockResponse (the worker polls that result), and receives Exit(identity)
when the run is exited through the API."""
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import harness as h
import wsclient as ws

CLS = "spiderhub.e2e.InteropSpider"
NPM_TIMEOUT_S = 300


def npm_ci(env):
    """Installs the interop package (the official client) from its lock file."""
    started = time.monotonic()
    node, dst = h.npm_ci(env, "interop", ["node_client.js"], timeout=NPM_TIMEOUT_S)
    pkg = os.path.join(dst, "node_modules", "@microsoft", "signalr", "package.json")
    with open(pkg) as f:
        version = json.load(f)["version"]
    print(f"  ok  npm ci: @microsoft/signalr {version} in {time.monotonic() - started:.1f}s",
          flush=True)
    return node, dst, version


class Script:
    """The JS node: its stdout JSON lines arrive in a queue."""

    def __init__(self, env, node, cwd, broker):
        self.events = queue.Queue()
        self.seen = []
        # Like env.spawn (own session, killed by env.close), but stdout is a pipe; stderr
        # goes to js-node.log for dump_logs.
        log = open(env.path("js-node.log"), "ab")
        self.proc = subprocess.Popen([node, "node_client.js", "--url", broker.base,
                                      "--token", h.TOKEN, "--timeout-ms", "90000"],
                                     cwd=cwd, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        log.close()
        self.proc.name = "js-node"
        self.proc.log_path = env.path("js-node.log")
        env.procs.append(self.proc)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode(errors="replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "stdout", "text": line}
            self.seen.append(ev)
            self.events.put(ev)
        self.events.put({"event": "eof"})

    def expect(self, name, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"JS node: no '{name}' within {timeout}s; saw {self.seen}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["event"] == name:
                return ev
            if ev["event"] in ("fail", "eof", "heartbeat_error"):
                raise AssertionError(f"JS node: waiting for '{name}', got {ev}; saw {self.seen}")


def main():
    args = h.parse_args()
    env = h.Env(args, "interop")
    script = None
    try:
        node, cwd, version = npm_ci(env)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 1\n")
        worker = ws.HubConnection.connect(broker.base, "/worker", ws.worker_query(CLS, h.TOKEN))

        script = Script(env, node, cwd, broker)
        refused = [script.expect("refused") for _ in range(4)]
        assert all("401" in r["error"] or "WebSocket" in r["error"] for r in refused), refused
        # The JS client does not show the status of a refused WebSocket upgrade: the broker
        # log does (the gateway logs every refused upgrade).
        h.wait_until("WebSocket upgrade refusal logged", lambda: "refused /node upgrade" in
                     env.log("broker") and "wrong sign" in env.log("broker"), timeout=5)
        for r in refused:
            print(f"  ok  official client refused, {r['what']}: {r['error'][:160]}", flush=True)
        connected = script.expect("connected", 20)
        node_id = connected["nodeId"]
        hb = script.expect("heartbeat")
        assert hb["result"] == [], hb
        script.expect("unknown_method")
        script.expect("ready")
        h.wait_until("JS node online in the API", lambda: any(
            n["id"] == node_id and n["isOnline"]
            for n in h.api("GET", broker, "/api/v1.0/nodes")[1]), timeout=10)
        print(f"  ok  official client negotiated and connected as node {node_id}; Heartbeat "
              f"-> [], NoSuchMethod -> completion error; online in /api/v1.0/nodes", flush=True)

        # A block run: the Python worker gets Run, pushes two requests (block_size 1 -> two
        # blocks), and the broker pushes both blocks to the only node, the JS one.
        # (No robots.txt fetch: the JS node must see exactly the two pushed requests.)
        job = h.create_block_job(broker, "http://127.0.0.1:9/", env.path("items.jsonl"),
                                 cls=CLS, properties={"RobotsTxt": "ignore"})
        status, body = h.api("POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger")
        assert status == 200, (status, body)
        identity = body["identity"]
        run = worker.wait_invocation("Run", timeout=10)["arguments"][0]
        assert run["identity"] == identity and run["jobId"] == job["id"], run
        urls = ["http://127.0.0.1:9/interop/a", "http://127.0.0.1:9/interop/b"]
        c = worker.invoke("Push", identity, [{"url": u, "depth": 1} for u in urls])
        assert c.get("result") == 2, c
        blocks = [script.expect("receive", 20)["block"] for _ in range(2)]
        assert sorted(b["requests"][0]["url"] for b in blocks) == urls, blocks
        assert all(b["identity"] == identity and b["command"] == 1 for b in blocks), blocks
        saved = script.expect("saved", 20)
        print(f"  ok  JS node received Receive(block) x2 and saved {saved['url']}", flush=True)

        # The worker gets what the JS node downloaded.
        def poll():
            c = worker.invoke("Poll", identity, 10)
            assert "error" not in c, c
            return c["result"] or None
        results = h.wait_until("result of the JS node", poll, timeout=15, interval=0.3)
        assert len(results) == 1 and results[0]["url"] == saved["url"], results
        assert results[0]["content"] == f"downloaded by {node_id}", results
        assert results[0]["statusCode"] == 200, results
        c = worker.invoke("Ack", identity, [results[0]["resultId"]])
        assert c.get("result") is True, c

        # Exiting the run sends Exit(identity) to the node still holding a block.
        status, body = h.api("POST", broker, f"/api/v1.0/runs/{identity}/exit")
        assert status == 200, (status, body)
        ev = script.expect("exit", 20)
        assert ev["identity"] == identity, ev
        assert worker.wait_invocation("Exit", timeout=10)["arguments"] == [identity]
        done = script.expect("done", 20)
        script.proc.wait(15)
        assert script.proc.returncode == 0, (script.proc.returncode, script.seen)
        h.wait_until("run Exited", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     == "Exited", timeout=10)
        print(f"  ok  worker polled the JS node's result; run exit -> Exit({identity[:8]}…) "
              f"to the JS node and the worker; {done['heartbeats']} heartbeats", flush=True)
        worker.close()
        assert env.stop(broker) == 0, "broker did not stop cleanly"
        print(f"signalr interop: @microsoft/signalr {version} OK")
    except BaseException:
        if script is not None:
            print(f"JS node events: {script.seen}", file=sys.stderr)
        env.dump_logs()
        raise
    finally:
        env.close()


if __name__ == "__main__":
    main()
