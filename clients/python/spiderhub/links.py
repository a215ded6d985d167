"""Links the way browsers resolve them, standard library only (docs/python.md, Links).

* :func:`resolve_link`: an ``href`` resolved against a base URL, as the WHATWG URL parser
  does for http(s): the path percent-encoded as UTF-8, the query in the document's encoding
  (characters it cannot represent as ``&#NNNN;``, percent-encoded), the fragment dropped;
  ``None`` for other schemes (``mailto:``, ``javascript:``...).
* :func:`find_base_href` and :func:`find_meta_refresh`: the first ``<base href>`` and
  ``<meta http-equiv="refresh" content>`` of a page (a light tokenizer: quotes respected,
  comments and the text of script, style, textarea, title... skipped).
* :func:`parse_meta_refresh`: HTML's parsing of a refresh ``content`` ("5; url=/next").
* :func:`meta_refresh_url`: where a response's meta refresh leads, if its delay is under
  :data:`META_REFRESH_MAX_DELAY` seconds (100, Scrapy's METAREFRESH_MAXDELAY).
"""
from __future__ import annotations

import html
import ipaddress
import re
import urllib.parse
from typing import TYPE_CHECKING, List, Optional, Tuple

from .encoding import iter_encode

if TYPE_CHECKING:  # pragma: no cover
    from .worker import Response

# A meta refresh is followed when its delay is under this many seconds: the default of
# Scrapy's MetaRefreshMiddleware (METAREFRESH_MAXDELAY, which follows `interval < 100`),
# so the sample spider and a Scrapy spider on the bridge follow the same refreshes. Longer
# delays are pages that reload themselves or log out after a while, not pages that moved.
META_REFRESH_MAX_DELAY = 100.0

_DEFAULT_PORTS = {"http": 80, "https": 443}
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
# Percent-encode sets (WHATWG URL) as bytes: C0 controls, DEL and non-ASCII always.
_QUERY_SET = frozenset(b' "#<>\'')            # the special-query percent-encode set
_PATH_SET = frozenset(b' "#<>?`{}')            # the path percent-encode set
_FORBIDDEN_HOST = frozenset(" \"#%/<>?@[\\]^`{|}\x7f") | frozenset(chr(c) for c in range(0x20))
_SURROGATES = re.compile("[\ud800-\udfff]")
_DOT = {"%2e": "."}
_DOTDOT = {".%2e": "..", "%2e.": "..", "%2e%2e": ".."}


# Text that needs no percent-encoding in a path or query (the common case, checked first).
_PATH_CLEAN = re.compile(r"""[!$-;=@-_a-z|~]*\Z""")   # printable ASCII but " # < > ? ` { }
_QUERY_CLEAN = re.compile(r"""[!$-&(-;=?-~]*\Z""")   # printable ASCII but " # ' < >


def _percent_encode(data: bytes, encode_set: frozenset) -> str:
    return "".join(chr(b) if 0x20 < b < 0x7F and b not in encode_set else "%%%02X" % b
                   for b in data)


def _encode_query(query: str, encoding: str) -> str:
    """WHATWG "percent-encode after encoding" with the special-query set."""
    if _QUERY_CLEAN.match(query):  # ASCII is ASCII in every output encoding
        return query
    out = []
    for piece in iter_encode(query, encoding):
        if isinstance(piece, int):  # the encoding cannot represent it: "&#NNNN;", escaped
            out.append("%%26%%23%d%%3B" % piece)
        else:
            out.append(_percent_encode(piece, _QUERY_SET))
    return "".join(out)


def _clean_href(href: str) -> str:
    """What the URL parser does to its input first: C0 controls and spaces trimmed, tabs and
    newlines removed; and, http(s) being special schemes, ``\\`` read as ``/`` before the
    query, ``%2e`` as ``.`` in dot segments."""
    href = href.strip(_C0_OR_SPACE)
    if "\\" not in href and "%" not in href and "\t" not in href and "\n" not in href \
            and "\r" not in href:
        return href
    href = href.replace("\t", "").replace("\n", "").replace("\r", "")
    cut = min((i for i in (href.find("?"), href.find("#")) if i >= 0), default=len(href))
    head, tail = href[:cut], href[cut:]
    if "\\" in head:
        head = head.replace("\\", "/")
    if "%" in head:
        segments = head.split("/")
        for i, seg in enumerate(segments):
            low = seg.lower()
            segments[i] = _DOT.get(low) or _DOTDOT.get(low) or seg
        head = "/".join(segments)
    return head + tail


