"""Large pages and backlogs (issue #34): real broker, node and worker processes crawl a
generated site served by tests/e2e/realweb_site.py (a threaded stdlib server in this
process) whose pages are as big as the real web's.

1. backlog_cpp: 600 pages of 200 KiB, broker + 2 nodes + the C++ sample worker. Once ~100
   pages are in the items file the worker is frozen (SIGSTOP) for 8 s while the nodes go
   on downloading, then thawed. Every page exactly once in the items file, the run ends
   Success with exact totals, and no process logs "write queue overflow" or "message too
   large", nor does the worker lose its connection (Poll replies are bounded by bytes:
   dispatch.max_poll_bytes / the worker's poll_max_bytes).
2. backlog_python: the same with the Python worker (spiderhub.worker, samples:LinkSpider).
3. big_pages: a 20 MiB and a 40 MiB page linked from the start page beside 20 ordinary
   ones. The ordinary pages arrive exactly once; each big page has one item with errorKind
   "too_large" (the broker's dispatch.max_body_bytes, 10 MiB by default, is below the 20
   MiB page; the node's own 32 MiB below the 40 MiB one); the run ends; the node's hub
   connection is never closed (no "message too large" on the broker, no "disconnected" on
   the node).
4. content_types: a job with AllowedContentTypes "text/html"; the start page links a 5 MiB
   application/pdf at /download?id=1 (no extension, written slowly: 64 KiB per 20 ms) and
   /files/report.pdf. The /download item has errorKind "skipped_type", the server wrote
   less than 1 MiB of the PDF before the node hung up, /files/report.pdf was never
   requested (the sample spider skips binary extensions), the HTML pages are all there,
   and robots.txt (text/plain, as it always is) is still fetched for the run.
5. bad_configs: broker with dispatch.max_body_bytes 0, -5, or 50000000 with
   http.max_message_bytes at 16 MiB (its base64 size plus 1 MiB does not fit), with
   dispatch.max_poll_bytes 0 or http.max_write_queue_bytes 0; node with
   download.max_body_bytes 0 or download.results_batch_bytes 0; worker-sample with
   poll_max_bytes 0: each exits 2 within a few seconds naming the key(s) on stderr (and
   not as an unknown key). The same keys with good values are accepted: a broker with
   max_body_bytes 50000000 and max_message_bytes 80000000 starts, a node and a worker with
   the new keys connect to it.
6. small_limits: every byte limit below one page (dispatch.max_poll_bytes, the node's
   results_batch_bytes, the workers' poll_max_bytes: 64 KiB; pages of 200 KiB): a reply
   still carries one result, so both workers crawl every page exactly once.
7. job_limits: job properties MaxBodyBytes 1048576 and AllowedContentTypes "text/*": a
   2 MiB HTML page ends too_large, a text/csv body is kept, an image/png is skipped_type,
   a 302 whose own Content-Type is application/octet-stream is followed to its HTML
   target (redirect hops are not judged), and a link to /files/archive.ZIP is never
   requested; with the C++ sample worker, then the Python LinkSpider on the same site.

Each scenario is independent (its own processes, ports and site); main() runs them all
(--only NAME[,NAME] picks some) and prints one line per scenario with its figures; the
exit code is 1 when any failed.
"""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback

import harness as h
import realweb_site

MiB = 1 << 20
PY_CLS = "py.LinkSpider"
CPP_CLS = "spiderhub.samples.SiteSpider"

# What the processes log when a connection breaks (net/http_server.cpp, net/ws_client.cpp,
# net/hub_client.cpp, actors/broker/sessions.cpp, clients/python/spiderhub/worker.py).
OVERFLOW = re.compile(r"write queue overflow")
TOO_LARGE_MSG = re.compile(r"message too large")
# A C++ hub client (node, worker-sample) that lost its link; "closed by client" is its own
# clean exit. The Python worker logs "connection to ... lost".
HUB_DROP = re.compile(r"disconnected: (?!closed by client)|server closed the hub|"
                      r"connect failed|connection to \S+ lost|timed out after \d+ ms; reconnecting")
BROKER_NODE_DROP = re.compile(r"node \S+ disconnected")


def parse_args():
    return h.parse_args(__doc__, only="comma-separated scenario names (default: all)")


