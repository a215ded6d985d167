"""CSS and XPath selectors on responses, and declarative item specs.

``Response.css()`` and ``Response.xpath()`` return parsel ``SelectorList``s (``.get()``,
``.getall()``, ``.re()``, ``.re_first()``, ``.attrib``, nested ``.css()``), the API of
Scrapy's responses, without Scrapy: the selector is built on first use from
``response.text`` (decoded with the page's encoding) and kept with the response.

An :class:`ItemSpec` describes an item as fields to extract::

    SPEC = ItemSpec({
        "title": css("title::text"),
        "price": xpath("//span[@class='p']/text()", re=r"[\\d.]+", type=float, optional=True),
        "tags": css("a.tag::text", multiple=True),
    })

    def parse(self, response):
        item = SPEC.extract(response)   # None when a required field matched nothing
        if item:
            yield item

and counts, per field, how often it matched and how often its value did not convert to its
``type`` (:meth:`ItemSpec.snapshot`). parsel is Debian's ``python3-parsel``; only this
module needs it, and only when a selector is used.
"""
from __future__ import annotations

import re as _re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

PARSEL_MISSING = ("spiderhub selectors need parsel: install Debian's python3-parsel "
                  "(apt-get install python3-parsel; scripts/setup does) or `pip install parsel`")

# Content types parsed as XML (as Scrapy's XmlResponse); XHTML is parsed as HTML.
_XML_TYPES = _re.compile(r"^\s*(?:text/xml|application/xml|application/(?!xhtml)[\w.+-]*\+xml)\b",
                         _re.I)


def _parsel():
    try:
        import parsel
    except ImportError as e:
        raise ImportError(PARSEL_MISSING) from e
    return parsel


def selector_for(text: str, content_type: str = "", base_url: str = "") -> Any:
    """A parsel ``Selector`` over ``text``: XML for XML content types (``text/xml``,
    ``application/xml``, ``application/...+xml`` but XHTML), HTML otherwise."""
    parsel = _parsel()
    kind = "xml" if _XML_TYPES.match(content_type or "") else "html"
    return parsel.Selector(text=text, type=kind, base_url=base_url or None)


# ---- item specs ----------------------------------------------------------------------------

# Column types of ItemSpec.schema() (and of the SQL sinks, spiderhub.sinks.COLUMN_TYPES).
_SCHEMA_TYPES: dict[Any, str] = {str: "text", int: "integer", float: "real", bool: "boolean"}
# What type=bool accepts (any case); other text is a type error.
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True)
class Field:
    """One field of an :class:`ItemSpec`: a CSS or XPath query and what to do with its
    matches. Make them with :func:`css` and :func:`xpath`.

    - ``re``: a regular expression applied to the matched text (``SelectorList.re``: its
      first group when it has groups, else the whole match); no match is no value.
    - ``type``: a callable turning the text into the value (``int``, ``float``, a function);
      one that raises (ValueError, TypeError...) is a *type error*: the value is ``None``
      (left out of a ``multiple`` list) and counted. ``bool`` reads true/yes/on/1 and
      false/no/off/0 in any case (anything else is a type error), not Python's truthiness.
    - ``multiple``: every match, as a list (``[]`` when none); else the first match.
    - ``optional``: a field that matched nothing does not reject the item (its value is
      ``default``). A required field (the default) that matched nothing makes
      :meth:`ItemSpec.extract` return None: the page holds no such item.
    - ``strip``: strip white space from each match (default True); empty text after
      stripping is no match.
    """
    kind: str  # "css" or "xpath"
    query: str
    re: Optional[str] = None
    type: Optional[Callable[[str], Any]] = None
    multiple: bool = False
    optional: bool = False
    default: Any = None
    strip: bool = True

    def select(self, source: Any) -> Any:
        return source.css(self.query) if self.kind == "css" else source.xpath(self.query)

    def texts(self, source: Any) -> list[str]:
        """The matched texts, before ``type``."""
        sel = self.select(source)
        found = sel.re(self.re) if self.re else sel.getall()
        if self.strip:
            found = [t.strip() for t in found]
        return [t for t in found if t != ""] if self.strip else found

    @property
    def column_type(self) -> str:
        """The SQL sinks' column type for this field's values (spiderhub.sinks)."""
        if self.multiple:
            return "json"
        return _SCHEMA_TYPES.get(self.type, "text") if self.type is not None else "text"


