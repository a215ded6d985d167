"""Clients given a list of broker URLs (brokers sharing one database, one active): a node
(YAML list), a node (comma-separated), the C++ sample worker and the Python worker
(--broker "A,B,C") all get [a dead port, a standby answering 503 to everything, the real
broker].

1. Each goes round the list to the real broker (3 of 3): a crawl finishes, every page once.
2. The real broker stops and a broker on the same database comes up on the port that was
   dead (what a failover looks like to clients): every client follows it (1 of 3) by
   itself, and a second crawl of each class finishes there.
"""
import http.server
import socketserver
import threading

import harness as h

PAGES = 300
PY_CLS = "py.LinkSpider"


class Standby(http.server.BaseHTTPRequestHandler):
    """A standby broker: 503 {"status":"standby",...} for every request and upgrade."""
    paths = []
    lock = threading.Lock()

    def _standby(self):
        with Standby.lock:
            Standby.paths.append(self.command + " " + self.path.split("?")[0])
        body = b'{"status":"standby","leader":""}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _standby

    def log_message(self, *args):
        pass


def start_py_worker(env, brokers, output):
    return h.start_py_worker(env, brokers, PY_CLS, output)


def py_job(broker, start_url):
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": "py", "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": PY_CLS,
                       "Arguments": f'{{"startUrl": "{start_url}", "maxDepth": 50}}'}})
    assert status == 201, (status, job)
    return job


def crawl(env, broker, site, tag):
    """One run of the sample spider and one of the Python spider, both to Success."""
    output = env.path(f"items-{tag}.jsonl")
    job = h.create_block_job(broker, site.base + "/index.html", output, max_depth=50)
    pyjob = py_job(broker, site.base + "/index.html")
    h.trigger_run(broker, job["id"])
    h.trigger_run(broker, pyjob["id"])
    for j in (job, pyjob):
        h.wait_until(f"{tag}: run of {j['name']} Success",
                     lambda j=j: (h.run_of(broker, j["id"]) or {}).get("status") == "Success",
                     timeout=120, interval=0.5)
    h.assert_exactly_once(output, h.site_pages(site.base, PAGES), h.run_of(broker, job["id"]))
    py_run = h.run_of(broker, pyjob["id"])
    if tag == "first":
        assert py_run["total"] == PAGES and py_run["success"] == PAGES, py_run
        py_urls = sorted(i["url"] for i in h.read_items(env.path("items-py.jsonl")))
        assert py_urls == sorted(h.site_pages(site.base, PAGES)), py_urls[:5]
    else:
        # The Python worker's items file already has every page: it skips the start page
        # (exactly once across runs), so the run ends there, on the new broker.
        assert py_run["total"] == py_run["success"] >= 1, py_run


def main():
    args = h.parse_args()
    with h.Env(args, "broker_list") as env:
        site = env.start_site(PAGES)
        db = env.path("data", "broker.db")
        broker = env.start_broker(db=db)
        dead_port = h.free_port()
        standby = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Standby)
        standby.daemon_threads = True
        threading.Thread(target=standby.serve_forever, daemon=True).start()
        urls = [f"http://127.0.0.1:{dead_port}/", f"http://127.0.0.1:{standby.server_address[1]}/",
                broker.base + "/"]
        listed = "".join(f"\n  - {u}" for u in urls)
        common = (f"token: {h.TOKEN}\nheartbeat_interval_ms: 1000\n"
                  f"reconnect:\n  initial_ms: 200\n  max_ms: 2000\n")
        for name, broker_yaml in (("node1", listed), ("node2", " " + ", ".join(urls))):
            conf = env.write(f"{name}.yaml", h.with_private(
                f"broker:{broker_yaml}\n{common}id_file: {env.path(name + '.id')}\n"))
            env.spawn(name, [args.bin, "node", "-c", conf])
        env.spawn("worker", [args.bin, "worker-sample", "--broker", ",".join(urls),
                             "--token", h.TOKEN, "--runs", "2"])
        start_py_worker(env, ",".join(urls), env.path("items-py.jsonl"))

        def online(b):
            return sum(n["isOnline"] for n in h.api("GET", b, "/api/v1.0/nodes")[1])
        h.wait_until("both nodes online", lambda: online(broker) == 2)
        crawl(env, broker, site, "first")
        for name in ("node1", "node2", "worker"):
            assert "(broker 3 of 3)" in env.log(name), env.log(name)[-3000:]
            assert "upgrade refused: HTTP 503" in env.log(name), env.log(name)[-3000:]
        assert "(broker 3 of 3) as py.LinkSpider" in env.log("pyworker"), env.log("pyworker")
        with Standby.lock:
            asked = set(Standby.paths)
        for p in ("GET /node", "GET /worker", "POST /worker/negotiate"):
            assert p in asked, (p, asked)

        # "Failover": the broker moves to the port that was dead, same database.
        assert env.stop(broker) == 0
        moved = env.start_broker(name="broker2", port=dead_port, db=db)
        h.wait_until("both nodes online at the new broker", lambda: online(moved) == 2,
                     timeout=30)
        crawl(env, moved, site, "second")
        for name in ("node1", "node2", "worker", "pyworker"):
            assert "(broker 1 of 3)" in env.log(name), env.log(name)[-3000:]
        h.wait_until("the sample worker leaves after its two runs",
                     lambda: [p for p in env.procs if p.name == "worker"][0].poll() is not None)
        standby.shutdown()
        print(f"broker list: nodes and workers went round [dead, standby 503, broker] to the "
              f"broker, crawled {PAGES} pages each, then followed the broker to the dead port")


if __name__ == "__main__":
    main()
