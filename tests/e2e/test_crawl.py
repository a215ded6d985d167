"""A 2,000-page generated site is crawled through real broker, node and worker
processes: every page is found exactly once and JobStatus totals match; a second node
shares the work. Once the run is over its rows leave the database (requests, results and
blocks; the status row keeps the block count) and the file returns to within 1.2x of its
size before the crawl; the result spool beside it is empty."""
import collections
import os
import sys
import time

import harness as h

PAGES = 2000


def main():
    args = h.parse_args()
    with h.Env(args, "crawl") as env:
        site = env.start_site(PAGES)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        node1 = env.start_node(broker, "node1")
        node2 = env.start_node(broker, "node2")
        worker = env.start_worker(broker)
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        db = env.path("data", "broker.db")
        db_before = sum(h.db_bytes(db))
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output)
        # The worker connects asynchronously: trigger until it is registered.
        identity = h.trigger_run(broker, job["id"])
        started = time.monotonic()
        h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     == "Success", timeout=180, interval=0.5)
        elapsed = time.monotonic() - started
        run = h.run_of(broker, job["id"])
        assert run["identity"] == identity, run
        items = h.read_items(output)
        urls = collections.Counter(i["url"] for i in items)
        expected = {site.base + "/index.html"} | {f"{site.base}/p/{i}.html" for i in range(1, PAGES)}
        missing = expected - set(urls)
        dupes = [u for u, c in urls.items() if c > 1]
        assert not missing, f"{len(missing)} pages never crawled, e.g. {sorted(missing)[:5]}"
        assert not dupes, f"pages crawled twice: {dupes[:5]}"
        assert set(urls) == expected, f"unexpected URLs: {sorted(set(urls) - expected)[:5]}"
        assert all(i["status"] == 200 for i in items), "non-200 items"
        assert run["total"] == PAGES and run["success"] == PAGES, run
        assert run["error"] == 0 and run["left"] == 0, run
        per_node = {n["nodeId"]: n["success"] for n in run["nodes"]}
        assert len(per_node) == 2, f"expected both nodes to download, got {per_node}"
        assert sum(per_node.values()) == PAGES, per_node
        assert min(per_node.values()) > 0, per_node
        # Counters match the crawl.
        metrics = h.metrics(broker)
        assert metrics["spiderhub_results_stored_total"] == PAGES, metrics
        assert metrics["spiderhub_results_acked_total"] == PAGES, metrics
        assert metrics["spiderhub_requests_accepted_total"] == PAGES, metrics
        assert metrics["spiderhub_nodes_connected"] == 2, metrics
        assert metrics['spiderhub_sessions{kind="node"}'] == 2, metrics
        # The worker may already have left after its Exit.
        assert metrics['spiderhub_sessions{kind="worker"}'] in (0, 1), metrics
        assert metrics["spiderhub_heartbeats_total"] >= 2, metrics
        assert metrics["spiderhub_result_bytes_total"] > PAGES * 4000, metrics  # ~4.3 KB pages
        assert sum(v for k, v in metrics.items()
                   if k.startswith("spiderhub_download_errors_total")) == 0, metrics
        assert metrics['spiderhub_storage_batch_seconds_bucket{le="+Inf"}'] == \
            metrics["spiderhub_storage_batch_seconds_count"] > 0, metrics
        assert 'spiderhub_actor_mailbox{actor="dispatch"}' in metrics, metrics
        assert metrics["spiderhub_scrape_errors"] == 0, metrics
        # The finished run's blocks are purged with its results; the status row counts them.
        def purged():
            status, report = h.api("GET", broker, f"/api/v1.0/runs/{identity}/blocks")
            assert status == 200, (status, report)
            return report if not report["blocks"] and report["purged"] > 0 else None
        report = h.wait_until("the run's blocks purged", purged, timeout=30)
        # Blocks of 50 (fewer when a host's queue was short), at most one per page.
        assert PAGES // 50 <= report["purged"] <= PAGES, report
        assert report["counts"] == {"ready": 0, "leased": 0, "success": report["purged"],
                                    "failed": 0}, report
        h.wait_until(f"the database back within 1.2x of {db_before} bytes",
                     lambda: sum(h.db_bytes(db)) <= 1.2 * db_before, timeout=30)
        # The result bodies waited in the spool beside it: nothing is left there either.
        assert h.spool_bytes(db) == 0, os.listdir(db + ".results")
        assert h.metrics(broker)["spiderhub_result_spool_bytes"] == 0
        # The worker got Exit and ends by itself after its one run.
        worker.wait(30)
        assert worker.returncode == 0, worker.returncode
        for p in (node1, node2, broker):
            assert env.stop(p) == 0, f"{p.name} did not stop cleanly"
        print(f"crawl: {PAGES} pages in {elapsed:.1f}s ({PAGES / elapsed:.0f} pages/s), "
              f"per node {sorted(per_node.values())}")


if __name__ == "__main__":
    main()
