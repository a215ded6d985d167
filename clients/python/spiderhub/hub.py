"""A SignalR JSON hub client over WebSocket (RFC 6455), Python standard library only.

Enough of both protocols for spiderhub's hubs: the negotiation (``POST
{hub}/negotiate?negotiateVersion=1``), the JSON hub handshake, invocations in both
directions, completions, pings and close messages (docs/protocol.md). One reader thread
per connection delivers server invocations to handlers and completes pending calls.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from concurrent.futures import Future
from typing import Any, Callable, Iterable

RS = "\x1e"  # SignalR record separator


class HubError(Exception):
    """A call the broker answered with an error, or a connection that failed."""


class ConnectionLost(HubError):
    """The connection closed while a call was waiting (the call may have been applied)."""


def _split_url(base: str) -> tuple[bool, str, int, str]:
    u = urllib.parse.urlsplit(base)
    if u.scheme not in ("http", "https", "ws", "wss") or not u.hostname:
        raise ValueError(f"broker URL must be http(s)://host[:port]/, got {base!r}")
    tls = u.scheme in ("https", "wss")
    return tls, u.hostname, u.port or (443 if tls else 80), u.path.rstrip("/")


def split_brokers(brokers: str | Iterable[str]) -> list[str]:
    """Broker base URLs from one URL, a comma-separated list ``"URL1,URL2"`` or a list of
    them (brokers sharing one database: one is active, the others answer 503). Raises
    ValueError naming an element that is empty, not http(s)/ws(s)://host, or given twice."""
    parts = brokers.split(",") if isinstance(brokers, str) else \
        [p for b in brokers for p in str(b).split(",")]
    out: list[str] = []
    for i, p in enumerate(parts, 1):
        p = p.strip()
        if not p:
            raise ValueError(f"broker list {brokers!r}: element {i} is empty")
        _split_url(p)
        if p.rstrip("/").lower() in (o.rstrip("/").lower() for o in out):
            raise ValueError(f"broker list {brokers!r}: {p!r} is listed twice")
        out.append(p)
    return out


