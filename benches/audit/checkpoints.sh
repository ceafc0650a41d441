#!/usr/bin/env bash
# Memory and time against a ledger of many checkpoints (a server issues one a second while
# it writes): builds a small 2-shard ledger with the real server, appends N re-signed
# checkpoints (`cargo bench --bench many_checkpoints`), audits it, then starts the server
# on it, pages through up to 300,000 checkpoints over GraphQL and runs the monitor
# (`assent audit --server`) over all of them, printing the server's RSS before and its
# peak after, and the server's CPU time during the monitor run.
#   benches/audit/checkpoints.sh [N=1000000] [DIR=a new temporary directory]
set -euo pipefail
n=${1:-1000000}
dir=${2:-$(mktemp -d)}
mkdir -p "$dir"
cd "$(dirname "$0")/../.."
cargo build --release --bin assent >&2
bin=target/release/assent
. benches/http/server.sh
rm -rf "$dir/data"
serve_on "$bin" "$dir/data" "$dir/server.log" --shards 2
"$bin" bench --url "http://127.0.0.1:$port" --workload batch --batch 100 --connections 4 \
  --duration 3 > /dev/null
kill -TERM "$pid"; wait "$pid" || true
cargo bench --bench many_checkpoints -- "$dir/data" "$n"
echo "audit: $( { /usr/bin/time -f '%e s wall, %U s user, %M KB peak RSS' "$bin" audit \
  --data-dir "$dir/data" | sed 's/.*entries re-hashed/entries re-hashed/' | cut -c1-120; } 2>&1 | tr '\n' ' ')"
serve_on "$bin" "$dir/data" "$dir/server2.log"
echo "server RSS after start: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
python3 - "$port" "$ASSENT_BENCH_TOKEN" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
after, n = None, 0
query = "query($a: String) { checkpoints(first: 100, after: $a) { edges { cursor } pageInfo { hasNextPage } } }"
while n < 300_000:
    body = json.dumps({"query": query, "variables": {"a": after}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
        headers={"content-type": "application/json", "authorization": "Bearer " + token})
    page = json.load(urllib.request.urlopen(req))["data"]["checkpoints"]
    n += len(page["edges"])
    after = page["edges"][-1]["cursor"]
    if not page["pageInfo"]["hasNextPage"]:
        break
print(f"paged through {n} checkpoints")
PY
rm -f "$dir/monitor.json"
t0=$(server_ticks)
echo "monitor (audit --server), first run: $( { ASSENT_AUDIT_TOKEN=$ASSENT_BENCH_TOKEN /usr/bin/time \
  -f '%e s wall, %U s user, %M KB peak RSS' "$bin" audit --server "http://127.0.0.1:$port" \
  --state "$dir/monitor.json"; } 2>&1 | tr '\n' ' ')"
echo "server CPU during the monitor run: $(( ($(server_ticks) - t0) / $(getconf CLK_TCK) )) s"
echo "server peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
kill -TERM "$pid"; wait "$pid" || true