def resolve_link(base: str, href: str, encoding: str = "UTF-8") -> Optional[str]:
    """``href`` resolved against ``base`` (an absolute http(s) URL: the page's final URL,
    or its ``<base href>``), as a browser would request it; None when the result is not an
    http(s) URL with a host (``mailto:``, ``javascript:``, ``tel:``, ``data:``, a bad port...).

    ``encoding`` is the document's encoding (a WHATWG name or label; the node's
    ``encoding`` field): the query is encoded in it, characters it cannot represent as
    ``&#NNNN;``, then percent-encoded (``?q=中文`` in a GBK page -> ``?q=%D6%D0%CE%C4``);
    the path is always UTF-8 (``/gbk/搜索`` -> ``/gbk/%E6%90%9C%E7%B4%A2``). Existing
    escapes are kept. The fragment is dropped, dot segments removed (``../``), scheme-relative
    links (``//host/x``) take the base's scheme, scheme and host are lower-cased, non-ASCII
    hosts IDNA-encoded, default ports dropped. The broker canonicalises further for its
    dedup key (docs/urls.md)."""
    if href is None:
        return None
    joined = urllib.parse.urljoin(base, _clean_href(str(href)))
    try:
        u = urllib.parse.urlsplit(joined)
        port = u.port
    except ValueError:
        return None
    scheme = u.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not u.netloc:
        return None
    userinfo, at, _ = u.netloc.rpartition("@")
    host = u.hostname or ""
    if "%" in host:
        host = urllib.parse.unquote(host).lower()
    if ":" in host:  # an IPv6 address (urlsplit took it out of its brackets)
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    else:
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        if not host or any(c in _FORBIDDEN_HOST for c in host):
            return None
    netloc = (userinfo + at if at else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = u.path or "/"
    if not _PATH_CLEAN.match(path):
        path = _percent_encode(_SURROGATES.sub("\ufffd", path).encode("utf-8"), _PATH_SET)
    url = f"{scheme}://{netloc}{path}"
    if u.query:
        url += "?" + _encode_query(_SURROGATES.sub("\ufffd", u.query), encoding)
    return url


# ---- a light HTML tokenizer for <base> and <meta> ---------------------------------------
# Start tags with their attributes, as HTML's tokenizer reads them (quotes respected, an
# unclosed quote or tag ends the document), comments and the text of raw-text elements
# skipped. Linear in the page: every step moves past what it read.

_WS = "\t\n\f\r "
_MARKUP = re.compile(r"<(?:!--|[!?/]|[A-Za-z])")
_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\f\r />]*")
_ATTR = re.compile(
    r"""[\t\n\f\r /]*(?:([^\t\n\f\r />][^\t\n\f\r />=]*)[\t\n\f\r ]*"""
    r"""(?:=[\t\n\f\r ]*(?:"([^"]*)("?)|'([^']*)('?)|([^\t\n\f\r >]*)))?)?""")
# Elements whose content is text. <noscript> is not among them: its content is markup for
# a client that runs no scripts, which a crawler is (HTML parsed with scripting disabled;
# Scrapy's MetaRefreshMiddleware reads it too).
_RAW_TEXT = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes")
_RAW_END = {name: re.compile(r"</%s[\t\n\f\r />]" % name, re.I) for name in _RAW_TEXT}