class HubConnection:
    """One connection to a hub. ``on(target, fn)`` before ``connect()``; then ``invoke``
    (blocking) or ``send`` (a Future) from any thread."""

    def __init__(self, base_url: str, hub: str, query: dict[str, str],
                 timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 idle_timeout: float = 20.0) -> None:
        self.tls, self.host, self.port, self.prefix = _split_url(base_url)
        self.hub = hub
        self.query = query
        self.timeout = timeout
        # Nothing received this long (the broker pings every few seconds): the link is
        # dead even if TCP has not noticed (a black-holed or frozen broker); close it.
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context or (ssl.create_default_context() if self.tls else None)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.on_close: Callable[[str], None] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._pending: dict[str, Future] = {}
        self._pending_lock = threading.Lock()
        self._next_id = 0
        self._closed = threading.Event()
        self.close_reason = ""
        self._buf = b""      # bytes read past the last frame
        self._records = ""   # text read past the last SignalR record

    # ---- connecting -------------------------------------------------------------------

    def on(self, target: str, fn: Callable[..., Any]) -> None:
        self.handlers[target] = fn

    def _negotiate(self, qs: str) -> None:
        cls = http.client.HTTPSConnection if self.tls else http.client.HTTPConnection
        kw = {"context": self.ssl_context} if self.tls else {}
        c = cls(self.host, self.port, timeout=self.timeout, **kw)
        try:
            c.request("POST", f"{self.prefix}{self.hub}/negotiate?negotiateVersion=1&{qs}", b"")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise HubError(f"negotiation refused: HTTP {r.status}: {body[:300]!r}")
        finally:
            c.close()

    def connect(self) -> None:
        qs = urllib.parse.urlencode(self.query)
        self._negotiate(qs)
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock = self.ssl_context.wrap_socket(raw, server_hostname=self.host) if self.tls else raw
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {self.prefix}{self.hub}?{qs} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise HubError("connection closed during the WebSocket upgrade")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise HubError(f"upgrade refused: {status}: {rest[:300]!r}")
        self._sock = sock
        self._buf = rest
        self._send_frame(0x1, (json.dumps({"protocol": "json", "version": 1}) + RS).encode())
        # The handshake answer is the first record: {} or {"error": ...}.
        first = self._read_record()
        if first is None:
            raise HubError("connection closed during the hub handshake")
        if json.loads(first).get("error"):
            raise HubError(f"hub handshake refused: {first}")
        sock.settimeout(self.idle_timeout if self.idle_timeout > 0 else None)
        threading.Thread(target=self._reader, name=f"hub{self.hub}", daemon=True).start()
        threading.Thread(target=self._pinger, name=f"ping{self.hub}", daemon=True).start()

    # ---- frames -----------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
             ).to_bytes(n, "big")
        with self._send_lock:
            if self._sock is None:
                raise ConnectionLost("not connected")
            self._sock.sendall(head + mask + masked)

    def _recv_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                return None
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_message(self) -> bytes | None:
        """One text message (fragments joined); None when the connection ended."""
        parts = []
        while True:
            h = self._recv_exact(2)
            if h is None:
                return None
            fin, opcode, n = h[0] & 0x80, h[0] & 0x0F, h[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2) or b"\0\0")[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8) or b"\0" * 8)[0]
            payload = self._recv_exact(n) if n else b""
            if payload is None:
                return None
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if fin:
                return b"".join(parts)

    def _read_record(self) -> str | None:
        while RS not in self._records:
            msg = self._read_message()
            if msg is None:
                return None
            self._records += msg.decode()
        rec, self._records = self._records.split(RS, 1)
        return rec

    # ---- the hub protocol -------------------------------------------------------------

    def _reader(self) -> None:
        reason = "connection closed"
        try:
            while True:
                rec = self._read_record()
                if rec is None:
                    break
                m = json.loads(rec)
                t = m.get("type")
                if t == 1:
                    fn = self.handlers.get(m.get("target", ""))
                    if fn:
                        try:
                            fn(*m.get("arguments", []))
                        except Exception as e:  # noqa: BLE001 - a handler must not kill us
                            print(f"spiderhub: handler of {m.get('target')} failed: {e!r}",
                                  flush=True)
                elif t == 3:
                    with self._pending_lock:
                        f = self._pending.pop(m.get("invocationId", ""), None)
                    if f:
                        if m.get("error"):
                            f.set_exception(HubError(m["error"]))
                        else:
                            f.set_result(m.get("result"))
                elif t == 7:
                    reason = m.get("error") or "closed by the broker"
                    break
        except socket.timeout:
            reason = f"nothing received from the broker for {self.idle_timeout:g}s"
        except (OSError, ValueError) as e:
            reason = f"connection failed: {e}"
        self.close(reason)

    def _pinger(self) -> None:
        while not self._closed.wait(15):
            try:
                self._send_frame(0x1, (json.dumps({"type": 6}) + RS).encode())
            except OSError:
                return

    def send(self, target: str, *args: Any) -> Future:
        """Starts a call; the Future holds its result (or HubError / ConnectionLost)."""
        f: Future = Future()
        with self._pending_lock:
            if self._closed.is_set():
                f.set_exception(ConnectionLost(self.close_reason))
                return f
            self._next_id += 1
            inv = str(self._next_id)
            self._pending[inv] = f
        try:
            self._send_frame(0x1, (json.dumps({"type": 1, "invocationId": inv, "target": target,
                                               "arguments": list(args)}) + RS).encode())
        except OSError as e:
            self.close(f"send failed: {e}")
        return f

    def invoke(self, target: str, *args: Any, timeout: float | None = None) -> Any:
        return self.send(target, *args).result(timeout or self.timeout)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, reason: str = "closed by the client") -> None:
        with self._pending_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self.close_reason = reason
            pending, self._pending = self._pending, {}
        for f in pending.values():
            if not f.done():
                f.set_exception(ConnectionLost(reason))
        try:
            if self._sock:
                self._sock.close()
        except OSError:
            pass
        if self.on_close:
            self.on_close(reason)


def connection_sign(token: str, subject: str, ts: int) -> str:
    return hmac.new(token.encode(), f"{subject}\n{ts}".encode(), hashlib.sha256).hexdigest()


def worker_query(token: str, full_class_name: str, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"fullClassName": full_class_name, "ts": str(ts),
            "sign": connection_sign(token, full_class_name, ts)}
