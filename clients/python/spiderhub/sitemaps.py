"""Sitemaps (https://www.sitemaps.org/protocol.html): the ``Sitemap:`` lines of a
robots.txt, and the ``<loc>`` entries of a sitemap (``<urlset>``) or a sitemap index
(``<sitemapindex>``), gzip-compressed or not. Pure functions, standard library only.

A sitemap comes from the site being crawled, so reading one is bounded: at most
:data:`MAX_SITEMAP_BYTES` (50 MiB) once decompressed, so a gzip bomb stops there; at most
:data:`MAX_LOCS` (50,000) locs per file (both are the protocol's own limits);
no DOCTYPE, so no entity is ever declared or expanded (below). What is not a sitemap is
``None``; what claims to be one but cannot be read raises :class:`SitemapError`.
"""
from __future__ import annotations

import zlib
from xml.parsers import expat

from .links import resolve_link

MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_LOCS = 50_000
GZIP_MAGIC = b"\x1f\x8b"

# The root's local name -> the local name of its entries, whose <loc> is read.
_ENTRIES = {"urlset": "url", "sitemapindex": "sitemap"}


class SitemapError(ValueError):
    """A sitemap (or a gzip body) that cannot be read: malformed XML after a sitemap root,
    a DOCTYPE, bad or truncated gzip data, more than MAX_SITEMAP_BYTES decompressed."""


def robots_sitemaps(text: str, base_url: str) -> list[str]:
    """The URLs of the ``Sitemap:`` lines of a robots.txt, in order, each once.

    The field name is matched in any case and may have spaces around it; the value is
    trimmed, and ``#`` starts a comment anywhere on a line (RFC 9309). Values resolve
    against ``base_url`` (the robots.txt URL) like links
    (:func:`spiderhub.links.resolve_link`); those that are not http(s) are dropped."""
    urls: list[str] = []
    for line in text.lstrip("\ufeff").splitlines():
        field, colon, value = line.split("#", 1)[0].partition(":")
        value = value.strip()
        if not colon or not value or field.strip().lower() != "sitemap":
            continue
        url = resolve_link(base_url, value)
        if url:
            urls.append(url)
    return list(dict.fromkeys(urls))


def gunzip(data: bytes, limit: int = MAX_SITEMAP_BYTES) -> bytes:
    """``data`` decompressed (every gzip member, as gzip(1) reads concatenated files);
    SitemapError when it is not gzip, is cut short, or makes more than ``limit`` bytes
    (decompression stops there: a gzip bomb costs ``limit`` bytes, not its full size)."""
    parts: list[bytes] = []
    size = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16: gzip header and trailer
        try:
            parts.append(d.decompress(data, limit + 1 - size))
        except zlib.error as e:
            raise SitemapError(f"bad gzip data: {e}") from None
        size += len(parts[-1])
        if size > limit:
            raise SitemapError(f"over {limit} bytes once decompressed (a gzip bomb?)")
        if not d.eof:
            raise SitemapError("gzip data cut short")
        data = d.unused_data.lstrip(b"\0")  # zero padding after a member is allowed
    return b"".join(parts)


class _NotSitemap(Exception):
    """The root (or the DOCTYPE) names something else: stop reading at once."""


class _Enough(Exception):
    """MAX_LOCS locs found: stop reading, keep them."""


class _Reader:
    """Expat handlers collecting the <loc> of each entry directly under the root."""

    def __init__(self) -> None:
        self.kind = ""
        self.locs: list[str] = []
        self.path: list[str] = []       # local names of the open elements
        self.text: list[str] | None = None  # the text of the <loc> being read
        self.parser = expat.ParserCreate()
        self.parser.StartDoctypeDeclHandler = self.doctype
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.data

    def doctype(self, name: str, *_: object) -> None:
        # Refused before its internal subset is read: entities declared there could expand
        # to gigabytes (billion laughs) or name external files, and sitemaps need none.
        if _local(name) in _ENTRIES:
            raise SitemapError("a DOCTYPE in a sitemap is refused")
        raise _NotSitemap  # e.g. <!DOCTYPE html>: a page

    def start(self, name: str, _attrs: dict) -> None:
        local = _local(name)
        if not self.path:
            if local not in _ENTRIES:
                raise _NotSitemap
            self.kind = local
        elif len(self.path) == 2 and local == "loc" and self.path[1] == _ENTRIES[self.kind]:
            self.text = []
        self.path.append(local)

    def end(self, _name: str) -> None:
        closes_loc = self.text is not None and len(self.path) == 3  # not an element inside
        self.path.pop()
        if not closes_loc:
            return
        url = resolve_link("".join(self.text).strip(), "")  # None: relative, or not http(s)
        self.text = None
        if url:
            self.locs.append(url)
        if len(self.locs) >= MAX_LOCS:
            raise _Enough

    def data(self, text: str) -> None:
        if self.text is not None:
            self.text.append(text)


def _local(name: str) -> str:
    """An element name without its namespace prefix: namespaces are ignored."""
    return name.rpartition(":")[2]


def parse_sitemap(body: bytes) -> tuple[str, list[str]] | None:
    """``(kind, locs)`` of a sitemap: kind ``"urlset"`` (locs of pages) or
    ``"sitemapindex"`` (locs of further sitemaps); None when ``body`` is not a sitemap
    (not XML, or another root element: an HTML page).

    A body starting with the gzip magic (1f 8b) is decompressed first (:func:`gunzip`).
    The root's local name decides, whatever its namespace; locs are the ``<loc>`` of the
    root's ``<url>`` (``<sitemap>``) children, trimmed, kept when they are absolute
    http(s) URLs (normalised like links): the first MAX_LOCS of them at most, the rest of
    the file is not read.
    Raises SitemapError when the body has a sitemap root but is not well-formed XML, has a
    DOCTYPE, or its gzip data is bad or decompresses to more than MAX_SITEMAP_BYTES."""
    if body.startswith(GZIP_MAGIC):
        body = gunzip(body)
    reader = _Reader()
    try:
        reader.parser.Parse(body.lstrip(b" \t\r\n"), True)  # expat refuses leading blanks
    except (_NotSitemap, _Enough):
        pass
    except expat.ExpatError as e:
        if not reader.kind:
            return None  # not XML at all
        raise SitemapError(f"malformed {reader.kind}: {e}") from None
    return (reader.kind, reader.locs) if reader.kind else None
