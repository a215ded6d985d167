"""A Scrapy project run as Scrapy users run it (issue #36): `scrapy crawl docs` and
`spiderhub-scrapy crawl docs` on the same project directory (tests/e2e/scrapy_project:
scrapy.cfg, settings.py with USER_AGENT, DEFAULT_REQUEST_HEADERS and ROBOTSTXT_OBEY,
items.py, pipelines.py, middlewares.py with a downloader middleware adding a header and an
extension recording signals; the spider a CrawlSpider with HTTP auth), over a real
documentation corpus: Debian's cmake-doc (CMake's Sphinx manual), served by nginx as
tests/e2e/test_doc_corpus.py serves it, on two ports (one per crawler), each logging the
headers of every request it received; five of its sections (SECTIONS: ~600 pages and their
text sources, about a third of the corpus, to keep the two crawls within the time budget).

1. Plain Scrapy 2.8: `scrapy crawl docs -a start_url=... -O scrapy.jsonl`.
2. spiderhub: a broker, two nodes and `spiderhub-scrapy crawl docs -O bridge.jsonl` in
   the project directory, the start URL from the job's Arguments.

Checked: the items are the same multiset of (path, fields) — every page once but the
start page, which both fetch twice (its start request has dont_filter), and the same
request_scheduled count and dupefilter/filtered total; nginx got every
URL from the bridge once (the start page twice); every request of both carried the
project's User-Agent, Accept and Accept-Language, the middleware's X-Docsite, the
spider's Basic auth, a Referer after the first page and, after the first response set
them, both cookies of index.html; the signals (spider_opened/closed once, item_scraped per
item, request_reached_downloader per response) and stats as Scrapy counts them; the
settings the bridge does not apply (ROBOTSTXT_OBEY) warned at start. Prints counts, times
and, when the node sent its own cookie jar's copy besides the bridge's Cookie header,
how often.
"""
import base64
import collections
import json
import os
import shutil
import subprocess
import time

import harness as h

ROOT = "/usr/share/doc/cmake-doc/html"
PYTHON = "/usr/bin/python3"  # Debian's python3-scrapy lives there
CLS = "docsite.docs"
CRAWL_TIMEOUT = 120
# The corpus's sections crawled (with their sources and the top pages): about a third of
# it, so that both crawls fit the e2e time budget on two cores (the whole corpus takes
# plain Scrapy ~50 s and the bridge ~70 s here).
SECTIONS = "command,manual,guide,module,policy"
SETTINGS = {"ua": "docsite-bot/1.0 (+https://example.invalid/docsite)",
            "accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            "lang": "fr-CH, fr;q=0.9", "mw": "mw/docs",
            "auth": "Basic " + base64.b64encode(b"docsite:s3cret").decode()}
COOKIES = {"fixture": "1", "lang": "en"}


def start_recording_nginx(env):
    """nginx serving ROOT on two free ports (a, b), each logging every request as a JSON
    line with the headers under test; /index.html sets two cookies."""
    ports = {"a": h.free_port(), "b": h.free_port()}
    mime = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") else ""
    fields = ('{"status":$status,"uri":"$request_uri","ua":"$http_user_agent",'
              '"accept":"$http_accept","lang":"$http_accept_language","mw":"$http_x_docsite",'
              '"auth":"$http_authorization","cookie":"$http_cookie","referer":"$http_referer"}')
    servers = "".join(f"""
  server {{
    listen 127.0.0.1:{port};
    root {ROOT};
    access_log {env.path('nginx', f'access-{name}.log')} headers;
    location = /robots.txt {{ default_type text/plain; return 200 "User-agent: *\\nAllow: /\\n"; }}
    location = /index.html {{
      add_header Set-Cookie "fixture=1; Path=/";
      add_header Set-Cookie "lang=en; Path=/; Expires=Wed, 21 Oct 2099 07:28:00 GMT";
    }}
  }}""" for name, port in ports.items())
    conf = env.write("nginx/nginx.conf", f"""
worker_processes 1;
pid {env.path('nginx', 'nginx.pid')};
error_log {env.path('nginx', 'error.log')} warn;
events {{ worker_connections 1024; }}
http {{
  {mime}
  default_type application/octet-stream;
  log_format headers escape=json '{fields}';
  keepalive_requests 100000;
{servers}
}}
""")
    p = env._nginx(conf, ports["a"])
    p.bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return p


