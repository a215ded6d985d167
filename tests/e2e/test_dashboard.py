"""The web dashboard in Debian's headless chromium (playwright-core from npm): log in with
the API token (a wrong one is refused on the page), see the node online, create a block job
through the form (an invalid cron shows the API's error), trigger it, watch the progress
bar reach 100 % from the live feed, open the run's blocks, check the update rate and the
phone width; screenshots land in <build>/dashboard-screenshots."""
import json
import os
import shutil
import subprocess

import harness as h

PAGES = 300


def main():
    args = h.parse_args()
    with h.Env(args, "dashboard") as env:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        assert os.path.exists(chromium), "chromium is required (scripts/setup installs it)"
        node, cwd = h.npm_ci(env, "browser", ["dashboard_test.js", "common.js"])
        site = env.start_site(PAGES)
        broker = env.start_broker()
        env.start_node(broker)
        env.start_worker(broker)

        def worker_connected():
            status, raw = h.http_get(broker.base + "/metrics")
            return status == 200 and b'spiderhub_sessions{kind="worker"} 1' in raw
        h.wait_until("worker connected", worker_connected, timeout=30, interval=0.3)

        shots = os.path.join(args.build, "dashboard-screenshots")
        shutil.rmtree(shots, ignore_errors=True)
        os.makedirs(shots)
        output = env.path("items.jsonl")
        p = subprocess.run(
            [node, "dashboard_test.js"], cwd=cwd, capture_output=True, text=True, timeout=240,
            env=dict(os.environ, BASE=broker.base, TOKEN=h.TOKEN, CHROMIUM=chromium,
                     START_URL=site.base + "/index.html", OUTPUT=output, SHOTS=shots))
        assert p.returncode == 0, f"browser test failed:\n{p.stdout}\n{p.stderr}"
        findings = json.loads(p.stdout.strip().splitlines()[-1])
        # What the page showed agrees with the API and the crawl itself.
        status, runs = h.api("GET", broker, "/api/v1.0/runs")
        run = next(r for r in runs if r["identity"] == findings["identity"])
        assert run["status"] == "Success" and run["total"] == PAGES, run
        assert len({i["url"] for i in h.read_items(output)}) == PAGES
        assert findings["nodesOnline"] == 1 and findings["nextFires"] == 5, findings
        for name in ("nodes", "jobs", "runs", "run", "runs-phone", "jobs-phone"):
            shot = os.path.join(shots, name + ".png")
            assert os.path.getsize(shot) > 5000, f"{shot} missing or empty"
        print(f"dashboard: {findings}")


if __name__ == "__main__":
    main()