# ---- helpers ------------------------------------------------------------------------


def log_hits(env, regex, names=None):
    """[(process name, line)] of the lines of the processes' logs that match `regex`."""
    hits = []
    for p in env.procs:
        if names is not None and p.name not in names:
            continue
        for line in env.log(p.name).splitlines():
            if regex.search(line):
                hits.append((p.name, line.strip()))
    return hits


class Checks:
    """Collects the failed expectations of a scenario so one run reports all of them."""

    def __init__(self, name):
        self.name = name
        self.failed = []

    def expect(self, ok, msg):
        if not ok:
            self.failed.append(msg() if callable(msg) else msg)
        return ok

    def no_log(self, env, regex, names=None, what=""):
        hits = log_hits(env, regex, names)
        return self.expect(not hits, lambda: (
            f"{what or regex.pattern}: {len(hits)} log line(s), e.g. " +
            "; ".join(f"[{n}] {l[:300]}" for n, l in hits[:3])))

    def call(self, what, fn, *a, **kw):
        """fn(*a, **kw), an AssertionError of it recorded as a failure."""
        try:
            return fn(*a, **kw)
        except AssertionError as e:
            self.failed.append(f"{what}: {e}")
            return None

    def done(self):
        assert not self.failed, (f"{len(self.failed)} check(s) failed:\n  - " +
                                 "\n  - ".join(self.failed))


def wait_for(what, predicate, timeout, interval=0.25, check=None):
    """Like harness.wait_until, but `check()` runs outside the tolerant try each round, so
    it can fail the wait at once (a log line that says the scenario has already failed)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if check is not None:
            check()
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def fail_on_logs(env, *rules):
    """A check for wait_for: rules are (regex, process names or None)."""
    def check():
        for regex, names in rules:
            hits = log_hits(env, regex, names)
            if hits:
                n, line = hits[0]
                raise AssertionError(f"[{n}] logged: {line[:400]}")
    return check


def wait_run_end(broker, job, timeout, check=None, want=None):
    """Waits until the job's run is no longer Running (and no request is left); `want`:
    the status it must end with."""
    def ended():
        r = h.run_of(broker, job["id"]) or {}
        if r.get("status") in ("Success", "Failed", "Exited") and r.get("left", 0) == 0:
            return r
        return None
    run = wait_for("the run to end", ended, timeout, interval=0.5, check=check)
    if want:
        assert run["status"] == want, f"run ended {run['status']}, not {want}: {run}"
    return run


def nodes_online(broker, n, timeout=30):
    h.wait_until(f"{n} node(s) online", lambda: sum(
        x["isOnline"] for x in h.api("GET", broker, "/api/v1.0/nodes")[1]) == n, timeout=timeout)


def start_py_worker(env, broker, name, output, extra=()):
    return h.start_py_worker(env, broker.base + "/", PY_CLS, output, name, extra)


def create_py_job(broker, start_url, properties=None):
    props = {"FullClassName": PY_CLS,
             "Arguments": json.dumps({"startUrl": start_url, "maxDepth": 50})}
    props.update(properties or {})
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "py", "jobType": "block", "cron": "0 0 1 1 *", "properties": props})
    assert status == 201, (status, job)
    return job


def check_items(checks, output, ok_urls, errors=None):
    """Every URL of `ok_urls` exactly once without an errorKind, every URL of `errors`
    ({url: errorKind}) exactly once with that errorKind, and nothing else. Returns
    {url: item}."""
    errors = errors or {}
    items = h.read_items(output)
    counts = collections.Counter(i["url"] for i in items)
    by_url = {i["url"]: i for i in items}
    expected = set(ok_urls) | set(errors)
    missing = expected - set(counts)
    checks.expect(not missing, lambda: f"{len(missing)} of {len(expected)} URLs have no "
                  f"item, e.g. {sorted(missing)[:3]} ({len(items)} items)")
    extra = set(counts) - expected
    checks.expect(not extra, lambda: f"items of unexpected URLs: {sorted(extra)[:5]}")
    dupes = sorted(u for u, c in counts.items() if c > 1)
    checks.expect(not dupes, lambda: f"{len(dupes)} URLs have more than one item, e.g. {dupes[:3]}")
    bad = [(u, by_url[u].get("errorKind"), by_url[u].get("error")) for u in ok_urls
           if u in by_url and (by_url[u].get("errorKind") or by_url[u].get("error"))]
    checks.expect(not bad, lambda: f"{len(bad)} ordinary pages failed, e.g. {bad[:3]}")
    wrong = [(u, by_url[u].get("errorKind"), by_url[u].get("error"), k)
             for u, k in errors.items() if u in by_url and by_url[u].get("errorKind") != k]
    checks.expect(not wrong, lambda: "items without the expected errorKind (url, errorKind, "
                  f"error, expected): {wrong}")
    return by_url


def run_bounded(argv, timeout=15, cwd=None):
    """Runs a program that is expected to exit by itself; (exit code, stdout, stderr,
    seconds). One that does not is killed (its whole session) after `timeout`."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=cwd, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err, time.monotonic() - t0
    return p.returncode, out, err, time.monotonic() - t0


