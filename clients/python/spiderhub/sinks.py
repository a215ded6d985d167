"""Item sinks: where a worker's items go, exactly once per page.

The worker hands a sink the items of a Poll batch, page by page (:class:`Page`: the
result's request hash, its result id, its items), and acks the batch's results only after
every sink committed them::

    keys = [page keys of the batch]
    done = sink.committed(run, keys)        # pages an earlier life already committed
    ... parse the others, push their requests ...
    sink.commit(run, [pages not in done])   # one transaction: items + the page records
    Ack(result ids)

A sink commits a batch atomically together with the record of the pages it came from, and
``commit`` skips pages already recorded, so a worker killed (``kill -9``) at any point
loses nothing (unacked results come back) and doubles nothing (a page recorded is skipped
when its result comes back).

- :class:`JsonLinesSink` and :class:`CsvSink`: files; each item carries its page's request
  hash, and ``PATH.committed`` holds the length of the file as of the last commit: a batch
  cut by a crash is cut off when the file is opened again.
- :class:`SQLiteSink` (standard library) and :class:`PostgresSink` (Debian's
  ``python3-psycopg2``): a table created from a declared schema or from the first item's
  keys (columns added as new keys appear), items upserted by a key field or inserted once
  per (request hash, item index), and a ``spiderhub_pages`` table recording the pages
  committed per run, written in the same transaction.

:func:`open_sink` makes one from a destination of the command line (``-o``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import urllib.parse
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

# Column types of a declared schema (ItemSpec.schema() gives them too).
COLUMN_TYPES = ("text", "integer", "real", "boolean", "json")
# Columns a SQL sink adds to every item table (CSV adds the first), and the table of pages.
HASH_COLUMN = "request_hash"
INDEX_COLUMN = "item_index"
PAGES_TABLE = "spiderhub_pages"
# Rows per multi-row INSERT (PostgreSQL) and hashes per IN list (SQLite).
BATCH_ROWS = 500

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_TRUE = frozenset({"true", "yes", "on", "1", "t", "y"})
_FALSE = frozenset({"false", "no", "off", "0", "f", "n"})

PSYCOPG2_MISSING = ("the PostgreSQL sink needs psycopg2: install Debian's python3-psycopg2 "
                    "(apt-get install python3-psycopg2; scripts/setup does) or "
                    "`pip install psycopg2`")


class Page(NamedTuple):
    """The items of one downloaded page, as the worker commits them."""
    request_hash: str  # the result's requestHash ("result:<id>" when it had none)
    result_id: int
    items: list


class SinkError(ValueError):
    """A destination or schema the sinks cannot use (bad URL, bad column type...)."""


class Sink:
    """What the worker needs of a sink. ``name`` is printable (no secrets); ``stats`` counts
    pages, items, pages skipped as already committed, type errors and dropped fields."""

    name = "sink"

    def __init__(self) -> None:
        self.stats = {"pages": 0, "items": 0, "skipped_pages": 0, "commits": 0,
                      "type_errors": 0, "dropped_fields": 0, "items_without_key": 0}
        self._warned: set[str] = set()
        self.log: Callable[[str], None] = lambda m: None

    def committed(self, run: str, request_hashes: Sequence[str]) -> set[str]:
        """The hashes among ``request_hashes`` whose pages this sink committed for ``run``."""
        raise NotImplementedError

    def commit(self, run: str, pages: Sequence[Page]) -> None:
        """Writes the items of ``pages`` and records the pages, atomically; pages already
        recorded are skipped. Raises on failure (nothing of the batch is then kept)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log(f"sink {self.name}: {message}")


def _fresh(pages: Sequence[Page], done: set[str]) -> list[Page]:
    """Pages not in ``done``, each hash once (the first)."""
    out, seen = [], set(done)
    for p in pages:
        if p.request_hash not in seen:
            seen.add(p.request_hash)
            out.append(p)
    return out


# ---- values --------------------------------------------------------------------------------


def _clean_text(s: str) -> str:
    """Text both databases accept: no NUL (PostgreSQL refuses it) and no lone surrogate
    (not UTF-8)."""
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def _json_text(v: Any) -> str:
    return _clean_text(json.dumps(v, ensure_ascii=False, default=str))


