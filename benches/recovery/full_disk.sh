#!/usr/bin/env bash
# A nearly full disk: mounts a tmpfs of SIZE (root only), serves a 1-shard ledger on it,
# fills it with REQUESTS batches of 1,000 events, then asks `scrubStorage(force: true)`
# while `record` runs (4 connections, 8 s), and prints what each answered, the files, the
# free space, `/healthz` and the server's ERROR/WARN lines counted (docs/benchmarks.md,
# session 20). With REQUESTS large enough to fill the disk, the fill itself meets the full
# disk: writes answer STORAGE_FAILED from then on and the log stays short.
#
#   sudo benches/recovery/full_disk.sh [BIN=target/release/assent] [SIZE=384m] [REQUESTS=150]
set -uo pipefail
bin=${1:-target/release/assent}
size=${2:-384m}
requests=${3:-150}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
mnt=$(mktemp -d)
mount -t tmpfs -o "size=$size" tmpfs "$mnt" || { echo "mounting a tmpfs needs root" >&2; exit 2; }
log=$(mktemp)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; umount "$mnt"; rmdir "$mnt"; rm -f "$log"' EXIT
. "$(dirname "$0")/../http/server.sh"
serve_on "$bin" "$mnt/data" "$log" --shards 1
summary() {
  python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s: %.0f req/s, errors %s" % (sys.argv[1], r["requests_per_s"], r["errors"]))' "$1"
}
"$bin" bench --url "http://127.0.0.1:$port" --workload batch --batch 1000 --connections 2 \
  --requests "$requests" --duration 120 --json | summary "fill ($requests batches)"
ls -l "$mnt/data/shards"; df -h "$mnt" | tail -1
"$bin" bench --url "http://127.0.0.1:$port" --workload record --connections 4 --duration 8 \
  --json > "$log.rec" &
bench=$!
sleep 1
curl -s -H "Authorization: Bearer $ASSENT_BENCH_TOKEN" -H 'content-type: application/json' \
  "http://127.0.0.1:$port/graphql" \
  -d '{"query":"mutation { scrubStorage(force: true) { shard bytesBefore bytesAfter tookMs } }"}'
echo
wait "$bench"
summary "record during the scrub" < "$log.rec"; rm -f "$log.rec"
ls -l "$mnt/data/shards"; df -h "$mnt" | tail -1
echo "healthz: $(curl -s -w ' (%{http_code})' "http://127.0.0.1:$port/healthz")"
echo "server log: $(wc -l < "$log") lines, $(wc -c < "$log") bytes; ERROR and WARN lines:"
grep -E "ERROR|WARN" "$log" | sed 's/^[^ ]* *//' | cut -c1-160 | sort | uniq -c | sort -rn | head
