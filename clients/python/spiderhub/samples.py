"""Sample spiders. ``LinkSpider`` follows every link of the start URL's host, except links
to binary files (:func:`spiderhub.worker.has_binary_extension`: archives, images, audio,
video, office documents, pdf, executables, fonts...), and yields one item per page: url,
title, depth; for a page that failed (an error, or a status other than 200) url, depth,
status, error and errorKind instead. Its run arguments are JSON: ``{"startUrl": ...,
"maxDepth": 20}``."""
from __future__ import annotations

import html.parser
import json
import urllib.parse
from typing import Any, Iterable

from .worker import Request, Response, Spider, has_binary_extension


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


class LinkSpider(Spider):
    def __init__(self) -> None:
        self.args: dict[str, dict[str, Any]] = {}

    def start_requests(self, run: dict[str, Any]) -> Iterable[Request]:
        args = json.loads(run.get("arguments") or "{}")
        self.args[run["identity"]] = args
        return [Request(args["startUrl"])]

    def parse(self, response: Response) -> Iterable[Request | dict]:
        if response.status != 200 or response.error or response.error_kind:
            # errorKind: one of spiderhub.worker.ERROR_KINDS ("" from older brokers).
            yield {"url": response.url, "depth": response.depth, "status": response.status,
                   "error": response.error, "errorKind": response.error_kind}
            return
        args = self.args.get(response.run["identity"]) or json.loads(
            response.run.get("arguments") or "{}")
        p = _Links()
        p.feed(response.text)
        yield {"url": response.url, "title": p.title.strip(), "depth": response.depth}
        if response.depth >= int(args.get("maxDepth", 20)):
            return
        host = urllib.parse.urlsplit(response.url).netloc
        for href in p.links:
            child = response.follow(href)
            u = urllib.parse.urlsplit(child.url)
            if u.scheme in ("http", "https") and u.netloc == host \
                    and not has_binary_extension(child.url):
                child.url = urllib.parse.urlunsplit(u._replace(fragment=""))
                yield child
