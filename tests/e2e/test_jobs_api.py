"""The jobs, runs and nodes REST API against a real broker: every route's happy path and
every refusal (validation, auth, method, route, size, unknown ids, disabled jobs, jobs
without a worker), checked in the responses and in the SQLite database."""
import http.client
import json
import sqlite3
import subprocess
import time

import harness as h

MAX_BODY = 65536
JOBS = "/api/v1.0/jobs"


def start_broker(env):
    """harness.start_broker with a small http.max_body_bytes (its http block is fixed)."""
    port = h.free_port()
    conf = env.write("broker.yaml", f"""
http:
  address: 127.0.0.1
  port: {port}
  max_body_bytes: {MAX_BODY}
auth:
  token: {h.TOKEN}
storage:
  path: {env.path('data', 'broker.db')}
inspector:
  enabled: false
log:
  level: info
""")
    p = env.spawn("broker", [env.args.bin, "broker", "-c", conf])
    p.port = port
    p.base = f"http://127.0.0.1:{port}"
    h.wait_until("broker health", lambda: h.http_get(p.base + "/healthz")[0] == 200
                 or p.poll() is not None, timeout=30)
    assert p.poll() is None, f"broker exited with {p.returncode}"
    p.db = env.path("data", "broker.db")
    return p


def block_job(**over):
    job = {"name": "api-job", "jobType": "block", "cron": "0 3 1 1 *",
           "description": "made by test_jobs_api",
           "properties": {"FullClassName": "tests.NobodyHome", "Priority": 2}}
    job.update(over)
    return job


def app_job(**over):
    job = {"name": "app-job", "jobType": "application", "cron": "0 4 1 1 *",
           "properties": {"Package": "pkg.zip", "Application": "run.sh", "NodeCount": 2}}
    job.update(over)
    return job


def expect_error(resp, status, code=None, mentions=()):
    got_status, body = resp
    assert got_status == status, f"expected {status}, got {got_status}: {body}"
    assert isinstance(body, dict) and "error" in body, f"no error object: {body!r}"
    err = body["error"]
    if code:
        assert err["code"] == code, f"expected code {code}: {err}"
    for word in mentions:
        assert word in err["message"], f"message should mention {word!r}: {err['message']}"
    return err


def raw(method, broker, path, data, headers=None):
    """Sends bytes as they are (no JSON encoding); returns (status, parsed body)."""
    status, body = h.http(method, broker.base + path, data, headers=headers)
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode(errors="replace")


