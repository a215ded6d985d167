# Spiders of the docsite project (scrapy crawl docs).
