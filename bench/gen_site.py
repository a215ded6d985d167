#!/usr/bin/env python3
"""Writes a static test site for crawl tests and benchmarks.

Page i (0 <= i < N) is N-independent in shape: it links to pages 10i+1 .. 10i+10 (those
below N) and to 5 pseudo-random pages (fixed seed), and is padded with filler text to
about 4.3 KB. Every page is reachable from index.html (page 0) within
ceil(log10(N)) + 1 link hops, so a crawl with maxDepth >= that finds all N pages.
"""
import argparse
import os
import random
import sys

WORDS = ("spider crawl block lease node broker worker request result queue actor "
         "dispatch cron storage shard fetch parse link page index depth").split()


def page_name(i):
    return "index.html" if i == 0 else f"p/{i}.html"


def render(i, n, rng, target_size):
    links = [j for j in range(10 * i + 1, 10 * i + 11) if j < n]
    links += [rng.randrange(n) for _ in range(5)]
    parts = [
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">",
        f"<title>Page {i}</title></head><body>\n<h1>Page {i}</h1>\n<ul>\n",
    ]
    for j in links:
        parts.append(f"<li><a href=\"/{page_name(j)}\">page {j}</a></li>\n")
    parts.append("</ul>\n")
    body = "".join(parts)
    filler = []
    size = len(body) + len("</body></html>\n")
    while size < target_size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(12)) + ".\n"
        para = f"<p>{sentence}</p>"
        filler.append(para)
        size += len(para)
    return body + "".join(filler) + "</body></html>\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=2000, help="number of pages (>= 1)")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--size", type=int, default=4300, help="approximate bytes per page")
    args = ap.parse_args()
    if args.pages < 1:
        ap.error("--pages must be >= 1")
    rng = random.Random(args.seed)
    os.makedirs(os.path.join(args.out, "p"), exist_ok=True)
    for i in range(args.pages):
        with open(os.path.join(args.out, page_name(i)), "w") as f:
            f.write(render(i, args.pages, rng, args.size))
    print(f"gen_site: {args.pages} pages in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
