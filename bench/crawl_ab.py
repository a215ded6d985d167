#!/usr/bin/env python3
"""Two spiderhub builds side by side: bench/crawl.py with --bin A, then --bin B, N times
in turn (A B A B ...), the same crawl arguments for both. Prints every run and, per build,
the median of pages/s and of CPU microseconds per page (broker, worker, node, all), and
the ratio B/A of the medians.

Why in turn: on a shared 2-core machine the same binary can measure 140 or 190 us per
page within minutes, so figures taken one after the other in separate series compare the
machine's moods as much as the builds. Pairs taken in turn see the same drift. Each pair
starts with bench/machine.py's line: how much of two cores the machine gives right then.

Example: bench/crawl_ab.py --a /tmp/spiderhub.old --b build/spiderhub --pairs 4 -- \\
             --site files --pages 20000
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402

FIELDS = ("pages/s", "broker", "worker", "node1", "all")


def parse(out):
    """The figures of one bench/crawl.py run, or None when it did not finish."""
    got = {}
    m = re.search(r"^\s*pages/s\s+(\d+)", out, re.M)
    if m:
        got["pages/s"] = int(m.group(1))
    for name in ("broker", "worker", "node1", "all"):
        m = re.search(rf"^\s*{name}\s.*\((\d+) us/page\)", out, re.M)
        if m:
            got[name] = int(m.group(1))
    ok = re.search(r"^\s*status\s+Success", out, re.M) and all(f in got for f in FIELDS)
    return got if ok else None


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the spiderhub binary measured first in a pair")
    ap.add_argument("--b", required=True, help="the spiderhub binary measured second")
    ap.add_argument("--pairs", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("crawl_args", nargs=argparse.REMAINDER,
                    help="after --: arguments for bench/crawl.py (not --bin)")
    a = ap.parse_args()
    extra = [x for x in a.crawl_args if x != "--"]
    if "--bin" in extra:
        ap.error("--bin is set per build (--a, --b)")
    if a.pairs < 1:
        ap.error("--pairs must be at least 1")
    bins = {"A": os.path.abspath(a.a), "B": os.path.abspath(a.b)}
    for label, path in bins.items():
        if not os.access(path, os.X_OK):
            ap.error(f"--{label.lower()} {path}: not an executable file")
    runs = {"A": [], "B": []}
    for i in range(a.pairs):
        print(f"pair {i + 1}: {machine.line()}", flush=True)
        for label in ("A", "B"):
            cmd = [sys.executable, os.path.join(root, "bench", "crawl.py"),
                   "--bin", bins[label]] + extra
            p = subprocess.run(cmd, capture_output=True, text=True)
            fig = parse(p.stdout)
            if p.returncode != 0 or fig is None:
                sys.stderr.write(p.stdout + p.stderr)
                sys.exit(f"crawl_ab: run {i + 1} of {label} failed (exit {p.returncode})")
            runs[label].append(fig)
            print(f"{label} run {i + 1}: {fig['pages/s']:>6} pages/s  us/page broker "
                  f"{fig['broker']:>3} worker {fig['worker']:>3} node {fig['node1']:>3} "
                  f"all {fig['all']:>3}", flush=True)
    med = {label: {f: statistics.median(r[f] for r in runs[label]) for f in FIELDS}
           for label in runs}
    print(f"medians of {a.pairs} runs each (A = {bins['A']}, B = {bins['B']}):")
    for f in FIELDS:
        name = "node" if f == "node1" else f
        unit = "" if f == "pages/s" else " us/page"
        ratio = med["B"][f] / med["A"][f] if med["A"][f] else float("nan")
        print(f"  {name:<8} A {med['A'][f]:>8.0f}  B {med['B'][f]:>8.0f}{unit:<9} B/A {ratio:.2f}")


if __name__ == "__main__":
    main()
