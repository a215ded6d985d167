import scrapy


class DocPage(scrapy.Item):
    url = scrapy.Field()
    status = scrapy.Field()
    content_type = scrapy.Field()
    title = scrapy.Field()
    links = scrapy.Field()          # <a href> on the page
    redirect_urls = scrapy.Field()
    cookie = scrapy.Field()         # the Cookie header the request was sent with
