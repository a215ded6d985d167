#!/usr/bin/env python3
"""Items per second into the Python worker's sinks (clients/python/spiderhub/sinks.py).

1. Sinks alone (no broker): batches of --batch pages of 1-3 items (six fields: text,
   integer, real, a list, a URL, a bool) committed into JSON lines, CSV, SQLite and
   PostgreSQL (a throwaway cluster of tests/e2e/pg.py: fsync off, as a test cluster), each
   commit one transaction with the page records, as the worker commits a Poll batch.
2. A crawl of the generated site (bench/gen_site.py, --pages, nginx on loopback) through a
   broker and --nodes nodes by tests/e2e/sink_spider.py (an ItemSpec of CSS/XPath fields,
   one item per page): the worker without a sink, with SQLite, with PostgreSQL, with both;
   items/s from the trigger to the run's Success, and the worker's CPU seconds.

Prints the figures; no assertion on speed (each crawl must store every page once).

    /usr/bin/python3 bench/item_sinks.py [--pages 5000] [--nodes 2] [--batch 500]
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "e2e"))
sys.path.insert(0, os.path.join(root, "clients", "python"))
import harness as h  # noqa: E402
from pg import Postgres  # noqa: E402
from spiderhub import sinks  # noqa: E402

PYTHON = "/usr/bin/python3"  # python3-parsel and python3-psycopg2
SPIDER = os.path.join(root, "tests", "e2e", "sink_spider.py") + ":SinkSpider"


def synthetic_pages(n_pages, rng, first=0):
    out = []
    for i in range(first, first + n_pages):
        items = [{"url": f"http://site.example/p/{i}/{j}.html", "title": f"Product {i}-{j}",
                  "price": round(rng.uniform(1, 500), 2), "stock": rng.randrange(100),
                  "tags": rng.sample(["red", "blue", "new", "sale", "big"], 2),
                  "available": rng.random() < 0.8}
                 for j in range(1 + i % 3)]
        out.append(sinks.Page(f"{i:016x}", i, items))
    return out


def sinks_alone(pg, batch, total_pages):
    print(f"sinks alone: {total_pages} pages in batches of {batch} (1-3 items each)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        dests = {"JSON lines": os.path.join(tmp, "items.jsonl"),
                 "CSV": os.path.join(tmp, "items.csv"),
                 "SQLite": "sqlite://" + os.path.join(tmp, "items.db"),
                 "SQLite, upsert by url": "sqlite://" + os.path.join(tmp, "k.db") + "?key=url",
                 "PostgreSQL": pg.dsn + "?table=alone",
                 "PostgreSQL, upsert by url": pg.dsn + "?table=alone_k&key=url"}
        for what, dest in dests.items():
            s = sinks.open_sink(dest)
            rng = random.Random(7)
            items = 0
            took = 0.0
            for first in range(0, total_pages, batch):
                pages = synthetic_pages(min(batch, total_pages - first), rng, first)
                items += sum(len(p.items) for p in pages)
                t0 = time.perf_counter()
                s.commit("bench", pages)
                took += time.perf_counter() - t0
            s.close()
            print(f"  {what:<26} {items / took:9.0f} items/s  ({items} items, "
                  f"{took:.2f} s in commits)", flush=True)


def crawl(env, broker, site, pages, name, outputs):
    """One run of sink_spider over the site; (items/s, worker CPU s)."""
    cls = f"bench.sinks.{name}"
    argv = [PYTHON, "-m", "spiderhub.worker", "--broker", broker.base + "/", "--token",
            h.TOKEN, "--class", cls, "--spider", SPIDER, "--runs", "1"]
    for o in outputs:
        argv += ["-o", o]
    w = env.spawn(f"worker-{name}", argv,
                  env=dict(os.environ, PYTHONPATH=os.path.join(root, "clients", "python")))
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": f"sinks-{name}", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": cls, "Arguments": json.dumps(
            {"startUrl": site.base + "/index.html", "maxDepth": 10})}})
    assert status == 201, (status, job)
    h.trigger_run(broker, job["id"], interval=0.1)
    t0 = time.monotonic()
    cpu = [h.cpu_seconds(w.pid)]

    def finished():
        cpu[0] = h.cpu_seconds(w.pid, cpu[0])
        r = h.run_of(broker, job["id"]) or {}
        assert r.get("status") in (None, "Running", "Success"), r
        return r.get("status") == "Success"
    h.wait_until("run finished", finished, timeout=3600, interval=0.05)
    took = time.monotonic() - t0
    assert w.wait(timeout=60) == 0, env.log(w.name)[-3000:]
    stats = json.loads([ln for ln in env.log(w.name).splitlines() if ln.startswith("{")][-1])
    assert stats["items"] == pages, stats
    return pages / took, cpu[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(root, "build", "spiderhub"))
    ap.add_argument("--pages", type=int, default=5000, help="pages of the site (default 5000)")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500, help="pages per commit in part 1")
    ap.add_argument("--sink-pages", type=int, default=20000, help="pages of part 1")
    a = ap.parse_args()
    with h.Env(argparse.Namespace(bin=a.bin, source=root, build=os.path.dirname(a.bin)),
               "bench-sinks") as env, Postgres(env.dir) as pg:
        sinks_alone(pg, a.batch, a.sink_pages)
        site = env.start_site(a.pages)
        broker = env.start_broker(extra_yaml=(
            "dispatch:\n  block_size: 50\npoliteness:\n  max_concurrency_per_host: 1000\n"
            "log:\n  level: warn\n"))
        for i in range(a.nodes):
            env.start_node(broker, f"node{i}")
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == a.nodes)
        db = env.path("crawl.db")
        runs = {"no sink": [],
                "SQLite": [f"sqlite://{db}?table=lite_only"],
                "PostgreSQL": [pg.dsn + "?table=pg_only"],
                "SQLite + PostgreSQL": [f"sqlite://{db}?table=both_dbs",
                                        pg.dsn + "?table=both_dbs"]}
        print(f"crawl of {a.pages} pages, {a.nodes} nodes, one worker (sink_spider: "
              "one item per page)", flush=True)
        for i, (what, outputs) in enumerate(runs.items()):
            rate, cpu = crawl(env, broker, site, a.pages, f"r{i}", outputs)
            print(f"  {what:<22} {rate:7.0f} items/s   worker CPU {cpu:5.1f} s", flush=True)
        with sqlite3.connect(db) as c:
            for table in ("lite_only", "both_dbs"):
                n = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                assert n == a.pages, (table, n)
        for table in ("pg_only", "both_dbs"):
            assert pg.sql(f"SELECT count(*) FROM {table}") == f"{a.pages}\n", table


if __name__ == "__main__":
    main()
