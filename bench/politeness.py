#!/usr/bin/env python3
"""Politeness benchmark: broker + nodes + sample worker crawl a web of N hosts on loopback
(bench/many_hosts.py, every host answering after the same latency) with a per-host limit.

The best any polite crawler can do is to keep every host at its limit all the time:
sum(limits) / latency pages per second. The benchmark prints the achieved pages/s against
that bound (a ratio), and the politeness violations counted from the servers' own records
(a host that saw more requests at once than its limit): that number must be 0.

The web is a binary tree of pages per host (page i links to 2i+1 and 2i+2) plus links from
each /p/0 to every host's /p/0, so a crawl also waits for pages to be discovered; the ratio
includes that, and the one robots.txt fetch per host.
"""
import argparse
import json
import os
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
sys.path.insert(0, os.path.join(root, "bench"))
import harness as h  # noqa: E402
import many_hosts as mh  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--pages", type=int, default=40, help="pages per host")
    ap.add_argument("--limit", type=int, default=4, help="politeness.max_concurrency_per_host")
    ap.add_argument("--latency-ms", type=int, default=500, help="every page's response time")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--thread-num", type=int, default=16)
    ap.add_argument("--adaptive", choices=["on", "off"], default="on")
    a = ap.parse_args()
    for name in ("hosts", "pages", "limit", "latency_ms", "nodes", "thread_num"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")

    specs = mh.uniform_web(a.hosts, a.pages, a.latency_ms)
    web = mh.ManyHostWeb(specs)
    web.start()
    env = h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
                "politeness-bench")
    try:
        broker = env.start_broker(extra_yaml=f"""dispatch:
  thread_num: {a.thread_num}
politeness:
  max_concurrency_per_host: {a.limit}
  adaptive: {"true" if a.adaptive == "on" else "false"}
log:
  level: warn
""")
        nodes = [env.start_node(broker, f"node{i + 1}", extra_yaml="log:\n  level: warn\n")
                 for i in range(a.nodes)]
        worker = env.start_worker(broker)
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "politeness-bench", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": "spiderhub.samples.SiteSpider",
                           "Arguments": json.dumps({"startUrl": web.url(specs[0].name),
                                                    "maxDepth": 64, "sameDomain": False,
                                                    "output": env.path("items.jsonl")})}})
        assert status == 201, (status, job)

        h.trigger_run(broker, job["id"], interval=0.2)
        started = time.monotonic()
        h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     in ("Success", "Exited", "Failed"), timeout=1800, interval=0.2)
        elapsed = time.monotonic() - started
        run = h.run_of(broker, job["id"])
        records = web.records()
        violations = sum(1 for r in records.values() if r.peak_concurrency > a.limit)
        peak = max(r.peak_concurrency for r in records.values())
        at_limit = sum(1 for r in records.values() if r.peak_concurrency == a.limit)
        bound = a.hosts * a.limit / (a.latency_ms / 1000)
        rate = run["success"] / elapsed
        print(f"politeness bench: {a.hosts} hosts x {a.pages} pages, limit {a.limit} per host, "
              f"latency {a.latency_ms} ms, {a.nodes} node(s), thread_num {a.thread_num}, "
              f"adaptive {a.adaptive}")
        print(f"  status             {run['status']} ({run['success']} pages, {run['error']} errors)")
        print(f"  time               {elapsed:.1f} s")
        print(f"  pages/s            {rate:.0f}")
        print(f"  bound              {bound:.0f} pages/s (sum of limits / latency)")
        print(f"  ratio              {rate / bound:.2f}")
        print(f"  peak per host      {peak} (limit {a.limit}; {at_limit} of {a.hosts} hosts reached it)")
        print(f"  violations         {violations}")
        for p in [worker] + nodes + [broker]:
            env.stop(p)
        ok = run["status"] == "Success" and run["success"] == a.hosts * a.pages and violations == 0
        return 0 if ok else 1
    except BaseException:
        env.dump_logs()
        raise
    finally:
        web.stop()
        env.close()


if __name__ == "__main__":
    sys.exit(main())
