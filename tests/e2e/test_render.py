"""Rendering nodes: a site whose links exist only after a script runs is crawled
completely by a run whose Site asks for rendering, and not beyond its first page without;
render blocks go only to the node that renders (headless Chromium) while HTTP blocks go to
both nodes; killing that node's browser in the middle of the render run loses no page."""
import collections
import json
import os
import signal

import harness as h

PAGES = 60


def crawl(env, broker, job_name, start, output, site_json=None):
    props = {"Site": json.dumps(site_json)} if site_json else None
    job = h.create_block_job(broker, start, output, properties=props)
    h.trigger_run(broker, job["id"])
    return job


def finished(broker, job, timeout=180):
    h.wait_until("run finished", lambda: (h.run_of(broker, job["id"]) or {}).get("status")
                 == "Success", timeout=timeout, interval=0.3)
    return h.run_of(broker, job["id"])


def per_node(run, node_ids):
    by_id = {n["nodeId"]: n["success"] for n in run["nodes"]}
    return {name: by_id.get(i, 0) for name, i in node_ids.items()}


def main():
    args = h.parse_args()
    with h.Env(args, "render") as env:
        js = env.start_js_site(PAGES)
        plain_site = env.start_template_site(200)
        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 5\n")
        web = env.start_node(broker, "web", extra_yaml="render:\n  enabled: true\n  max_tabs: 2\n")
        env.start_node(broker, "plain")
        env.start_worker(broker, runs=0)
        h.wait_until("nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        ids = {name: open(env.path(name + ".id")).read().strip() for name in ("web", "plain")}
        expected = {js.base + "/index.html"} | {f"{js.base}/p/{i}.html" for i in range(1, PAGES)}

        # Without rendering: the first page has no links.
        out_http = env.path("http.jsonl")
        run = finished(broker, crawl(env, broker, "http", js.base + "/index.html", out_http))
        http_urls = {i["url"] for i in h.read_items(out_http)}
        assert http_urls == {js.base + "/index.html"}, sorted(http_urls)[:5]

        # With rendering, the browser killed once in the middle: every page exactly once,
        # all of them rendered by the web node.
        out = env.path("render.jsonl")
        job = crawl(env, broker, "render", js.base + "/index.html", out,
                    {"render": {"wait": "selector", "selector": "a.js", "timeoutMs": 20000,
                                "screenshot": True}})
        h.wait_until("render run under way", lambda: h.count_lines(out) >= 10, timeout=120,
                     interval=0.05)
        browsers = h.wait_until("the web node's chromium", lambda: h.chromium_children(web.pid),
                                timeout=10)
        for pid in browsers:
            os.kill(pid, signal.SIGKILL)
        killed_at = h.count_lines(out)
        run = finished(broker, job)
        urls = collections.Counter(i["url"] for i in h.read_items(out))
        assert set(urls) == expected, (f"missing {sorted(expected - set(urls))[:5]}, "
                                       f"extra {sorted(set(urls) - expected)[:5]}")
        dupes = [u for u, c in urls.items() if c > 1]
        assert not dupes, f"{len(dupes)} pages twice, e.g. {dupes[:3]}"
        assert run["total"] == PAGES and run["success"] == PAGES and run["error"] == 0, run
        items = {i["url"]: i for i in h.read_items(out)}
        moved = items[f"{js.base}/p/7.html"].get("finalUrl")
        assert moved == f"{js.base}/p/7.html?moved=1", items[f"{js.base}/p/7.html"]
        assert all("finalUrl" not in i for u, i in items.items() if not u.endswith("/p/7.html"))
        shots = [i.get("screenshotBase64Bytes", 0) for i in items.values()]
        assert min(shots) > 1000, f"every rendered page carries its screenshot: {sorted(shots)[:3]}"
        nodes = per_node(run, ids)
        assert nodes == {"web": PAGES, "plain": 0}, f"render blocks went to {nodes}"
        assert "render of" in env.log("web") and "failed" in env.log("web"), \
            "the killed browser's renders were retried"

        # Plain HTTP blocks go to both nodes.
        out_plain = env.path("plain.jsonl")
        run = finished(broker, crawl(env, broker, "plain", plain_site.base + "/index.html",
                                     out_plain))
        assert run["success"] == 200, run
        both = per_node(run, ids)
        assert both["web"] > 0 and both["plain"] > 0, f"HTTP blocks went to {both}"
        print(f"render: without rendering {len(http_urls)} page; rendered {PAGES} pages "
              f"exactly once, all on the web node ({nodes}); chromium killed at {killed_at} "
              f"pages; an HTTP run spread over both nodes: {both}")


if __name__ == "__main__":
    main()
