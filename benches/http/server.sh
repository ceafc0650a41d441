# Sourced by the HTTP benches.
#
# serve_on BIN DATA_DIR LOG [SERVE-ARGS...] starts `BIN serve` on DATA_DIR and a free port
# (rate limit off, log in LOG), waits until it answers (up to 60 s: a big ledger may index on
# open), and sets `pid`, `port` and ASSENT_BENCH_TOKEN. The caller stops it.
serve_on() {
  local bin=$1 dir=$2 log=$3
  shift 3
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" --rate-limit-per-second 0 "$@" \
    >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    [ -s "$dir/admin-token" ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
  ASSENT_BENCH_TOKEN=$(cat "$dir/admin-token")
  export ASSENT_BENCH_TOKEN
}

# server_ticks prints the CPU time (user + system) the server `pid` has used so far, in clock
# ticks (`getconf CLK_TCK` a second).
server_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# start_server BIN [LOG] starts `BIN serve` as serve_on does, on a fresh data directory
# `$data/data` (its log in LOG, else in `$data`); the server is stopped and `data` removed
# when the script exits.
start_server() {
  data=$(mktemp -d)
  pid=
  trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
  serve_on "$1" "$data/data" "${2:-$data/server.log}"
}
