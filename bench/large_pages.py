#!/usr/bin/env python3
"""Large-page crawl benchmark (issue #34): a site of big HTML pages (default 1,000 pages of
1 MiB) served by tests/e2e/realweb_site.py (a threaded stdlib server, run as its own
process) is crawled by broker + node(s) + the C++ sample worker on this machine.

Prints pages/s, MiB/s of page bodies, the time from the trigger to the run's end, and the
peak RSS (VmHWM) and CPU of the broker, every node, the worker and the site server.
Exits 1 unless the run ends Success with every page exactly once in the items file.

Examples:
  python3 bench/large_pages.py                         # 1,000 pages of 1 MiB
  python3 bench/large_pages.py --pages 300 --page-kb 4096 --nodes 2
  python3 bench/large_pages.py --max-poll-bytes 1048576 --results-batch-bytes 1048576
"""
import argparse
import collections
import json
import os
import sys
import time
import urllib.request

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402

MiB = 1 << 20


def default_bin():
    for p in (os.path.join(root, "build", "spiderhub"),
              os.path.join(root, "build", "bin", "spiderhub")):
        if os.path.exists(p):
            return p
    return os.path.join(root, "build", "spiderhub")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=default_bin(), help="the spiderhub binary (default %(default)s)")
    ap.add_argument("--pages", type=int, default=1000, help="pages of the site (default 1000)")
    ap.add_argument("--page-kb", type=float, default=1024, help="KiB per page (default 1024)")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=100)
    ap.add_argument("--max-per-host", type=int, default=16,
                    help="politeness.max_concurrency_per_host (the site is one local host; "
                         "default 16)")
    ap.add_argument("--max-poll-bytes", type=int, default=None,
                    help="broker dispatch.max_poll_bytes (default: the broker's)")
    ap.add_argument("--max-body-bytes", type=int, default=None,
                    help="broker dispatch.max_body_bytes (default: the broker's)")
    ap.add_argument("--results-batch-bytes", type=int, default=None,
                    help="node download.results_batch_bytes (default: the node's)")
    ap.add_argument("--broker-yaml", default="",
                    help="extra broker YAML sections (not http, auth, storage, inspector, "
                         "log, dispatch, politeness)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds the crawl may take")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    a = ap.parse_args()
    if a.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    if not os.path.exists(a.bin):
        ap.error(f"no binary at {a.bin} (build first, or pass --bin)")
    env = h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
                "bench-large")
    port = h.free_port()
    site = env.spawn("site", [sys.executable, os.path.join(root, "tests", "e2e", "realweb_site.py"),
                              "--pages", str(a.pages), "--page-kb", str(a.page_kb),
                              "--port", str(port)])
    site.base = f"http://127.0.0.1:{port}"
    h.wait_until("the site", lambda: h.http_get(site.base + "/robots.txt", token=None)[0] == 200,
                 timeout=20)
    broker = env.start_broker(extra_yaml=(
        f"dispatch:\n  block_size: {a.block_size}\n" +
        (f"  max_poll_bytes: {a.max_poll_bytes}\n" if a.max_poll_bytes is not None else "") +
        (f"  max_body_bytes: {a.max_body_bytes}\n" if a.max_body_bytes is not None else "") +
        f"politeness:\n  max_concurrency_per_host: {a.max_per_host}\n" + a.broker_yaml + "\n"))
    node_yaml = (f"download:\n  results_batch_bytes: {a.results_batch_bytes}\n"
                 if a.results_batch_bytes is not None else "")
    nodes = [env.start_node(broker, f"node{i + 1}", extra_yaml=node_yaml)
             for i in range(a.nodes)]
    worker = env.start_worker(broker, runs=0)  # stays up so its peak RSS can be read
    h.wait_until("nodes online", lambda: sum(
        n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
    output = env.path("items.jsonl")
    job = h.create_block_job(broker, site.base + "/index.html", output, max_depth=10)
    h.trigger_run(broker, job["id"], interval=0.2)
    started = time.monotonic()
    marks = []

    def ended():
        r = h.run_of(broker, job["id"]) or {}
        t = time.monotonic() - started
        if not marks or int(t) != int(marks[-1][0]):
            marks.append((t, r.get("success", 0)))
        return r.get("status") in ("Success", "Failed", "Exited") and r
    code = 0
    try:
        run = h.wait_until("the run to end", ended, timeout=a.timeout, interval=0.1)
    except AssertionError as e:
        print(f"large pages bench: {e}", file=sys.stderr)
        env.dump_logs()
        run, code = h.run_of(broker, job["id"]) or {}, 1
    elapsed = max(time.monotonic() - started, 1e-3)
    with urllib.request.urlopen(site.base + "/__stats", timeout=15) as r:
        stats = json.loads(r.read())
    procs = {"broker": broker, **{n.name: n for n in nodes}, "worker": worker, "site": site}
    rss = {k: h.status_mb(p.pid) for k, p in procs.items()}
    cpu = {k: h.cpu_seconds(p.pid) for k, p in procs.items()}
    items = h.read_items(output)
    counts = collections.Counter(i["url"] for i in items)
    expected = h.site_pages(site.base, a.pages)
    missing = expected - set(counts)
    extra = set(counts) - expected
    twice = sum(1 for c in counts.values() if c > 1)
    failed_items = [i for i in items if i.get("errorKind") or i.get("error")]
    page_bytes = int(a.page_kb * 1024)
    body_mb = sum(stats["written"].get(p, [0])[-1] for p in stats["written"]
                  if p == "/index.html" or p.startswith("/p/")) / MiB
    success = run.get("success", 0)
    print(f"large pages bench: {a.pages} pages of {page_bytes / 1024:.0f} KiB, {a.nodes} node(s), "
          f"block_size {a.block_size}, max_concurrency_per_host {a.max_per_host}")
    print(f"  status          {run.get('status')} (total {run.get('total')}, success {success}, "
          f"error {run.get('error')}, left {run.get('left')})")
    print(f"  total time      {elapsed:.2f} s (trigger to the run's end, seen every 0.1 s)")
    print(f"  pages/s         {success / elapsed:.1f}")
    print(f"  MiB/s           {success * page_bytes / MiB / elapsed:.1f} of page bodies "
          f"({body_mb:.0f} MiB of distinct pages served, "
          f"{stats['bytesTotal'] / MiB:.0f} MiB written in all)")
    print(f"  items           {len(items)} ({len(counts)} unique, {len(missing)} missing, "
          f"{twice} twice, {len(extra)} unexpected, {len(failed_items)} with an error)")
    print("  progress        " + " ".join(f"{t:.0f}s:{n}" for t, n in marks[::max(1, len(marks) // 12)]))
    for k in procs:
        print(f"  {k:8} peak RSS {rss[k]:7.0f} MB   CPU {cpu[k]:7.2f} s")
    asked = stats["requests"]
    again = {p: n for p, n in asked.items() if n > 1 and p != "/robots.txt"}
    if again:
        print(f"  requested more than once: {len(again)} paths, e.g. {sorted(again.items())[:3]}")
    for p in [worker] + nodes + [broker, site]:
        env.stop(p, timeout=60)
    env.close()
    ok = (run.get("status") == "Success" and not missing and not extra and not twice
          and len(items) == a.pages and not failed_items)
    if not ok:
        print("large pages bench: FAILED: not every page exactly once (or the run did not "
              "end Success)", file=sys.stderr)
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