def infer_type(v: Any) -> str:
    """The column type for a value of an item whose table has no declared schema."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "real"
    if isinstance(v, (list, tuple, dict)):
        return "json"
    return "text"


def convert(v: Any, kind: str) -> tuple[bool, Any]:
    """``v`` as a value of a column of type ``kind``: (True, value), or (False, None) when it
    cannot be one (a type error: stored as NULL). ``json`` values stay Python objects
    (each sink serializes them); "any" (a column type the sinks do not know, in an existing
    table) passes text and numbers through."""
    if v is None:
        return True, None
    try:
        if kind == "text":
            if isinstance(v, str):
                return True, _clean_text(v)
            if isinstance(v, (bool, list, tuple, dict)) or v is None:
                return True, _json_text(v)
            return True, _clean_text(str(v))
        if kind == "integer":
            if isinstance(v, bool):
                return True, int(v)
            if isinstance(v, float):
                if not v.is_integer():
                    return False, None
                v = int(v)
            elif isinstance(v, str):
                v = int(v.strip())
            elif not isinstance(v, int):
                return False, None
            return (True, v) if _INT64[0] <= v <= _INT64[1] else (False, None)
        if kind == "real":
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                return False, None
            return True, float(v.strip() if isinstance(v, str) else v)
        if kind == "boolean":
            if isinstance(v, bool):
                return True, v
            if isinstance(v, int) and v in (0, 1):
                return True, bool(v)
            if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
                return True, v.strip().lower() in _TRUE
            return False, None
        if kind == "json":
            json.dumps(v, default=str)
            return True, v
    except (ValueError, TypeError, OverflowError):
        return False, None
    # "any"
    if isinstance(v, str):
        return True, _clean_text(v)
    if isinstance(v, (bool, int, float)):
        return True, v
    return True, _json_text(v)


def parse_columns(text: str) -> dict[str, str]:
    """``a:text,b:real,c`` → {"a": "text", "b": "real", "c": "text"} (a declared schema)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, kind = part.partition(":")
        name, kind = name.strip(), (kind.strip().lower() or "text")
        check_schema({name: kind})
        out[name] = kind
    if not out:
        raise SinkError("columns= names no column")
    return out


def check_schema(schema: dict[str, str]) -> dict[str, str]:
    for name, kind in schema.items():
        check_column(name)
        if kind not in COLUMN_TYPES:
            raise SinkError(f"column {name!r}: type {kind!r} is not one of "
                            f"{', '.join(COLUMN_TYPES)}")
    return dict(schema)


def check_column(name: Any) -> str:
    if not isinstance(name, str) or not name or "\x00" in name \
            or len(name.encode("utf-8")) > 63:
        raise SinkError(f"column name {name!r}: 1 to 63 bytes of UTF-8 without NUL")
    if name in (HASH_COLUMN, INDEX_COLUMN):
        raise SinkError(f"column name {name!r} is the sink's own")
    return name


def _usable_column(name: Any) -> bool:
    try:
        check_column(name)
        return True
    except SinkError:
        return False


# ---- files ---------------------------------------------------------------------------------


