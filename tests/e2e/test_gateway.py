"""Gateway and node sessions through real processes: registration (NodeStatus rows in the
SQLite file, /api/v1.0/nodes online), offline on SIGKILL and on silence, reconnection
after broker restarts (SIGTERM and SIGKILL, same DB and port), and hostile clients
(garbage, truncated records and frames, wrong handshakes, a 100 MB frame, unknown
methods, wrong signs, old timestamps) that must not disturb well-behaved nodes."""
import json
import os
import signal
import socket
import sqlite3
import sys
import time
import urllib.parse

import harness as h
import wsclient as ws

HB_S = 1.0          # broker sessions.heartbeat_interval_ms / 1000
MISSED = 3          # broker sessions.missed_heartbeats
BROKER_YAML = f"""
sessions:
  heartbeat_interval_ms: {int(HB_S * 1000)}
  missed_heartbeats: {MISSED}
"""
HUGE = 100 * 1024 * 1024


class Check:
    def __init__(self):
        self.lines = []

    def ok(self, what):
        self.lines.append(what)
        print(f"  ok  {what}", flush=True)


def db_rows(db, sql, *params):
    """Reads the broker's database the way an outside tool would: read-only URI, while
    the broker writes it (WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def status_count(db, node_id):
    return db_rows(db, "SELECT COUNT(*) FROM NodeStatus WHERE NodeId=?", node_id)[0][0]


def db_online(db, node_id):
    rows = db_rows(db, "SELECT IsOnline FROM Node WHERE Id=?", node_id)
    return bool(rows and rows[0][0])


def api_nodes(broker):
    status, nodes = h.api("GET", broker, "/api/v1.0/nodes")
    assert status == 200, (status, nodes)
    return {n["id"]: n for n in nodes}


def api_online(broker, node_id):
    n = api_nodes(broker).get(node_id)
    return bool(n and n["isOnline"])


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def read_id(env, name):
    def get():
        with open(env.path(name + ".id")) as f:
            return f.read().strip() or None
    return h.wait_until(f"{name} id file", get, timeout=15)


def expect_closed(conn, timeout=5.0):
    """Reads a raw WebSocket until the server ends it; returns (text received, close code)."""
    text = ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            _, payload = conn.recv_message(timeout=max(0.05, deadline - time.monotonic()))
            text += payload.decode(errors="replace")
    except ws.ConnectionClosed:
        return text, conn.close_code
    except TimeoutError:
        pass
    raise AssertionError(f"connection still open after {timeout}s (got {text!r})")


def on_alarm(*_):
    raise TimeoutError("test_gateway took longer than 240 s")


def main():
    args = h.parse_args()
    env = h.Env(args, "gateway")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(240)   # the whole test is time-bounded; ctest's limit is 300 s
    check = Check()
    good = None
    try:
        port = h.free_port()
        db = env.path("data", "broker.db")
        broker = env.start_broker(extra_yaml=BROKER_YAML, port=port, db=db)
        base = broker.base

        # ---- registration -------------------------------------------------------------
        node1 = env.start_node(broker, "node1")
        node2 = env.start_node(broker, "node2")
        id1, id2 = read_id(env, "node1"), read_id(env, "node2")
        h.wait_until("node1 NodeStatus rows", lambda: status_count(db, id1) >= 2, timeout=20)
        h.wait_until("node2 NodeStatus rows", lambda: status_count(db, id2) >= 2, timeout=20)
        row = db_rows(db, 'SELECT NodeType, "Group", ProcessorCount, Memory, IsOnline, '
                          'OperatingSystem FROM Node WHERE Id=?', id1)[0]
        assert row[0] == 1 and row[1] == "default" and row[2] >= 1 and row[3] > 0 \
            and row[4] == 1 and row[5], row
        st = db_rows(db, "SELECT Cpu, FreeMemory, CreationTime FROM NodeStatus WHERE NodeId=? "
                         "ORDER BY Id DESC LIMIT 1", id1)[0]
        assert 0 <= st[0] <= 100 and st[1] > 0 and st[2], st
        h.wait_until("nodes online in the API",
                     lambda: api_online(broker, id1) and api_online(broker, id2))
        status, nst = h.api("GET", broker, f"/api/v1.0/nodes/{id1}/status")
        assert status == 200, (status, nst)
        check.ok(f"two nodes registered: NodeStatus rows in the DB "
                 f"({status_count(db, id1)}, {status_count(db, id2)}), online in /api/v1.0/nodes")

        # A well-behaved Python node that heartbeats through everything that follows.
        good = ws.NodeClient(base, h.TOKEN, interval=HB_S / 2)
        h.wait_until("good node heartbeats", lambda: good.ok >= 2, timeout=10)
        assert isinstance(good.last_result, list), good.last_result
        h.wait_until("good node NodeStatus rows", lambda: status_count(db, good.node_id) >= 2)

        def healthy(after):
            assert broker.poll() is None, f"broker died ({broker.returncode})"
            assert h.http_get(base + "/healthz")[0] == 200
            before = good.ok
            h.wait_until(f"heartbeats still flowing after {after}",
                         lambda: good.ok >= before + 2, timeout=5 * HB_S)
            assert not good.hub.is_closed, good.hub.closed_reason
            assert not good.errors, good.errors
            nodes = api_nodes(broker)
            assert nodes[id1]["isOnline"] and nodes[good.node_id]["isOnline"], nodes
        healthy("registration")

        # ---- signs --------------------------------------------------------------------
        bad_id = ws.new_node_id()
        cases = {
            "wrong sign": ws.node_query(bad_id, h.TOKEN, sign_value="0" * 64),
            "sign made with another token": ws.node_query(bad_id, "not-the-token"),
            "sign of another node": ws.node_query(bad_id, h.TOKEN, sign_value=ws.sign(
                id1, int(time.time()), h.TOKEN)),
            "old ts (301 s)": ws.node_query(bad_id, h.TOKEN, ts=int(time.time()) - 301),
            "old ts (1 day)": ws.node_query(bad_id, h.TOKEN, ts=int(time.time()) - 86400),
            "future ts (400 s)": ws.node_query(bad_id, h.TOKEN, ts=int(time.time()) + 400),
            "missing sign": {k: v for k, v in ws.node_query(bad_id, h.TOKEN).items()
                             if k != "sign"},
        }
        for what, q in cases.items():
            try:
                ws.WebSocket.connect(base, "/node", q).abort()
                raise AssertionError(f"{what}: upgrade accepted")
            except ws.HandshakeRefused as e:
                assert e.status == 401, (what, e.status, e.body)
                assert json.loads(e.body)["error"]["code"] == "unauthorized", e.body
            # Negotiation refuses the same query.
            status, raw = h.http("POST", base + "/node/negotiate?negotiateVersion=1&" +
                                 urllib.parse.urlencode(q), b"", token=None)
            assert status == 401, (what, status, raw)
        q = ws.node_query(bad_id, h.TOKEN, ts=int(time.time()) - 290)   # inside the window
        ws.WebSocket.connect(base, "/node", q).close()
        try:
            ws.WebSocket.connect(base, "/node", ws.node_query("not-a-guid", h.TOKEN))
            raise AssertionError("a nodeId that is not a GUID was accepted")
        except ws.HandshakeRefused as e:
            assert e.status == 400, (e.status, e.body)
        status, raw = h.http("POST", base + "/node/negotiate?negotiateVersion=1&" +
                             urllib.parse.urlencode(ws.node_query(bad_id, h.TOKEN)), b"",
                             token=None)
        nego = json.loads(raw)
        assert status == 200 and nego["negotiateVersion"] == 1 and nego["connectionToken"] \
            and nego["availableTransports"][0]["transport"] == "WebSockets", (status, raw)
        assert db_rows(db, "SELECT COUNT(*) FROM Node WHERE Id=?", "not-a-guid")[0][0] == 0
        check.ok(f"{len(cases)} bad signs/timestamps refused with 401 before the upgrade "
                 f"(and on /node/negotiate); ts 290 s old accepted; bad nodeId 400")
        healthy("bad signs")

        hostile = []    # node ids of misbehaving sessions: all must end offline

        def connect_raw(**kw):
            nid = ws.new_node_id()
            hostile.append(nid)
            return ws.WebSocket.connect(base, "/node", ws.node_query(nid, h.TOKEN, **kw)), nid

        # ---- wrong handshakes ---------------------------------------------------------
        for what, req in {
            "messagepack": '{"protocol":"messagepack","version":1}\x1e',
            "version 2": '{"protocol":"json","version":2}\x1e',
            "not JSON": 'hello, broker\x1e',
            "JSON array": '[1,2,3]\x1e',
        }.items():
            conn, _ = connect_raw()
            conn.send_text(req)
            text, code = expect_closed(conn)
            first = text.split("\x1e")[0]
            assert "error" in json.loads(first), (what, text)
            assert code == 1000, (what, code)
        check.ok("wrong handshakes (messagepack, version 2, not JSON, array) answered "
                 "with a handshake error, then closed")

        # ---- garbage after the handshake ---------------------------------------------------
        for what, payload in {
            "non-JSON record": "this is not json\x1e",
            "JSON without type": '{"hello":1}\x1e',
            "unsupported type": '{"type":4,"invocationId":"1","target":"x","arguments":[]}\x1e',
            "binary junk": bytes(range(256)) * 4 + b"\x1e",
        }.items():
            conn, _ = connect_raw()
            hub = ws.HubConnection(conn)
            assert hub.handshake() == ""
            if isinstance(payload, bytes):
                conn.send_frame(ws.OP_BINARY, payload)
            else:
                conn.send_text(payload)
            text, code = expect_closed(conn)
            recs = [json.loads(r) for r in (hub._partial + text).split("\x1e") if r]
            closes = [r for r in recs if r.get("type") == 7]
            assert closes and "protocol error" in closes[0].get("error", ""), (what, recs)
        check.ok("garbage after the handshake (non-JSON, no type, type 4, binary junk): "
                 "SignalR close with 'protocol error', then WebSocket close")

        # ---- truncated record / frame, then disconnect ----------------------------------------
        conn, nid_trunc = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        conn.send_text('{"type":1,"invocationId":"1","target":"Heartbeat","arguments":[{"cpu":')
        time.sleep(0.2)
        conn.abort()
        conn, nid_trunc2 = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        conn.send_raw(ws.frame_header(ws.OP_TEXT, 1000) + os.urandom(4) + b"x" * 10)
        time.sleep(0.2)
        conn.abort()
        conn, nid_trunc3 = connect_raw()   # mid-handshake
        conn.send_text('{"protocol":"js')
        conn.abort()
        for nid in (nid_trunc, nid_trunc2, nid_trunc3):
            h.wait_until("truncated session offline", lambda: not db_online(db, nid),
                         timeout=5)
        check.ok("truncated record, truncated frame and half handshake then TCP drop: "
                 "sessions end, nodes offline")

        # ---- WebSocket protocol violations ----------------------------------------------------
        conn, _ = connect_raw()
        conn.send_frame(ws.OP_TEXT, '{"protocol":"json","version":1}\x1e', mask=False)
        _, code = expect_closed(conn)
        assert code == 1002, code
        conn, _ = connect_raw()
        conn.send_frame(0x3, b"reserved opcode")
        _, code = expect_closed(conn)
        assert code == 1002, code
        reply = ws.raw_http(base, b"\x16\x03\x01garbage that is not HTTP\r\n\r\n", timeout=5)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
        check.ok("unmasked client frame and reserved opcode closed with 1002; "
                 "non-HTTP bytes answered 400")
        healthy("garbage")

        # ---- unknown method and bad arguments: completion error, connection stays ------------
        conn, nid_unknown = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        hub.start()
        c = hub.invoke("NoSuchMethod", 1, "two")
        assert "unknown method" in c.get("error", ""), c
        c = hub.invoke("Heartbeat", "not an object")
        assert c.get("error"), c
        c = hub.invoke("Heartbeat")
        assert c.get("error"), c
        hub.send_invocation("NoSuchMethodNoId", [])   # no id: nothing to answer
        hub.send_record({"type": 6})                  # client ping
        c = hub.invoke("Heartbeat", {"processCount": 1, "cpu": 2, "freeMemory": 3,
                                     "freeSlots": 0})
        assert c.get("result") == [] and "error" not in c, c
        assert not hub.is_closed, hub.closed_reason
        h.wait_until("heartbeat stored", lambda: status_count(db, nid_unknown) == 1, timeout=5)
        hub.close()
        check.ok("unknown method and bad Heartbeat arguments get completion errors; "
                 "the connection stays and the next Heartbeat returns []")

        # ---- a 100 MB frame ----------------------------------------------------------------
        rss_before = rss_mb(broker.pid)
        conn, nid_huge = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        t0 = time.monotonic()
        sent = conn.send_large_frame(HUGE, timeout=60)
        text, code = expect_closed(conn, timeout=10)
        took = time.monotonic() - t0
        rss_after = rss_mb(broker.pid)
        assert code in (1009, None), code
        assert sent < HUGE, f"the server read all {sent} bytes of a 100 MB frame"
        assert rss_after - rss_before < 64, (rss_before, rss_after)
        h.wait_until("huge-frame session offline", lambda: not db_online(db, nid_huge),
                     timeout=5)
        check.ok(f"100 MB frame refused after {sent / 1e6:.1f} MB in {took:.2f}s "
                 f"(close code {code}); broker RSS {rss_before:.0f} -> {rss_after:.0f} MB")
        healthy("100 MB frame")

        # A message that fits the WebSocket limit but whose record grows past it is also cut:
        # many frames of one record without a separator would grow without bound otherwise.
        # (max_message_bytes = 16 MiB by default; 17 x 1 MiB parts.)
        conn, _ = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        part = b'"' + b"a" * (1 << 20)
        closed_after = None
        for i in range(17):
            try:
                conn.send_frame(ws.OP_TEXT, part)
            except OSError:
                closed_after = i
                break
        text, code = expect_closed(conn, timeout=10)
        assert "larger than" in text or code in (1009, 1000), (text[:300], code)
        check.ok("a record growing past the limit over many messages is refused "
                 f"(close code {code})")
        healthy("oversized record")

        # ---- a silent node is closed after the missed heartbeats -----------------------------
        conn, nid_silent = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        hub.start()
        t0 = time.monotonic()
        reason = hub.wait_closed(timeout=MISSED * HB_S + 5)
        silent_for = time.monotonic() - t0
        assert reason is not None, "silent node still connected"
        assert hub.close_message and "missed heartbeats" in hub.close_message.get("error", ""), \
            hub.close_message
        assert MISSED * HB_S - 0.5 <= silent_for <= MISSED * HB_S + 2.5, silent_for
        h.wait_until("silent node offline", lambda: not db_online(db, nid_silent), timeout=5)
        check.ok(f"a node without heartbeats is closed after {silent_for:.1f}s "
                 f"({MISSED} x {HB_S:.0f}s) and marked offline")

        # A hung node (like SIGSTOP): TCP open, reads nothing, never answers the close
        # frame. It must be offline after the missed heartbeats, not after the close
        # handshake times out.
        conn, nid_hung = connect_raw()
        hub = ws.HubConnection(conn)
        assert hub.handshake() == ""
        t0 = time.monotonic()
        h.wait_until("hung node offline in the API", lambda: not api_online(broker, nid_hung),
                     timeout=MISSED * HB_S + 15, interval=0.1)
        hung_for = time.monotonic() - t0
        assert hung_for <= MISSED * HB_S + 2.5, \
            f"hung node offline only after {hung_for:.1f}s (heartbeat limit {MISSED * HB_S}s)"
        conn.abort()
        check.ok(f"a hung node (open TCP, no reads, no close reply) is offline after "
                 f"{hung_for:.1f}s")

        # Every misbehaving session is offline now; the good ones stayed online.
        h.wait_until("all hostile sessions offline",
                     lambda: not any(api_nodes(broker).get(n, {}).get("isOnline")
                                     for n in hostile), timeout=10)
        online = {i for i, n in api_nodes(broker).items() if n["isOnline"]}
        assert online == {id1, id2, good.node_id}, (online, id1, id2, good.node_id)
        healthy("hostile clients")
        check.ok(f"after {len(hostile)} hostile connections: exactly the 3 good nodes online, "
                 f"{good.ok} heartbeats of the Python node, none failed")

        # ---- SIGKILL of a node -------------------------------------------------------------
        t0 = time.monotonic()
        env.stop(node2, signal.SIGKILL)
        h.wait_until("node2 offline in the API", lambda: not api_online(broker, id2),
                     timeout=MISSED * HB_S + 5, interval=0.05)
        off_after = time.monotonic() - t0
        assert not db_online(db, id2)
        assert off_after <= MISSED * HB_S + 1, off_after
        check.ok(f"SIGKILLed node offline {off_after * 1000:.0f} ms after the kill (API and DB)")

        # ---- broker restarts: the node reconnects by itself ----------------------------------
        for how in (signal.SIGTERM, signal.SIGKILL):
            n_before = status_count(db, id1)
            rc = env.stop(broker, how)
            if how == signal.SIGTERM:
                assert rc == 0, f"broker exit code {rc}"
            assert good.hub.wait_closed(5) is not None, "python node not told about the stop"
            time.sleep(0.5)
            t0 = time.monotonic()
            broker = env.start_broker(name=f"broker-{how.name}", extra_yaml=BROKER_YAML,
                                      port=port, db=db)
            assert broker.port == port
            h.wait_until(f"node1 online after {how.name} restart",
                         lambda: api_online(broker, id1), timeout=15, interval=0.1)
            back_after = time.monotonic() - t0
            h.wait_until("node1 heartbeats to the new broker",
                         lambda: status_count(db, id1) >= n_before + 2, timeout=10)
            nodes = api_nodes(broker)
            assert not nodes[id2]["isOnline"] and not nodes[good.node_id]["isOnline"], nodes
            assert node1.poll() is None, "node1 exited"
            check.ok(f"broker restarted after {how.name} on the same port and DB: node1 "
                     f"back online {back_after:.2f}s after the new broker started, "
                     f"heartbeats stored again")
            good.stop()
            good = ws.NodeClient(broker.base, h.TOKEN, interval=HB_S / 2)
            h.wait_until("new python node heartbeats", lambda: good.ok >= 2, timeout=10)

        good.stop()
        good = None
        assert env.stop(node1) == 0, "node1 did not stop cleanly"
        assert env.stop(broker) == 0, "broker did not stop cleanly"
        signal.alarm(0)
        print(f"gateway: {len(check.lines)} checks passed")
    except BaseException:
        env.dump_logs()
        raise
    finally:
        if good is not None:
            try:
                good.stop()
            except Exception:  # noqa: BLE001
                pass
        env.close()


if __name__ == "__main__":
    main()
