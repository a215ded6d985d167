#!/usr/bin/env python3
"""spiderhub against plain Scrapy on one site spec, in turn: bench/crawl.py (broker, one
node, the sample C++ worker; gen_site files served by nginx) then plain Scrapy 2.8 on the
same pages (bench/scrapy_bridge.py --plain-only: tests/e2e/scrapy_site_spider.py, every
link followed, one item per page), N rounds. Prints each round's pages/s of both and their
ratio, then the medians and the ratio of the medians.

Both sides crawl the same number of pages (default 20,000, the spec of issue #15): Scrapy's
rate falls as its crawl grows (on one machine ~185 pages/s at 5,000 pages, ~155 at 20,000),
so a smaller Scrapy crawl would flatter Scrapy and a larger one flatter spiderhub.

Both are timed by their own clocks: spiderhub from the trigger to the run's final status
as the broker wrote it, Scrapy by its elapsed_time_seconds (engine start to close), so
neither pays for interpreter or process start. Every page must be crawled exactly once
(both scripts fail otherwise).

Before each round a fixed pure-Python loop is timed alone and then twice at once in two
processes ("machine: ..."). The crawl of spiderhub keeps both cores busy and Scrapy one, so
a round where two loops at once run much slower than one alone (the two virtual cores
sharing a physical one, or a busy neighbour) slows spiderhub far more than Scrapy; the
figure lets such rounds be told apart from a slower build.

Example: bench/vs_scrapy.py --rounds 3
"""
import argparse
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from crawl_ab import parse  # noqa: E402


def spin(_=None):
    """A fixed CPU-bound loop (interpreter work, like Scrapy's); returns its seconds."""
    t = time.perf_counter()
    h = 0
    for i in range(3_000_000):
        h = (h * 31 + i) & 0xFFFFFFFF
    return time.perf_counter() - t


def machine_check():
    """(median ms of the loop alone, median of the mean ms of two loops at once in two
    processes), three times each."""
    with multiprocessing.Pool(2) as pool:
        pool.map(spin, [0, 0])  # warm both workers up
        alone = statistics.median(pool.apply(spin) for _ in range(3))
        both = statistics.median(statistics.mean(pool.map(spin, [0, 0])) for _ in range(3))
    return alone * 1000, both * 1000


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stdout.write(p.stdout[-3000:] + p.stderr[-3000:])
        sys.exit(f"vs_scrapy: {' '.join(cmd[:2])} failed (exit {p.returncode})")
    return p.stdout


def main():
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--rounds", type=int, default=3, help="pairs of runs (default 3)")
    ap.add_argument("--pages", type=int, default=20000, help="pages of both crawls")
    a = ap.parse_args()
    if a.rounds < 1 or a.pages < 100:
        ap.error("--rounds must be >= 1 and --pages >= 100")

    ours, theirs, ratios = [], [], []
    for i in range(1, a.rounds + 1):
        alone, both = machine_check()
        print(f"round {i}: machine: a fixed loop {alone:.0f} ms alone, {both:.0f} ms with two at "
              f"once ({both / alone:.2f}x)", flush=True)
        out = run([sys.executable, os.path.join(here, "crawl.py"), "--bin", a.bin,
                   "--site", "files", "--pages", str(a.pages)])
        got = parse(out)
        if not got:
            sys.stdout.write(out[-3000:])
            sys.exit("vs_scrapy: the spiderhub crawl did not finish with every page")
        out = run([sys.executable, os.path.join(here, "scrapy_bridge.py"), "--plain-only",
                   "--pages", str(a.pages)])
        m = re.search(r"plain Scrapy\s+(\d+) pages/s", out)
        if not m:
            sys.stdout.write(out[-3000:])
            sys.exit("vs_scrapy: no Scrapy figure in bench/scrapy_bridge.py's output")
        ours.append(got["pages/s"])
        theirs.append(int(m.group(1)))
        ratios.append(ours[-1] / theirs[-1])
        print(f"round {i}: spiderhub {ours[-1]:6d} pages/s ({got['all']} us/page)   "
              f"Scrapy {theirs[-1]:4d} pages/s   ratio {ratios[-1]:5.1f}x", flush=True)
    med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"medians of {a.rounds} rounds, {a.pages} pages each:")
    print(f"  spiderhub {med_ours:8.0f} pages/s")
    print(f"  Scrapy    {med_theirs:8.0f} pages/s")
    print(f"  ratio of the medians {med_ours / med_theirs:5.1f}x   "
          f"(rounds: lowest {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x, "
          f"highest {max(ratios):.1f}x)")


if __name__ == "__main__":
    main()
