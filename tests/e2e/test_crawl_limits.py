"""Scope and trap limits of a run (job properties MaxPages, MaxPagesPerHost, MaxDepth,
MaxUrlLength, MaxRepeatedSegments; issue #35): a run of the 2,000-page generated site with
MaxPages 300 takes exactly 300 requests and ends Success, the worker gets 300 pages once,
and both /metrics and the run's status (`cut`) count what was cut under its reason. Bad
values are refused when the job is created (400 naming the property).

Per-job canonicalisation (SortQuery, StripSessionIds, StripTracking): a page linking one
target in five spellings (parameters in another order, utm_* and gclid added, a session id
in the query and as ;jsessionid) is downloaded five times without the options and once
with them (the test server counts)."""
import collections

import harness as h

SPELLINGS = ["/t?a=1&b=2", "/t?b=2&a=1", "/t?a=1&b=2&utm_source=news&gclid=7",
             "/t?PHPSESSID=42&b=2&a=1", "/t;jsessionid=ABC?a=1&b=2"]


def spellings_site():
    """A server whose /index.html links /t in every SPELLINGS form; counts requests of /t."""
    hits = collections.Counter()
    links = "".join(f'<a href="{s}">x</a>' for s in SPELLINGS)

    def respond(req):
        path = req.path.split("?")[0].split(";")[0]
        hits[path] += 1
        if path == "/index.html":
            return 200, "text/html; charset=utf-8", \
                f"<html><head><title>{path}</title></head><body>{links}</body></html>".encode()
        if path == "/t":
            return 200, "text/html; charset=utf-8", f"<title>{req.path}</title>".encode()
        return None

    srv, base = h.serve_http(respond)
    return srv, base, hits


def canonical_options(env, broker):
    srv, base, hits = spellings_site()
    try:
        for props, want in (({}, len(SPELLINGS)),
                            ({"SortQuery": "true", "StripSessionIds": "true",
                              "StripTracking": "true"}, 1)):
            hits.clear()
            output = env.path(f"canonical{len(props)}.jsonl")
            job = h.create_block_job(broker, base + "/index.html", output, max_depth=2,
                                     properties=props)
            h.trigger_run(broker, job["id"])
            h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get(
                "status") == "Success", timeout=60, interval=0.3)
            assert hits["/t"] == want, (props, dict(hits))
            assert hits["/index.html"] == 1, dict(hits)
        print(f"canonical options: one target linked in {len(SPELLINGS)} spellings: "
              f"{len(SPELLINGS)} downloads without SortQuery/StripSessionIds/StripTracking, "
              "1 with them")
    finally:
        srv.shutdown()

PAGES = 2000
MAX_PAGES = 300


def main():
    args = h.parse_args()
    with h.Env(args, "crawl-limits") as env:
        site = env.start_site(PAGES)
        broker = env.start_broker()
        env.start_node(broker, "node1")
        env.start_worker(broker, runs=3)  # the MaxPages run and two canonical ones
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
        # The run's own status counts the same (one run on this broker).
        assert run.get("cut") == {"max_pages": int(cut)}, (run.get("cut"), cut)
        print(f"crawl limits: MaxPages {MAX_PAGES}: {len(urls)} pages once, {cut:.0f} new "
              f"requests cut (max_pages, in /metrics and the run's status); bad property "
              "values refused with 400")
        canonical_options(env, broker)


if __name__ == "__main__":
    main()
