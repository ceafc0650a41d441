#!/usr/bin/env bash
# Peak server RSS on a large ledger: copies BIG_DATA_DIR beside itself (the runs grow a
# ledger; each run starts from the same one), serves the copy, runs one `assent bench`
# workload and prints events/s and the server's peak RSS (VmHWM), then deletes the copy
# (docs/benchmarks.md, session 18: `batch` on the 10M ledger and the 256 MiB budget).
#
#   benches/http/big_rss.sh BIG_DATA_DIR [BIN=target/release/assent] [WORKLOAD=batch] [SECONDS=15] [CONNECTIONS=8]
#
# Needs free disk for one copy (≈ 10 GB for 10M events). As root, the page cache is dropped
# after the copy. Environment variables such as MIMALLOC_PURGE_DELAY reach the server.
set -euo pipefail
big=${1:?usage: big_rss.sh BIG_DATA_DIR [BIN] [WORKLOAD] [SECONDS] [CONNECTIONS]}
bin=${2:-target/release/assent}
workload=${3:-batch}
secs=${4:-15}
conns=${5:-8}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
copy="${big%/}.rss-copy"
[ -e "$copy" ] && { echo "$copy exists: remove it first" >&2; exit 2; }
log=$(mktemp)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$copy" "$log"' EXIT
. "$(dirname "$0")/server.sh"
serve_copy_of "$bin" "$big" "$copy" "$log"
extra=(); [ "$workload" = batch ] && extra=(--batch 1000)
"$bin" bench --url "http://127.0.0.1:$port" --workload "$workload" "${extra[@]}" \
  --connections "$conns" --duration "$secs" --server-pid "$pid" --json |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s: %.0f events/s, %.0f req/s, errors %s, " % (sys.argv[1], r["events_per_s"], r["requests_per_s"], r["errors"]), end="")' "$workload"
echo "server peak RSS $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")"
