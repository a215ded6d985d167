"""The broker's database on a real filesystem that fills up mid-crawl (a small tmpfs
mounted for the test; the test runs as root like CI): the broker reports the failure (log,
/metrics) and refuses the writes instead of acknowledging them (pushes and results are
retried by the worker and the nodes); when space returns the crawl finishes by itself with
every page exactly once and JobStatus totals matching. A broker pointed at a read-only
filesystem refuses to start and says why."""
import collections
import os
import re
import subprocess
import time

import harness as h

PAGES = 6000


def metric(broker, name):
    return h.metrics(broker).get(name)


def main():
    args = h.parse_args()
    env = h.Env(args, "disk")
    disk = env.path("disk")
    os.makedirs(disk)
    mounted = False
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"cannot mount a tmpfs for the test (root needed): {p.stderr}"
        mounted = True
        site = env.start_site(PAGES)
        broker = env.start_broker(db=os.path.join(disk, "broker.db"), extra_yaml="""
dispatch:
  block_size: 50
  lease_timeout_ms: 3000
""")
        env.start_node(broker)
        env.start_worker(broker)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output)

        h.trigger_run(broker, job["id"])
        h.wait_until("crawl under way", lambda: len(h.read_items(output)) >= 20,
                     timeout=60, interval=0.05)

        # ---- disk full: a filler takes every free byte ----
        filler = os.path.join(disk, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
        h.wait_until("storage failures reported",
                     lambda: (metric(broker, "spiderhub_storage_failed_writes_total") or 0) > 0,
                     timeout=30, interval=0.2)
        log = env.log("broker")
        # SQLite's message, or the result spool's (same wording for a full disk).
        assert re.search(r"the database cannot be written \(.*database or disk is full.*\): "
                         r"writes are refused until it can", log), "no clear log line"
        # Writes (and reads) that still fit in the WAL file's free pages may succeed
        # meanwhile: the state flaps, but nothing refused was acknowledged (checked at
        # the end: every page exactly once). The jobs API answers each write either
        # 201 (then the job must survive) or 503 naming the storage failure.
        created, refused = [], []

        def create_job():
            # ~90 KB per job: small rows can fit in the WAL's free pages for as long as
            # the test waits (a checkpointed WAL is reused), these soon cannot.
            status, body = h.api("POST", broker, "/api/v1.0/jobs", {
                "name": f"during-full-{len(created) + len(refused)}", "jobType": "block",
                "cron": "0 0 1 1 *", "properties": {"FullClassName": "x.Y", "Arguments": "{}",
                                                    "Padding": "x" * 90000}})
            if status == 201:
                created.append(body["id"])
            else:
                err = body["error"] if isinstance(body, dict) else {}
                assert status == 503 and err.get("code") == "unavailable" and \
                    "storage" in err.get("message", "") and "full" in err["message"], \
                    (status, body)
                refused.append(err["message"])
            return refused
        h.wait_until("a jobs API write refused with 503", create_job, timeout=30, interval=0.2)
        time.sleep(1)

        # ---- space returns: the crawl goes on by itself ----
        os.remove(filler)
        h.wait_until("storage healthy again",
                     lambda: metric(broker, "spiderhub_storage_healthy") == 1,
                     timeout=30, interval=0.2)
        before = len(h.read_items(output))
        h.wait_until("more pages after recovery",
                     lambda: len(h.read_items(output)) > before + 50, timeout=60, interval=0.2)

        h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     == "Success", timeout=180, interval=0.5)
        run = h.run_of(broker, job["id"])
        items = h.read_items(output)
        urls = collections.Counter(i["url"] for i in items)
        expected = {site.base + "/index.html"} | {f"{site.base}/p/{i}.html" for i in range(1, PAGES)}
        assert set(urls) == expected, f"{len(expected - set(urls))} pages missing"
        assert max(urls.values()) == 1, [u for u, c in urls.items() if c > 1][:5]
        assert run["total"] == PAGES and run["success"] == PAGES and run["left"] == 0, run
        for job_id in created:  # acknowledged while the disk was full: still there
            status, _ = h.api("GET", broker, f"/api/v1.0/jobs/{job_id}")
            assert status == 200, (job_id, status)
        print(f"disk: jobs API while full: {len(refused)} refused (503: {refused[0]!r}), "
              f"{len(created)} accepted and kept")
        # ---- a read-only filesystem: a broker refuses to start on it, saying why ----
        ro = env.path("ro")
        os.makedirs(ro)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        try:
            conf = env.write("ro.yaml", f"storage:\n  path: {ro}/broker.db\ninspector:\n"
                                        f"  enabled: false\nhttp:\n  port: {h.free_port()}\n")
            p = subprocess.run([args.bin, "broker", "-c", conf], capture_output=True, text=True,
                               timeout=30, cwd=env.dir)
            out = p.stdout + p.stderr
            assert p.returncode == 1 and "cannot open" in out and "writable" in out, (p.returncode, out)
        finally:
            subprocess.run(["umount", "-l", ro], capture_output=True)
        print(f"disk: crawl survived a full disk; "
              f"{int(metric(broker, 'spiderhub_storage_failed_writes_total'))} writes refused")
    except BaseException:
        env.dump_logs()
        raise
    finally:
        if mounted:  # lazily: the broker may still hold files there until env.close()
            subprocess.run(["umount", "-l", disk], capture_output=True)
        env.close()


if __name__ == "__main__":
    main()