def _start_tags(page: str):
    """(lower-case name, attributes) of the page's start tags, in order. Attributes: names
    lower-cased, the first of a repeated name kept, values with character references
    decoded."""
    n = len(page)
    pos = 0
    while True:
        m = _MARKUP.search(page, pos)
        if m is None:
            return
        i = m.start()
        kind = m.group()
        if kind == "<!--":
            end = page.find("-->", i + 2)  # "<!-->" is a whole comment
            if end < 0:
                return
            pos = end + 3
            continue
        if kind in ("<!", "<?"):
            end = page.find(">", i + 2)
            if end < 0:
                return
            pos = end + 1
            continue
        end_tag = kind == "</"
        name_m = _TAG_NAME.match(page, i + (2 if end_tag else 1))
        if name_m is None:  # "</" not followed by a letter: a bogus comment up to ">"
            end = page.find(">", i + 2)
            if end < 0:
                return
            pos = end + 1
            continue
        name = name_m.group().lower()
        attrs: dict = {}
        p = name_m.end()
        while True:
            a = _ATTR.match(page, p)
            if a.group(2) is not None and not a.group(3) or \
                    a.group(4) is not None and not a.group(5):
                return  # a quote left open: the rest of the page is in this tag
            p = a.end()
            if a.group(1) is None:
                break
            attr = a.group(1).lower()
            if attr not in attrs:
                value = next((v for v in (a.group(2), a.group(4), a.group(6)) if v is not None),
                             "")
                attrs[attr] = html.unescape(value) if "&" in value else value
        if p >= n:
            return  # the page ends inside the tag
        pos = p + 1  # past ">"
        if end_tag:
            continue
        yield name, attrs
        raw_end = _RAW_END.get(name)
        if raw_end is not None:
            close = raw_end.search(page, pos)
            if close is None:
                return
            pos = close.start()


def _tags(page: str, name: str):
    for tag, attrs in _start_tags(page):
        if tag == name:
            yield attrs


_HAS_BASE = re.compile(r"<base[\t\n\f\r />]", re.I)
_HAS_REFRESH = re.compile(r"""http-equiv[\t\n\f\r ]*=[\t\n\f\r ]*["']?[\t\n\f\r ]*refresh""",
                          re.I)


def find_base_href(page: str) -> Optional[str]:
    """The ``href`` of the page's first ``<base>`` that has one (as written), None when
    none does."""
    if not _HAS_BASE.search(page):  # most pages: no need to read their tags
        return None
    for attrs in _tags(page, "base"):
        if "href" in attrs:
            return attrs["href"]
    return None


def parse_meta_refresh(content: str) -> Optional[Tuple[int, Optional[str]]]:
    """HTML's "shared declarative refresh steps" on a refresh ``content``: (delay in whole
    seconds, the URL text or None when it names none), or None when the content is not a
    refresh. ``"5; url='/next'"`` -> (5, "/next"); ``"0;URL=/a"`` -> (0, "/a");
    ``"3"`` -> (3, None); ``"1.5, /b"`` -> (1, "/b"); ``"soon"`` -> None. The URL text is
    still to be resolved against the page (an empty one is the page itself)."""
    s = content
    n = len(s)
    ws = " \t\n\f\r"
    i = 0
    while i < n and s[i] in ws:
        i += 1
    j = i
    while j < n and "0" <= s[j] <= "9":
        j += 1
    digits = s[i:j]
    i = j
    if not digits and (i >= n or s[i] != "."):
        return None
    delay = int(digits) if digits else 0
    while i < n and ("0" <= s[i] <= "9" or s[i] == "."):
        i += 1
    if i >= n:
        return delay, None
    if s[i] not in ";," and s[i] not in ws:
        return None
    while i < n and s[i] in ws:
        i += 1
    if i < n and s[i] in ";,":
        i += 1
    while i < n and s[i] in ws:
        i += 1
    if i >= n:
        return delay, None
    url = s[i:]
    k = i
    skip_quotes = True
    if s[k] in "Uu":
        k += 1
        skip_quotes = False
        if k < n and s[k] in "Rr":
            k += 1
            if k < n and s[k] in "Ll":
                k += 1
                while k < n and s[k] in ws:
                    k += 1
                if k < n and s[k] == "=":
                    k += 1
                    while k < n and s[k] in ws:
                        k += 1
                    skip_quotes = True
    if skip_quotes:
        quote = s[k] if k < n and s[k] in "'\"" else ""
        if quote:
            k += 1
        url = s[k:]
        if quote and quote in url:
            url = url[:url.index(quote)]
    return delay, url


