"""Item sinks of the Python worker, exactly once across kill -9 (#39).

tests/e2e/sink_spider.py reads one item per page of the 2,000-page generated site with an
ItemSpec (CSS and XPath fields) and the worker writes each item to SQLite (upsert by url)
and PostgreSQL (insert-ignore by request hash, a throwaway cluster of tests/e2e/pg.py) at
once, sqlite first. The worker is killed -9 three times and started again:

1. at a random moment (once SQLite holds a fifth of the pages);
2. right after a SQLite commit, before the PostgreSQL commit of the same batch (the spider
   module pauses the worker there): the batch is in SQLite only and not acked;
3. right after a PostgreSQL commit, before the ack: the batch is in both and not acked;

and the fourth life finishes the run. Then both tables hold one row per page, no key twice,
every page recorded once in spiderhub_pages, the fields as the pages say; the fourth life
skipped the pages the third had committed (redelivered, not parsed again); the PostgreSQL
URL's password appears in no log. Acking a batch before its commits loses the batch paused
in step 2 from PostgreSQL: this test then fails.
"""
import json
import os
import re
import signal
import sqlite3
import time

import harness as h
from pg import Postgres

PAGES = 2000
CLS = "py.SinkSpider"
PYTHON = "/usr/bin/python3"  # Debian's python3-parsel and python3-psycopg2 live there
SECRET = "not-printed-7f3a"  # trust authentication ignores it; no log may show it


def start_worker(env, broker, name, outputs, pause=""):
    argv = [PYTHON, "-m", "spiderhub.worker", "--broker", broker.base + "/", "--token",
            h.TOKEN, "--class", CLS, "--runs", "1", "--poll-max", "100", "--spider",
            os.path.join(env.args.source, "tests", "e2e", "sink_spider.py") + ":SinkSpider"]
    for o in outputs:
        argv += ["-o", o]
    flag = env.path(f"{name}.paused")
    environ = dict(os.environ, PYTHONPATH=os.path.join(env.args.source, "clients", "python"),
                   SINK_SPIDER_PAUSE=pause, SINK_SPIDER_FLAG=flag)
    p = env.spawn(name, argv, env=environ)
    p.flag = flag
    return p


def sqlite_query(path, sql):
    """Rows of `sql` on the worker's database (nothing before its tables exist)."""
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        db.close()


def sqlite_pages(path):
    rows = sqlite_query(path, "SELECT count(*) FROM spiderhub_pages")
    return rows[0][0] if rows else 0


def pg_pages(pg):
    out = pg.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'spiderhub_pages'", db="crawl")
    return int(pg.sql("SELECT count(*) FROM spiderhub_pages", db="crawl")) if out == "1\n" else 0


def kill(w):
    w.send_signal(signal.SIGKILL)
    w.wait()


def paused_and_killed(env, w, kind, timeout=60):
    """Waits until the worker paused after a commit of `kind`, then kills it -9."""
    h.wait_until(f"{w.name} paused after a {kind} commit",
                 lambda: os.path.exists(w.flag) or w.poll() is not None, timeout=timeout,
                 interval=0.02)
    assert w.poll() is None, f"{w.name} exited: {env.log(w.name)[-2000:]}"
    with open(w.flag) as f:
        what = f.read().split()
    assert what[0] == kind, what
    kill(w)


def expected_item(base, url):
    n = 0 if url == base + "/index.html" else int(re.search(r"/p/(\d+)\.html$", url).group(1))
    return n, f"Page {n}"


