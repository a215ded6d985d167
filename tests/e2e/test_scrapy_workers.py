"""Several Scrapy bridges on one run (issue #36, job property WorkersPerRun 0): three
`spiderhub-scrapy crawl docs --items FILE` processes in the project of
tests/e2e/scrapy_project, over the 2,000-page generated site, each with its own items
file; one is killed (SIGKILL) mid-crawl and not started again.

Any bridge rebuilds any result's Scrapy request from its payload, so the killed bridge's
unacked results go to the two others and nothing is lost:

- the run ends Success with every page downloaded once (JobStatus: 2,001 requests, the
  start page twice as in Scrapy: all three bridges pushed its start request, one key);
- the union of the three items files holds every page, once per request (by requestHash);
  a request in two files was one the killed bridge had written without acking (its
  lines are written right before the ack, so that is rare: the ack's round trip);
- the broker handed the results the killed bridge held unacked to the others
  (spiderhub_results_released_total > 0);
- the two others exit 0 and each handled part of the run.
"""
import collections
import json
import os
import shutil
import signal
import time

import harness as h

PAGES = 2000
CLS = "docsite.docs.shared"
PYTHON = "/usr/bin/python3"  # Debian's python3-scrapy lives there


def start_bridge(env, broker, project, name):
    src = os.path.join(env.args.source, "clients", "python")
    return env.spawn(name, [
        "/bin/sh", "-c", 'cd "$0" && exec "$@"', project,
        PYTHON, "-m", "spiderhub.scrapy_bridge", "crawl", "docs", "--broker", broker.base + "/",
        "--token", h.TOKEN, "--class", CLS, "--items", env.path(f"{name}.jsonl"),
        "-s", "LOG_LEVEL=INFO"],
        env=dict(os.environ, PYTHONPATH=src, PYTHONDONTWRITEBYTECODE="1"))


def main():
    args = h.parse_args()
    with h.Env(args, "scrapyworkers") as env:
        project = env.path("project")
        shutil.copytree(os.path.join(args.source, "tests", "e2e", "scrapy_project"), project,
                        ignore=shutil.ignore_patterns("__pycache__"))
        site = env.start_site(PAGES)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        for n in ("node1", "node2"):
            env.start_node(broker, n)
        names = ["bridge1", "bridge2", "bridge3"]
        bridges = {n: start_bridge(env, broker, project, n) for n in names}
        h.wait_until("three bridges connected", lambda: h.metrics(broker).get(
            'spiderhub_sessions{kind="worker"}', 0) >= 3, timeout=60)
        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "shared", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": CLS, "WorkersPerRun": "0",
                           "Arguments": json.dumps({"start_url": site.base + "/index.html"})}})
        assert status == 201, (status, job)
        h.trigger_run(broker, job["id"], interval=0.2)
        t0 = time.monotonic()

        victim = bridges["bridge2"]
        lines = lambda: sum(h.count_lines(env.path(f"{n}.jsonl")) for n in names)  # noqa: E731
        h.wait_until("a third of the pages", lambda: lines() >= PAGES // 3 and
                     h.count_lines(env.path("bridge2.jsonl")) > 0, timeout=90, interval=0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = h.count_lines(env.path("bridge2.jsonl"))

        def done():
            for n in ("bridge1", "bridge3"):
                assert bridges[n].poll() in (None, 0), env.log(n)[-3000:]
            r = h.run_of(broker, job["id"]) or {}
            assert r.get("status") in (None, "Running", "Success"), r
            return r if r.get("status") == "Success" else None
        run = h.wait_until("run Success", done, timeout=120, interval=0.25)
        took = time.monotonic() - t0
        for n in ("bridge1", "bridge3"):
            assert bridges[n].wait(timeout=30) == 0, (n, env.log(n)[-3000:])

        # Every request downloaded once: 2,000 pages, the start page twice (dont_filter).
        n_requests = PAGES + 1
        assert run["total"] == n_requests and run["success"] == n_requests and \
            run["error"] == 0, run
        per_file = {n: h.read_items(env.path(f"{n}.jsonl")) for n in names}
        assert all(per_file[n] for n in ("bridge1", "bridge3")), \
            {n: len(i) for n, i in per_file.items()}
        by_hash = collections.defaultdict(set)   # requestHash -> files
        url_of = {}
        for n, items in per_file.items():
            per_hash = collections.Counter(i["requestHash"] for i in items)
            assert max(per_hash.values()) == 1, (n, per_hash.most_common(2))
            for i in items:
                by_hash[i["requestHash"]].add(n)
                url_of[i["requestHash"]] = i["url"]
        expected = h.site_pages(site.base, PAGES)
        urls = collections.Counter(url_of.values())
        missing = expected - set(urls)
        assert not missing, f"{len(missing)} pages lost, e.g. {sorted(missing)[:3]}"
        assert set(urls) == expected, sorted(set(urls) - expected)[:3]
        start = site.base + "/index.html"
        assert urls[start] == 2 and all(c == 1 for u, c in urls.items() if u != start), \
            [(u, c) for u, c in urls.items() if c != (2 if u == start else 1)][:3]
        released = h.metrics(broker).get("spiderhub_results_released_total", 0)
        assert released > 0, "the killed bridge held no unacked result: kill it later"
        twice = [x for x, files in by_hash.items() if len(files) > 1]
        assert all("bridge2" in by_hash[x] and len(by_hash[x]) == 2 for x in twice), \
            [(x, by_hash[x]) for x in twice][:3]
        print(f"three bridges on one run, bridge2 killed -9 after {killed_at} items: "
              f"{len(url_of)} requests ({PAGES} pages) in the union in {took:.1f}s, each "
              f"downloaded once; items per file "
              f"{ {n: len(i) for n, i in per_file.items()} }; {released:.0f} results the killed "
              f"bridge held unacked went to the others; {len(twice)} written by it without "
              "its ack, and again by another", flush=True)


if __name__ == "__main__":
    main()
