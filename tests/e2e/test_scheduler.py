"""The builtin cron scheduler fires every due time exactly once across a broker kill -9
and restart.

A block job whose FullClassName has no worker records one 'Failed' JobStatus row per
fire, under the identity the scheduler committed in the Fire ledger (Fire(JobId, Due,
Identity), docs/scheduling.md). The test accounts for every due second: it fired once
(a Fire row whose identity has exactly one JobStatus row) or lies in the range of a
'Missed' row, never both, never twice.

Within the grace: the due times missed while down run once (the latest) and the others
are recorded as missed; fires committed before the crash but not yet run are replayed
under their identity, and not repeated when they had already run. Outside the grace:
nothing runs, a 'Missed' row is written once. A cron change applies at once, disabling
and deleting stop the job."""
import calendar
import re
import signal
import sqlite3
import time

import harness as h

JOBS = "/api/v1.0/jobs"
CLASS = "tests.NobodyListens"
MISSED_RE = re.compile(r"^(more than )?(\d+) fire\(s\) from (\S+) to (\S+) missed: (.*)$")


def job_body(cron, enabled=True):
    return {"name": "every-second", "jobType": "block", "cron": cron, "isEnabled": enabled,
            "properties": {"FullClassName": CLASS}}


def unix(iso):
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


