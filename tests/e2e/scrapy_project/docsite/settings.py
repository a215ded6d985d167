# Settings of the docsite project: what `scrapy startproject` writes, plus the headers and
# middlewares tests/e2e/test_scrapy_project.py checks on the wire.
BOT_NAME = "docsite"

SPIDER_MODULES = ["docsite.spiders"]
NEWSPIDER_MODULE = "docsite.spiders"

USER_AGENT = "docsite-bot/1.0 (+https://example.invalid/docsite)"

# startproject's default; on spiderhub the broker applies robots.txt (warned at start).
ROBOTSTXT_OBEY = True

CONCURRENT_REQUESTS = 32

DEFAULT_REQUEST_HEADERS = {
    "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "fr-CH, fr;q=0.9",
}

DOWNLOADER_MIDDLEWARES = {
    "docsite.middlewares.FixtureHeaderMiddleware": 543,
}

ITEM_PIPELINES = {
    "docsite.pipelines.DocPagePipeline": 300,
}

EXTENSIONS = {
    "docsite.middlewares.SignalsRecorder": 500,
}

# Where SignalsRecorder writes the signals it saw and a few stats (-s SIGNALS_FILE=...).
SIGNALS_FILE = None

HTTPERROR_ALLOW_ALL = True
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"

REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
