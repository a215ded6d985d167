"""Scheduler.NET mode (scheduler.kind: schedulernet) against a fake Scheduler.NET service.

The fake (http.server on loopback) records every call and answers like Scheduler.NET
({"Code": 100} on success, {"Code": 103, "Message": ...} when it refuses). Checked: job
create/update/disable/enable/delete become POST/PUT/DELETE /api/v1.0/callbackjob calls with
the right body and the token header; a 503 is retried; a refused PUT falls back to POST; the
broker resends its jobs when it starts; the builtin scheduler does not run; the service's
callback (no bearer token, signed URL) fires the job and a JobStatus row appears; a wrong
signature is refused."""
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness as h

JOBS = "/api/v1.0/jobs"
SN_TOKEN = "sn-secret"
TOKEN_HEADER = "SchedulerNET"
CLASS = "tests.NoWorkerHere"


class FakeSchedulerNet:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []        # dicts: method, path, token, body
        self.jobs = {}         # id -> body of the callback job
        self.fail = {}         # method -> how many calls to answer 503 first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                call = {"method": self.command, "path": self.path,
                        "token": self.headers.get(TOKEN_HEADER), "body": body,
                        "contentType": self.headers.get("Content-Type")}
                with fake.lock:
                    fake.calls.append(call)
                    if self.headers.get(TOKEN_HEADER) != SN_TOKEN:
                        return self.answer(401, {"Code": 103, "Message": "Auth dined."})
                    if fake.fail.get(self.command, 0) > 0:
                        fake.fail[self.command] -= 1
                        return self.answer(503, {"Code": 103, "Message": "busy"})
                    base = "/api/v1.0/callbackjob"
                    if self.command in ("POST", "PUT") and self.path == base:
                        jid = body["Id"]
                        if self.command == "POST" and jid in fake.jobs:
                            return self.answer(200, {"Code": 103, "Message": "job exists"})
                        if self.command == "PUT" and jid not in fake.jobs:
                            return self.answer(200, {"Code": 103, "Message": "job not exists"})
                        fake.jobs[jid] = body
                        return self.answer(200, {"Code": 100, "Status": 0, "Data": jid})
                    if self.command == "DELETE" and self.path.startswith(base + "/"):
                        jid = self.path[len(base) + 1:]
                        if fake.jobs.pop(jid, None) is None:
                            return self.answer(200, {"Code": 103, "Message": "job not exists"})
                        return self.answer(200, {"Code": 100, "Status": 0})
                    return self.answer(404, {"Code": 103, "Message": "no route"})

            do_POST = do_PUT = do_DELETE = do_GET = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    def calls_for(self, jid):
        with self.lock:
            return [c for c in self.calls
                    if (c["body"] or {}).get("Id") == jid or c["path"].endswith("/" + jid)]

    def job(self, jid):
        with self.lock:
            return self.jobs.get(jid)

    def fire(self, jid, url=None):
        """What Scheduler.NET does when the cron is due: POST the callback URL, no auth."""
        url = url or self.job(jid)["Url"]
        req = urllib.request.Request(url, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def sign(jid):
    return hmac.new(h.TOKEN.encode(), f"trigger\n{jid}".encode(), hashlib.sha256).hexdigest()


def job_body(name, cron, enabled=True):
    return {"name": name, "jobType": "block", "cron": cron, "isEnabled": enabled,
            "properties": {"FullClassName": CLASS}}


def statuses(db, jid):
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT Identity, Status, Reason FROM JobStatus WHERE JobId=?",
                           (jid,)).fetchall()
    finally:
        con.close()


