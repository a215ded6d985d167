"""spiderhub worker SDK for Python: spider logic served to a spiderhub broker.

See :mod:`spiderhub.worker` (Spider, Worker, ERROR_KINDS, has_binary_extension),
:mod:`spiderhub.sinks` (JsonLinesSink, CsvSink, SQLiteSink, PostgresSink, open_sink: items
exactly once), :mod:`spiderhub.selectors` (ItemSpec, css, xpath; Response.css/xpath),
:mod:`spiderhub.links` (resolve_link, meta_refresh_url), :mod:`spiderhub.sitemaps`
(robots_sitemaps, parse_sitemap, SitemapError), :mod:`spiderhub.encoding` (WHATWG
encodings) and :mod:`spiderhub.hub` (the SignalR JSON hub client). Standard library only,
but for selectors (parsel) and the PostgreSQL sink (psycopg2), imported when used.
"""
from typing import Any

__all__ = ["BINARY_EXTENSIONS", "ConnectionLost", "CsvSink", "ERROR_KINDS", "HubConnection",
           "HubError", "ItemSpec", "JsonLinesSink", "META_REFRESH_MAX_DELAY", "PostgresSink",
           "Redirect", "Request", "Response", "SQLiteSink", "Sink", "SinkError",
           "SitemapError", "Spider", "Worker", "css", "has_binary_extension",
           "meta_refresh_url", "open_sink", "parse_sitemap", "resolve_link",
           "robots_sitemaps", "xpath"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m spiderhub.worker` runs the module only once.
    if name in ("ConnectionLost", "HubConnection", "HubError"):
        from . import hub
        return getattr(hub, name)
    if name in ("META_REFRESH_MAX_DELAY", "meta_refresh_url", "resolve_link"):
        from . import links
        return getattr(links, name)
    if name in ("SitemapError", "parse_sitemap", "robots_sitemaps"):
        from . import sitemaps
        return getattr(sitemaps, name)
    if name in ("CsvSink", "JsonLinesSink", "PostgresSink", "SQLiteSink", "Sink", "SinkError",
                "open_sink"):
        from . import sinks
        return getattr(sinks, name)
    if name in ("ItemSpec", "css", "xpath"):
        from . import selectors
        return getattr(selectors, name)
    if name in __all__:
        from . import worker
        return getattr(worker, name)
    raise AttributeError(name)
