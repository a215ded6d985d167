#!/usr/bin/env python3
"""The same Scrapy spider (tests/e2e/scrapy_site_spider.py: response.follow on every link)
over the same generated site (bench/gen_site.py, served by nginx on loopback):

1. plain Scrapy (`scrapy runspider`, Debian's Scrapy 2.8, CONCURRENT_REQUESTS and the
   per-domain limit raised to --concurrency so Scrapy is not held back by its defaults);
2. the spider file on spiderhub through the Scrapy bridge (a broker, --nodes nodes), with
   one bridge process on a run, then two bridge processes on one run (job property
   WorkersPerRun 0: each result goes to one of them).

Prints pages/s of each and the ratios to plain Scrapy; no assertion on speed. Every page
must be in the items once (the start page twice, as Scrapy fetches it: its start request
has dont_filter), in each crawl's union of items files, or the benchmark fails.

--profile DIR runs every bridge under cProfile (spiderhub-scrapy --profile) and prints the
functions with the most own time of the single-bridge run.

Scrapy's rate falls as its crawl grows (~17 % from 5,000 to 20,000 pages on one machine),
so figures against the native spiderhub crawl come from bench/vs_scrapy.py."""
import argparse
import collections
import json
import os
import pstats
import re
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
import harness as h  # noqa: E402

PYTHON = "/usr/bin/python3"
SPIDER = os.path.join(root, "tests", "e2e", "scrapy_site_spider.py")


def pages_in(paths, expected, start):
    """Pages in the union of items files; each once, the start page twice."""
    urls = collections.Counter()
    for path in paths:
        with open(path) as f:
            urls.update(json.loads(line)["url"] for line in f if line.strip())
    wrong = {u: n for u, n in urls.items() if n != (2 if u == start else 1)}
    assert set(urls) == expected and not wrong, \
        f"{paths}: {len(set(urls) & expected)}/{len(expected)} pages, e.g. {list(wrong.items())[:3]}"
    return len(urls)


def plain_scrapy(env, start, expected, concurrency):
    out = env.path("plain.jsonl")
    t0 = time.monotonic()
    cpu0 = os.times()
    p = subprocess.run([PYTHON, "-m", "scrapy", "runspider", SPIDER, "-a",
                        f"start_url={start}", "-o", out, "-s", "LOG_LEVEL=INFO",
                        "-s", "TELNETCONSOLE_ENABLED=0",
                        "-s", f"CONCURRENT_REQUESTS={concurrency}",
                        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}"],
                       check=True, cwd=env.dir, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - t0
    cpu1 = os.times()
    cpu_s = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
    # The crawl's own time (Scrapy's stats: engine start to close), without the
    # interpreter's start and imports, as spiderhub is timed from the trigger.
    m = re.search(r"'elapsed_time_seconds': ([0-9.]+)", p.stderr)
    crawl_s = float(m.group(1)) if m else took
    print(f"  plain Scrapy: crawl {crawl_s:.2f} s (process {took:.2f} s, {cpu_s:.1f} CPU s)",
          flush=True)
    return pages_in([out], expected, start) / crawl_s


def bridged(env, broker, start, expected, n_bridges, profile):
    """One run served by n_bridges bridge processes; pages/s from trigger to Success."""
    src = os.path.join(root, "clients", "python")
    cls = f"bench.site{n_bridges}"
    outs, procs = [], []
    for i in range(n_bridges):
        out = env.path(f"bridge{n_bridges}-{i}.jsonl")
        extra = ["--profile", os.path.join(profile, f"bridge{n_bridges}-{i}.prof")] \
            if profile else []
        procs.append(env.spawn(f"bridge{n_bridges}-{i}", [
            PYTHON, "-m", "spiderhub.scrapy_bridge", SPIDER, "--broker", broker.base + "/",
            "--token", h.TOKEN, "--class", cls, "--items", out, "-s", "LOG_LEVEL=INFO",
            "-s", "TELNETCONSOLE_ENABLED=0", *extra], env=dict(os.environ, PYTHONPATH=src)))
        outs.append(out)
    h.wait_until("bridges connected", lambda: h.metrics(broker).get(
        'spiderhub_sessions{kind="worker"}', 0) >= n_bridges, timeout=60)
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": f"bench{n_bridges}", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": cls, "WorkersPerRun": "0",
                       "Arguments": json.dumps({"start_url": start})}})
    assert status == 201, (status, job)
    others = [p for p in env.procs if p.name.startswith(("broker", "node")) and p.poll() is None]
    cpu0 = {p.name: h.cpu_seconds(p.pid) for p in others + procs}
    cpu = dict(cpu0)
    h.trigger_run(broker, job["id"], interval=0.1)
    t0 = time.monotonic()

    def finished():
        for p in others + procs:  # CPU seconds so far (gone from /proc once reaped)
            cpu[p.name] = h.cpu_seconds(p.pid, cpu[p.name])
        return (h.run_of(broker, job["id"]) or {}).get("status") == "Success"
    h.wait_until("run finished", finished, timeout=3600, interval=0.1)
    took = time.monotonic() - t0
    for p in procs:
        assert p.wait(timeout=60) == 0, env.log(p.name)[-3000:]
    shares = [h.count_lines(o) for o in outs]
    used = {n: cpu[n] - cpu0[n] for n in cpu}
    bridge_cpu = sum(v for n, v in used.items() if n.startswith("bridge"))
    print(f"  {n_bridges} bridge(s): run {took:.2f} s, items per bridge {shares}; CPU s: "
          f"bridges {bridge_cpu:.1f}, broker {used.get('broker', 0):.1f}, nodes "
          f"{sum(v for n, v in used.items() if n.startswith('node')):.1f}", flush=True)
    return pages_in(outs, expected, start) / took


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=5000,
                    help="pages of the site (default 5,000; see above)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--profile", metavar="DIR", help="cProfile the bridges into DIR")
    ap.add_argument("--plain-only", action="store_true",
                    help="only plain Scrapy (the figure bench/crawl.py is compared with)")
    a = ap.parse_args()
    if a.profile:
        os.makedirs(a.profile, exist_ok=True)
        a.profile = os.path.abspath(a.profile)
    with h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
               "bench-scrapy") as env:
        site = env.start_site(a.pages)
        start = site.base + "/index.html"
        expected = h.site_pages(site.base, a.pages)
        rates = {"plain Scrapy": plain_scrapy(env, start, expected, a.concurrency)}
        if not a.plain_only:
            broker = env.start_broker(extra_yaml=(
                "dispatch:\n  block_size: 50\npoliteness:\n  max_concurrency_per_host: 1000\n"
                "log:\n  level: warn\n"))
            for i in range(a.nodes):
                env.start_node(broker, f"node{i}")
            h.wait_until("nodes online", lambda: sum(
                n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
            for n in (1, 2):
                rates[f"spiderhub, {n} bridge{'s' if n > 1 else ''}"] = bridged(
                    env, broker, start, expected, n, a.profile)
        base = rates["plain Scrapy"]
        print(f"scrapy_bridge: {a.pages} pages, the same spider file, {a.nodes} nodes")
        for what, r in rates.items():
            print(f"  {what:<22} {r:7.0f} pages/s   ratio {r / base:5.2f}")
        if a.profile and not a.plain_only:
            print("\nbridge (1 process), functions by own time:")
            pstats.Stats(os.path.join(a.profile, "bridge1-0.prof")).sort_stats(
                "tottime").print_stats(25)


if __name__ == "__main__":
    main()
