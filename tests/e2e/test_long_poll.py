"""Long polls: Poll(identity, max, waitMs) on the worker hub. A Poll that finds nothing new
while results can still come (requests waiting or out on nodes) is held by the broker and
answered as soon as results of its run are stored (not after the wait), with [] when its
wait ends, when the run is exited, or when the worker is sent another Run. A Poll of a run
from which nothing can come any more is answered at once (a worker waiting in a Poll sends
no Ack or Push, so holding it could only stall the run). Bad waitMs values are refused. A
Python hub client (tests/e2e/wsclient.py) plays the worker so every call and its timing is
visible; a real node downloads from nginx, and from a server that never answers (which
keeps a request out on the node)."""
import socket
import threading
import time

import harness as h
import wsclient as ws

CLS = "spiderhub.e2e.LongPollSpider"


def timed(hub, target, *args, timeout=30.0):
    """(completion, seconds it took)."""
    started = time.monotonic()
    c = hub.invoke(target, *args, timeout=timeout)
    return c, time.monotonic() - started


def held_poll(hub, identity, event):
    """Sends Poll(identity, 10, waitMs 20000), calls event() 0.3 s later while the broker
    holds it, and returns (its completion, seconds from the Poll to its answer)."""
    inv = hub.new_id()
    started = time.monotonic()
    hub.send_invocation("Poll", [identity, 10, 20000], inv)
    time.sleep(0.3)
    event()
    c = hub.wait_completion(inv, timeout=15)
    return c, time.monotonic() - started


def start_run(broker, hub, site, output, after):
    job = h.create_block_job(broker, site.base + "/index.html", output, cls=CLS,
                             properties={"RobotsTxt": "ignore"})
    status, body = h.api("POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger")
    assert status == 200, (status, body)
    run = hub.wait_invocation("Run", timeout=10, after=after)["arguments"][0]
    assert run["identity"] == body["identity"], (run, body)
    return job, run["identity"]


class StallServer:
    """Accepts connections on a free loopback port and never answers them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def main():
    args = h.parse_args()
    with h.Env(args, "long_poll") as env:
        site = env.start_template_site(100)
        stall = StallServer()
        stall_url = f"http://127.0.0.1:{stall.port}/never"
        broker = env.start_broker()
        env.start_node(broker, "node1")
        h.wait_until("node online", lambda: any(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]))
        hub = ws.HubConnection.connect(broker.base, "/worker", ws.worker_query(CLS, h.TOKEN))
        try:
            job, identity = start_run(broker, hub, site, env.path("items.jsonl"), 0)

            # Bad waits are refused, and say what is expected.
            for bad in (-1, "1000", 1.5, 60001):
                c = hub.invoke("Poll", identity, 10, bad)
                assert "waitMs" in c.get("error", ""), (bad, c)
            print("  ok  Poll refuses waitMs -1, \"1000\", 1.5 and 60001", flush=True)

            # Nothing pushed: no result can come, so even a Poll with a wait is answered at once.
            c, took = timed(hub, "Poll", identity, 10, 5000)
            assert c.get("result") == [] and took < 2.0, (c, took)
            print(f"  ok  nothing can come: Poll with waitMs 5000 answered [] in {took:.2f} s",
                  flush=True)

            # A request out on the node (its server never answers): results may still come.
            c = hub.invoke("Push", identity, [{"url": stall_url, "depth": 1}])
            assert c.get("result") == 1, c
            h.wait_until("the node connected to the server that never answers",
                         lambda: len(stall.held) > 0, timeout=10)
            c, took = timed(hub, "Poll", identity, 10)
            assert c.get("result") == [] and took < 1.0, (c, took)
            c, took = timed(hub, "Poll", identity, 10, 1500)
            assert c.get("result") == [], c
            assert 1.3 <= took < 6.0, f"an empty Poll with waitMs 1500 took {took:.2f} s"
            print(f"  ok  request out on the node: [] at once without waitMs, after {took:.2f} s "
                  f"with 1500", flush=True)

            # A held Poll is answered by the first stored result, long before its wait.
            url = site.base + "/p/3.html"

            def push():
                c = hub.invoke("Push", identity, [{"url": url, "depth": 1}])
                assert c.get("result") == 1, c
            c, took = held_poll(hub, identity, push)
            assert [r["url"] for r in c.get("result") or []] == [url], c
            assert took < 10.0, f"the held Poll came after {took:.2f} s (wait 20 s)"
            c = hub.invoke("Ack", identity, [c["result"][0]["resultId"]])
            assert c.get("result") is True, c
            print(f"  ok  held Poll answered with the pushed page after {took:.2f} s "
                  f"(waitMs 20000)", flush=True)

            # Everything acked: a Poll with a wait is held again; another Run for this
            # worker answers it at once (the worker may be waiting in that Poll).
            runs_before = sum(m.get("target") == "Run" for m in hub.invocations)
            second = []

            def another_run():
                second.append(start_run(broker, hub, site, env.path("items2.jsonl"),
                                        len(hub.invocations)))
            c, took = held_poll(hub, identity, another_run)
            job2, identity2 = second[0]
            # Held until the Run (0.3 s and more), answered soon after it (not after 20 s).
            assert c.get("result") == [] and 0.28 <= took < 10.0, (c, took)
            assert sum(m.get("target") == "Run" for m in hub.invocations) == runs_before + 1
            print(f"  ok  held Poll answered [] after {took:.2f} s when Run({identity2[:8]}…) "
                  f"was sent", flush=True)

            # Exiting the run answers its held Poll ([]), then Exit follows.
            def exit_run():
                status, body = h.api("POST", broker, f"/api/v1.0/runs/{identity}/exit")
                assert status == 200, (status, body)
            c, took = held_poll(hub, identity, exit_run)
            assert c.get("result") == [] and 0.28 <= took < 10.0, (c, took)
            assert hub.wait_invocation("Exit", timeout=10)["arguments"] == [identity]
            print(f"  ok  run exited: its held Poll answered [] after {took:.2f} s, then Exit",
                  flush=True)

            # The second run's Poll still works; old clients (two arguments) are unchanged.
            c = hub.invoke("Poll", identity2, 10)
            assert c.get("result") == [], c
            status, body = h.api("POST", broker, f"/api/v1.0/runs/{identity2}/exit")
            assert status == 200, (status, body)
        finally:
            hub.close()
            stall.close()
        assert env.stop(broker) == 0, "broker did not stop cleanly"
    print("long poll: OK")


if __name__ == "__main__":
    main()
