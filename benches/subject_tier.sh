#!/usr/bin/env bash
# The subject tier's write cost on a large `subjects` table, today's way against a young
# table and its merge (benches/subject_tier.rs; docs/benchmarks.md, session 29).
#
#   benches/subject_tier.sh [OLD_ROWS=2500000] [NEW_ROWS=64000] [RUNS=2] [MODES="steps young merge"]
#
# Builds a redb file of OLD_ROWS subjects once (2,500,000: one shard of a 10M ledger of
# four), then per run and mode works on a fresh copy of it. As root the page cache is
# dropped after the copy and the copy is read back page by page with readahead off, so that
# it is cached in small folios (a sequential read's large folios slow 4 KiB writes, see
# benches/http/flat.sh). Needs about 3 × 300 MB of free disk beside the build directory.
set -euo pipefail
old=${1:-2500000}
new=${2:-64000}
runs=${3:-2}
modes=${4:-steps young merge}
cd "$(dirname "$0")/.."
cargo build --release --bench subject_tier >&2
bin=$(ls -t target/release/deps/subject_tier-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" "$work/base.redb" "$old" 0 merge >/dev/null
for _ in $(seq "$runs"); do
  for mode in $modes; do
    cp "$work/base.redb" "$work/run.redb"
    if [ "$(id -u)" = 0 ]; then
      sync; echo 1 > /proc/sys/vm/drop_caches
      python3 - "$work/run.redb" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
offsets = list(range(0, os.fstat(fd).st_size, 4096))
random.shuffle(offsets)
for o in offsets:
    os.pread(fd, 4096, o)
PY
    fi
    "$bin" "$work/run.redb" "$old" "$new" "$mode"
  done
done