def find_meta_refresh(page: str) -> Optional[Tuple[int, Optional[str]]]:
    """The refresh of the page's first ``<meta http-equiv="refresh">`` whose ``content``
    parses (:func:`parse_meta_refresh`), as browsers take the first one; None when none."""
    if not _HAS_REFRESH.search(page):
        return None
    for attrs in _tags(page, "meta"):
        if attrs.get("http-equiv", "").strip(" \t\n\f\r").lower() != "refresh":
            continue
        content = attrs.get("content")
        if not content:
            continue
        got = parse_meta_refresh(content)
        if got is not None:
            return got
    return None


def meta_refresh_url(response: "Response",
                     max_delay: float = META_REFRESH_MAX_DELAY) -> Optional[str]:
    """Where ``<meta http-equiv="refresh" content="N; url=...">`` sends a browser from
    this page: the URL resolved like a link (against ``<base href>`` or the final URL, the
    query in the page's encoding); None when the page has no such refresh, its delay is
    ``max_delay`` seconds or more (Scrapy's MetaRefreshMiddleware follows ``interval <
    METAREFRESH_MAXDELAY``), it names no URL or the page itself, or not an http(s) URL."""
    found = find_meta_refresh(response.text)
    if found is None or found[0] >= max_delay or found[1] is None:
        return None
    url = response.urljoin(found[1])
    if url is None or url in (response.url, response.final_url):
        return None
    return url


__all__: List[str] = ["META_REFRESH_MAX_DELAY", "find_base_href", "find_meta_refresh",
                      "meta_refresh_url", "parse_meta_refresh", "resolve_link"]


# ---- the broker's canonical URL (docs/urls.md) -------------------------------------------
# A port of core::canonical_url: the broker hashes every pushed request on this form, so a
# client that maps results back to its requests (the Scrapy bridge) computes it too.

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_CANON_PATH_SET = frozenset(b'"<>`{}|^')
_CANON_QUERY_SET = _CANON_PATH_SET | frozenset(b"\\")
_CANON_USER_SET = _CANON_PATH_SET | frozenset(b";=@[]:/?#")
_CANON_HOST_FORBIDDEN = frozenset(" \"<>\\^`{|}%/?#@:[]\x7f") | \
    frozenset(chr(c) for c in range(0x20))
_SESSION_PARAMS = ("jsessionid", "phpsessid", "sid", "sessionid")
_TRACKING_PARAMS = ("gclid", "fbclid", "mc_cid", "mc_eid")


def _canon_escapes(text: str, encode_set: frozenset) -> str:
    """Escapes normalised: upper-case hex, unreserved bytes decoded, a lone ``%`` as
    ``%25``, controls, space, DEL, non-ASCII (UTF-8) and ``encode_set`` escaped."""
    data = _SURROGATES.sub("\ufffd", text).encode("utf-8")
    out, i, n = [], 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x25:
            if i + 2 < n and data[i + 1] in _HEX and data[i + 2] in _HEX:
                v = int(data[i + 1:i + 3], 16)
                out.append(chr(v) if v in _UNRESERVED else "%%%02X" % v)
                i += 3
                continue
            out.append("%25")
        elif b <= 0x20 or b >= 0x7F or b in encode_set:
            out.append("%%%02X" % b)
        else:
            out.append(chr(b))
        i += 1
    return "".join(out)


def _ipv4_number(part: str) -> Optional[int]:
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits:
            return 0
        return int(digits, 16) if all(c in "0123456789abcdefABCDEF" for c in digits) else None
    if not part.isascii() or not part.isdigit():
        return None
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if all(c in "01234567" for c in part[1:]) else None
    return int(part)


