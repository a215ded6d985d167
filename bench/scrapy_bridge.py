#!/usr/bin/env python3
"""The same Scrapy spider (tests/e2e/scrapy_site_spider.py: response.follow on every link)
over the same generated site (bench/gen_site.py, served by nginx on loopback), in one run:

1. plain Scrapy (`scrapy runspider`, Debian's Scrapy 2.8, CONCURRENT_REQUESTS and the
   per-domain limit raised to --concurrency so Scrapy is not held back by its defaults);
2. the spider on spiderhub through the Scrapy bridge, with 1 node and with 2 nodes.

Prints pages/s of each and the ratios to plain Scrapy. Every page must be in each items
file exactly once, or the benchmark fails.

--pages defaults to 5,000 to keep the three crawls short. Scrapy's rate falls as its crawl
grows (~17 % from 5,000 to 20,000 pages on one machine), so figures against the native
spiderhub crawl come from bench/vs_scrapy.py, which runs both on the same 20,000 pages."""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402

PYTHON = "/usr/bin/python3"
SPIDER = os.path.join(root, "tests", "e2e", "scrapy_site_spider.py")


def pages_in(path, expected, once=True):
    urls = collections.Counter(json.loads(line)["url"] for line in open(path) if line.strip())
    assert set(urls) == expected and (not once or max(urls.values()) == 1), \
        f"{path}: {len(set(urls) & expected)}/{len(expected)} pages, max count {max(urls.values())}"
    return len(urls)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=5000,
                    help="pages of the site (default 5,000; see above)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--plain-only", action="store_true",
                    help="only plain Scrapy (the figure bench/crawl.py is compared with)")
    a = ap.parse_args()
    with h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
                "bench-scrapy") as env:
        site = env.start_site(a.pages)
        start = site.base + "/index.html"
        expected = {start} | {f"{site.base}/p/{i}.html" for i in range(1, a.pages)}
        rates = {}

        out = env.path("plain.jsonl")
        t0 = time.monotonic()
        p = subprocess.run([PYTHON, "-m", "scrapy", "runspider", SPIDER, "-a",
                            f"start_url={start}", "-o", out, "-s", "LOG_LEVEL=INFO",
                            "-s", "TELNETCONSOLE_ENABLED=0",
                            "-s", f"CONCURRENT_REQUESTS={a.concurrency}",
                            "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={a.concurrency}"],
                           check=True, cwd=env.dir, capture_output=True, text=True,
                           timeout=3600)
        took = time.monotonic() - t0
        # The crawl's own time (Scrapy's stats: engine start to close), without the
        # interpreter's start and imports, as bench/crawl.py times from the trigger.
        m = re.search(r"'elapsed_time_seconds': ([0-9.]+)", p.stderr)
        crawl_s = float(m.group(1)) if m else took
        print(f"  plain Scrapy: crawl {crawl_s:.2f} s (process {took:.2f} s)")
        # Plain Scrapy fetches the start page twice (start requests skip its duplicate
        # filter): counted once.
        rates["plain Scrapy"] = pages_in(out, expected, once=False) / crawl_s

        src = os.path.join(root, "clients", "python")
        for nodes in () if a.plain_only else (1, 2):
            broker = env.start_broker(name=f"broker{nodes}", extra_yaml=(
                "dispatch:\n  block_size: 50\npoliteness:\n  max_concurrency_per_host: 1000\n"
                "log:\n  level: warn\n"))
            procs = [env.start_node(broker, f"n{nodes}-{i}") for i in range(nodes)]
            h.wait_until("nodes online", lambda: sum(
                n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == nodes)
            out = env.path(f"bridge{nodes}.jsonl")
            bridge = env.spawn(f"bridge{nodes}", [
                PYTHON, "-m", "spiderhub.scrapy_bridge", SPIDER, "--broker", broker.base + "/",
                "--token", h.TOKEN, "--class", "bench.site", "-o", out,
                "--state", env.path(f"state{nodes}.db"),
                "-s", f"CONCURRENT_REQUESTS={a.concurrency * 4}"],
                env=dict(os.environ, PYTHONPATH=src))
            status, job = h.api("POST", broker, "/api/v1.0/jobs", {
                "name": "bench", "jobType": "block", "cron": "0 0 1 1 *",
                "properties": {"FullClassName": "bench.site",
                               "Arguments": json.dumps({"start_url": start})}})
            assert status == 201, (status, job)
            h.trigger_run(broker, job["id"], interval=0.1)
            t0 = time.monotonic()
            h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get(
                "status") == "Success", timeout=3600, interval=0.1)
            took = time.monotonic() - t0
            bridge.wait(timeout=60)
            rates[f"spiderhub, {nodes} node{'s' if nodes > 1 else ''}"] = pages_in(out, expected) / took
            for p in procs + [broker]:
                env.stop(p)
        base = rates["plain Scrapy"]
        print(f"scrapy_bridge: {a.pages} pages, the same spider file")
        for what, r in rates.items():
            print(f"  {what:<22} {r:7.0f} pages/s   ratio {r / base:5.2f}")


if __name__ == "__main__":
    main()
