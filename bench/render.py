#!/usr/bin/env python3
"""Rendering benchmark: one rendering node (headless Chromium) crawls a local site whose
links are inserted by a script (tests/e2e/harness.py start_js_site), with 1, 2 and 4 tabs.
Prints rendered pages/s per node, the node's peak RSS and its browser's memory (PSS summed
over Chromium's processes: RSS summed would count shared pages once per process) sampled
during the crawl, and the CPU of node + browser per page.

  python3 bench/render.py [--bin build/spiderhub] [--pages 300] [--tabs 1,2,4]
"""
import argparse
import json
import os
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402


def pss_mb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def one(a, tabs):
    with h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
                f"render-bench-{tabs}") as env:
        site = env.start_js_site(a.pages)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 5\n"
                                             "politeness:\n  max_concurrency_per_host: 16\n"
                                             "log:\n  level: warn\n")
        node = env.start_node(broker, "web", extra_yaml=f"render:\n  enabled: true\n"
                                                        f"  max_tabs: {tabs}\n")
        env.start_worker(broker, runs=0)
        h.wait_until("node online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 1)
        out = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", out, properties={
            "Site": json.dumps({"render": {"wait": "selector", "selector": "a.js"}})})
        h.trigger_run(broker, job["id"])
        t0 = time.monotonic()
        pss_peak = 0.0
        cpu_seen = {}

        def done():
            nonlocal pss_peak
            pids = h.process_tree(node.pid)
            pss_peak = max(pss_peak, pss_mb([p for p in pids if p != node.pid]))
            for p in pids:  # CPU of processes that exit before the end is kept
                c = h.cpu_seconds(p, missing=0)
                if c:
                    cpu_seen[p] = c
            r = h.run_of(broker, job["id"]) or {}
            return r.get("status") == "Success"
        h.wait_until("render run", done, timeout=1800, interval=0.25)
        elapsed = time.monotonic() - t0
        run = h.run_of(broker, job["id"])
        pages = run["success"]
        cpu = sum(cpu_seen.values())
        return {"tabs": tabs, "pages": pages, "seconds": elapsed, "rate": pages / elapsed,
                "node_rss": h.status_mb(node.pid), "browser_pss": pss_peak,
                "cpu_ms_per_page": 1000 * cpu / max(pages, 1), "errors": run["error"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--tabs", default="1,2,4")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    print(f"render bench: {a.pages} script-linked pages, one rendering node, "
          f"{os.cpu_count()} cores")
    print(f"  {'tabs':>4} {'pages/s':>8} {'node peak RSS':>14} {'browser PSS peak':>17} "
          f"{'CPU/page':>9} {'errors':>6}")
    for tabs in (int(t) for t in a.tabs.split(",")):
        r = one(a, tabs)
        print(f"  {r['tabs']:>4} {r['rate']:>8.1f} {r['node_rss']:>11.0f} MB {r['browser_pss']:>14.0f} MB "
              f"{r['cpu_ms_per_page']:>6.0f} ms {r['errors']:>6}", flush=True)


if __name__ == "__main__":
    main()