def access_log(env, name):
    """The requests server `name` logged, robots.txt and the harness's probes left out."""
    with open(env.path("nginx", f"access-{name}.log"), encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return [e for e in entries if e["uri"] != "/robots.txt"
            and not e["ua"].startswith("Python-urllib/")]


def item_keys(items, base):
    """Items as comparable text: the URL by its path, the rest as is."""
    out = collections.Counter()
    for i in items:
        i = dict(i)
        assert i["url"].startswith(base), i
        i["url"] = i["url"][len(base):]
        out[json.dumps(i, sort_keys=True)] += 1
    return out


def crawl_scrapy(env, project, base):
    t0 = time.monotonic()
    p = subprocess.run([PYTHON, "-m", "scrapy", "crawl", "docs", "-a",
                        f"start_url={base}/index.html", "-a", f"sections={SECTIONS}",
                        "-O", env.path("scrapy.jsonl"),
                        "-s", f"SIGNALS_FILE={env.path('scrapy-signals.json')}"],
                       cwd=project, capture_output=True, text=True, timeout=CRAWL_TIMEOUT,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    took = time.monotonic() - t0
    assert p.returncode == 0, (p.returncode, p.stderr[-3000:])
    return h.read_items(env.path("scrapy.jsonl")), took


def crawl_bridge(env, project, base):
    broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
    for n in ("node1", "node2"):
        env.start_node(broker, n)
    src = os.path.join(env.args.source, "clients", "python")
    # In the project's directory, as `scrapy crawl` is run.
    bridge = env.spawn("bridge", [
        "/bin/sh", "-c", 'cd "$0" && exec "$@"', project,
        PYTHON, "-m", "spiderhub.scrapy_bridge", "crawl", "docs", "--broker", broker.base + "/",
        "--token", h.TOKEN, "--class", CLS, "-O", env.path("bridge.jsonl"),
        "-s", f"SIGNALS_FILE={env.path('bridge-signals.json')}"],
        env=dict(os.environ, PYTHONPATH=src, PYTHONDONTWRITEBYTECODE="1"))
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "docs", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": CLS,
                       "Arguments": json.dumps({"start_url": base + "/index.html",
                                                "sections": SECTIONS})}})
    assert status == 201, (status, job)
    h.trigger_run(broker, job["id"], interval=0.2)
    t0 = time.monotonic()

    def done():
        assert bridge.poll() in (None, 0), env.log("bridge")[-3000:]
        r = h.run_of(broker, job["id"]) or {}
        assert r.get("status") in (None, "Running", "Success"), r
        return r if r.get("status") == "Success" else None
    run = h.wait_until("run Success", done, timeout=CRAWL_TIMEOUT, interval=0.25)
    took = time.monotonic() - t0
    assert bridge.wait(timeout=30) == 0, (bridge.returncode, env.log("bridge")[-3000:])
    return run, h.read_items(env.path("bridge.jsonl")), took


def check_headers(entries, who):
    """Every request (robots.txt aside) carried the project's headers; after the first,
    a Referer and both cookies. Returns how many had a cookie twice."""
    assert entries and entries[0]["uri"] == "/index.html", (who, entries[:1])
    doubled = 0
    for n, e in enumerate(entries):
        for key, want in SETTINGS.items():
            assert e[key] == want, f"{who}: {e['uri']} came with {key} {e[key]!r}, not {want!r}"
        if n == 0:
            continue
        assert e["referer"], f"{who}: {e['uri']} without a Referer"
        pairs = [c.strip().split("=", 1) for c in e["cookie"].split(";") if "=" in c]
        names = collections.Counter(k for k, _ in pairs)
        assert dict(pairs) == COOKIES, f"{who}: {e['uri']} came with Cookie {e['cookie']!r}"
        doubled += max(names.values()) > 1
    return doubled


