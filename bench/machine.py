"""How much of its two cores the machine gives right now, for benchmark output.

A fixed pure-Python loop (interpreter work, like Scrapy's) is timed alone and then twice
at once in two processes. On an idle 2-core machine the two at once take as long as one
alone (1.00x). When the two virtual cores share a physical one, or a neighbour is busy,
two at once run slower (seen here: up to 1.6x). spiderhub's crawl keeps both cores busy and
Scrapy's one, so such a state slows spiderhub far more than Scrapy: benchmarks print this
line next to their figures so a slow round can be told apart from a slower build."""
import multiprocessing
import statistics
import time


def _spin(_=None):
    """The fixed loop; returns its seconds."""
    t = time.perf_counter()
    h = 0
    for i in range(3_000_000):
        h = (h * 31 + i) & 0xFFFFFFFF
    return time.perf_counter() - t


def check():
    """(median ms of the loop alone, median of the mean ms of two loops at once), three
    times each (~2 s in all)."""
    with multiprocessing.Pool(2) as pool:
        pool.map(_spin, [0, 0])  # start both worker processes
        alone = statistics.median(pool.apply(_spin) for _ in range(3))
        both = statistics.median(statistics.mean(pool.map(_spin, [0, 0])) for _ in range(3))
    return alone * 1000, both * 1000


def line():
    """check() as one line of text."""
    alone, both = check()
    return (f"machine: a fixed loop {alone:.0f} ms alone, {both:.0f} ms with two at once "
            f"({both / alone:.2f}x)")
