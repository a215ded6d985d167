"""Minimal WebSocket (RFC 6455) client and SignalR JSON hub client on Python's standard
library, for end-to-end tests that need to talk to the broker's hubs directly or to
misbehave on purpose (garbage, truncated frames, oversized frames, bad signs).

    ws = WebSocket.connect("http://127.0.0.1:5000", "/node", node_query(node_id, token))
    hub = HubConnection(ws)
    hub.handshake()                  # {"protocol":"json","version":1}\\x1e -> {}\\x1e
    hub.start()                      # background reader: completions, invocations, pings
    done = hub.invoke("Heartbeat", {"processCount": 0, "cpu": 1, "freeMemory": 1, "freeSlots": 0})
    done["result"]                   # completion message (dict) of type 3

WebSocket.connect raises HandshakeRefused (with .status and .body) when the server answers
the upgrade with anything but 101. Every blocking call takes a timeout.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid

RS = "\x1e"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeRefused(Exception):
    """The HTTP upgrade was answered with a status other than 101."""

    def __init__(self, status, reason, headers, body):
        super().__init__(f"upgrade refused: HTTP {status} {reason}: {body[:300]!r}")
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class ConnectionClosed(Exception):
    """The WebSocket connection ended (close frame, EOF or socket error)."""


# ---- signs and hub queries ------------------------------------------------------------


def sign(subject, ts, token):
    """hex HMAC-SHA256(key=token, msg=subject + "\\n" + ts)."""
    return hmac.new(token.encode(), f"{subject}\n{ts}".encode(), hashlib.sha256).hexdigest()


def node_query(node_id, token, ts=None, sign_value=None, **overrides):
    """Query of a /node connection with a valid sign unless ts/sign_value say otherwise."""
    ts = int(time.time()) if ts is None else ts
    q = {"nodeId": node_id, "group": "default", "ip": "127.0.0.1", "memory": "4096",
         "nodeType": "1", "os": "Linux e2e", "processorCount": "2", "ts": str(ts),
         "sign": sign(node_id, ts, token) if sign_value is None else sign_value}
    q.update({k: str(v) for k, v in overrides.items()})
    return q


def worker_query(full_class_name, token, ts=None):
    ts = int(time.time()) if ts is None else ts
    return {"fullClassName": full_class_name, "ts": str(ts),
            "sign": sign(full_class_name, ts, token)}


def new_node_id():
    return str(uuid.uuid4())


# ---- WebSocket ------------------------------------------------------------------------


def _mask(payload, key):
    if not payload:
        return b""
    # XOR with the repeated 4-byte key, done on big integers (fast enough for MBs).
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame_header(opcode, length, fin=True, masked=True, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", b0, m | length)
    if length < 1 << 16:
        return struct.pack("!BBH", b0, m | 126, length)
    return struct.pack("!BBQ", b0, m | 127, length)


def encode_frame(opcode, payload, fin=True, mask=True, rsv=0):
    payload = payload.encode() if isinstance(payload, str) else bytes(payload)
    head = frame_header(opcode, len(payload), fin, mask, rsv)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WebSocket:
    """One client connection. Reads happen in one thread at a time; sends are locked."""

    def __init__(self, sock, leftover=b"", response_headers=None):
        self.sock = sock
        self._buf = bytearray(leftover)
        self._send_lock = threading.Lock()
        self.response_headers = response_headers or {}
        self.close_code = None
        self.close_reason = None
        self.closed = False
        self._close_sent = False

    @classmethod
    def connect(cls, base_url, path, query=None, timeout=10.0, headers=None):
        u = urllib.parse.urlsplit(base_url)
        host, port = u.hostname, u.port or 80
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                     "Sec-WebSocket-Version: 13"]
            for k, v in (headers or {}).items():
                lines.append(f"{k}: {v}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status, reason, hdrs, rest = _read_http_head(sock, timeout)
            if status != 101:
                body = _read_http_body(sock, hdrs, rest, timeout)
                raise HandshakeRefused(status, reason, hdrs, body.decode(errors="replace"))
            expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            if hdrs.get("sec-websocket-accept") != expect:
                raise ConnectionClosed(f"bad Sec-WebSocket-Accept {hdrs.get('sec-websocket-accept')!r}")
            return cls(sock, rest, hdrs)
        except BaseException:
            sock.close()
            raise

    # -- sending --

    def send_raw(self, data):
        with self._send_lock:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.send_raw(encode_frame(opcode, payload, fin, mask, rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_large_frame(self, total, chunk=1 << 16, byte=b"a", timeout=30.0):
        """Sends one masked text frame announcing `total` payload bytes, streaming the
        payload in chunks without holding it in memory. Returns the payload bytes written
        before the peer stopped reading (a server that refuses the frame early cuts us)."""
        key = os.urandom(4)
        block = _mask(byte * chunk, key)  # chunk % 4 == 0: every chunk masks the same way
        assert chunk % 4 == 0
        sent = 0
        deadline = time.monotonic() + timeout
        with self._send_lock:
            try:
                self.sock.sendall(frame_header(OP_TEXT, total) + key)
                while sent < total and time.monotonic() < deadline:
                    n = min(chunk, total - sent)
                    self.sock.sendall(block[:n])
                    sent += n
            except (OSError, socket.timeout):
                pass
        return sent

    def send_close(self, code=1000, reason=""):
        if self._close_sent:
            return
        self._close_sent = True
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())
        except OSError:
            pass

    def close(self, code=1000, reason="", wait=2.0):
        """Close handshake: sends a close frame and waits briefly for the peer's. Only
        when no other thread reads this connection."""
        self.send_close(code, reason)
        try:
            end = time.monotonic() + wait
            while not self.closed and time.monotonic() < end:
                self.recv_message(timeout=max(0.05, end - time.monotonic()))
        except (ConnectionClosed, OSError, TimeoutError, socket.timeout):
            pass
        self.abort()

    def abort(self):
        """Drops the TCP connection without a close frame."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- receiving --

    def _fill(self, n, deadline):
        while len(self._buf) < n:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("websocket read timed out")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError("websocket read timed out") from None
            except OSError as e:
                self.closed = True
                raise ConnectionClosed(f"socket error: {e}") from None
            if not data:
                self.closed = True
                raise ConnectionClosed("EOF")
            self._buf += data

    def recv_frame(self, timeout=10.0):
        """Returns (fin, opcode, payload)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self._buf[0], self._buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._fill(4, deadline)
            n, off = struct.unpack("!H", self._buf[2:4])[0], 4
        elif n == 127:
            self._fill(10, deadline)
            n, off = struct.unpack("!Q", self._buf[2:10])[0], 10
        key = None
        if b1 & 0x80:
            self._fill(off + 4, deadline)
            key, off = bytes(self._buf[off:off + 4]), off + 4
        self._fill(off + n, deadline)
        payload = bytes(self._buf[off:off + n])
        del self._buf[:off + n]
        if key:
            payload = _mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_message(self, timeout=10.0):
        """Next data message as (opcode, payload bytes). Answers pings; on a close frame
        answers it, records close_code/close_reason, closes the socket and raises
        ConnectionClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parts, first_op = [], None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            fin, op, payload = self.recv_frame(left)
            if op == OP_PING:
                try:
                    self.send_frame(OP_PONG, payload)
                except OSError:
                    pass
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode(errors="replace")
                self.send_close(self.close_code if len(payload) >= 2 else 1000)
                # Close handshake done: drop the TCP connection (the server waits for
                # our FIN before it reports the connection closed).
                self.abort()
                raise ConnectionClosed(f"close frame {self.close_code} {self.close_reason!r}")
            if op != OP_CONT:
                first_op = op
            parts.append(payload)
            if fin:
                return first_op, b"".join(parts)


