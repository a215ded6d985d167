# The reference crawl of tests/e2e/test_doc_corpus.py: plain Scrapy (Debian's 2.8), a
# CrawlSpider as a Scrapy user writes one, with nothing of spiderhub in it. It follows
# every <a href> of the HTML pages (CrawlSpider follows links of HtmlResponse only) that
# stays under `prefix` (default: the start URL's directory), skips Scrapy's default
# IGNORED_EXTENSIONS as every LinkExtractor does, dedups with Scrapy's default dupefilter,
# and yields one item per response, errors included (HTTPERROR_ALLOW_ALL), with the URL
# as Scrapy reports it: the final one after redirects.
#
#   /usr/bin/python3 -m scrapy runspider scrapy_corpus_spider.py \
#       -a start_url=http://127.0.0.1:PORT/index.html -O items.jsonl
import re

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class CorpusSpider(CrawlSpider):
    name = "corpus"
    custom_settings = {
        "ROBOTSTXT_OBEY": False,
        "DEPTH_LIMIT": 0,                   # no depth limit
        "HTTPERROR_ALLOW_ALL": True,        # a 404 is a crawled URL too
        "CONCURRENT_REQUESTS": 32,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "INFO",
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
    }

    def __init__(self, start_url=None, prefix=None, *args, **kwargs):
        if not start_url:
            raise ValueError("-a start_url=... is required")
        self.start_urls = [start_url]
        self.prefix = prefix or start_url.rsplit("/", 1)[0] + "/"
        # CrawlSpider compiles self.rules in its __init__: set them first.
        self.rules = (Rule(LinkExtractor(tags=("a",), attrs=("href",),
                                         allow=("^" + re.escape(self.prefix),)),
                           callback="parse_page", follow=True),)
        super().__init__(*args, **kwargs)

    def parse_start_url(self, response):
        return self.parse_page(response)

    def parse_page(self, response):
        yield {"url": response.url, "status": response.status,
               "contentType": response.headers.get("Content-Type", b"").decode("latin-1"),
               "redirectUrls": response.meta.get("redirect_urls", []),
               "depth": response.meta.get("depth", 0)}
