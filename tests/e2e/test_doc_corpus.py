"""A real HTML corpus nobody here wrote, crawled by spiderhub, gives the same URL set as
Scrapy (issue #35).

The corpus is Debian's cmake-doc (scripts/setup installs it): CMake 3.25's Sphinx manual
in /usr/share/doc/cmake-doc/html, 1,936 HTML pages in 22 directories, each page linking to
its reStructuredText source under _sources/ (text/plain), relative links with '../',
anchors everywhere (some with spaces in them), file names with percent-encoded spaces
('guide/tutorial/A%20Basic%20Starting%20Point.html'), empty hrefs, a link to a file that
is not there (a 404), and thousands of links to other sites. nginx serves it as a stock
server would (mime.types, directories redirected to their slash, no try_files) at the
root of a random loopback port, with an access log; so "on the start URL's host" (all the
samples can restrict to) is "under the corpus root".

1. Plain Scrapy 2.8 (tests/e2e/scrapy_corpus_spider.py: a CrawlSpider following every
   <a href> under the root, the default dupefilter, every response an item) gives the
   reference set of URLs.
2. spiderhub: a broker, two nodes and the C++ sample worker (spiderhub worker-sample,
   sdk/site_spider.cpp).
3. The same broker and nodes with the Python sample worker (python3 -m spiderhub.worker
   --spider spiderhub.samples:LinkSpider).

Both spiderhub crawls must report the same URL set as Scrapy. URLs are compared as each
crawler reports them, the fragment removed and nothing else; a page that moved is taken
by its final URL (Scrapy's response.url; an item's finalUrl, when the node reported
one). Also: a URL both report has the same HTTP status in both, the run ends Success, and
nginx's access log shows no URL requested twice by spiderhub (robots.txt aside). Scrapy
crawls while spiderhub does (each takes about a core), told apart in the log by
User-Agent. The test prints the counts and times of the three crawls
and, when they differ, the URLs missing and extra in spiderhub (20 of each) with the
Scrapy URL each extra one stands for when they name the same file.
"""
import collections
import json
import os
import posixpath
import subprocess
import threading
import time
import urllib.parse

import harness as h

PACKAGE = "cmake-doc"
ROOT = "/usr/share/doc/cmake-doc/html"
SCRAPY_PYTHON = "/usr/bin/python3"  # Debian's python3-scrapy lives there
PY_CLS = "py.CorpusLinkSpider"
MAX_DEPTH = 1000  # no limit in practice (the C++ sample's largest)
CRAWL_TIMEOUT = 120
SHOW = 20


def start_corpus_nginx(env):
    """nginx serving ROOT at / on a free port, logging every request as
    'STATUS METHOD REQUEST_URI "DECODED_PATH" "USER_AGENT"', with a permissive
    robots.txt."""
    port = h.free_port()
    mime = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") else ""
    conf = env.write("nginx/nginx.conf", f"""
worker_processes 1;
pid {env.path('nginx', 'nginx.pid')};
error_log {env.path('nginx', 'error.log')} warn;
events {{ worker_connections 1024; }}
http {{
  {mime}
  default_type application/octet-stream;
  log_format corpus '$status $request_method $request_uri "$uri" "$http_user_agent"';
  access_log {env.path('nginx', 'access.log')} corpus;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    root {ROOT};
    location = /robots.txt {{ default_type text/plain; return 200 "User-agent: *\\nAllow: /\\n"; }}
  }}
}}
""")
    return env._nginx(conf, port)


class AccessLog:
    """The requests nginx logged since the last mark(), Scrapy's (its User-Agent starts
    with "Scrapy/") or the others'. Scrapy crawls while spiderhub does; the two spiderhub
    crawls come one after the other."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        return self.offset

    def entries(self, scrapy, offset=0):
        """[(status, method, request_uri, decoded path)] from `offset` on, robots.txt left
        out, of Scrapy (scrapy=True) or of the others."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
        out = []
        for line in text.splitlines():
            status, method, uri, rest = line.split(" ", 3)
            path, agent = rest[1:-1].split('" "', 1)
            if uri == "/robots.txt" or agent.startswith("Scrapy/") != scrapy:
                continue
            out.append((int(status), method, uri, path))
        return out

    def since_mark(self):
        return self.entries(False, self.offset)


def defrag(url):
    return url.split("#", 1)[0]


def url_set(items, final=True):
    """{URL without fragment: [items]}; a page that moved counts by its final URL."""
    out = collections.defaultdict(list)
    for i in items:
        u = (i.get("finalUrl") if final else None) or i["url"]
        out[defrag(u)].append(i)
    return out


