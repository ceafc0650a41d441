#!/usr/bin/env bash
# Builds a large ledger for the flat-with-size bench (`flat.sh`): a fresh data directory
# filled through a real server with `recordConsents` batches of 1,000 realistic events from
# 1,000 customers (the `batch` workload of `assent bench`).
#
#   benches/http/mkledger.sh DATA_DIR [EVENTS=10000000] [SHARDS=4] [BIN=target/release/assent]
#
# DATA_DIR must not exist. At ≈ 60,000 events/s on a two-core machine, 10 million events
# take about three minutes of batches (plus the final index step on shutdown); the data
# directory then holds ≈ 10 GB.
set -euo pipefail
dir=${1:?usage: mkledger.sh DATA_DIR [EVENTS] [SHARDS] [BIN]}
events=${2:-10000000}
shards=${3:-4}
bin=${4:-target/release/assent}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -e "$dir" ] && { echo "$dir exists: give a new directory" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
serve_dir "$bin" "$dir" --shards "$shards"
requests=$(( (events + 999) / 1000 ))
"$bin" bench --url "http://127.0.0.1:$port" \
  --workload batch --batch 1000 --connections 4 --duration 86400 --requests "$requests" --json |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["events"], "events at", round(r["events_per_s"]), "per s, errors", r["errors"])'
