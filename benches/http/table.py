#!/usr/bin/env python3
"""Prints the JSON lines of benches/http/run.sh as the Markdown table of docs/benchmarks.md."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
# Each workload is divided by the latest noop before it (run.sh with NOOP_EACH=1 runs one
# before every workload), else by the first noop of the run.
noop = None
print("| workload | connections | requests/s | events/s | p50 ms | p99 ms | p99.9 ms | ratio to noop | errors | server peak RSS MiB | CPU µs/request client / server |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["workload"] == "noop":
        noop = r["requests_per_s"]
    lat = r["latency_ms"]
    ratio = f"{r['requests_per_s'] / noop:.2f}" if noop else "–"
    # Reports of older builds have no CPU fields.
    cpu = lambda side: r.get(f"{side}_cpu_us_per_request")
    cpus = " / ".join(f"{cpu(side):.1f}" if cpu(side) is not None else "–" for side in ("client", "server"))
    print(
        f"| {r.get('label', r['workload'])} | {r['connections']} | {r['requests_per_s']:,.0f} | {r['events_per_s']:,.0f} "
        f"| {lat['p50']} | {lat['p99']} | {lat['p999']} | {ratio} | {r['errors'] or 0} | {r['server_peak_rss_mib'] or 0:.0f} | {cpus} |"
    )