def broker_yaml(env, name, http_extra="", dispatch_extra=""):
    """A broker config on a free loopback port with TOKEN and its own database."""
    port = h.free_port()
    text = (f"http:\n  address: 127.0.0.1\n  port: {port}\n{http_extra}"
            f"auth:\n  token: {h.TOKEN}\n  max_failures: 100000\n"
            f"storage:\n  path: {env.path('data-' + name, 'broker.db')}\n"
            "inspector:\n  enabled: false\n"
            + (f"dispatch:\n{dispatch_extra}" if dispatch_extra else ""))
    return env.write(f"{name}.yaml", text), port


def node_yaml(env, name, broker_base, download_extra=""):
    return env.write(f"{name}.yaml", h.with_private(
        f"broker: [{broker_base}/]\ntoken: {h.TOKEN}\nid_file: {env.path(name + '.id')}\n"
        "heartbeat_interval_ms: 1000\nreconnect:\n  initial_ms: 200\n  max_ms: 2000\n"
        + (f"download:\n{download_extra}" if download_extra else "")))


def worker_yaml(env, name, broker_base, extra=""):
    return env.write(f"{name}.yaml", (
        f"broker: {broker_base}/\ntoken: {h.TOKEN}\nfull_class_name: {CPP_CLS}\n{extra}"))


def metric(broker, name):
    return h.metrics(broker).get(name, 0.0)


# ---- 1, 2: a backlog behind a paused worker ---------------------------------------------

BACKLOG_PAGES = 600


def backlog(args, kind):
    name = f"backlog-{kind}"
    checks = Checks(name)
    with h.Env(args, name) as env, realweb_site.Site(pages=BACKLOG_PAGES, page_kb=200) as site:
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        env.start_node(broker, "node1")
        env.start_node(broker, "node2")
        nodes_online(broker, 2)
        output = env.path("items.jsonl")
        start = site.url("/index.html")
        if kind == "cpp":
            worker = env.start_worker(broker, runs=0)  # stays up: its peak RSS is read
            job = h.create_block_job(broker, start, output, max_depth=10)
        else:
            worker = start_py_worker(env, broker, "pyworker", output)
            job = create_py_job(broker, start)
        bad = fail_on_logs(env, (OVERFLOW, None), (TOO_LARGE_MSG, None))
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        wait_for("~100 items", lambda: h.count_lines(output) >= 100, 90, 0.05, check=bad)
        at_stop = h.count_lines(output)
        db = env.path("data", "broker.db")
        worker.send_signal(signal.SIGSTOP)
        try:
            time.sleep(8)
            m = h.metrics(broker)
            backlog_n = (m.get("spiderhub_results_stored_total", 0) -
                         m.get("spiderhub_results_acked_total", 0))
            spool_mb = (h.spool_bytes(db) or 0) / MiB
        finally:
            worker.send_signal(signal.SIGCONT)
        run = wait_run_end(broker, job, 120, check=bad, want="Success")
        took = time.monotonic() - t0
        rss = {p.name: h.status_mb(p.pid) for p in env.procs}
        checks.call("exactly once", h.assert_exactly_once, output, site.page_urls(), run)
        checks.no_log(env, OVERFLOW, what="write queue overflow")
        checks.no_log(env, TOO_LARGE_MSG, what="message too large")
        checks.no_log(env, HUB_DROP, names={worker.name},
                      what="the worker lost its connection to the broker")
        checks.no_log(env, HUB_DROP, names={"node1", "node2"},
                      what="a node lost its connection to the broker")
        # The scenario is only worth something if results did pile up while frozen.
        checks.expect(backlog_n >= 50, f"only {backlog_n:.0f} results waited for the frozen "
                      "worker (the crawl outran the pause: no backlog was tested)")
        checks.done()
        mb = BACKLOG_PAGES * site.page_bytes / MiB
        return (f"{BACKLOG_PAGES} pages x 200 KiB once, Success in {took:.1f}s "
                f"({BACKLOG_PAGES / took:.0f} pages/s, {mb / took:.1f} MiB/s, 8 s of it "
                f"frozen); frozen at {at_stop} items, {backlog_n:.0f} results "
                f"({spool_mb:.0f} MiB spooled) waiting when thawed; peak RSS " +
                ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))


