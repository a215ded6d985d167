#!/usr/bin/env bash
# Many-nodes benchmark: starts a broker with a temporary configuration (raised open-files
# limit, http.max_connections above N), runs bench_many_nodes against it with N signed node
# sessions heartbeating every 5 s for the window, prints the figures, stops the broker.
#
#   bench/many_nodes.sh [--build DIR] [--nodes 10000] [--duration 60] [--threads 1]
#                       [--io-threads 1] [--interval-ms 5000] [--keep]
#
# Targets (not asserted): 10,000 sessions held, heartbeat round trip p99 < 50 ms,
# broker RSS < 500 MB. --keep keeps the work directory (broker log, database).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
nodes=10000
duration=60
threads=1
io_threads=1
interval_ms=5000
keep=0
log_level="${LOG_LEVEL:-info}"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --io-threads) io_threads="$2"; shift 2 ;;
    --interval-ms) interval_ms="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "many_nodes.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
bin="$build/spiderhub"
bench="$build/bench_many_nodes"
for f in "$bin" "$bench"; do
  [ -x "$f" ] || { echo "many_nodes.sh: $f not built (cmake --build $build)" >&2; exit 2; }
done

# Every session is one socket in the broker and one in the bench (plus the DB, logs...).
need=$((nodes + 1024))
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  echo "many_nodes.sh: warning: hard open-files limit $hard < $need; sessions beyond it will fail" >&2
  ulimit -n "$hard"
else
  ulimit -n "$need"
fi

work="$(mktemp -d /tmp/spiderhub-many-nodes.XXXXXX)"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$broker_pid" 2>/dev/null || true
  fi
  if [ "$keep" = 1 ]; then echo "many_nodes.sh: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
token="bench-$RANDOM$RANDOM"
cat > "$work/broker.yaml" <<EOF
http:
  address: 127.0.0.1
  port: $port
  io_threads: $io_threads
  max_connections: $((nodes + 1000))
auth:
  token: "$token"
storage:
  path: $work/data/broker.db
sessions:
  heartbeat_interval_ms: $interval_ms
inspector:
  enabled: false
log:
  level: $log_level
EOF

"$bin" broker -c "$work/broker.yaml" > "$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  sleep 0.1
done
echo "many_nodes.sh: broker pid $broker_pid on 127.0.0.1:$port (open files $(ulimit -n), io_threads $io_threads, $(nproc) cpus)"

"$bench" --url "http://127.0.0.1:$port" --token "$token" --nodes "$nodes" \
  --duration "$duration" --broker-pid "$broker_pid" --threads "$threads" \
  --interval-ms "$interval_ms" | tee "$work/bench.txt"

status_rows="$(python3 - "$work/data/broker.db" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
print(con.execute("SELECT COUNT(*) FROM NodeStatus").fetchone()[0],
      con.execute("SELECT COUNT(*) FROM Node").fetchone()[0])
EOF
)" || status_rows="? ?"
echo "database:         $(echo "$status_rows" | cut -d' ' -f1) NodeStatus rows, $(echo "$status_rows" | cut -d' ' -f2) Node rows"
echo "broker log:       $(grep -cE ' warning +\[' "$work/broker.log" || true) warnings, $(grep -cE ' (error|critical) +\[' "$work/broker.log" || true) errors"
grep -m5 -E ' (warning|error|critical) +\[' "$work/broker.log" || true

kill -TERM "$broker_pid"
t0=$(date +%s.%N)
wait "$broker_pid" && rc=0 || rc=$?
echo "broker stop:      exit $rc after $(python3 -c "import time; print(f'{time.time()-$t0:.1f}')") s"
broker_pid=""