def _read_http_head(sock, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no HTTP response head")
        sock.settimeout(left)
        data = sock.recv(4096)
        if not data:
            raise ConnectionClosed(f"EOF before the HTTP response head ({buf[:200]!r})")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, reason, hdrs, rest


def _read_http_body(sock, hdrs, rest, timeout):
    n = int(hdrs.get("content-length", "0") or 0)
    deadline = time.monotonic() + timeout
    body = rest
    while len(body) < n and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (socket.timeout, OSError):
            break
        if not data:
            break
        body += data
    return body[:n] if n else body


def raw_http(base_url, data, timeout=10.0):
    """Sends raw bytes to the server and returns what comes back until EOF/timeout."""
    u = urllib.parse.urlsplit(base_url)
    with socket.create_connection((u.hostname, u.port or 80), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            out += chunk
        return out


# ---- SignalR JSON hub protocol --------------------------------------------------------


class HubConnection:
    """SignalR JSON hub client over a WebSocket. After handshake() call start(): a reader
    thread then collects completions, server-to-client invocations, pings and the close
    message, and answers WebSocket pings."""

    def __init__(self, ws):
        self.ws = ws
        self._cv = threading.Condition()
        self._partial = ""
        self._completions = {}
        self.invocations = []        # server-to-client invocation messages (dicts), in order
        self.pings = 0
        self.close_message = None    # the SignalR close message (type 7), if one came
        self.closed_reason = None    # set once the connection has ended
        self._next_id = 0
        self._thread = None

    @classmethod
    def connect(cls, base_url, path, query, timeout=10.0, handshake=True, start=True):
        hub = cls(WebSocket.connect(base_url, path, query, timeout=timeout))
        if handshake:
            err = hub.handshake(timeout=timeout)
            if err:
                hub.ws.abort()
                raise ConnectionClosed(f"hub handshake refused: {err}")
        if start:
            hub.start()
        return hub

    def handshake(self, request=None, timeout=10.0):
        """Sends the handshake (default json v1) and returns the error text of the reply
        ("" when accepted). Call before start()."""
        self.ws.send_text(request if request is not None
                          else json.dumps({"protocol": "json", "version": 1}) + RS)
        deadline = time.monotonic() + timeout
        while True:
            _, payload = self.ws.recv_message(timeout=max(0.0, deadline - time.monotonic()))
            self._partial += payload.decode()
            if RS in self._partial:
                first, self._partial = self._partial.split(RS, 1)
                return json.loads(first).get("error", "") or ""

    def start(self):
        if self._partial:
            self._dispatch("")
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()
        return self

    def _reader(self):
        reason = "reader stopped"
        try:
            while True:
                _, payload = self.ws.recv_message(timeout=None)
                self._dispatch(payload.decode(errors="replace"))
        except ConnectionClosed as e:
            reason = str(e)
        except Exception as e:  # noqa: BLE001 - anything ends the connection for the test
            reason = f"{type(e).__name__}: {e}"
        with self._cv:
            self.closed_reason = reason
            self._cv.notify_all()

    def _dispatch(self, text):
        self._partial += text
        *records, self._partial = self._partial.split(RS)
        with self._cv:
            for rec in records:
                if not rec:
                    continue
                msg = json.loads(rec)
                t = msg.get("type")
                if t == 3:
                    self._completions[msg.get("invocationId")] = msg
                elif t == 1:
                    self.invocations.append(msg)
                elif t == 6:
                    self.pings += 1
                elif t == 7:
                    self.close_message = msg
            self._cv.notify_all()

    # -- calls --

    def send_record(self, msg):
        self.ws.send_text((msg if isinstance(msg, str) else json.dumps(msg)) + RS)

    def send_invocation(self, target, args, invocation_id=None):
        msg = {"type": 1, "target": target, "arguments": list(args)}
        if invocation_id is not None:
            msg["invocationId"] = invocation_id
        self.send_record(msg)

    def new_id(self):
        with self._cv:
            self._next_id += 1
            return str(self._next_id)

    def invoke(self, target, *args, timeout=10.0):
        """Calls a hub method and returns its completion message (dict with "result" or
        "error"). Raises TimeoutError / ConnectionClosed."""
        inv_id = self.new_id()
        self.send_invocation(target, args, inv_id)
        return self.wait_completion(inv_id, timeout)

    def wait_completion(self, inv_id, timeout=10.0):
        with self._cv:
            ok = self._cv.wait_for(lambda: inv_id in self._completions
                                   or self.closed_reason is not None, timeout)
            if inv_id in self._completions:
                return self._completions.pop(inv_id)
            if not ok:
                raise TimeoutError(f"no completion for invocation {inv_id} in {timeout}s")
            raise ConnectionClosed(f"connection ended before completion {inv_id}: "
                                   f"{self.closed_reason}")

    def wait_invocation(self, target, timeout=10.0, after=0):
        """First server-to-client invocation of `target` at index >= after."""
        def find():
            for m in self.invocations[after:]:
                if m.get("target") == target:
                    return m
            return None
        with self._cv:
            self._cv.wait_for(lambda: find() is not None or self.closed_reason is not None,
                              timeout)
            m = find()
            if m is None:
                raise TimeoutError(f"no {target} invocation in {timeout}s "
                                   f"(closed: {self.closed_reason})")
            return m

    def wait_closed(self, timeout=10.0):
        with self._cv:
            self._cv.wait_for(lambda: self.closed_reason is not None, timeout)
            return self.closed_reason

    @property
    def is_closed(self):
        return self.closed_reason is not None

    def close(self, wait=2.0):
        """SignalR close message, WebSocket close handshake, then the socket is dropped."""
        try:
            self.send_record({"type": 7})
        except OSError:
            pass
        if self._thread is None:
            self.ws.close(wait=wait)
            return
        self.ws.send_close()
        self.wait_closed(wait)
        self.ws.abort()
        self._thread.join(5)


class NodeClient:
    """A well-behaved node on the /node hub: heartbeats every `interval` seconds from a
    thread (random phase) and counts the results."""

    def __init__(self, base_url, token, node_id=None, interval=1.0, free_slots=0):
        self.node_id = node_id or new_node_id()
        self.hub = HubConnection.connect(base_url, "/node", node_query(self.node_id, token))
        self.interval = interval
        self.free_slots = free_slots
        self.ok = 0
        self.errors = []
        self.rtts = []
        self.last_result = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def heartbeat(self, timeout=10.0):
        t0 = time.monotonic()
        c = self.hub.invoke("Heartbeat", {"processCount": 0, "cpu": 3, "freeMemory": 1024,
                                          "freeSlots": self.free_slots}, timeout=timeout)
        self.rtts.append(time.monotonic() - t0)
        return c

    def _loop(self):
        self._stop.wait(random.uniform(0, self.interval))
        while not self._stop.is_set() and not self.hub.is_closed:
            try:
                c = self.heartbeat()
                if "error" in c:
                    self.errors.append(c["error"])
                else:
                    self.ok += 1
                    self.last_result = c.get("result")
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.hub.close()
