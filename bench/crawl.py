#!/usr/bin/env python3
"""Crawl benchmark: an N-page site (default 20,000) crawled by broker + node(s) + sample
worker on this machine, dedup and persistence on. Prints pages/s, total time, unique pages,
the peak RSS (VmHWM) and CPU per page of every process, and the broker's database bytes
before the crawl, when it ends and once the finished run is purged.

The site is rendered by nginx from a template (--site template, the default: any size, no
files; page i links to its children 10i..10i+9, to the index and to pages 1-4, ~4.3 KB of
filler words drawn at random like gen_site's) or written as files by bench/gen_site.py
(--site files: the spec the Scrapy comparison uses, up to a few hundred thousand pages:
children, 5 random links, random filler). Either way nginx serves a page as cheaply as a
static file, and the two have the same shape (15 links, 5 of them duplicates; pages that
pack alike), so the site does not limit or distort the figure. (Before session 8 the
template repeated one paragraph and had 11 links: its pages packed ~4x smaller than
gen_site's, which flattered the broker's stored bytes and CPU; figures in
docs/benchmarks.md from before say which site they used.)

--storage postgresql runs the broker on a throwaway PostgreSQL 15 cluster (tests/e2e/pg.py,
durability off like a test cluster: fsync, synchronous_commit, full_page_writes) instead
of SQLite; the database bytes are then pg_database_size()."""
import argparse
import collections
import datetime
import os
import signal
import sqlite3
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402
import pg  # noqa: E402