def file_key(url):
    """The file a URL names on this server: path percent-decoded and '..' resolved (what
    nginx does), for pairing a missing URL with the extra one that stands for it."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    norm = posixpath.normpath(path) if path else "/"
    return norm + ("/" if path.endswith("/") and norm != "/" else "")


def start_scrapy(env, base):
    """Starts the reference crawl; a thread notes when it ends and the CPU it used (from
    /proc while it runs: once reaped its figures are gone)."""
    spider = os.path.join(env.args.source, "tests", "e2e", "scrapy_corpus_spider.py")
    p = env.spawn("scrapy", [SCRAPY_PYTHON, "-m", "scrapy", "runspider", spider,
                             "-a", f"start_url={base}/index.html", "-a", f"prefix={base}/",
                             "-O", env.path("scrapy-items.jsonl")])
    p.started = time.monotonic()
    p.cpu = 0.0

    def watch():
        while p.poll() is None:
            p.cpu = h.cpu_seconds(p.pid, p.cpu)
            time.sleep(0.05)
        p.ended = time.monotonic()
    p.watcher = threading.Thread(target=watch, daemon=True)
    p.watcher.start()
    return p


def finish_scrapy(env, p):
    """Scrapy's items, wall time and CPU seconds."""
    p.watcher.join(max(0.0, p.started + CRAWL_TIMEOUT - time.monotonic()))
    if p.watcher.is_alive():
        raise AssertionError(f"Scrapy did not finish in {CRAWL_TIMEOUT}s:\n"
                             + env.log("scrapy")[-3000:])
    assert p.returncode == 0, (p.returncode, env.log("scrapy")[-3000:])
    items = h.read_items(env.path("scrapy-items.jsonl"))
    assert items, env.log("scrapy")[-3000:]
    return items, p.ended - p.started, p.cpu


def start_py_worker(env, broker, output):
    return h.start_py_worker(env, broker.base + "/", PY_CLS, output)


def wait_run(broker, job, what):
    def done():
        r = h.run_of(broker, job["id"]) or {}
        assert r.get("status") in (None, "Running", "Success"), (what, r)
        return r if r.get("status") == "Success" else None
    return h.wait_until(f"{what} run Success", done, timeout=CRAWL_TIMEOUT, interval=0.25)


def crawl_cpp(env, broker, base):
    out = env.path("cpp-items.jsonl")
    worker = env.start_worker(broker, "cppworker")
    job = h.create_block_job(broker, base + "/index.html", out, max_depth=MAX_DEPTH)
    h.trigger_run(broker, job["id"], interval=0.2)
    t0 = time.monotonic()
    run = wait_run(broker, job, "C++ worker")
    took = time.monotonic() - t0
    worker.wait(30)  # Exit after its one run; the items file is complete by then
    return run, h.read_items(out), took


def crawl_python(env, broker, base):
    out = env.path("py-items.jsonl")
    worker = start_py_worker(env, broker, out)
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "corpus-py", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": PY_CLS, "Arguments": json.dumps(
            {"startUrl": base + "/index.html", "maxDepth": MAX_DEPTH})}})
    assert status == 201, (status, job)
    h.trigger_run(broker, job["id"], interval=0.2)
    t0 = time.monotonic()
    run = wait_run(broker, job, "Python worker")
    took = time.monotonic() - t0
    cpu = h.cpu_seconds(worker.pid)
    env.stop(worker)  # it writes a batch's items before it acks them: the file is complete
    return run, h.read_items(out), took, cpu


def requests_summary(log_entries):
    """(requests, {request_uri: n} of those requested more than once, {decoded path:
    [request_uri spellings]} of files fetched under several spellings)."""
    per_uri = collections.Counter(uri for _, _, uri, _ in log_entries)
    spellings = collections.defaultdict(set)
    for _, _, uri, path in log_entries:
        spellings[path].add(uri)
    twice = {u: n for u, n in per_uri.items() if n > 1}
    several = {p: sorted(s) for p, s in spellings.items() if len(s) > 1}
    return len(log_entries), twice, several


