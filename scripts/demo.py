#!/usr/bin/env python3
"""The main job: a broker, a node and the sample worker crawl a generated local site
(served by nginx on loopback) through a block job, with live progress."""
import argparse
import collections
import json
import os
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402


def bar(done, total, width=30):
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + " " * (width - filled) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=None, help="5000 (100 with --render)")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--render", action="store_true",
                    help="crawl a site whose links are inserted by a script, rendering every "
                         "page with headless Chromium on the node(s) (default --pages 100)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if a.pages is None:
        a.pages = 100 if a.render else 5000
    if a.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    env = h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)), "demo")
    print(f"demo: work directory {env.dir}")
    site = env.start_js_site(a.pages) if a.render else env.start_site(a.pages)
    print(f"demo: nginx serves a {a.pages}-page site at {site.base}/" +
          (" (its links are inserted by a script: only rendering finds them)" if a.render else ""))
    broker = env.start_broker()
    print(f"demo: broker up at {broker.base}/ (API, /node and /worker hubs)")
    for i in range(a.nodes):
        env.start_node(broker, f"node{i + 1}",
                       extra_yaml="render:\n  enabled: true\n  max_tabs: 2\n" if a.render else "")
    worker = env.start_worker(broker)
    h.wait_until("nodes online", lambda: sum(
        n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
    print(f"demo: {a.nodes} node(s) online, sample worker connected")
    output = env.path("items.jsonl")
    props = ({"Site": json.dumps({"render": {"wait": "selector", "selector": "a.js"}})}
             if a.render else None)
    job = h.create_block_job(broker, site.base + "/index.html", output, properties=props)
    print(f"demo: block job {job['id']} created (cron '{job['cron']}', next fire "
          f"{job['nextFireTimes'][0]}); triggering it now")

    identity = h.trigger_run(broker, job["id"])
    print(f"demo: run {identity} started")
    started = time.monotonic()
    run = {}
    while True:
        run = h.run_of(broker, job["id"]) or {}
        done = run.get("success", 0) + run.get("error", 0)
        total = max(run.get("total", 0), 1)
        rate = done / max(time.monotonic() - started, 1e-3)
        print(f"\r{bar(done, total)} {done}/{run.get('total', 0)} pages  "
              f"success {run.get('success', 0)}  error {run.get('error', 0)}  "
              f"{rate:6.0f} pages/s  {run.get('status', '?'):8}", end="", flush=True)
        if run.get("status") in ("Success", "Exited", "Failed"):
            break
        if time.monotonic() - started > 600:
            print("\ndemo: giving up after 10 minutes")
            env.dump_logs()
            return 1
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    items = h.read_items(output)
    unique = len(collections.Counter(i["url"] for i in items))
    print(f"\ndemo: run {run.get('status')} in {elapsed:.1f}s: {run.get('total')} requests, "
          f"{run.get('success')} pages downloaded, {unique} unique items in {output}")
    for n in run.get("nodes", []):
        print(f"demo:   node {n['nodeId'][:8]} downloaded {n['success']} pages")
    worker.wait(30)
    ok = run.get("status") == "Success" and unique == a.pages
    print("demo: OK" if ok else "demo: FAILED (see logs above)")
    if not ok:
        env.dump_logs()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
