#!/usr/bin/env bash
# Server CPU per event: starts a fresh `assent serve` (rate limit off), runs one
# `assent bench` workload against it, and prints events/s, p99 and the server's CPU time
# (user + system, from /proc/PID/stat) divided by the events (or requests) it served.
# A steadier figure than throughput on a host whose speed drifts: compare builds by
# alternating them.
#
#   benches/http/cpu.sh [BIN=target/release/assent] [WORKLOAD=batch] [CONNECTIONS=8] [SECONDS=8]
set -euo pipefail
bin=${1:-target/release/assent}
workload=${2:-batch}
conns=${3:-8}
secs=${4:-8}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
start_server "$bin"
extra=(); [ "$workload" = batch ] && extra=(--batch 1000)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
"$bin" bench --url "http://127.0.0.1:$port" --json --connections "$conns" --duration "$secs" \
  --workload "$workload" "${extra[@]}" > "$data/report.json"
t1=$(ticks)
hz=$(getconf CLK_TCK)
python3 - "$data/report.json" "$t0" "$t1" "$hz" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t0, t1, hz = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
n = r["events"] or r["requests"]
print(f'{r["workload"]}: {r["events_per_s"]:.0f} events/s, {r["requests_per_s"]:.0f} req/s, '
      f'p99 {r["latency_ms"]["p99"]} ms, server CPU {(t1 - t0) / hz * 1e6 / n:.1f} µs per '
      f'{"event" if r["events"] else "request"}, errors {r["errors"]}')
PY
