"""Two brokers on one PostgreSQL database: one leads, the other waits as a standby.

1. Broker A leads (/healthz 200 active); broker B answers 503 standby naming A, and
   refuses hub connections. Two nodes and the worker are given both URLs.
2. A crawl runs through A, and an every-second cron job fires. At 30 % of the pages A is
   killed -9: B takes the lapsed lease and serves (measured: at most 10 s after the kill),
   nodes and worker follow it, the crawl ends with every page exactly once and JobStatus
   exact.
3. A comes back as a standby. B is SIGSTOPped: A takes over, a second crawl runs through
   it; B is resumed: it learns it was deposed and steps down (re-executes itself as a
   standby) without writing: the nodes it would have marked offline on waking stay online.
4. The cron ledger (Fire, JobStatus) accounts for every due second exactly once across
   both failovers.
"""
import json
import signal
import time

import harness as h
import pg
from test_scheduler import Ledger

PAGES = 3000
LEASE_MS = 5000
CLASS = "tests.NobodyListens"


class PgLedger(Ledger):
    """The scheduler test's exactly-once ledger, read from PostgreSQL."""

    def __init__(self, cluster, job_id):
        super().__init__(None, job_id)
        self.cluster = cluster

    def query(self, sql, *params):
        for p in params:  # job ids are UUIDs: inlined as literals
            assert "'" not in str(p)
            sql = sql.replace("?", f"'{p}'", 1)
        sql = sql.replace("Left", '"Left"')
        out = self.cluster.sql(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)")
        import csv
        import io
        rows = []
        for r in csv.reader(io.StringIO(out)):
            rows.append(tuple(int(v) if v.lstrip("-").isdigit() else v for v in r))
        return rows


def health(broker):
    try:
        status, raw = h.http_get(broker.base + "/healthz")
        return status, json.loads(raw)
    except Exception as e:  # refused: the process is gone
        return 0, str(e)


def leader_yaml(cluster, name, port):
    return (f"storage:\n  kind: postgresql\n  postgresql: \"{cluster.conninfo()}\"\n"), (
        f"failover:\n  name: {name}\n  advertise_url: http://127.0.0.1:{port}/\n"
        f"  lease_ms: {LEASE_MS}\n  poll_ms: 200\n"
        "scheduler:\n  misfire_grace_s: 60\n"
        "dispatch:\n  block_size: 20\n  thread_num: 2\n  lease_timeout_ms: 10000\n"
        "sessions:\n  heartbeat_interval_ms: 1000\n")


def start(env, cluster, name, port, standby):
    storage, extra = leader_yaml(cluster, name, port)
    return env.start_broker(name, port=port, storage_yaml=storage, extra_yaml=extra,
                            standby=standby)


def wait_active(broker, since, what):
    h.wait_until(f"{what} active", lambda: health(broker)[0] == 200, timeout=30, interval=0.05)
    took = time.monotonic() - since
    print(f"{what}: active {took:.2f} s after the fault")
    return took


def node_online(cluster):
    return cluster.sql("SELECT Id, IsOnline FROM Node ORDER BY Id").split()


