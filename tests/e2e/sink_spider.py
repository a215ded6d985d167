"""A spider for tests/e2e/test_item_sinks.py and bench/item_sinks.py: one item per page of
the generated site (bench/gen_site.py) read with an ItemSpec of CSS and XPath fields, and
every link of the page followed on its host.

Its run arguments are JSON: {"startUrl": ..., "maxDepth": 10}.

Fault injection for the test (environment of the worker process):
SINK_SPIDER_PAUSE="sqlite:N" (or "postgresql:N") makes the worker stop right after the
commit of that sink that brought this process's pages in it to N or more: it writes
"<sink> <pages>" to the file $SINK_SPIDER_FLAG and sleeps, so that the test kills it -9
there — between the two sinks' commits (sqlite first on the command line), or between the
last commit and the ack.
"""
import json
import os
import sys
import time
import urllib.parse

from spiderhub import sinks
from spiderhub.selectors import ItemSpec, css, xpath
from spiderhub.worker import Spider

PAGE = ItemSpec({
    "title": css("title::text"),
    "number": xpath("//h1/text()", re=r"\d+", type=int),
    "links": css("ul a::attr(href)", multiple=True),
    "paragraphs": xpath("count(//p)", type=float),
    "price": css("span.price::text", type=float, optional=True),  # never there: fill 0
})


class SinkSpider(Spider):
    item_schema = dict(PAGE.schema(), url="text", depth="integer")

    def __init__(self):
        self.args = {}

    def start_requests(self, run):
        args = json.loads(run.get("arguments") or "{}")
        self.args[run["identity"]] = args
        from spiderhub.worker import Request
        return [Request(args["startUrl"])]

    def parse(self, response):
        args = self.args.get(response.run["identity"]) or json.loads(
            response.run.get("arguments") or "{}")
        if response.status != 200:
            return
        item = PAGE.extract(response)
        if item is not None:
            item.update(url=response.url, depth=response.depth)
            yield item
        if response.depth >= int(args.get("maxDepth", 10)):
            return
        host = urllib.parse.urlsplit(response.url).netloc
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            if url and urllib.parse.urlsplit(url).netloc == host:
                yield response.follow(url)

    def run_finished(self, run):
        print("sink_spider: fields " + json.dumps(PAGE.snapshot()), file=sys.stderr, flush=True)


def _pause_after(kind, cls):
    """Wraps ``cls.commit``: after the commit that brings this process's pages to the
    threshold, report it in $SINK_SPIDER_FLAG and wait to be killed."""
    want, _, threshold = os.environ.get("SINK_SPIDER_PAUSE", "").partition(":")
    if want != kind:
        return
    threshold = int(threshold)
    commit = cls.commit

    def paused_commit(self, run, pages):
        commit(self, run, pages)
        if self.stats["pages"] >= threshold:
            with open(os.environ["SINK_SPIDER_FLAG"], "w") as f:
                f.write(f"{kind} {self.stats['pages']}\n")
            print(f"sink_spider: paused after the {kind} commit", file=sys.stderr, flush=True)
            time.sleep(120)
    cls.commit = paused_commit


_pause_after("sqlite", sinks.SQLiteSink)
_pause_after("postgresql", sinks.PostgresSink)
