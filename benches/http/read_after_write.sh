#!/usr/bin/env bash
# Read-your-writes latency under load: serves DATA_DIR (it grows: use a copy, or a new
# directory for an empty ledger), drives `record` with 64 connections for 25 s, and
# meanwhile runs `read_after_write.py` (a write, then a read of the same subject, 300
# rounds). Prints the probe's percentiles.
#
#   benches/http/read_after_write.sh DATA_DIR [BIN=target/release/assent]
set -euo pipefail
dir=${1:?usage: read_after_write.sh DATA_DIR [BIN]}
bin=${2:-target/release/assent}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
serve_dir "$bin" "$dir"
"$bin" bench --url "http://127.0.0.1:$port" --json --connections 64 --duration 25 \
  --workload record > /dev/null &
load=$!
sleep 3  # the bench creates its customers first
python3 "$(dirname "$0")/read_after_write.py" "http://127.0.0.1:$port" "$ASSENT_BENCH_TOKEN" 300
wait $load
