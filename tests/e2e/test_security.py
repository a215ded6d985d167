"""Security by default: safe start, roles, rotation, and the limit on failed attempts.

1. Safe start: `spiderhub broker` on a non-loopback address with the original design's
   token "1234", with no token, or with a short one exits 2 before listening, saying how to
   fix it (`spiderhub token`); a strong secret passes (--check), and `auth.insecure: true`
   passes with a warning. `spiderhub token` prints 64 fresh hex characters.
2. Roles: a broker with per-role secrets (node, worker, viewer, two admins) and no legacy
   token. A table over every API route, /metrics, the live feed and both hubs: each role
   gets exactly its rights (401 without or with an unknown token, 403 with a known one
   lacking the role), and a node and a worker connect with their own secrets and crawl.
3. Rotation: both admin secrets work; after a restart without the old one, only the new
   one does.
4. Failed attempts: with max_failures 5 and block_s 2, the sixth request of the address is
   answered 429 with Retry-After even with a good token, and it recovers after the block.
   /metrics counts every refusal by reason.
"""
import json
import os
import re
import subprocess
import time
import urllib.parse

import harness as h
import wsclient as ws

NODE, WORKER, VIEWER = "n-" + "a" * 30, "w-" + "b" * 30, "v-" + "c" * 30
ADMIN_OLD, ADMIN_NEW = "ao-" + "d" * 30, "an-" + "e" * 30


def tokens_yaml(admins, extra=""):
    lines = ["auth:", "  max_failures: 100000", "  tokens:",
             f"    - {{name: crawlers, role: node, secret: {NODE}}}",
             f"    - {{name: spiders, role: worker, secret: {WORKER}}}",
             f"    - {{name: grafana, role: viewer, secret: {VIEWER}}}"]
    for i, a in enumerate(admins):
        lines.append(f"    - {{name: ops{i}, role: admin, secret: {a}}}")
    return "\n".join(lines) + "\n" + extra


