# Sourced by the HTTP benches: start_server BIN [LOG] starts `BIN serve` on a free port
# with a fresh data directory `data` (rate limit off; its log in LOG, else in `data`), waits
# until it answers, and sets `pid`, `port` and ASSENT_BENCH_TOKEN; the server is stopped and
# `data` removed when the script exits.
start_server() {
  data=$(mktemp -d)
  local bin=$1 log=${2:-$data/server.log}
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve --data-dir "$data/data" --listen "127.0.0.1:$port" --rate-limit-per-second 0 \
    >"$log" 2>&1 &
  pid=$!
  trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
  for _ in $(seq 100); do
    [ -s "$data/data/admin-token" ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
  ASSENT_BENCH_TOKEN=$(cat "$data/data/admin-token")
  export ASSENT_BENCH_TOKEN
}
