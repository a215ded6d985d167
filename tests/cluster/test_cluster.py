"""Cluster tests: broker, three nodes, the worker and the web server each on their own
network host (tests/cluster/lab.py), TLS everywhere with a CA made by the test, every node
reaching the broker through its own fault proxy (tests/cluster/faultproxy.py). One case
per run (--case); each injects its fault in the middle of a crawl and ends with every page
exactly once in the items file and JobStatus totals exact. Each prints what it measured:
time to detect, time to recover, pages downloaded again.

  python3 tests/cluster/test_cluster.py --bin build/spiderhub --source . --build build --case blackhole
"""
import argparse
import os
import secrets
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)

import harness as h  # noqa: E402
import pg  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from lab import Lab, make_certs  # noqa: E402

NODE_SECRET = secrets.token_hex(24)
WORKER_SECRET = secrets.token_hex(24)
BROKER_PORT = 8443
HEARTBEAT_MS = 1000
MISSED = 3
LEASE_MS = 5000


def stamp():
    return time.strftime("%H:%M:%S")


class Cluster:
    def __init__(self, args, case, pages, latency_ms, concurrency):
        self.args, self.case, self.pages = args, case, pages
        self.env = h.Env(args, f"cluster-{case}")
        self.lab = Lab()
        self.broker_host = self.lab.add_host("broker")
        self.web = self.lab.add_host("web")
        self.worker_host = self.lab.add_host("worker")
        self.node_hosts = [self.lab.add_host(f"node{i}") for i in (1, 2, 3)]
        # The failover case: a second broker host; both share PostgreSQL.
        self.broker2_host = self.lab.add_host("broker2") if case == "failover" else None
        self.cluster_pg = None
        self.certs = make_certs(self.env.dir, [self.broker_host.ip, self.lab.gateway] +
                                ([self.broker2_host.ip] if self.broker2_host else []))
        ctx = ssl.create_default_context(cafile=self.certs["ca.pem"])
        h.SSL_CONTEXT = ctx
        self.proxies = {}
        self.nodes = {}
        self.output = self.env.path("items.jsonl")
        self.latency_ms, self.concurrency = latency_ms, concurrency
        self.block_size = 10  # small blocks: short tails after each fault

    def start(self):
        self.site = self._start_site(self.latency_ms)
        if not self.broker2_host:
            self.broker = self._start_broker(self.concurrency)
            return
        # PostgreSQL on this (root) host, reached by the brokers through a proxy on the
        # lab's gateway address (its pg_hba trusts loopback only).
        self.cluster_pg = pg.Postgres(self.env.dir).start()
        proxy = FaultProxy((self.lab.gateway, 0), ("127.0.0.1", self.cluster_pg.port), "postgres")
        self.proxies["postgres"] = proxy
        storage = (f"storage:\n  kind: postgresql\n  postgresql: \"host={self.lab.gateway} "
                   f"port={proxy.port} dbname=spiderhub user=spiderhub\"\n")
        self.broker = self._start_broker(self.concurrency, storage=storage)
        self.broker2 = self._start_broker(self.concurrency, host=self.broker2_host,
                                          name="broker2", storage=storage, standby=True)

    def close(self):
        self.env.close()
        for p in self.proxies.values():
            p.close()
        if self.cluster_pg:
            self.cluster_pg.stop()
        self.lab.close()

    # ---- processes --------------------------------------------------------------------

    def _start_site(self, latency_ms):
        p = self.env.spawn("site", self.web.argv([
            sys.executable, os.path.join(HERE, "site.py"), "--address", self.web.ip,
            "--port", "8080", "--pages", str(self.pages), "--latency-ms", str(latency_ms)]))
        p.base = f"http://{self.web.ip}:8080"
        h.wait_until("site", lambda: h.http_get(p.base + "/__stats")[0] == 200, timeout=15)
        return p

    def site_stats(self):
        return h.api("GET", self.site, "/__stats")[1]

    def _start_broker(self, concurrency, host=None, name="broker", storage=None, standby=False):
        host = host or self.broker_host
        storage = storage or f"storage:\n  path: {self.env.path('data', 'broker.db')}\n"
        failover = (f"failover:\n  name: {name}\n  advertise_url: https://{host.ip}:{BROKER_PORT}/\n"
                    f"  lease_ms: 5000\n  poll_ms: 200\n" if self.broker2_host else "")
        conf = self.env.write(f"{name}.yaml", f"""
http:
  address: {host.ip}
  port: {BROKER_PORT}
  tls_cert: {self.certs['broker.pem']}
  tls_key: {self.certs['broker.key']}
auth:
  tokens:
    - {{name: ops, role: admin, secret: {h.TOKEN}}}
    - {{name: crawlers, role: node, secret: {NODE_SECRET}}}
    - {{name: spiders, role: worker, secret: {WORKER_SECRET}}}
{storage}{failover}sessions:
  heartbeat_interval_ms: {HEARTBEAT_MS}
  missed_heartbeats: {MISSED}
dispatch:
  block_size: {self.block_size}
  lease_timeout_ms: {LEASE_MS}
  thread_num: 4
  blocks_per_node: 4
  slow_node_block_ms: {os.environ.get("CLUSTER_SLOW_NODE_BLOCK_MS", 2000)}  # 0: mutation check
politeness:
  max_concurrency_per_host: {concurrency}
  adaptive: false
inspector:
  enabled: {"true" if name == "broker" else "false"}
  address: 127.0.0.1
  port: 4242
log:
  level: info
""")
        os.chmod(conf, 0o600)
        p = self.env.spawn(name, host.argv([self.args.bin, "broker", "-c", conf]))
        p.base = f"https://{host.ip}:{BROKER_PORT}"
        want = 503 if standby else 200
        h.wait_until(f"{name} health over https", lambda: p.poll() is not None
                     or h.http_get(p.base + "/healthz")[0] == want, timeout=30)
        assert p.poll() is None, f"{name} exited with {p.returncode}:\n{self.env.log(name)}"
        return p

    def start_node(self, i, ca=None, direct=False, wrap=(), name=None, urls=None):
        """Node i (1-3) on its own host, through its own fault proxy unless direct (or
        given broker `urls`)."""
        host = self.node_hosts[i - 1]
        name = name or f"node{i}"
        if urls:
            url = "[" + ", ".join(urls) + "]"
        elif direct:
            url = f"https://{self.broker_host.ip}:{BROKER_PORT}/"
        else:
            proxy = self.proxies.get(name) or FaultProxy(
                (self.lab.gateway, 0), (self.broker_host.ip, BROKER_PORT), name)
            self.proxies[name] = proxy
            url = f"https://{self.lab.gateway}:{proxy.port}/"
        conf = self.env.write(f"{name}.yaml", f"""
broker: {url}
token: {NODE_SECRET}
tls:
  ca_file: {ca or self.certs['ca.pem']}
id_file: {self.env.path(name + '.id')}
heartbeat_interval_ms: {HEARTBEAT_MS}
reconnect:
  initial_ms: 200
  max_ms: 1000
download:
  results_flush_ms: 100
  allow_private_addresses: true  # the lab's site is on a private address
""")
        os.chmod(conf, 0o600)
        p = self.env.spawn(name, host.argv(list(wrap) + [self.args.bin, "node", "-c", conf]))
        p.host = host
        self.nodes[name] = p
        return p

    def node_id(self, name):
        return h.wait_until(f"{name} id", lambda: open(self.env.path(name + ".id")).read().strip())

    def start_worker(self, via_proxy=False, urls=None):
        url = ", ".join(urls) if urls else f"https://{self.broker_host.ip}:{BROKER_PORT}/"
        if via_proxy:
            proxy = FaultProxy((self.lab.gateway, 0), (self.broker_host.ip, BROKER_PORT), "worker")
            self.proxies["worker"] = proxy
            url = f"https://{self.lab.gateway}:{proxy.port}/"
        conf = self.env.write("worker.yaml", f"""
broker: {url}
token: {WORKER_SECRET}
idle_timeout_ms: {4 * HEARTBEAT_MS}
tls:
  ca_file: {self.certs['ca.pem']}
""")
        os.chmod(conf, 0o600)
        return self.env.spawn("worker", self.worker_host.argv(
            [self.args.bin, "worker-sample", "-c", conf, "--runs", "0"]))

    # ---- API --------------------------------------------------------------------------

    def online(self):
        status, nodes = h.api("GET", self.broker, "/api/v1.0/nodes")
        assert status == 200, (status, nodes)
        return {n["id"]: n["isOnline"] for n in nodes}

    def wait_nodes_online(self, names, timeout=30):
        ids = [self.node_id(n) for n in names]
        h.wait_until(f"{names} online", lambda: all(self.online().get(i) for i in ids),
                     timeout=timeout, interval=0.2)

    def start_crawl(self):
        self.job = h.create_block_job(self.broker, self.site.base + "/index.html", self.output,
                                      max_depth=8)
        h.trigger_run(self.broker, self.job["id"])
        self.t_start = time.monotonic()

    def wait_progress(self, fraction, timeout=120):
        n = int(self.pages * fraction)
        h.wait_until(f"{n} pages written", lambda: h.count_lines(self.output) >= n,
                     timeout=timeout, interval=0.05)
        run = h.run_of(self.broker, self.job["id"])
        assert run["status"] == "Running", f"the crawl ended before the fault: {run}"

    def check_complete(self, timeout=240):
        """Every page exactly once in the items file, JobStatus exact; returns the run."""
        h.wait_until("run finished", lambda: (h.run_of(self.broker, self.job["id"]) or {})
                     .get("status") in ("Success", "Failed", "Exited"), timeout=timeout,
                     interval=0.3)
        elapsed = time.monotonic() - self.t_start
        run = h.run_of(self.broker, self.job["id"])
        assert run["status"] == "Success", run
        h.assert_exactly_once(self.output, h.site_pages(self.site.base, self.pages), run)
        self.elapsed = elapsed
        return run


