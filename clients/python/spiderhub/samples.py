"""Sample spiders. ``LinkSpider`` follows every link of the start URL's host (a ``www.``
in front does not count, so ``example.com`` redirecting to ``www.example.com`` is still
crawled), except links to binary files (:func:`spiderhub.worker.has_binary_extension`:
archives, images, audio, video, office documents, pdf, executables, fonts...), and the
target of a ``<meta http-equiv="refresh">`` whose delay is under
:data:`spiderhub.links.META_REFRESH_MAX_DELAY` seconds (100, as Scrapy's
METAREFRESH_MAXDELAY). Links resolve against ``<base href>`` or the page's final URL, their
queries in the page's encoding. It yields one item per page: url, title (decoded with the
page's encoding), depth, and finalUrl when the page was redirected; for a page that failed
(an error, or a status other than 200) url, depth, status, error and errorKind instead
(and finalUrl). Its run arguments are JSON: ``{"startUrl": ..., "maxDepth": 20}``.

With ``"sitemaps": true`` in the arguments it also requests the start host's
``/robots.txt`` (depth 0) and reads sitemaps (:mod:`spiderhub.sitemaps`): a response whose
URL path is ``/robots.txt`` gives a request (depth 0) per ``Sitemap:`` line; a response
whose body is a sitemap index gives a request (depth 0) per ``<sitemap><loc>``, a sitemap
(``<urlset>``, gzip or not) a request (depth 1) per ``<url><loc>``, only for http(s) URLs
of the start host; neither yields an item (a malformed one is logged and skipped).
Everything else is a page, as above: so pages that only a sitemap lists are found."""
from __future__ import annotations

import dataclasses
import html.parser
import json
import logging
import re
import urllib.parse
from typing import Any, Iterable

from .links import meta_refresh_url, resolve_link
from .sitemaps import MAX_LOCS, SitemapError, parse_sitemap, robots_sitemaps
from .worker import Request, Response, Spider, has_binary_extension

log = logging.getLogger(__name__)


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False
        self._title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        elif tag == "title" and not self._title_done:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True  # the first <title> is the page's

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _site(netloc: str) -> str:
    """A host (with its port) as LinkSpider compares them: lower case, without "www."."""
    netloc = netloc.lower()
    return netloc[4:] if netloc.startswith("www.") else netloc


class LinkSpider(Spider):
    def __init__(self) -> None:
        self.args: dict[str, dict[str, Any]] = {}

    def start_requests(self, run: dict[str, Any]) -> Iterable[Request]:
        args = json.loads(run.get("arguments") or "{}")
        self.args[run["identity"]] = args
        start = args["startUrl"]
        robots = resolve_link(start, "/robots.txt") if args.get("sitemaps") is True else None
        return [Request(start)] + ([Request(robots)] if robots else [])

    def parse(self, response: Response) -> Iterable[Request | dict]:
        args = self.args.get(response.run["identity"]) or json.loads(
            response.run.get("arguments") or "{}")
        if args.get("sitemaps") is True:
            found = _sitemap_requests(response, args)
            if found is not None:  # robots.txt or a sitemap: requests, never an item
                yield from found
                return
        moved = {"finalUrl": response.final_url} if response.final_url != response.url else {}
        if _failed(response):
            # errorKind: one of spiderhub.worker.ERROR_KINDS ("" from older brokers).
            yield {"url": response.url, "depth": response.depth, "status": response.status,
                   "error": response.error, "errorKind": response.error_kind, **moved}
            return
        p = _Links()
        p.feed(response.text)
        p.close()
        title = re.sub(r"[ \t\n\f\r]+", " ", p.title).strip(" ")
        yield {"url": response.url, "title": title, "depth": response.depth, **moved}
        if response.depth >= int(args.get("maxDepth", 20)):
            return
        site = _start_site(args, response)
        seen = {response.url, response.final_url}  # this page, under either name
        refresh = meta_refresh_url(response)
        for url in ([refresh] if refresh else []) + [response.urljoin(h) for h in p.links]:
            if url is None or url in seen:
                continue
            seen.add(url)
            if _site(urllib.parse.urlsplit(url).netloc) == site and not has_binary_extension(url):
                yield response.follow(url)


def _failed(response: Response) -> bool:
    return response.status != 200 or bool(response.error or response.error_kind)


def _start_site(args: dict[str, Any], response: Response) -> str:
    """The site (:func:`_site`) of the run's start URL: links elsewhere are not followed."""
    start = str(args.get("startUrl") or response.url)
    return _site(urllib.parse.urlsplit(resolve_link(start, "") or start).netloc)


def _sitemap_requests(response: Response, args: dict[str, Any]) -> list[Request] | None:
    """The requests a robots.txt or sitemap response leads to; None when it is a page."""
    if urllib.parse.urlsplit(response.url).path == "/robots.txt":
        if _failed(response):
            return []  # no robots.txt: no sitemaps named there
        text = response.body.decode("utf-8", errors="replace")  # RFC 9309: UTF-8
        return [_request(response, url, 0) for url in robots_sitemaps(text, response.final_url)]
    if _failed(response):
        return None
    try:
        found = parse_sitemap(response.body)
    except SitemapError as e:
        log.warning("sitemap %s skipped: %s", response.url, e)
        return []
    if found is None:
        return None
    kind, locs = found
    if len(locs) >= MAX_LOCS:
        log.warning("sitemap %s: its first %d locs kept, the rest not read", response.url,
                    MAX_LOCS)
    # An index lists sitemaps, read at depth 0 like robots.txt; the pages of a sitemap
    # are one level below the start page, as its links are (never past maxDepth).
    depth = 0 if kind == "sitemapindex" else 1
    if depth > int(args.get("maxDepth", 20)):
        return []
    site = _start_site(args, response)
    return [_request(response, url, depth) for url in locs
            if _site(urllib.parse.urlsplit(url).netloc) == site]


def _request(response: Response, url: str, depth: int) -> Request:
    """A request for the absolute ``url`` at ``depth``, built by ``response.follow`` so it
    is of the Request class the running worker checks: under ``python -m spiderhub.worker``
    that module is loaded twice (``__main__`` and ``spiderhub.worker``), and the worker
    drops a ``spiderhub.worker.Request`` it did not create."""
    return dataclasses.replace(response.follow(url), depth=depth)
