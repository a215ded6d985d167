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

Before and after each spiderhub crawl bench/machine.py times a fixed loop alone and twice
at once ("machine: ..."): a round where two at once run much slower than one alone had a
machine that gave spiderhub, which keeps both cores busy, less than two cores, while
Scrapy needs one.

Example: bench/vs_scrapy.py --rounds 3
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from crawl_ab import parse  # noqa: E402
import machine  # noqa: E402


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
        print(f"round {i}: before: {machine.line()}", flush=True)
        out = run([sys.executable, os.path.join(here, "crawl.py"), "--bin", a.bin,
                   "--site", "files", "--pages", str(a.pages)])
        print(f"round {i}: after:  {machine.line()}", flush=True)
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
