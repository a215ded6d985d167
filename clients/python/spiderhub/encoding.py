"""Character encodings as browsers handle them (WHATWG Encoding standard, HTML's encoding
sniffing), for :attr:`spiderhub.worker.Response.text` and link resolution. Standard
library only; the same rules as the node's ``core/encoding`` (docs/python.md, Encodings).

* :data:`PYTHON_CODECS`: WHATWG encoding name -> the Python codec closest to the
  standard's decoder (``GBK`` -> ``gb18030``: the standard decodes GBK with the gb18030
  decoder; ``Shift_JIS`` -> ``cp932``; ``EUC-KR`` -> ``cp949``; ``Big5`` -> ``big5hkscs``;
  ...). :func:`decode` goes further than the bare codecs where the standard differs from
  them: single-byte holes at 0x80-0x9F decode to the C1 control of the same value, KOI8-U
  0xAE/0xBE and windows-1255 0xCA as the standard's index has them, a lone 0x80 in
  GBK/gb18030 is U+20AC, Shift_JIS 0xA0/0xFD-0xFF are errors, ``replacement`` and
  ``x-user-defined`` are decoded here.
* :func:`encoding_for_label`: the standard's label table ("latin1", "x-sjis", "gb2312"...
  -> a WHATWG name).
* :func:`sniff`: what the SDK does when the node did not say (results of nodes older than
  the ``encoding`` field): a byte order mark, the Content-Type charset, a ``<meta>``
  charset in the first 1024 bytes (HTML prescan), else UTF-8.
* :func:`decode`: bytes -> text the way the standard's "decode" does (a BOM wins), errors
  as U+FFFD. :func:`iter_encode`: text -> bytes in an encoding's output encoding, with
  the characters it cannot represent handed back as code points (for URL queries).
"""
from __future__ import annotations

import codecs
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

# WHATWG name -> Python codec. "replacement" and "x-user-defined" have none (decoded here).
PYTHON_CODECS: Dict[str, str] = {
    "UTF-8": "utf-8",
    "IBM866": "cp866",
    "ISO-8859-2": "iso8859_2",
    "ISO-8859-3": "iso8859_3",
    "ISO-8859-4": "iso8859_4",
    "ISO-8859-5": "iso8859_5",
    "ISO-8859-6": "iso8859_6",
    "ISO-8859-7": "iso8859_7",
    "ISO-8859-8": "iso8859_8",
    "ISO-8859-8-I": "iso8859_8",   # the same bytes; "-I" only says the order is logical
    "ISO-8859-10": "iso8859_10",
    "ISO-8859-13": "iso8859_13",
    "ISO-8859-14": "iso8859_14",
    "ISO-8859-15": "iso8859_15",
    "ISO-8859-16": "iso8859_16",
    "KOI8-R": "koi8_r",
    "KOI8-U": "koi8_u",            # the standard's KOI8-U is KOI8-RU: 0xAE/0xBE patched below
    "macintosh": "mac_roman",
    "windows-874": "cp874",
    "windows-1250": "cp1250",
    "windows-1251": "cp1251",
    "windows-1252": "cp1252",      # also every ISO-8859-1, US-ASCII and latin1 label
    "windows-1253": "cp1253",
    "windows-1254": "cp1254",      # also ISO-8859-9
    "windows-1255": "cp1255",
    "windows-1256": "cp1256",
    "windows-1257": "cp1257",
    "windows-1258": "cp1258",
    "x-mac-cyrillic": "mac_cyrillic",
    "GBK": "gb18030",              # the standard's GBK decoder is gb18030's
    "gb18030": "gb18030",
    "Big5": "big5hkscs",           # the standard's Big5 is Big5-HKSCS
    "EUC-JP": "euc_jp",
    "ISO-2022-JP": "iso2022_jp",
    "Shift_JIS": "cp932",          # Windows-31J, as browsers decode it
    "EUC-KR": "cp949",             # the standard's EUC-KR is windows-949 (UHC)
    "UTF-16BE": "utf-16-be",
    "UTF-16LE": "utf-16-le",
}