class _CommitMark:
    """``PATH.committed``: the length of PATH as of its last commit, as one fixed-width line
    rewritten in place (a 21-byte write at offset 0 is all or nothing), fsynced."""

    def __init__(self, path: str) -> None:
        self.path = path + ".committed"

    def read(self) -> Optional[int]:
        try:
            with open(self.path, "rb") as f:
                return int(f.read(64).split(b"\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def write(self, length: int) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"%020d\n" % length, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def ensure(self, length: int) -> None:
        """Before a file's first commit: the length it had, so that a crash during that
        commit's write cuts it back there."""
        if self.read() is None:
            self.write(length)

    def cut(self, data_path: str, log: Callable[[str], None]) -> None:
        """Cuts the data file back to its committed length (a batch a crash interrupted)."""
        length = self.read()
        if length is None or not os.path.exists(data_path):
            return
        size = os.path.getsize(data_path)
        if size > length:
            log(f"sink {data_path}: {size - length} bytes after the last commit (a batch "
                "interrupted, not acked) cut off")
            with open(data_path, "r+b") as f:
                f.truncate(length)
                f.flush()
                os.fsync(f.fileno())
        elif size < length:
            log(f"sink {data_path}: shorter than its last commit ({size} < {length} bytes); "
                "was it edited? keeping it as it is")


class JsonLinesSink(Sink):
    """Items as JSON lines, exactly once per page: each line carries the ``requestHash`` of
    its page, and pages already in the file are skipped (whatever the run: the file is
    one crawl's output). Pages without items leave no trace (their results, when they come
    back, are parsed again and write nothing)."""

    def __init__(self, path: str, log: Callable[[str], None] = lambda m: None) -> None:
        super().__init__()
        self.path = path
        self.name = path
        self.log = log
        self.seen: set[str] = set()
        self.mark = _CommitMark(path)
        self.mark.cut(path, log)
        if os.path.exists(path):
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            good = []
            for line in lines:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash: written again with its response
                if isinstance(item, dict):
                    self.seen.add(item.get("requestHash", ""))
                good.append(line)
            data = b"".join(g + b"\n" for g in good)
            if len(data) != os.path.getsize(path):
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                if self.mark.read() is not None:
                    self.mark.write(len(data))
        self.f = open(path, "ab")

    # The worker's interface.
    def committed(self, run: str, request_hashes: Sequence[str]) -> set[str]:
        return {h for h in request_hashes if h in self.seen}

    def commit(self, run: str, pages: Sequence[Page]) -> None:
        fresh = _fresh(pages, self.committed(run, [p.request_hash for p in pages]))
        self.stats["skipped_pages"] += len(pages) - len(fresh)
        self.mark.ensure(self.f.tell())
        for p in fresh:
            self.write_hash(p.request_hash, p.items)
            self.stats["items"] += len(p.items)
        self.flush()
        self.mark.write(self.f.tell())
        self.stats["pages"] += len(fresh)
        self.stats["commits"] += 1

    def close(self) -> None:
        self.f.close()

    # Page by page (the Scrapy bridge's items file builds on these).
    def already(self, response: Any) -> bool:
        return self.already_hash(response.request_hash)

    def already_hash(self, request_hash: str) -> bool:
        return request_hash in self.seen

    def write(self, response: Any, items: list[dict]) -> None:
        self.write_hash(response.request_hash, items)

    def write_hash(self, request_hash: str, items: list[dict]) -> None:
        out = b""
        for item in items:
            item = dict(item)
            item.setdefault("requestHash", request_hash)
            out += json.dumps(item, ensure_ascii=False, default=str).encode() + b"\n"
        self.f.write(out)
        if items:
            self.seen.add(request_hash)

    def flush(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())


class CsvSink(Sink):
    """Items as CSV rows with a header: the columns are the declared schema's (in its
    order), else the first item's keys, then ``request_hash``; a later item's keys that are
    not columns are dropped (counted, warned once each). Lists and dicts are written as
    JSON, None as an empty field. Exactly once per page as :class:`JsonLinesSink`."""

    def __init__(self, path: str, schema: Optional[dict[str, str]] = None,
                 log: Callable[[str], None] = lambda m: None) -> None:
        super().__init__()
        self.path = path
        self.name = "csv:" + path
        self.log = log
        self.seen: set[str] = set()
        self.columns: Optional[list[str]] = list(check_schema(schema)) if schema else None
        self.mark = _CommitMark(path)
        self.mark.cut(path, log)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, newline="", encoding="utf-8") as f:
                rows = csv.reader(f)
                header = next(rows, None)
                if not header or header[-1] != HASH_COLUMN:
                    raise SinkError(f"{path}: not a CSV items file of spiderhub (its last "
                                    f"column is not {HASH_COLUMN})")
                self.columns = header[:-1]
                for row in rows:
                    if row:
                        self.seen.add(row[-1])
        self.f = open(path, "ab")

    def committed(self, run: str, request_hashes: Sequence[str]) -> set[str]:
        return {h for h in request_hashes if h in self.seen}

    def commit(self, run: str, pages: Sequence[Page]) -> None:
        fresh = _fresh(pages, self.committed(run, [p.request_hash for p in pages]))
        self.stats["skipped_pages"] += len(pages) - len(fresh)
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        header = None
        if self.columns is None:
            first = next((i for p in fresh for i in p.items), None)
            if first is not None:
                header = self.columns = [k for k in first if _usable_column(k)]
        elif self.f.tell() == 0 and any(p.items for p in fresh):
            header = self.columns
        if header is not None:
            out.writerow(header + [HASH_COLUMN])
        columns = set(self.columns or ())
        for p in fresh:
            for item in p.items:
                for k in item:
                    if k not in columns:
                        self.stats["dropped_fields"] += 1
                        self._warn_once(f"drop:{k}", f"field {k!r} is not a column; dropped")
                out.writerow([self._cell(item.get(c)) for c in self.columns or ()]
                             + [p.request_hash])
            self.stats["items"] += len(p.items)
        data = buf.getvalue().encode("utf-8")
        if data:
            self.mark.ensure(self.f.tell())
            self.f.write(data)
            self.f.flush()
            os.fsync(self.f.fileno())
            self.mark.write(self.f.tell())
        self.seen.update(p.request_hash for p in fresh if p.items)
        self.stats["pages"] += len(fresh)
        self.stats["commits"] += 1

    @staticmethod
    def _cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, str):
            return _clean_text(v)
        if isinstance(v, (bool, list, tuple, dict)):
            return _json_text(v)
        return str(v)

    def close(self) -> None:
        self.f.close()


