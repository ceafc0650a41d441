#!/usr/bin/env bash
# Audit speed: cold and warm `assent audit` of each data directory given, beside a cold
# read of the same shard files (the disk's speed in the same minutes).
#   benches/audit/run.sh DATA_DIR [DATA_DIR ...]
# Cold runs drop the page cache first (`/proc/sys/vm/drop_caches`, needs root); without
# root they are skipped with a message. Needs a release build (`cargo build --release`).
set -euo pipefail
bin=${ASSENT_BIN:-target/release/assent}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
cold() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; return 0; fi
  echo "  (cold run skipped: dropping the page cache needs root)"; return 1
}
audit() { /usr/bin/time -f '%e s wall, %U s user, %S s sys, %M KB peak RSS' "$bin" audit --data-dir "$1" 2>&1 | tail -2 | sed 's/.*INTACT/INTACT/' | tr '\n' ' '; echo; }
for dir in "$@"; do
  echo "== $dir"
  for i in 1 2; do if cold; then echo "  audit cold: $(audit "$dir")"; fi; done
  echo "  audit warm: $(audit "$dir")"
  if cold; then
    # 4 MiB reads: `cat`'s 128 KiB reads took 4-5x longer on this virtual disk.
    echo "  dd of the shards cold: $( { /usr/bin/time -f '%e s' sh -c 'for f in "$0"/shards/*; do dd if="$f" of=/dev/null bs=4M status=none; done' "$dir"; } 2>&1 )"
  fi
  # The data the audit can need: redb's files are sparse, and reading their holes (as dd
  # does) only zero-fills pages; the audit's read-ahead skips them.
  if command -v python3 > /dev/null && cold; then
    echo "  read of the shards' data (holes skipped) cold: $( { /usr/bin/time -f '%e s' python3 "$(dirname "$0")/read_data.py" "$dir"/shards/*; } 2>&1 | tr '\n' ' ')"
  fi
done
