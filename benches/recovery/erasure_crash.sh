#!/usr/bin/env bash
# The erasure crash window on a real ledger: how long the next open takes when the process
# died between an erasure's shard commit and its index commit (docs/design.md §10).
#
#   benches/recovery/erasure_crash.sh DATA_DIR [BIN=target/release/assent] [CUSTOMER=bench-00007]
#
# DATA_DIR is a data directory of `assent serve` that CUSTOMER exists in (made by `assent
# bench`, e.g. the 10M ledger of benches/http/flat.sh; it is changed: use a copy). Records
# one event of subject `crash-window` and stops the server (its indexes are then durable),
# keeps a copy of the index files, serves again and erases the subject, stops, puts the
# kept index files back (the state a crash between the two commits leaves), then times the
# open until /healthz answers and checks that the subject has no state left.
set -euo pipefail
dir=${1:?usage: erasure_crash.sh DATA_DIR [BIN] [CUSTOMER]}
bin=${2:-target/release/assent}
customer=${3:-bench-00007}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/../http/server.sh"
kept=$(mktemp -d)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$kept"' EXIT
gql() {
  curl -sf -H "Authorization: Bearer $ASSENT_BENCH_TOKEN" -H 'content-type: application/json' \
    "http://127.0.0.1:$port/graphql" -d "$1"
  echo
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
serve_on "$bin" "$dir" "$kept/1.log"
gql "{\"query\":\"mutation { recordConsent(customerId: \\\"$customer\\\", event: {subjectId: \\\"crash-window\\\", purposes: [{purpose: \\\"ads\\\", choice: GRANTED}], noticeId: \\\"n\\\", noticeVersion: \\\"1\\\", captureMethod: BANNER_CUSTOM, jurisdiction: \\\"EU\\\", occurredAt: \\\"2026-12-06T10:00:00Z\\\"}) { event { id } } }\"}"
stop
cp "$dir"/shards/*.index.redb "$kept/"
serve_on "$bin" "$dir" "$kept/2.log"
gql "{\"query\":\"mutation { eraseSubject(customerId: \\\"$customer\\\", subjectId: \\\"crash-window\\\", reason: \\\"bench\\\") { erasedEvents } }\"}"
stop
cp "$kept"/*.index.redb "$dir/shards/"
t0=$(date +%s.%N)
serve_on "$bin" "$dir" "$kept/3.log"
t1=$(date +%s.%N)
echo "open after the lost index commit: $(python3 -c "print(round($t1 - $t0, 2))") s"
grep -E "rebuilding|caught up" "$kept/3.log" | sed 's/^[^ ]* *//' || true
echo "state of the erased subject: $(gql "{\"query\":\"{ consent(customerId: \\\"$customer\\\", subjectId: \\\"crash-window\\\") { purposes { purpose } } }\"}")"
stop
