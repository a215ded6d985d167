"""Scope and trap limits of a run (job properties MaxPages, MaxPagesPerHost, MaxDepth,
MaxUrlLength, MaxRepeatedSegments; issue #35): a run of the 2,000-page generated site with
MaxPages 300 takes exactly 300 requests and ends Success, the worker gets 300 pages once,
and /metrics counts what was cut under its reason. Bad values are refused when the job is
created (400 naming the property)."""
import collections

import harness as h

PAGES = 2000
MAX_PAGES = 300


def main():
    args = h.parse_args()
    with h.Env(args, "crawl-limits") as env:
        site = env.start_site(PAGES)
        broker = env.start_broker()
        env.start_node(broker, "node1")
        env.start_worker(broker)
        h.wait_until("the node online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 1)
        for key, bad in (("MaxPages", "-1"), ("MaxDepth", "deep"), ("MaxUrlLength", "1.5"),
                         ("MaxRepeatedSegments", "1001")):
            status, body = h.api("POST", broker, "/api/v1.0/jobs", {
                "name": "bad", "jobType": "block", "cron": "0 0 1 1 *",
                "properties": {"FullClassName": "x", key: bad}})
            assert status == 400 and key in body["error"]["message"], (key, status, body)
        output = env.path("items.jsonl")
        job = h.create_block_job(broker, site.base + "/index.html", output, max_depth=50,
                                 properties={"MaxPages": str(MAX_PAGES)})
        h.trigger_run(broker, job["id"])
        h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                     == "Success", timeout=120, interval=0.5)
        run = h.run_of(broker, job["id"])
        assert run["total"] == MAX_PAGES and run["success"] == MAX_PAGES, run
        assert run["left"] == 0, run
        urls = collections.Counter(i["url"] for i in h.read_items(output))
        assert len(urls) == MAX_PAGES, f"{len(urls)} pages in the items file"
        assert max(urls.values()) == 1, [u for u, c in urls.items() if c > 1][:5]
        metrics = h.metrics(broker)
        cut = metrics['spiderhub_requests_cut_total{reason="max_pages"}']
        assert cut > 0, metrics
        for reason in ("url_too_long", "too_deep", "max_pages_per_host", "repeated_segments"):
            assert metrics[f'spiderhub_requests_cut_total{{reason="{reason}"}}'] == 0, metrics
        print(f"crawl limits: MaxPages {MAX_PAGES}: {len(urls)} pages once, {cut:.0f} new "
              f"requests cut (max_pages); bad property values refused with 400")


if __name__ == "__main__":
    main()
