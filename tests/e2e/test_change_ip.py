"""ChangeIpPattern end to end (issue #37, the seed's BlockDto.ChangeIpPattern): a site that
answers "blocked" once it has served N requests since its visitor's last IP change (the
fake change-IP command adds a file the site counts as a new IP), two nodes of which only
one has download.change_ip_command.

- The job's ChangeIpPattern reaches the blocks; the node with the command matches the
  body, runs the command and downloads the page again: every page arrives once, none with
  the blocked body, and the command ran, never twice within the node's
  download.change_ip_min_interval_ms.
- The node without the command gets no block of that run (its connection announces it).
- A pattern that is no usable regex is refused when the job is created (400).
"""
import collections
import os
import threading

import harness as h

PAGES = 120
BLOCK_AFTER = 25
MIN_INTERVAL_MS = 400


def blocking_site(ip_dir):
    """Pages /index.html -> /p/N.html; after BLOCK_AFTER requests per "IP" (the number of
    files in ip_dir) every answer is a 200 whose body says blocked."""
    served = collections.Counter()
    lock = threading.Lock()
    links = "".join(f'<a href="/p/{i}.html">{i}</a>' for i in range(1, PAGES))

    def respond(req):
        ip = len(os.listdir(ip_dir))
        with lock:
            served[ip] += 1
            blocked = req.path != "/robots.txt" and served[ip] > BLOCK_AFTER
        if blocked:
            body = b"<title>blocked</title><p>You are blocked: too many requests</p>"
        elif req.path == "/robots.txt":
            body = b"User-agent: *\nAllow: /\n"
        elif req.path == "/index.html":
            body = f"<title>index</title>{links}".encode()
        else:
            body = f"<title>page {req.path}</title>".encode()
        return 200, "text/html; charset=utf-8", body

    return h.serve_http(respond)


def main():
    args = h.parse_args()
    with h.Env(args, "change-ip") as env:
        ip_dir = env.path("ips")
        os.makedirs(ip_dir)
        srv, base = blocking_site(ip_dir)
        broker = env.start_broker()
        command = f"touch {ip_dir}/ip-$(date +%s%N)"
        env.start_node(broker, "changer", extra_yaml=(
            f"download:\n  change_ip_command: \"{command}\"\n  max_blocks: 4\n"
            f"  change_ip_min_interval_ms: {MIN_INTERVAL_MS}\n"))
        env.start_node(broker, "plain")
        env.start_worker(broker, runs=1)
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        plain_id = open(env.path("plain.id")).read().strip()

        status, body = h.api("POST", broker, "/api/v1.0/jobs", {
            "name": "bad", "jobType": "block", "cron": "0 0 1 1 *",
            "properties": {"FullClassName": "x", "ChangeIpPattern": "(unclosed"}})
        assert status == 400 and "ChangeIpPattern" in body["error"]["message"], (status, body)

        output = env.path("items.jsonl")
        job = h.create_block_job(broker, base + "/index.html", output, max_depth=2,
                                 properties={"ChangeIpPattern": "You are blocked"})
        h.trigger_run(broker, job["id"])
        h.wait_until("run Success", lambda: (h.run_of(broker, job["id"]) or {}).get(
            "status") == "Success", timeout=120, interval=0.3)
        items = h.read_items(output)
        urls = collections.Counter(i["url"] for i in items)
        expected = {base + "/index.html"} | {f"{base}/p/{i}.html" for i in range(1, PAGES)}
        assert set(urls) == expected, f"missing {sorted(expected - set(urls))[:3]}"
        assert max(urls.values()) == 1, "pages twice"
        blocked = [i["url"] for i in items if i.get("title") == "blocked" or i.get("error")]
        assert not blocked, f"{len(blocked)} pages blocked or failed, e.g. {blocked[:3]}"
        changes = len(os.listdir(ip_dir))
        assert changes >= PAGES // BLOCK_AFTER - 1, f"the change-IP command ran {changes} times"
        # The command's own clock (date +%s%N in each file name): never two changes closer
        # than download.change_ip_min_interval_ms.
        stamps = sorted(int(name.split("-")[1]) for name in os.listdir(ip_dir))
        gaps_ms = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
        assert all(g >= MIN_INTERVAL_MS * 0.95 for g in gaps_ms), gaps_ms
        run = h.run_of(broker, job["id"])
        by_node = {n["nodeId"]: n for n in run.get("nodes", [])}
        assert by_node.get(plain_id, {}).get("success", 0) == 0, by_node.get(plain_id)
        print(f"change IP: {PAGES} pages once, none blocked; the command ran {changes} times "
              f"(the site blocks after {BLOCK_AFTER} requests per IP), at least "
              f"{min(gaps_ms, default=0):.0f} ms apart; the node without the "
              "command got no block; a bad pattern refused with 400", flush=True)
        srv.shutdown()


if __name__ == "__main__":
    main()
