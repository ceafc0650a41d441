#!/usr/bin/env bash
# Server RSS through `batch` and then a scrub of every shard on the idle server: copies
# BIG_DATA_DIR beside itself (the run grows and rewrites it), drops the page cache (root),
# serves the copy, runs `batch` of 1,000 events with 8 connections for SECONDS, waits 10 s,
# asks `scrubStorage(force: true)`, waits 10 s, and prints VmRSS/VmHWM at each point and the
# highest RSS of each 5-s window (sampled every 0.5 s), then deletes the copy
# (docs/benchmarks.md, session 20).
#
#   benches/recovery/scrub_rss.sh BIG_DATA_DIR [BIN=target/release/assent] [SECONDS=60]
#
# Needs free disk for one copy and the largest shard's scrub (≈ 10 + 6 GB for 10M events).
set -euo pipefail
big=${1:?usage: scrub_rss.sh BIG_DATA_DIR [BIN] [SECONDS]}
bin=${2:-target/release/assent}
secs=${3:-60}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
copy="${big%/}.rss-copy"
[ -e "$copy" ] && { echo "$copy exists: remove it first" >&2; exit 2; }
work=$(mktemp -d)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$copy" "$work"' EXIT
. "$(dirname "$0")/../http/server.sh"
serve_copy_of "$bin" "$big" "$copy" "$work/server.log"
rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MiB  ", $1, $2 / 1024}' "/proc/$pid/status"; echo; }
( while kill -0 "$pid" 2>/dev/null; do
    echo "$(date +%s.%N) $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
    sleep 0.5
  done ) > "$work/rss.txt" &
"$bin" bench --url "http://127.0.0.1:$port" --workload batch --batch 1000 --connections 8 \
  --duration "$secs" --server-pid "$pid" --json |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("batch: %.0f events/s, errors %s" % (r["events_per_s"], r["errors"]))'
echo "after batch: $(rss)"
sleep 10
echo "idle 10 s: $(rss)"
curl -sf -H "Authorization: Bearer $ASSENT_BENCH_TOKEN" -H 'content-type: application/json' \
  "http://127.0.0.1:$port/graphql" \
  -d '{"query":"mutation { scrubStorage(force: true) { shard tookMs pausedMs } }"}'
echo
echo "after the scrubs: $(rss)"
sleep 10
echo "idle 10 s: $(rss)"
echo "highest RSS (MiB) of each 5-s window:"
awk 'NR == 1 {t0 = $1} $2 != "" {b = int(($1 - t0) / 5); v = int($2 / 1024); if (v > m[b]) m[b] = v; if (b > n) n = b}
     END {for (i = 0; i <= n; i++) printf "%d ", m[i]; print ""}' "$work/rss.txt"
