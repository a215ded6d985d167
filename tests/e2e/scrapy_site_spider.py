# A plain Scrapy spider, as a Scrapy user writes it: follows every link with
# response.follow, passes data along in cb_kwargs and meta. tests/e2e/test_scrapy_bridge.py
# runs it unchanged on spiderhub.
import scrapy


class SiteSpider(scrapy.Spider):
    name = "site"
    custom_settings = {"ITEM_PIPELINES": {"scrapy_site_spider.UpperTitle": 300}}

    def __init__(self, start_url=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_urls = [start_url]

    def parse(self, response, hops=0):
        yield {"url": response.url, "title": response.css("title::text").get(),
               "hops": hops, "from": response.meta.get("from")}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse, cb_kwargs={"hops": hops + 1},
                                  meta={"from": response.url})


class UpperTitle:
    """An item pipeline of the user's: runs before the items are written."""

    def process_item(self, item, spider):
        item["title"] = (item.get("title") or "").upper()
        return item