class Ledger:
    def __init__(self, db, job_id):
        self.db, self.job_id = db, job_id

    def query(self, sql, *params):
        con = sqlite3.connect(self.db, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def fires(self):
        """[(due, identity)] in due order."""
        return self.query("SELECT Due, Identity FROM Fire WHERE JobId=? ORDER BY Due",
                          self.job_id)

    def statuses(self):
        return self.query("SELECT Identity, Status, Reason FROM JobStatus WHERE JobId=?",
                          self.job_id)

    def missed(self):
        """[(first, last, count, why)] of the 'Missed' rows of due times that never fired
        (a Missed row under a ledger identity is an expired replay, see settled())."""
        out = []
        fired = {i for _, i in self.fires()}
        for ident, status, reason in self.statuses():
            if status == "Missed" and ident not in fired:
                m = MISSED_RE.match(reason)
                assert m and not m.group(1), f"unexpected Missed reason: {reason!r}"
                out.append((unix(m.group(3)), unix(m.group(4)), int(m.group(2)), m.group(5)))
        return sorted(out)

    def settled(self):
        """True when every committed fire was handled: one row per ledger identity, Failed
        (ran; no worker), Skipped (raced with a disable/delete) or Missed (committed before
        a kill, replayed beyond the grace), and no Failed/Skipped row outside the ledger."""
        fired = {i for _, i in self.fires()}
        rows = self.statuses()
        ran = [i for i, s, _ in rows if s in ("Failed", "Skipped")]
        expired = [i for i, s, _ in rows if s == "Missed" and i in fired]
        handled = ran + expired
        return set(handled) == fired and len(handled) == len(fired)

    def expired(self):
        """Ledger identities recorded Missed at a restart (committed, beyond the grace)."""
        fired = {i for _, i in self.fires()}
        return {i for i, s, _ in self.statuses() if s == "Missed" and i in fired}

    def check(self, every_second_until=None, settle=True):
        """The exactly-once invariants; returns the ledger's dues. settle=False while the
        broker is down (committed fires may wait for their replay)."""
        if settle:
            h.wait_until("every committed fire has run once", self.settled, timeout=15)
        fires = self.fires()
        dues = [d for d, _ in fires]
        assert len(dues) == len(set(dues)), f"a due time fired twice: {dues}"
        ids = [i for _, i in fires]
        assert len(ids) == len(set(ids)), "an identity was used for two due times"
        statuses = self.statuses()
        assert all(s in ("Failed", "Skipped", "Missed") for _, s, _ in statuses), statuses
        missed = self.missed()
        covered = set()
        for first, last, count, _ in missed:
            assert first <= last, missed
            span = set(range(first, last + 1))
            if every_second_until is not None and last <= every_second_until:
                assert count == len(span), f"Missed count {count} != range {first}..{last}"
            assert not covered & span, f"due times recorded missed twice: {missed}"
            assert not span & set(dues), f"a missed due time also fired: {missed} / {dues}"
            covered |= span
        if every_second_until is not None:
            # An every-second schedule: no due second is unaccounted for.
            handled = set(d for d in dues if d <= every_second_until) | covered
            lo = min(handled)
            hi = max(d for d in handled if d <= every_second_until)
            holes = sorted(set(range(lo, hi + 1)) - handled)
            assert not holes, f"due seconds neither fired nor missed: {holes[:10]}"
        return dues


def count_fires(ledger, n):
    return h.wait_until(f"{n} fires", lambda: len(ledger.fires()) >= n and ledger.fires(),
                        timeout=30, interval=0.2)


def within_grace(env):
    """Per-second job, kill -9 mid-stream, down ~5 s (grace 30 s), crash windows seeded."""
    db = env.path("a", "broker.db")
    yaml = "scheduler:\n  misfire_grace_s: 30\n"
    broker = env.start_broker("a-broker1", extra_yaml=yaml, db=db)
    status, job = h.api("POST", broker, JOBS, job_body("* * * * * *"))
    assert status == 201, (status, job)
    jid = job["id"]
    ledger = Ledger(db, jid)
    count_fires(ledger, 5)
    env.stop(broker, signal.SIGKILL)
    killed = time.time()
    dues = ledger.check(settle=False)
    last = dues[-1]
    assert dues == list(range(dues[0], last + 1)), f"live fires skipped a second: {dues}"
    # Crash windows, as a kill between two steps leaves them (the broker is down):
    #  X: fire committed (ledger, LastFire, PendingFire), the job manager never got it;
    #  Y: fire committed and run (JobStatus written), PendingFire not yet removed.
    x, y = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    con = sqlite3.connect(db, timeout=10)
    with con:
        for due, ident in ((last + 1, x), (last + 2, y)):
            con.execute("INSERT INTO Fire (JobId, Due, Identity, CreationTime) "
                        "VALUES (?,?,?,'seeded')", (jid, due, ident))
            con.execute("INSERT INTO PendingFire (JobId, Due, Identity) VALUES (?,?,?)",
                        (jid, due, ident))
        con.execute("INSERT INTO JobStatus (JobId, Identity, Status, Reason, UpdateTime) "
                    "VALUES (?,?,'Failed','seeded: ran before the crash','seeded')", (jid, y))
        con.execute("UPDATE Job SET LastFire=? WHERE Id=?", (last + 2, jid))
    con.close()
    time.sleep(max(0.0, killed + 5 - time.time()))

    started = time.time()
    broker = env.start_broker("a-broker2", extra_yaml=yaml, db=db)
    healthy = time.time()
    count_fires(ledger, len(dues) + 2 + 4)
    dues = ledger.check(every_second_until=int(time.time()) - 2)
    st = {i: (s, r) for i, s, r in ledger.statuses()}
    assert st[x][0] == "Failed" and "no worker" in st[x][1], st[x]          # replayed once
    assert st[y] == ("Failed", "seeded: ran before the crash"), st[y]       # not repeated
    assert ledger.query("SELECT count(*) FROM PendingFire") == [(0,)]
    after = [d for d in dues if d > last + 2]
    catch_up = after[0]
    # The due times missed while down: the latest ran once, the others are 'Missed'.
    down = [m for m in ledger.missed() if "broker was down" in m[3]]
    assert int(started) - 1 <= catch_up <= int(healthy) + 2, (catch_up, started, healthy)
    if catch_up > last + 3:
        assert down == [(last + 3, catch_up - 1, catch_up - last - 3, down[0][3])], down
    else:
        assert not down, down
    assert after == list(range(catch_up, after[-1] + 1)), f"skipped after restart: {after}"
    assert h.wait_until("runs API lists every run", lambda: len(h.api(
        "GET", broker, f"/api/v1.0/runs?jobId={jid}")[1]) == len(ledger.statuses()))
    print(f"within grace: {len(dues)} fires, down {healthy - killed:.1f}s, catch-up once for "
          f"{catch_up}, missed {down[0][2] if down else 0}, replayed 1, not repeated 1")
    return broker, ledger


def schedule_changes(env, broker, ledger):
    """A cron change applies at once; disable and delete stop the job."""
    jid = ledger.job_id
    changed = time.time()
    assert h.api("PUT", broker, f"{JOBS}/{jid}", job_body("*/3 * * * * *"))[0] == 200
    time.sleep(7)
    new = [d for d in ledger.check() if d > changed + 1]
    assert len(new) >= 2, f"the new cron did not fire: {new}"
    assert all(d % 3 == 0 for d in new), f"fires after the change off the new cron: {new}"
    assert new[0] <= changed + 4, f"the new cron applied late: {new[0]} vs {changed}"

    disabled = time.time()
    assert h.api("PUT", broker, f"{JOBS}/{jid}", job_body("* * * * * *", False))[0] == 200
    time.sleep(3.5)
    late = [d for d in ledger.check() if d > disabled + 1]
    assert not late, f"fired while disabled: {late}"

    enabled = time.time()
    assert h.api("PUT", broker, f"{JOBS}/{jid}", job_body("* * * * * *"))[0] == 200
    h.wait_until("fires again after enable", lambda: any(
        d > enabled for d in [d for d, _ in ledger.fires()]), timeout=5)
    dues = ledger.check()
    gap = [d for d in dues if disabled + 1 < d <= enabled]
    assert not gap, f"the disabled period was replayed: {gap}"
    assert not [m for m in ledger.missed() if m[1] > disabled + 1], \
        "a disabled period is not 'missed'"

    deleted = time.time()
    assert h.api("DELETE", broker, f"{JOBS}/{jid}")[0] == 200
    time.sleep(3)
    late = [d for d in ledger.check() if d > deleted + 1]
    assert not late, f"fired after delete: {late}"
    assert env.stop(broker) == 0, "broker did not stop cleanly"
    print(f"changes: cron change applied at {new[0] - changed:.1f}s, disable and delete stop")


def outside_grace(env):
    """Down longer than the grace: the missed due time does not run, it is recorded once."""
    db = env.path("b", "broker.db")
    yaml = "scheduler:\n  misfire_grace_s: 2\n"
    broker = env.start_broker("b-broker1", extra_yaml=yaml, db=db)
    status, job = h.api("POST", broker, JOBS, job_body("* * * * * *"))
    assert status == 201, (status, job)
    ledger = Ledger(db, job["id"])
    count_fires(ledger, 5)
    # A once-a-minute schedule whose next due time falls while the broker is down.
    due = int(time.time()) + 5
    cron = f"{due % 60} * * * * *"
    assert h.api("PUT", broker, f"{JOBS}/{job['id']}", job_body(cron))[0] == 200
    env.stop(broker, signal.SIGKILL)
    killed = time.time()
    before = ledger.check(settle=False)
    assert due not in before
    # A fire committed ahead of its due time (arm lead 500 ms) may be waiting in PendingFire.
    armed = {i for d, i in ledger.fires() if d > killed}
    time.sleep(max(0.0, due + 2 + 2 - time.time()))  # > grace after the due time

    broker = env.start_broker("b-broker2", extra_yaml=yaml, db=db)
    missed = h.wait_until("Missed row", lambda: [
        m for m in ledger.missed() if "broker was down" in m[3]], timeout=10)
    assert missed == [(due, due, 1, missed[0][3])], missed
    assert "misfire grace 2 s" in missed[0][3], missed
    time.sleep(1)
    assert ledger.check() == before, "a due time outside the grace ran"
    assert ledger.expired() == armed, (ledger.expired(), armed)  # replayed beyond the grace
    assert ledger.query("SELECT LastFire FROM Job WHERE Id=?", job["id"]) == [(due,)]
    # Recorded once: a clean restart does not record it again.
    assert env.stop(broker) == 0
    broker = env.start_broker("b-broker3", extra_yaml=yaml, db=db)
    time.sleep(1.5)
    assert len(ledger.missed()) == 1, ledger.missed()
    assert ledger.check() == before
    assert env.stop(broker) == 0
    print(f"outside grace: due {due} recorded missed once, not run")


def main():
    args = h.parse_args()
    with h.Env(args, "scheduler") as env:
        broker, ledger = within_grace(env)
        schedule_changes(env, broker, ledger)
        outside_grace(env)


if __name__ == "__main__":
    main()