def report(case, **figures):
    text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
    print(f"cluster/{case}: {text}", flush=True)


def timed(what, predicate, timeout, interval=0.05):
    t0 = time.monotonic()
    h.wait_until(what, predicate, timeout=timeout, interval=interval)
    return time.monotonic() - t0


# ---- cases ------------------------------------------------------------------------------


def case_tls(c):
    """Three nodes and the worker over wss:// verified against the test's CA; a node that
    trusts another CA is refused with a clear line; plain HTTP to the TLS port fails."""
    for i in (1, 2, 3):
        c.start_node(i)
    c.start_worker()
    c.wait_nodes_online(["node1", "node2", "node3"])
    wrong = c.start_node(1, ca=c.certs["other-ca.pem"], name="wrongca")
    h.wait_until("wrong-CA node refusing the broker", lambda: "certificate not trusted"
                 in c.env.log("wrongca"), timeout=20)
    line = next(l for l in c.env.log("wrongca").splitlines() if "certificate not trusted" in l)
    assert "other-ca.pem" in line, line
    assert wrong.poll() is None, "a node that cannot connect keeps trying"
    assert c.node_id("wrongca") not in c.online(), "the wrong-CA node got in"
    plain = h.wait_until("plain http refused", lambda: _plain_http_fails(c), timeout=10)
    c.start_crawl()
    run = c.check_complete()
    per_node = [n["success"] for n in run["nodes"]]
    assert len([n for n in per_node if n > 0]) == 3, f"every node downloads: {per_node}"
    report("tls", pages=run["success"], seconds=round(c.elapsed, 1), per_node=per_node,
           wrong_ca=repr(line.split("failed: ", 1)[-1][:160]), plain_http=plain)


