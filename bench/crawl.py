#!/usr/bin/env python3
"""Crawl benchmark: a generated N-page site (default 20,000) crawled by broker + node(s) +
sample worker on this machine, dedup and persistence on. Prints pages/s, total time,
unique pages and the peak RSS (VmHWM) of every process."""
import argparse
import collections
import os
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=100)
    ap.add_argument("--thread-num", type=int, default=16)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if a.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    env = h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)), "bench")
    site = env.start_site(a.pages)
    broker = env.start_broker(extra_yaml=f"dispatch:\n  block_size: {a.block_size}\n"
                                         f"  thread_num: {a.thread_num}\n"
                                         "log:\n  level: warn\n")
    nodes = [env.start_node(broker, f"node{i + 1}") for i in range(a.nodes)]
    worker = env.start_worker(broker, runs=0)  # stays up so its CPU time can be read
    h.wait_until("nodes online", lambda: sum(
        n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
    output = env.path("items.jsonl")
    job = h.create_block_job(broker, site.base + "/index.html", output)

    def trigger():
        status, body = h.api("POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger")
        return body["identity"] if status == 200 else None

    h.wait_until("trigger", trigger, timeout=30, interval=0.2)
    started = time.monotonic()
    h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                 in ("Success", "Exited", "Failed"), timeout=900, interval=0.2)
    elapsed = time.monotonic() - started
    run = h.run_of(broker, job["id"])
    procs = {"broker": broker.pid, "worker": worker.pid}
    for n in nodes:
        procs[n.name] = n.pid
    rss = {name: peak_rss_mb(pid) for name, pid in procs.items()}
    cpu = {name: cpu_seconds(pid) for name, pid in procs.items()}
    items = h.read_items(output)
    unique = len(collections.Counter(i["url"] for i in items))
    print(f"crawl bench: {a.pages} pages, {a.nodes} node(s), block_size {a.block_size}, "
          f"thread_num {a.thread_num}")
    print(f"  status          {run['status']}")
    print(f"  total time      {elapsed:.2f} s")
    print(f"  pages/s         {run['success'] / elapsed:.0f}")
    print(f"  unique pages    {unique} (run total {run['total']}, success {run['success']}, "
          f"error {run['error']})")
    for name in procs:
        print(f"  {name:8} peak RSS {rss[name]:6.0f} MB   CPU {cpu[name]:6.2f} s "
              f"({1e6 * cpu[name] / max(run['success'], 1):.0f} us/page)")
    for p in [worker] + nodes + [broker]:
        env.stop(p, timeout=120)  # SIGTERM: lets profilers write their output
    env.close()
    return 0 if run["status"] == "Success" and unique == a.pages else 1


if __name__ == "__main__":
    sys.exit(main())
