#!/usr/bin/env bash
# A workload while every shard is scrubbed (docs/design.md §10): serves DATA_DIR, drives
# `assent bench --workload WORKLOAD` (`batch`: of 1,000 events) with CONNECTIONS for
# SECONDS, asks `scrubStorage(force: true)` after 5 s (every shard in turn), and prints the
# bench's figures (peak server RSS among them), how long the mutation took and each
# shard's scrub log line (elapsed_ms: the whole scrub; paused_ms: the writer's pause for the
# hand-over; with ASSENT_LOG=info,shard=debug also its steps).
#
#   benches/recovery/scrub_load.sh DATA_DIR [BIN=target/release/assent] [SECONDS=150] [CONNECTIONS=8] [WORKLOAD=record]
#
# DATA_DIR is a data directory of `assent serve` (e.g. the 10M ledger of
# benches/http/flat.sh); it grows and is rewritten: use a copy. SECONDS must outlast the
# scrubs (per 2.5M-entry shard ≈ 40 s with no load, 40–100 s under load).
set -euo pipefail
dir=${1:?usage: scrub_load.sh DATA_DIR [BIN] [SECONDS] [CONNECTIONS] [WORKLOAD]}
bin=${2:-target/release/assent}
secs=${3:-150}
conns=${4:-8}
workload=${5:-record}
extra=(); [ "$workload" = batch ] && extra=(--batch 1000)
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/../http/server.sh"
work=$(mktemp -d)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
serve_on "$bin" "$dir" "$work/server.log"
"$bin" bench --url "http://127.0.0.1:$port" --server-pid "$pid" --json \
  --connections "$conns" --duration "$secs" --workload "$workload" "${extra[@]}" \
  >"$work/report.json" &
bench=$!
sleep 5
t0=$(date +%s.%N)
curl -sf -H "Authorization: Bearer $ASSENT_BENCH_TOKEN" -H 'content-type: application/json' \
  "http://127.0.0.1:$port/graphql" \
  -d '{"query":"mutation { scrubStorage(force: true) { shard bytesBefore bytesAfter } }"}' \
  >"$work/scrub.json"
t1=$(date +%s.%N)
wait "$bench"
echo "scrubStorage: $(python3 -c "print(round($t1 - $t0, 1))") s, $(cat "$work/scrub.json")"
grep -E "shard file rewritten|scrub hand-over|scrub swap|scrub copy closed" "$work/server.log" | sed 's/^[^ ]* *//'
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
print(f'{r["workload"]} over the run: {r["requests_per_s"]:.0f} req/s, {r["events_per_s"]:.0f} events/s, p50 {l["p50"]} ms, p99 {l["p99"]} ms, '
      f'p99.9 {l["p999"]} ms, max {l["max"]} ms, errors {r["errors"]}, '
      f'peak RSS {r.get("server_peak_rss_mib")} MiB')
PY
