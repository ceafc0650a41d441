#!/usr/bin/env bash
# Receipts on an existing ledger: serves DATA_DIR, runs the `receipt` workload once to seed
# its events and warm up, then again for SECONDS, and prints `assent bench`'s report, whose
# last line is the client's and the server's CPU per receipt (docs/benchmarks.md, session
# 15: the proof node cache at 10M).
#
#   benches/http/receipts.sh DATA_DIR [BIN=target/release/assent] [SECONDS=6]
#
# DATA_DIR grows by the seeded events of each run (use a copy of a ledger you keep).
set -euo pipefail
dir=${1:?usage: receipts.sh DATA_DIR [BIN] [SECONDS]}
bin=${2:-target/release/assent}
secs=${3:-6}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
serve_dir "$bin" "$dir"
"$bin" bench --url "http://127.0.0.1:$port" --connections 64 --duration 4 --workload receipt >/dev/null
"$bin" bench --url "http://127.0.0.1:$port" --connections 64 --duration "$secs" \
  --workload receipt --server-pid "$pid"
