"""Proxies of a run (issue #37): job properties Proxies, ProxyRotation, ProxyMaxFailures,
ProxyBenchMs, with three local forward proxies (tests/e2e/forward_proxy.py) in front of a
site that records the Via header of every request.

1. spread: round robin over three proxies (one with credentials in its URL): every page
   once, every request (robots.txt too) arrived through a proxy, each proxy carried a
   fair share, /metrics counts results per proxy, and the API never shows the password.
2. bench: one of the three proxies is dead (its port closed): its first failures bench it
   (ProxyMaxFailures 2) and the requests are retried through the others: every page once,
   no error, a handful of failures counted for it in /metrics and none after the bench.
3. bad input: malformed proxy URLs and an unknown rotation are refused with 400 naming the
   property.
"""
import collections
import json
import threading

import harness as h
from forward_proxy import ForwardProxy

PAGES = 150


def recording_site():
    """/index.html links /p/1..PAGES-1; every request's path and Via header are recorded."""
    seen = []
    lock = threading.Lock()
    links = "".join(f'<a href="/p/{i}.html">{i}</a>' for i in range(1, PAGES))

    def respond(req):
        with lock:
            seen.append((req.path, req.headers.get("Via", "")))
        if req.path == "/robots.txt":
            return 200, "text/plain", b"User-agent: *\nAllow: /\n"
        if req.path == "/index.html":
            return 200, "text/html; charset=utf-8", f"<title>index</title>{links}".encode()
        if req.path.startswith("/p/"):
            return 200, "text/html; charset=utf-8", f"<title>{req.path}</title>".encode()
        return None

    srv, base = h.serve_http(respond)
    return srv, base, seen


def crawl(env, broker, base, props, name):
    output = env.path(f"{name}.jsonl")
    job = h.create_block_job(broker, base + "/index.html", output, max_depth=3, properties=props)
    h.trigger_run(broker, job["id"])
    h.wait_until(f"{name}: run Success", lambda: (h.run_of(broker, job["id"]) or {}).get(
        "status") == "Success", timeout=90, interval=0.3)
    items = h.read_items(output)
    urls = collections.Counter(i["url"] for i in items)
    expected = {base + "/index.html"} | {f"{base}/p/{i}.html" for i in range(1, PAGES)}
    assert set(urls) == expected, f"{name}: missing {sorted(expected - set(urls))[:3]}"
    assert max(urls.values()) == 1, f"{name}: pages twice"
    errors = [i for i in items if i.get("error")]
    assert not errors, f"{name}: {len(errors)} errors, e.g. {errors[:2]}"
    return job, h.run_of(broker, job["id"])


def proxy_metrics(broker, kind):
    return {k.split('proxy="')[1].rstrip('"}'): v for k, v in h.metrics(broker).items()
            if k.startswith(f"spiderhub_proxy_{kind}_total{{")}


def main():
    args = h.parse_args()
    with h.Env(args, "proxies") as env:
        srv, base, seen = recording_site()
        proxies = [ForwardProxy(f"proxy{i}") for i in (1, 2, 3)]
        broker = env.start_broker()
        env.start_node(broker, "node1", extra_yaml="retry_download: 3\n")
        env.start_worker(broker, runs=2)
        h.wait_until("the node online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 1)

        # 1. Round robin over three proxies, one with credentials.
        secret_url = proxies[0].url.replace("http://", "http://crawler:S3cretPw@")
        listed = ",".join([secret_url, proxies[1].url, proxies[2].url])
        job, _ = crawl(env, broker, base, {"Proxies": listed}, "spread")
        assert all(via for _, via in seen), [p for p, via in seen if not via][:3]
        counts = [p.count for p in proxies]
        assert sum(counts) == len(seen), (counts, len(seen))
        assert min(counts) >= len(seen) // 5, f"round robin not spread: {counts}"
        requests = proxy_metrics(broker, "requests")
        names = [p.url for p in proxies]
        assert sorted(requests) == sorted(names), requests
        assert sum(requests.values()) >= PAGES, requests
        status, shown = h.api("GET", broker, f"/api/v1.0/jobs/{job['id']}")
        text = json.dumps(shown)
        assert status == 200 and "S3cretPw" not in text and proxies[0].url in text, text[:300]
        print(f"spread: {PAGES} pages once through 3 proxies {counts} (round robin), Via on "
              f"all {len(seen)} requests, per-proxy results in /metrics, password not shown",
              flush=True)

        # 2. A dead proxy is benched; its requests go through the others.
        seen.clear()
        before = [p.count for p in proxies]
        dead = proxies[2]
        dead.stop()
        crawl(env, broker, base, {"Proxies": listed, "ProxyMaxFailures": "2",
                                  "ProxyBenchMs": "60000"}, "bench")
        failures = proxy_metrics(broker, "failures").get(dead.url, 0)
        live = [p.count - b for p, b in zip(proxies[:2], before[:2])]
        assert 2 <= failures <= 12, f"dead proxy failures {failures}"
        assert all(via for _, via in seen) and sum(live) == len(seen), (live, len(seen))
        print(f"bench: one proxy dead: {failures:.0f} failed attempts, then benched; "
              f"{PAGES} pages once through the other two {live}, no error", flush=True)

        # 3. Bad input.
        for key, value in (("Proxies", "ftp://x.test:21"), ("Proxies", "http://noport.test"),
                           ("Proxies", " , "), ("ProxyRotation", "sticky"),
                           ("ProxyMaxFailures", "0")):
            status, body = h.api("POST", broker, "/api/v1.0/jobs", {
                "name": "bad", "jobType": "block", "cron": "0 0 1 1 *",
                "properties": {"FullClassName": "x", key: value}})
            assert status == 400 and key in body["error"]["message"], (key, status, body)
        print("bad input: malformed proxies, unknown rotation, 0 failures refused with 400",
              flush=True)
        for p in proxies[:2]:
            p.stop()
        srv.shutdown()


if __name__ == "__main__":
    main()
