"""`spiderhub console` against a real broker (inspector on, with a secret) and node: the
one-shot commands in JSON and as tables, errors with exit code 1, usage errors with 2,
the secret enforced, the REPL on a pipe, and no hang for an unreachable or silent port."""
import json
import re
import socket
import subprocess
import time

import harness as h

SECRET = "e2e-inspector-secret"


def main():
    args = h.parse_args()
    with h.Env(args, "console") as env:
        broker = env.start_broker(inspector=True, inspector_secret=SECRET)
        where = f"127.0.0.1:{broker.inspector_port}"

        def console(*argv, secret=SECRET, timeout=5, stdin=None, broker_at=None):
            cmd = [args.bin, "console", "--broker", broker_at or where, "--timeout", str(timeout)]
            if secret:
                cmd += ["--secret", secret]
            started = time.monotonic()
            p = subprocess.run(cmd + list(argv), capture_output=True, text=True, input=stdin,
                               timeout=60, cwd=env.dir)
            p.elapsed = time.monotonic() - started
            return p

        def console_json(*argv, **kw):
            p = console(*argv, "--json", **kw)
            try:
                return p.returncode, json.loads(p.stdout), p
            except ValueError:
                raise AssertionError(f"not JSON: rc={p.returncode} out={p.stdout!r} "
                                     f"err={p.stderr!r}")

        # The inspector is published right after the HTTP server: wait for it.
        h.wait_until("inspector", lambda: console("version").returncode == 0, timeout=20)
        rc, version, _ = console_json("version")
        assert rc == 0 and version["ok"] and version["version"] == 1, version
        assert "nodes" in version["data"]["commands"], version

        node = env.start_node(broker)
        h.wait_until("node online", lambda: any(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]))
        node_id = h.api("GET", broker, "/api/v1.0/nodes")[1][0]["id"]

        # nodes: JSON and table
        rc, nodes, _ = console_json("nodes")
        assert rc == 0 and nodes["ok"] and nodes["command"] == "nodes", nodes
        assert [n["id"] for n in nodes["data"]] == [node_id], nodes
        assert nodes["data"][0]["isOnline"] is True, nodes
        p = console("nodes")
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[0].split()[:3] == ["ID", "GROUP", "IP"], p.stdout
        assert node_id in p.stdout and "1 nodes, 1 online" not in p.stdout, p.stdout
        assert "1 node, 1 online" in p.stdout, p.stdout

        # The secret is required for every request.
        for wrong in ("", "nope"):
            rc, refused, _ = console_json("nodes", secret=wrong)
            assert rc == 1 and not refused["ok"], refused
            assert refused["error"]["code"] == "unauthorized", refused
        p = console("jobs", secret="nope")
        assert p.returncode == 1 and "error (unauthorized)" in p.stderr, (p.stdout, p.stderr)

        # actors: every registered broker actor plus the node's session
        def node_sessions():
            rc, a, _ = console_json("actors")
            return a if rc == 0 and a["data"]["sessionCounts"]["node"] == 1 else None
        listed = h.wait_until("node session listed", node_sessions, timeout=10)
        names = {a["name"] for a in listed["data"]["registered"]}
        for expected in ("gateway", "api", "jobs", "scheduler", "dispatch", "storage",
                         "sessions", "inspector"):
            assert expected in names, (expected, names)
        types = {a["name"]: a["type"] for a in listed["data"]["registered"]}
        assert types["dispatch"] == "block_dispatcher" and types["jobs"] == "job_manager", types
        session = listed["data"]["sessions"][0]
        assert session["kind"] == "node" and session["stats"]["nodeId"] == node_id, session
        assert isinstance(session["mailbox"], int), session
        storage = next(a for a in listed["data"]["registered"] if a["name"] == "storage")
        assert isinstance(storage["mailbox"], int) and "writes" in storage["stats"], storage
        p = console("actors")
        assert p.returncode == 0, p.stderr
        for word in ("gateway", "block_dispatcher", "scheduler", "SESSIONS"):
            assert word in p.stdout, (word, p.stdout)
        assert any(line.split()[:2] == ["node", "1"] for line in p.stdout.splitlines()), p.stdout

        # mailboxes: one family per registered actor and per session kind, with rates
        rc, mb, _ = console_json("mailboxes")
        assert rc == 0 and mb["ok"], mb
        families = {f["family"]: f for f in mb["data"]["families"]}
        assert families["node_session"]["actors"] == 1, families
        assert isinstance(families["storage"]["mailbox"], int), families
        assert families["storage"]["rate"] is not None, families
        assert families["gateway"]["mailbox"] is None, families  # gateway reports none
        assert mb["data"]["windowMs"] >= 900, mb

        # jobs, trigger, runs, blocks, exit
        rc, jobs, _ = console_json("jobs")
        assert rc == 0 and jobs["data"] == [], jobs
        assert "(no jobs)" in console("jobs").stdout
        job = h.create_block_job(broker, "http://127.0.0.1:9/", env.path("items.jsonl"))
        rc, jobs, _ = console_json("jobs")
        assert [j["id"] for j in jobs["data"]] == [job["id"]], jobs
        p = console("jobs")
        assert job["id"] in p.stdout and "spiderhub.samples.SiteSpider" in p.stdout, p.stdout

        unknown = "00000000-0000-0000-0000-000000000000"
        p = console("trigger", unknown)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "error (not_found)" in p.stderr and unknown in p.stderr, p.stderr
        rc, fired, _ = console_json("trigger", unknown)
        assert rc == 1 and fired["error"]["code"] == "not_found", fired
        # No worker is connected: the fire is refused and recorded as a failed run.
        rc, fired, _ = console_json("trigger", job["id"])
        assert rc == 1 and not fired["ok"], fired
        def failed_run():
            rc, runs, _ = console_json("runs", job["id"])
            return runs["data"] if rc == 0 and runs["data"] and \
                runs["data"][0]["status"] == "Failed" else None
        runs = h.wait_until("failed run listed", failed_run, timeout=10)
        identity = runs[0]["identity"]
        p = console("runs")
        assert p.returncode == 0 and identity in p.stdout and "Failed" in p.stdout, p.stdout
        rc, blocks, _ = console_json("blocks", identity)
        assert rc == 0 and blocks["data"]["counts"] == {"ready": 0, "leased": 0, "success": 0,
                                                        "failed": 0}, blocks
        rc, blocks, _ = console_json("blocks", unknown)
        assert rc == 1 and blocks["error"]["code"] == "not_found", blocks
        rc, exited, _ = console_json("exit", unknown)
        assert rc == 1 and exited["error"]["code"] == "not_found", exited

        # disable NODE: stored, visible through the API
        p = console("disable", node_id)
        assert p.returncode == 0 and f"node {node_id} disabled" in p.stdout, (p.stdout, p.stderr)
        assert h.api("GET", broker, "/api/v1.0/nodes")[1][0]["isEnabled"] is False
        rc, missing, _ = console_json("disable", unknown)
        assert rc == 1 and missing["error"]["code"] == "not_found", missing
        # The console's writes are in the audit trail (newest first), also through the API.
        rc, audit, _ = console_json("audit")
        assert rc == 0, audit
        got = [(a["action"], a["target"], a["status"]) for a in audit["data"][:3]]
        assert got == [("node.disable", unknown, 404), ("node.disable", node_id, 200),
                       ("run.exit", unknown, 404)], got
        assert all(a["role"] == "console" for a in audit["data"][:3]), audit
        p = console("audit")
        assert p.returncode == 0 and "node.disable" in p.stdout and "newest first" in p.stdout, \
            p.stdout
        rows = h.api("GET", broker, "/api/v1.0/audit?limit=3")[1]
        assert [r["action"] for r in rows] == ["node.disable", "node.disable", "run.exit"], rows
        # ... and honoured: a crawl gets no block on the disabled (only) node until enabled.
        site = env.start_site(30)
        env.start_worker(broker)
        job = h.create_block_job(broker, site.base + "/index.html", env.path("items.jsonl"))
        h.trigger_run(broker, job["id"])
        time.sleep(2.5)  # two heartbeats and pushes: none may lease to the disabled node
        run = h.run_of(broker, job["id"])
        assert run["status"] == "Running" and run["success"] == 0 and run["left"] > 0, run
        assert console("enable", node_id).returncode == 0
        assert h.api("GET", broker, "/api/v1.0/nodes")[1][0]["isEnabled"] is True
        h.wait_until("crawl done after enable", lambda: h.run_of(broker, job["id"])["status"]
                     == "Success", timeout=30, interval=0.3)

        # usage errors: exit 2, nothing sent
        for bad in (["nodez"], ["trigger"], ["nodes", "x"], ["--broker", "nohost", "nodes"]):
            p = subprocess.run([args.bin, "console"] + bad, capture_output=True, text=True,
                               timeout=30)
            assert p.returncode == 2, (bad, p.returncode, p.stderr)

        # the REPL on a pipe: commands, an error that does not end it, quit
        p = console(stdin=f"nodes\nbogus\nhelp blocks\nexit\n")
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "connected to spiderhub" in p.stdout and node_id in p.stdout, p.stdout
        assert "unknown command 'bogus'" in p.stderr, p.stderr
        assert "blocks RUN: blocks of a run by state" in p.stdout, p.stdout

        # nothing listening: a clear message and exit 1, fast
        dead = h.free_port()
        p = console("nodes", broker_at=f"127.0.0.1:{dead}")
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "cannot reach the broker's inspector" in p.stderr, p.stderr
        assert p.elapsed < 5, p.elapsed
        # a port that accepts but never speaks: bounded by --timeout, never a hang
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            p = console("nodes", broker_at=f"127.0.0.1:{port}", timeout=1)
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert "no answer within 1.0 s" in p.stderr, p.stderr
            assert p.elapsed < 5, p.elapsed

        # An open REPL outlives a broker restart: a clear error while the broker is down
        # (not a wait for the timeout), then it reconnects by itself; the restarted broker
        # gets its inspector port back although the old connection just closed.
        repl = subprocess.Popen([args.bin, "console", "--broker", where, "--secret", SECRET],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=env.dir)

        def say(line, wait):
            repl.stdin.write(line + "\n")
            repl.stdin.flush()
            time.sleep(wait)
        say("version", 1.5)
        assert env.stop(broker) == 0, "broker did not stop cleanly with a console connected"
        assert "inspector listening on 127.0.0.1:" in env.log("broker"), env.log("broker")
        say("version", 1.5)
        broker2 = env.spawn("broker2", [args.bin, "broker", "-c", env.path("broker.yaml")])
        h.wait_until("restarted inspector", lambda: broker2.poll() is not None or
                     console("version").returncode == 0, timeout=20)
        assert broker2.poll() is None, env.log("broker2")
        say("version", 1.5)
        say("quit", 0)
        out, _ = repl.communicate(timeout=30)
        assert repl.returncode == 0, out
        assert len(re.findall(r"broker spiderhub \S+, inspector protocol 1", out)) == 2, out
        assert "cannot reach the broker's inspector" in out, out
        assert "did not answer within" not in out, out

        # everything still stops cleanly after console connections came and went
        assert env.stop(node) == 0, "node did not stop cleanly"
        assert env.stop(broker2) == 0, "restarted broker did not stop cleanly"
        print("console: all checks passed")


if __name__ == "__main__":
    main()
