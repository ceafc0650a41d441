#!/usr/bin/env bash
# Runs every `assent bench` workload against a fresh release server on this machine and
# prints one JSON report per line (docs/benchmarks.md, "Whole server over HTTP").
#
#   benches/http/run.sh [SECONDS] [CONNECTIONS] [OUT_DIR]
#
# Builds the release binary, starts `assent serve` on a free port with a fresh data
# directory (rate limit off), runs noop, record, record --hot-customer, batch 1000, read,
# mixed (90 % reads), receipt and withdraw, then stops the server. Client and server share
# the machine: the noop line is the HTTP ceiling of this client in the same run.
# NOOP_EACH=1 runs a noop right before every workload, and table.py divides each workload
# by the noop just before it: this host's speed drifts within minutes, so a ratio to a
# noop measured at the start of the run can be off by a third.
set -euo pipefail
secs=${1:-8}
conns=${2:-64}
out=${3:-$(mktemp -d)}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
cargo build --release --bin assent >&2
bin=target/release/assent
. benches/http/server.sh
start_server "$bin" "$out/server.log"
# run LABEL CONNECTIONS BENCH-ARGS...: one JSON line, with the label added.
run() {
  local label=$1 c=$2
  shift 2
  if [ -n "${NOOP_EACH:-}" ] && [ "$label" != noop ]; then
    one "noop before $label" "$c" --workload noop
  fi
  one "$label" "$c" "$@"
}
# one LABEL CONNECTIONS BENCH-ARGS...: runs one workload.
one() {
  local label=$1 c=$2
  shift 2
  "$bin" bench --url "http://127.0.0.1:$port" --server-pid "$pid" --json \
    --connections "$c" --duration "$secs" "$@" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label"
}
run noop "$conns" --workload noop
run record "$conns" --workload record
run "record, one customer" "$conns" --workload record --hot-customer
run "batch of 1,000" 8 --workload batch --batch 1000
run read "$conns" --workload read
run "mixed, 90 % reads" "$conns" --workload mixed --read-ratio 0.9
run receipt "$conns" --workload receipt
run withdraw "$conns" --workload withdraw
