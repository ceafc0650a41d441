#!/usr/bin/env python3
"""Read-your-writes latency: records one consent event for a new subject, reads that
subject's current state at once, and reads the subject of the round before (indexed by
then), N rounds; prints the percentiles of both reads in milliseconds.

    read_after_write.py URL ADMIN_TOKEN [ROUNDS=300]

A read of a subject whose entries the subject index lacks waits for the index writer's
step (docs/design.md §5); the other read shows what the read path costs without that wait.
Customers `bench-00000` … `bench-00999` must exist (any `assent bench` run creates them).
"""
import json
import random
import sys
import time
import urllib.request

RECORD = ("mutation($c: ID!, $e: ConsentEventInput!) "
          "{ recordConsent(customerId: $c, event: $e) { event { id } } }")
READ = ("query($c: ID!, $s: String!) "
        "{ consent(customerId: $c, subjectId: $s) { purposes { purpose choice } } }")


def post(url, token, query, variables):
    """One GraphQL request; its latency in ms (errors fail the run)."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Bearer " + token})
    t0 = time.perf_counter()
    answer = json.load(urllib.request.urlopen(req, timeout=30))
    assert "errors" not in answer, answer
    return (time.perf_counter() - t0) * 1000


def event(subject):
    return {"subjectId": subject, "purposes": [{"purpose": "analytics", "choice": "GRANTED"}],
            "noticeId": "n", "noticeVersion": "1", "captureMethod": "BANNER_CUSTOM",
            "jurisdiction": "EU", "gpc": False, "occurredAt": "2026-11-27T10:00:00Z"}


def percentiles(xs):
    xs = sorted(xs)
    at = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return f"p50 {at(0.5):.1f}  p90 {at(0.9):.1f}  p99 {at(0.99):.1f}  max {xs[-1]:.1f} ms"


def main():
    url, token = sys.argv[1].rstrip("/"), sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    own, earlier, before = [], [], None
    for i in range(rounds):
        customer = "bench-%05d" % random.randrange(1000)
        subject = "raw-%d-%d" % (time.time_ns(), i)
        post(url, token, RECORD, {"c": customer, "e": event(subject)})
        own.append(post(url, token, READ, {"c": customer, "s": subject}))
        if before:
            earlier.append(post(url, token, READ, {"c": before[0], "s": before[1]}))
        before = (customer, subject)
        time.sleep(0.02)
    print(f"read right after its own write ({rounds}): {percentiles(own)}")
    print(f"read of the round before's subject ({rounds - 1}): {percentiles(earlier)}")


if __name__ == "__main__":
    main()