# The standard's label table (encodings.json): name -> its labels.
_LABELS_BY_NAME: Dict[str, str] = {
    "UTF-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "IBM866": "866 cp866 csibm866 ibm866",
    "ISO-8859-2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
                  "iso_8859-2:1987 l2 latin2",
    "ISO-8859-3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
                  "iso_8859-3:1988 l3 latin3",
    "ISO-8859-4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
                  "iso_8859-4:1988 l4 latin4",
    "ISO-8859-5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
                  "iso_8859-5 iso_8859-5:1988",
    "ISO-8859-6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 "
                  "iso-8859-6 iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 "
                  "iso_8859-6 iso_8859-6:1987",
    "ISO-8859-7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
                  "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "ISO-8859-8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
                  "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual",
    "ISO-8859-8-I": "csiso88598i iso-8859-8-i logical",
    "ISO-8859-10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "ISO-8859-13": "iso-8859-13 iso8859-13 iso885913",
    "ISO-8859-14": "iso-8859-14 iso8859-14 iso885914",
    "ISO-8859-15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "ISO-8859-16": "iso-8859-16",
    "KOI8-R": "cskoi8r koi koi8 koi8-r koi8_r",
    "KOI8-U": "koi8-ru koi8-u",
    "macintosh": "csmacintosh mac macintosh x-mac-roman",
    "windows-874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "windows-1250": "cp1250 windows-1250 x-cp1250",
    "windows-1251": "cp1251 windows-1251 x-cp1251",
    "windows-1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 "
                    "iso-ir-100 iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 "
                    "us-ascii windows-1252 x-cp1252",
    "windows-1253": "cp1253 windows-1253 x-cp1253",
    "windows-1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
                    "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "windows-1255": "cp1255 windows-1255 x-cp1255",
    "windows-1256": "cp1256 windows-1256 x-cp1256",
    "windows-1257": "cp1257 windows-1257 x-cp1257",
    "windows-1258": "cp1258 windows-1258 x-cp1258",
    "x-mac-cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    "GBK": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk",
    "gb18030": "gb18030",
    "Big5": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "EUC-JP": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "ISO-2022-JP": "csiso2022jp iso-2022-jp",
    "Shift_JIS": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "EUC-KR": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 "
              "ks_c_5601-1989 ksc5601 ksc_5601 windows-949",
    "replacement": "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr "
                   "replacement",
    "UTF-16BE": "unicodefffe utf-16be",
    "UTF-16LE": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    "x-user-defined": "x-user-defined",
}
LABELS: Dict[str, str] = {label: name for name, labels in _LABELS_BY_NAME.items()
                          for label in labels.split()}
NAMES = frozenset(_LABELS_BY_NAME)

# Byte order marks, checked in this order (HTML "BOM sniff").
BOMS: Tuple[Tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "UTF-8"), (b"\xfe\xff", "UTF-16BE"), (b"\xff\xfe", "UTF-16LE"))

META_PRESCAN_BYTES = 1024   # what HTML's prescan looks at
_ASCII_WS = " \t\n\f\r"     # ASCII whitespace of the Encoding and HTML standards
_ASCII_WS_B = b" \t\n\f\r"


def encoding_for_label(label: Optional[str]) -> Optional[str]:
    """WHATWG "get an encoding": a label in any case, with surrounding ASCII whitespace, ->
    its encoding's name ("latin1" -> "windows-1252", " GB2312 " -> "GBK"); None when
    unknown. Names are labels of themselves, so a name from the node maps to itself."""
    if not label:
        return None
    return LABELS.get(label.strip(_ASCII_WS).lower())


def python_codec(label: Optional[str]) -> Optional[str]:
    """The Python codec for a WHATWG name or label ("GBK" -> "gb18030", "Shift_JIS" ->
    "cp932", "latin1" -> "cp1252"); None for unknown labels and for "replacement" and
    "x-user-defined", which have no Python codec."""
    name = encoding_for_label(label)
    return PYTHON_CODECS.get(name) if name else None