def backlog_cpp(args):
    return backlog(args, "cpp")


def backlog_python(args):
    return backlog(args, "python")


# ---- 3: pages over the body limits ---------------------------------------------------------


def big_pages(args):
    checks = Checks("big_pages")
    site = realweb_site.Site(pages=21, page_kb=200)
    site.add_big_html("/big/20mb.html", 20 * MiB).add_big_html("/big/40mb.html", 40 * MiB)
    with h.Env(args, "big-pages") as env, site:
        broker = env.start_broker()
        env.start_node(broker, "node1")
        nodes_online(broker, 1)
        worker = env.start_worker(broker)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.url("/index.html"), output)
        bad = fail_on_logs(env, (TOO_LARGE_MSG, {"broker"}), (BROKER_NODE_DROP, {"broker"}),
                           (HUB_DROP, {"node1"}))
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        run = wait_run_end(broker, job, 90, check=bad)
        took = time.monotonic() - t0
        big = {site.url("/big/20mb.html"): "too_large", site.url("/big/40mb.html"): "too_large"}
        check_items(checks, output, site.page_urls(), big)
        n = site.pages + len(big)
        checks.expect(run["total"] == n and run["left"] == 0, f"run totals: {run}")
        checks.expect(run["success"] == site.pages and run["error"] == len(big),
                      f"expected {site.pages} successes and {len(big)} errors: {run}")
        checks.no_log(env, TOO_LARGE_MSG, {"broker"}, "the broker closed a connection")
        checks.no_log(env, BROKER_NODE_DROP, {"broker"}, "the broker lost the node")
        checks.no_log(env, HUB_DROP, {"node1"}, "the node lost its connection to the broker")
        checks.no_log(env, OVERFLOW, what="write queue overflow")
        checks.done()
        sent = {p: sum(site.written(p)) for p in ("/big/20mb.html", "/big/40mb.html")}
        asked = {p: site.requests(p) for p in sent}
        env.stop(worker)
        return (f"{site.pages} pages once, 20 and 40 MiB pages too_large, run "
                f"{run['status']} in {took:.1f}s; the server wrote "
                + ", ".join(f"{p} {sent[p] / MiB:.1f} MiB in {asked[p]} request(s)" for p in sent))


# ---- 4: content types ----------------------------------------------------------------------