def css(query: str, *, re: Optional[str] = None, type: Optional[Callable[[str], Any]] = None,
        multiple: bool = False, optional: bool = False, default: Any = None,
        strip: bool = True) -> Field:
    """A field read with a CSS selector (parsel's, with ``::text`` and ``::attr(name)``)."""
    return Field("css", query, re, type, multiple, optional, default, strip)


def xpath(query: str, *, re: Optional[str] = None, type: Optional[Callable[[str], Any]] = None,
          multiple: bool = False, optional: bool = False, default: Any = None,
          strip: bool = True) -> Field:
    """A field read with an XPath expression."""
    return Field("xpath", query, re, type, multiple, optional, default, strip)


@dataclass
class FieldStats:
    """What one field did over the pages extracted so far."""
    matched: int = 0      # extractions where it matched at least once
    missed: int = 0       # extractions where it matched nothing
    type_errors: int = 0  # values its type did not accept

    def fill(self) -> float:
        """Share of extractions where the field matched (0.0 before any)."""
        total = self.matched + self.missed
        return self.matched / total if total else 0.0


@dataclass
class ItemSpec:
    """An item as named fields (:func:`css`, :func:`xpath`); :meth:`extract` reads one from a
    response (or from any parsel selector: a row of a listing) and keeps counts on the spec:
    ``extractions``, ``items`` (returned), ``rejected`` (a required field missing) and a
    :class:`FieldStats` per field (``field_stats``). The counts live as long as the spec; a
    spider's parse runs on one thread, so they need no lock."""
    fields: Mapping[str, Field]
    extractions: int = 0
    items: int = 0
    rejected: int = 0
    field_stats: dict[str, FieldStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, f in self.fields.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"ItemSpec field names are non-empty strings, got {name!r}")
            if not isinstance(f, Field):
                raise TypeError(f"ItemSpec field {name!r} must be css(...) or xpath(...), "
                                f"got {f!r}")
            if f.re is not None:
                _re.compile(f.re)  # a bad expression fails here, not on the first page
        self.fields = dict(self.fields)
        self.field_stats = {name: FieldStats() for name in self.fields}

    def extract(self, source: Any) -> Optional[dict[str, Any]]:
        """The item of ``source`` (a Response, or a parsel Selector with ``css``/``xpath``):
        a dict with every field, or None when a required field matched nothing."""
        self.extractions += 1
        item: dict[str, Any] = {}
        complete = True
        for name, f in self.fields.items():
            st = self.field_stats[name]
            texts = f.texts(source)
            if texts:
                st.matched += 1
            else:
                st.missed += 1
                if not f.optional:
                    complete = False
            if f.multiple:
                values = []
                for t in texts:
                    ok, v = self._convert(f, t)
                    if ok:
                        values.append(v)
                    else:
                        st.type_errors += 1
                item[name] = values if texts else (f.default if f.default is not None else [])
            elif texts:
                ok, v = self._convert(f, texts[0])
                if not ok:
                    st.type_errors += 1
                item[name] = v if ok else None
            else:
                item[name] = f.default
        if not complete:
            self.rejected += 1
            return None
        self.items += 1
        return item

    @staticmethod
    def _convert(f: Field, text: str) -> tuple[bool, Any]:
        if f.type is None:
            return True, text
        if f.type is bool:  # bool("false") is True: read the usual spellings instead
            low = text.strip().lower()
            if low in _TRUE or low in _FALSE:
                return True, low in _TRUE
            return False, None
        try:
            return True, f.type(text)
        except (ValueError, TypeError, ArithmeticError):
            return False, None

    def schema(self) -> dict[str, str]:
        """Column types for the SQL sinks (``Spider.item_schema = SPEC.schema()``): ``type``
        ``int`` → integer, ``float`` → real, ``bool`` → boolean, ``multiple`` → json, others
        text."""
        return {name: f.column_type for name, f in self.fields.items()}

    def snapshot(self) -> dict[str, Any]:
        """The counts as plain JSON-able data: {"extractions", "items", "rejected",
        "fields": {name: {"matched", "missed", "typeErrors", "fill"}}}."""
        return {"extractions": self.extractions, "items": self.items, "rejected": self.rejected,
                "fields": {name: {"matched": st.matched, "missed": st.missed,
                                  "typeErrors": st.type_errors, "fill": round(st.fill(), 6)}
                           for name, st in self.field_stats.items()}}

    def reset_stats(self) -> None:
        self.extractions = self.items = self.rejected = 0
        self.field_stats = {name: FieldStats() for name in self.fields}
