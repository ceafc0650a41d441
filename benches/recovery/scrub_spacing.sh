#!/usr/bin/env bash
# The scrub timer's spacing on a real ledger (docs/design.md §10, `SCRUB_SPACING_FACTOR`):
# serves DATA_DIR with a 2 s scrub timer, erases one subject and waits for the scheduled
# scrub, erases a second one and prints what the timer then does (deferred, and for how
# long) with the log lines of both.
#
#   benches/recovery/scrub_spacing.sh DATA_DIR [BIN=target/release/assent] [CUSTOMER=bench-00007]
#
# DATA_DIR is a data directory of `assent serve` that CUSTOMER exists in (e.g. the 10M
# ledger of benches/http/flat.sh); it is changed: use a copy.
set -euo pipefail
dir=${1:?usage: scrub_spacing.sh DATA_DIR [BIN] [CUSTOMER]}
bin=${2:-target/release/assent}
customer=${3:-bench-00007}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
. "$(dirname "$0")/../http/server.sh"
log=$(mktemp)
pid=
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
gql() {
  curl -sf -H "Authorization: Bearer $ASSENT_BENCH_TOKEN" -H 'content-type: application/json' \
    "http://127.0.0.1:$port/graphql" -d "{\"query\":\"$1\"}" > /dev/null
}
record() { gql "mutation { recordConsent(customerId: \\\"$customer\\\", event: {subjectId: \\\"$1\\\", purposes: [{purpose: \\\"ads\\\", choice: GRANTED}], noticeId: \\\"n\\\", noticeVersion: \\\"1\\\", captureMethod: BANNER_CUSTOM, jurisdiction: \\\"EU\\\", occurredAt: \\\"2026-12-06T10:00:00Z\\\"}) { event { id } } }"; }
erase() { gql "mutation { eraseSubject(customerId: \\\"$customer\\\", subjectId: \\\"$1\\\", reason: \\\"bench\\\") { erasedEvents } }"; }
wait_for() { until grep -q "$1" "$log"; do sleep 0.2; done; }
serve_on "$bin" "$dir" "$log" --scrub-interval-ms 2000
record spacing-first
record spacing-second
t0=$(date +%s.%N)
erase spacing-first
wait_for "shard file rewritten"
t1=$(date +%s.%N)
echo "first erasure to the end of its scheduled scrub: $(python3 -c "print(round($t1 - $t0, 1))") s"
erase spacing-second
wait_for "scheduled scrub deferred"
grep -E "shard file rewritten|scheduled scrub deferred" "$log" | head -2 | sed 's/^[^ ]* *//'
