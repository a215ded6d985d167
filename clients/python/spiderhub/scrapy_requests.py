"""Scrapy requests on the wire: what the Scrapy bridge pushes to the broker and how a
result becomes the Scrapy request it answers again (docs/python.md, "Scrapy spiders").

A pushed request carries, besides the URL, method, body and the headers Scrapy's
downloader middlewares set:

* ``fingerprint`` — the broker's dedup key: Scrapy's request fingerprint (the duplicate
  filter's, so REQUEST_FINGERPRINTER_CLASS/_IMPLEMENTATION apply), with ``#n`` after it for
  the n-th request of that fingerprint this process pushed with ``dont_filter``
  (broker_fingerprint); ``dontFilter`` when the URL must not be a dedup key too
  (wire_request);
* ``payload`` — the Scrapy request itself, as Scrapy's own disk queues store it
  (``Request.to_dict``: callback and errback by name, ``meta``, ``cb_kwargs``, headers,
  body), pickled, base64, with an HMAC of the worker token in front (PayloadCodec), so any
  bridge process of the run rebuilds the request of any result and no one without the
  token makes a bridge unpickle what they wrote.

No Scrapy import at module level: the plain SDK works without Scrapy.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import urllib.parse
from typing import Any

from .worker import _redirects_of

PAYLOAD_LIMIT = 262_144     # bytes of a Request's payload the broker stores
FINGERPRINT_LIMIT = 256     # bytes of a Request's fingerprint the broker takes
PAYLOAD_VERSION = "s1"      # first field of a payload: format and signature scheme
INTERNAL_META = "_spiderhub"  # meta keys of the bridge start with this; never pushed


class UnserializableRequest(ValueError):
    """A request the bridge cannot hand to the broker (a callback that is no spider
    method, meta or cb_kwargs that do not pickle, a payload over the broker's limit, a
    body that is not UTF-8)."""


class DownloadError(IOError):
    """A download the node could not make (the errback's ``failure.value``): ``error_kind``
    is one of spiderhub.worker.ERROR_KINDS ("" from older brokers)."""

    def __init__(self, message: str, error_kind: str = "") -> None:
        super().__init__(f"{message} ({error_kind})" if error_kind else message)
        self.error_kind = error_kind


def request_hash(url: str, method: str = "GET", content: str = "", referer: str = "",
                 origin: str = "") -> str:
    """The broker's dedup key of a request without fingerprint (docs/protocol.md): md5 of
    referer.origin.method.content.url, on the canonical URL (``canonical_url(url)``)."""
    return hashlib.md5(f"{referer}.{origin}.{method}.{content}.{url}".encode()).hexdigest()[:16]


def fingerprint_hash(fingerprint: str) -> str:
    """The broker's dedup key (and a result's ``requestHash``) of a request pushed with
    ``fingerprint``."""
    return hashlib.md5(("fp:" + fingerprint).encode()).hexdigest()[:16]


def broker_fingerprint(fingerprint: str, dont_filter_n: int = 0) -> str:
    """The ``fingerprint`` pushed for a request whose Scrapy fingerprint is
    ``fingerprint``: as is, or ``fingerprint#n`` for the n-th (n >= 1) request of that
    fingerprint this process pushes with ``dont_filter`` — bridges pushing the same start
    requests still dedup each other, one process's repeats are crawled again, as in
    Scrapy. A fingerprint longer than the broker takes is replaced by its SHA-1."""
    if len(fingerprint.encode()) > FINGERPRINT_LIMIT - 12:
        fingerprint = "sha1:" + hashlib.sha1(fingerprint.encode()).hexdigest()
    return f"{fingerprint}#{dont_filter_n}" if dont_filter_n else fingerprint


def url_problem(url: str) -> str:
    """Why the nodes cannot download ``url`` ("" when they can): not http(s), no host, or
    a port that is no number (w3lib encodes the port of a link found on a UTF-16 page in
    UTF-16). Scrapy's downloader fails these. (A URL the broker still refuses, having no
    canonical form, is refused alone: Bridge.push.)"""
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as e:
        return f"bad URL: {e}"
    if u.scheme.lower() not in ("http", "https"):
        return f"unsupported URL scheme {u.scheme!r}: the nodes download http(s) only"
    if not u.hostname:
        return "no host"
    return ""


class PayloadCodec:
    """Scrapy request dicts to payload text and back: ``s1.<signature>.<base64 pickle>``,
    the signature being the first 16 bytes of HMAC-SHA256(worker token, pickle)."""

    def __init__(self, token: str) -> None:
        self.key = hashlib.sha256(b"spiderhub scrapy payload\n" + token.encode()).digest()

    def _sign(self, data: bytes) -> str:
        mac = hmac.new(self.key, data, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def encode(self, d: dict) -> str:
        try:
            data = pickle.dumps(d, protocol=4)
        except Exception as e:  # noqa: BLE001 - any object pickle refuses
            raise UnserializableRequest(f"meta or cb_kwargs cannot be pickled: {e!r}") from e
        text = f"{PAYLOAD_VERSION}.{self._sign(data)}.{base64.b64encode(data).decode()}"
        if len(text) > PAYLOAD_LIMIT:
            raise UnserializableRequest(
                f"the serialized request is {len(text):,} bytes, over the broker's payload "
                f"limit of {PAYLOAD_LIMIT:,} (large meta or cb_kwargs?)")
        return text

    def decode(self, text: str) -> dict:
        """The request dict of a payload; ValueError when it is not one of ours (another
        format, a wrong signature, not a pickled dict)."""
        version, _, rest = text.partition(".")
        sig, _, body = rest.partition(".")
        if version != PAYLOAD_VERSION or not body:
            raise ValueError(f"not a Scrapy bridge payload (format {version[:10]!r})")
        data = base64.b64decode(body, validate=True)
        if not hmac.compare_digest(sig, self._sign(data)):
            raise ValueError("payload signature does not match this worker token")
        d = pickle.loads(data)  # noqa: S301 - signed with the worker token above
        if not isinstance(d, dict) or "url" not in d:
            raise ValueError("payload is not a request dict")
        return d


def _method_name(spider: Any, func: Any) -> str | None:
    """The name of the spider method ``func`` is (Scrapy's ``_find_method`` without
    walking every member of the spider for each request), or None."""
    if func is None or isinstance(func, str):
        return func
    f = getattr(func, "__func__", None)
    if f is None or spider is None:
        raise UnserializableRequest(f"callback {func!r} is not a spider method")
    name = getattr(f, "__name__", "")
    own = getattr(spider, name, None)
    if getattr(own, "__func__", None) is f:
        return name
    # A method stored under another name (an alias): Scrapy's own search.
    from scrapy.http.request import _find_method
    try:
        return _find_method(spider, func)
    except ValueError as e:
        raise UnserializableRequest(str(e)) from e


def request_dict(request: Any, spider: Any) -> dict:
    """``request.to_dict(spider=spider)`` (callbacks by name), without the bridge's own
    meta keys; UnserializableRequest when a callback or errback is no spider method."""
    from scrapy import Request
    d = {"url": request.url, "callback": _method_name(spider, request.callback),
         "errback": _method_name(spider, request.errback), "headers": dict(request.headers)}
    for attr in request.attributes:
        d.setdefault(attr, getattr(request, attr))
    if type(request) is not Request:  # noqa: E721 - as Request.to_dict
        d["_class"] = type(request).__module__ + "." + type(request).__name__
    meta = d.get("meta")
    if isinstance(meta, dict) and any(k.startswith(INTERNAL_META) for k in meta):
        d["meta"] = {k: v for k, v in meta.items() if not k.startswith(INTERNAL_META)}
    return d


def wire_request(request: Any, fingerprint: str, payload: str, by_url: bool = True) -> dict:
    """The Push JSON of a Scrapy request as the downloader middlewares left it: its headers
    (one value per name, Scrapy's repeated values joined with ", "; the node adds what the
    job's Site says for names the request does not set), its body as text.

    The broker takes a fingerprinted GET or HEAD without body as a duplicate of any
    request of the run to the same canonical URL too (a redirect's target, which it keys
    by URL, is the page a link names), unless ``dontFilter``: sent for ``dont_filter``
    requests, and for all when ``by_url`` is False (a fingerprint that is not the URL's:
    a project's REQUEST_FINGERPRINTER_CLASS, BaseDupeFilter)."""
    try:
        content = request.body.decode("utf-8") if request.body else ""
    except UnicodeDecodeError as e:
        raise UnserializableRequest("the request body is not UTF-8: the broker carries "
                                    "request bodies as text") from e
    headers = {}
    for k, v in request.headers.items():
        headers[k.decode("latin-1")] = b", ".join(v).decode("latin-1")
    wire = {"url": request.url, "method": request.method, "referer": "", "origin": "",
            "content": content, "depth": int(request.meta.get("depth", 0) or 0),
            "cycleTriedTimes": 0, "headers": headers, "fingerprint": fingerprint,
            "payload": payload}
    if request.dont_filter or not by_url:
        wire["dontFilter"] = True
    if "proxy" in request.meta:
        # Scrapy's meta["proxy"] (None: no proxy, as HttpProxyMiddleware reads it) is the
        # request's own proxy on the node, instead of the job's pool (Proxies).
        wire["proxy"] = proxy_for_node(request.meta["proxy"])
    return wire


_PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def proxy_for_node(proxy: Any) -> str:
    """meta["proxy"] as the broker takes it: "direct" for None or "", else the URL, which
    must name a scheme the nodes speak, a host and a port (the broker refuses others)."""
    if not proxy:
        return "direct"
    import urllib.parse
    text = str(proxy).strip()
    u = urllib.parse.urlsplit(text)
    try:
        port = u.port
    except ValueError:
        port = None
    if "://" not in text or u.scheme.lower() not in _PROXY_SCHEMES or not u.hostname \
            or not port or u.path not in ("", "/") or u.query or u.fragment:
        shown = f"{u.scheme}://{u.hostname}:{port}" if "://" in text else "proxy"
        raise UnserializableRequest(
            f"meta['proxy'] {shown!r} is not a proxy URL the nodes can use "
            "(scheme http, https, socks4, socks4a, socks5 or socks5h, a host and a port)")
    return text


def replay_request(result: dict, data: Any, spider: Any, log=print):
    """The Scrapy request result ``result`` answers, rebuilt from its request dict
    (``data``: the dict, or it pickled), with the result in ``meta["_spiderhub"]``; after
    broker redirects, the request as Scrapy's RedirectMiddleware would have made it
    (redirected_request).

    A request that cannot be rebuilt (its callback gone, a URL the Request refuses...) is
    logged once and replaced by a stand-in at the result's URL with the stored errback,
    callback and meta, which the download handler fails (``meta["_spiderhub_error"]``, an
    IgnoreRequest: Scrapy calls the errback and logs nothing more), so the result is acked
    like any other. None when not even that can be built: the caller acks it."""
    from scrapy import Request
    from scrapy.utils.request import request_from_dict
    d: dict = {}
    try:
        d = data if isinstance(data, dict) else pickle.loads(data)  # noqa: S301
        req = redirected_request(request_from_dict(d, spider=spider), result)
        req.meta["_spiderhub"] = result
        return req
    except Exception as e:  # noqa: BLE001 - a result must never stay unacked
        error = e
    if not isinstance(d, dict):
        d = {}
    url = result.get("finalUrl") or result.get("url") or ""
    log(f"spiderhub-scrapy: result for {url!r} cannot be turned back into its Scrapy request "
        f"{d.get('url')!r}: {error!r}; failed to its errback, acked")
    from scrapy.exceptions import IgnoreRequest
    failure = IgnoreRequest(f"spiderhub: {d.get('url')!r} cannot be rebuilt: {error!r}")
    meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
    for attempt in ({**d, "url": url, "method": "GET", "body": b""},
                    {"url": url, "errback": d.get("errback")}, {"url": url}):
        try:
            req = request_from_dict(attempt, spider=spider) if len(attempt) > 1 \
                else Request(url, dont_filter=True)
        except Exception:  # noqa: BLE001
            continue
        try:
            req.meta.update(meta)
        except Exception:  # noqa: BLE001
            pass
        req.meta["_spiderhub"] = result
        req.meta["_spiderhub_error"] = failure
        return req
    return None


def redirected_request(request: Any, r: dict):
    """``request`` as Scrapy's RedirectMiddleware leaves it when result ``r`` is a page the
    broker reached through redirects: at the final URL, a POST turned into a GET by a 301,
    302 or 303 (body and Content-* headers dropped), the hops in its meta (result_url)."""
    final = str(r.get("finalUrl") or "")
    hops = _redirects_of(r.get("redirects"))
    if not final and hops:
        final = hops[-1].url
    if not final or (not hops and not r.get("redirectedFrom")):
        return request
    kw: dict[str, Any] = {}
    if request.method not in ("GET", "HEAD") and any(h.status in (301, 302, 303) for h in hops):
        kw = {"method": "GET", "body": b""}
        headers = request.headers.copy()
        for name in ("Content-Type", "Content-Length", "Content-Encoding", "Content-Language",
                     "Content-Location"):
            headers.pop(name, None)
        kw["headers"] = headers
    if final != request.url or kw:
        request = request.replace(url=final, **kw)
    return request


def result_url(r: dict, request: Any) -> str:
    """The URL of the response built from result `r`: where the download ended (the node's
    ``finalUrl``, else the last redirect hop, else the result's URL). The hops go into
    ``request.meta`` as Scrapy's RedirectMiddleware writes them for a request redirected
    A -> B -> C: ``redirect_urls`` [A, B] (the URLs before the final one),
    ``redirect_reasons`` [their statuses], ``redirect_times`` 2. A is the result's
    ``redirectedFrom`` when the broker followed the redirects (the result is C's then),
    else its ``url``."""
    url = r.get("url") or request.url
    hops = _redirects_of(r.get("redirects"))
    if hops:
        first = r.get("redirectedFrom") or url
        request.meta["redirect_urls"] = [first] + [h.url for h in hops[:-1]]
        request.meta["redirect_reasons"] = [h.status for h in hops]
        request.meta["redirect_times"] = len(hops)
    return r.get("finalUrl") or (hops[-1].url if hops else url)
