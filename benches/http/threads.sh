#!/usr/bin/env bash
# Where the server's CPU goes by thread: serves DATA_DIR (or a fresh ledger), runs `record`
# with 64 connections and prints, for the second half of the run, the CPU per event of the
# index writers (`index-NNNN` threads) and of the whole server, with the device bytes
# written per event (docs/benchmarks.md, session 17).
#
#   benches/http/threads.sh [DATA_DIR|-] [BIN=target/release/assent] [SECONDS=20] [SERVE-ARGS...]
#
# `-` serves a fresh data directory. DATA_DIR is served as it is and grows: use a copy.
set -euo pipefail
dir=${1:--}
bin=${2:-target/release/assent}
secs=${3:-20}
shift $(( $# < 3 ? $# : 3 ))
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/server.sh"
work=$(mktemp -d)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
[ "$dir" = - ] && dir=$work/data
serve_on "$bin" "$dir" "$work/server.log" "$@"
dev=$(df --output=source "$dir" | tail -1 | xargs basename)
stat=/sys/block/$dev/stat
[ -r "$stat" ] || stat=$(ls /sys/block/*/stat | head -1)
# snap FILE: "tid name ticks" per server thread, then the device's sectors written.
snap() {
  for t in /proc/"$pid"/task/*; do
    echo "$(basename "$t") $(tr ' ' _ < "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done > "$1"
  echo "sectors x $(awk '{print $7}' "$stat")" >> "$1"
}
"$bin" bench --url "http://127.0.0.1:$port" --connections 64 --duration "$secs" \
  --workload record --server-pid "$pid" --json > "$work/report.json" &
b=$!
half=$(( secs / 2 ))
sleep "$half"; snap "$work/a"
sleep $(( secs - half - 1 )); snap "$work/b"
wait "$b"
python3 - "$work" $(( secs - half - 1 )) "$(getconf CLK_TCK)" <<'PY'
import json, sys
work, window, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(f"{work}/report.json"))
read = lambda f: {l.split()[0]: l.split() for l in open(f)}
a, b = read(f"{work}/a"), read(f"{work}/b")
def ticks(pred):
    return sum(int(b[k][2]) - int(a[k][2]) for k in b if k in a and k != "sectors" and pred(b[k][1]))
events = r["requests_per_s"] * window
us = lambda t: t / hz * 1e6 / events
kb = (int(b["sectors"][2]) - int(a["sectors"][2])) * 512 / events / 1e3
print(f'record {r["requests_per_s"]:.0f} req/s, p99 {r["latency_ms"]["p99"]} ms, '
      f'peak RSS {r.get("server_peak_rss_mib")} MiB | CPU per event: index writers '
      f'{us(ticks(lambda n: n.startswith("index"))):.1f} µs, server {us(ticks(lambda n: True)):.1f} µs; '
      f'{kb:.1f} KB written to the device per event')
PY
