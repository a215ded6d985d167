"""Crash tests with real processes: kill -9 a node, the worker, and the broker in the
middle of a crawl; each time the crawl finishes with every page exactly once in the
items file and in JobStatus. The broker is killed while result bodies wait in its
result spool (the worker paused): the restarted broker delivers them, and the spool is
empty once the run is purged."""
import signal
import time

import harness as h

PAGES = 3000
BROKER_YAML = """
dispatch:
  block_size: 20
  lease_timeout_ms: 3000
  thread_num: 2            # slow enough that each crash lands mid-crawl
  blocks_per_node: 2
sessions:
  heartbeat_interval_ms: 1000
"""


def check_complete(env, broker, job, site, output):
    h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                 == "Success", timeout=180, interval=0.5)
    run = h.run_of(broker, job["id"])
    h.assert_exactly_once(output, h.site_pages(site.base, PAGES), run)
    return run


def scenario(args, name, crash):
    with h.Env(args, f"faults-{name}") as env:
        site = env.start_site(PAGES)
        broker = env.start_broker(extra_yaml=BROKER_YAML)
        nodes = [env.start_node(broker, "node1"), env.start_node(broker, "node2")]
        worker = env.start_worker(broker, runs=0)
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output)
        h.wait_until("trigger", lambda: h.api(
            "POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger")[0] == 200, timeout=30,
            interval=0.5)
        # The items file grows with every acked batch, unlike JobStatus (written once a
        # second), so the crash lands early in the crawl even on an idle machine.
        h.wait_until("crawl under way", lambda: len(h.read_items(output)) >= PAGES // 10,
                     timeout=60, interval=0.05)
        before = h.run_of(broker, job["id"])
        assert before["status"] == "Running", f"crawl ended before the crash: {before}"
        broker = crash(env, broker, nodes, worker)
        run = check_complete(env, broker, job, site, output)
        h.wait_until("the result spool emptied after the run",
                     lambda: h.spool_bytes(env.path("data", "broker.db")) == 0, timeout=30)
        assert "missing or damaged" not in env.log(broker.name), "a spooled body was lost"
        print(f"faults/{name}: crawl finished after the crash: {run['success']} pages, "
              f"per node {[n['success'] for n in run['nodes']]}")


def kill_node(env, broker, nodes, worker):
    nodes[0].send_signal(signal.SIGKILL)
    nodes[0].wait(10)
    return broker


def kill_worker(env, broker, nodes, worker):
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    time.sleep(1)
    env.start_worker(broker, name="worker2", runs=0)
    return broker


def kill_broker(env, broker, nodes, worker):
    # Results pile up in the spool while the worker cannot take them.
    worker.send_signal(signal.SIGSTOP)
    try:
        h.wait_until("result bodies waiting in the spool", lambda: h.metrics(broker).get(
            "spiderhub_result_spool_bytes", 0) > 100000, timeout=60, interval=0.1)
    except BaseException:
        worker.send_signal(signal.SIGCONT)
        raise
    broker.send_signal(signal.SIGKILL)
    broker.wait(10)
    time.sleep(1)
    # Same port and database: nodes and the worker reconnect by themselves.
    broker = env.start_broker(name="broker2", extra_yaml=BROKER_YAML, port=broker.port,
                              db=env.path("data", "broker.db"))
    worker.send_signal(signal.SIGCONT)
    return broker


def main():
    args = h.parse_args()
    scenario(args, "node", kill_node)
    scenario(args, "worker", kill_worker)
    scenario(args, "broker", kill_broker)


if __name__ == "__main__":
    main()
