# A plain Scrapy spider, as a Scrapy user writes it, for tests/e2e/test_real_web.py: follows
# every <a href> within the site's hosts (allowed_domains) and yields the URL and <title>
# of every page. The test runs it with Debian's Scrapy 2.8 as the reference crawl
# (`scrapy runspider ... -s DEPTH_LIMIT=N`), and unchanged through spiderhub's Scrapy
# bridge. robots.txt is obeyed, as `scrapy startproject` sets it.
#
# `-a sitemaps=1` also reads the sitemaps the start host's robots.txt names, with Scrapy's
# own SitemapSpider machinery (sitemap_urls = [robots.txt], sitemap_follow and
# sitemap_rules left at their defaults: every sitemap of an index, every page to parse).
import urllib.parse

import scrapy
from scrapy.http import TextResponse
from scrapy.spiders import SitemapSpider


class QuirksSpider(SitemapSpider):
    name = "quirks"
    custom_settings = {"ROBOTSTXT_OBEY": True}

    def __init__(self, start_url=None, hosts="127.0.0.1", sitemaps="0", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_url = start_url
        self.allowed_domains = [h for h in hosts.split(",") if h]
        if sitemaps not in ("0", "", "false"):
            self.sitemap_urls = [urllib.parse.urljoin(start_url, "/robots.txt")]

    def start_requests(self):
        # Not start_urls: Scrapy sends those with dont_filter=True, so they never enter the
        # duplicate filter and the start page is downloaded (and reported) again by the
        # first page that links back to it. The start page goes first, so a sitemap that
        # lists it again is filtered as a duplicate.
        yield scrapy.Request(self.start_url, callback=self.parse)
        yield from super().start_requests()  # robots.txt, with -a sitemaps=1

    def parse(self, response):
        if not isinstance(response, TextResponse):  # not a page: nothing to report
            return
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)

