"""The frontier on disk: a run whose waiting requests pass dispatch.frontier_memory_max
keeps the rest in the database only and reads them back in push order as its queue
drains. A 5,000-page crawl with a limit of 200 must spill most of its frontier, read it
back, and end with every page exactly once — also when the broker is killed -9 while
requests are on disk. Second scenario: a worker that stops acking (SIGSTOP) holds its run
at dispatch.max_unacked_results (no new blocks), and the run goes on when it resumes."""
import os
import signal
import time

import harness as h

PAGES = 5000
LIMIT = 200
BROKER_YAML = f"""
dispatch:
  block_size: 20
  thread_num: 2            # slow enough that the broker dies with requests on disk
  blocks_per_node: 2
  frontier_memory_max: {LIMIT}
  lease_timeout_ms: 3000
sessions:
  heartbeat_interval_ms: 1000
"""


def spilled(broker):
    return h.metrics(broker).get("spiderhub_requests_spilled", 0)


def check_exactly_once(broker, job, site, output):
    h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                 == "Success", timeout=240, interval=0.5)
    h.assert_exactly_once(output, h.site_pages(site.base, PAGES), h.run_of(broker, job["id"]))


def unacked(broker):
    m = h.metrics(broker)
    return m["spiderhub_results_stored_total"] - m["spiderhub_results_acked_total"]


def backpressure(args):
    max_unacked = 100
    with h.Env(args, "backpressure") as env:
        site = env.start_template_site(PAGES)
        broker = env.start_broker(extra_yaml=BROKER_YAML.replace(
            "dispatch:\n", f"dispatch:\n  max_unacked_results: {max_unacked}\n"))
        env.start_node(broker, "node1")
        env.start_node(broker, "node2")
        worker = env.start_worker(broker, runs=0)
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output, max_depth=8)
        h.trigger_run(broker, job["id"])
        h.wait_until("crawl under way", lambda: h.count_lines(output) >= 300, timeout=60,
                     interval=0.05)
        os.killpg(worker.pid, signal.SIGSTOP)
        try:
            time.sleep(3)  # blocks leased before the stop finish; no new ones
            held = unacked(broker)
            time.sleep(2)
            later = unacked(broker)
            # At most the limit plus the blocks that were already out (2 nodes x 2 x 20).
            bound = max_unacked + 2 * 2 * 20
            assert held <= bound and later <= bound, (held, later, bound)
            assert later == held, f"results kept coming while held: {held} -> {later}"
        finally:
            os.killpg(worker.pid, signal.SIGCONT)
        check_exactly_once(broker, job, site, output)
        print(f"backpressure: the stopped worker's run held at {int(held)} unacked results "
              f"(limit {max_unacked}); resumed and finished, {PAGES} pages exactly once")


def spill(args):
    with h.Env(args, "frontier-spill") as env:
        site = env.start_template_site(PAGES)
        broker = env.start_broker(extra_yaml=BROKER_YAML)
        env.start_node(broker, "node1")
        env.start_node(broker, "node2")
        env.start_worker(broker, runs=0)
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output, max_depth=8)
        h.trigger_run(broker, job["id"])
        # The frontier outgrows the limit: most of it waits on disk.
        peak = h.wait_until("requests spilled to disk", lambda: spilled(broker) >= 1000 and
                            spilled(broker), timeout=60, interval=0.05)
        waiting = h.metrics(broker)["spiderhub_requests_waiting"]
        assert waiting <= LIMIT + 20 * 10, f"{waiting} requests in memory with a limit of {LIMIT}"
        before = h.count_lines(output)
        assert before < PAGES, "the crawl ended before the crash"
        broker.send_signal(signal.SIGKILL)
        broker.wait(10)
        time.sleep(1)
        broker = env.start_broker(name="broker2", extra_yaml=BROKER_YAML, port=broker.port,
                                  db=env.path("data", "broker.db"))
        assert "on disk" in env.log("broker2"), "the restored run counts its requests on disk"
        restored = h.wait_until("restored spill count", lambda: spilled(broker), timeout=30)
        check_exactly_once(broker, job, site, output)
        m = h.metrics(broker)
        assert m["spiderhub_requests_spilled"] == 0, m["spiderhub_requests_spilled"]
        assert m["spiderhub_requests_unspilled_total"] >= restored, m
        print(f"frontier_spill: peak {int(peak)} requests on disk (limit {LIMIT} in memory, "
              f"{int(waiting)} waiting in memory then), killed at {before} pages, "
              f"{int(restored)} on disk after the restart, {PAGES} pages exactly once")


def main():
    args = h.parse_args()
    spill(args)
    backpressure(args)


if __name__ == "__main__":
    main()