def output_encoding(label: Optional[str]) -> str:
    """WHATWG "get an output encoding" of a name or label: what URLs and forms encode in.
    UTF-16BE/LE and replacement give UTF-8, as do unknown labels."""
    name = encoding_for_label(label) or "UTF-8"
    return "UTF-8" if name in ("replacement", "UTF-16BE", "UTF-16LE") else name


def bom_encoding(body: bytes) -> Optional[str]:
    """The encoding a byte order mark at the start of `body` names, None without one."""
    for bom, name in BOMS:
        if body.startswith(bom):
            return name
    return None


def charset_of_content_type(content_type: Optional[str]) -> str:
    """The first charset parameter of a Content-Type value ('text/html; charset="gbk"' ->
    'gbk'), "" when it has none."""
    ct = content_type or ""
    blank = " \t\r\n"
    pos = ct.find(";")
    while 0 <= pos < len(ct):
        pos += 1
        while pos < len(ct) and ct[pos] in blank:
            pos += 1
        eq = pos
        while eq < len(ct) and ct[eq] not in ";=":
            eq += 1
        if eq >= len(ct):
            break
        name = ct[pos:eq]
        pos = eq
        if ct[pos] == ";":
            continue
        pos += 1
        if pos < len(ct) and ct[pos] == '"':
            value = []
            pos += 1
            while pos < len(ct) and ct[pos] != '"':
                if ct[pos] == "\\" and pos + 1 < len(ct):
                    pos += 1
                value.append(ct[pos])
                pos += 1
            val = "".join(value)
            pos = ct.find(";", pos)
        else:
            end = ct.find(";", pos)
            val = (ct[pos:] if end < 0 else ct[pos:end]).strip(blank)
            pos = end
        if name.lower() == "charset" and val:
            return val
    return ""


# ---- HTML prescan ("prescan a byte stream to determine its encoding") ----------------------

def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _get_attribute(s: bytes, pos: int) -> Tuple[str, int, bytes, bytes]:
    """HTML "get an attribute": ("found" | "none" | "end", new position, lower-cased name,
    lower-cased value)."""
    n = len(s)
    while pos < n and (s[pos] in _ASCII_WS_B or s[pos] == 0x2F):  # whitespace or '/'
        pos += 1
    if pos >= n:
        return "end", pos, b"", b""
    if s[pos] == 0x3E:  # '>'
        return "none", pos, b"", b""
    name = bytearray()
    at_value = False
    while True:
        if pos >= n:
            return "end", pos, b"", b""
        c = s[pos]
        if c == 0x3D and name:  # '='
            pos += 1
            at_value = True
            break
        if c in _ASCII_WS_B:
            break
        if c in (0x2F, 0x3E):
            return "found", pos, bytes(name), b""
        name.append(c + 32 if 0x41 <= c <= 0x5A else c)
        pos += 1
    if not at_value:
        while pos < n and s[pos] in _ASCII_WS_B:
            pos += 1
        if pos >= n:
            return "end", pos, b"", b""
        if s[pos] != 0x3D:
            return "found", pos, bytes(name), b""
        pos += 1
    while pos < n and s[pos] in _ASCII_WS_B:
        pos += 1
    if pos >= n:
        return "end", pos, b"", b""
    quote = s[pos]
    if quote in (0x22, 0x27):
        end = s.find(bytes([quote]), pos + 1)
        if end < 0:
            return "end", n, b"", b""
        return "found", end + 1, bytes(name), s[pos + 1:end].lower()
    if quote == 0x3E:
        return "found", pos, bytes(name), b""
    start = pos
    while pos < n and s[pos] not in _ASCII_WS_B and s[pos] != 0x3E:
        pos += 1
    if pos >= n:
        return "end", pos, b"", b""
    return "found", pos, bytes(name), s[start:pos].lower()