def _plain_http_fails(c):
    try:
        status, _ = h.http("GET", f"http://{c.broker_host.ip}:{BROKER_PORT}/healthz")
        return f"HTTP {status}" if status != 200 else None
    except Exception as e:  # refused, reset or a TLS alert: anything but a 200
        return type(e).__name__


def case_link_down(c):
    """node1's link goes down for longer than the lease timeout: the broker notices
    (missed heartbeats), its blocks go to the others; the link comes back, the node
    reconnects; results it sends late for re-leased blocks are not counted twice."""
    for i in (1, 2, 3):
        c.start_node(i)
    c.start_worker()
    c.wait_nodes_online(["node1", "node2", "node3"])
    n1 = c.node_id("node1")
    c.start_crawl()
    c.wait_progress(0.25)
    c.lab.link_down(c.node_hosts[0])
    t0 = time.monotonic()
    detect = timed("node1 offline", lambda: not c.online().get(n1), timeout=20)
    down_for = (LEASE_MS + 3000) / 1000.0
    time.sleep(max(0.0, down_for - (time.monotonic() - t0)))
    c.lab.link_up(c.node_hosts[0])
    recover = timed("node1 online again", lambda: c.online().get(n1), timeout=30)
    run = c.check_complete()
    again = c.site_stats()["again"]
    window = HEARTBEAT_MS * MISSED / 1000.0
    assert detect <= window + 2.0, f"detected after {detect:.1f} s (window {window} s)"
    report("link_down", detect_s=round(detect, 2), down_s=down_for,
           recover_after_link_up_s=round(recover, 2), re_downloaded=again,
           pages=run["success"], seconds=round(c.elapsed, 1),
           per_node=[n["success"] for n in run["nodes"]])


