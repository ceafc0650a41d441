#!/usr/bin/env bash
# Keyed against unkeyed events on the write path: a fresh server, a noop, then `record` and
# `batch` with every event carrying a unique idempotency key and without, in the order
# given (the ledger grows within a run: run both orders).
#   benches/http/keyed.sh [keys-first|keys-last]
# Needs a release build (`cargo build --release`).
set -u
bin=${ASSENT_BIN:-target/release/assent}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d)
$bin serve --data-dir $work/data --listen 127.0.0.1:18320 --rate-limit-per-second 0 > $work/server.log 2>&1 &
pid=$!
sleep 1.5
export ASSENT_BENCH_TOKEN=$(cat $work/data/admin-token)
run() { $bin bench --url http://127.0.0.1:18320 --server-pid $pid --json --duration 6 "$@" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["workload"], round(r["requests_per_s"]), round(r["events_per_s"]), "p99", r["latency_ms"]["p99"], r.get("errors"))'; }
run --workload noop --connections 64
order=("--idempotency-keys" "")
[ "${1:-keys-first}" = keys-last ] && order=("" "--idempotency-keys")
for k in "${order[@]}"; do
  echo "keys: ${k:-none}"
  run --workload record --connections 64 $k
  run --workload batch --batch 1000 --connections 8 $k
done
kill -TERM $pid; wait $pid
rm -rf "$work"