def content_types(args):
    checks = Checks("content_types")
    site = realweb_site.Site(pages=10, page_kb=50)
    site.add_stream("/download?id=1", 5 * MiB, "application/pdf", chunk=64 * 1024, sleep=0.02)
    site.add_never("/files/report.pdf")
    with h.Env(args, "content-types") as env, site:
        broker = env.start_broker()
        env.start_node(broker, "node1")
        nodes_online(broker, 1)
        env.start_worker(broker)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.url("/index.html"), output,
                                 properties={"AllowedContentTypes": "text/html"})
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        run = wait_run_end(broker, job, 60)
        took = time.monotonic() - t0
        dl = site.url("/download?id=1")
        # robots.txt is text/plain: a run that only wants text/html still needs it.
        checks.no_log(env, re.compile(r"robots\.txt failed"), {"node1"},
                      "robots.txt (text/plain) could not be fetched for the run")
        check_items(checks, output, site.page_urls(), {dl: "skipped_type"})
        pdf_asked = site.requests("/files/report.pdf")
        checks.expect(pdf_asked == 0, f"/files/report.pdf was requested {pdf_asked} time(s)")
        dl_asked = site.requests("/download?id=1")
        checks.expect(dl_asked == 1, f"/download?id=1 was requested {dl_asked} times, not once")
        # The handler records its count once its next write failed (20 ms after the abort).
        try:
            h.wait_until("the PDF response to end", lambda: site.written("/download?id=1"),
                         timeout=10)
        except AssertionError:
            pass
        written = site.written("/download?id=1")
        going = site.inflight("/download?id=1")
        checks.expect(not going, f"the PDF response is still open 10 s after the run ended, "
                      f"{going} bytes written: the node stopped reading without closing the "
                      "connection")
        written = written + going or [0]
        checks.expect(max(written) < MiB, f"the server wrote {max(written)} bytes of the 5 MiB "
                      "PDF before the node hung up (want < 1 MiB)")
        checks.expect(run["total"] == site.pages + 1 + pdf_asked and run["left"] == 0,
                      f"run totals: {run}")
        checks.done()
        return (f"{site.pages} HTML pages once in {took:.1f}s; /download?id=1 skipped_type after "
                f"{max(written) / 1024:.0f} KiB of 5 MiB written; /files/report.pdf never "
                f"requested; run {run['status']} (success {run['success']}, error {run['error']})")


# ---- 5: limits refused at startup ----------------------------------------------------------