def main():
    args = h.parse_args()
    with h.Env(args, "failover") as env, pg.Postgres(env.dir) as cluster:
        site = env.start_site(PAGES)
        port_a, port_b = h.free_port(), h.free_port()
        a = start(env, cluster, "broker-a", port_a, standby=False)
        b = start(env, cluster, "broker-b", port_b, standby=True)
        status, body = health(a)
        assert status == 200 and body["role"] == "active", (status, body)
        status, body = health(b)
        assert status == 503 and body["status"] == "standby", (status, body)
        assert body["leader"] == f"http://127.0.0.1:{port_a}/", body
        assert body["leaderName"] == "broker-a", body
        # A standby refuses the hubs (clients take it as "try the next broker").
        status, _ = h.http("POST", b.base + "/node/negotiate")
        assert status == 503, status

        nodes = [env.start_node([a, b], f"node{i}") for i in (1, 2)]
        worker = env.start_worker([a, b])
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", a, "/api/v1.0/nodes")[1]) == 2)

        # The cron ledger: an every-second job nobody listens to (one Failed row a fire).
        status, cron_job = h.api("POST", a, "/api/v1.0/jobs", {
            "name": "every-second", "jobType": "block", "cron": "* * * * * *",
            "properties": {"FullClassName": CLASS}})
        assert status == 201, (status, cron_job)
        ledger = PgLedger(cluster, cron_job["id"])

        output = env.path("items.jsonl")
        job = h.create_block_job(a, site.base + "/index.html", output)
        h.trigger_run(a, job["id"])
        h.wait_until("30 % of the pages", lambda: h.count_lines(output) >= PAGES * 3 // 10,
                     timeout=120, interval=0.05)
        at_kill = h.count_lines(output)
        assert at_kill < PAGES * 0.6, f"the crawl went too fast to fail over mid-way ({at_kill})"
        a.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        took = wait_active(b, killed, "broker-b after kill -9 of broker-a")
        assert took <= 10.0, f"the standby took {took:.2f} s to become active"
        h.wait_until("run finished on broker-b", lambda: (h.run_of(b, job["id"]) or {}).get(
            "status") == "Success", timeout=180, interval=0.5)
        print(f"killed at {at_kill} of {PAGES} pages; crawl finished through broker-b")
        h.assert_exactly_once(output, h.site_pages(site.base, PAGES), h.run_of(b, job["id"]))
        h.wait_until("both nodes online at broker-b", lambda: sum(
            n["isOnline"] for n in h.api("GET", b, "/api/v1.0/nodes")[1]) == 2, timeout=30)

        # A comes back: it waits as a standby behind B.
        env.stop(a)
        a = start(env, cluster, "broker-a", port_a, standby=True)
        assert health(a)[1]["leaderName"] == "broker-b", health(a)
        # B pauses (SIGSTOP): A takes over once B's lease lapses; nodes follow.
        b.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        took2 = wait_active(a, stopped, "broker-a after SIGSTOP of broker-b")
        assert took2 <= 10.0, f"the standby took {took2:.2f} s to become active"
        h.wait_until("both nodes online at broker-a", lambda: sum(
            n["isOnline"] for n in h.api("GET", a, "/api/v1.0/nodes")[1]) == 2, timeout=30)
        output2 = env.path("items2.jsonl")
        job2 = h.create_block_job(a, site.base + "/index.html", output2, max_depth=1)
        # (the worker sample takes one run: a second worker for the second crawl)
        worker2 = env.start_worker([a, b], "worker2")
        h.trigger_run(a, job2["id"])
        # B wakes up with its nodes silent for many heartbeats: it would mark them offline
        # and return their leases, but it is deposed: it steps down and writes nothing.
        before = node_online(cluster)
        assert len(before) == 2 and all(r.endswith("|1") for r in before), before
        b.send_signal(signal.SIGCONT)
        h.wait_until("broker-b stepped down", lambda: "stepping down" in env.log("broker-b"),
                     timeout=20)
        h.wait_until("broker-b back as a standby", lambda: health(b)[0] == 503
                     and health(b)[1].get("leaderName") == "broker-a", timeout=30)
        log_b = env.log("broker-b")
        assert "another broker holds the lease" in log_b or "lost the leadership" in log_b, \
            log_b[-3000:]
        after = node_online(cluster)
        assert after == before, f"the deposed broker changed the node table: {before} -> {after}"
        h.wait_until("second run finished", lambda: (h.run_of(a, job2["id"]) or {}).get(
            "status") == "Success", timeout=120, interval=0.5)
        links = 1 + len([u for u in h.site_pages(site.base, PAGES) if u.count("/p/")])
        run2 = h.run_of(a, job2["id"])
        items2 = h.read_items(output2)
        urls2 = [i["url"] for i in items2]
        assert len(urls2) == len(set(urls2)), "second crawl: a page written twice"
        assert run2["total"] == len(urls2) and run2["success"] == len(urls2), (run2, len(urls2))
        assert 1 < len(urls2) <= links, len(urls2)

        # Cron: every due second fired once or was recorded missed, across both failovers.
        status, _ = h.api("DELETE", a, f"/api/v1.0/jobs/{cron_job['id']}")
        assert status in (200, 204), status
        end = int(time.time()) - 2
        dues = ledger.check(every_second_until=end)
        print(f"cron: {len(dues)} fires, {len(ledger.missed())} missed range(s), "
              f"no due second twice or lost")
        for p in nodes + [worker, worker2]:
            assert p.poll() is None or p.returncode == 0, f"{p.name} exited {p.returncode}"


if __name__ == "__main__":
    main()
