"""Politeness keyed by IP address: every site of one machine shares one budget.

Twelve hosts of the many-host test web (bench/many_hosts.py) listen on different ports of
127.0.0.1 and link to each other as http://localhost:PORT/..., so the broker has host names
to resolve. The job asks for `PolitenessKey: ip` with `MaxConcurrencyPerHost: 3` (adaptive
throttling off, so the budget is used from the start); a broker and two nodes with
thread_num 8 crawl. From the servers' own record:

- at most 3 requests were in flight over all twelve hosts together (keyed by host and port
  each host alone could have 3, so 36 at once);
- the budget was used (2 or more at once at some point);
- the hosts table has one key, the address `localhost` resolves to, and no request waits
  for an address at the end;
- every page is downloaded once and in the items file once; JobStatus is exact.
"""
import collections
import json
import os
import sys
import time

import harness as h

HOSTS = 12
PAGES = 10
LIMIT = 3


def main():
    args = h.parse_args()
    sys.path.insert(0, os.path.join(args.source, "bench"))
    import many_hosts as mh

    env = h.Env(args, "politeness_ip")
    specs = mh.uniform_web(HOSTS, PAGES, latency_ms=100)
    web = mh.ManyHostWeb(specs, link_host="localhost")
    web.start()
    try:
        broker = env.start_broker(extra_yaml="""dispatch:
  thread_num: 8
  block_size: 20
politeness:
  adaptive: false
""")
        nodes = [env.start_node(broker, f"node{i}") for i in (1, 2)]
        worker = env.start_worker(broker)
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        output = env.path("items.jsonl")
        status, job = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "polite-ip", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": "spiderhub.samples.SiteSpider",
                           "PolitenessKey": "ip", "MaxConcurrencyPerHost": str(LIMIT),
                           "Arguments": json.dumps({"startUrl": web.url(specs[0].name),
                                                    "maxDepth": 8, "sameDomain": False,
                                                    "output": output})}})
        assert status == 201, (status, job)
        identity = h.trigger_run(broker, job["id"])
        started = time.monotonic()

        keys_seen = set()

        def finished():
            status, body = h.api("GET", broker, f"/api/v1.0/runs/{identity}/hosts")
            if status == 200:
                keys_seen.update(x["key"] for x in body["hosts"])
                over = [x for x in body["hosts"] if x["inFlight"] > LIMIT]
                assert not over, f"keys over their budget in /hosts: {over}"
            return (h.run_of(broker, job["id"]) or {}).get("status") in (
                "Success", "Failed", "Exited")
        h.wait_until("run finished", finished, timeout=180, interval=0.3)
        elapsed = time.monotonic() - started
        run = h.run_of(broker, job["id"])

        peak = web.peak_concurrency_all()
        assert peak <= LIMIT, f"{peak} requests at once over hosts of one address > {LIMIT}"
        assert peak >= 2, f"the shared budget of {LIMIT} was never used (peak {peak})"
        assert keys_seen, "the hosts table never answered"
        assert len(keys_seen) == 1 and next(iter(keys_seen)) in ("ip:127.0.0.1", "ip:::1"), \
            f"expected one key for the address of localhost, saw {sorted(keys_seen)[:5]}"

        records = web.records()
        expected = {web.url(s.name, f"/p/{i}") for s in specs for i in range(PAGES)}
        twice = [(name, p) for name, rec in records.items()
                 for p, c in collections.Counter(p for (_, _, p, s) in rec.requests
                                                 if s == 200 and p.startswith("/p/")).items()
                 if c > 1]
        assert not twice, f"pages downloaded twice: {twice[:5]}"
        items = h.read_items(output)
        urls = collections.Counter(i["url"] for i in items)
        assert not [u for u, c in urls.items() if c > 1], "items twice"
        assert set(urls) == expected, (sorted(expected - set(urls))[:5],
                                       sorted(set(urls) - expected)[:5])
        assert run["status"] == "Success", run
        assert run["success"] == len(expected) and run["error"] == 0, run
        assert run["left"] == 0, run
        print(f"politeness by IP: {HOSTS} hosts named localhost on one address, "
              f"{len(expected)} pages in {elapsed:.1f}s, peak {peak} at once over all hosts "
              f"(limit {LIMIT}), key {sorted(keys_seen)}", flush=True)
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
