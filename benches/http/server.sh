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

# serve_dir BIN DATA_DIR [SERVE-ARGS...] starts `BIN serve` on DATA_DIR as serve_on does, its
# log in a temporary file; the server is stopped and the log removed when the script exits.
serve_dir() {
  local bin=$1 dir=$2
  shift 2
  log=$(mktemp)
  pid=
  trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
  serve_on "$bin" "$dir" "$log" "$@"
}

# serve_copy_of BIN BIG_DATA_DIR COPY LOG copies a large ledger to COPY (runs grow and rewrite
# a ledger: each starts from the same one), drops the page cache (as root), and serves the
# copy as serve_on does, with the copy's own shard count. The caller checks that COPY did not
# exist and deletes it at exit.
serve_copy_of() {
  local bin=$1 big=$2 copy=$3 log=$4 shards
  cp -a --sparse=always "$big" "$copy"
  sync
  [ -w /proc/sys/vm/drop_caches ] && echo 3 > /proc/sys/vm/drop_caches
  shards=$(find "$copy/shards" -name 'shard-*.redb' ! -name '*.index.redb' | wc -l)
  serve_on "$bin" "$copy" "$log" --shards "$shards"
}
