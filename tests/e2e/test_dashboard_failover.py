"""The dashboard follows a broker failover, in Debian's headless chromium: two brokers
on one PostgreSQL, the dashboard open (logged in) on the active one, which is killed -9;
the page finds the new active broker by itself (each broker's public /healthz, the list
from GET /api/v1.0/brokers), moves there with its login and view, and is live again. The
standby's own page says it is a standby and links to the leader."""
import json
import os
import shutil
import signal
import subprocess
import time

import harness as h
import pg


def main():
    args = h.parse_args()
    with h.Env(args, "dashboard_failover") as env, pg.Postgres(env.dir) as cluster:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        assert os.path.exists(chromium), "chromium is required (scripts/setup installs it)"
        node_bin, cwd = h.npm_ci(env, "browser", ["failover_test.js", "common.js"])
        storage = f"storage:\n  kind: postgresql\n  postgresql: \"{cluster.conninfo()}\"\n"
        ports = {"a": h.free_port(), "b": h.free_port()}

        def failover(name):
            return (f"failover:\n  name: broker-{name}\n"
                    f"  advertise_url: http://127.0.0.1:{ports[name]}/\n"
                    "  lease_ms: 3000\n  poll_ms: 200\n"
                    "sessions:\n  heartbeat_interval_ms: 1000\n")
        a = env.start_broker("broker-a", port=ports["a"], storage_yaml=storage,
                             extra_yaml=failover("a"))
        b = env.start_broker("broker-b", port=ports["b"], storage_yaml=storage,
                             extra_yaml=failover("b"), standby=True)
        env.start_node([a, b])
        shots = os.path.abspath(os.path.join(args.build, "dashboard-screenshots"))
        os.makedirs(shots, exist_ok=True)
        browser = subprocess.Popen(
            [node_bin, "failover_test.js"], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, BASE_A=a.base, BASE_B=b.base, TOKEN=h.TOKEN,
                     CHROMIUM=chromium, SHOTS=shots))
        try:
            lines = []
            for line in browser.stdout:  # until the dashboard on A is live
                lines.append(line)
                if line.strip() == "READY":
                    break
            assert lines and lines[-1].strip() == "READY", "".join(lines) + browser.stderr.read()
            a.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            out, err = browser.communicate(timeout=120)
            lines += out.splitlines()
        finally:
            if browser.poll() is None:
                browser.kill()
        assert browser.returncode == 0, f"browser test failed:\n{''.join(lines)}\n{err}"
        findings = json.loads(lines[-1])
        assert findings["brokersKnown"] == ["active", "standby"], findings
        assert findings["nodesOnline"] == 1 and findings["loggedIn"], findings
        status, body = h.api("GET", b, "/api/v1.0/brokers")
        assert status == 200 and {x["name"] for x in body} == {"broker-a", "broker-b"}, body
        assert os.path.getsize(os.path.join(shots, "after-failover.png")) > 5000
        print(f"dashboard failover: on broker-b {findings['switchMs'] / 1000:.1f} s after the "
              f"kill, live after {findings['liveMs'] / 1000:.1f} s ({time.monotonic() - killed:.1f} s "
              f"to the end of the check): {findings}")


if __name__ == "__main__":
    main()