def machine_cpu():
    """(busy, total) jiffies of all cores from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=100)
    ap.add_argument("--thread-num", type=int, default=16)
    ap.add_argument("--site", choices=["template", "files"], default="template")
    ap.add_argument("--max-per-host", type=int, default=1000,
                    help="politeness.max_concurrency_per_host: the site is one local host, so "
                         "the benchmark raises the per-host limit (default 8) explicitly")
    ap.add_argument("--slow-node-block-ms", type=int, default=None,
                    help="dispatch.slow_node_block_ms (0 turns the node-speed block sizing off)")
    ap.add_argument("--max-unacked", type=int, default=None,
                    help="dispatch.max_unacked_results (0: no backpressure)")
    ap.add_argument("--frontier-memory-max", type=int, default=None,
                    help="dispatch.frontier_memory_max (0: the whole frontier in memory)")
    ap.add_argument("--kill", choices=["broker", "node"], default=None,
                    help="kill -9 the broker (restarted on its port and database) or node1 "
                         "(restarted) once --kill-at of the pages are done; the figures then "
                         "show that every page still came exactly once")
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--broker-yaml", default="",
                    help="extra broker YAML sections, e.g. 'storage: {batch_max: 1000}'")
    ap.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--no-compress", action="store_true",
                    help="storage.compress_results: false (SQLite keeps result bodies as text)")
    ap.add_argument("--no-spool", action="store_true",
                    help="storage.result_spool: false (SQLite keeps result bodies in rows)")
    ap.add_argument("--trace", action="store_true",
                    help="sample /metrics every 0.1 s and print results stored/acked over time")
    a = ap.parse_args()
    if a.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    env = h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)), "bench")
    if a.site == "template" and (a.pages < 10 or a.pages % 10):
        ap.error("--site template needs a multiple of 10 pages")
    site = env.start_template_site(a.pages) if a.site == "template" else env.start_site(a.pages)
    broker_yaml = (f"dispatch:\n  block_size: {a.block_size}\n"
                   f"  thread_num: {a.thread_num}\n" +
                   (f"  slow_node_block_ms: {a.slow_node_block_ms}\n"
                    if a.slow_node_block_ms is not None else "") +
                   (f"  max_unacked_results: {a.max_unacked}\n" if a.max_unacked is not None else "") +
                   (f"  frontier_memory_max: {a.frontier_memory_max}\n"
                    if a.frontier_memory_max is not None else "") +
                   f"politeness:\n  max_concurrency_per_host: {a.max_per_host}\n"
                   "log:\n  level: " + os.environ.get("BENCH_LOG", "warn") + "\n" +
                   a.broker_yaml + "\n")
    cluster = None
    storage_yaml = None
    if a.no_compress or a.no_spool:
        storage_yaml = (f"storage:\n  path: {env.path('data', 'broker.db')}\n" +
                        ("  compress_results: false\n" if a.no_compress else "") +
                        ("  result_spool: false\n" if a.no_spool else ""))
    if a.storage == "postgresql":
        cluster = pg.Postgres(env.dir).start()
        storage_yaml = f"storage:\n  kind: postgresql\n  postgresql: \"{cluster.conninfo()}\"\n"
    broker = env.start_broker(extra_yaml=broker_yaml, storage_yaml=storage_yaml)
    nodes = [env.start_node(broker, f"node{i + 1}") for i in range(a.nodes)]
    worker = env.start_worker(broker, runs=0)  # stays up so its CPU time can be read
    h.wait_until("nodes online", lambda: sum(
        n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
    output = env.path("items.jsonl")
    db = env.path("data", "broker.db")

    def db_size():
        """(database bytes, WAL bytes) of either backend."""
        if cluster:
            return (int(cluster.sql("SELECT pg_database_size(current_database())")), 0)
        return h.db_bytes(db)

    def spool_size():
        """Bytes in the result spool's segment files (SQLite)."""
        return h.spool_bytes(db) or 0
    db_before = db_size()
    job = h.create_block_job(broker, site.base + "/index.html", output)

    pg_cpu0 = sum(h.cpu_seconds(p, 0) for p in h.process_tree(cluster.pid)) if cluster else 0
    h.trigger_run(broker, job["id"], interval=0.2)
    started = time.monotonic()
    started_wall = time.time()
    cpu0 = machine_cpu()
    timeline = []  # (seconds since trigger, pages done)

    trace = []  # (seconds, requests accepted, results stored, results acked, storage busy s)
    killed = []  # what was killed, at how many pages
    db_peak = [sum(db_before)]
    spool_peak = [spool_size()]

    def sample_metrics():
        v = h.metrics(broker)
        trace.append((time.monotonic() - started, v.get("spiderhub_requests_accepted_total", 0),
                      v.get("spiderhub_results_stored_total", 0),
                      v.get("spiderhub_results_acked_total", 0),
                      v.get("spiderhub_storage_batch_seconds_sum", 0)))

    def finished():
        nonlocal broker
        if a.trace:
            sample_metrics()
        db_peak[0] = max(db_peak[0], sum(db_size()))
        spool_peak[0] = max(spool_peak[0], spool_size())
        r = h.run_of(broker, job["id"]) or {}
        timeline.append((time.monotonic() - started, r.get("success", 0)))
        if a.kill and not killed and h.count_lines(output) >= a.kill_at * a.pages:
            killed.append((a.kill, h.count_lines(output)))
            if a.kill == "broker":
                broker.send_signal(signal.SIGKILL)
                broker.wait(10)
                broker = env.start_broker(name="broker2", extra_yaml=broker_yaml,
                                          port=broker.port, db=db, storage_yaml=storage_yaml)
            else:
                nodes[0].send_signal(signal.SIGKILL)
                nodes[0].wait(10)
                nodes[0] = env.start_node(broker, "node1b")
            return False
        return r.get("status") in ("Success", "Exited", "Failed")

    h.wait_until("run finished", finished, timeout=7200, interval=0.1)
    polled = time.monotonic() - started
    run = h.run_of(broker, job["id"])
    # The run's end is when the broker wrote its final status (updateTime, ms), not when
    # this loop, which looks every 0.1 s, noticed it: on a 2 s crawl that lag was 0-5 %.
    # Like the start (the trigger's answer), it is read on this machine's wall clock.
    elapsed = polled
    try:
        ended = datetime.datetime.strptime(run["updateTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        if started_wall < ended <= started_wall + polled and not killed:
            elapsed = ended - started_wall
    except (KeyError, TypeError, ValueError):
        pass
    db_at_end = db_size()
    cpu1 = machine_cpu()
    busy = (cpu1[0] - cpu0[0]) / max(cpu1[1] - cpu0[1], 1)
    procs = {"broker": broker.pid, "worker": worker.pid}
    for n in nodes:
        procs[n.name] = n.pid
    rss = {name: h.status_mb(pid) for name, pid in procs.items()}
    cpu = {name: h.cpu_seconds(pid) for name, pid in procs.items()}
    items = h.read_items(output)
    unique = len(collections.Counter(i["url"] for i in items))
    print(f"crawl bench: {a.pages} pages, {a.nodes} node(s), storage {a.storage}, "
          f"block_size {a.block_size}, "
          f"thread_num {a.thread_num}")
    print(f"  status          {run['status']}")
    for what, at in killed:
        print(f"  killed -9       {what} at {at} pages (restarted; CPU and RSS below are of "
              f"the processes running at the end)")
    print(f"  total time      {elapsed:.2f} s (trigger to the run's final status; noticed "
          f"after {polled:.2f} s)")
    print(f"  pages/s         {run['success'] / elapsed:.0f}")
    print(f"  unique pages    {unique} (run total {run['total']}, success {run['success']}, "
          f"error {run['error']}; {len(items) - unique} written twice)")
    print(f"  machine CPU     {100 * busy:.0f}% busy over {os.cpu_count()} cores (all processes)")
    marks, last = [], -1
    for t, done in timeline:  # pages done about every half second
        if int(t * 2) != last:
            last = int(t * 2)
            marks.append(f"{t:.1f}s:{done}")
    print("  progress        " + " ".join(marks))
    if trace:
        print("  trace (s: requests accepted, results stored, results acked, storage busy s)")
        for t, acc, stored, acked, busy_s in trace:
            print(f"    {t:5.2f}: {acc:6.0f} {stored:6.0f} {acked:6.0f} {busy_s:6.2f}")
    if cluster:
        # The server's processes (backends, WAL writer, checkpointer, ...) count too; the
        # broker's connection stays up, so its backend is alive here.
        pg_cpu = sum(h.cpu_seconds(p, 0) for p in h.process_tree(cluster.pid))
        pg_start = pg_cpu0
        cpu["postgres"] = pg_cpu - pg_start
        procs["postgres"] = cluster.pid
        rss["postgres"] = h.status_mb(cluster.pid)
    total_cpu = sum(cpu.values())
    for name in procs:
        print(f"  {name:8} peak RSS {rss[name]:6.0f} MB   CPU {cpu[name]:6.2f} s "
              f"({1e6 * cpu[name] / max(run['success'], 1):.0f} us/page)")
    print(f"  all      CPU {total_cpu:6.2f} s ({1e6 * total_cpu / max(run['success'], 1):.0f} us/page)")
    # The finished run's rows are purged in the background: wait until no request or result
    # row is left and every free page went back to the filesystem (read-only peeks; WAL
    # mode lets them run beside the broker).
    def purged():
        if cluster:
            return int(cluster.sql("SELECT (SELECT count(*) FROM Request) + "
                                   "(SELECT count(*) FROM Result)")) == 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            rows = c.execute("SELECT (SELECT count(*) FROM Request) + "
                             "(SELECT count(*) FROM Result)").fetchone()[0]
            free = c.execute("PRAGMA freelist_count").fetchone()[0]
        return rows == 0 and free == 0 and spool_size() == 0
    purge_started = time.monotonic()
    h.wait_until("purge of the finished run", purged, timeout=600, interval=0.5)
    purge_s = time.monotonic() - purge_started
    time.sleep(1)  # the WAL checkpoint follows the last page release
    sizes = [db_size()]
    mb = 1 << 20
    fmt = lambda s: f"{s[0] / mb:.1f} MB + WAL {s[1] / mb:.1f} MB"  # noqa: E731
    grew = (sum(sizes[-1]) - sum(db_before)) / mb
    print(f"  database        peak {db_peak[0] / mb:.1f} MB (with WAL); before {fmt(db_before)}; "
          f"at the end {fmt(db_at_end)}; after the "
          f"purge {fmt(sizes[-1])}: {grew:+.1f} MB (the WAL is checkpointed at 4 MB); "
          f"purge done {purge_s:.1f} s after the run")
    if not cluster:
        print(f"  result spool    peak {spool_peak[0] / mb:.1f} MB; after the purge "
              f"{spool_size() / mb:.1f} MB")
    for p in [worker] + nodes + [broker]:
        env.stop(p, timeout=120)  # SIGTERM: lets profilers write their output
    env.close()
    if cluster:
        cluster.stop()
    return 0 if run["status"] == "Success" and unique == a.pages == len(items) else 1


if __name__ == "__main__":
    sys.exit(main())