def db_rows(broker, sql, *params):
    con = sqlite3.connect(broker.db, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def cli_fire_times(env, expr):
    out = subprocess.run([env.args.bin, "cron", expr, "--count", "5"], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def check_validation(broker):
    base = json.dumps(block_job()).encode()
    for method, path in (("POST", JOBS), ("PUT", JOBS + "/00000000-0000-4000-8000-000000000000")):
        expect_error(raw(method, broker, path, b"{"), 400, "invalid", ["JSON"])
        expect_error(raw(method, broker, path, b""), 400, "invalid", ["JSON"])
        expect_error(raw(method, broker, path, b"[1, 2]"), 400, "invalid", ["object"])
        expect_error(raw(method, broker, path, b'"text"'), 400, "invalid", ["object"])
        assert base  # the valid body is accepted below
    cases = [
        (dict(block_job(), colour="red"), ["'colour'"]),
        ({k: v for k, v in block_job().items() if k != "name"}, ["'name'"]),
        ({k: v for k, v in block_job().items() if k != "jobType"}, ["'jobType'"]),
        ({k: v for k, v in block_job().items() if k != "cron"}, ["'cron'"]),
        (block_job(name=""), ["'name'"]),
        (block_job(name="x" * 51), ["'name'"]),
        (block_job(name=7), ["'name'"]),
        (block_job(jobType="spider"), ["'jobType'"]),
        (block_job(cron="61 * * * *"), ["'cron'", "minute"]),
        (block_job(cron="0 25 * * *"), ["'cron'", "hour"]),
        (block_job(cron="* * *"), ["'cron'", "fields"]),
        (block_job(cron="@reboot"), ["'cron'", "@reboot"]),
        (block_job(isEnabled="yes"), ["'isEnabled'"]),
        (block_job(description="d" * 501), ["'description'"]),
        (block_job(properties=[]), ["'properties'"]),
        (block_job(properties={"FullClassName": "a", "Priority": 1.5}), ["'Priority'"]),
        (block_job(properties={"Priority": 1}), ["FullClassName"]),
        (block_job(properties={"FullClassName": ""}), ["FullClassName"]),
        (block_job(properties={"FullClassName": "a", "Site": "{"}), ["'Site'"]),
        (app_job(properties={"Application": "run.sh"}), ["Package"]),
        (app_job(properties={"Package": "pkg.zip"}), ["Application"]),
        (app_job(properties={"Package": "p", "Application": "a", "NodeCount": "many"}),
         ["NodeCount"]),
        (app_job(properties={"Package": "p", "Application": "a", "NodeCount": 0}),
         ["NodeCount"]),
        (app_job(properties={"Package": "p", "Application": "a", "NodeCount": 2.5}),
         ["NodeCount"]),
    ]
    for body, words in cases:
        expect_error(h.api("POST", broker, JOBS, body), 400, "invalid", words)
    # Nothing of that was stored.
    assert h.api("GET", broker, JOBS) == (200, []), h.api("GET", broker, JOBS)
    assert db_rows(broker, "SELECT count(*) FROM Job") == [(0,)]


def check_limits_and_auth(broker, job_id):
    # Body over http.max_body_bytes: the server answers 413 itself.
    big = json.dumps(block_job(description="x" * (MAX_BODY + 10))).encode()
    conn = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=15)
    try:
        conn.request("POST", JOBS, body=big, headers={
            "Authorization": f"Bearer {h.TOKEN}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read())
    finally:
        conn.close()
    assert status == 413, (status, body)
    assert body["error"]["code"] == "body_too_large", body
    assert str(MAX_BODY) in body["error"]["message"], body

    # Bearer token: missing, wrong, wrong scheme -> 401 on every API route.
    for path in (JOBS, f"{JOBS}/{job_id}", "/api/v1.0/runs", "/api/v1.0/nodes",
                 "/api/v1.0/nowhere"):
        expect_error(h.api("GET", broker, path, token=None), 401, "unauthorized")
        expect_error(h.api("GET", broker, path, token="wrong-token"), 401, "unauthorized")
    status, body = h.http("GET", broker.base + JOBS, token=None,
                          headers={"Authorization": f"Basic {h.TOKEN}"})
    assert status == 401, (status, body)
    expect_error(h.api("POST", broker, f"{JOBS}/{job_id}/trigger", token=None), 401)
    expect_error(h.api("POST", broker, f"{JOBS}/{job_id}/trigger?sig=00", token=None), 401)
    expect_error(h.api("DELETE", broker, f"{JOBS}/{job_id}", token="nope"), 401)
    assert h.api("GET", broker, f"{JOBS}/{job_id}")[0] == 200  # still there

    # Wrong method -> 405, unknown route -> 404.
    for method, path in (("PATCH", JOBS), ("DELETE", JOBS), ("PUT", JOBS),
                         ("POST", f"{JOBS}/{job_id}"), ("PATCH", f"{JOBS}/{job_id}"),
                         ("GET", f"{JOBS}/{job_id}/trigger"), ("POST", "/api/v1.0/runs"),
                         ("GET", "/api/v1.0/runs/abc/exit"), ("DELETE", "/api/v1.0/nodes"),
                         ("POST", "/api/v1.0/nodes/abc/status")):
        expect_error(h.api(method, broker, path, body={} if method in ("POST", "PUT", "PATCH")
                           else None), 405, "method_not_allowed")
    for method, path in (("GET", "/api/v1.0/nowhere"), ("GET", "/nowhere"),
                         ("GET", f"{JOBS}/{job_id}/nothing"), ("POST", f"{JOBS}/{job_id}/a/b"),
                         ("GET", "/api/v1.0/runs/abc"), ("GET", "/api/v1.0/nodes/a/b/c"),
                         ("GET", "/api/v2.0/jobs")):
        expect_error(h.api(method, broker, path), 404, "not_found")


def main():
    args = h.parse_args()
    with h.Env(args, "jobs-api") as env:
        broker = start_broker(env)
        check_validation(broker)

        # ---- create / read / list ---------------------------------------------------
        before = cli_fire_times(env, "0 3 1 1 *")
        status, job = h.api("POST", broker, JOBS, block_job())
        after = cli_fire_times(env, "0 3 1 1 *")
        assert status == 201, (status, job)
        jid = job["id"]
        assert len(jid) == 36, job
        for key, want in (("name", "api-job"), ("jobType", "block"), ("cron", "0 3 1 1 *"),
                          ("description", "made by test_jobs_api"), ("isEnabled", True)):
            assert job[key] == want, (key, job)
        assert job["properties"] == {"FullClassName": "tests.NobodyHome", "Priority": "2"}, job
        assert job["creationTime"], job
        assert len(job["nextFireTimes"]) == 5, job
        assert job["nextFireTimes"] in (before, after), (job["nextFireTimes"], before, after)
        status, got = h.api("GET", broker, f"{JOBS}/{jid}")
        assert status == 200 and got == job, (status, got, job)
        status, jobs = h.api("GET", broker, JOBS)
        assert status == 200 and [j["id"] for j in jobs] == [jid], jobs

        status, app = h.api("POST", broker, JOBS, app_job())
        assert status == 201, (status, app)
        assert app["properties"]["NodeCount"] == "2", app
        status, jobs = h.api("GET", broker, JOBS)
        assert {j["id"] for j in jobs} == {jid, app["id"]}, jobs

        check_limits_and_auth(broker, jid)

        # ---- update -------------------------------------------------------------------
        expr = "30 15 10 1 1 *"  # 6 fields; never due during the test
        before = cli_fire_times(env, expr)
        status, upd = h.api("PUT", broker, f"{JOBS}/{jid}", block_job(
            name="api-job-2", cron=expr, description="",
            properties={"FullClassName": "tests.NobodyHome"}))
        after = cli_fire_times(env, expr)
        assert status == 200, (status, upd)
        assert upd["name"] == "api-job-2" and upd["cron"] == expr, upd
        assert upd["properties"] == {"FullClassName": "tests.NobodyHome"}, upd
        assert upd["creationTime"] == job["creationTime"], (upd, job)
        assert upd["nextFireTimes"] in (before, after), (upd["nextFireTimes"], before, after)
        expect_error(h.api("PUT", broker, f"{JOBS}/{jid}", block_job(cron="* * * * * * *")),
                     400, "invalid", ["'cron'"])
        assert h.api("GET", broker, f"{JOBS}/{jid}")[1]["cron"] == expr
        # Back to a schedule that does not fire during the test.
        assert h.api("PUT", broker, f"{JOBS}/{jid}", block_job())[0] == 200

        # ---- unknown ids ----------------------------------------------------------------
        ghost = "00000000-0000-4000-8000-000000000000"
        expect_error(h.api("GET", broker, f"{JOBS}/{ghost}"), 404, "not_found", [ghost])
        expect_error(h.api("PUT", broker, f"{JOBS}/{ghost}", block_job()), 404, "not_found")
        expect_error(h.api("DELETE", broker, f"{JOBS}/{ghost}"), 404, "not_found")
        expect_error(h.api("POST", broker, f"{JOBS}/{ghost}/trigger"), 404, "not_found")
        expect_error(h.api("POST", broker, "/api/v1.0/runs/no-such-run/exit"), 404, "not_found")
        expect_error(h.api("GET", broker, "/api/v1.0/nodes/no-such-node/status"), 404,
                     "not_found")
        assert db_rows(broker, "SELECT count(*) FROM JobStatus WHERE JobId=?", ghost) == [(0,)]

        # ---- trigger without a worker: 409 and a Failed run with the reason -------------
        err = expect_error(h.api("POST", broker, f"{JOBS}/{jid}/trigger"), 409, "run_failed",
                           ["tests.NobodyHome"])
        rows = h.wait_until("Failed JobStatus row", lambda: db_rows(
            broker, "SELECT Identity, Status, Reason FROM JobStatus WHERE JobId=?", jid))
        assert len(rows) == 1 and rows[0][1] == "Failed", rows
        assert "no worker of class 'tests.NobodyHome'" in rows[0][2], rows
        assert rows[0][0] in err["message"], (rows, err)
        status, runs = h.api("GET", broker, f"/api/v1.0/runs?jobId={jid}")
        assert status == 200 and len(runs) == 1, runs
        assert runs[0]["identity"] == rows[0][0] and runs[0]["status"] == "Failed", runs
        assert runs[0]["jobId"] == jid and "no worker" in runs[0]["reason"], runs
        assert h.api("GET", broker, f"/api/v1.0/runs?jobId={app['id']}") == (200, [])

        # ---- disabled job: trigger refused, nothing recorded ----------------------------
        assert h.api("PUT", broker, f"{JOBS}/{jid}", block_job(isEnabled=False))[0] == 200
        assert h.api("GET", broker, f"{JOBS}/{jid}")[1]["isEnabled"] is False
        expect_error(h.api("POST", broker, f"{JOBS}/{jid}/trigger"), 409, "conflict",
                     ["disabled"])
        time.sleep(0.3)
        assert db_rows(broker, "SELECT count(*) FROM JobStatus WHERE JobId=?", jid) == [(1,)]
        assert h.api("PUT", broker, f"{JOBS}/{jid}", block_job())[0] == 200

        # ---- a worker connected: trigger runs, exit stops the run -----------------------
        cls = "tests.ExitMe"
        worker = env.start_worker(broker, cls=cls, runs=1)
        status, wjob = h.api("POST", broker, JOBS, block_job(
            name="with-worker", properties={"FullClassName": cls, "Arguments": json.dumps(
                {"startUrl": "http://127.0.0.1:9/index.html", "maxDepth": 1,
                 "output": env.path("items.jsonl")})}))
        assert status == 201, (status, wjob)

        identity = h.trigger_run(broker, wjob["id"])
        # No node is connected: the run stays Running until it is exited.
        h.wait_until("run listed as Running", lambda: (h.run_of(broker, wjob["id"]) or {})
                     .get("status") == "Running", timeout=15)
        status, body = h.api("POST", broker, f"/api/v1.0/runs/{identity}/exit")
        assert status == 200 and body == {"identity": identity, "exited": True}, (status, body)
        h.wait_until("run Exited", lambda: (h.run_of(broker, wjob["id"]) or {})
                     .get("status") == "Exited", timeout=15)
        expect_error(h.api("POST", broker, f"/api/v1.0/runs/{identity}/exit"), 404)
        worker.wait(30)
        assert worker.returncode == 0, worker.returncode
        status, all_runs = h.api("GET", broker, "/api/v1.0/runs")
        assert status == 200 and {r["identity"] for r in all_runs} >= {identity, rows[0][0]}

        # ---- nodes -----------------------------------------------------------------------
        node = env.start_node(broker)
        nodes = h.wait_until("node online", lambda: [
            n for n in h.api("GET", broker, "/api/v1.0/nodes")[1] if n["isOnline"]])
        nid = nodes[0]["id"]
        statuses = h.wait_until("node status rows", lambda: h.api(
            "GET", broker, f"/api/v1.0/nodes/{nid}/status")[1], timeout=15)
        assert {"processCount", "cpu", "freeMemory", "creationTime"} <= set(statuses[0]), statuses

        # ---- delete is soft ------------------------------------------------------------
        status, body = h.api("DELETE", broker, f"{JOBS}/{jid}")
        assert status == 200 and body == {"id": jid, "isDeleted": True}, (status, body)
        expect_error(h.api("GET", broker, f"{JOBS}/{jid}"), 404, "not_found")
        assert jid not in {j["id"] for j in h.api("GET", broker, JOBS)[1]}
        assert db_rows(broker, "SELECT IsDeleted, IsEnabled FROM Job WHERE Id=?", jid) == [(1, 0)]
        expect_error(h.api("DELETE", broker, f"{JOBS}/{jid}"), 404, "not_found")
        expect_error(h.api("PUT", broker, f"{JOBS}/{jid}", block_job()), 404, "not_found")
        expect_error(h.api("POST", broker, f"{JOBS}/{jid}/trigger"), 404, "not_found")
        # Its runs stay readable.
        assert len(h.api("GET", broker, f"/api/v1.0/runs?jobId={jid}")[1]) == 1

        for p in (node, broker):
            assert env.stop(p) == 0, f"{p.name} did not stop cleanly"
        print("jobs api: all routes and refusals behave")


if __name__ == "__main__":
    main()
