"""An unchanged Scrapy spider file (tests/e2e/scrapy_site_spider.py: response.follow on
every link, cb_kwargs, meta, its own item pipeline) crawls the 2,000-page site through a
broker and two nodes with `python3 -m spiderhub.scrapy_bridge SPIDER.py` (Debian's Scrapy
2.8), the file form of spiderhub-scrapy:

1. every page in the items file (-o) as plain Scrapy crawls it: once, and the start page
   twice (its start request has dont_filter, and the first link back to it is a request
   the duplicate filter had not seen: Scrapy fetches it again, so does the bridge);
   cb_kwargs and meta carried across the trip (hops > 0 and "from" set on every page but
   the start page's first visit), the user's pipeline applied, JobStatus exact, both
   nodes downloading;
2. the bridge killed (SIGKILL) at a quarter of the crawl and started again on the same
   items file: the run finishes and every page is still there as in 1;
3. bad input, exit status 2 and nothing pushed: a spider whose start request has a
   lambda callback (the run it got stays empty), a setting the bridge cannot honour
   (refused before connecting).
"""
import collections
import json
import os
import signal
import subprocess
import time

import harness as h

PAGES = 2000
CLS = "scrapy.site"
PYTHON = "/usr/bin/python3"  # Debian's python3-scrapy lives there


def start_bridge(env, broker, name, output, spider=None, cls=CLS, extra=()):
    src = os.path.join(env.args.source, "clients", "python")
    spider = spider or os.path.join(env.args.source, "tests", "e2e", "scrapy_site_spider.py")
    return env.spawn(name, [PYTHON, "-m", "spiderhub.scrapy_bridge", spider, "--broker",
                            broker.base + "/", "--token", h.TOKEN, "--class", cls, "-o", output,
                            *extra], env=dict(os.environ, PYTHONPATH=src))


def crawl(env, broker, site, tag, kill_at=None):
    output = env.path(f"items-{tag}.jsonl")
    bridge = start_bridge(env, broker, f"bridge-{tag}", output)
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": tag, "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": CLS,
                       "Arguments": json.dumps({"start_url": site.base + "/index.html"})}})
    assert status == 201, (status, job)
    h.trigger_run(broker, job["id"])
    t0 = time.monotonic()
    killed_after = None
    if kill_at:
        h.wait_until("some items", lambda: h.count_lines(output) >= kill_at, timeout=90, interval=0.05)
        bridge.send_signal(signal.SIGKILL)
        bridge.wait()
        killed_after = h.count_lines(output)
        # --state (the request file of older bridges) is still taken, and ignored.
        bridge = start_bridge(env, broker, f"bridge-{tag}-2", output,
                              extra=("--state", env.path("old-state.db")))

    def done():
        assert bridge.poll() in (None, 0), env.log(bridge.name)[-3000:]
        r = h.run_of(broker, job["id"]) or {}
        assert r.get("status") in (None, "Running", "Success"), r
        return r if r.get("status") == "Success" else None
    run = h.wait_until("run Success", done, timeout=180, interval=0.5)
    took = time.monotonic() - t0
    bridge.wait(timeout=30)  # the run's end closes the spider and the bridge exits
    assert bridge.returncode == 0, (bridge.returncode, env.log(bridge.name)[-2000:])
    return run, h.read_items(output), took, killed_after


def check(site, run, items, what):
    start = site.base + "/index.html"
    expected = {start} | {f"{site.base}/p/{i}.html" for i in range(1, PAGES)}
    urls = collections.Counter(i["url"] for i in items)
    missing = expected - set(urls)
    assert not missing, f"{what}: {len(missing)} pages missing, e.g. {sorted(missing)[:3]}"
    assert set(urls) == expected, (what, sorted(set(urls) - expected)[:3])
    dupes = [u for u, c in urls.items() if c > 1 and u != start]
    assert not dupes, f"{what}: {len(dupes)} pages twice, e.g. {dupes[:3]}"
    assert urls[start] == 2, f"{what}: the start page {urls[start]} times, Scrapy fetches it twice"
    firsts = [i for i in items if i["url"] == start and i["hops"] == 0]
    assert len(firsts) == 1 and firsts[0]["from"] is None, firsts
    for i in items:
        if i is not firsts[0]:
            assert i["hops"] >= 1 and i["from"], f"{what}: cb_kwargs/meta lost: {i}"
        assert i["title"] == (i["title"] or "").upper() and i["title"], i  # user pipeline ran
    n = PAGES + 1
    assert run["success"] == n and run["error"] == 0 and run["left"] == 0, run


LAMBDA_SPIDER = """
import scrapy


class LambdaSpider(scrapy.Spider):
    name = "lambda"
    start_urls = ["http://127.0.0.1:1/"]

    def start_requests(self):
        for url in self.start_urls:
            yield scrapy.Request(url, callback=lambda response: None)
"""


def bad_input(env, broker):
    """Exit status 2 and nothing pushed."""
    spider = env.write("lambda_spider.py", LAMBDA_SPIDER)
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "lambda", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": "scrapy.lambda"}})
    assert status == 201, (status, job)
    bridge = start_bridge(env, broker, "bridge-lambda", env.path("lambda.jsonl"), spider=spider,
                          cls="scrapy.lambda")
    h.trigger_run(broker, job["id"])
    assert bridge.wait(timeout=60) == 2, (bridge.returncode, env.log(bridge.name)[-2000:])
    log = env.log(bridge.name)
    assert "cannot be handed to the broker" in log and "nothing was pushed" in log, log[-2000:]
    run = h.run_of(broker, job["id"])
    assert run["status"] == "Running" and run["total"] == 0, run  # nothing pushed, no Complete
    refused = start_bridge(env, broker, "bridge-refused", env.path("refused.jsonl"),
                           extra=("-s", "SCHEDULER=scrapy_redis.scheduler.Scheduler"))
    assert refused.wait(timeout=60) == 2, (refused.returncode, env.log(refused.name)[-2000:])
    assert "refused: SCHEDULER" in env.log(refused.name), env.log(refused.name)[-2000:]


def main():
    args = h.parse_args()
    probe = subprocess.run([PYTHON, "-c", "import scrapy"], capture_output=True)
    assert probe.returncode == 0, "Debian's python3-scrapy is missing (scripts/setup installs it)"
    with h.Env(args, "scrapy") as env:
        site = env.start_site(PAGES)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        for n in ("node1", "node2"):
            env.start_node(broker, n)
        run, items, took, _ = crawl(env, broker, site, "plain")
        check(site, run, items, "plain")
        per_node = {n["nodeId"]: n["success"] for n in run["nodes"]}
        assert len(per_node) == 2 and min(per_node.values()) > 0, per_node
        print(f"scrapy bridge: {PAGES} pages in {took:.1f}s ({PAGES / took:.0f} pages/s), each "
              "once but the start page twice as in Scrapy, cb_kwargs and meta kept, the "
              "spider's pipeline applied", flush=True)
        run, items, took, killed = crawl(env, broker, site, "killed", kill_at=PAGES // 4)
        check(site, run, items, "killed")
        print(f"scrapy bridge killed -9 after {killed} items and restarted: every page as "
              "plain Scrapy crawls it", flush=True)
        bad_input(env, broker)
        print("scrapy bridge: a lambda callback among the start requests and a refused "
              "setting end with status 2, nothing pushed", flush=True)


if __name__ == "__main__":
    main()
