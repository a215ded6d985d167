"""Politeness across the cluster, judged by the web servers' own records.

A broker and three nodes (dispatch.thread_num 16, so a node could put 16 requests on a host
from one block) crawl the many-host test web of bench/many_hosts.py: 120 hosts of 15 pages,
some slow, some with robots.txt (Disallow, Crawl-delay), one answering 429 with
Retry-After, one failing with 503 for its first 3 s, one down. The broker's budget is 4
requests in flight per host. From what the servers recorded:

- peak concurrency per host <= 4;
- consecutive arrivals at a Crawl-delay host >= 1 s (minus 50 ms of timer slack);
- no path robots.txt disallows is ever requested;
- after the 429, no request reaches that host before its Retry-After ends (requests that
  were already on their way within 200 ms of the 429 are tolerated: another node may have
  started one before the broker's pause reached it);
- every allowed page is downloaded (HTTP 200) exactly once and is in the items file once;
- the down host ends as an error while the others finish; JobStatus success, error and
  Skipped are exactly what robots.txt and the link graph imply.
"""
import collections
import json
import os
import sys
import time

import harness as h

HOSTS = 120
PAGES = 15
LIMIT = 4
CRAWL_DELAY_SLACK_S = 0.05
PAUSE_PROPAGATION_S = 0.2


def link_targets(spec, i):
    return [j for j in (2 * i + 1, 2 * i + 2) if j < spec.pages]