def main():
    args = h.parse_args()
    probe = subprocess.run([PYTHON, "-c", "import scrapy"], capture_output=True)
    assert probe.returncode == 0, "Debian's python3-scrapy is missing (scripts/setup installs it)"
    assert os.path.exists(os.path.join(ROOT, "index.html")), \
        f"{ROOT}/index.html is missing: install cmake-doc (scripts/setup does)"
    with h.Env(args, "scrapyproject") as env:
        project = env.path("project")
        shutil.copytree(os.path.join(args.source, "tests", "e2e", "scrapy_project"), project,
                        ignore=shutil.ignore_patterns("__pycache__"))
        site = start_recording_nginx(env)
        a, b = site.bases["a"], site.bases["b"]

        ref, scrapy_took = crawl_scrapy(env, project, a)
        run, got, bridge_took = crawl_bridge(env, project, b)
        print(f"plain Scrapy: {len(ref)} items in {scrapy_took:.1f}s; spiderhub-scrapy crawl: "
              f"{len(got)} items in {bridge_took:.1f}s; run {run['status']}: total "
              f"{run['total']}, success {run['success']}, error {run['error']}", flush=True)

        ref_keys, got_keys = item_keys(ref, a), item_keys(got, b)
        missing, extra = ref_keys - got_keys, got_keys - ref_keys
        assert not missing and not extra, (
            f"{sum(missing.values())} items of Scrapy missing, {sum(extra.values())} extra, "
            f"e.g. missing {list(missing)[:2]}, extra {list(extra)[:2]}")
        assert len(ref) > 1000, f"the corpus looks smaller than cmake-doc's: {len(ref)} items"
        per_url = collections.Counter(i["url"][len(b):] for i in got)
        twice = {u: n for u, n in per_url.items() if n > 1}
        assert twice == {"/index.html": 2}, f"pages more than once: {sorted(twice.items())[:5]}"
        uris = collections.Counter(e["uri"] for e in access_log(env, "b"))
        twice = {u: n for u, n in uris.items() if n > 1}
        assert twice == {"/index.html": 2}, f"downloaded more than once: {sorted(twice.items())[:5]}"

        check_headers(access_log(env, "a"), "plain Scrapy")
        doubled = check_headers(access_log(env, "b"), "spiderhub")
        print(f"headers: every request of both carried USER_AGENT, DEFAULT_REQUEST_HEADERS, "
              f"the middleware's header, Basic auth, a Referer and the cookies; "
              f"{doubled} of the bridge's {sum(uris.values())} requests had each cookie "
              "twice (the node's own cookie jar besides the bridge's Cookie header)", flush=True)

        with open(env.path("scrapy-signals.json")) as f:
            s_sig = json.load(f)
        with open(env.path("bridge-signals.json")) as f:
            b_sig = json.load(f)
        sig, stats = b_sig["signals"], b_sig["stats"]
        assert b_sig["reason"] == "finished", b_sig
        assert sig["spider_opened"] == sig["spider_closed"] == 1, sig
        assert sig["item_scraped"] == len(got) == stats["item_scraped_count"], (sig, stats)
        # Scrapy's robots.txt is a response too; the broker fetches it for the bridge.
        assert sig["request_reached_downloader"] == sig["response_received"] == \
            stats["response_received_count"] == len(got) == \
            s_sig["stats"]["response_received_count"] - 1, (sig, stats, s_sig)
        assert sig["request_scheduled"] == s_sig["signals"]["request_scheduled"], (sig, s_sig)
        assert stats["dupefilter/filtered"] == s_sig["stats"]["dupefilter/filtered"], \
            (stats, s_sig)
        assert stats["item_scraped_count"] == s_sig["stats"]["item_scraped_count"], (stats, s_sig)
        assert stats["dupefilter/filtered"] > 0, stats
        print(f"signals and stats: {json.dumps(sig)}; Scrapy's: {json.dumps(s_sig['signals'])}",
              flush=True)
        log = env.log("bridge")
        assert "ROBOTSTXT_OBEY = True is not applied" in log, log[:3000]


if __name__ == "__main__":
    main()
