"""spiderhub worker SDK for Python: spider logic served to a spiderhub broker.

See :mod:`spiderhub.worker` (Spider, Worker, JsonLinesSink, ERROR_KINDS,
has_binary_extension), :mod:`spiderhub.links` (resolve_link, meta_refresh_url),
:mod:`spiderhub.sitemaps` (robots_sitemaps, parse_sitemap, SitemapError),
:mod:`spiderhub.encoding` (WHATWG encodings) and :mod:`spiderhub.hub` (the SignalR JSON hub
client). Standard library only.
"""
from typing import Any

__all__ = ["BINARY_EXTENSIONS", "ConnectionLost", "ERROR_KINDS", "HubConnection", "HubError",
           "JsonLinesSink", "META_REFRESH_MAX_DELAY", "Redirect", "Request", "Response",
           "SitemapError", "Spider", "Worker", "has_binary_extension", "meta_refresh_url",
           "parse_sitemap", "resolve_link", "robots_sitemaps"]
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
    if name in __all__:
        from . import worker
        return getattr(worker, name)
    raise AttributeError(name)