def _canon_host(host: str) -> Optional[str]:
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            return None
        try:
            return "[%s]" % ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            return None
    try:
        host = urllib.parse.unquote_to_bytes(host).decode("utf-8")
    except UnicodeError:
        return None
    if not host.isascii() or any(label[:4].lower() == "xn--" for label in host.split(".")):
        try:
            import idna  # IDNA2008 + UTS #46 non-transitional, as libidn2
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except ImportError:
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        except (UnicodeError, ValueError):
            if host.isascii():  # an xn-- label libidn2 rejects is kept as written
                host = host.lower()
            else:
                return None
    host = host.lower().rstrip(".")
    if not host or any(c in _CANON_HOST_FORBIDDEN for c in host):
        return None
    last = host.rsplit(".", 1)[-1]
    if last.isdigit() or (last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])):
        parts = host.split(".")
        nums = [_ipv4_number(p) for p in parts]
        if len(parts) > 4 or any(v is None for v in nums) or \
                any(v > 255 for v in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
            return None
        value = nums[-1]
        for i, v in enumerate(nums[:-1]):
            value += v << (8 * (3 - i))
        return str(ipaddress.IPv4Address(value))
    return host


def _param_dropped(name: str, sessions: bool, tracking: bool) -> bool:
    low = urllib.parse.unquote(name).lower()
    if sessions and (low in _SESSION_PARAMS or low.startswith("aspsessionid")):
        return True
    return tracking and (low.startswith("utm_") or low in _TRACKING_PARAMS)


def canonical_url(url: str, sort_query: bool = False, strip_session_ids: bool = False,
                  strip_tracking: bool = False) -> str:
    """The canonical form the broker hashes a pushed request's URL on (docs/urls.md, a port
    of ``core::canonical_url``): scheme and host lower-cased, IDN hosts as ``xn--``, IPv4 in
    dotted decimal, default ports dropped, dot segments removed, escapes normalised
    (``%7e`` -> ``~``, upper-case hex), fragment and empty query removed; the three job
    options as keyword arguments. ``""`` for anything but an absolute http(s) URL."""
    s = str(url).strip(_C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    colon = s.find(":")
    scheme = s[:colon].lower() if colon > 0 else ""
    if scheme not in _DEFAULT_PORTS:
        return ""
    rest = s[colon + 1:].split("#", 1)[0]
    head, qmark, query = rest.partition("?")
    head = head.replace("\\", "/")
    if not head.startswith("//"):
        return ""
    head = head[2:]
    slash = head.find("/")
    auth, path = (head[:slash], head[slash:]) if slash >= 0 else (head, "")
    userinfo, at, hostport = auth.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        host, portpart = (hostport[:end + 1], hostport[end + 1:]) if end >= 0 else ("", "")
        if portpart and not portpart.startswith(":"):
            return ""
        port = portpart[1:]
    else:
        host, _, port = hostport.partition(":")
    if port:
        if not (port.isascii() and port.isdigit()) or int(port) > 65535:
            return ""
        port = "" if int(port) == _DEFAULT_PORTS[scheme] else str(int(port))
    host = _canon_host(host) if host else None
    if not host:
        return ""
    netloc = host + (":" + port if port else "")
    if at:
        user, pcolon, password = userinfo.partition(":")
        user = _canon_escapes(user, _CANON_USER_SET)
        password = _canon_escapes(password, _CANON_USER_SET) if pcolon else ""
        cred = user + (":" + password if password else "")
        if cred:
            netloc = cred + "@" + netloc
    out: List[str] = []
    segments = path.split("/")[1:] if path else [""]
    for i, seg in enumerate(segments):
        low = seg.lower()
        last = i == len(segments) - 1
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif low in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(seg)
    canon = f"{scheme}://{netloc}/" + _canon_escapes("/".join(out), _CANON_PATH_SET)
    if strip_session_ids:
        canon = re.sub(r";jsessionid=[^;/]*", "", canon, flags=re.I)
    if qmark and query:
        query = _canon_escapes(query, _CANON_QUERY_SET)
        if sort_query or strip_session_ids or strip_tracking:
            params = [p for p in query.split("&") if p and not _param_dropped(
                p.split("=", 1)[0], strip_session_ids, strip_tracking)]
            if sort_query:
                params.sort(key=lambda p: urllib.parse.unquote_to_bytes(p.split("=", 1)[0]))
            query = "&".join(params)
        if query:
            canon += "?" + query
    return canon
