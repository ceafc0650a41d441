#!/usr/bin/env bash
# Flat with size: `record` on a large ledger against an empty one with the same shard count,
# alternated (docs/benchmarks.md, "At 10 million events").
#
#   benches/http/flat.sh BIG_DATA_DIR [BIN=target/release/assent] [PAIRS=2] [SECONDS=8]
#
# BIG_DATA_DIR is a data directory of `assent serve` (it is served and grows by each run: use
# a copy). Make one with batches, e.g. `assent bench --workload batch --batch 1000
# --requests 10000` against a server on it. As root, the page cache is dropped first and each
# ledger gets a 20 s warm-up run: right after a sequential read of the files (cp, cat), large
# folios in the page cache make every 4 KiB write of the server slow, and figures taken then
# measure the kernel, not Assent. Bytes are device sectors written (/sys/block), because
# `/proc/PID/io` over-counts writes into large folios. Prints one line per run.
set -euo pipefail
big=${1:?usage: flat.sh BIG_DATA_DIR [BIN] [PAIRS] [SECONDS]}
bin=${2:-target/release/assent}
pairs=${3:-2}
secs=${4:-8}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
shards=$(find "$big/shards" -name 'shard-*.redb' ! -name '*.index.redb' | wc -l)
dev=$(df --output=source "$big" | tail -1 | xargs basename)
stat=/sys/block/$dev/stat
[ -r "$stat" ] || stat=$(ls /sys/block/*/stat | head -1)
empty=$(mktemp -d)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$empty"' EXIT
. "$(dirname "$0")/server.sh"

# run DIR SECONDS [serve args...]: serves DIR, runs `record` for SECONDS, prints one line.
run() {
  local dir=$1 s=$2
  shift 2
  serve_on "$bin" "$dir" "$empty/server.log" "$@"
  local s0 t0 s1 t1
  s0=$(awk '{print $7}' "$stat"); t0=$(server_ticks)
  "$bin" bench --url "http://127.0.0.1:$port" \
    --server-pid "$pid" --json --connections 64 --duration "$s" --workload record \
    >"$empty/report.json"
  sync
  s1=$(awk '{print $7}' "$stat"); t1=$(server_ticks)
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$empty/report.json" "$s0" "$s1" "$t0" "$t1" "$(getconf CLK_TCK)" "$dir" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s0, s1, t0, t1, hz = (float(x) for x in sys.argv[2:7])
n = r["events"]
print(f'{sys.argv[7]}: record {r["requests_per_s"]:.0f} req/s, p99 {r["latency_ms"]["p99"]} ms, '
      f'{(s1 - s0) * 512 / n / 1e3:.1f} KB written to the device per event, '
      f'server CPU {(t1 - t0) / hz * 1e6 / n:.0f} µs per event, '
      f'peak RSS {r.get("server_peak_rss_mib")} MiB, errors {r["errors"]}')
PY
}

if [ "$(id -u)" = 0 ]; then
  sync; echo 1 > /proc/sys/vm/drop_caches
  run "$big" 20 >/dev/null
fi
for _ in $(seq "$pairs"); do
  rm -rf "$empty/data"
  run "$empty/data" "$secs" --shards "$shards"
  run "$big" "$secs"
done