# ---- SQL -----------------------------------------------------------------------------------


class _SqlSink(Sink):
    """What SQLite and PostgreSQL share: the table's columns, rows from items, modes.

    Modes: ``key`` set — upsert: a unique index on the key column, a later item with the
    same key replaces the row (within a batch the last one wins), items without the key are
    dropped and counted; ``key`` None — insert-ignore: a unique index on (request_hash,
    item_index), an item already stored from the same page (an earlier run) is kept."""

    def __init__(self, table: str, key: Optional[str], schema: Optional[dict[str, str]],
                 log: Callable[[str], None]) -> None:
        super().__init__()
        if not _IDENT.match(table or ""):
            raise SinkError(f"table {table!r}: letters, digits and _ (not first), at most 63")
        if table == PAGES_TABLE:
            raise SinkError(f"table {table!r} is the sinks' record of pages")
        self.table = table
        self.key = check_column(key) if key is not None else None
        self.declared = check_schema(schema) if schema else None
        if self.key and self.declared is not None and self.key not in self.declared:
            raise SinkError(f"key {self.key!r} is not a column of the declared schema")
        self.log = log
        self.columns: Optional[dict[str, str]] = None  # name -> type, once the table exists
        # The unique index was made (or found) by a commit of this process: later commits
        # skip CREATE INDEX, whose table lock would serialize (or deadlock) the commits of
        # several workers on one PostgreSQL table.
        self.indexed = False

    @property
    def mode(self) -> str:
        return f"upsert by {self.key}" if self.key else f"insert-ignore by {HASH_COLUMN}"

    def _new_columns(self, pages: Sequence[Page]) -> dict[str, str]:
        """Columns the items need that the table lacks (none with a declared schema: its
        other keys are dropped). Before the table exists: all of them."""
        if self.declared is not None:
            return {n: k for n, k in self.declared.items() if n not in (self.columns or {})}
        have = self.columns or {}
        new: dict[str, str] = {}
        for p in pages:
            for item in p.items:
                for k, v in item.items():
                    if k in have or k in new or not _usable_column(k):
                        continue
                    new[k] = infer_type(v)
        for k, v in list(new.items()):  # a first value None: text, unless a later is typed
            if v == "text":
                for p in pages:
                    for item in p.items:
                        if item.get(k) is not None:
                            new[k] = infer_type(item[k])
                            break
                    else:
                        continue
                    break
        if self.key and self.columns is None and self.key not in new:
            new[self.key] = "text"
        return new

    def _rows(self, pages: Sequence[Page]) -> tuple[list[str], list[tuple]]:
        """(column names, one tuple per item) for the INSERT, values converted to the
        columns' types; upsert mode keeps the last item of each key."""
        assert self.columns is not None
        names = list(self.columns)
        rows: list[tuple] = []
        by_key: dict[Any, int] = {}
        key_at = names.index(self.key) if self.key else -1
        for p in pages:
            for index, item in enumerate(p.items):
                values = []
                for name in names:
                    ok, v = convert(item.get(name), self.columns[name])
                    if not ok:
                        self.stats["type_errors"] += 1
                        self._warn_once(f"type:{name}", f"column {name!r} "
                                        f"({self.columns[name]}): {item.get(name)!r} is not "
                                        "one; stored as NULL (counted in type_errors)")
                    values.append(self._adapt(v, self.columns[name]))
                for k in item:
                    if k not in self.columns:
                        self.stats["dropped_fields"] += 1
                        self._warn_once(f"drop:{k}", f"field {k!r} is not a column of "
                                        f"{self.table}; dropped")
                row = tuple(values) + (p.request_hash, index)
                if self.key:
                    k = row[key_at]
                    if k is None:
                        self.stats["items_without_key"] += 1
                        self._warn_once("nokey", f"items without {self.key!r} dropped "
                                        "(counted in items_without_key)")
                        continue
                    if k in by_key:
                        rows[by_key[k]] = row
                        continue
                    by_key[k] = len(rows)
                rows.append(row)
        return names + [HASH_COLUMN, INDEX_COLUMN], rows

    def _adapt(self, v: Any, kind: str) -> Any:
        return v


