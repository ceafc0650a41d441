#!/usr/bin/env bash
# Server CPU and bytes written per event: starts a fresh `assent serve` (rate limit off),
# runs one `assent bench` workload against it, and prints events/s, p99, the server's CPU
# time (user + system, from /proc/PID/stat) and the bytes it wrote (`write_bytes` of
# /proc/PID/io: pages of durable commits and index steps) divided by the events (or
# requests) it served. Steadier figures than throughput on a host whose speed drifts:
# compare builds by alternating them.
#
#   benches/http/cpu.sh [BIN=target/release/assent] [WORKLOAD=batch] [CONNECTIONS=8] [SECONDS=8] [BENCH-ARGS...]
#
# BENCH-ARGS go to `assent bench` as they are (e.g. `--read-ratio 0.9 --hot-customer`).
set -euo pipefail
bin=${1:-target/release/assent}
workload=${2:-batch}
conns=${3:-8}
secs=${4:-8}
shift $(( $# < 4 ? $# : 4 ))
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
start_server "$bin"
extra=("$@"); [ "$workload" = batch ] && [ $# = 0 ] && extra=(--batch 1000)
written() { awk '/^write_bytes/ {print $2}' "/proc/$pid/io"; }
t0=$(server_ticks)
w0=$(written)
"$bin" bench --url "http://127.0.0.1:$port" --json --connections "$conns" --duration "$secs" \
  --workload "$workload" "${extra[@]}" > "$data/report.json"
t1=$(server_ticks)
w1=$(written)
hz=$(getconf CLK_TCK)
python3 - "$data/report.json" "$t0" "$t1" "$hz" "$w0" "$w1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t0, t1, hz = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
w0, w1 = int(sys.argv[5]), int(sys.argv[6])
n = r["events"] or r["requests"]
per = "event" if r["events"] else "request"
print(f'{r["workload"]}: {r["events_per_s"]:.0f} events/s, {r["requests_per_s"]:.0f} req/s, '
      f'p99 {r["latency_ms"]["p99"]} ms, server CPU {(t1 - t0) / hz * 1e6 / n:.1f} µs per '
      f'{per}, {(w1 - w0) / n / 1e3:.1f} KB written per {per}, errors {r["errors"]}')
PY
