"""Scrapy settings on the bridge: which ones it honours, translates, ignores (with a
warning at start) or refuses (exit status 2, before anything is pushed). The table in
docs/python.md ("Settings") is this module in prose.

``review(settings, spidercls)`` looks at the settings a crawl would run with (project,
spider ``custom_settings``, ``-s``) and returns the refusals and the warnings;
``apply(settings)`` puts the bridge's pieces in, above every other priority.
"""
from __future__ import annotations

from typing import Any

SCHEDULER = "spiderhub.scrapy_components.SpiderhubScheduler"
DOWNLOADER = "spiderhub.scrapy_components.SpiderhubDownloader"
SPIDER_MIDDLEWARE = "spiderhub.scrapy_components.BridgeSpiderMiddleware"
BRIDGE_PRIORITY = 100  # above Scrapy's "cmdline" (40): the bridge's pieces always apply

# Downloader middlewares switched off, and why: the node or the broker does their work.
OFF_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware":
        "the broker obeys robots.txt",
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": "the nodes retry",
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware":
        "the broker follows redirects",
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware":
        "the nodes decode compressed bodies",
    "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": "the nodes use no proxy",
}

# Settings the bridge does not apply, with what applies instead. A warning is logged at
# start for each one the crawl changes from Scrapy's default.
IGNORED = {
    "DOWNLOAD_DELAY": "the broker's politeness applies: job property DelayMs",
    "RANDOMIZE_DOWNLOAD_DELAY": "the broker's politeness applies: job property DelayMs",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "the broker's politeness applies: job property "
                                      "MaxConcurrencyPerHost",
    "CONCURRENT_REQUESTS_PER_IP": "the broker's politeness applies: job properties "
                                  "MaxConcurrencyPerHost and PolitenessKey ip",
    "AUTOTHROTTLE_ENABLED": "the broker adapts concurrency per host: job property "
                            "AdaptiveThrottle",
    "ROBOTSTXT_OBEY": "the broker obeys robots.txt unless the job says RobotsTxt: ignore, "
                      "matching the job's UserAgent (Site.userAgent), not USER_AGENT",
    "RETRY_ENABLED": "the nodes retry failed downloads (node download.retries, "
                     "Site.cycleRetryTimes)",
    "RETRY_TIMES": "the nodes retry failed downloads (node download.retries)",
    "RETRY_HTTP_CODES": "the nodes retry 5xx and network errors; 429/503 pause the host",
    "REDIRECT_ENABLED": "the broker follows redirects (dispatch.max_redirects)",
    "REDIRECT_MAX_TIMES": "the broker follows redirects (dispatch.max_redirects)",
    "DOWNLOAD_TIMEOUT": "the node's download.timeout applies (no per-request timeout on "
                        "the wire)",
    "DOWNLOAD_MAXSIZE": "job property MaxBodyBytes applies",
    "DOWNLOAD_WARNSIZE": "job property MaxBodyBytes applies",
    "DOWNLOAD_FAIL_ON_DATALOSS": "the node reports a cut body as an error",
    "COMPRESSION_ENABLED": "the nodes always decode compressed bodies",
    "HTTPPROXY_ENABLED": "the nodes use no proxy",
    "DNSCACHE_ENABLED": "the nodes resolve names",
    "DNS_RESOLVER": "the nodes resolve names",
    "DNS_TIMEOUT": "the nodes resolve names",
    "DOWNLOADER_CLIENT_TLS_METHOD": "the nodes make TLS connections (job property "
                                    "VerifyTls)",
    "DOWNLOADER_CLIENTCONTEXTFACTORY": "the nodes make TLS connections",
    "DOWNLOADER_HTTPCLIENTFACTORY": "the nodes download",
    "DEPTH_PRIORITY": "the broker's queues have no priorities",
    "SCHEDULER_DISK_QUEUE": "the broker queues the requests",
    "SCHEDULER_MEMORY_QUEUE": "the broker queues the requests",
    "SCHEDULER_PRIORITY_QUEUE": "the broker queues the requests",
    "JOBDIR": "the broker keeps the crawl's state; a bridge started again goes on with "
              "the run",
    "CLOSESPIDER_TIMEOUT": "closes this bridge process only; the run goes on",
    "CLOSESPIDER_ITEMCOUNT": "counted per bridge process, closes it only; the run goes on",
    "CLOSESPIDER_PAGECOUNT": "counted per bridge process, closes it only; the run goes on",
    "CLOSESPIDER_ERRORCOUNT": "counted per bridge process, closes it only; the run goes on",
}

# Spider attributes Scrapy's downloader reads, ignored likewise.
IGNORED_ATTRIBUTES = {
    "download_delay": "DOWNLOAD_DELAY",
    "max_concurrent_requests": "CONCURRENT_REQUESTS_PER_DOMAIN",
    "download_timeout": "DOWNLOAD_TIMEOUT",
    "download_maxsize": "DOWNLOAD_MAXSIZE",
}


