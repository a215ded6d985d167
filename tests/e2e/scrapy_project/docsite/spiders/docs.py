import re

from scrapy.http import HtmlResponse
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

from docsite.items import DocPage


class DocsSpider(CrawlSpider):
    """Every page under the start URL's directory, one item each (errors included)."""
    name = "docs"
    http_user = "docsite"
    http_pass = "s3cret"
    http_auth_domain = None  # every host (the test servers listen on random ports)

    def __init__(self, start_url=None, sections=None, *args, **kwargs):
        """-a start_url=URL; -a sections=a,b follows only the pages of those directories
        under the start URL's (and their sources under _sources/), plus its top pages."""
        if not start_url:
            raise ValueError("-a start_url=... is required")
        self.start_urls = [start_url]
        prefix = "^" + re.escape(start_url.rsplit("/", 1)[0] + "/")
        if sections:
            names = "|".join(re.escape(s) for s in sections.split(","))
            prefix += f"(?:[^/]*$|(?:_sources/)?(?:{names})/)"
        self.rules = (Rule(LinkExtractor(tags=("a",), attrs=("href",), allow=(prefix,)),
                           callback="parse_page", follow=True),)
        super().__init__(*args, **kwargs)

    def parse_start_url(self, response):
        return self.parse_page(response)

    def parse_page(self, response):
        html = isinstance(response, HtmlResponse)
        yield DocPage(
            url=response.url, status=response.status,
            content_type=response.headers.get("Content-Type", b"").decode("latin-1"),
            title=response.css("title::text").get() if html else None,
            links=len(response.css("a::attr(href)").getall()) if html else 0,
            redirect_urls=response.meta.get("redirect_urls", []),
            cookie=response.request.headers.get("Cookie", b"").decode("latin-1"))