class SQLiteSink(_SqlSink):
    """Items in a SQLite table (standard library ``sqlite3``; WAL, synchronous=FULL): a
    batch is one ``BEGIN IMMEDIATE`` transaction — page records first (pages already there
    are skipped), then the items with ``executemany``."""

    def __init__(self, path: str, table: str = "items", key: Optional[str] = None,
                 schema: Optional[dict[str, str]] = None,
                 log: Callable[[str], None] = lambda m: None) -> None:
        super().__init__(table, key, schema, log)
        self.path = path
        q = {"table": table}
        if key:
            q["key"] = key
        self.name = "sqlite:" + path + "?" + urllib.parse.urlencode(q)
        import sqlite3  # here: a Python built without it still runs the other sinks
        self._sqlite = sqlite3
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {PAGES_TABLE} (item_table TEXT NOT NULL, "
            "run TEXT NOT NULL, request_hash TEXT NOT NULL, result_id INTEGER, "
            "items INTEGER NOT NULL, committed_at REAL NOT NULL, "
            "PRIMARY KEY (item_table, run, request_hash)) WITHOUT ROWID")
        self.columns = self._table_columns()
        if self.columns is None and self.declared is not None:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self._ensure_table([])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @staticmethod
    def _q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    _DECL = {"text": "TEXT", "integer": "INTEGER", "real": "REAL", "boolean": "BOOLEAN",
             "json": "TEXT"}

    def _table_columns(self) -> Optional[dict[str, str]]:
        info = self.db.execute(f"PRAGMA table_info({self._q(self.table)})").fetchall()
        if not info:
            return None
        out = {}
        for _, name, decl, *_ in info:
            if name in (HASH_COLUMN, INDEX_COLUMN):
                continue
            d = (decl or "").upper()
            out[name] = ("integer" if "INT" in d else "boolean" if "BOOL" in d else
                         "text" if any(t in d for t in ("CHAR", "CLOB", "TEXT")) else
                         "real" if any(t in d for t in ("REAL", "FLOA", "DOUB")) else "any")
        return out

    def _ensure_table(self, pages: Sequence[Page]) -> None:
        new = self._new_columns(pages)
        t = self._q(self.table)
        if self.columns is None:
            if not new:
                return
            cols = ", ".join(f"{self._q(n)} {self._DECL[k]}" for n, k in new.items())
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {t} ({cols}, "
                            f"{HASH_COLUMN} TEXT NOT NULL, {INDEX_COLUMN} INTEGER NOT NULL)")
            self.columns = self._table_columns()
            new = {n: k for n, k in new.items() if n not in (self.columns or {})}
        for n, k in new.items():
            self.db.execute(f"ALTER TABLE {t} ADD COLUMN {self._q(n)} {self._DECL[k]}")
        if new:
            self.columns = self._table_columns()
        if self.indexed:
            return
        if self.key:
            self.db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS "
                            f"{self._q(self.table + '_key_' + self.key)} ON {t} "
                            f"({self._q(self.key)})")
        else:
            self.db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS "
                            f"{self._q(self.table + '_page_item')} ON {t} "
                            f"({HASH_COLUMN}, {INDEX_COLUMN})")
        self.indexed = True  # undone when the transaction rolls back

    def _adapt(self, v: Any, kind: str) -> Any:
        if kind == "json" and v is not None:
            return _json_text(v)
        return v

    def _committed(self, run: str, hashes: Sequence[str]) -> set[str]:
        out: set[str] = set()
        hashes = list(hashes)
        for i in range(0, len(hashes), BATCH_ROWS):
            chunk = hashes[i:i + BATCH_ROWS]
            out.update(h for (h,) in self.db.execute(
                f"SELECT request_hash FROM {PAGES_TABLE} WHERE item_table = ? AND run = ? "
                f"AND request_hash IN ({','.join('?' * len(chunk))})",
                [self.table, run, *chunk]))
        return out

    def committed(self, run: str, request_hashes: Sequence[str]) -> set[str]:
        return self._committed(run, request_hashes)

    def commit(self, run: str, pages: Sequence[Page]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")  # the write lock first: the check below holds
        columns_before = self.columns
        items = 0
        try:
            fresh = _fresh(pages, self._committed(run, [p.request_hash for p in pages]))
            if any(p.items for p in fresh):
                self._ensure_table(fresh)
            if self.columns is not None:
                names, rows = self._rows(fresh)
                if rows:
                    cols = ", ".join(self._q(n) for n in names)
                    if self.key:
                        update = ", ".join(f"{self._q(n)} = excluded.{self._q(n)}"
                                           for n in names if n != self.key)
                        tail = f"ON CONFLICT ({self._q(self.key)}) DO UPDATE SET {update}"
                    else:
                        tail = f"ON CONFLICT ({HASH_COLUMN}, {INDEX_COLUMN}) DO NOTHING"
                    db.executemany(f"INSERT INTO {self._q(self.table)} ({cols}) VALUES "
                                   f"({', '.join('?' * len(names))}) {tail}", rows)
                    items = len(rows)
            now = time.time()
            db.executemany(f"INSERT INTO {PAGES_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                           [(self.table, run, p.request_hash, p.result_id, len(p.items), now)
                            for p in fresh])
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
                self.columns = self._table_columns()
            except self._sqlite.Error:
                self.columns = columns_before
            self.indexed = False
            raise
        self.stats["skipped_pages"] += len(pages) - len(fresh)
        self.stats["pages"] += len(fresh)
        self.stats["items"] += items
        self.stats["commits"] += 1

    def close(self) -> None:
        self.db.close()


