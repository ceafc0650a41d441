#!/usr/bin/env bash
# Server instructions per event (or request): runs a fresh `assent serve` under callgrind
# twice, driven by `assent bench` for SMALL and then LARGE requests of WORKLOAD, and prints
# (instructions at LARGE − instructions at SMALL) / (events or requests LARGE adds): the
# server's cost per unit free of start-up. Instructions, unlike seconds, do not drift with
# this host's speed: repeat runs agree within about 1.5 % (docs/benchmarks.md, session 25).
# Needs valgrind; slow (≈ 50× the server's CPU time).
#
#   benches/http/instructions.sh [BIN=target/release/assent] [WORKLOAD=batch] [SMALL=20] [LARGE=60] [CONNECTIONS=2]
#
# `batch` sends 1,000 events a request. Two connections by default: under callgrind the
# server runs one thread at a time, ≈ 50× slower, and with more batches admitted at once
# (the large-request budget) a request can outlast the bench client's 30 s timeout.
set -euo pipefail
bin=${1:-target/release/assent}
workload=${2:-batch}
small=${3:-20}
large=${4:-60}
conns=${5:-2}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
extra=(); [ "$workload" = batch ] && extra=(--batch 1000)
# total REQUESTS: prints "instructions units" of one run.
total() {
  local d port vp
  d=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$bin" serve --data-dir "$d/data" \
    --listen "127.0.0.1:$port" --rate-limit-per-second 0 >"$d/log" 2>&1 &
  vp=$!
  for _ in $(seq 600); do
    [ -s "$d/data/admin-token" ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
  done
  "$bin" bench --url "http://127.0.0.1:$port" --token "$(cat "$d/data/admin-token")" --json \
    --workload "$workload" "${extra[@]}" --connections "$conns" --requests "$1" --duration 3600 \
    >"$d/report.json"
  kill -INT "$vp"
  wait "$vp" || true
  python3 - "$d/cg.out" "$d/report.json" <<'PY'
import json, sys
ir = next(int(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("summary:"))
r = json.load(open(sys.argv[2]))
assert not r["errors"], r["errors"]
print(ir, r["events"] or r["requests"])
PY
  rm -rf "$d"
}
read -r ir_small n_small < <(total "$small")
read -r ir_large n_large < <(total "$large")
python3 -c "
d = ($ir_large - $ir_small) / ($n_large - $n_small)
print(f'$workload: {d:,.0f} server instructions per unit ({$n_large - $n_small} units between {$small} and {$large} requests)')"