def main():
    args = h.parse_args()
    sys.path.insert(0, os.path.join(args.source, "bench"))
    import many_hosts as mh

    env = h.Env(args, "politeness")
    specs = mh.standard_web(HOSTS, PAGES, seed=7)
    web = mh.ManyHostWeb(specs)
    web.start()
    try:
        broker = env.start_broker(extra_yaml=f"""dispatch:
  thread_num: 16
  block_size: 50
politeness:
  max_concurrency_per_host: {LIMIT}
  robots_retry_ms: 500
  robots_max_attempts: 2
""")
        nodes = [env.start_node(broker, f"node{i}", extra_yaml="retry_download: 1\n")
                 for i in (1, 2, 3)]
        worker = env.start_worker(broker)
        h.wait_until("three nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 3)
        output = env.path("items.jsonl")
        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "polite", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": "spiderhub.samples.SiteSpider",
                           "Arguments": json.dumps({"startUrl": web.url(specs[0].name),
                                                    "maxDepth": 8, "sameDomain": False,
                                                    "output": output})}})
        assert status == 201, (status, job)

        identity = h.trigger_run(broker, job["id"])
        started = time.monotonic()

        # While it runs: the hosts table answers and knows the hosts.
        def hosts_table():
            status, body = h.api("GET", broker, f"/api/v1.0/runs/{identity}/hosts")
            return body if status == 200 and len(body["hosts"]) >= HOSTS // 2 else None
        table = h.wait_until("hosts table", hosts_table, timeout=60, interval=0.3)
        over = [x for x in table["hosts"] if not 0 <= x["inFlight"] <= LIMIT]
        assert not over, f"hosts over their budget in /hosts: {over[:3]}"

        h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     in ("Success", "Failed", "Exited"), timeout=240, interval=0.5)
        elapsed = time.monotonic() - started
        run = h.run_of(broker, job["id"])
        records = web.records()

        # What robots.txt and the link graph imply.
        expected_ok, expected_skipped, expected_errors = set(), set(), set()
        for spec in specs:
            base = web.url(spec.name, "")
            if spec.down:
                expected_errors.add(base + "/p/0")
                continue
            pages = mh.expected_pages(spec)
            expected_ok |= {f"{base}/p/{i}" for i in pages}
            for i in pages:
                for j in link_targets(spec, i):
                    if not mh.robots_allows(spec.robots, f"/p/{j}"):
                        expected_skipped.add(f"{base}/p/{j}")

        problems = []
        for spec in specs:
            rec = records[spec.name]
            if rec.peak_concurrency > LIMIT:
                problems.append(f"{spec.name}: peak concurrency {rec.peak_concurrency} > {LIMIT}")
            for (_, _, path, status) in rec.requests:
                if path != "/robots.txt" and not mh.robots_allows(spec.robots, path):
                    problems.append(f"{spec.name}: disallowed {path} requested ({status})")
            ok = collections.Counter(p for (_, _, p, s) in rec.requests
                                     if s == 200 and p.startswith("/p/"))
            twice = [p for p, c in ok.items() if c > 1]
            if twice:
                problems.append(f"{spec.name}: downloaded twice: {twice}")
            if spec.crawl_delay_s:
                arrivals = sorted(t for (t, _, _, _) in rec.requests)
                gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
                short = [round(g, 3) for g in gaps if g < spec.crawl_delay_s - CRAWL_DELAY_SLACK_S]
                if short:
                    problems.append(f"{spec.name}: Crawl-delay {spec.crawl_delay_s}s broken: "
                                    f"gaps {short}")
                print(f"  {spec.name} Crawl-delay {spec.crawl_delay_s}s: {len(arrivals)} "
                      f"requests, smallest gap {min(gaps):.3f}s", flush=True)
            if spec.throttle_at:
                assert rec.throttled_at, f"{spec.name} never answered 429: {rec.requests}"
                early = [round(u - rec.throttled_at, 3) for (_, u, _, _) in rec.requests
                         if rec.throttled_at + PAUSE_PROPAGATION_S < u < rec.throttle_until]
                if early:
                    problems.append(f"{spec.name}: requests {early}s after its 429, before "
                                    f"Retry-After ended ({rec.throttle_until - rec.throttled_at}s)")
                after = [u for (_, u, _, _) in rec.requests if u > rec.throttled_at]
                print(f"  {spec.name} 429 + Retry-After {spec.throttle_retry_after_s}s: next "
                      f"request {min(after) - rec.throttled_at:.3f}s later", flush=True)
        peak = max(r.peak_concurrency for r in records.values())
        assert not problems, "politeness violations:\n  " + "\n  ".join(problems[:30])

        items = h.read_items(output)
        urls = collections.Counter(i["url"] for i in items)
        dupes = [u for u, c in urls.items() if c > 1]
        assert not dupes, f"items twice: {dupes[:5]}"
        missing = expected_ok - set(urls)
        assert not missing, f"{len(missing)} allowed pages not crawled, e.g. {sorted(missing)[:5]}"
        extra = set(urls) - expected_ok
        assert not extra, f"unexpected items (skipped or down pages?): {sorted(extra)[:5]}"
        assert run["status"] == "Success", run
        assert run["success"] == len(expected_ok), (run, len(expected_ok))
        assert run["skipped"] == len(expected_skipped), (run, len(expected_skipped))
        assert run["error"] == len(expected_errors), (run, expected_errors)
        assert run["total"] == len(expected_ok) + len(expected_skipped) + len(expected_errors), run
        assert run["left"] == 0, run
        metrics = h.metrics(broker)
        assert metrics["spiderhub_requests_skipped_total"] == len(expected_skipped), metrics
        assert metrics["spiderhub_host_pauses_total"] >= 1, metrics
        status, _ = h.api("GET", broker, f"/api/v1.0/runs/{identity}/hosts")
        assert status == 404, status  # the run is over
        print(f"politeness: {HOSTS} hosts, {len(expected_ok)} pages in {elapsed:.1f}s, "
              f"{len(expected_skipped)} skipped by robots.txt, {len(expected_errors)} error "
              f"(down host), peak concurrency {peak} <= {LIMIT}, "
              f"{metrics['spiderhub_robots_fetched_total']:.0f} robots.txt fetches, "
              f"{metrics['spiderhub_host_pauses_total']:.0f} pauses, "
              f"{metrics['spiderhub_requests_deferred_total']:.0f} deferred")
        for p in nodes + [worker, broker]:
            env.stop(p)
    except BaseException:
        env.dump_logs()
        raise
    finally:
        web.stop()
        env.close()


if __name__ == "__main__":
    main()