class PostgresSink(_SqlSink):
    """Items in a PostgreSQL table (psycopg2): a batch is one transaction — page records
    inserted with ``ON CONFLICT DO NOTHING RETURNING`` (a page another worker or an
    earlier life recorded is skipped, even one committed concurrently), then the items
    with multi-row INSERTs (``execute_values``). A lost connection is opened again on the
    next call. Columns: text, bigint, double precision, boolean, jsonb."""

    _DECL = {"text": "text", "integer": "bigint", "real": "double precision",
             "boolean": "boolean", "json": "jsonb"}

    def __init__(self, dsn: str, table: str = "items", key: Optional[str] = None,
                 schema: Optional[dict[str, str]] = None,
                 log: Callable[[str], None] = lambda m: None, name: str = "") -> None:
        super().__init__(table, key, schema, log)
        try:
            import psycopg2
            import psycopg2.extras
            import psycopg2.sql
        except ImportError as e:
            raise ImportError(PSYCOPG2_MISSING) from e
        self._pg = psycopg2
        self.dsn = dsn
        self.name = name or redact(dsn)
        self.conn = None
        self._connect()

    def _connect(self):
        if self.conn is not None and not self.conn.closed:
            return self.conn
        self.conn = self._pg.connect(self.dsn)
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {PAGES_TABLE} (item_table text NOT NULL, "
                "run text NOT NULL, request_hash text NOT NULL, result_id bigint, "
                "items integer NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (item_table, run, request_hash))")
            self.columns = self._table_columns(cur)
            if self.columns is None and self.declared is not None:
                self._ensure_table(cur, [])
        return self.conn

    def _ident(self, *names: str):
        return self._pg.sql.Identifier(*names)

    def _table_columns(self, cur) -> Optional[dict[str, str]]:
        cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s "
                    "ORDER BY ordinal_position", (self.table,))
        info = cur.fetchall()
        if not info:
            return None
        kinds = {"text": "text", "character varying": "text", "character": "text",
                 "bigint": "integer", "integer": "integer", "smallint": "integer",
                 "double precision": "real", "real": "real", "numeric": "real",
                 "boolean": "boolean", "jsonb": "json", "json": "json"}
        return {n: kinds.get(t, "any") for n, t in info if n not in (HASH_COLUMN, INDEX_COLUMN)}

    def _ensure_table(self, cur, pages: Sequence[Page]) -> None:
        sql = self._pg.sql
        new = self._new_columns(pages)
        t = self._ident(self.table)
        if self.columns is None:
            if not new:
                return
            cols = sql.SQL(", ").join(
                sql.SQL("{} {}").format(self._ident(n), sql.SQL(self._DECL[k]))
                for n, k in new.items())
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, {} text NOT NULL, "
                                "{} integer NOT NULL)").format(
                t, cols, self._ident(HASH_COLUMN), self._ident(INDEX_COLUMN)))
            self.columns = self._table_columns(cur)
            new = {n: k for n, k in new.items() if n not in (self.columns or {})}
        for n, k in new.items():
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                t, self._ident(n), sql.SQL(self._DECL[k])))
        if new:
            self.columns = self._table_columns(cur)
        if self.indexed:
            return
        if self.key:
            cur.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                self._ident(self.table + "_key_" + self.key), t, self._ident(self.key)))
        else:
            cur.execute(sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}, {})").format(
                self._ident(self.table + "_page_item"), t, self._ident(HASH_COLUMN),
                self._ident(INDEX_COLUMN)))
        self.indexed = True  # undone when the transaction rolls back

    def _adapt(self, v: Any, kind: str) -> Any:
        if kind == "json" and v is not None:
            return self._pg.extras.Json(v, dumps=_json_text)
        return v

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """``work(cursor)`` in one transaction; the connection dropped when it failed."""
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                return work(cur)
        except (self._pg.OperationalError, self._pg.InterfaceError):
            try:
                conn.close()
            except self._pg.Error:
                pass
            raise

    def committed(self, run: str, request_hashes: Sequence[str]) -> set[str]:
        def work(cur):
            cur.execute(f"SELECT request_hash FROM {PAGES_TABLE} WHERE item_table = %s AND "
                        "run = %s AND request_hash = ANY(%s)",
                        (self.table, run, list(request_hashes)))
            return {h for (h,) in cur.fetchall()}
        return self._run(work) if request_hashes else set()

    def commit(self, run: str, pages: Sequence[Page]) -> None:
        sql = self._pg.sql
        execute_values = self._pg.extras.execute_values
        columns_before = self.columns
        counts = {}

        def work(cur):
            unique = _fresh(pages, set())
            fresh_hashes = set()
            if unique:
                rows = [(self.table, run, p.request_hash, p.result_id, len(p.items))
                        for p in unique]
                fresh_hashes = {h for (h,) in execute_values(
                    cur, f"INSERT INTO {PAGES_TABLE} (item_table, run, request_hash, "
                         "result_id, items) VALUES %s ON CONFLICT DO NOTHING "
                         "RETURNING request_hash", rows, page_size=BATCH_ROWS, fetch=True)}
            fresh = [p for p in unique if p.request_hash in fresh_hashes]
            if any(p.items for p in fresh):
                self._ensure_table(cur, fresh)
            items = 0
            if self.columns is not None:
                names, rows = self._rows(fresh)
                if rows:
                    cols = sql.SQL(", ").join(self._ident(n) for n in names)
                    if self.key:
                        update = sql.SQL(", ").join(
                            sql.SQL("{} = EXCLUDED.{}").format(self._ident(n), self._ident(n))
                            for n in names if n != self.key)
                        tail = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
                            self._ident(self.key), update)
                    else:
                        tail = sql.SQL("ON CONFLICT ({}, {}) DO NOTHING").format(
                            self._ident(HASH_COLUMN), self._ident(INDEX_COLUMN))
                    query = sql.SQL("INSERT INTO {} ({}) VALUES %s {}").format(
                        self._ident(self.table), cols, tail).as_string(cur)
                    execute_values(cur, query, rows, page_size=BATCH_ROWS)
                    items = len(rows)
            counts.update(fresh=len(fresh), items=items)

        try:
            self._run(work)
        except BaseException:
            self.columns = columns_before
            self.indexed = False
            raise
        self.stats["skipped_pages"] += len(pages) - counts["fresh"]
        self.stats["pages"] += counts["fresh"]
        self.stats["items"] += counts["items"]
        self.stats["commits"] += 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# ---- destinations --------------------------------------------------------------------------

