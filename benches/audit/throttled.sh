#!/usr/bin/env bash
# Audit speed against a disk of a given read bandwidth: a cold `assent audit` of DATA_DIR
# beside a cold read of the shards' data (holes skipped, as the audit's read-ahead does),
# both under a cgroup (v1 blkio) read limit of each rate given, in MB/s. Shows up to which
# disk speed the audit keeps up with the disk on this machine's cores.
#   benches/audit/throttled.sh DATA_DIR RATE_MB_S [RATE_MB_S ...]
# Needs root (cgroup, drop_caches), cgroup v1's blkio controller at /sys/fs/cgroup/blkio,
# and a release build (`cargo build --release`).
set -euo pipefail
bin=${ASSENT_BIN:-target/release/assent}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
dir=$1; shift
root=/sys/fs/cgroup/blkio
[ -w "$root" ] || { echo "skipped: needs root and cgroup v1 blkio at $root" >&2; exit 0; }
dev=$(stat -c '%d' "$dir/shards")
dev="$((dev >> 8)):$((dev & 255))"
# A partition's own device number is not what the block layer throttles: use the disk's.
disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE --target "$dir")" 2>/dev/null || true)
[ -n "$disk" ] && dev=$(lsblk -dno MAJ:MIN "/dev/$disk" | tr -d ' ')
group=$root/assent-audit-$$
mkdir "$group"
trap 'echo $$ > '"$root"'/cgroup.procs; rmdir "$group"' EXIT
echo $$ > "$group/cgroup.procs"
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for rate in "$@"; do
  echo "$dev $((rate * 1000 * 1000))" > "$group/blkio.throttle.read_bps_device"
  cold
  read_s=$( { /usr/bin/time -f '%e' python3 "$(dirname "$0")/read_data.py" "$dir"/shards/* > /dev/null; } 2>&1 | tail -1)
  cold
  audit=$( { /usr/bin/time -f '%e %U %S' "$bin" audit --data-dir "$dir" > /dev/null; } 2>&1 | tail -1)
  set -- $audit
  echo "$rate MB/s: data read cold $read_s s, audit cold $1 s ($2 s user, $3 s sys): audit / read $(python3 -c "print(f'{$1 / $read_s:.2f}')")"
  set --
done