def safe_start(env, args):
    def check(name, yaml, *extra):
        conf = env.write(name, yaml)
        return subprocess.run([args.bin, "broker", "-c", conf, *extra], capture_output=True,
                              text=True, timeout=30)
    for what, auth in [("the design's token", 'auth:\n  token: "1234"\n'),
                       ("no token", 'auth:\n  token: ""\n'),
                       ("a short token", "auth:\n  token: abcdefgh\n"),
                       ("the default", ""),
                       ("a weak admin in tokens",
                        "auth:\n  tokens:\n    - {name: ops, role: admin, secret: admin}\n")]:
        # Not even --check passes: the refusal comes before anything listens.
        p = check("unsafe.yaml", f"http:\n  address: 0.0.0.0\n  port: 1\n{auth}", "--check")
        assert p.returncode == 2, (what, p.returncode, p.stdout, p.stderr)
        assert "refusing to listen on 0.0.0.0" in p.stderr and "spiderhub token" in p.stderr, \
            (what, p.stderr)
    strong = h.TOKEN
    p = check("strong.yaml", f"http:\n  address: 0.0.0.0\nauth:\n  token: {strong}\n", "--check")
    assert p.returncode == 0 and "configuration OK" in p.stdout, (p.returncode, p.stderr)
    p = check("insecure.yaml", 'http:\n  address: 0.0.0.0\nauth:\n  token: "1234"\n'
              "  insecure: true\n", "--check")
    assert p.returncode == 0 and "INSECURE" in p.stdout + p.stderr, (p.stdout, p.stderr)
    p = subprocess.run([args.bin, "token"], capture_output=True, text=True, timeout=10)
    q = subprocess.run([args.bin, "token"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", p.stdout), p.stdout
    assert p.stdout != q.stdout
    print("safe start: 0.0.0.0 refused (exit 2) with 1234, no token, a short token, the "
          "default, a weak admin; strong secret and insecure opt-out pass", flush=True)


def role_table(broker):
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "sec", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": "x.Y"}}, token=ADMIN_OLD)
    assert status == 201, (status, job)
    jid = job["id"]
    job_body = {"name": "sec2", "jobType": "block", "cron": "0 0 1 1 *",
                "properties": {"FullClassName": "x.Y"}}
    # Every read route (a known answer for a missing thing counts as allowed: 404).
    reads = ["/api/v1.0/jobs", f"/api/v1.0/jobs/{jid}", f"/api/v1.0/runs?jobId={jid}",
             "/api/v1.0/runs/no-run/logs", "/api/v1.0/runs/no-run/blocks",
             "/api/v1.0/runs/no-run/hosts", "/api/v1.0/nodes",
             f"/api/v1.0/nodes/{ws.new_node_id()}/status", "/api/v1.0/packages",
             "/api/v1.0/packages/no-such-package",
             "/api/v1.0/cron?expr=*%20*%20*%20*%20*", "/metrics"]
    writes = [("POST", "/api/v1.0/jobs", job_body), ("PUT", f"/api/v1.0/jobs/{jid}", job_body),
              ("POST", f"/api/v1.0/jobs/{jid}/trigger", None),
              ("POST", "/api/v1.0/runs/no-such-run/exit", None),
              ("PUT", "/api/v1.0/packages/bad", "not an archive"),
              ("DELETE", "/api/v1.0/packages/no-such-package", None),
              ("DELETE", f"/api/v1.0/jobs/{jid}", None)]
    who = {"admin": ADMIN_OLD, "viewer": VIEWER, "node": NODE, "worker": WORKER,
           "none": None, "unknown": "u-" + "f" * 30}
    table = []

    def code(method, path, body, token):
        return h.http(method, broker.base + path, body, token)

    for path in reads:
        for role, token in who.items():
            status, raw = code("GET", path, None, token)
            want = {"none": 401, "unknown": 401}.get(role, 403)
            if role in ("admin", "viewer"):
                assert status in (200, 404) and status not in (401, 403), \
                    (role, path, status, raw[:200])
                assert status == 200 or b"not_found" in raw, (role, path, status, raw[:200])
            else:
                assert status == want, (role, "GET", path, status, raw[:200])
            table.append(("GET", path, role, status))
    for method, path, body in writes:
        for role, token in who.items():
            if role == "admin":
                continue   # the admin runs last (its DELETE removes the job)
            status, raw = code(method, path, body, token)
            want = 401 if role in ("none", "unknown") else 403
            assert status == want, (role, method, path, status, raw[:200])
            err = json.loads(raw)["error"]
            assert err["code"] == ("unauthorized" if want == 401 else "forbidden"), err
            assert NODE not in err["message"] and VIEWER not in err["message"], err
            table.append((method, path, role, status))
        status, raw = code(method, path, body, ADMIN_OLD)
        assert status not in (401, 403), (method, path, status, raw[:200])
        table.append((method, path, "admin", status))

    # The live feed: viewers and admins.
    for token, ok in [(VIEWER, True), (ADMIN_NEW, True), (NODE, False), (None, False)]:
        q = {"access_token": token} if token else {}
        try:
            ws.WebSocket.connect(broker.base, "/live", q).abort()
            assert ok, f"/live accepted {token}"
        except ws.HandshakeRefused as e:
            assert not ok and e.status in (401, 403), (token, e.status, e.body)
    # Hubs: a sign made with the node secret on /node, the worker secret on /worker only.
    node_id = ws.new_node_id()
    for path, query, ok in [
            ("/node", ws.node_query(node_id, NODE), True),
            ("/node", ws.node_query(node_id, WORKER), False),
            ("/node", ws.node_query(node_id, ADMIN_OLD), False),
            ("/worker", ws.worker_query("x.Y", WORKER), True),
            ("/worker", ws.worker_query("x.Y", NODE), False),
            ("/worker", ws.worker_query("x.Y", VIEWER), False)]:
        status, raw = h.http("POST", broker.base + path + "/negotiate?negotiateVersion=1&" +
                             urllib.parse.urlencode(query), b"", token=None)
        assert status == (200 if ok else 401), (path, ok, status, raw)
    # A node's sign is good for one connection: the same query again is a replay.
    q = ws.node_query(ws.new_node_id(), NODE)
    for _ in range(2):  # negotiation grants nothing: it may come first, even twice
        status, _ = h.http("POST", broker.base + "/node/negotiate?negotiateVersion=1&" +
                           urllib.parse.urlencode(q), b"", token=None)
        assert status == 200, status
    ws.WebSocket.connect(broker.base, "/node", q).abort()
    try:
        ws.WebSocket.connect(broker.base, "/node", q).abort()
        raise AssertionError("a replayed node sign was accepted")
    except ws.HandshakeRefused as e:
        body = e.body if isinstance(e.body, str) else e.body.decode(errors="replace")
        assert e.status == 401 and "already used" in body, (e.status, e.body)
    print(f"roles: {len(table)} route x role checks + live feed + hubs as specified; "
          "a replayed node sign refused", flush=True)

    # The audit trail: every admin write above, with who, where and the answer; refused
    # attempts are not writes (they are counted in /metrics). Admins only.
    assert h.api("GET", broker, "/api/v1.0/audit", token=VIEWER)[0] == 403
    status, rows = h.api("GET", broker, "/api/v1.0/audit?limit=1000", token=ADMIN_OLD)
    assert status == 200, (status, rows)
    got = [(r["action"], r["target"], r["status"]) for r in reversed(rows)]
    admin_writes = [t for t in table if t[2] == "admin" and t[0] != "GET"]
    want = [("job.create", jid, 201), ("job.create", None, 201), ("job.update", jid, 200),
            ("job.trigger", jid, None), ("run.exit", "no-such-run", 404),
            ("package.upload", "bad", 400), ("package.delete", "no-such-package", 404),
            ("job.delete", jid, 200)]
    assert len(got) == len(want) == len(admin_writes) + 1, (got, admin_writes)
    for (action, target, code), (wa, wt, wc) in zip(got, want):
        assert action == wa and (wt is None or target == wt) and (wc is None or code == wc), \
            (got, want)
    assert all(r["role"] == "admin" and r["name"] == "ops0" and r["address"] == "127.0.0.1"
               for r in rows), rows
    created = next(r for r in rows if r["action"] == "job.create" and r["target"] != jid)
    assert '"sec2"' in created["detail"] and created["target"], created
    status, page = h.api("GET", broker, f"/api/v1.0/audit?limit=2&before={rows[0]['id']}",
                         token=ADMIN_NEW)
    assert status == 200 and [r["id"] for r in page] == [rows[1]["id"], rows[2]["id"]], page
    assert h.api("GET", broker, "/api/v1.0/audit?limit=0", token=ADMIN_NEW)[0] == 400
    print(f"audit: {len(rows)} rows match the admin writes (role, name, address, status)",
          flush=True)
    return len(table)


def main():
    args = h.parse_args()
    with h.Env(args, "security") as env:
        safe_start(env, args)

        db = env.path("data", "sec.db")
        broker = env.start_broker(auth_yaml=tokens_yaml([ADMIN_OLD, ADMIN_NEW]), db=db)
        checks = role_table(broker)

        # The node and the worker crawl with their own secrets.
        site = env.start_site(20)
        node = env.spawn("node", [args.bin, "node", "-c", env.write("node.yaml", f"""
broker: {broker.base}/
token: {NODE}
id_file: {env.path('node.id')}
heartbeat_interval_ms: 1000
download:
  allow_private_addresses: true
""")])
        worker = env.spawn("worker", [args.bin, "worker-sample", "--broker", broker.base + "/",
                                      "--token", WORKER, "--runs", "1"])
        h.wait_until("node online", lambda: any(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes", token=VIEWER)[1]))
        output = env.path("items.jsonl")
        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "crawl", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": "spiderhub.samples.SiteSpider",
                           "Arguments": json.dumps({"startUrl": site.base + "/index.html",
                                                    "output": output})}}, token=ADMIN_NEW)
        assert status == 201, (status, job)
        h.wait_until("crawl accepted", lambda: h.api(
            "POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger", token=ADMIN_NEW)[0] == 200,
            timeout=30, interval=0.5)

        def done():
            status, runs = h.api("GET", broker, f"/api/v1.0/runs?jobId={job['id']}",
                                 token=VIEWER)
            return status == 200 and runs and runs[0]["status"] == "Success" and runs[0]
        run = h.wait_until("crawl finished", done, timeout=60, interval=0.5)
        assert run["success"] >= 20 and run["error"] == 0, run
        print(f"node and worker crawled with their own secrets: {run['success']} pages", flush=True)

        # Rotation: restart with the new admin secret only.
        env.stop(worker)
        env.stop(node)
        env.stop(broker)
        broker = env.start_broker(name="broker2", auth_yaml=tokens_yaml([ADMIN_NEW]), db=db)
        assert h.api("GET", broker, "/api/v1.0/jobs", token=ADMIN_OLD)[0] == 401
        assert h.api("GET", broker, "/api/v1.0/jobs", token=ADMIN_NEW)[0] == 200
        print("rotation: both admin secrets valid together, the old one refused once removed",
              flush=True)
        env.stop(broker)

        # Failed attempts per address.
        broker = env.start_broker(name="broker3", db=db, auth_yaml=(
            f"auth:\n  token: {h.TOKEN}\n  max_failures: 5\n  failure_window_s: 60\n"
            "  block_s: 2\n"))
        statuses = [h.api("GET", broker, "/api/v1.0/jobs", token="wrong-" + "x" * 20)[0]
                    for _ in range(5)]
        assert statuses == [401] * 5, statuses
        status, raw, headers = h.http_full("GET", broker.base + "/api/v1.0/jobs", token=h.TOKEN)
        assert status == 429, (status, raw)
        assert 1 <= int(headers.get("Retry-After", "0")) <= 2, headers
        # Hubs are covered by the same limit.
        status, _ = h.http("POST", broker.base + "/worker/negotiate?negotiateVersion=1&" +
                           urllib.parse.urlencode(ws.worker_query("x.Y", h.TOKEN)), b"",
                           token=None)
        assert status == 429, status
        blocked_at = time.monotonic()
        h.wait_until("block over", lambda: h.api("GET", broker, "/api/v1.0/jobs")[0] == 200,
                     timeout=10, interval=0.2)
        waited = time.monotonic() - blocked_at
        m = h.metrics(broker)
        assert m['spiderhub_auth_refusals_total{reason="unauthenticated"}'] == 5, m
        assert m['spiderhub_auth_refusals_total{reason="rate_limited"}'] >= 2, m
        assert m['spiderhub_auth_refusals_total{reason="replayed"}'] == 0, m  # other process
        print(f"failed attempts: 5 x 401, then 429 with Retry-After (API and hubs), good "
              f"again after {waited:.1f}s; refusals counted in /metrics", flush=True)
        print(f"security: {checks} role checks passed", flush=True)
        env.stop(broker)


if __name__ == "__main__":
    main()