def main():
    args = h.parse_args()
    t0 = time.monotonic()
    with h.Env(args, "item_sinks") as env, Postgres(env.dir) as pg:
        pg.create_database("crawl")
        site = env.start_site(PAGES)
        expected = h.site_pages(site.base, PAGES)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        for n in ("node1", "node2"):
            env.start_node(broker, n)
        db = env.path("items.db")
        pg_url = (f"postgresql://{pg.user}:{SECRET}@127.0.0.1:{pg.port}/crawl"
                  "?table=pages&application_name=sink-test")
        outputs = [f"sqlite://{db}?table=pages&key=url", pg_url]

        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "sinks", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": CLS, "Arguments": json.dumps(
                {"startUrl": site.base + "/index.html", "maxDepth": 10})}})
        assert status == 201, (status, job)

        # 1. A kill -9 at a random moment.
        w = start_worker(env, broker, "worker1", outputs)
        h.trigger_run(broker, job["id"])
        h.wait_until("a fifth of the pages in SQLite",
                     lambda: sqlite_pages(db) >= PAGES // 5 or w.poll() is not None,
                     timeout=60, interval=0.02)
        assert w.poll() is None, env.log("worker1")[-3000:]
        kill(w)
        print(f"life 1 killed -9 at {sqlite_pages(db)} pages in SQLite, {pg_pages(pg)} in "
              "PostgreSQL", flush=True)

        # 2. Between the two sinks' commits of one batch.
        w = start_worker(env, broker, "worker2", outputs, pause=f"sqlite:{PAGES * 3 // 20}")
        paused_and_killed(env, w, "sqlite")
        lite, post = sqlite_pages(db), pg_pages(pg)
        assert lite > post, (lite, post)
        print(f"life 2 killed -9 between the commits of a batch: {lite} pages in SQLite, "
              f"{post} in PostgreSQL", flush=True)

        # 3. After both commits, before the ack.
        w = start_worker(env, broker, "worker3", outputs, pause=f"postgresql:{PAGES * 3 // 20}")
        paused_and_killed(env, w, "postgresql")
        lite, post = sqlite_pages(db), pg_pages(pg)
        assert lite == post, (f"{lite} pages in SQLite, {post} in PostgreSQL: the batch life 2 "
                              "committed to SQLite alone never came back (acked before its "
                              "commits?)")
        print(f"life 3 killed -9 after both commits, before the ack: {lite} pages in each",
              flush=True)

        # 4. To the end.
        w = start_worker(env, broker, "worker4", outputs)

        def done():
            r = h.run_of(broker, job["id"]) or {}
            assert r.get("status") in (None, "Running", "Success"), r
            return r if r.get("status") == "Success" else None
        run = h.wait_until("run Success", done, timeout=90, interval=0.5)
        assert run["success"] == PAGES and run["left"] == 0, run
        h.wait_until("the last worker exits", lambda: w.poll() is not None, timeout=30)
        log4 = env.log("worker4")
        stats = json.loads([line for line in log4.splitlines() if line.startswith("{")][-1])
        assert stats["skipped"] >= 1, stats  # life 3's batch: committed in both, redelivered
        assert stats["items"] > 0, stats

        # Both databases: one row per page, no key twice, every page recorded once.
        rows = sqlite_query(db, "SELECT url, title, number, links, paragraphs, price, depth "
                                "FROM pages")
        urls = [r[0] for r in rows]
        assert len(rows) == PAGES and set(urls) == expected, \
            (len(rows), len(set(urls)), sorted(expected - set(urls))[:3])
        for url, title, number, links, paragraphs, price, depth in rows:
            assert (number, title) == expected_item(site.base, url), (url, title, number)
            assert json.loads(links) and paragraphs > 0 and price is None, (url, links)
        assert sqlite_query(db, "SELECT count(*), count(DISTINCT request_hash) FROM "
                                "spiderhub_pages") == [(PAGES, PAGES)]
        out = pg.sql("SELECT url, title, number, jsonb_array_length(links), paragraphs, "
                     "price IS NULL FROM pages", db="crawl").splitlines()
        pg_rows = [line.split("|") for line in out]
        pg_urls = [r[0] for r in pg_rows]
        assert len(pg_rows) == PAGES and set(pg_urls) == expected, \
            (len(pg_rows), len(set(pg_urls)), sorted(expected - set(pg_urls))[:3])
        for url, title, number, links, paragraphs, no_price in pg_rows:
            assert (int(number), title) == expected_item(site.base, url), (url, title, number)
            assert int(links) > 0 and float(paragraphs) > 0 and no_price == "t", url
        assert pg.sql("SELECT count(*), count(DISTINCT (request_hash, item_index)) FROM pages",
                      db="crawl") == f"{PAGES}|{PAGES}\n"
        assert pg.sql("SELECT count(*), count(DISTINCT request_hash) FROM spiderhub_pages",
                      db="crawl") == f"{PAGES}|{PAGES}\n"

        # The spec's counts (the fourth life's pages) and no password in any log.
        fields = json.loads(log4.split("sink_spider: fields ", 1)[1].splitlines()[0])["fields"]
        assert fields["title"]["fill"] == 1.0 and fields["price"]["fill"] == 0.0, fields
        assert fields["number"]["typeErrors"] == 0, fields
        assert "postgresql://spiderhub:***@" in log4, log4[:2000]
        for p in ("worker1", "worker2", "worker3", "worker4"):
            assert SECRET not in env.log(p), f"{p} printed the password"
        took = time.monotonic() - t0
        print(f"item sinks: {PAGES} pages, workers killed -9 three times (random, between "
              f"the sinks' commits, before the ack): SQLite and PostgreSQL hold every page "
              f"once, {stats['skipped']} redelivered pages skipped; {took:.0f} s", flush=True)


if __name__ == "__main__":
    main()