def case_blackhole(c):
    """node1's connection is black-holed (no FIN, no RST): the broker closes it on missed
    heartbeats within the window, the node notices the silence itself and reconnects."""
    for i in (1, 2, 3):
        c.start_node(i)
    c.start_worker()
    c.wait_nodes_online(["node1", "node2", "node3"])
    n1 = c.node_id("node1")
    proxy = c.proxies["node1"]
    c.start_crawl()
    c.wait_progress(0.25)
    held = proxy.blackhole()
    assert held >= 1, "node1 has a connection through its proxy"
    accepted = proxy.accepted
    t0 = time.monotonic()
    # The node's own idle timeout can fire at the moment the broker closes it; it then
    # reconnects within tens of milliseconds, so "offline" may be too short to be polled.
    # The broker's log line for the close counts as well.
    closed_line = f"node {n1}: nothing heard"
    closed_before = c.env.log("broker").count(closed_line)
    detect = timed("broker closes node1",
                   lambda: c.env.log("broker").count(closed_line) > closed_before
                   or not c.online().get(n1), timeout=20)
    reconnect = timed("node1 reconnects by itself", lambda: proxy.accepted > accepted,
                      timeout=30) + detect
    h.wait_until("node1 online again", lambda: c.online().get(n1), timeout=30, interval=0.05)
    recover = time.monotonic() - t0  # since the fault
    run = c.check_complete()
    proxy.set_pass()
    window = HEARTBEAT_MS * MISSED / 1000.0
    assert detect <= window + 2.0, f"detected after {detect:.1f} s (window {window} s)"
    assert c.env.log("broker").count(closed_line) > closed_before, \
        "closed for missed heartbeats"
    report("blackhole", detect_s=round(detect, 2), window_s=window,
           node_reconnected_s=round(reconnect, 2), recover_s=round(recover, 2),
           re_downloaded=c.site_stats()["again"], pages=run["success"],
           seconds=round(c.elapsed, 1))


def case_slow_node(c):
    """node1's link is capped at 1 Mbit/s both ways. Two runs of the same site: the fast
    nodes alone, then with the slow node too; the second must not take much longer."""
    c.start_node(2)
    c.start_node(3)
    c.start_worker()
    c.wait_nodes_online(["node2", "node3"])
    c.start_crawl()
    c.check_complete()
    fast_only = c.elapsed
    os.unlink(c.output)
    c.lab.limit_rate(c.node_hosts[0], "1mbit")
    c.start_node(1)
    c.wait_nodes_online(["node1"])
    c.start_crawl()
    run = c.check_complete()
    with_slow = c.elapsed
    per_node = {n["nodeId"][:8]: n["success"] for n in run["nodes"]}
    ratio = with_slow / fast_only
    report("slow_node", fast_nodes_only_s=round(fast_only, 1),
           with_1mbit_node_s=round(with_slow, 1), ratio=round(ratio, 2), per_node=per_node)
    assert ratio <= 1.4, f"the slow node held the run back: {with_slow:.1f} s vs {fast_only:.1f} s"


