"""Unit tests of selectors, item specs and item sinks (clients/python/spiderhub): no broker.

    /usr/bin/python3 tests/python/test_sinks.py [-v]

Selectors need parsel (Debian's python3-parsel), the PostgreSQL cases psycopg2
(python3-psycopg2) and a throwaway PostgreSQL 15 cluster (tests/e2e/pg.py, postgresql-15):
without them those cases are skipped, with the reason. The crash cases kill (SIGKILL) a
child process committing batches, many times, and check that every page's items end up
stored exactly once.
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "..", "clients", "python")
sys.path.insert(0, CLIENT)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))  # pg.py

from spiderhub import sinks as sk  # noqa: E402
from spiderhub import worker as sw  # noqa: E402
from spiderhub.sinks import Page  # noqa: E402

HAS_PARSEL = importlib.util.find_spec("parsel") is not None
HAS_PSYCOPG2 = importlib.util.find_spec("psycopg2") is not None

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title> Page 7 </title></head>
<body><h1>Page 7</h1><span class="p">Price: $12.50</span><span class="n">x</span>
<ul><li><a class="tag" href="/a">alpha</a></li><li><a class="tag" href="/b">beta</a></li>
<li><a class="tag" href="/c">  </a></li></ul>
<div class="row"><b>one</b><i>1</i></div><div class="row"><b>two</b><i>zwei</i></div>
<div class="row"><i>3</i></div></body></html>"""


def response(body: str | bytes = PAGE, content_type: str = "text/html; charset=utf-8",
             **kw) -> sw.Response:
    body = body.encode("utf-8") if isinstance(body, str) else body
    args = dict(run={"identity": "r"}, url="http://h/p/7.html", status=200,
                headers={"content-type": content_type}, body=body, depth=1,
                request_hash="h7", result_id=7)
    args.update(kw)
    return sw.Response(**args)


def pages(*spec) -> list[Page]:
    """pages(("h1", [items]), ...) with result ids 1, 2..."""
    return [Page(h, i, list(items)) for i, (h, items) in enumerate(spec, 1)]


def jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def csv_rows(path: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def quiet() -> tuple[list, callable]:
    logged: list[str] = []
    return logged, logged.append


# ---- selectors -----------------------------------------------------------------------------


@unittest.skipUnless(HAS_PARSEL, "parsel missing (apt-get install python3-parsel)")
class Selectors(unittest.TestCase):
    def test_css_and_xpath(self):
        r = response()
        self.assertEqual(r.css("title::text").get(), " Page 7 ")
        self.assertEqual(r.css("a.tag::text").getall(), ["alpha", "beta", "  "])
        self.assertEqual(r.css("a.tag::attr(href)").getall(), ["/a", "/b", "/c"])
        self.assertEqual(r.xpath("//span[@class='p']/text()").re(r"[\d.]+"), ["12.50"])
        self.assertEqual(r.xpath("//h1/text()").get(), "Page 7")
        self.assertEqual(r.xpath("//a[@href=$h]/text()", h="/b").get(), "beta")
        self.assertIsNone(r.css("table").get())
        self.assertEqual([row.css("b::text").get() for row in r.css("div.row")],
                         ["one", "two", None])

    def test_selector_is_built_once_from_text(self):
        r = response()
        with mock.patch("spiderhub.selectors.selector_for",
                        wraps=__import__("spiderhub.selectors").selectors.selector_for) as made:
            r.css("title")
            r.xpath("//h1")
            r.css("a")
        self.assertEqual(made.call_count, 1)
        self.assertIs(r.selector, r.selector)

    def test_page_encoding(self):
        # windows-1251 bytes, labelled in the header only: text (and so css) decodes them.
        body = "<html><title>Привет</title></html>".encode("cp1251")
        r = response(body, "text/html; charset=windows-1251")
        self.assertEqual(r.css("title::text").get(), "Привет")
        r = response(body, "text/html", encoding="windows-1251")  # the node's sniffing
        self.assertEqual(r.css("title::text").get(), "Привет")

    def test_xml_content_types(self):
        xml = '<?xml version="1.0"?><feed><Entry id="1">A</Entry><Entry id="2">B</Entry></feed>'
        r = response(xml, "application/atom+xml")
        self.assertEqual(r.xpath("//Entry/@id").getall(), ["1", "2"])  # case kept: XML
        self.assertEqual(r.selector.type, "xml")
        self.assertEqual(response(PAGE, "application/xhtml+xml").selector.type, "html")
        self.assertEqual(response(PAGE, "").selector.type, "html")

    def test_parsel_missing_names_the_package(self):
        from spiderhub import selectors
        with mock.patch.dict(sys.modules, {"parsel": None}):
            with self.assertRaises(ImportError) as e:
                response().css("title")
            self.assertIn("python3-parsel", str(e.exception))
            # Specs build without parsel; they need it only to extract.
            selectors.ItemSpec({"t": selectors.css("title::text")})


@unittest.skipUnless(HAS_PARSEL, "parsel missing (apt-get install python3-parsel)")
class ItemSpecs(unittest.TestCase):
    def spec(self):
        from spiderhub.selectors import ItemSpec, css, xpath
        return ItemSpec({
            "title": css("title::text"),
            "price": xpath("//span[@class='p']/text()", re=r"[\d.]+", type=float,
                           optional=True),
            "tags": css("a.tag::text", multiple=True),
            "count": css("span.n::text", type=int, optional=True),
            "missing": css("table td::text", optional=True, default="n/a"),
        })

    def test_extract(self):
        spec = self.spec()
        item = spec.extract(response())
        self.assertEqual(item, {"title": "Page 7", "price": 12.5, "tags": ["alpha", "beta"],
                                "count": None, "missing": "n/a"})
        snap = spec.snapshot()
        self.assertEqual((snap["extractions"], snap["items"], snap["rejected"]), (1, 1, 0))
        self.assertEqual(snap["fields"]["count"], {"matched": 1, "missed": 0, "typeErrors": 1,
                                                   "fill": 1.0})
        self.assertEqual(snap["fields"]["missing"]["missed"], 1)
        json.dumps(snap)

    def test_required_field_missing_rejects(self):
        spec = self.spec()
        self.assertIsNone(spec.extract(response("<html><body>no title</body></html>")))
        spec.extract(response())
        self.assertEqual((spec.extractions, spec.items, spec.rejected), (2, 1, 1))
        st = spec.field_stats["title"]
        self.assertEqual((st.matched, st.missed, st.fill()), (1, 1, 0.5))
        self.assertEqual(spec.field_stats["tags"].missed, 1)
        spec.reset_stats()
        self.assertEqual((spec.extractions, spec.field_stats["title"].matched), (0, 0))

    def test_rows_of_a_listing(self):
        from spiderhub.selectors import ItemSpec, css
        spec = ItemSpec({"name": css("b::text"), "n": css("i::text", type=int)})
        rows = [spec.extract(row) for row in response().css("div.row")]
        self.assertEqual(rows, [{"name": "one", "n": 1}, {"name": "two", "n": None}, None])
        self.assertEqual(spec.field_stats["n"].type_errors, 1)
        self.assertEqual(spec.field_stats["name"].missed, 1)

    def test_multiple_with_type_errors_and_bool(self):
        from spiderhub.selectors import ItemSpec, css
        html = "<p>1</p><p>x</p><p>3</p><b>Yes</b><u>maybe</u>"
        spec = ItemSpec({"ns": css("p::text", type=int, multiple=True),
                         "b": css("b::text", type=bool), "u": css("u::text", type=bool)})
        self.assertEqual(spec.extract(response(html)), {"ns": [1, 3], "b": True, "u": None})
        self.assertEqual(spec.field_stats["ns"].type_errors, 1)
        self.assertEqual(spec.field_stats["u"].type_errors, 1)

    def test_strip_and_re_groups(self):
        from spiderhub.selectors import ItemSpec, css, xpath
        spec = ItemSpec({"raw": css("title::text", strip=False),
                         "cents": xpath("//span[@class='p']/text()", re=r"\.(\d+)", type=int)})
        self.assertEqual(spec.extract(response()), {"raw": " Page 7 ", "cents": 50})

    def test_schema(self):
        self.assertEqual(self.spec().schema(), {"title": "text", "price": "real", "tags": "json",
                                                "count": "integer", "missing": "text"})

    def test_bad_specs(self):
        from spiderhub.selectors import ItemSpec, css
        with self.assertRaises(TypeError):
            ItemSpec({"a": "title::text"})
        with self.assertRaises(ValueError):
            ItemSpec({"": css("a")})
        with self.assertRaises(Exception):
            ItemSpec({"a": css("a", re="(")})


# ---- values and destinations ---------------------------------------------------------------


class Values(unittest.TestCase):
    def test_convert(self):
        cases = [
            (5, "integer", (True, 5)), ("12", "integer", (True, 12)), (2.0, "integer", (True, 2)),
            (2.5, "integer", (False, None)), ("x", "integer", (False, None)),
            (1 << 70, "integer", (False, None)), (True, "integer", (True, 1)),
            ("1.5", "real", (True, 1.5)), (3, "real", (True, 3.0)), ("a", "real", (False, None)),
            (True, "real", (False, None)), ("yes", "boolean", (True, True)),
            (0, "boolean", (True, False)), ("maybe", "boolean", (False, None)),
            ("a\x00b", "text", (True, "a\ufffdb")), ([1, "é"], "text", (True, '[1, "é"]')),
            (12, "text", (True, "12")), ("\ud800x", "text", (True, "?x")),
            ({"a": 1}, "json", (True, {"a": 1})), (None, "real", (True, None)),
        ]
        for v, kind, want in cases:
            with self.subTest(v=v, kind=kind):
                self.assertEqual(sk.convert(v, kind), want)

    def test_infer_type(self):
        self.assertEqual([sk.infer_type(v) for v in ("a", 1, 1.5, True, [1], {}, None)],
                         ["text", "integer", "real", "boolean", "json", "json", "text"])

    def test_columns(self):
        self.assertEqual(sk.parse_columns("url, price:real ,tags:json"),
                         {"url": "text", "price": "real", "tags": "json"})
        for bad in ("a:float", "request_hash", "item_index:integer", "", "x" * 64):
            with self.subTest(bad=bad), self.assertRaises(sk.SinkError):
                sk.parse_columns(bad)


class Destinations(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))

    def p(self, name):
        return os.path.join(self.tmp, name)

    def test_kinds(self):
        cases = [(self.p("a.jsonl"), sk.JsonLinesSink),
                 ("jsonl:" + self.p("b.csv"), sk.JsonLinesSink),
                 (self.p("c"), sk.JsonLinesSink), (self.p("d.csv"), sk.CsvSink),
                 ("csv:" + self.p("e.txt"), sk.CsvSink),
                 ("sqlite://" + self.p("f.db"), sk.SQLiteSink),
                 ("sqlite:" + self.p("g.db") + "?table=pages_seen&key=url", sk.SQLiteSink)]
        for dest, cls in cases:
            with self.subTest(dest=dest):
                s = sk.open_sink(dest)
                self.assertIsInstance(s, cls)
                s.close()
        s = sk.open_sink("sqlite://" + self.p("f.db") + "?table=t&key=url&columns=url,n:integer")
        self.assertEqual((s.path, s.table, s.key, s.declared), (self.p("f.db"), "t", "url",
                                                               {"url": "text", "n": "integer"}))
        self.assertEqual(s.mode, "upsert by url")
        s.close()
        cwd = os.getcwd()
        os.chdir(self.tmp)
        try:
            s = sk.open_sink("sqlite:rel.db")
            s.close()
            self.assertTrue(os.path.exists(self.p("rel.db")))
        finally:
            os.chdir(cwd)

    def test_bad_destinations(self):
        for dest in ("sqlite://host/x.db", "sqlite:", "sqlite:x.db?tabel=t",
                     "sqlite:x.db?table=a-b",
                     "sqlite:x.db?table=spiderhub_pages", "sqlite:x.db?columns=a:float",
                     "sqlite:x.db?key=b&columns=a", "ftp://h/x", "csv:", "jsonl:",
                     "postgresql://u:hunter2@h/db?tabel=x"):
            with self.subTest(dest=dest), self.assertRaises(sk.SinkError) as e:
                sk.open_sink(dest)
            self.assertNotIn("hunter2", str(e.exception))

    def test_secrets_never_printed(self):
        url = "postgresql://bob:s%40cret@db.example:5433/crawl?sslmode=require&password=two"
        self.assertEqual(sk.redact(url), "postgresql://bob:***@db.example:5433/crawl"
                                         "?sslmode=require&password=***")
        self.assertEqual(sk.redact("postgres://bob@h/db"), "postgres://bob@h/db")
        self.assertEqual(sk.redact("host=h password='a b' dbname=d"),
                         "host=h password=*** dbname=d")
        self.assertEqual(sk.scrub("auth s@cret / s%40cret / two failed", url),
                         "auth *** / *** / *** failed")
        self.assertEqual(sk.redact("sqlite:/x.db"), "sqlite:/x.db")

    @unittest.skipUnless(HAS_PSYCOPG2, "psycopg2 missing")
    def test_postgres_unreachable_at_start(self):
        # The command line: exit 1, the URL without its password.
        err = io.StringIO()
        url = "postgresql://bob:hunter2@127.0.0.1:1/db?connect_timeout=2&table=t"
        with contextlib.redirect_stderr(err), mock.patch.object(sw, "Worker") as W:
            code = sw.main(["--class", "c", "--spider", "spiderhub.samples:LinkSpider",
                            "-o", url])
        self.assertEqual(code, 1)
        W.assert_not_called()
        self.assertIn("postgresql://bob:***@127.0.0.1:1/db", err.getvalue())
        self.assertNotIn("hunter2", err.getvalue())

    def test_command_line(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), mock.patch.object(sw, "Worker") as W:
            W.return_value.stats = {}
            code = sw.main(["--class", "c", "--spider", "spiderhub.samples:LinkSpider",
                            "-o", self.p("i.jsonl"), "-o", "sqlite://" + self.p("i.db"),
                            "-o", self.p("i.csv")])
        self.assertEqual(code, 0)
        sinks = W.call_args.kwargs["sinks"]
        self.assertEqual([type(s) for s in sinks], [sk.JsonLinesSink, sk.SQLiteSink, sk.CsvSink])
        self.assertIn("insert-ignore by request_hash", err.getvalue())
        with contextlib.redirect_stderr(io.StringIO()) as err, \
                mock.patch.object(sw, "Worker") as W:
            with self.assertRaises(SystemExit) as e:
                sw.main(["--class", "c", "--spider", "spiderhub.samples:LinkSpider",
                         "-o", "sqlite:x.db?nope=1"])
        self.assertEqual(e.exception.code, 2)
        self.assertIn("unknown parameter 'nope'", err.getvalue())
        W.assert_not_called()


