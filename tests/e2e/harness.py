"""Shared plumbing of the end-to-end tests: real spiderhub processes on loopback with
random free ports, a static site served by nginx, bounded waits, and cleanup of every
process and temp directory whatever happens."""
import argparse
import atexit
import collections
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# A fresh secret per test process, as an operator would make with `spiderhub token`.
TOKEN = secrets.token_hex(24)
# TLS context of the HTTP helpers (None: the default); the cluster tests set one that
# trusts their throwaway CA.
SSL_CONTEXT = None


def parse_args(description=None, only=None, keep=False):
    """The arguments ctest gives every e2e test (--bin, --source, --build); `only` (its help
    text) adds --only NAMES to run a part, `keep` adds --keep (keep the work directory)."""
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    if only:
        ap.add_argument("--only", default="", help=only)
    if keep:
        ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return ap.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # the thing we wait for may not be up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Env:
    """One test's world: temp dir, processes, ports. Cleans up on exit."""

    def __init__(self, args, name):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix=f"spiderhub-{name}-")
        # nginx workers run as an unprivileged user and must read the site.
        os.chmod(self.dir, 0o755)
        self.procs = []
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(1))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """`with Env(...) as env:` prints the processes' logs when the body raised, then
        stops every process and removes the temp dir."""
        if exc_type is not None:
            self.dump_logs()
        self.close()
        return False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, text):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def spawn(self, name, argv, **kw):
        # Profiling aid: SPIDERHUB_WRAP_BROKER="valgrind --tool=callgrind" (likewise
        # _NODE, _WORKER) runs that program under the given command.
        wrap = os.environ.get("SPIDERHUB_WRAP_" + name.rstrip("0123456789").upper())
        if wrap:
            argv = wrap.split() + argv
        log = open(self.path(f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                             start_new_session=True, **kw)
        p.name = name
        p.log_path = self.path(f"{name}.log")
        self.procs.append(p)
        return p

    def log(self, name):
        try:
            with open(self.path(f"{name}.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, p, sig=signal.SIGTERM, timeout=20):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        return p.returncode

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        if os.environ.get("SPIDERHUB_KEEP_E2E"):
            print(f"kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self):
        for p in self.procs:
            print(f"----- {p.name} log (tail) -----", file=sys.stderr)
            print(self.log(p.name)[-6000:], file=sys.stderr)

    # ---- programs ---------------------------------------------------------------

    def start_broker(self, name="broker", extra_yaml="", port=None, db=None, inspector=False,
                     inspector_secret="", auth_yaml=None, storage_yaml=None, standby=False):
        """inspector=True publishes the inspector on a free loopback port (p.inspector_port)
        for `spiderhub console`; by default it is off. `auth_yaml` replaces the auth
        section (default: the one TOKEN for every role, failures not limited in practice, so
        tests of refusals see 401s rather than 429s). `storage_yaml` replaces the storage
        section (PostgreSQL); standby=True waits for a standby's 503 instead of the
        active broker's 200 on /healthz."""
        if auth_yaml is None:
            auth_yaml = f"auth:\n  token: {TOKEN}\n  max_failures: 100000\n"
        port = port or free_port()
        db = db or self.path("data", "broker.db")
        inspector_port = free_port() if inspector else 0
        inspector_yaml = (f"inspector:\n  enabled: true\n  address: 127.0.0.1\n"
                          f"  port: {inspector_port}\n  secret: \"{inspector_secret}\"\n"
                          if inspector else "inspector:\n  enabled: false\n")
        conf = self.write(f"{name}.yaml", f"""
http:
  address: 127.0.0.1
  port: {port}
{auth_yaml}{storage_yaml or f"storage:{chr(10)}  path: {db}{chr(10)}"}{inspector_yaml}log:
  level: info
{extra_yaml}
""")
        argv = [self.args.bin, "broker", "-c", conf]
        if os.environ.get("SPIDERHUB_E2E_GDB"):  # debugging aid: backtraces in broker.log
            argv = ["gdb", "-q", "-batch", "-ex", "run", "-ex", "thread apply all bt 15",
                    "--args"] + argv
        p = self.spawn(name, argv)
        p.port = port
        p.inspector_port = inspector_port
        p.base = f"http://127.0.0.1:{port}"
        want = 503 if standby else 200
        wait_until("broker health", lambda: http_get(p.base + "/healthz")[0] == want
                   or p.poll() is not None, timeout=30)
        if p.poll() is not None:
            self.dump_logs()
            raise AssertionError(f"broker exited with {p.returncode}")
        return p

    def start_node(self, broker, name="node", extra_yaml=""):
        """`broker`: a broker process, or a list of them (the node follows the active one).
        Its downloads may reach loopback (the test sites): with_private(extra_yaml)."""
        brokers = broker if isinstance(broker, list) else [broker]
        extra_yaml = with_private(extra_yaml)
        conf = self.write(f"{name}.yaml", f"""
broker: [{", ".join(b.base + "/" for b in brokers)}]
token: {TOKEN}
id_file: {self.path(name + '.id')}
heartbeat_interval_ms: 1000
reconnect:
  initial_ms: 200
  max_ms: 2000
{extra_yaml}
""")
        return self.spawn(name, [self.args.bin, "node", "-c", conf])

    def start_worker(self, broker, name="worker", cls="spiderhub.samples.SiteSpider", runs=1):
        """`broker`: a broker process, or a list of them (comma-separated URLs)."""
        brokers = broker if isinstance(broker, list) else [broker]
        return self.spawn(name, [self.args.bin, "worker-sample", "--broker",
                                 ",".join(b.base + "/" for b in brokers),
                                 "--token", TOKEN, "--class", cls, "--runs", str(runs)])

    def start_template_site(self, pages):
        """nginx rendering a `pages`-page site from a template (template_site_conf): every
        page reachable from /index.html, none on disk."""
        if pages < 10 or pages % 10:
            raise ValueError("a template site has a multiple of 10 pages (every page with "
                             "children has all ten)")
        port = free_port()
        os.makedirs(self.path("nginx"), exist_ok=True)
        conf = self.write("nginx/nginx.conf", template_site_conf(pages, port, self.path("site")))
        return self._nginx(conf, port)

    def start_js_site(self, pages):
        """nginx serving a `pages`-page site whose links exist only after a script ran:
        page i links to its children 10i..10i+9 (< pages) and to the index, every link
        inserted by a script 30 ms after load (class "js"); the HTML on the wire has none.
        Page 7 also moves itself to /p/7.html?moved=1 (history.replaceState): a rendered
        result reports that final URL."""
        root = self.path("js-site")
        os.makedirs(os.path.join(root, "p"), exist_ok=True)
        for n in range(pages):
            kids = range(1, min(pages, 10)) if n == 0 else [
                k for k in range(10 * n, 10 * n + 10) if k < pages]
            hrefs = [f"/p/{k}.html" for k in kids] + ([] if n == 0 else ["/index.html"])
            html = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Page %d</title>"
                    "</head><body><h1>Page %d</h1><ul id='links'></ul><script>\n"
                    "setTimeout(function () {\n"
                    "  var ul = document.getElementById('links');\n"
                    "  %s.forEach(function (h) {\n"
                    "    var a = document.createElement('a'); a.href = h; a.className = 'js';\n"
                    "    a.textContent = h; var li = document.createElement('li');\n"
                    "    li.appendChild(a); ul.appendChild(li); });\n"
                    "}, 30);\n%s</script></body></html>\n") % (
                        n, n, json.dumps(hrefs),
                        "history.replaceState(null, '', location.pathname + '?moved=1');\n"
                        if n == 7 else "")
            with open(os.path.join(root, "index.html" if n == 0 else f"p/{n}.html"), "w") as f:
                f.write(html)
        return self._static_nginx("nginx-js", root)

    def _static_nginx(self, dirname, root):
        """nginx serving the files under `root` on a free loopback port (config and logs
        in `dirname` of the test's directory)."""
        port = free_port()
        conf = self.write(f"{dirname}/nginx.conf", f"""
worker_processes 1;
pid {self.path(dirname, 'nginx.pid')};
error_log {self.path(dirname, 'error.log')} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 100000;
  default_type text/html;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ try_files $uri =404; }}
  }}
}}
""")
        return self._nginx(conf, port)

    def _nginx(self, conf, port):
        """Starts nginx with `conf` and waits until it serves /index.html on `port`."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        p = self.spawn("nginx", [nginx, "-p", self.path("nginx"), "-c", conf,
                                 "-g", "daemon off;"])
        p.base = f"http://127.0.0.1:{port}"
        wait_until("nginx", lambda: http_get(p.base + "/index.html")[0] == 200, timeout=15)
        return p

    def start_site(self, pages):
        root = self.path("site")
        subprocess.run([sys.executable, os.path.join(self.args.source, "bench", "gen_site.py"),
                        "--pages", str(pages), "--out", root], check=True,
                       stderr=subprocess.DEVNULL)
        return self._static_nginx("nginx", root)


# ---- process figures (/proc), for tests and benchmarks -----------------------------


def processes():
    """{pid: (parent pid, command name)} of every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        out[int(entry)] = (int(stat[stat.rindex(")") + 2:].split()[1]), name)
    return out


def chromium_children(pid):
    """Chromium processes whose parent is process `pid` (a rendering node's browser)."""
    return [p for p, (ppid, name) in processes().items() if ppid == pid and "chrom" in name]


def process_tree(pid):
    """`pid` and all its descendants."""
    children = {}
    for p, (ppid, _) in processes().items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_mb(pid, field="VmHWM"):
    """A memory field of /proc/PID/status (VmHWM: peak RSS, VmRSS) in MB; nan when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def cpu_seconds(pid, missing=float("nan")):
    """utime + stime of a process and its reaped children, in seconds (`missing` when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return missing


def db_bytes(path):
    """(main database file, its WAL and shared-memory files) in bytes."""
    size = lambda p: os.path.getsize(p) if os.path.exists(p) else 0  # noqa: E731
    return size(path), size(path + "-wal") + size(path + "-shm")


def spool_bytes(path):
    """Bytes in the result spool's segment files beside the SQLite database at `path`
    (None when the broker made no spool there)."""
    d = path + ".results"
    if not os.path.isdir(d):
        return None
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def less_than_regex(n):
    """A regex matching the decimal numbers 1 .. n-1 without leading zeros (n >= 2)."""
    digits = str(n)
    alts = []
    for width in range(1, len(digits)):  # fewer digits than n
        alts.append("[1-9]" + (f"[0-9]{{{width - 1}}}" if width > 1 else ""))
    for i, d in enumerate(digits):  # as many digits: equal up to i, then smaller
        lo = 1 if i == 0 else 0
        top = int(d) - 1
        if top < lo:
            continue
        rest = len(digits) - i - 1
        alts.append(digits[:i] + f"[{lo}-{top}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(alts) + ")"


def template_site_conf(pages, port, root):
    """nginx serving a generated site from three template files in `root` (written here):
    page i (1 <= i < pages) links to its children 10i .. 10i+9 when they exist, to the
    index and to pages 1-4 (5 duplicates for dedup, as bench/gen_site.py's 5 random links
    mostly are); every page carries ~4.3 KB of filler made like gen_site's (sentences of
    words drawn at random, fixed seed: it packs like gen_site's pages, where one repeated
    paragraph packed ~4x better and flattered stored bytes). The index links to pages 1-9.
    nginx fills the page number in with sub_filter, about as cheaply as it serves a static
    file, so a million-page crawl needs no million files. `pages` is a multiple of 10."""
    words = ("spider crawl block lease node broker worker request result queue actor "
             "dispatch cron storage shard fetch parse link page index depth").split()
    rng = random.Random(4321)
    filler = "".join("<p>" + " ".join(rng.choice(words) for _ in range(12)) + ".</p>\n"
                     for _ in range(41))
    head = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
    back = "<li><a href='/index.html'>index</a></li>" + "".join(
        f"<li><a href='/p/{d}.html'>page {d}</a></li>" for d in range(1, 5))
    kids = "".join(f"<li><a href='/p/QQNUMQQ{d}.html'>page QQNUMQQ{d}</a></li>" for d in range(10))
    first = "".join(f"<li><a href='/p/{d}.html'>page {d}</a></li>" for d in range(1, min(pages, 10)))
    page = head + "<title>Page QQNUMQQ</title></head><body><h1>Page QQNUMQQ</h1><ul>{}</ul>" + filler + "</body></html>\n"
    os.makedirs(root, exist_ok=True)
    for name, links in (("inner.html", kids + back), ("leaf.html", back)):
        with open(os.path.join(root, name), "w") as f:
            f.write(page.format(links))
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(page.format(first).replace("QQNUMQQ", "0"))
    inner = less_than_regex(pages // 10) if pages >= 20 else "(?!)"
    fill = "sub_filter 'QQNUMQQ' '$page'; sub_filter_once off;"
    return f"""
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 100000;
  default_type text/html;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location = /index.html {{ }}
    location ~ "^/p/(?<page>{inner})\\.html$" {{ try_files /inner.html =404; {fill} }}
    location ~ "^/p/(?<page>{less_than_regex(pages)})\\.html$" {{ try_files /leaf.html =404; {fill} }}
    location / {{ return 404; }}
  }}
}}
"""


def npm_ci(env, package, files, timeout=300):
    """Copies tests/e2e/<package> (`files`) into the test's temp dir and installs it from
    its lock file with `npm ci`. No node/npm or no registry is a FAILURE, not a skip.
    Returns (node executable, install dir)."""
    src = os.path.join(env.args.source, "tests", "e2e", package)
    dst = env.path(package)
    os.makedirs(dst)
    for name in ["package.json", "package-lock.json"] + list(files):
        shutil.copy(os.path.join(src, name), dst)
    npm = shutil.which("npm")
    node = shutil.which("node")
    assert npm and node, "node and npm are required for this test (not found in PATH)"
    p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dst,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"npm ci failed ({p.returncode}); registry unreachable?\n{out}"
    return node, dst


# ---- HTTP helpers -------------------------------------------------------------------


def http(method, url, body=None, token=TOKEN, headers=None):
    status, raw, _ = http_full(method, url, body, token, headers)
    return status, raw


def http_full(method, url, body=None, token=TOKEN, headers=None):
    """(status, body, response headers)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15, context=SSL_CONTEXT) as r:
            raw = r.read()
            return r.status, raw, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def http_get(url, token=TOKEN):
    return http("GET", url, token=token)


def api(method, broker, path, body=None, token=TOKEN):
    status, raw = http(method, broker.base + path, body, token)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def metrics(broker):
    """The broker's /metrics as {series: value}; a series keeps its labels in its name
    ('spiderhub_sessions{kind="node"}'). Every sample line of Prometheus text is
    "series value"."""
    status, raw = http_get(broker.base + "/metrics")
    assert status == 200, status
    out = {}
    for line in raw.decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def sign(subject, ts, token=TOKEN):
    return hmac.new(token.encode(), f"{subject}\n{ts}".encode(), hashlib.sha256).hexdigest()


def serve_http(respond):
    """A threaded HTTP server on 127.0.0.1 for a test's own site: `respond(handler)` gets
    the request handler (path, headers) and returns (status, content type, body bytes), or
    None for a 404. Returns (server, base URL); server.shutdown() ends it."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answer = respond(self)
            if answer is None:
                self.send_error(404)
                return
            status, ctype, body = answer
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def with_private(node_yaml):
    """A node's YAML (or the part of it after the broker and token) with
    download.allow_private_addresses on: the test sites are on loopback, which nodes refuse
    by default (SSRF guard)."""
    if re.search(r"^download:\s*$", node_yaml, re.M):
        return re.sub(r"^download:\s*$", "download:\n  allow_private_addresses: true",
                      node_yaml, count=1, flags=re.M)
    return node_yaml.rstrip("\n") + ("\n" if node_yaml.strip() else "") + \
        "download:\n  allow_private_addresses: true\n"


def start_py_worker(env, broker_url, cls, output, name="pyworker", extra=()):
    """`python3 -m spiderhub.worker` with this checkout's SDK, running the sample LinkSpider
    under class `cls` against `broker_url` (one URL or "URL1,URL2"), items to `output`."""
    src = os.path.join(env.args.source, "clients", "python")
    return env.spawn(name, [sys.executable, "-m", "spiderhub.worker", "--broker", broker_url,
                            "--token", TOKEN, "--class", cls,
                            "--spider", "spiderhub.samples:LinkSpider", "-o", output, *extra],
                     env=dict(os.environ, PYTHONPATH=src))


def create_block_job(broker, start_url, output, max_depth=6,
                     cls="spiderhub.samples.SiteSpider", cron="0 0 1 1 *", properties=None):
    """A block job for the sample spider; `properties` adds job properties (politeness)."""
    props = {"FullClassName": cls, "Arguments": json.dumps(
        {"startUrl": start_url, "maxDepth": max_depth, "output": output})}
    props.update(properties or {})
    status, job = api("POST", broker, "/api/v1.0/jobs", {
        "name": "crawl", "jobType": "block", "cron": cron, "properties": props})
    assert status == 201, (status, job)
    return job


def trigger_run(broker, job_id, timeout=30, interval=0.5):
    """Triggers a block job until the broker accepts it (the worker connects
    asynchronously, and a trigger without one is refused); returns the run identity."""
    def trigger():
        status, body = api("POST", broker, f"/api/v1.0/jobs/{job_id}/trigger")
        return body["identity"] if status == 200 else None
    return wait_until("trigger accepted", trigger, timeout=timeout, interval=interval)


def run_of(broker, job_id):
    status, runs = api("GET", broker, f"/api/v1.0/runs?jobId={job_id}")
    assert status == 200, (status, runs)
    return runs[0] if runs else None


def count_lines(path):
    """Lines in a file so far (0 when it does not exist yet): progress of an items file."""
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def site_pages(base, pages):
    """URLs of the generated and template sites' `pages` pages."""
    return {base + "/index.html"} | {f"{base}/p/{i}.html" for i in range(1, pages)}


def assert_exactly_once(output, expected, run):
    """Every URL of `expected` exactly once in the items file and nothing else, and the
    run's JobStatus totals exact."""
    urls = collections.Counter(i["url"] for i in read_items(output))
    missing = expected - set(urls)
    assert not missing, f"{len(missing)} pages missing, e.g. {sorted(missing)[:3]}"
    assert set(urls) == expected, f"unexpected pages: {sorted(set(urls) - expected)[:3]}"
    dupes = [u for u, c in urls.items() if c > 1]
    assert not dupes, f"{len(dupes)} pages written twice, e.g. {dupes[:3]}"
    n = len(expected)
    assert run["total"] == n and run["success"] == n and run["error"] == 0, run


def read_items(path):
    items = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    items.append(json.loads(line))
    return items
