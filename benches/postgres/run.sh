#!/usr/bin/env bash
# Reproducible PostgreSQL comparison: the same event stream as `assent bench --workload
# record`, into a hash-chained append-only table, driven by pgbench.
# Usage: benches/postgres/run.sh [seconds=10] [clients="1 32"]
# Skips (exit 0, with a message) when PostgreSQL's server binaries are not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-10}"
clients="${2:-1 32}"

bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir="$d"; done
if [ -z "$bindir" ] || ! command -v pgbench >/dev/null; then
  echo "PostgreSQL server or pgbench not installed: skipping the comparison (apt-get install postgresql)"
  exit 0
fi

work="$(mktemp -d /tmp/assent-pg.XXXXXX)"
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"
cleanup() { as_pg "$bindir/pg_ctl" -D "$work/data" stop -m fast >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$work/data" -A trust -U bench >/dev/null
as_pg "$bindir/pg_ctl" -D "$work/data" -o "-k $work -c listen_addresses='' -c shared_buffers=256MB" -l "$work/log" start >/dev/null
for _ in $(seq 50); do as_pg "$bindir/pg_isready" -h "$work" -U bench >/dev/null 2>&1 && break; sleep 0.2; done
as_pg "$bindir/createdb" -h "$work" -U bench bench
as_pg "$bindir/psql" -q -h "$work" -U bench -d bench -f "$here/schema.sql"
cp "$here/record.pgbench" "$work/record.pgbench"
for c in $clients; do
  echo "== $c client(s), ${seconds}s, one event per durable transaction"
  as_pg pgbench -n -h "$work" -U bench -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "$seconds" -f "$work/record.pgbench" bench \
    | grep -E "^(number of transactions actually processed|latency average|tps)"
done