def _charset_in_meta_content(content: bytes) -> Optional[str]:
    """HTML "extract a character encoding from a meta element" (`content` lower-cased)."""
    pos = 0
    n = len(content)
    while True:
        k = content.find(b"charset", pos)
        if k < 0:
            return None
        pos = k + 7
        while pos < n and content[pos] in _ASCII_WS_B:
            pos += 1
        if pos >= n or content[pos] != 0x3D:
            continue
        pos += 1
        while pos < n and content[pos] in _ASCII_WS_B:
            pos += 1
        if pos >= n:
            return None
        c = content[pos]
        if c in (0x22, 0x27):
            close = content.find(bytes([c]), pos + 1)
            if close < 0:
                return None
            return encoding_for_label(content[pos + 1:close].decode("latin-1"))
        end = pos
        while end < n and content[end] not in _ASCII_WS_B and content[end] != 0x3B:
            end += 1
        return encoding_for_label(content[pos:end].decode("latin-1"))


def prescan_meta_charset(head: bytes) -> Optional[str]:
    """HTML's prescan of the first 1024 bytes for ``<meta charset>`` or ``<meta
    http-equiv="content-type" content="...; charset=...">``: comments and other tags
    skipped, attributes in any order and quoting. A UTF-16 label there means UTF-8, and
    x-user-defined windows-1252 (the standard). None when there is none."""
    s = bytes(head[:META_PRESCAN_BYTES])
    n = len(s)
    pos = 0
    while pos < n:
        if s.startswith(b"<!--", pos):
            end = s.find(b"-->", pos + 2)  # "<!-->" is a whole comment
            if end < 0:
                return None
            pos = end + 3
            continue
        if s[pos:pos + 5].lower() == b"<meta" and pos + 5 < n and \
                (s[pos + 5] in _ASCII_WS_B or s[pos + 5] == 0x2F):
            pos += 6
            seen = set()
            got_pragma = False
            need_pragma = None  # None: unset; True/False
            charset = None
            charset_failed = False
            while True:
                r, pos, name, value = _get_attribute(s, pos)
                if r == "end":
                    return None
                if r == "none":
                    break
                if name in seen:
                    continue
                seen.add(name)
                if name == b"http-equiv":
                    got_pragma = value == b"content-type"
                elif name == b"content":
                    if charset is None and not charset_failed:
                        found = _charset_in_meta_content(value)
                        if found:
                            charset = found
                            need_pragma = True
                elif name == b"charset":
                    charset = encoding_for_label(value.decode("latin-1"))
                    charset_failed = charset is None
                    need_pragma = False
            if need_pragma is not None and not (need_pragma and not got_pragma) and charset:
                if charset in ("UTF-16BE", "UTF-16LE"):
                    return "UTF-8"
                if charset == "x-user-defined":
                    return "windows-1252"
                return charset
            pos += 1
            continue
        if s[pos] == 0x3C and pos + 1 < n and (
                _is_alpha(s[pos + 1]) or
                (s[pos + 1] == 0x2F and pos + 2 < n and _is_alpha(s[pos + 2]))):
            while pos < n and s[pos] not in _ASCII_WS_B and s[pos] != 0x3E:
                pos += 1
            while True:
                r, pos, _, _ = _get_attribute(s, pos)
                if r == "end":
                    return None
                if r == "none":
                    break
            pos += 1
            continue
        if s[pos:pos + 2] in (b"<!", b"</", b"<?"):
            end = s.find(b">", pos + 1)
            if end < 0:
                return None
            pos = end + 1
            continue
        pos += 1
    return None


