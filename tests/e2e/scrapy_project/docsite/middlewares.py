import json

from scrapy import signals


class FixtureHeaderMiddleware:
    """A project's downloader middleware: a header of its own on every request."""

    def process_request(self, request, spider):
        request.headers["X-Docsite"] = f"mw/{spider.name}"


class SignalsRecorder:
    """An extension counting the signals a crawl sends; at spider_closed it writes them,
    the close reason and a few stats to SIGNALS_FILE (JSON)."""

    NAMES = ("spider_opened", "spider_closed", "item_scraped", "request_scheduled",
             "request_reached_downloader", "response_received", "response_downloaded")

    def __init__(self, crawler):
        self.crawler = crawler
        self.path = crawler.settings.get("SIGNALS_FILE")
        self.counts = dict.fromkeys(self.NAMES, 0)
        self.reason = None

    @classmethod
    def from_crawler(cls, crawler):
        ext = cls(crawler)
        for name in cls.NAMES:
            crawler.signals.connect(ext.counter(name), signal=getattr(signals, name), weak=False)
        crawler.signals.connect(ext.closed, signal=signals.spider_closed)
        return ext

    def counter(self, name):
        def count(**kwargs):
            self.counts[name] += 1
        return count

    def closed(self, spider, reason):
        if not self.path:
            return
        stats = self.crawler.stats.get_stats()
        keep = ("item_scraped_count", "response_received_count", "dupefilter/filtered",
                "downloader/request_count", "downloader/response_count")
        with open(self.path, "w") as f:
            json.dump({"signals": self.counts, "reason": reason,
                       "stats": {k: stats.get(k) for k in keep}}, f)
