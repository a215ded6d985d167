"""Application jobs through a real broker and real node processes: packages are uploaded
(.tar.gz and .zip), placement respects group, os, NodeCount and maxProcessCount, exit
codes arrive in JobStatus, Exit stops the whole process tree (even one that ignores
SIGTERM), a path-traversal package and a package whose bytes do not match its hash are
refused, logs stop growing at their quota, and a node killed mid-run is marked lost."""
import io
import os
import signal
import tarfile
import time
import zipfile

import harness as h

# One shell program for every scenario, chosen by its first argument.
RUN_SH = """#!/bin/sh
echo "start identity=$SPIDERHUB_IDENTITY job=$SPIDERHUB_JOB_ID node=$SPIDERHUB_NODE_ID"
case "$1" in
  exit) exit "$2" ;;
  hold)   # ignores SIGTERM, leaves a grandchild; records both pids in $2
    trap '' TERM
    sleep 600 &
    echo "$$ $!" > "$2.$SPIDERHUB_NODE_ID"
    wait; wait ;;
  spam) while :; do echo "spiderhub log line that fills the quota $$"; done ;;
  *) echo "unknown mode $1" >&2; exit 64 ;;
esac
"""


def tar_gz(files, links=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            t.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()


def zip_bytes(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, text)
    return buf.getvalue()


def put_package(broker, name, data):
    return h.http("PUT", f"{broker.base}/api/v1.0/packages/{name}", data,
                  headers={"Content-Type": "application/octet-stream"})


def create_app_job(broker, name, package, arguments, node_count=1, group="", os_filter=""):
    props = {"Package": package, "Application": "app/run.sh", "Arguments": arguments,
             "NodeCount": str(node_count)}
    if group:
        props["NodeGroup"] = group
    if os_filter:
        props["Os"] = os_filter
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": name, "jobType": "application", "cron": "0 0 1 1 *", "properties": props})
    assert status == 201, (status, job)
    return job


def trigger(broker, job):
    return h.api("POST", broker, f"/api/v1.0/jobs/{job['id']}/trigger")


def run(broker, identity):
    status, runs = h.api("GET", broker, "/api/v1.0/runs")
    assert status == 200, (status, runs)
    for r in runs:
        if r["identity"] == identity:
            return r
    return None


def wait_run(broker, identity, pred, what, timeout=30):
    return h.wait_until(what, lambda: (lambda r: r if r and pred(r) else None)(run(broker, identity)),
                        timeout=timeout, interval=0.2)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # zombies count as dead
    except FileNotFoundError:
        return False


def main():
    args = h.parse_args()
    env = h.Env(args, "apps")
    leftovers = []
    try:
        # No cpu limit: the test machine's load (parallel builds) must not change placement.
        conf = "sessions:\n  heartbeat_interval_ms: 1000\n  missed_heartbeats: 3\n" \
               "placement:\n  max_cpu: 100\n"
        broker = env.start_broker(extra_yaml=conf)
        nodes = {}
        ids = {}
        # node1 and node2 in group g1 (one and two process slots), node3 elsewhere.
        for name, group, slots, quota in (("node1", "g1", 1, 1048576), ("node2", "g1", 2, 65536),
                                          ("node3", "other", 5, 1048576)):
            nodes[name] = env.start_node(broker, name, extra_yaml=f"""
group: {group}
max_process_count: {slots}
applications:
  work_dir: {env.path(name, 'projects')}
  log_dir: {env.path(name, 'logs')}
  cache_dir: {env.path(name, 'cache')}
  exit_grace_ms: 1500
  log_max_bytes: {quota}
  log_files: 2
  allow_root: true  # the hold mode writes its pids into the test's root-only directory
""")
        h.wait_until("three nodes online", lambda: sum(
            n["isOnline"] for n in h.api("GET", broker, "/api/v1.0/nodes")[1]) == 3)
        for name in nodes:
            with open(env.path(name + ".id")) as f:
                ids[name] = f.read().strip()
        name_of = {v: k for k, v in ids.items()}

        # ---- packages: good tar.gz and zip accepted, traversal and garbage refused ----
        pkg = tar_gz({"app/run.sh": RUN_SH, "app/README": "demo\n"}, links=[("app/self", "run.sh")])
        status, body = put_package(broker, "demo", pkg)
        assert status == 201, (status, body)
        status, zbody = put_package(broker, "demo-zip", zip_bytes({"app/run.sh": RUN_SH}))
        assert status == 201, (status, zbody)
        status, listing = h.api("GET", broker, "/api/v1.0/packages")
        assert status == 200 and {p["name"] for p in listing} == {"demo", "demo-zip"}, listing
        formats = {p["name"]: p["format"] for p in listing}
        assert formats == {"demo": "tar.gz", "demo-zip": "zip"}, formats
        for evil, expect in ((tar_gz({"../escape.sh": "x"}), "'..' in the path"),
                             (tar_gz({"app/run.sh": "x"}, links=[("app/l", "../../etc")]),
                              "leaves the package"),
                             (tar_gz({"/tmp/abs.sh": "x"}), "absolute path"),
                             (b"#!/bin/sh\necho not an archive\n", "neither a .zip nor a .tar.gz")):
            status, body = put_package(broker, "evil", evil)
            assert status == 400 and expect in body.decode(), (status, body)
        assert h.api("GET", broker, "/api/v1.0/packages/evil")[0] == 404
        status, body = put_package(broker, "../x", pkg)
        assert status in (400, 404), status
        # Nodes fetch packages with their sign; without it the download is refused.
        status, body = h.http("GET", f"{broker.base}/packages/demo", token=None)
        assert status == 401, status

        # ---- placement: group + NodeCount; node3 (other group) never used ----
        marker = env.path("pids")
        hold = create_app_job(broker, "hold", "demo", f"hold {marker}", node_count=2, group="g1")
        status, body = trigger(broker, hold)
        assert status == 200, (status, body)
        hold_id = body["identity"]
        r = wait_run(broker, hold_id, lambda r: len(r["nodes"]) == 2 and all(
            n["status"] == "Running" for n in r["nodes"]), "hold running on two nodes")
        assert {name_of[n["nodeId"]] for n in r["nodes"]} == {"node1", "node2"}, r
        assert r["status"] == "Running" and r["left"] == 2, r
        pids = {}
        for name in ("node1", "node2"):
            path = f"{marker}.{ids[name]}"
            h.wait_until(f"{name} pid file", lambda: os.path.exists(path)
                         and open(path).read().strip())
            pids[name] = [int(x) for x in open(path).read().split()]
            leftovers += pids[name]
            assert all(alive(p) for p in pids[name]), pids
        # Logs reach the broker: the tail names the run identity.
        h.wait_until("log tail", lambda: all(
            f"identity={hold_id}" in n["stdout"]
            for n in h.api("GET", broker, f"/api/v1.0/runs/{hold_id}/logs")[1]["nodes"]))

        # node1 is full (1 slot): a 2-node job gets node2 only and records the shortfall.
        ok = create_app_job(broker, "exit0", "demo-zip", "exit 0", node_count=2, group="g1")
        status, body = trigger(broker, ok)
        assert status == 200, (status, body)
        r = wait_run(broker, body["identity"], lambda r: r["status"] != "Running", "exit0 done")
        assert r["status"] == "Success", r
        assert [name_of[n["nodeId"]] for n in r["nodes"]] == ["node2"], r
        assert r["nodes"][0]["exitCode"] == 0 and r["nodes"][0]["status"] == "Exited", r
        assert "started on 1 of 2 nodes" in r["reason"] and "maxProcessCount" in r["reason"], r

        # Exit codes arrive; a non-zero exit fails the run.
        bad = create_app_job(broker, "exit3", "demo", "exit 3", group="g1")
        status, body = trigger(broker, bad)
        assert status == 200, (status, body)
        r = wait_run(broker, body["identity"], lambda r: r["status"] != "Running", "exit3 done")
        assert r["status"] == "Failed" and r["nodes"][0]["exitCode"] == 3, r
        assert name_of[r["nodes"][0]["nodeId"]] == "node2", r

        # No eligible node (os filter, full group): the fire fails with the reason.
        nowhere = create_app_job(broker, "nowhere", "demo", "exit 0", os_filter="windows")
        status, body = trigger(broker, nowhere)
        assert status == 409 and "os does not match" in body["error"]["message"], (status, body)
        full = create_app_job(broker, "full", "demo", "exit 0", node_count=1, group="g1")
        status, body = trigger(broker, full)  # node1 1/1, node2 1/2: node2 still has a slot
        assert status == 200, (status, body)
        wait_run(broker, body["identity"], lambda r: r["status"] == "Success", "full done")

        # ---- Exit stops the tree on both nodes: SIGTERM ignored, SIGKILL after grace ----
        t0 = time.monotonic()
        status, body = h.api("POST", broker, f"/api/v1.0/runs/{hold_id}/exit")
        assert status == 200, (status, body)
        r = wait_run(broker, hold_id, lambda r: r["status"] == "Exited", "hold exited")
        waited = time.monotonic() - t0
        assert waited >= 1.4, f"SIGKILL came before the 1.5 s grace: {waited:.2f}s"
        for n in r["nodes"]:
            assert n["status"] == "Exited" and n["exitCode"] == 128 + 9, r
        for name, ps in pids.items():
            h.wait_until(f"{name} process tree gone", lambda: not any(alive(p) for p in ps),
                         timeout=5)

        # ---- wrong hash: the stored bytes no longer match what the broker announces ----
        # Its own bytes (its own file), then that file is overwritten on the broker's disk.
        other = tar_gz({"app/run.sh": RUN_SH + "# other\n"})
        status, body = put_package(broker, "tampered", other)
        assert status == 201, (status, body)
        status, tmeta = h.api("GET", broker, "/api/v1.0/packages/tampered")
        stored = env.path("data", "packages", f"{tmeta['sha256']}.tar.gz")
        assert os.path.exists(stored), stored
        with open(stored, "wb") as f:
            f.write(pkg)  # valid archive, wrong bytes for the recorded hash
        wrong = create_app_job(broker, "wrong-hash", "tampered", "exit 0", group="other")
        status, body = trigger(broker, wrong)
        assert status == 200, (status, body)
        r = wait_run(broker, body["identity"], lambda r: r["status"] != "Running", "wrong hash")
        assert r["status"] == "Failed", r
        node = r["nodes"][0]
        assert name_of[node["nodeId"]] == "node3" and node["status"] == "Failed", r
        assert "sha256 mismatch" in node["reason"], r

        # ---- log quota: node2 keeps at most 2 x 64 KiB per stream however much is printed ----
        spam = create_app_job(broker, "spam", "demo", "spam", group="g1")
        status, body = trigger(broker, spam)
        assert status == 200, (status, body)
        spam_id = body["identity"]
        r = wait_run(broker, spam_id, lambda r: r["nodes"] and r["nodes"][0]["status"] == "Running",
                     "spam running")
        spam_node = name_of[r["nodes"][0]["nodeId"]]
        log_dir = env.path(spam_node, "logs", spam_id)
        quota = 65536 if spam_node == "node2" else 1048576
        h.wait_until("log rotated", lambda: os.path.exists(os.path.join(log_dir, "stdout.log.1")),
                     timeout=30)
        def stdout_bytes():
            total = 0
            for f in os.listdir(log_dir):
                if f.startswith("stdout"):
                    try:
                        total += os.path.getsize(os.path.join(log_dir, f))
                    except FileNotFoundError:  # renamed by a rotation in between
                        pass
            return total
        sizes = []
        for _ in range(10):
            sizes.append(stdout_bytes())
            time.sleep(0.1)
        assert max(sizes) <= 2 * quota, (sizes, quota)
        assert not os.path.exists(os.path.join(log_dir, "stdout.log.2")), os.listdir(log_dir)
        status, logs = h.api("GET", broker, f"/api/v1.0/runs/{spam_id}/logs?bytes=200")
        assert status == 200 and 0 < len(logs["nodes"][0]["stdout"]) <= 200, logs

        # ---- a node killed while its application runs: the run marks it lost ----
        victim = nodes[spam_node]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(5)
        r = wait_run(broker, spam_id, lambda r: r["status"] != "Running", "spam lost", timeout=20)
        assert r["nodes"][0]["status"] == "Lost" and r["status"] == "Failed", r
        # Restarting the node kills the orphaned process group it left behind.
        orphan_pgid = int(open(os.path.join(log_dir, "pgid")).read())
        assert alive(orphan_pgid), "the killed node's application should still be running"
        leftovers.append(orphan_pgid)
        restarted = env.spawn(spam_node + "b", [args.bin, "node", "-c", env.path(spam_node + ".yaml")])
        h.wait_until("orphan killed", lambda: not alive(orphan_pgid), timeout=20)
        assert "left by a previous node process" in env.log(spam_node + "b"), env.log(spam_node + "b")

        # ---- broker killed and restarted while an application runs: nothing is lost ----
        keep = create_app_job(broker, "survivor", "demo", f"hold {marker}-b", group="other")
        status, body = trigger(broker, keep)
        assert status == 200, (status, body)
        keep_id = body["identity"]
        wait_run(broker, keep_id, lambda r: r["nodes"] and r["nodes"][0]["status"] == "Running",
                 "survivor running")
        os.killpg(broker.pid, signal.SIGKILL)
        broker.wait(5)
        broker = env.start_broker(name="broker2", port=broker.port, extra_yaml=conf)
        # The node reconnects and reports the process again; after the announce window
        # (10 s) the run is still Running, then Exit reaches it through the new broker.
        time.sleep(11)
        r = run(broker, keep_id)
        assert r["status"] == "Running" and r["nodes"][0]["status"] == "Running", r
        status, body = h.api("POST", broker, f"/api/v1.0/runs/{keep_id}/exit")
        assert status == 200, (status, body)
        r = wait_run(broker, keep_id, lambda r: r["status"] == "Exited", "survivor exited")
        assert r["nodes"][0]["exitCode"] == 137, r

        for p in [restarted] + [n for name, n in nodes.items() if name != spam_node] + [broker]:
            assert env.stop(p) == 0, f"{p.name} did not stop cleanly"
        print("applications: placement, exit codes, exit of the tree, refused packages, "
              "log quota and lost node all checked")
    except BaseException:
        env.dump_logs()
        raise
    finally:
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        env.close()


if __name__ == "__main__":
    main()