# ---- file sinks ----------------------------------------------------------------------------


class FileSinks(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))

    def p(self, name):
        return os.path.join(self.tmp, name)

    def test_jsonl_commit_and_reopen(self):
        path = self.p("items.jsonl")
        s = sk.JsonLinesSink(path)
        s.commit("r", pages(("h1", [{"a": 1}, {"a": 2}]), ("h2", []), ("h3", [{"a": "é"}])))
        self.assertEqual(s.committed("r", ["h1", "h2", "h3", "h4"]), {"h1", "h3"})
        s.commit("r", pages(("h1", [{"a": 1}]), ("h4", [{"a": 4}])))  # h1 skipped
        self.assertEqual(s.stats["skipped_pages"], 1)
        s.close()
        lines = jsonl(path)
        self.assertEqual([(x["a"], x["requestHash"]) for x in lines],
                         [(1, "h1"), (2, "h1"), ("é", "h3"), (4, "h4")])
        again = sk.JsonLinesSink(path)
        self.assertEqual(again.committed("other run", ["h1", "h3", "h4", "h5"]),
                         {"h1", "h3", "h4"})
        again.close()

    def test_jsonl_cut_batch_is_cut_off(self):
        path = self.p("items.jsonl")
        s = sk.JsonLinesSink(path)
        s.commit("r", pages(("h1", [{"a": 1}])))
        s.close()
        with open(path, "ab") as f:  # a batch a kill -9 interrupted: whole lines, and a cut one
            f.write(b'{"a": 2, "requestHash": "h2"}\n{"a": 3, "requestHash": "h2"}\n{"a": 4, "req')
        logged, log = quiet()
        again = sk.JsonLinesSink(path, log=log)
        self.assertEqual(again.committed("r", ["h1", "h2"]), {"h1"})  # h2 will come back whole
        self.assertIn("cut off", logged[0])
        again.commit("r", pages(("h2", [{"a": 2}, {"a": 3}, {"a": 4}])))
        again.close()
        self.assertEqual([x["a"] for x in jsonl(path)], [1, 2, 3, 4])

    def test_jsonl_legacy_file_and_page_api(self):
        # A file of an older worker (no .committed): read back, its cut last line dropped.
        path = self.p("old.jsonl")
        with open(path, "wb") as f:
            f.write(b'{"u": 1, "requestHash": "h1"}\n{"u": 2, "requestHash": "h2"}\n{"u": 3,')
        s = sk.JsonLinesSink(path)
        self.assertTrue(s.already_hash("h1") and s.already_hash("h2"))
        self.assertFalse(os.path.exists(path + ".committed"))
        s.write_hash("h3", [{"u": 3}])  # the page-by-page API the Scrapy bridge builds on
        s.flush()
        self.assertTrue(s.already(response(request_hash="h3")))
        s.close()
        self.assertEqual([x["u"] for x in jsonl(path)], [1, 2, 3])
        self.assertIs(sw.JsonLinesSink, sk.JsonLinesSink)

    def test_csv(self):
        path = self.p("items.csv")
        logged, log = quiet()
        s = sk.CsvSink(path, log=log)
        s.commit("r", pages(("h0", []), ("h1", [{"url": "u1", "n": 1, "tags": ["a", "b"]}]),
                            ("h2", [{"url": "u2", "extra": True, "n": None}])))
        self.assertEqual(s.stats["dropped_fields"], 1)
        self.assertIn("'extra'", logged[0])
        s.close()
        rows = csv_rows(path)
        self.assertEqual(rows, [["url", "n", "tags", "request_hash"],
                                ["u1", "1", '["a", "b"]', "h1"], ["u2", "", "", "h2"]])
        again = sk.CsvSink(path)
        self.assertEqual(again.columns, ["url", "n", "tags"])
        self.assertEqual(again.committed("r", ["h1", "h2", "h3"]), {"h1", "h2"})
        with open(path, "ab") as f:
            f.write(b'u3,3,"[\n')  # cut in a quoted field by a crash
        again.close()
        again = sk.CsvSink(path)
        again.commit("r", pages(("h3", [{"url": "u3,x", "n": 3}])))
        again.close()
        rows = csv_rows(path)
        self.assertEqual(rows[-1], ["u3,x", "3", "", "h3"])
        self.assertEqual(len(rows), 4)

    def test_csv_declared_schema_and_foreign_file(self):
        path = self.p("s.csv")
        s = sk.CsvSink(path, schema={"b": "text", "a": "integer"})
        s.commit("r", pages(("h1", [{"a": 1, "b": "x"}])))
        s.close()
        self.assertEqual(csv_rows(path)[0], ["b", "a", "request_hash"])
        with open(self.p("foreign.csv"), "w") as f:
            f.write("x,y\n1,2\n")
        with self.assertRaises(sk.SinkError):
            sk.CsvSink(self.p("foreign.csv"))


