#!/usr/bin/env bash
# Speed and memory of `assent verify export`: records EVENTS events of one customer with the
# real server (batches of 1,000), exports them with receipts (`assent export --receipts`),
# then verifies the export against the server's published key, twice, printing wall time,
# user time and peak RSS (docs/benchmarks.md, session 14).
#   benches/audit/export.sh [EVENTS=100000] [DIR=a new temporary directory]
set -euo pipefail
n=${1:-100000}
dir=${2:-$(mktemp -d)}
mkdir -p "$dir"
cd "$(dirname "$0")/../.."
cargo build --release --bin assent >&2
bin=$PWD/target/release/assent
. benches/http/server.sh
rm -rf "$dir/data"
serve_on "$bin" "$dir/data" "$dir/server.log"
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
"$bin" bench --url "http://127.0.0.1:$port" --workload batch --batch 1000 --customers 1 \
  --connections 2 --duration 3600 --requests $(( (n + 999) / 1000 )) | grep '^events'
curl -sf "http://127.0.0.1:$port/.well-known/assent/keys" > "$dir/keys.json"
/usr/bin/time -f 'export: %e s wall, %M KB peak RSS' env ASSENT_TOKEN="$ASSENT_BENCH_TOKEN" \
  "$bin" export --customer bench-00000 --receipts --url "http://127.0.0.1:$port" \
  > "$dir/export.jsonl"
echo "export file: $(du -h "$dir/export.jsonl" | cut -f1)"
for _ in 1 2; do
  /usr/bin/time -f 'verify: %e s wall, %U s user, %M KB peak RSS' "$bin" verify export \
    "$dir/export.jsonl" --trusted-keys "$dir/keys.json" | cut -c1-100
done