def sniff(body: bytes, content_type: Optional[str] = "") -> Tuple[str, str]:
    """(WHATWG name, source) of a body whose result carried no ``encoding`` (nodes older
    than that field): a byte order mark ("bom"), else a known Content-Type charset
    ("http"), else a ``<meta>`` charset in the first 1024 bytes ("meta"), else UTF-8
    ("default"; bytes that are not UTF-8 then decode as U+FFFD, as the SDK always did).
    The node's own sniffing has the same order, with the run's override label after the
    BOM and a detector instead of the UTF-8 default."""
    bom = bom_encoding(body)
    if bom:
        return bom, "bom"
    http = encoding_for_label(charset_of_content_type(content_type))
    if http:
        return http, "http"
    meta = prescan_meta_charset(body)
    if meta:
        return meta, "meta"
    return "UTF-8", "default"


# ---- decoding ----------------------------------------------------------------------------

_UNDEFINED = "\ufffe"  # an undefined byte in a charmap decoding table
# Where the standard's index differs from Python's table (besides C1 holes, filled below).
_INDEX_OVERRIDES: Dict[str, Dict[int, str]] = {
    "KOI8-U": {0xAE: "\u045e", 0xBE: "\u040e"},
    "windows-1255": {0xCA: "\u05ba"},
}
_SINGLE_BYTE = frozenset(
    n for n, c in PYTHON_CODECS.items()
    if c.startswith(("cp8", "cp12", "iso8859", "koi8", "mac_")))
_tables: Dict[str, Tuple[str, Dict[int, int]]] = {}


def _single_byte_table(name: str) -> Tuple[str, Dict[int, int]]:
    """(decoding table, encoding map) of a single-byte encoding as the standard's index
    has it: Python's table, a hole at 0x80-0x9F as the C1 control of that value (windows-*
    pages use them), and the overrides above."""
    got = _tables.get(name)
    if got is None:
        codec = PYTHON_CODECS[name]
        overrides = _INDEX_OVERRIDES.get(name, {})
        chars = []
        for b in range(256):
            try:
                ch = bytes([b]).decode(codec)
            except UnicodeDecodeError:
                ch = chr(b) if 0x80 <= b <= 0x9F else _UNDEFINED
            chars.append(overrides.get(b, ch))
        enc: Dict[int, int] = {}
        for b, ch in enumerate(chars):
            if ch != _UNDEFINED:
                enc.setdefault(ord(ch), b)
        got = _tables[name] = ("".join(chars), enc)
    return got


def _whatwg_gb18030_errors(e: UnicodeError) -> Tuple[str, int]:
    # A lone 0x80 is U+20AC in the standard's gb18030 decoder; other errors are U+FFFD.
    if isinstance(e, UnicodeDecodeError) and e.object[e.start:e.start + 1] == b"\x80":
        return "\u20ac", e.start + 1
    return "\ufffd", e.end


codecs.register_error("spiderhub-whatwg-gb18030", _whatwg_gb18030_errors)

# cp932 decodes the single bytes 0xA0, 0xFD, 0xFE, 0xFF to these private-use characters;
# the standard's Shift_JIS decoder has them as errors.
_CP932_SINGLES = {0xF8F0: 0xFFFD, 0xF8F1: 0xFFFD, 0xF8F2: 0xFFFD, 0xF8F3: 0xFFFD}


def decode(body: bytes, encoding: Optional[str] = "UTF-8") -> str:
    """`body` as text the way the standard's "decode" does: a byte order mark decides (and
    is dropped) whatever `encoding` says; else `encoding` (a WHATWG name or label; unknown
    or empty: UTF-8). Invalid bytes become U+FFFD."""
    body = bytes(body)
    name = encoding_for_label(encoding) or "UTF-8"
    bom = bom_encoding(body)
    if bom:
        name = bom
        body = body[3 if bom == "UTF-8" else 2:]
    if name == "replacement":  # the standard's guard against ISO-2022-KR, HZ and the like
        return "\ufffd" if body else ""
    if name == "x-user-defined":
        return "".join(chr(b) if b < 0x80 else chr(0xF780 + b - 0x80) for b in body)
    if name in _SINGLE_BYTE:
        return codecs.charmap_decode(body, "replace", _single_byte_table(name)[0])[0]
    codec = PYTHON_CODECS[name]
    if codec == "gb18030":
        return body.decode(codec, "spiderhub-whatwg-gb18030")
    text = body.decode(codec, "replace")
    if codec == "cp932":
        text = text.translate(_CP932_SINGLES)
    return text