def main():
    args = h.parse_args()
    env = h.Env(args, "schedulernet")
    fake = FakeSchedulerNet()
    try:
        port = h.free_port()
        base = f"http://127.0.0.1:{port}"
        db = env.path("data", "broker.db")
        yaml = f"""scheduler:
  kind: schedulernet
  schedulernet_url: {fake.url}/
  schedulernet_token: {SN_TOKEN}
  callback_base_url: {base}/
"""
        broker = env.start_broker("broker1", extra_yaml=yaml, port=port, db=db)

        # ---- create: POST, retried after a 503 ------------------------------------------
        with fake.lock:
            fake.fail["POST"] = 1
        status, job = h.api("POST", broker, JOBS, job_body("sn-job", "* * * * * *"))
        assert status == 201, (status, job)
        jid = job["id"]
        h.wait_until("job at Scheduler.NET", lambda: fake.job(jid), timeout=15)
        calls = fake.calls_for(jid)
        assert [c["method"] for c in calls] == ["POST", "POST"], calls
        expected_url = f"{base}/api/v1.0/jobs/{jid}/trigger?sig={sign(jid)}"
        for c in calls:
            assert c["path"] == "/api/v1.0/callbackjob", c
            assert c["token"] == SN_TOKEN, c
            assert c["contentType"] == "application/json", c
            assert c["body"] == {"Id": jid, "Group": "spiderhub", "Name": "sn-job",
                                 "Cron": "* * * * * *", "Content": "", "Url": expected_url,
                                 "Method": "POST"}, c

        # ---- the builtin scheduler is off: nothing fires by itself ----------------------
        time.sleep(2.5)
        assert statuses(db, jid) == [], statuses(db, jid)

        # ---- the callback fires the job ----------------------------------------------------
        status, body = fake.fire(jid)
        # No worker of the class: the fire happened and its run is Failed; answered 200 so
        # that Scheduler.NET does not retry (each retry would be another failed run).
        assert status == 200 and body["status"] == "Failed", (status, body)
        rows = h.wait_until("JobStatus row of the callback fire", lambda: statuses(db, jid))
        assert len(rows) == 1 and rows[0][1] == "Failed", rows
        assert "no worker of class" in rows[0][2], rows
        # The signature authorizes that job's trigger only, and must be right.
        good = sign(jid)
        bad = good[:-1] + ("1" if good[-1] == "0" else "0")
        for url in (f"{base}/api/v1.0/jobs/{jid}/trigger?sig={bad}",
                    f"{base}/api/v1.0/jobs/{jid}/trigger",
                    f"{base}/api/v1.0/jobs/{jid}?sig={sign(jid)}"):
            status, body = fake.fire(jid, url)
            assert status == 401, (url, status, body)
        assert len(statuses(db, jid)) == 1
        # With the bearer token the trigger answers 409 as usual.
        status, body = h.api("POST", broker, f"{JOBS}/{jid}/trigger")
        assert status == 409 and body["error"]["code"] == "run_failed", (status, body)

        # ---- update: PUT with the new cron -----------------------------------------------
        n = len(fake.calls_for(jid))
        assert h.api("PUT", broker, f"{JOBS}/{jid}",
                     job_body("sn-job-2", "0 */5 * * * *"))[0] == 200
        h.wait_until("PUT at Scheduler.NET", lambda: (fake.job(jid) or {}).get("Cron")
                     == "0 */5 * * * *", timeout=15)
        new = fake.calls_for(jid)[n:]
        assert [c["method"] for c in new] == ["PUT"], new
        assert new[0]["body"]["Name"] == "sn-job-2" and new[0]["token"] == SN_TOKEN, new

        # ---- disable: DELETE; enable: PUT refused (not there) then POST -------------------
        n = len(fake.calls_for(jid))
        assert h.api("PUT", broker, f"{JOBS}/{jid}",
                     job_body("sn-job-2", "0 */5 * * * *", enabled=False))[0] == 200
        h.wait_until("DELETE on disable", lambda: fake.job(jid) is None, timeout=15)
        new = fake.calls_for(jid)[n:]
        assert [(c["method"], c["path"]) for c in new] == [
            ("DELETE", f"/api/v1.0/callbackjob/{jid}")], new
        assert h.api("PUT", broker, f"{JOBS}/{jid}",
                     job_body("sn-job-3", "0 */5 * * * *"))[0] == 200
        h.wait_until("back at Scheduler.NET", lambda: (fake.job(jid) or {}).get("Name")
                     == "sn-job-3", timeout=15)
        new = fake.calls_for(jid)[n + 1:]
        assert [c["method"] for c in new] == ["PUT", "POST"], new

        # ---- a second job, then delete the first: DELETE ---------------------------------
        status, job2 = h.api("POST", broker, JOBS, job_body("sn-other", "0 0 * * * *"))
        assert status == 201, (status, job2)
        h.wait_until("second job at Scheduler.NET", lambda: fake.job(job2["id"]), timeout=15)
        n = len(fake.calls_for(jid))
        assert h.api("DELETE", broker, f"{JOBS}/{jid}")[0] == 200
        h.wait_until("DELETE on delete", lambda: fake.job(jid) is None, timeout=15)
        new = fake.calls_for(jid)[n:]
        assert [(c["method"], c["path"], c["token"]) for c in new] == [
            ("DELETE", f"/api/v1.0/callbackjob/{jid}", SN_TOKEN)], new
        # A callback of the deleted job is refused (404) and records nothing.
        status, _ = fake.fire(jid, expected_url)
        assert status == 404, status
        assert len(statuses(db, jid)) == 2  # the callback fire and the bearer trigger

        # ---- restart: the broker resends its jobs (the service lost one) -----------------
        assert env.stop(broker) == 0, "broker did not stop cleanly"
        with fake.lock:
            fake.jobs.clear()
            mark = len(fake.calls)
        broker = env.start_broker("broker2", extra_yaml=yaml, port=port, db=db)
        h.wait_until("resent at start", lambda: fake.job(job2["id"]), timeout=15)
        with fake.lock:
            resent = fake.calls[mark:]
        assert [(c["method"], c["body"]["Id"]) for c in resent] == [
            ("PUT", job2["id"]), ("POST", job2["id"])], resent
        assert fake.job(jid) is None
        status, body = fake.fire(job2["id"])
        assert status == 200 and body["status"] == "Failed", (status, body)
        h.wait_until("JobStatus of the second job", lambda: statuses(db, job2["id"]))
        assert env.stop(broker) == 0, "broker did not stop cleanly"
        log = env.log("broker1") + env.log("broker2")
        assert "retrying in" in log, "the 503 retry was not logged"
        print(f"schedulernet: {len(fake.calls)} calls to the fake service, callbacks fire jobs")
    except BaseException:
        env.dump_logs()
        raise
    finally:
        fake.close()
        env.close()


if __name__ == "__main__":
    main()
