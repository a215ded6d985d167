"""An unchanged Scrapy spider file (tests/e2e/scrapy_site_spider.py: response.follow on
every link, cb_kwargs, meta, its own item pipeline) crawls the 2,000-page site through a
broker and two nodes with `python3 -m spiderhub.scrapy_bridge` (Debian's Scrapy 2.8):

1. every page exactly once in the items file, cb_kwargs and meta carried across the trip
   (hops > 0 and "from" set on every page but the first), the user's pipeline applied,
   JobStatus exact, both nodes downloading;
2. the bridge killed (SIGKILL) at a quarter of the crawl and started again on the same
   state and items files: the run finishes and every page is still there exactly once.
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


def start_bridge(env, broker, name, output, state):
    src = os.path.join(env.args.source, "clients", "python")
    spider = os.path.join(env.args.source, "tests", "e2e", "scrapy_site_spider.py")
    return env.spawn(name, [PYTHON, "-m", "spiderhub.scrapy_bridge", spider, "--broker",
                            broker.base + "/", "--token", h.TOKEN, "--class", CLS, "-o", output,
                            "--state", state], env=dict(os.environ, PYTHONPATH=src))


def crawl(env, broker, site, tag, kill_at=None):
    output, state = env.path(f"items-{tag}.jsonl"), env.path(f"state-{tag}.db")
    bridge = start_bridge(env, broker, f"bridge-{tag}", output, state)
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
        bridge = start_bridge(env, broker, f"bridge-{tag}-2", output, state)

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
    expected = {site.base + "/index.html"} | {f"{site.base}/p/{i}.html" for i in range(1, PAGES)}
    urls = collections.Counter(i["url"] for i in items)
    dupes = [u for u, c in urls.items() if c > 1]
    assert not dupes, f"{what}: {len(dupes)} pages twice, e.g. {dupes[:3]}"
    missing = expected - set(urls)
    assert not missing, f"{what}: {len(missing)} pages missing, e.g. {sorted(missing)[:3]}"
    assert set(urls) == expected, (what, sorted(set(urls) - expected)[:3])
    start = site.base + "/index.html"
    for i in items:
        if i["url"] == start:
            assert i["hops"] == 0 and i["from"] is None, i
        else:
            assert i["hops"] >= 1 and i["from"], f"{what}: cb_kwargs/meta lost: {i}"
        assert i["title"] == (i["title"] or "").upper() and i["title"], i  # user pipeline ran
    assert run["success"] == PAGES and run["error"] == 0 and run["left"] == 0, run


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
        print(f"scrapy bridge: {PAGES} pages once in {took:.1f}s ({PAGES / took:.0f} pages/s), "
              f"cb_kwargs and meta kept, the spider's pipeline applied", flush=True)
        run, items, took, killed = crawl(env, broker, site, "killed", kill_at=PAGES // 4)
        check(site, run, items, "killed")
        print(f"scrapy bridge killed -9 after {killed} items and restarted: every page once",
              flush=True)


if __name__ == "__main__":
    main()