def case_worker_flap(c):
    """The worker's link flaps four times during the crawl: down for 2.5 s each time (TCP
    rides over that), and the second and fourth time its connection is also reset (a NAT
    or middlebox that lost its state), so the worker reconnects and results it had not
    acked come again."""
    for i in (1, 2, 3):
        c.start_node(i)
    c.start_worker(via_proxy=True)
    c.wait_nodes_online(["node1", "node2", "node3"])
    c.start_crawl()
    c.wait_progress(0.15)
    for flap in range(4):
        c.lab.link_down(c.worker_host)
        time.sleep(2.5)
        if flap % 2:
            c.proxies["worker"].reset_all()
        c.lab.link_up(c.worker_host)
        time.sleep(2.0)
    before = h.count_lines(c.output)
    recover = timed("items grow after the last flap", lambda: h.count_lines(c.output) > before
                    or (h.run_of(c.broker, c.job["id"]) or {}).get("status") == "Success",
                    timeout=60)
    run = c.check_complete()
    reconnects = c.env.log("worker").count("disconnected")
    assert reconnects >= 2, f"the worker saw both resets ({reconnects} disconnects)"
    report("worker_flap", flaps=4, worker_disconnects=reconnects,
           progress_after_last_flap_s=round(recover, 2), re_downloaded=c.site_stats()["again"],
           pages=run["success"], seconds=round(c.elapsed, 1))


def case_partition(c):
    """The broker's link to every node drops for 20 s (existing and new connections
    black-holed); the worker stays connected. Nodes come back, the crawl completes."""
    for i in (1, 2, 3):
        c.start_node(i)
    c.start_worker()
    c.wait_nodes_online(["node1", "node2", "node3"])
    ids = [c.node_id(f"node{i}") for i in (1, 2, 3)]
    c.start_crawl()
    c.wait_progress(0.25)
    for p in c.proxies.values():
        p.blackhole(new_connections_too=True)
    t0 = time.monotonic()
    detect = timed("every node offline", lambda: not any(c.online().get(i) for i in ids),
                   timeout=20)
    time.sleep(max(0.0, 20.0 - (time.monotonic() - t0)))
    for p in c.proxies.values():
        p.set_pass()
    recover = timed("every node online again", lambda: all(c.online().get(i) for i in ids),
                    timeout=30)
    run = c.check_complete()
    report("partition", detect_s=round(detect, 2), partition_s=20,
           recover_after_heal_s=round(recover, 2), re_downloaded=c.site_stats()["again"],
           pages=run["success"], seconds=round(c.elapsed, 1))