# ---- SQLite --------------------------------------------------------------------------------


class SQLite(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))
        self.path = os.path.join(self.tmp, "items.db")

    def rows(self, sql):
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def test_insert_ignore_by_request_hash(self):
        s = sk.SQLiteSink(self.path)
        batch = pages(("h1", [{"url": "u1", "n": 1}, {"url": "u1b", "n": 2}]), ("h2", []),
                      ("h3", [{"url": "u3", "price": 2.5, "tags": ["x"], "ok": True}]))
        s.commit("r", batch)
        s.commit("r", batch)  # the same batch again (a redelivery): nothing doubles
        self.assertEqual(s.stats["skipped_pages"], 3)
        self.assertEqual(s.committed("r", ["h1", "h2", "h3", "h4"]), {"h1", "h2", "h3"})
        self.assertEqual(s.committed("r2", ["h1"]), set())
        self.assertEqual(self.rows("SELECT url, n, price, tags, ok, request_hash, item_index "
                                   "FROM items ORDER BY url"),
                         [("u1", 1, None, None, None, "h1", 0),
                          ("u1b", 2, None, None, None, "h1", 1),
                          ("u3", None, 2.5, '["x"]', 1, "h3", 0)])
        self.assertEqual(self.rows("SELECT item_table, run, request_hash, result_id, items FROM "
                                   "spiderhub_pages ORDER BY request_hash"),
                         [("items", "r", "h1", 1, 2), ("items", "r", "h2", 2, 0),
                          ("items", "r", "h3", 3, 1)])
        # Another run of the job: its pages are recorded, the rows already there kept.
        s.commit("r2", pages(("h1", [{"url": "u1-new", "n": 9}])))
        self.assertEqual(self.rows("SELECT url FROM items WHERE request_hash = 'h1' "
                                   "ORDER BY item_index"), [("u1",), ("u1b",)])
        self.assertEqual(s.committed("r2", ["h1"]), {"h1"})
        s.close()

    def test_upsert_by_key(self):
        logged, log = quiet()
        s = sk.SQLiteSink(self.path, table="products", key="sku", log=log)
        s.commit("r", pages(("h1", [{"sku": "a", "price": 1.0}, {"sku": "b", "price": 2.0}]),
                            ("h2", [{"sku": "a", "price": 1.5}, {"price": 9.0}])))
        self.assertEqual(s.stats["items_without_key"], 1)
        s.commit("r", pages(("h3", [{"sku": "b", "price": 3.0, "stock": 4}])))
        self.assertEqual(self.rows("SELECT sku, price, stock, request_hash FROM products "
                                   "ORDER BY sku"),
                         [("a", 1.5, None, "h2"), ("b", 3.0, 4, "h3")])
        s.close()

    def test_types_and_new_columns(self):
        logged, log = quiet()
        s = sk.SQLiteSink(self.path, log=log)
        s.commit("r", pages(("h1", [{"n": None, "price": 1.5}])))
        s.commit("r", pages(("h2", [{"n": 3, "price": "cheap", "new": {"k": 1}}])))
        self.assertEqual(s.stats["type_errors"], 1)
        self.assertTrue(any("'price'" in m for m in logged))
        self.assertEqual(self.rows("SELECT n, price, new FROM items ORDER BY request_hash"),
                         [(None, 1.5, None), ("3", None, '{"k": 1}')])  # n: text (first None)
        s.close()
        again = sk.SQLiteSink(self.path)
        self.assertEqual(again.columns, {"n": "text", "price": "real", "new": "text"})
        again.close()

    def test_declared_schema(self):
        logged, log = quiet()
        s = sk.SQLiteSink(self.path, schema={"url": "text", "price": "real"}, log=log)
        self.assertEqual([r[1] for r in self.rows("PRAGMA table_info(items)")],
                         ["url", "price", "request_hash", "item_index"])
        s.commit("r", pages(("h1", [{"url": "u", "price": "12.5", "other": 1}])))
        self.assertEqual(self.rows("SELECT url, price FROM items"), [("u", 12.5)])
        self.assertEqual(s.stats["dropped_fields"], 1)
        s.close()

    def test_failed_commit_leaves_nothing(self):
        s = sk.SQLiteSink(self.path)
        s.commit("r", pages(("h1", [{"a": 1}])))
        real = s.db

        class Failing:
            def execute(self, sql, *a):
                return real.execute(sql, *a)

            def executemany(self, sql, rows):
                if "spiderhub_pages" in sql:
                    raise sqlite3.OperationalError("disk I/O error (simulated)")
                return real.executemany(sql, rows)
        s.db = Failing()
        with self.assertRaises(sqlite3.OperationalError):
            s.commit("r", pages(("h2", [{"a": 2, "b": "new column"}])))
        s.db = real
        self.assertEqual(self.rows("SELECT count(*) FROM items"), [(1,)])
        self.assertEqual(s.committed("r", ["h2"]), set())
        s.commit("r", pages(("h2", [{"a": 2, "b": "new column"}])))  # tried again: whole
        self.assertEqual(self.rows("SELECT a, b FROM items ORDER BY a"),
                         [(1, None), (2, "new column")])
        s.close()

    def test_two_sinks_one_file(self):
        a = sk.SQLiteSink(self.path, table="a")
        b = sk.SQLiteSink(self.path, table="b")
        a.commit("r", pages(("h1", [{"x": 1}])))
        self.assertEqual(b.committed("r", ["h1"]), set())
        b.commit("r", pages(("h1", [{"x": 1}])))
        self.assertEqual(self.rows("SELECT item_table FROM spiderhub_pages ORDER BY 1"),
                         [("a",), ("b",)])
        a.close()
        b.close()


