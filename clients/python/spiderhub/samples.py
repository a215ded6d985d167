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
(and finalUrl). Its run arguments are JSON: ``{"startUrl": ..., "maxDepth": 20}``."""
from __future__ import annotations

import html.parser
import json
import re
import urllib.parse
from typing import Any, Iterable

from .links import meta_refresh_url, resolve_link
from .worker import Request, Response, Spider, has_binary_extension


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
        return [Request(args["startUrl"])]

    def parse(self, response: Response) -> Iterable[Request | dict]:
        moved = {"finalUrl": response.final_url} if response.final_url != response.url else {}
        if response.status != 200 or response.error or response.error_kind:
            # errorKind: one of spiderhub.worker.ERROR_KINDS ("" from older brokers).
            yield {"url": response.url, "depth": response.depth, "status": response.status,
                   "error": response.error, "errorKind": response.error_kind, **moved}
            return
        args = self.args.get(response.run["identity"]) or json.loads(
            response.run.get("arguments") or "{}")
        p = _Links()
        p.feed(response.text)
        p.close()
        title = re.sub(r"[ \t\n\f\r]+", " ", p.title).strip(" ")
        yield {"url": response.url, "title": title, "depth": response.depth, **moved}
        if response.depth >= int(args.get("maxDepth", 20)):
            return
        start = str(args.get("startUrl") or response.url)
        site = _site(urllib.parse.urlsplit(resolve_link(start, "") or start).netloc)
        seen = {response.url, response.final_url}  # this page, under either name
        refresh = meta_refresh_url(response)
        for url in ([refresh] if refresh else []) + [response.urljoin(h) for h in p.links]:
            if url is None or url in seen:
                continue
            seen.add(url)
            if _site(urllib.parse.urlsplit(url).netloc) == site and not has_binary_extension(url):
                yield response.follow(url)