def _default(name: str) -> Any:
    from scrapy.settings import default_settings
    return getattr(default_settings, name, None)


def _changed(settings, name: str) -> bool:
    """Whether the crawl sets ``name`` to something else than Scrapy's default."""
    prio = settings.getpriority(name)
    return prio is not None and prio > 0 and settings[name] != _default(name)


def _user_components(settings, name: str) -> dict:
    """The project's, spider's and -s entries of a component dict setting (without
    Scrapy's *_BASE)."""
    value = settings[name]
    return dict(value) if value else {}


def review(settings, spidercls=None) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for a crawl with ``settings`` (the spider's custom_settings
    merged in). A refusal names a setting whose meaning the bridge cannot keep."""
    from scrapy.dupefilters import BaseDupeFilter, RFPDupeFilter
    from scrapy.utils.misc import load_object
    refusals, warnings = [], []
    for name, ours in (("SCHEDULER", SCHEDULER), ("DOWNLOADER", DOWNLOADER)):
        value = settings[name]
        if value not in (ours, _default(name)):
            refusals.append(f"{name} = {value!r}: the bridge's {name.lower()} hands the "
                            "requests to the broker and takes the results back; another "
                            "cannot run here")
    df = settings["DUPEFILTER_CLASS"]
    try:
        df_cls = load_object(df) if isinstance(df, str) else df
    except Exception as e:  # noqa: BLE001 - a bad path is a refusal too
        refusals.append(f"DUPEFILTER_CLASS = {df!r} cannot be loaded: {e!r}")
    else:
        if not (isinstance(df_cls, type) and (issubclass(df_cls, RFPDupeFilter)
                                              or df_cls is BaseDupeFilter)):
            refusals.append(
                f"DUPEFILTER_CLASS = {df!r}: the broker deduplicates every bridge of the run "
                "by the request fingerprint of scrapy.dupefilters.RFPDupeFilter (or a "
                "subclass: its request_fingerprint), or not at all (BaseDupeFilter); another "
                "filter's rule cannot be applied across processes")
    handlers = _user_components(settings, "DOWNLOAD_HANDLERS")
    for scheme in ("http", "https"):
        if scheme in handlers:
            refusals.append(
                f"DOWNLOAD_HANDLERS[{scheme!r}] = {handlers[scheme]!r}: spiderhub's nodes "
                "download every http(s) page (pages that need a browser: a render job, "
                "docs/rendering.md)")
    for name, instead in IGNORED.items():
        if _changed(settings, name):
            warnings.append(f"{name} = {settings[name]!r} is not applied: {instead}")
    for path, why in OFF_MIDDLEWARES.items():
        user = _user_components(settings, "DOWNLOADER_MIDDLEWARES")
        if user.get(path) is not None:
            warnings.append(f"DOWNLOADER_MIDDLEWARES enables {path.rsplit('.', 1)[-1]}: "
                            f"switched off, {why}")
    for attr, setting in IGNORED_ATTRIBUTES.items():
        if spidercls is not None and getattr(spidercls, attr, None) is not None:
            warnings.append(f"the spider's {attr} is not applied: "
                            f"{IGNORED[setting].split(': ', 1)[-1]}")
    return refusals, warnings


def apply(settings) -> None:
    """The bridge's scheduler and downloader, its spider middleware, the downloader
    middlewares whose work the nodes and the broker do switched off, JOBDIR off (the
    duplicate filter must not remember across processes what the broker may not have)."""
    settings.set("SCHEDULER", SCHEDULER, priority=BRIDGE_PRIORITY)
    settings.set("DOWNLOADER", DOWNLOADER, priority=BRIDGE_PRIORITY)
    settings.set("JOBDIR", None, priority=BRIDGE_PRIORITY)
    settings.set("ROBOTSTXT_OBEY", False, priority=BRIDGE_PRIORITY)
    settings.set("AUTOTHROTTLE_ENABLED", False, priority=BRIDGE_PRIORITY)
    settings.set("COMPRESSION_ENABLED", False, priority=BRIDGE_PRIORITY)
    settings.set("HTTPPROXY_ENABLED", False, priority=BRIDGE_PRIORITY)
    settings.set("RETRY_ENABLED", False, priority=BRIDGE_PRIORITY)
    settings.set("REDIRECT_ENABLED", False, priority=BRIDGE_PRIORITY)
    dmw = settings["DOWNLOADER_MIDDLEWARES"]
    for path in OFF_MIDDLEWARES:
        dmw.set(path, None, priority=BRIDGE_PRIORITY)
    smw = settings["SPIDER_MIDDLEWARES"]
    # The outermost spider middleware: it sees the start requests and the items as the
    # engine gets them.
    smw.set(SPIDER_MIDDLEWARE, -1_000_000, priority=BRIDGE_PRIORITY)
