"""Application packages cannot take over their node, through a real broker and nodes.

- A node running as root without `applications.run_as` refuses the run, saying why.
- A node with `run_as: nobody` runs the package as uid 65534: it cannot read the node's
  YAML (the file with the node's secret; the node warns while that file is readable by
  others, and the test makes it 0600 as docs/security.md says) and is killed at its memory limit
  (`max_memory_mb: 64`), reported as exit 137 with the reason in JobStatus.
"""
import os

import harness as h
import test_applications as ta

RUN_SH = """#!/bin/sh
case "$1" in
  peek)
    echo "uid=$(id -u)"
    if cat "$2" >/dev/null 2>&1; then echo "node.yaml READ"; else echo "node.yaml DENIED"; fi ;;
  hog)
    exec python3 -c "b = [bytearray(8 << 20) for _ in range(64)]; print('ALLOCATED')" ;;
esac
"""


def main():
    args = h.parse_args()
    if os.geteuid() != 0:
        print("app containment: skipped (needs root to switch users)")
        return
    with h.Env(args, "containment") as env:
        broker = env.start_broker(extra_yaml="placement:\n  max_cpu: 100\n")
        env.start_node(broker, "rootnode", extra_yaml=f"""group: careless
applications:
  work_dir: {env.path('rootnode', 'projects')}
  log_dir: {env.path('rootnode', 'logs')}
  cache_dir: {env.path('rootnode', 'cache')}
""")
        env.start_node(broker, "jail", extra_yaml=f"""group: contained
applications:
  work_dir: {env.path('jail', 'projects')}
  log_dir: {env.path('jail', 'logs')}
  cache_dir: {env.path('jail', 'cache')}
  run_as: nobody
  max_memory_mb: 64
""")
        node_yaml = env.path("jail.yaml")
        assert os.path.exists(node_yaml) and h.TOKEN in open(node_yaml).read()
        # Written 0644 by the harness: the node warns; the operator's fix is chmod 600.
        h.wait_until("the node's warning", lambda: "chmod 600" in env.log("jail"), timeout=10)
        os.chmod(node_yaml, 0o600)
        h.wait_until("two nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 2)
        status, _ = ta.put_package(broker, "probe", ta.tar_gz({"app/run.sh": RUN_SH}))
        assert status in (200, 201), status

        def finished(job):
            status, body = ta.trigger(broker, job)
            assert status == 200, (status, body)
            return ta.wait_run(broker, body["identity"],
                               lambda r: r["nodes"] and r["status"] not in ("Running", "Starting"),
                               "run ended", timeout=60)

        careless = ta.create_app_job(broker, "careless", "probe", "peek /dev/null",
                                     group="careless")
        r = finished(careless)
        n = r["nodes"][0]
        assert r["status"] == "Failed" and "applications.run_as is not set" in n["reason"], r

        peek = ta.create_app_job(broker, "peek", "probe", f"peek {node_yaml}", group="contained")
        r = finished(peek)
        assert r["nodes"][0]["exitCode"] == 0, r
        identity = r["identity"]

        def stdout():
            out = h.api("GET", broker, f"/api/v1.0/runs/{identity}/logs")[1]["nodes"][0]["stdout"]
            return out if "node.yaml" in out else None
        out = h.wait_until("the probe's output", stdout, timeout=10)
        assert "uid=65534" in out and "node.yaml DENIED" in out, out

        hog = ta.create_app_job(broker, "hog", "probe", "hog", group="contained")
        r = finished(hog)
        n = r["nodes"][0]
        logs = h.api("GET", broker, f"/api/v1.0/runs/{r['identity']}/logs")[1]
        assert "ALLOCATED" not in logs["nodes"][0]["stdout"], logs
        assert n["exitCode"] != 0, r
        if n["exitCode"] == 137:   # a memory cgroup could be made: killed by the kernel
            assert "killed at its memory limit of 64 MiB" in n["reason"], r
        print(f"app containment: refused on a careless root node; as nobody the package "
              f"cannot read the node's YAML; the memory hog ended with {n['exitCode']} "
              f"({n['reason'] or 'no reason'})", flush=True)


if __name__ == "__main__":
    main()
