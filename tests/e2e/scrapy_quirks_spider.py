# A plain Scrapy spider, as a Scrapy user writes it, for tests/e2e/test_real_web.py: follows
# every <a href> within the site's hosts (allowed_domains) and yields the URL and <title>
# of every page. The test runs it with Debian's Scrapy 2.8 as the reference crawl
# (`scrapy runspider ... -s DEPTH_LIMIT=N`), and unchanged through spiderhub's Scrapy
# bridge. robots.txt is obeyed, as `scrapy startproject` sets it.
import scrapy
from scrapy.http import TextResponse


class QuirksSpider(scrapy.Spider):
    name = "quirks"
    custom_settings = {"ROBOTSTXT_OBEY": True}

    def __init__(self, start_url=None, hosts="127.0.0.1", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_url = start_url
        self.allowed_domains = [h for h in hosts.split(",") if h]

    def start_requests(self):
        # Not start_urls: Scrapy sends those with dont_filter=True, so they never enter the
        # duplicate filter and the start page is downloaded (and reported) again by the
        # first page that links back to it.
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response):
        if not isinstance(response, TextResponse):  # not a page: nothing to report
            return
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)