_SECRET_PARAMS = ("password", "sslpassword")


def redact(dest: str) -> str:
    """``dest`` with the password of a PostgreSQL URL (user:PASSWORD@, ?password=) or of a
    key/value DSN (password=...) replaced by ***; other destinations as they are."""
    if re.match(r"^postgres(?:ql)?://", dest, re.I):
        u = urllib.parse.urlsplit(dest)
        netloc = u.netloc
        if "@" in netloc:
            cred, _, host = netloc.rpartition("@")
            if ":" in cred:
                cred = cred.split(":", 1)[0] + ":***"
            netloc = cred + "@" + host
        params = []
        for kv in u.query.split("&"):
            name = kv.partition("=")[0]
            params.append(name + "=***" if name.lower() in _SECRET_PARAMS else kv)
        query = "&".join(params)
        return urllib.parse.urlunsplit((u.scheme, netloc, u.path, query, u.fragment))
    if "=" in dest and not re.match(r"^[a-z][a-z0-9+.-]*:", dest, re.I):
        return re.sub(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dest,
                      flags=re.I)
    return dest


def scrub(message: str, dest: str) -> str:
    """``message`` (an error about ``dest``) without the passwords ``dest`` holds."""
    if re.match(r"^postgres(?:ql)?://", dest, re.I):
        u = urllib.parse.urlsplit(dest)
        secrets = [u.password or "", urllib.parse.unquote(u.password or "")]
        secrets += [v for k, v in urllib.parse.parse_qsl(u.query) if k.lower() in _SECRET_PARAMS]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            message = message.replace(secret, "***")
            message = message.replace(urllib.parse.quote(secret, safe=""), "***")
    return message