def compare(name, reference, items, log_entries, run, took, base, cpu=None):
    """Prints how crawl `name` differs from Scrapy's; returns a list of failures."""
    failures = []
    got = url_set(items)
    ref = set(reference)
    missing = sorted(ref - set(got))
    extra = sorted(set(got) - ref)
    n_req, twice, several = requests_summary(log_entries)
    short = lambda u: u[len(base):] if u.startswith(base) else u  # noqa: E731
    cpu_text = "" if cpu is None else f" ({cpu:.1f}s CPU)"
    print(f"{name}: {len(got)} URLs ({len(items)} items), {n_req} requests to nginx, "
          f"{took:.1f}s{cpu_text}; run {run['status']}: total {run['total']}, success "
          f"{run['success']}, error {run['error']}", flush=True)
    if missing or extra:
        by_file = collections.defaultdict(list)
        for u in missing:
            by_file[file_key(u)].append(u)
        print(f"  {name} vs Scrapy: {len(missing)} missing in spiderhub, {len(extra)} extra "
              f"in spiderhub", flush=True)
        for u in missing[:SHOW]:
            st = reference[u][0].get("status")
            print(f"    missing  {short(u)}  (Scrapy: {st})")
        for u in extra[:SHOW]:
            stands_for = by_file.get(file_key(u))
            i = got[u][0]
            note = f"  (status {i.get('status')}"
            if i.get("finalUrl"):
                note += f", url {short(i['url'])}"
            note += f"; Scrapy's spelling: {short(stands_for[0])})" if stands_for else ")"
            print(f"    extra    {short(u)}{note}")
        paired = sum(1 for u in extra if file_key(u) in by_file)
        print(f"  {paired} of the {len(extra)} extra URLs name a file Scrapy reached under "
              f"another spelling", flush=True)
        failures.append(f"{name}: {len(missing)} URLs missing, {len(extra)} extra "
                        f"(e.g. missing {[short(u) for u in missing[:3]]}, "
                        f"extra {[short(u) for u in extra[:3]]})")
    statuses = [(u, reference[u][0].get("status"), got[u][0].get("status"))
                for u in sorted(ref & set(got))
                if got[u][0].get("status") is not None
                and got[u][0].get("status") != reference[u][0].get("status")]
    if statuses:
        for u, s_ref, s_got in statuses[:SHOW]:
            print(f"    status   {short(u)}: Scrapy {s_ref}, spiderhub {s_got}")
        failures.append(f"{name}: {len(statuses)} URLs with another status than Scrapy's")
    dup_items = {u: len(v) for u, v in got.items() if len(v) > 1}
    if dup_items:
        print(f"  {name}: {len(dup_items)} URLs in several items, e.g. "
              f"{[short(u) for u in list(dup_items)[:5]]}")
    if twice:
        print(f"  {name}: {len(twice)} URLs requested more than once, e.g. "
              f"{sorted(twice.items())[:5]}", flush=True)
        failures.append(f"{name}: {len(twice)} URLs downloaded more than once, e.g. "
                        f"{sorted(twice.items())[:3]}")
    if several:
        print(f"  {name}: {len(several)} files requested under several spellings, e.g. "
              f"{sorted(several.items())[:3]}", flush=True)
    if run["status"] != "Success":
        failures.append(f"{name}: run {run['status']}")
    return failures


def main():
    args = h.parse_args()
    probe = subprocess.run([SCRAPY_PYTHON, "-c", "import scrapy"], capture_output=True)
    assert probe.returncode == 0, "Debian's python3-scrapy is missing (scripts/setup installs it)"
    assert os.path.exists(os.path.join(ROOT, "index.html")), \
        f"{ROOT}/index.html is missing: install {PACKAGE} (scripts/setup does)"
    t_start = time.monotonic()
    with h.Env(args, "doccorpus") as env:
        site = start_corpus_nginx(env)
        base = site.base
        log = AccessLog(env.path("nginx", "access.log"))
        scrapy_from = log.mark()
        # 1. The reference, plain Scrapy, crawls while spiderhub does (one core each,
        # about): nginx's log tells their requests apart by User-Agent.
        scrapy = start_scrapy(env, base)

        broker = env.start_broker(extra_yaml="dispatch:\n  block_size: 50\n")
        env.start_node(broker, "node1")
        env.start_node(broker, "node2")
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        # 2. spiderhub with the C++ sample worker.
        log.mark()
        cpp_run, cpp_items, cpp_took = crawl_cpp(env, broker, base)
        cpp_log = log.since_mark()
        # 3. spiderhub with the Python sample worker.
        log.mark()
        py_run, py_items, py_took, py_cpu = crawl_python(env, broker, base)
        py_log = log.since_mark()

        scrapy_items, scrapy_took, scrapy_cpu = finish_scrapy(env, scrapy)
        reference = url_set(scrapy_items)
        s_req, s_twice, s_several = requests_summary(log.entries(True, scrapy_from))
        by_type = collections.Counter(i["contentType"].split(";")[0] for i in scrapy_items)
        by_status = collections.Counter(i["status"] for i in scrapy_items)
        print(f"Scrapy 2.8: {len(reference)} URLs ({len(scrapy_items)} items), {s_req} "
              f"requests to nginx, {scrapy_took:.1f}s ({scrapy_cpu:.1f}s CPU); "
              f"{dict(by_type)}, statuses {dict(by_status)}, "
              f"{sum(1 for i in scrapy_items if i['redirectUrls'])} redirected", flush=True)
        if s_twice or s_several:  # the start URL: start requests bypass the dupefilter
            print(f"  Scrapy itself: {len(s_twice)} URLs requested more than once "
                  f"{sorted(s_twice.items())[:3]}, {len(s_several)} files under several "
                  f"spellings {sorted(s_several.items())[:3]}", flush=True)
        assert len(reference) > 1000 and by_status.get(200, 0) > 1000, (
            "the corpus looks smaller than cmake-doc's", len(reference), dict(by_status))

        failures = compare("spiderhub C++ worker", reference, cpp_items, cpp_log, cpp_run,
                           cpp_took, base)
        failures += compare("spiderhub Python worker", reference, py_items, py_log, py_run,
                            py_took, base, cpu=py_cpu)
        print(f"doc corpus: {time.monotonic() - t_start:.1f}s in all", flush=True)
        assert not failures, "spiderhub and Scrapy disagree on " + PACKAGE + ":\n  " + \
            "\n  ".join(failures)
        print(f"doc corpus ({PACKAGE}): {len(reference)} URLs, the same set from Scrapy "
              f"and both spiderhub workers, each URL downloaded once", flush=True)


if __name__ == "__main__":
    main()