# ---- encoding (URL queries) ----------------------------------------------------------------

# Code points the standard's encoders write although Python's codec has no mapping for them.
_ENCODER_EXTRAS: Dict[str, Dict[int, bytes]] = {
    "GBK": {0x20AC: b"\x80"},
    "Shift_JIS": {0xA5: b"\x5c", 0x203E: b"\x7e", 0x2212: b"\x81\x7c"},
    "EUC-JP": {0xA5: b"\x5c", 0x203E: b"\x7e", 0x2212: b"\xa1\xdd"},
}


def _encoder(name: str) -> Callable[[str], bytes]:
    """A strict encoder for an output encoding: raises UnicodeEncodeError at the first
    character it cannot represent."""
    if name == "UTF-8":
        return lambda s: s.encode("utf-8", "surrogatepass")
    if name == "x-user-defined":
        def xud(s: str) -> bytes:
            out = bytearray()
            for i, ch in enumerate(s):
                c = ord(ch)
                if c < 0x80:
                    out.append(c)
                elif 0xF780 <= c <= 0xF7FF:
                    out.append(c - 0xF780 + 0x80)
                else:
                    raise UnicodeEncodeError("x-user-defined", s, i, i + 1, "unmappable")
            return bytes(out)
        return xud
    if name in _SINGLE_BYTE:
        table = _single_byte_table(name)[1]
        return lambda s: codecs.charmap_encode(s, "strict", table)[0]
    if name == "GBK":
        return lambda s: s.encode("gbk")  # two-byte forms only, as the standard's GBK encoder
    if name == "Big5":
        def big5(s: str) -> bytes:
            out = []
            for i, ch in enumerate(s):
                b = ch.encode("big5hkscs")
                if len(b) == 2 and b[0] < 0xA1:
                    # The standard's Big5 encoder leaves out the HKSCS rows below 0xA1.
                    raise UnicodeEncodeError("big5", s, i, i + 1, "not in the Big5 encoder")
                out.append(b)
            return b"".join(out)
        return big5
    codec = PYTHON_CODECS[name]
    return lambda s: s.encode(codec)


def iter_encode(text: str, encoding: Optional[str]) -> Iterator[Union[bytes, int]]:
    """`text` in the output encoding of `encoding` (a WHATWG name or label), in pieces:
    bytes, and the code point (an int) of each character the encoding cannot represent
    (WHATWG "encode or fail"; a caller writes it as ``&#NNNN;``, percent-encoded in URLs)."""
    name = output_encoding(encoding)
    enc = _encoder(name)
    extras = _ENCODER_EXTRAS.get(name, {})
    i = 0
    while i < len(text):
        try:
            yield enc(text[i:])
            return
        except UnicodeEncodeError as e:
            if e.start:
                yield enc(text[i:i + e.start])
            for ch in text[i + e.start:i + e.end]:
                extra = extras.get(ord(ch))
                yield extra if extra is not None else ord(ch)
            i += e.end


def encode(text: str, encoding: Optional[str]) -> bytes:
    """`text` in the output encoding of `encoding`, unrepresentable characters as
    ``&#NNNN;`` (what HTML form submission does)."""
    return b"".join(p if isinstance(p, bytes) else b"&#%d;" % p
                    for p in iter_encode(text, encoding))


__all__: List[str] = [
    "BOMS", "LABELS", "META_PRESCAN_BYTES", "NAMES", "PYTHON_CODECS", "bom_encoding",
    "charset_of_content_type", "decode", "encode", "encoding_for_label", "iter_encode",
    "output_encoding", "prescan_meta_charset", "python_codec", "sniff"]