# ---- kill -9 in the middle of commits --------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from spiderhub import sinks
    from spiderhub.sinks import Page
    dest, total = sys.argv[2], int(sys.argv[3])
    s = sinks.open_sink(dest)
    keys = [f"h{i}" for i in range(total)]
    done = s.committed("run", keys)
    todo = [k for k in keys if k not in done]
    for i in range(0, len(todo), 20):
        batch = [Page(k, int(k[1:]), [{"page": k, "n": j, "text": "x" * 200}
                                      for j in range(int(k[1:]) % 4)])
                 for k in todo[i:i + 20]]
        s.commit("run", batch)
        print("committed", flush=True)
    print("done", flush=True)
""")


class KilledMidCommit(unittest.TestCase):
    """A child commits 2,000 pages (0-3 items each) in batches of 20 and is killed -9 a few
    commits in, at a random moment of the next ones, then started again, until it finishes:
    each page's items exactly once."""
    PAGES = 2000

    def crash_loop(self, dest, read_items, kills=12):
        rng = random.Random(1234)
        killed = 0
        for _ in range(kills + 20):
            p = subprocess.Popen([sys.executable, "-c", CHILD, CLIENT, dest, str(self.PAGES)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if killed < kills:
                commits = rng.randint(1, 6)
                line = b""
                while commits and line != b"done\n":
                    line = p.stdout.readline()
                    commits -= line == b"committed\n"
                    if not line:
                        break
                if line == b"committed\n":
                    time.sleep(rng.uniform(0, 0.004))  # into the next commit, or just before
                    p.send_signal(signal.SIGKILL)
                    killed += 1
            out, err = p.communicate(timeout=60)
            if p.returncode == 0 and out.endswith(b"done\n"):
                break
            self.assertEqual(p.returncode, -signal.SIGKILL, err.decode()[-2000:])
        else:
            self.fail("the child never finished")
        self.assertGreaterEqual(killed, 3, "too few kills landed: the child is too fast")
        items = read_items()
        want = sorted((f"h{i}", j) for i in range(self.PAGES) for j in range(i % 4))
        self.assertEqual(sorted(items), want)
        return killed

    def test_jsonl(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "items.jsonl")
            self.crash_loop(path, lambda: [(x["page"], x["n"]) for x in jsonl(path)])

    def test_csv(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "items.csv")

            def read():
                rows = csv_rows(path)
                self.assertEqual(rows[0], ["page", "n", "text", "request_hash"])
                return [(r[0], int(r[1])) for r in rows[1:]]
            self.crash_loop(path, read)

    def test_sqlite(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "items.db")

            def read():
                db = sqlite3.connect(path)
                try:
                    pages_n = db.execute("SELECT count(*) FROM spiderhub_pages").fetchone()[0]
                    self.assertEqual(pages_n, self.PAGES)
                    return db.execute("SELECT page, n FROM items").fetchall()
                finally:
                    db.close()
            self.crash_loop("sqlite://" + path, read)


# ---- the worker's plumbing -----------------------------------------------------------------


class _RecordingSink(sk.Sink):
    """A sink recording the calls in a shared event list; fails its first `fail` commits."""

    def __init__(self, name, events, done=(), fail=0):
        super().__init__()
        self.name = name
        self.events = events
        self.done = set(done)
        self.fail = fail
        self.items = []

    def committed(self, run, hashes):
        return {h for h in hashes if h in self.done}

    def commit(self, run, pages_):
        if self.fail:
            self.fail -= 1
            self.events.append(("fail", self.name))
            raise OSError("database away")
        self.events.append(("commit", self.name, [p.request_hash for p in pages_]))
        self.done.update(p.request_hash for p in pages_)
        self.items += [i for p in pages_ for i in p.items]


class _Spider(sw.Spider):
    def __init__(self, events):
        self.events = events

    def parse(self, response):
        self.events.append(("parse", response.request_hash))
        yield sw.Request(response.url + "child")
        yield {"url": response.url}


def result(rid, h):
    return {"resultId": rid, "requestHash": h, "url": f"http://h/{rid}", "statusCode": 200,
            "content": "", "headers": {}}


class WorkerPlumbing(unittest.TestCase):
    def step(self, sinks, batch, events):
        w = sw.Worker("http://127.0.0.1:1/", "t", "c", _Spider(events), sinks=sinks,
                      log=lambda m: events.append(("log", m)))
        rs = sw._RunState({"identity": "r", "arguments": ""}, phase="polling")
        w.runs = {"r": rs}

        def call(target, *args):
            if target == "Poll":
                return batch
            events.append((target, args[1] if target in ("Ack", "Push") else None))
            return len(args[1]) if target == "Push" else True
        w._call = call
        with mock.patch.object(w.cv, "wait"):  # no real sleep between sink retries
            self.assertTrue(w._step(rs))
        return w

    def test_commit_before_ack(self):
        events = []
        a, b = _RecordingSink("a", events), _RecordingSink("b", events)
        w = self.step([a, b], [result(1, "h1"), result(2, "h2")], events)
        kinds = [e[0] for e in events]
        self.assertEqual(kinds, ["parse", "parse", "Push", "commit", "commit", "Ack"])
        self.assertEqual(events[-1], ("Ack", [1, 2]))
        self.assertEqual(a.items, [{"url": "http://h/1"}, {"url": "http://h/2"}])
        self.assertEqual(w.stats["items"], 2)

    def test_pages_every_sink_has_are_skipped(self):
        # h1 in both (killed after the commits), h2 only in a (killed between the two).
        events = []
        a = _RecordingSink("a", events, done={"h1", "h2"})
        b = _RecordingSink("b", events, done={"h1"})
        w = self.step([a, b], [result(1, "h1"), result(2, "h2"), result(3, "h3")], events)
        self.assertEqual([e for e in events if e[0] == "parse"], [("parse", "h2"), ("parse", "h3")])
        self.assertIn(("commit", "a", ["h3"]), events)
        self.assertIn(("commit", "b", ["h2", "h3"]), events)
        self.assertEqual(events[-1], ("Ack", [1, 2, 3]))  # every result acked, the skipped too
        self.assertEqual(w.stats["skipped"], 1)

    def test_failing_sink_is_retried_before_the_ack(self):
        events = []
        a = _RecordingSink("a", events, fail=2)
        self.step([a], [result(1, "h1")], events)
        kinds = [e[0] for e in events]
        self.assertEqual(kinds, ["parse", "Push", "fail", "log", "fail", "log", "commit", "Ack"])
        self.assertIn("results not acked, again in 1s", events[3][1])
        self.assertIn("again in 2s", events[5][1])

    def test_results_without_hash_and_no_sink(self):
        events = []
        a = _RecordingSink("a", events)
        self.step([a], [result(5, "")], events)
        self.assertIn(("commit", "a", ["result:5"]), events)
        events = []
        self.step([], [result(1, "h1")], events)
        self.assertEqual([e[0] for e in events], ["parse", "Push", "Ack"])

    def test_sink_and_sinks_arguments(self):
        a, b = _RecordingSink("a", []), _RecordingSink("b", [])
        w = sw.Worker("http://127.0.0.1:1/", "t", "c", sw.Spider(), sink=a)
        self.assertEqual(w.sinks, [a])
        w = sw.Worker("http://127.0.0.1:1/", "t", "c", sw.Spider(), sink=[a, b])
        self.assertEqual(w.sinks, [a, b])
        w = sw.Worker("http://127.0.0.1:1/", "t", "c", sw.Spider())
        self.assertEqual(w.sinks, [])


# ---- PostgreSQL ----------------------------------------------------------------------------

_PG = None


def tearDownModule():
    if _PG is not None:
        _PG.stop()
        __import__("shutil").rmtree(_PG.parent, ignore_errors=True)


def postgres():
    """One throwaway cluster for the PostgreSQL cases (started on first use)."""
    global _PG
    if _PG is None:
        import pg
        parent = tempfile.mkdtemp(prefix="spiderhub-sinks-")
        os.chmod(parent, 0o755)
        _PG = pg.Postgres(parent).start()
    return _PG


def _pg_ready() -> str:
    if not HAS_PSYCOPG2:
        return "psycopg2 missing (apt-get install python3-psycopg2)"
    try:
        import pg
        pg.find_bin("initdb")
    except Exception as e:  # noqa: BLE001
        return f"no PostgreSQL server binaries: {e}"
    return ""


@unittest.skipIf(_pg_ready(), _pg_ready())
class Postgres(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = postgres()

    def setUp(self):
        self.db = f"t{random.randrange(1 << 30)}"
        self.pg.create_database(self.db)
        self.url = f"postgresql://{self.pg.user}@127.0.0.1:{self.pg.port}/{self.db}"

    def sql(self, q):
        return self.pg.sql(q, db=self.db)

    def test_insert_ignore_by_request_hash(self):
        s = sk.open_sink(self.url)
        batch = pages(("h1", [{"url": "u1", "n": 1}, {"url": "u1b", "n": 2}]), ("h2", []),
                      ("h3", [{"url": "u3", "price": 2.5, "tags": ["x", "é"], "ok": True,
                               "nul": "a\x00b"}]))
        s.commit("r", batch)
        s.commit("r", batch)
        self.assertEqual(s.stats["skipped_pages"], 3)
        self.assertEqual(s.committed("r", ["h1", "h2", "h3", "h4"]), {"h1", "h2", "h3"})
        self.assertEqual(self.sql("SELECT url, n, price, tags, ok, nul, request_hash, item_index "
                                  "FROM items ORDER BY url"),
                         "u1|1|||||h1|0\nu1b|2|||||h1|1\nu3||2.5|[\"x\", \"é\"]|t|a\ufffdb|h3|0\n")
        self.assertEqual(self.sql("SELECT data_type FROM information_schema.columns WHERE "
                                  "table_name = 'items' ORDER BY ordinal_position"),
                         "text\nbigint\ndouble precision\njsonb\nboolean\ntext\ntext\ninteger\n")
        s.close()

    def test_upsert_by_key_and_declared_schema(self):
        s = sk.open_sink(self.url + "?table=products&key=sku&columns=sku,price:real,tags:json")
        s.commit("r", pages(("h1", [{"sku": "a", "price": "1"}, {"sku": "b", "price": 2}]),
                            ("h2", [{"sku": "a", "price": 1.5, "x": 1}, {"price": 9}])))
        s.commit("r", pages(("h3", [{"sku": "b", "price": "n/a", "tags": {"k": [1]}}])))
        self.assertEqual((s.stats["items_without_key"], s.stats["dropped_fields"],
                          s.stats["type_errors"]), (1, 1, 1))
        self.assertEqual(self.sql("SELECT sku, price, tags, request_hash FROM products "
                                  "ORDER BY sku"),
                         'a|1.5||h2\nb||{"k": [1]}|h3\n')
        s.close()

    def test_new_columns_and_reopen(self):
        s = sk.open_sink(self.url)
        s.commit("r", pages(("h1", [{"a": 1}])))
        s.commit("r", pages(("h2", [{"a": 2, "b": "x"}])))
        s.close()
        again = sk.open_sink(self.url)
        self.assertEqual(again.columns, {"a": "integer", "b": "text"})
        self.assertEqual(again.committed("r", ["h1", "h2"]), {"h1", "h2"})
        again.commit("r", pages(("h3", [{"a": "not a number", "b": "y"}])))
        self.assertEqual(self.sql("SELECT a, b FROM items ORDER BY request_hash"), "1|\n2|x\n|y\n")
        again.close()

    def test_lost_connection_is_opened_again(self):
        s = sk.open_sink(self.url)
        s.commit("r", pages(("h1", [{"a": 1}])))
        self.pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{self.db}' AND pid <> pg_backend_pid()")
        import psycopg2
        with self.assertRaises((psycopg2.OperationalError, psycopg2.InterfaceError)):
            s.commit("r", pages(("h2", [{"a": 2}])))
        s.commit("r", pages(("h2", [{"a": 2}])))  # as the worker's retry does
        self.assertEqual(self.sql("SELECT count(*) FROM items"), "2\n")
        s.close()

    def test_concurrent_commits_of_one_page(self):
        # Two workers committing the same pages at once (a result released to another
        # worker while the first was still committing it): stored once.
        a, b = sk.open_sink(self.url), sk.open_sink(self.url)
        a.commit("r", pages(("h0", [{"a": 0}])))
        b.commit("r", pages(("h00", [{"a": 0}])))
        batch = pages(*[(f"h{i}", [{"a": i}, {"a": -i}]) for i in range(1, 200)])
        errors = []

        def run(s):
            try:
                s.commit("r", batch)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(self.sql("SELECT count(*), count(DISTINCT (request_hash, item_index)) "
                                  "FROM items"), "400|400\n")
        self.assertEqual(a.stats["pages"] + b.stats["pages"], 201)
        a.close()
        b.close()

    def test_killed_mid_commit(self):
        k = KilledMidCommit("test_jsonl")
        k.PAGES = 1000

        def read():
            self.assertEqual(self.sql("SELECT count(*) FROM spiderhub_pages"), "1000\n")
            out = self.sql("SELECT page, n FROM items")
            return [(p, int(n)) for p, n in (line.split("|") for line in out.split())]
        k.crash_loop(self.url, read, kills=6)


if __name__ == "__main__":
    unittest.main()