def bad_configs(args):
    checks = Checks("bad_configs")
    with h.Env(args, "bad-configs") as env:
        results = []

        def refused(what, argv, keys):
            rc, out, err, secs = run_bounded(argv, timeout=15, cwd=env.dir)
            results.append(what)
            detail = f"{what}: exit {rc} after {secs:.1f}s; stderr: {err.strip()[-600:]!r}"
            checks.expect(rc == 2, "not exit 2: " + detail)
            checks.expect(secs < 5, "slow: " + detail)
            for k in keys:
                checks.expect(k in err, f"stderr does not name {k}: " + detail)
            checks.expect("unknown key" not in err, "refused as an unknown key: " + detail)

        b = [args.bin, "broker", "-c"]
        for value in ("0", "-5"):
            conf, _ = broker_yaml(env, f"b-body{value}", dispatch_extra=f"  max_body_bytes: {value}\n")
            refused(f"broker dispatch.max_body_bytes {value}", b + [conf],
                    ["dispatch.max_body_bytes"])
        conf, _ = broker_yaml(env, "b-body50m", http_extra="  max_message_bytes: 16777216\n",
                              dispatch_extra="  max_body_bytes: 50000000\n")
        refused("broker dispatch.max_body_bytes 50000000 with http.max_message_bytes 16 MiB",
                b + [conf], ["dispatch.max_body_bytes", "http.max_message_bytes"])
        conf, _ = broker_yaml(env, "b-poll0", dispatch_extra="  max_poll_bytes: 0\n")
        refused("broker dispatch.max_poll_bytes 0", b + [conf], ["dispatch.max_poll_bytes"])
        conf, _ = broker_yaml(env, "b-wq0", http_extra="  max_write_queue_bytes: 0\n")
        refused("broker http.max_write_queue_bytes 0", b + [conf], ["http.max_write_queue_bytes"])
        unused = f"http://127.0.0.1:{h.free_port()}"
        for key in ("max_body_bytes", "results_batch_bytes"):
            conf = node_yaml(env, f"n-{key}", unused, f"  {key}: 0\n")
            refused(f"node download.{key} 0", [args.bin, "node", "-c", conf],
                    [f"download.{key}"])
        conf = worker_yaml(env, "w-poll0", unused, "poll_max_bytes: 0\n")
        refused("worker-sample poll_max_bytes 0",
                [args.bin, "worker-sample", "-c", conf, "--runs", "1"], ["poll_max_bytes"])

        # The same keys with good values: accepted, and the programs work with them.
        conf, port = broker_yaml(env, "b-good", http_extra=(
            "  max_message_bytes: 80000000\n  max_write_queue_bytes: 200000000\n"),
            dispatch_extra="  max_body_bytes: 50000000\n  max_poll_bytes: 1048576\n")
        broker = env.spawn("broker", b + [conf])
        broker.base = f"http://127.0.0.1:{port}"
        h.wait_until("the broker with max_body_bytes 50000000 and max_message_bytes 80000000",
                     lambda: broker.poll() is not None or h.http_get(broker.base + "/healthz")[0] == 200,
                     timeout=20)
        assert broker.poll() is None, f"the broker exited {broker.returncode}: {env.log('broker')[-1500:]}"
        conf = node_yaml(env, "node1", broker.base,
                         "  max_body_bytes: 1048576\n  results_batch_bytes: 1048576\n")
        node = env.spawn("node1", [args.bin, "node", "-c", conf])
        h.wait_until("the node with the new download keys online", lambda: node.poll() is not None or
                     sum(x["isOnline"] for x in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 1,
                     timeout=20)
        checks.expect(node.poll() is None,
                      lambda: f"the node exited {node.returncode}: {env.log('node1')[-1500:]}")
        conf = worker_yaml(env, "worker", broker.base, "poll_max_bytes: 1048576\n")
        worker = env.spawn("worker", [args.bin, "worker-sample", "-c", conf])
        h.wait_until("the worker with poll_max_bytes connected", lambda: worker.poll() is not None
                     or metric(broker, 'spiderhub_sessions{kind="worker"}') == 1, timeout=20)
        checks.expect(worker.poll() is None,
                      lambda: f"the worker exited {worker.returncode}: {env.log('worker')[-1500:]}")
        checks.done()
        return (f"{len(results)} bad limits refused with exit 2 naming the key(s); good values "
                "of every new key accepted (broker up, node online, worker connected)")


# ---- 6: byte limits smaller than one page ------------------------------------------------


def small_limits(args):
    checks = Checks("small_limits")
    with h.Env(args, "small-limits") as env, realweb_site.Site(pages=30, page_kb=200) as site:
        broker = env.start_broker(extra_yaml="dispatch:\n  max_poll_bytes: 65536\n")
        conf = node_yaml(env, "node1", broker.base, "  results_batch_bytes: 65536\n")
        env.spawn("node1", [args.bin, "node", "-c", conf])
        nodes_online(broker, 1)
        conf = worker_yaml(env, "worker", broker.base, "poll_max_bytes: 65536\n")
        env.spawn("worker", [args.bin, "worker-sample", "-c", conf, "--runs", "1"])
        out1 = env.path("items-cpp.jsonl")
        job = h.create_block_job(broker, site.url("/index.html"), out1)
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        run = wait_run_end(broker, job, 60, want="Success")
        cpp_s = time.monotonic() - t0
        checks.call("C++ worker, exactly once", h.assert_exactly_once, out1, site.page_urls(), run)
        out2 = env.path("items-py.jsonl")
        py = start_py_worker(env, broker, "pyworker", out2, ["--poll-max-bytes", "65536"])
        job2 = create_py_job(broker, site.url("/index.html"))
        h.wait_until("the Python worker connected", lambda: py.poll() is not None or
                     "connected to" in env.log("pyworker"), timeout=20)
        assert py.poll() is None, \
            f"the Python worker exited {py.returncode}: {env.log('pyworker')[-1500:]}"
        h.trigger_run(broker, job2["id"])
        t0 = time.monotonic()
        run2 = wait_run_end(broker, job2, 60, want="Success")
        py_s = time.monotonic() - t0
        checks.call("Python worker, exactly once", h.assert_exactly_once, out2,
                    site.page_urls(), run2)
        checks.no_log(env, OVERFLOW, what="write queue overflow")
        checks.no_log(env, TOO_LARGE_MSG, what="message too large")
        checks.done()
        return (f"64 KiB poll/batch limits, 200 KiB pages: C++ worker {site.pages} pages once in "
                f"{cpp_s:.1f}s, Python worker in {py_s:.1f}s")


# ---- 7: per-job limits -----------------------------------------------------------------------


def job_limits(args):
    checks = Checks("job_limits")
    site = realweb_site.Site(pages=10, page_kb=50)
    site.add_big_html("/big/2mb.html", 2 * MiB)
    site.add_page("/data?fmt=csv", b"name,value\nalpha,1\nbeta,2\n", "text/csv")
    site.add_page("/img?id=3", os.urandom(200 * 1024), "image/png")
    # The hop is application/octet-stream; its target is linked from nowhere else, so the
    # broker's request for it (redirects go through the broker) is new.
    site.add_page("/landing.html", b"<html><head><title>Landing</title></head><body>ok</body></html>",
                  "text/html", linked=False)
    site.add_redirect("/moved?id=1", "/landing.html")
    site.add_never("/files/archive.ZIP", "application/zip")
    props = {"MaxBodyBytes": str(MiB), "AllowedContentTypes": "text/*"}
    with h.Env(args, "job-limits") as env, site:
        broker = env.start_broker()
        env.start_node(broker, "node1")
        nodes_online(broker, 1)
        csv, landing = site.url("/data?fmt=csv"), site.url("/landing.html")
        moved = site.url("/moved?id=1")
        ok = site.page_urls() | {csv, landing}
        errors = {site.url("/big/2mb.html"): "too_large", site.url("/img?id=3"): "skipped_type"}
        # The C++ sample worker...
        env.start_worker(broker)
        out1 = env.path("items-cpp.jsonl")
        job = h.create_block_job(broker, site.url("/index.html"), out1, properties=props)
        h.trigger_run(broker, job["id"])
        run = wait_run_end(broker, job, 60)
        items = check_items(checks, out1, ok, errors)
        checks.expect(items.get(csv, {}).get("status") == 200, f"text/csv item: {items.get(csv)}")
        checks.expect(items.get(landing, {}).get("status") == 200 and
                      items.get(landing, {}).get("finalUrl") == landing,
                      f"item of the redirect's target: {items.get(landing)}")
        checks.expect(moved not in items, f"the redirect itself has an item: {items.get(moved)}")
        # The redirect is a request of its own, counted as skipped; its target is another.
        checks.expect(run["total"] == len(ok) + len(errors) + 1 and run["left"] == 0 and
                      run["skipped"] == 1, f"C++ worker's run totals: {run}")
        # ... and the Python one (LinkSpider writes errorKind too), on the same site.
        out2 = env.path("items-py.jsonl")
        start_py_worker(env, broker, "pyworker", out2)
        job2 = create_py_job(broker, site.url("/index.html"), props)
        h.trigger_run(broker, job2["id"])
        run2 = wait_run_end(broker, job2, 60)
        check_items(checks, out2, ok, errors)
        checks.expect(run2["total"] == len(ok) + len(errors) + 1 and run2["left"] == 0 and
                      run2["skipped"] == 1, f"Python worker's run totals: {run2}")
        zips = site.requests("/files/archive.ZIP")
        checks.expect(zips == 0, f"/files/archive.ZIP was requested {zips} time(s)")
        checks.done()
        return (f"MaxBodyBytes 1 MiB: 2 MiB page too_large; text/* keeps text/csv, skips "
                f"image/png, follows a redirect whose hop is application/octet-stream; "
                f".ZIP link not followed; C++ and Python workers alike")


SCENARIOS = [backlog_cpp, backlog_python, big_pages, content_types, bad_configs, small_limits,
             job_limits]


def main():
    args = parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {f.__name__ for f in SCENARIOS}
    if unknown:
        sys.exit(f"unknown scenario(s) {sorted(unknown)}; known: "
                 f"{[f.__name__ for f in SCENARIOS]}")
    failed = []
    t_all = time.monotonic()
    for f in SCENARIOS:
        if only and f.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            line = f(args)
        except Exception as e:  # report, then go on with the next scenario
            traceback.print_exc()
            print(f"FAIL {f.__name__} ({time.monotonic() - t0:.1f}s): "
                  f"{type(e).__name__}: {str(e)[:800]}", flush=True)
            failed.append(f.__name__)
        else:
            print(f"ok   {f.__name__} ({time.monotonic() - t0:.1f}s): {line}", flush=True)
    print(f"large pages: {len(failed)} scenario(s) failed {failed} in "
          f"{time.monotonic() - t_all:.0f}s" if failed else
          f"large pages: all passed in {time.monotonic() - t_all:.0f}s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
