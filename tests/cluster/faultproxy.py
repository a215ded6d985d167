"""A userspace TCP fault proxy for the cluster tests (the kernel here has no netem).

One listener forwards every accepted connection to one upstream address. Its faults can
be changed while connections are open:

  pass        forward as they come
  delay MS    hold every chunk MS milliseconds before forwarding it (latency, not a
              throughput cap: a chunk is read at once and written when its time comes)
  loss P      a chunk is held an extra 300 ms with probability P: what a lost segment
              costs TCP (a retransmission timeout); bytes are never dropped, TCP would
              not drop them either
  blackhole   the connections open now forward nothing in either direction and read
              nothing: the peers' windows fill, no FIN and no RST is sent, they just go
              silent (new connections pass, unless the whole route is black-holed)
  reset       close every open connection with RST (SO_LINGER 0)
  refuse      new connections are reset as soon as they are accepted

Used as a library (FaultProxy) by tests/cluster/lab.py; `python3 faultproxy.py LISTEN
UPSTREAM` runs one by hand (faults are then changed from a Python shell only)."""
import collections
import random
import socket
import struct
import sys
import threading
import time

CHUNK = 256 * 1024
LOSS_PENALTY_S = 0.3


class _Pipe:
    """One direction of one connection: a reader thread queues (due time, bytes), a writer
    thread sends each chunk when it is due and the proxy is not black-holing."""

    def __init__(self, proxy, conn, src, dst):
        self.proxy, self.conn, self.src, self.dst = proxy, conn, src, dst
        self.queue = collections.deque()
        self.cv = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self):
        try:
            while not self.conn.closed:
                self.proxy.wait_unless_blackhole(self.conn)
                if self.conn.closed:
                    break
                data = self.src.recv(CHUNK)
                if not data:
                    break
                due = time.monotonic() + self.proxy.delay_s
                if self.proxy.loss and random.random() < self.proxy.loss:
                    due += LOSS_PENALTY_S
                with self.cv:
                    self.queue.append((due, data))
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.eof = True
            self.cv.notify()

    def _write(self):
        try:
            while True:
                with self.cv:
                    while not self.queue and not self.eof:
                        self.cv.wait(0.5)
                    if not self.queue and self.eof:
                        break
                    due, data = self.queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.proxy.wait_unless_blackhole(self.conn)
                if self.conn.closed:
                    return
                self.dst.sendall(data)
                with self.cv:
                    self.queue.popleft()
            # The source closed: pass the half-close on.
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.conn.half_done()


class _Conn:
    def __init__(self, proxy, client, upstream):
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.closed = False
        self.held = False  # black-holed
        self.halves = 0
        self.lock = threading.Lock()
        _Pipe(proxy, self, client, upstream)
        _Pipe(proxy, self, upstream, client)

    def half_done(self):
        with self.lock:
            self.halves += 1
            last = self.halves == 2
        if last:
            self.close()

    def close(self, rst=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass
        self.proxy.forget(self)


class FaultProxy:
    def __init__(self, listen, upstream, name="proxy"):
        """listen, upstream: (host, port); port 0 picks a free one (see .port)."""
        self.name = name
        self.upstream = upstream
        self.delay_s = 0.0
        self.loss = 0.0
        self.mode = "pass"
        self.refusing = False
        self.conns = set()
        self.accepted = 0
        self.lock = threading.Lock()
        self.flow = threading.Condition(self.lock)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(128)
        self.host, self.port = self.sock.getsockname()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---- faults ---------------------------------------------------------------------

    def set_pass(self):
        with self.flow:
            self.mode, self.delay_s, self.loss, self.refusing = "pass", 0.0, 0.0, False
            for c in self.conns:
                c.held = False
            self.flow.notify_all()

    def set_delay(self, ms):
        self.delay_s = ms / 1000.0

    def set_loss(self, p):
        self.loss = p

    def blackhole(self, new_connections_too=False):
        """Silences the open connections (and every later one with new_connections_too);
        returns how many were open."""
        with self.flow:
            for c in self.conns:
                c.held = True
            if new_connections_too:
                self.mode = "blackhole"
            return len(self.conns)

    def refuse(self, on=True):
        self.refusing = on

    def reset_all(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close(rst=True)
        # Threads stuck in a black hole wake up and see their connection closed.
        with self.flow:
            self.flow.notify_all()
        return len(conns)

    def open_connections(self):
        with self.lock:
            return len(self.conns)

    def wait_unless_blackhole(self, conn):
        with self.flow:
            while (conn.held or self.mode == "blackhole") and not conn.closed and not self.stopped:
                self.flow.wait(0.5)

    # ---- plumbing -------------------------------------------------------------------

    def forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
            conn = _Conn(self, client, up)
            with self.lock:
                self.conns.add(conn)

    def close(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.reset_all()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: faultproxy.py LISTEN_HOST:PORT UPSTREAM_HOST:PORT")
    lh, lp = sys.argv[1].rsplit(":", 1)
    uh, up = sys.argv[2].rsplit(":", 1)
    p = FaultProxy((lh, int(lp)), (uh, int(up)))
    print(f"forwarding {p.host}:{p.port} -> {uh}:{up}", flush=True)
    while True:
        time.sleep(3600)
