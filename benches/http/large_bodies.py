#!/usr/bin/env python3
"""Memory under the largest batches: CONNS senders post 1,000-event batches whose events carry
a TCF and a GPP string of STRING_BYTES each (7,500: ≈ 15 MB bodies, near the 16 MiB limit),
for SECONDS, to a running server; prints the body size, the batches recorded and the errors.
Read the server's peak RSS from /proc/PID/status (VmHWM) afterwards (docs/benchmarks.md,
session 26).

    benches/http/large_bodies.py URL TOKEN [CONNS=16] [SECONDS=10] [STRING_BYTES=7500]

TOKEN is an admin key (it creates four customers, bench-00000 … bench-00003, if absent).
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

url, token = sys.argv[1], sys.argv[2]
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 16
secs = float(sys.argv[4]) if len(sys.argv) > 4 else 10
string_bytes = int(sys.argv[5]) if len(sys.argv) > 5 else 7500
u = urllib.parse.urlparse(url)
RECORD_MANY = "mutation($c: ID!, $e: [ConsentEventInput!]!) { recordConsents(customerId: $c, events: $e) { event { id } } }"
CREATE = "mutation($id: ID!) { createCustomer(id: $id, name: $id) { id } }"


def post(conn, query, variables):
    body = json.dumps({"query": query, "variables": variables})
    headers = {"content-type": "application/json", "authorization": "Bearer " + token}
    conn.request("POST", "/graphql", body, headers)
    return json.loads(conn.getresponse().read())


def batch(sender, n):
    s = "A" * string_bytes
    return [
        {
            "subjectId": f"w{sender}-{n}-{i}",
            "purposes": [{"purpose": "ads", "choice": "GRANTED"}],
            "noticeId": "n",
            "noticeVersion": "1",
            "captureMethod": "BANNER_CUSTOM",
            "jurisdiction": "EU",
            "tcfString": s,
            "gppString": s,
            "occurredAt": "2026-11-27T10:00:00Z",
        }
        for i in range(1000)
    ]


setup = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
for c in range(4):
    post(setup, CREATE, {"id": f"bench-{c:05}"})  # an existing customer's error is ignored
recorded = [0]
errors = []


def send(sender):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    end, n = time.time() + secs, 0
    while time.time() < end:
        r = post(conn, RECORD_MANY, {"c": f"bench-{sender % 4:05}", "e": batch(sender, n)})
        n += 1
        if "errors" in r:
            errors.append(r["errors"][0].get("extensions", {}).get("code"))
        else:
            recorded[0] += 1


threads = [threading.Thread(target=send, args=(w,)) for w in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
size = len(json.dumps({"query": RECORD_MANY, "variables": {"c": "bench-00000", "e": batch(0, 0)}}))
print(f"body {size / 1e6:.1f} MB, batches recorded {recorded[0]}, errors {sorted(set(errors))}")