def _sink_params(query: str, allowed: Iterable[str], dest: str) -> tuple[dict, list]:
    """(our parameters, the others as (name, value) pairs) of a destination's query."""
    ours: dict[str, str] = {}
    rest = []
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if k in ("table", "key", "columns"):
            ours[k] = v
        elif k in allowed:
            rest.append((k, v))
        else:
            raise SinkError(f"{redact(dest)}: unknown parameter {k!r} (table, key, columns)")
    return ours, rest


def open_sink(dest: str, schema: Optional[dict[str, str]] = None,
              log: Callable[[str], None] = lambda m: None) -> Sink:
    """A sink for a destination of the command line:

    - ``PATH`` or ``jsonl:PATH`` — JSON lines (:class:`JsonLinesSink`);
    - ``PATH.csv`` or ``csv:PATH`` — CSV (:class:`CsvSink`);
    - ``sqlite:PATH[?table=T&key=F&columns=...]`` — SQLite (:class:`SQLiteSink`);
      ``sqlite:///abs/path.db`` is ``/abs/path.db``, ``sqlite:rel.db`` relative;
    - ``postgresql://[user[:password]@]host[:port]/db[?table=T&key=F&columns=...&libpq
      parameters]`` (or ``postgres://``) — PostgreSQL (:class:`PostgresSink`).

    ``table`` defaults to ``items``; ``key`` turns on upsert by that field; ``columns``
    (``name:type,...``, types text/integer/real/boolean/json) declares the schema, else
    ``schema`` (the spider's ``item_schema``) does, else the first item's keys. Raises
    SinkError for a bad destination (its message never holds a password)."""
    low = dest.lower()
    if low.startswith(("postgresql://", "postgres://")):
        u = urllib.parse.urlsplit(dest)
        ours, rest = _sink_params(u.query, _LIBPQ_PARAMS, dest)
        columns = parse_columns(ours["columns"]) if "columns" in ours else schema
        dsn = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path,
                                       urllib.parse.urlencode(rest), ""))
        return PostgresSink(dsn, table=ours.get("table", "items"), key=ours.get("key") or None,
                            schema=columns, log=log, name=redact(dest))
    if low.startswith("sqlite:"):
        rest_of = dest[len("sqlite:"):]
        path, _, query = rest_of.partition("?")
        if path.startswith("//"):
            if not path.startswith("///"):
                raise SinkError(f"{dest}: a SQLite destination has no host: sqlite:///abs/path "
                                "or sqlite:relative/path")
            path = path[2:]
        if not path:
            raise SinkError(f"{dest}: no database path")
        ours, _ = _sink_params(query, (), dest)
        columns = parse_columns(ours["columns"]) if "columns" in ours else schema
        return SQLiteSink(path, table=ours.get("table", "items"), key=ours.get("key") or None,
                          schema=columns, log=log)
    if low.startswith("csv:") or (low.endswith(".csv") and not low.startswith("jsonl:")):
        path = dest[4:] if low.startswith("csv:") else dest
        if not path:
            raise SinkError(f"{dest}: no file path")
        return CsvSink(path, schema=schema, log=log)
    if re.match(r"^[a-z][a-z0-9+.-]+://", low):
        raise SinkError(f"{redact(dest)}: unknown kind of destination (a file path, "
                        "jsonl:, csv:, sqlite:, postgresql://)")
    path = dest[6:] if low.startswith("jsonl:") else dest
    if not path:
        raise SinkError(f"{dest}: no file path")
    return JsonLinesSink(path, log=log)


# Connection parameters libpq takes in a URI's query (PostgreSQL 15's documentation).
_LIBPQ_PARAMS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "channel_binding",
    "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode",
    "requiressl", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslrootcert",
    "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "service",
    "target_session_attrs"})