def case_clock_skew(c):
    """A node whose clock is 10 minutes ahead (libfaketime) is refused with a message
    naming the skew, in its own log, the broker's log and `spiderhub console nodes`; the
    crawl goes on with the others."""
    c.start_node(2)
    c.start_node(3)
    c.start_worker()
    c.wait_nodes_online(["node2", "node3"])
    env = dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1")
    # libfaketime hangs a process linked with jemalloc (its clock_gettime recurses into
    # jemalloc's initialisation): the build's glibc-malloc copy of the program runs here.
    plain = os.path.join(os.path.dirname(c.args.bin), "spiderhub-libc-malloc")
    skewed = c.env.spawn("skewed", c.node_hosts[0].argv(
        ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", "+10m",
         plain if os.path.exists(plain) else c.args.bin, "node", "-c", _skewed_conf(c)]),
        env=env)
    h.wait_until("the skewed node refused", lambda: "clock skew" in c.env.log("skewed"),
                 timeout=20)
    node_line = next(l for l in c.env.log("skewed").splitlines() if "clock skew" in l)
    broker_line = h.wait_until("broker log line", lambda: next(
        (l for l in c.env.log("broker").splitlines() if "refused" in l and "clock skew" in l), None),
        timeout=10)
    skewed_id = c.node_id("skewed")
    assert skewed_id in broker_line and c.node_hosts[0].ip in broker_line, broker_line
    console = subprocess.run(c.broker_host.argv([c.args.bin, "console", "-b", "127.0.0.1:4242",
                                                 "nodes"]),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert console.returncode == 0, console.stdout
    refused = [l for l in console.stdout.splitlines() if skewed_id in l and "clock skew" in l]
    assert refused and "ahead of" in refused[0], console.stdout
    assert skewed.poll() is None
    c.start_crawl()
    run = c.check_complete()
    assert skewed_id not in c.online()
    report("clock_skew", node_log=repr(node_line.split("HTTP 401: ", 1)[-1][:100]),
           console=repr(refused[0].strip()[:120]), pages=run["success"],
           seconds=round(c.elapsed, 1))


def _skewed_conf(c):
    conf = c.env.write("skewed.yaml", f"""
broker: https://{c.broker_host.ip}:{BROKER_PORT}/
token: {NODE_SECRET}
tls:
  ca_file: {c.certs['ca.pem']}
id_file: {c.env.path('skewed.id')}
heartbeat_interval_ms: {HEARTBEAT_MS}
reconnect:
  initial_ms: 500
  max_ms: 2000
download:
  allow_private_addresses: true
""")
    os.chmod(conf, 0o600)
    return conf


# (pages, site latency ms, politeness concurrency): long enough for a fault mid-crawl.
def case_failover(c):
    """Two brokers on their own hosts share PostgreSQL; nodes and the worker know both. The
    active broker's host loses its link (it reaches neither the database nor the nodes):
    the standby takes the lapsed lease, everyone follows it and the crawl completes, every
    page once. The old leader, unable to renew, steps down (re-executes itself) and
    waits as a standby until the database is reachable; when the link comes back it
    answers as a standby naming the new leader."""
    urls = [f"https://{c.broker_host.ip}:{BROKER_PORT}/",
            f"https://{c.broker2_host.ip}:{BROKER_PORT}/"]
    for i in (1, 2):
        c.start_node(i, urls=urls)
    c.start_worker(urls=urls)
    c.wait_nodes_online(["node1", "node2"])
    c.start_crawl()
    c.wait_progress(0.3)
    c.lab.link_down(c.broker_host)
    t_down = time.monotonic()
    takeover = timed("broker2 active", lambda: h.http_get(c.broker2.base + "/healthz")[0] == 200,
                     timeout=30)
    assert takeover <= 10.0, f"the standby took {takeover:.2f} s"
    old = c.broker
    c.broker = c.broker2  # the API of the new leader from here on
    ids = [c.node_id(n) for n in ("node1", "node2")]
    follow = timed("nodes online at broker2", lambda: all(c.online().get(i) for i in ids),
                   timeout=30)
    # The worker hears a ping every heartbeat: it notices the silence (idle_timeout_ms 4 s)
    # and moves too, instead of waiting for TCP.
    h.wait_until("worker on broker2", lambda: "(broker 2 of 2)" in c.env.log("worker"),
                 timeout=30, interval=0.05)
    worker_moved = time.monotonic() - t_down
    assert worker_moved <= 20.0, f"the worker moved {worker_moved:.1f} s after the link loss"
    # Cut off, the old leader cannot renew: it stops serving within about two leases
    # (its writes were fenced from the takeover on).
    h.wait_until("the old leader steps down", lambda: "stepping down" in c.env.log("broker"),
                 timeout=60, interval=0.2)
    stepped = time.monotonic() - t_down
    run = c.check_complete()
    c.lab.link_up(c.broker_host)

    def standby():
        status, raw = h.http_get(old.base + "/healthz")
        return status == 503 and b'"leaderName":"broker2"' in raw
    back = timed("the old broker back as a standby", standby, timeout=30)
    assert all(c.online().get(i) for i in ids), "the deposed broker changed the node table"
    report("failover", takeover_s=round(takeover, 2), nodes_follow_s=round(follow, 2),
           worker_on_broker2_s=round(worker_moved, 2),
           old_leader_steps_down_s=round(stepped, 2), standby_after_link_up_s=round(back, 2),
           re_downloaded=c.site_stats()["again"], pages=run["success"],
           seconds=round(c.elapsed, 1))


CASES = {
    "tls": (case_tls, 1000, 10, 16),
    "link_down": (case_link_down, 3000, 40, 8),
    "blackhole": (case_blackhole, 3000, 40, 8),
    "slow_node": (case_slow_node, 5000, 20, 12),
    "worker_flap": (case_worker_flap, 3000, 40, 8),
    "partition": (case_partition, 3000, 40, 8),
    "clock_skew": (case_clock_skew, 1000, 10, 16),
    "failover": (case_failover, 3000, 40, 8),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    args = ap.parse_args()
    fn, pages, latency, concurrency = CASES[args.case]
    args.bin = os.path.abspath(args.bin)
    c = Cluster(args, args.case, pages, latency, concurrency)
    if args.case == "slow_node":
        c.block_size = 100  # the default: what a slow node would hold without slow_node_block_ms
    try:
        c.start()
        fn(c)
    except BaseException:
        c.env.dump_logs()
        raise
    finally:
        c.close()


if __name__ == "__main__":
    main()
