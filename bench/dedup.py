#!/usr/bin/env python3
"""Dedup benchmark: N unique + M repeated request URLs pushed into one run (default 10 M
+ 10 M) by bench_dedup_push over the real /worker hub, with no node connected, so every
accepted request stays in the run: the first dispatch.frontier_memory_max in memory, the
rest in the database (the frontier on disk). Prints the push rate, requests accepted
(must equal N), the broker's peak RSS (VmHWM) and CPU, the database size with the run
open, then exits the run through the API and prints how long the purge took and what is
left on disk.

  python3 bench/dedup.py [--bin build/spiderhub] [--unique 10000000] [--repeat 10000000]
"""
import argparse
import os
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pusher", default=None, help="bench_dedup_push (default: next to --bin)")
    ap.add_argument("--unique", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--frontier-memory-max", type=int, default=50000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    pusher = a.pusher or os.path.join(os.path.dirname(a.bin), "bench_dedup_push")
    if a.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    with h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)), "dedup") as env:
        db = env.path("data", "broker.db")
        broker = env.start_broker(extra_yaml=f"dispatch:\n  frontier_memory_max: "
                                             f"{a.frontier_memory_max}\nlog:\n  level: warn\n")
        db_before = sum(h.db_bytes(db))
        cls = "bench.Dedup"
        job = h.create_block_job(broker, "http://dedup.test/", env.path("items.jsonl"), cls=cls)
        t0 = time.monotonic()
        push = subprocess.Popen([pusher, "--url", broker.base + "/", "--token", h.TOKEN,
                                 "--class", cls, "--unique", str(a.unique), "--repeat",
                                 str(a.repeat), "--chunk", str(a.chunk)],
                                stdout=subprocess.PIPE, text=True)
        identity = h.trigger_run(broker, job["id"])
        out, _ = push.communicate()
        elapsed = time.monotonic() - t0
        hwm = h.status_mb(broker.pid, "VmHWM")
        rss = h.status_mb(broker.pid, "VmRSS")
        cpu = h.cpu_seconds(broker.pid)
        m = h.metrics(broker)
        db_open = sum(h.db_bytes(db))
        print(f"dedup: {a.unique:,} unique + {a.repeat:,} repeated URLs into one run")
        print(f"  pusher          {out.strip()}")
        print(f"  broker          peak RSS {hwm:.0f} MB (now {rss:.0f} MB), CPU {cpu:.1f} s "
              f"({cpu * 1e6 / (a.unique + a.repeat):.1f} us/URL)")
        print(f"  frontier        {int(m.get('spiderhub_requests_waiting', 0)):,} in memory, "
              f"{int(m.get('spiderhub_requests_spilled', 0)):,} on disk; "
              f"duplicates dropped {int(m.get('spiderhub_requests_duplicate_total', 0)):,}")
        print(f"  database        {db_before / 1e6:.1f} MB before, {db_open / 1e6:.1f} MB with the "
              f"run open ({db_open / max(1, a.unique):.0f} bytes per accepted URL)")
        assert push.returncode == 0, f"pusher failed ({push.returncode})"
        # Exit the run: its rows are purged in chunks.
        t1 = time.monotonic()
        status, body = h.api("POST", broker, f"/api/v1.0/runs/{identity}/exit")
        assert status in (200, 202), (status, body)

        def purged():
            size = sum(h.db_bytes(db))
            return size < db_before + 20e6 and size
        after = h.wait_until("run purged", purged, timeout=1800, interval=2)
        print(f"  after exit      database {after / 1e6:.1f} MB, purge {time.monotonic() - t1:.0f} s; "
              f"whole benchmark {elapsed:.0f} s to push")


if __name__ == "__main__":
    main()
