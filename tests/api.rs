//! End-to-end tests of `assent serve` over real HTTP against real redb files.

mod common;

use base64::Engine;
use common::{RECORD, RECORD_MANY, Server, code, event};
use serde_json::{Value, json};
use shard::hash::Hash;
use shard::merkle::{Blake3Tree, verify_consistency};
use shard::receipt::{Receipt, verify_receipt};

fn verifying_key(s: &Server) -> (String, ed25519_dalek::VerifyingKey) {
    let d = s.ok("{ publicKeys { name publicKey algorithm } }", json!({}));
    let k = &d["publicKeys"][0];
    assert_eq!(k["algorithm"], "ed25519");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(k["publicKey"].as_str().unwrap())
        .unwrap();
    (
        k["name"].as_str().unwrap().to_string(),
        ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap(),
    )
}

fn receipt_of(s: &Server, id: &str) -> Receipt {
    let d = s.ok(
        "query($id: ID!) { receipt(eventId: $id) { document checkpoint { number } } }",
        json!({ "id": id }),
    );
    serde_json::from_str(d["receipt"]["document"].as_str().unwrap()).unwrap()
}

/// The sum of one counter (`granted` or `denied`) of `purpose` over the rows of a
/// `consentStats` answer (`data` of the response).
fn stat(data: &Value, purpose: &str, counter: &str) -> u64 {
    data["consentStats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["purpose"] == purpose)
        .map(|r| r[counter].as_str().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn record_retry_withdraw_and_read_current_state() {
    // Proves: single and batched recording, exact idempotency, withdrawal, current state and asOf.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme", "clock", "shop"]);
    let first = s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", Some("k-1")) }),
    );
    let ev = &first["recordConsent"];
    assert_eq!(ev["duplicate"], false);
    assert_eq!(ev["event"]["subjectId"], "alice");
    let retry = s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", Some("k-1")) }),
    );
    assert_eq!(retry["recordConsent"]["duplicate"], true);
    assert_eq!(
        retry["recordConsent"]["event"], ev["event"],
        "a retry returns the original event"
    );
    let conflict = s.gql(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "DENIED", Some("k-1")) }),
    );
    assert_eq!(code(&conflict), "IDEMPOTENCY_CONFLICT");

    let batch: Vec<Value> = (0..5)
        .map(|i| event(&format!("b{i}"), "DENIED", None))
        .collect();
    let many = s.ok(RECORD_MANY, json!({ "c": "acme", "e": batch }));
    assert_eq!(many["recordConsents"].as_array().unwrap().len(), 5);

    let t_between = chrono_now(&s);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let w = s.ok(
        "mutation { withdrawConsent(customerId: \"acme\", subjectId: \"alice\", noticeId: \"pc\", noticeVersion: \"1\") { event { captureMethod purposes { purpose choice } } } }",
        json!({}),
    );
    let purposes = &w["withdrawConsent"]["event"]["purposes"];
    assert_eq!(
        purposes,
        &json!([{ "purpose": "ads", "choice": "DENIED" }, { "purpose": "analytics", "choice": "DENIED" }])
    );
    assert_eq!(w["withdrawConsent"]["event"]["captureMethod"], "WITHDRAWAL");
    let nothing = s.gql("mutation { withdrawConsent(customerId: \"acme\", subjectId: \"alice\", noticeId: \"pc\", noticeVersion: \"1\") { duplicate } }", json!({}));
    assert_eq!(code(&nothing), "BAD_USER_INPUT");

    let q = "query($t: DateTime) { consent(customerId: \"acme\", subjectId: \"alice\", asOf: $t) { purposes { purpose choice event { id } } } }";
    let now = s.ok(q, json!({ "t": null }));
    assert!(
        now["consent"]["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["choice"] == "DENIED")
    );
    let then = s.ok(q, json!({ "t": t_between }));
    let then = then["consent"]["purposes"].as_array().unwrap().clone();
    assert_eq!(then.len(), 2);
    assert!(
        then.iter()
            .all(|p| p["choice"] == "GRANTED" && p["event"]["id"] == ev["event"]["id"])
    );
    let before = s.ok(q, json!({ "t": "2000-01-01T00:00:00Z" }));
    assert_eq!(before["consent"]["purposes"], json!([]));
}

/// The server's idea of "now" (the recordedAt of a throwaway event of another customer).
fn chrono_now(s: &Server) -> String {
    let d = s.ok(
        RECORD,
        json!({ "c": "clock", "e": event("tick", "GRANTED", None) }),
    );
    d["recordConsent"]["event"]["recordedAt"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn history_and_event_pages_have_no_gaps_or_repeats_and_stats_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme", "clock", "shop"]);
    let batch: Vec<Value> = (0..1000)
        .map(|i| event("pat", if i % 3 == 0 { "DENIED" } else { "GRANTED" }, None))
        .collect();
    let out = s.ok(RECORD_MANY, json!({ "c": "shop", "e": batch }));
    let ids: Vec<String> = out["recordConsents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let q = "query($after: String) { consentHistory(customerId: \"shop\", subjectId: \"pat\", first: 97, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = s.ok(q, json!({ "after": after }));
        let c = &d["consentHistory"];
        seen.extend(
            c["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_string()),
        );
        if c["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = c["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids, "history pages cover every event once, in order");

    let q = "query($after: String) { consentEvents(customerId: \"shop\", first: 500, after: $after, purpose: \"ads\") { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut count = 0;
    let mut after = Value::Null;
    loop {
        let d = s.ok(q, json!({ "after": after }));
        count += d["consentEvents"]["edges"].as_array().unwrap().len();
        if d["consentEvents"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = d["consentEvents"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(count, 1000);

    let d = s.ok("{ consentStats(customerId: \"shop\", since: \"2026-01-01T00:00:00Z\", until: \"2027-06-01T00:00:00Z\") { day purpose granted denied } }", json!({}));
    assert_eq!(
        (
            stat(&d, "analytics", "granted"),
            stat(&d, "analytics", "denied")
        ),
        (666, 334)
    );
    assert_eq!(stat(&d, "ads", "granted"), 1000);
}

#[test]
fn receipts_verify_offline_and_checkpoints_stay_consistent_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--checkpoint-interval-ms", "100000"]);
    s.customers(&["acme"]);
    let cust: Vec<String> = (0..40).map(|i| format!("cust-{i}")).collect();
    s.customers(&cust.iter().map(String::as_str).collect::<Vec<_>>());
    let (name, key) = verifying_key(&s);
    let id = s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", None) }),
    )["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let receipt = receipt_of(&s, &id);
    let summary = verify_receipt(&receipt, Some((&name, &key)))
        .expect("receipt verifies with nothing but itself and the key");
    assert!(summary.signer_checked);
    assert_eq!(summary.personal.unwrap().subject_id, "alice");
    let k = summary.checkpoint_number;

    // More writes, on every shard.
    for i in 0..40 {
        s.ok(
            RECORD,
            json!({ "c": format!("cust-{i}"), "e": event("bob", "DENIED", None) }),
        );
    }
    let carol = s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("carol", "GRANTED", None) }),
    );
    let later = receipt_of(&s, carol["recordConsent"]["event"]["id"].as_str().unwrap());
    let later_n = verify_receipt(&later, Some((&name, &key)))
        .unwrap()
        .checkpoint_number;
    assert!(later_n > k);
    verify_receipt(&receipt, Some((&name, &key))).expect("the old receipt still verifies");

    let proof = s.ok("query($a: UInt64!, $b: UInt64!) { consistencyProof(fromCheckpoint: $a, toCheckpoint: $b) { shards { oldSize newSize oldRoot newRoot path } } }", json!({ "a": k.to_string(), "b": later_n.to_string() }));
    let h = |v: &Value| Hash::from_hex(v.as_str().unwrap()).unwrap();
    let mut grown = 0;
    for sh in proof["consistencyProof"]["shards"].as_array().unwrap() {
        let (old, new) = (
            sh["oldSize"].as_str().unwrap().parse().unwrap(),
            sh["newSize"].as_str().unwrap().parse::<u64>().unwrap(),
        );
        let path: Vec<Hash> = sh["path"].as_array().unwrap().iter().map(h).collect();
        verify_consistency(
            &Blake3Tree,
            old,
            new,
            &h(&sh["oldRoot"]),
            &h(&sh["newRoot"]),
            &path,
        )
        .unwrap();
        grown += u64::from(new > old);
    }
    assert!(grown >= 2, "writes reached several shards");

    let cps = s.ok(
        "{ checkpoints(first: 500) { edges { node { number } } } }",
        json!({}),
    );
    let numbers: Vec<u64> = cps["checkpoints"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["number"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "checkpoint numbers are consecutive: {numbers:?}"
    );
    consistency_proofs_answer_pair_by_pair(&s, *numbers.first().unwrap(), numbers.len() as u64);

    let log = s.stop();
    assert!(log.contains("stopped"), "graceful shutdown logged: {log}");
    let s = Server::start(dir.path(), &[]);
    verify_receipt(&receipt_of(&s, &id), Some((&name, &key)))
        .expect("receipts still verify after a restart");
    let d = s.ok(
        "query($id: ID!) { event(id: $id) { subjectId } }",
        json!({ "id": id }),
    );
    assert_eq!(d["event"]["subjectId"], "alice");
    let after_restart = s.ok("{ checkpoint { number } }", json!({}));
    assert!(
        after_restart["checkpoint"]["number"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= later_n
    );
    let (name2, key2) = verifying_key(&s);
    assert_eq!((name2, key2), (name, key), "the signing key persists");
}

#[test]
fn receipts_of_a_shard_deeper_than_the_cached_levels_verify_cold_and_warm() {
    // Proves: with more than 2^9 entries in a shard, proofs partly served from the shard's
    // cache of upper Merkle nodes verify offline, asked once (cold) and again (warm), and
    // again after the tree grew past another cached level (new checkpoint, same nodes).
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--checkpoint-interval-ms", "100000"]);
    s.customers(&["acme"]);
    let (name, key) = verifying_key(&s);
    // seq → event id (one customer: one shard).
    let mut ids = std::collections::BTreeMap::new();
    let record = |ids: &mut std::collections::BTreeMap<u64, String>, from: usize, n: usize| {
        let events: Vec<Value> = (from..from + n)
            .map(|i| event(&format!("s{i}"), "GRANTED", None))
            .collect();
        let d = s.ok(RECORD_MANY, json!({ "c": "acme", "e": events }));
        for r in d["recordConsents"].as_array().unwrap() {
            let seq = r["event"]["sequence"].as_str().unwrap().parse().unwrap();
            ids.insert(seq, r["event"]["id"].as_str().unwrap().to_string());
        }
    };
    record(&mut ids, 0, 700);
    record(&mut ids, 700, 100);
    let chosen: Vec<String> = [0u64, 255, 256, 511, 512, 767, 799]
        .iter()
        .map(|seq| ids[seq].clone())
        .collect();
    let mut first_checkpoint = None;
    for round in ["cold", "warm", "after growth"] {
        if round == "after growth" {
            record(&mut ids, 800, 400);
        }
        for id in &chosen {
            let summary = verify_receipt(&receipt_of(&s, id), Some((&name, &key)))
                .unwrap_or_else(|e| panic!("{round} receipt of {id}: {e}"));
            let first = *first_checkpoint.get_or_insert(summary.checkpoint_number);
            assert!(summary.checkpoint_number >= first, "{round}: {id}");
        }
    }
}

/// `consistencyProofs` gives, for each consecutive pair of a range, what `consistencyProof`
/// gives for that pair; a range past the last checkpoint or over the limit is refused.
fn consistency_proofs_answer_pair_by_pair(s: &Server, first: u64, issued: u64) {
    assert!(
        issued >= 3,
        "the test needs a few checkpoints, has {issued}"
    );
    let count = (issued - 1).min(5);
    let many = s.ok(
        "query($f: UInt64!, $n: Int!) { consistencyProofs(fromCheckpoint: $f, count: $n) { from { number } to { number } shards { shardId oldSize newSize path } } }",
        json!({ "f": first.to_string(), "n": count }),
    );
    let many = many["consistencyProofs"].as_array().unwrap();
    assert_eq!(many.len() as u64, count);
    for (i, p) in many.iter().enumerate() {
        let (a, b) = (first + i as u64, first + i as u64 + 1);
        assert_eq!(p["from"]["number"], a.to_string());
        assert_eq!(p["to"]["number"], b.to_string());
        let one = s.ok(
            "query($a: UInt64!, $b: UInt64!) { consistencyProof(fromCheckpoint: $a, toCheckpoint: $b) { shards { shardId oldSize newSize path } } }",
            json!({ "a": a.to_string(), "b": b.to_string() }),
        );
        assert_eq!(
            p["shards"], one["consistencyProof"]["shards"],
            "pair {a}-{b}"
        );
    }
    let refused = |f: u64, n: i64| {
        code(&s.gql(
            "query($f: UInt64!, $n: Int!) { consistencyProofs(fromCheckpoint: $f, count: $n) { from { number } } }",
            json!({ "f": f.to_string(), "n": n }),
        ))
    };
    let last = first + issued - 1;
    assert_eq!(
        refused(last, 1),
        "NOT_FOUND",
        "no checkpoint after the last"
    );
    assert_eq!(refused(0, 1), "NOT_FOUND", "numbers start at 1");
    assert_eq!(refused(first, 0), "BAD_USER_INPUT");
    assert_eq!(
        refused(first, 101),
        "BAD_USER_INPUT",
        "at most MAX_CONSISTENCY_PROOFS"
    );
}

#[test]
fn a_tampered_receipt_fails_and_a_changed_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--shards", "2"]);
    s.customers(&["acme"]);
    let (name, key) = verifying_key(&s);
    let id = s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", None) }),
    )["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut r = receipt_of(&s, &id);
    let mut entry = base64::engine::general_purpose::STANDARD
        .decode(&r.entry)
        .unwrap();
    entry[100] ^= 1;
    r.entry = base64::engine::general_purpose::STANDARD.encode(entry);
    assert!(verify_receipt(&r, Some((&name, &key))).is_err());
    drop(s);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "3",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("created with 2 shards"), "{text}");
}

#[test]
fn a_new_ledger_without_flags_gets_one_shard_per_core_up_to_the_cap() {
    // Proves: the no-configuration default creates min(cores, DEFAULT_SHARDS_MAX) shard
    // files, and a restart keeps the count it was created with.
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = cores.clamp(1, gateway::config::DEFAULT_SHARDS_MAX as usize);
    // Shard files, not their index files (`shard-NNNN.index.redb`).
    let count = || {
        std::fs::read_dir(dir.path().join("shards"))
            .unwrap()
            .filter(|f| {
                !f.as_ref()
                    .unwrap()
                    .path()
                    .to_string_lossy()
                    .ends_with(".index.redb")
            })
            .count()
    };
    drop(Server::start(dir.path(), &[]));
    assert_eq!(count(), want);
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    assert_eq!(count(), want);
}

#[test]
fn every_error_code_comes_from_a_real_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let mut bad = event("alice", "GRANTED", None);
    bad["purposes"][0]["purpose"] = json!("Not A Purpose");
    assert_eq!(
        code(&s.gql(RECORD, json!({ "c": "acme", "e": bad }))),
        "BAD_USER_INPUT"
    );
    let mut twice = event("alice", "GRANTED", None);
    twice["purposes"][1]["purpose"] = json!("analytics");
    let v = s.gql(
        RECORD_MANY,
        json!({ "c": "acme", "e": [event("bob", "GRANTED", None), twice] }),
    );
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("event 1") && message.contains("\"analytics\" is listed twice"),
        "{message}"
    );
    let long = event(&"x".repeat(257), "GRANTED", None);
    let v = s.gql(RECORD, json!({ "c": "acme", "e": long }));
    assert_eq!(code(&v), "BAD_USER_INPUT");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("subjectId")
    );
    assert_eq!(code(&s.gql("{ nope }", json!({}))), "BAD_USER_INPUT");
    assert_eq!(
        code(&s.gql(RECORD, json!({ "c": "acme", "e": { "subjectId": 5 } }))),
        "BAD_USER_INPUT"
    );
    let too_many: Vec<Value> = (0..1001).map(|_| event("a", "GRANTED", None)).collect();
    assert_eq!(
        code(&s.gql(RECORD_MANY, json!({ "c": "acme", "e": too_many }))),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(&s.gql(
            "{ event(id: \"ev0000000000000000000000ff\") { id } }",
            json!({})
        )),
        "NOT_FOUND"
    );
    assert_eq!(
        code(&s.gql("{ receipt(eventId: \"garbage\") { document } }", json!({}))),
        "BAD_USER_INPUT"
    );
    assert_eq!(code(&s.gql("{ consentHistory(customerId: \"acme\", subjectId: \"a\", first: 501) { edges { cursor } } }", json!({}))), "BAD_USER_INPUT");
    let mut deep = String::from(
        "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } } } } }",
    );
    assert_eq!(
        code(&s.gql(&deep, json!({}))),
        "BAD_USER_INPUT",
        "depth limit"
    );
    deep.clear();

    let big = vec![b' '; 17 * 1024 * 1024];
    let resp = s.post_raw(big);
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(code(&resp.json().unwrap()), "PAYLOAD_TOO_LARGE");
    let resp = s.post_raw(b"{not json".to_vec());
    assert_eq!(code(&resp.json().unwrap()), "BAD_USER_INPUT");

    let resp = s.get("/graphql?query=mutation%20%7B%20withdrawConsent(customerId%3A%22a%22%2CsubjectId%3A%22b%22%2CnoticeId%3A%22c%22%2CnoticeVersion%3A%22d%22)%20%7B%20duplicate%20%7D%20%7D");
    assert_eq!(
        code(&resp.json().unwrap()),
        "BAD_USER_INPUT",
        "no mutations over GET"
    );
    let resp: Value = s
        .get("/graphql?query=%7B%20checkpoint%20%7B%20number%20%7D%20%7D")
        .json()
        .unwrap();
    assert!(
        resp.get("errors").is_none(),
        "queries work over GET: {resp}"
    );
}

#[test]
fn a_full_shard_queue_answers_overloaded_and_writes_stay_whole() {
    // Proves: writers that find the shard's queue full are told OVERLOADED (never a hang or
    // another error), and exactly the acknowledged batches are written, whole. Every batch
    // is decoded at once (a budget for all 24 bodies), so that they all reach the shard's
    // one-slot queue while it commits; with no wait for room (`--overload-wait-ms 0`) the
    // outcome does not depend on how fast this build commits (with the default 200 ms an
    // optimised build drained the queue in time).
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--shard-mailbox-capacity",
            "1",
            "--large-request-budget-bytes",
            "100000000",
            "--overload-wait-ms",
            "0",
        ],
    );
    s.customers(&["acme"]);
    let admin = s.admin.clone();
    let url = s.url.clone();
    let batch: Vec<Value> = (0..1000)
        .map(|i| event(&format!("s{i}"), "GRANTED", None))
        .collect();
    let body =
        json!({ "query": RECORD_MANY, "variables": { "c": "acme", "e": batch } }).to_string();
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let (url, body, admin) = (url.clone(), body.clone(), admin.clone());
            std::thread::spawn(move || -> Value {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/graphql"))
                    .bearer_auth(admin)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let overloaded = results.iter().filter(|v| code(v) == "OVERLOADED").count();
    let ok = results.iter().filter(|v| v.get("errors").is_none()).count();
    assert_eq!(
        ok + overloaded,
        results.len(),
        "only success or OVERLOADED: {:?}",
        results.iter().map(code).collect::<Vec<_>>()
    );
    assert!(
        overloaded > 0,
        "a one-slot mailbox under 24 concurrent 1,000-event batches must refuse some"
    );
    let d = s.ok("{ checkpoint { totalSize } }", json!({}));
    let _ = d;
    let stats = s.ok("{ consentStats(customerId: \"acme\", since: \"2026-01-01T00:00:00Z\", until: \"2027-06-01T00:00:00Z\") { purpose granted } }", json!({}));
    let ads = stat(&stats, "ads", "granted");
    assert_eq!(
        ads,
        1000 * ok as u64,
        "exactly the acknowledged batches were written, whole"
    );
}

#[test]
fn health_metrics_keys_and_the_offline_query_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    assert_eq!(s.get("/healthz").status().as_u16(), 200);
    assert_eq!(s.get("/readyz").status().as_u16(), 200);
    s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", None) }),
    );
    s.gql("{ nope }", json!({}));
    let metrics = s.get("/metrics").text().unwrap();
    for name in [
        "assent_graphql_requests_total",
        "assent_graphql_errors_total{code=\"BAD_USER_INPUT\"}",
        "assent_events_appended_total",
        "assent_commit_batch_events_bucket",
        "assent_commit_seconds_bucket",
        "assent_shard_queue_depth",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let keys: Value = s.get("/.well-known/assent/keys").json().unwrap();
    assert_eq!(keys["keys"][0]["algorithm"], "ed25519");
    let page = s.get("/").text().unwrap();
    assert!(page.contains("/graphql") && page.contains("<script>"));
    for external in ["http://", "https://", "//cdn", "unpkg", "jsdelivr"] {
        assert!(
            !page.contains(external),
            "the query page references {external}"
        );
    }
}

#[test]
fn served_schema_matches_schema_graphql() {
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        gateway::sdl() == file,
        "schema.graphql is out of date with the served schema; regenerate it with\n    cargo run -- schema > schema.graphql\nand review the diff"
    );
}

#[test]
fn every_type_and_field_of_the_schema_has_a_description() {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    let doc = async_graphql::parser::parse_schema(gateway::sdl()).expect("the SDL parses");
    let mut missing = Vec::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let t = t.node;
        let name = t.name.node.to_string();
        // Connection wrappers are generated by async-graphql; their fields are documented.
        if t.description.is_none() && !name.ends_with("Connection") && name != "DateTime" {
            missing.push(name.clone());
        }
        let fields: Vec<(String, bool)> = match &t.kind {
            TypeKind::Object(o) => o
                .fields
                .iter()
                .map(|f| (f.node.name.node.to_string(), f.node.description.is_some()))
                .collect(),
            TypeKind::InputObject(o) => o
                .fields
                .iter()
                .map(|f| (f.node.name.node.to_string(), f.node.description.is_some()))
                .collect(),
            TypeKind::Enum(e) => e
                .values
                .iter()
                .map(|v| (v.node.value.node.to_string(), v.node.description.is_some()))
                .collect(),
            _ => vec![],
        };
        missing.extend(
            fields
                .into_iter()
                .filter(|(_, d)| !d)
                .map(|(f, _)| format!("{name}.{f}")),
        );
    }
    assert!(
        missing.is_empty(),
        "undocumented types or fields: {missing:#?}"
    );
}

#[test]
fn a_query_text_that_passed_validation_still_refuses_bad_variables_and_writes_nothing() {
    // Proves: once a text has run cleanly (later requests skip the document rules), bad
    // variable values with the same text are still refused with BAD_USER_INPUT, before
    // any resolver runs: a batch with one bad event writes none of them.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let ok = s.gql(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "GRANTED", None) }),
    );
    assert!(ok["errors"].is_null(), "{ok}");
    let ok = s.gql(
        RECORD_MANY,
        json!({ "c": "acme", "e": [event("bob", "DENIED", None)] }),
    );
    assert!(ok["errors"].is_null(), "{ok}");
    let read = "query($c: ID!, $s: String!) { consentHistory(customerId: $c, subjectId: $s, first: 10) { edges { node { id } } } }";
    let stored = |subject: &str| {
        let v = s.gql(read, json!({ "c": "acme", "s": subject }));
        let edges = v["data"]["consentHistory"]["edges"].as_array().cloned();
        edges
            .unwrap_or_else(|| panic!("history of {subject}: {v}"))
            .len()
    };
    assert_eq!(stored("alice"), 1);

    for (name, vars) in [
        (
            "a number for a string",
            json!({ "c": "acme", "e": { "subjectId": 5 } }),
        ),
        ("a missing variable", json!({ "c": "acme" })),
        ("an unknown input field", {
            let mut e = event("carol", "GRANTED", None);
            e["color"] = json!("red");
            json!({ "c": "acme", "e": e })
        }),
    ] {
        let v = s.gql(RECORD, vars);
        assert_eq!(code(&v), "BAD_USER_INPUT", "{name}: {v}");
        assert!(
            v["data"].is_null() || v["data"]["recordConsent"].is_null(),
            "{name}: {v}"
        );
    }
    let mut bad = event("dave", "MAYBE", None);
    bad["subjectId"] = json!("dave");
    let v = s.gql(
        RECORD_MANY,
        json!({ "c": "acme", "e": [event("dave", "GRANTED", None), bad] }),
    );
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    let v = s.gql(read, json!({ "c": "acme", "s": 7 }));
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    // GET and JSON-array batches take the same path.
    let url = reqwest::Url::parse_with_params(
        &format!("{}/graphql", s.url),
        &[("query", read), ("variables", r#"{"c": "acme", "s": 7}"#)],
    )
    .unwrap();
    let v: Value = s.get(&url.as_str()[s.url.len()..]).json().unwrap();
    assert_eq!(code(&v), "BAD_USER_INPUT", "GET: {v}");
    let mut unknown = event("frank", "GRANTED", None);
    unknown["color"] = json!("red");
    let body = json!([
        { "query": RECORD, "variables": { "c": "acme", "e": event("erin", "GRANTED", None) } },
        { "query": RECORD, "variables": { "c": "acme", "e": unknown } },
    ]);
    let v: Value = s.post_raw(body.to_string().into_bytes()).json().unwrap();
    assert!(v[0]["errors"].is_null(), "batch, first: {v}");
    assert_eq!(code(&v[1]), "BAD_USER_INPUT", "batch, second: {v}");
    for (subject, expected) in [("carol", 0), ("dave", 0), ("erin", 1), ("frank", 0)] {
        assert_eq!(stored(subject), expected, "events recorded for {subject}");
    }
}

#[test]
fn large_batches_beyond_the_byte_budget_wait_their_turn_and_one_larger_than_it_runs_alone() {
    // Proves: the large-request budget admits by body bytes without losing a request: with
    // a budget of 200,000 bytes, six concurrent batches of ≈ 80 KB (above the 64 KiB
    // threshold; two fit at once) and one of ≈ 400 KB (more than the whole budget, so it
    // takes all of it instead of waiting forever) all succeed, and every event is recorded.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--large-request-budget-bytes", "200000"]);
    s.customers(&["acme"]);
    let sizes = [200, 200, 200, 1000, 200, 200, 200];
    std::thread::scope(|scope| {
        let workers: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(w, &n)| {
                let s = &s;
                scope.spawn(move || {
                    let events: Vec<Value> = (0..n)
                        .map(|i| event(&format!("w{w}-s{i}"), "GRANTED", None))
                        .collect();
                    let body = json!({ "c": "acme", "e": events });
                    let len = body.to_string().len();
                    assert!(len > 64 * 1024, "a large request");
                    assert_eq!(
                        len > 200_000,
                        n == 1000,
                        "only the 1,000 exceeds the budget"
                    );
                    let d = s.ok(RECORD_MANY, body);
                    d["recordConsents"].as_array().unwrap().len()
                })
            })
            .collect();
        for (w, &n) in workers.into_iter().zip(&sizes) {
            assert_eq!(w.join().unwrap(), n);
        }
    });
    let stats = s.ok("{ consentStats(customerId: \"acme\", since: \"2026-01-01T00:00:00Z\", until: \"2027-06-01T00:00:00Z\") { purpose granted } }", json!({}));
    let ads = stat(&stats, "ads", "granted");
    assert_eq!(ads, 2200, "every event of the seven batches was recorded");
}

/// Sends a POST /graphql head declaring `declared` body bytes, then `sent` of them, over a
/// raw TCP connection (reqwest always sends the whole body it declares).
fn post_head(s: &Server, declared: usize, sent: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let addr = s.url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
        s.admin
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(sent).unwrap();
    tcp
}

/// The status line and body of the one response on `tcp`.
fn raw_response(tcp: &mut std::net::TcpStream) -> (String, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp
            .read(&mut chunk)
            .expect("a response before the read timeout");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && (n == 0 || body.ends_with('}'))
        {
            let status = head.lines().next().unwrap_or_default().to_string();
            return (status, body.to_string());
        }
        assert!(
            n > 0,
            "the connection closed before a whole response: {text}"
        );
    }
}

#[test]
fn a_body_declared_above_the_limit_is_refused_before_any_of_it_is_sent() {
    // Proves: a Content-Length above MAX_REQUEST_BYTES (16 MiB) gets PAYLOAD_TOO_LARGE at
    // once, without the server waiting for (or holding) a byte of the body.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let mut tcp = post_head(&s, 20_000_000, b"");
    let (status, body) = raw_response(&mut tcp);
    assert!(status.contains(" 413 "), "{status}");
    assert!(body.contains("PAYLOAD_TOO_LARGE"), "{body}");
}

#[test]
fn a_large_chunked_body_with_no_declared_length_takes_its_turn_while_read_and_records_all() {
    // Proves: a body sent chunked (no Content-Length) takes its turn when it grows past
    // 64 KiB, for the largest body (its length is unknown): with a budget of one largest
    // body, two such batches run one after the other, and both are recorded whole.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--large-request-budget-bytes", "16777216"]);
    s.customers(&["acme"]);
    std::thread::scope(|scope| {
        for w in 0..2 {
            let s = &s;
            scope.spawn(move || {
                let events: Vec<Value> = (0..300)
                    .map(|i| event(&format!("w{w}-s{i}"), "GRANTED", None))
                    .collect();
                let body =
                    json!({ "query": RECORD_MANY, "variables": { "c": "acme", "e": events } });
                let bytes = body.to_string().into_bytes();
                assert!(bytes.len() > 64 * 1024, "a large request");
                let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(bytes));
                let resp: Value = reqwest::blocking::Client::new()
                    .post(format!("{}/graphql", s.url))
                    .bearer_auth(&s.admin)
                    .header("content-type", "application/json")
                    .body(chunked)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                let results = resp["data"]["recordConsents"].as_array();
                assert_eq!(results.map(Vec::len), Some(300), "{resp}");
            });
        }
    });
    let stats = s.ok("{ consentStats(customerId: \"acme\", since: \"2026-01-01T00:00:00Z\", until: \"2027-06-01T00:00:00Z\") { purpose granted } }", json!({}));
    assert_eq!(
        stat(&stats, "ads", "granted"),
        600,
        "both chunked batches recorded"
    );
}

#[test]
fn a_large_body_sent_too_slowly_is_refused_and_gives_its_turn_back() {
    // Proves: a sender that declares a large body and stalls holds its share of the budget
    // only until the body read timeout: it gets HTTP 408 with BAD_USER_INPUT, and a large
    // batch that could not fit beside it then succeeds.
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--large-request-budget-bytes",
        "100000",
        "--body-read-timeout-ms",
        "1000",
    ];
    let s = Server::start(dir.path(), &flags);
    s.customers(&["acme"]);
    let mut slow = post_head(&s, 90_000, b"{\"query\":");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let events: Vec<Value> = (0..200)
        .map(|i| event(&format!("s{i}"), "GRANTED", None))
        .collect();
    let d = s.ok(RECORD_MANY, json!({ "c": "acme", "e": events }));
    assert_eq!(d["recordConsents"].as_array().unwrap().len(), 200);
    let (status, body) = raw_response(&mut slow);
    assert!(status.contains(" 408 "), "{status}");
    assert!(body.contains("BAD_USER_INPUT"), "{body}");
    assert!(body.contains("did not arrive within 1000 ms"), "{body}");
}

#[test]
fn customer_wide_reads_see_every_acknowledged_event_though_subject_reads_ran_first() {
    // Proves: read-your-writes across the two index tiers over real HTTP: after each
    // write, a subject read brings the subject tier up to date, and the time index and
    // counters read right after (customer tier, indexed every 3 s) still count it.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let state = "query($s: String!) { consent(customerId: \"acme\", subjectId: $s) { purposes { purpose choice } } }";
    let events = "{ consentEvents(customerId: \"acme\", first: 500) { edges { node { id } } } }";
    let stats = "{ consentStats(customerId: \"acme\", since: \"2026-01-01T00:00:00Z\", until: \"2027-06-01T00:00:00Z\") { purpose granted denied } }";
    for i in 0..5u64 {
        let subject = format!("s{i}");
        let e = event(&subject, "GRANTED", None);
        s.ok(RECORD, json!({ "c": "acme", "e": e }));
        let d = s.ok(state, json!({ "s": subject }));
        assert!(
            !d["consent"]["purposes"].as_array().unwrap().is_empty(),
            "{d}"
        );
        let d = s.ok(events, json!({}));
        let listed = d["consentEvents"]["edges"].as_array().unwrap().len() as u64;
        assert_eq!(listed, i + 1, "write {i}: the time index lists it");
        let d = s.ok(stats, json!({}));
        assert_eq!(
            stat(&d, "ads", "granted"),
            i + 1,
            "write {i}: the counters count it"
        );
    }
}

#[test]
fn small_objects_resolve_to_the_same_json_on_the_direct_path_as_through_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    s.customers(&["acme"]);
    let mut e = event("alice", "GRANTED", None);
    e["expiresAt"] = json!("2031-02-03T04:05:06.789Z");
    s.ok(
        RECORD,
        json!({ "c": "acme", "e": event("alice", "DENIED", None) }),
    );
    s.ok(RECORD, json!({ "c": "acme", "e": e }));
    // Plain selections take the direct path; a fragment or a directive takes
    // async-graphql's, and so does a field selected twice.
    let pairs = [
        (
            "purposes { purpose status choice expiresAt __typename p: purpose }",
            "purposes { ... on PurposeConsent { purpose status choice expiresAt __typename p: purpose } }",
        ),
        (
            "purposes { purpose purpose choice event { id } }",
            "purposes { purpose choice @include(if: true) event { id } }",
        ),
        (
            "customerId subjectId asOf __typename purposes { purpose status }",
            "... on ConsentState { customerId subjectId asOf __typename purposes { purpose status } }",
        ),
    ];
    for (plain, generic) in pairs {
        let q = |sel: &str| {
            format!(
                "{{ consent(customerId: \"acme\", subjectId: \"alice\") {{ {sel} }} \
                 consentHistory(customerId: \"acme\", subjectId: \"alice\") {{ edges {{ node {{ \
                 purposes {{ purpose choice __typename }} }} }} }} }}"
            )
        };
        let generic_history = "purposes { ... on PurposeChoice { purpose choice __typename } }";
        let a = s.ok(&q(plain), json!({}));
        let b = s.ok(
            &q(generic).replace("purposes { purpose choice __typename }", generic_history),
            json!({}),
        );
        assert_eq!(a, b, "{plain}");
        let purposes = &a["consent"]["purposes"];
        assert_eq!(purposes.as_array().unwrap().len(), 2, "{a:#}");
    }
    let a = s.ok(
        "{ consent(customerId: \"acme\", subjectId: \"alice\") { purposes { purpose status choice expiresAt __typename } } }",
        json!({}),
    );
    assert_eq!(
        a["consent"]["purposes"][0],
        json!({ "purpose": "ads", "status": "GRANTED", "choice": "GRANTED",
                "expiresAt": "2031-02-03T04:05:06.789+00:00", "__typename": "PurposeConsent" }),
        "{a:#}"
    );
}

/// Every field of `ConsentEvent`, nested objects and `__typename` included.
const EVENT_FIELDS: &str = "id customerId subjectId shard sequence recordedAt occurredAt expiresAt purposes { purpose choice __typename } noticeId noticeVersion captureMethod jurisdiction gpc tcfString gppString evidence { ipAddress userAgent pageUrl __typename } idempotencyKey entryHash prevHash personalCommitment __typename";

#[test]
fn events_and_record_results_resolve_to_the_same_json_on_the_direct_path_as_through_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    s.customers(&["acme"]);
    let writer = s.key(Some("acme"), "WRITER");
    let generic = format!("... on ConsentEvent {{ {EVENT_FIELDS} }}");
    // A recorded event, replayed by its idempotency key on both paths.
    let record = |sel: &str| {
        let q = format!(
            "mutation($c: ID!, $e: ConsentEventInput!) {{ recordConsent(customerId: $c, event: $e) {{ {sel} }} }}"
        );
        s.ok(
            &q,
            json!({ "c": "acme", "e": event("bob", "GRANTED", Some("k-1")) }),
        )
    };
    let first = record(&format!("duplicate event {{ {EVENT_FIELDS} }}"));
    assert_eq!(first["recordConsent"]["duplicate"], false);
    let a = record(&format!("duplicate event {{ {EVENT_FIELDS} }}"));
    let b = record(&format!(
        "... on RecordResult {{ duplicate event {{ {generic} }} }}"
    ));
    assert_eq!(a, b);
    assert_eq!(a["recordConsent"]["duplicate"], true);
    assert_eq!(a["recordConsent"]["event"], first["recordConsent"]["event"]);
    assert_eq!(
        a["recordConsent"]["event"]["evidence"]["userAgent"],
        "Mozilla/5.0 test"
    );
    let many = |sel: &str| {
        let q = format!(
            "mutation($c: ID!, $e: [ConsentEventInput!]!) {{ recordConsents(customerId: $c, events: $e) {{ {sel} }} }}"
        );
        let e = [
            event("bob", "DENIED", Some("k-2")),
            event("carol", "GRANTED", Some("k-3")),
        ];
        s.ok(&q, json!({ "c": "acme", "e": e }))
    };
    many("duplicate");
    let m = many(&format!("duplicate event {{ {EVENT_FIELDS} }}"));
    assert_eq!(
        m,
        many(&format!(
            "... on RecordResult {{ duplicate event {{ {generic} }} }}"
        ))
    );
    assert_eq!(
        m["recordConsents"][1]["event"]["subjectId"], "carol",
        "{m:#}"
    );
    // By id, in a history, and as the event behind a purpose; then once erased.
    let id = a["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reads = |sel: &str| {
        format!(
            "{{ event(id: \"{id}\") {{ {sel} }} \
             consentHistory(customerId: \"acme\", subjectId: \"bob\") {{ edges {{ node {{ {sel} }} }} }} \
             consent(customerId: \"acme\", subjectId: \"bob\") {{ purposes {{ purpose event {{ {sel} }} }} }} }}"
        )
    };
    let a = s.ok(&reads(EVENT_FIELDS), json!({}));
    assert_eq!(a, s.ok(&reads(&generic), json!({})));
    assert_eq!(a["event"], first["recordConsent"]["event"]);
    // Pages of a subject's history and of a customer's events, the connection types included.
    let conn = format!(
        "__typename pageInfo {{ hasPreviousPage hasNextPage startCursor endCursor __typename }} \
         edges {{ cursor __typename node {{ {EVENT_FIELDS} }} }} nodes {{ id sequence }}"
    );
    let pages = |sel: &str| {
        format!(
            "{{ consentHistory(customerId: \"acme\", subjectId: \"bob\", first: 1) {{ {sel} }} \
             consentEvents(customerId: \"acme\", first: 2) {{ {sel} }} }}"
        )
    };
    let a = s.ok(&pages(&conn), json!({}));
    let b = s.ok(
        &pages(&format!("... on ConsentEventConnection {{ {conn} }}")),
        json!({}),
    );
    assert_eq!(a, b);
    assert_eq!(
        a["consentHistory"]["pageInfo"]["hasNextPage"], true,
        "{a:#}"
    );
    assert_eq!(
        a["consentEvents"]["edges"].as_array().unwrap().len(),
        2,
        "{a:#}"
    );
    assert_eq!(
        a["consentEvents"]["nodes"][1]["id"],
        a["consentEvents"]["edges"][1]["node"]["id"]
    );
    let erased = s.gql_as(
        Some(&writer),
        "mutation { eraseSubject(customerId: \"acme\", subjectId: \"bob\", reason: \"DSAR\") { erasedEvents } }",
        json!({}),
    );
    assert!(erased.get("errors").is_none(), "{erased:#}");
    let a = s.ok(
        &format!("{{ event(id: \"{id}\") {{ {EVENT_FIELDS} }} }}"),
        json!({}),
    );
    let b = s.ok(
        &format!("{{ event(id: \"{id}\") {{ {generic} }} }}"),
        json!({}),
    );
    assert_eq!(a, b);
    assert_eq!(a["event"]["evidence"], Value::Null, "{a:#}");
    assert_eq!(a["event"]["subjectId"], Value::Null, "{a:#}");
}

#[test]
fn consent_reads_the_personal_records_of_its_events_exactly_when_a_personal_field_is_selected() {
    // Proves: `consent { purposes { event } }`, now and `asOf`, answers the events' entry
    // fields alike whether or not their personal records are read, and every way of naming
    // a personal field of the event (aliased, in a named or inline fragment, under a
    // directive) gets the records, never the null that means "erased".
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    for choice in ["GRANTED", "DENIED"] {
        s.ok(
            RECORD,
            json!({ "c": "acme", "e": event("dana", choice, None) }),
        );
    }
    let later = "2100-01-01T00:00:00Z";
    let read = |sel: &str, tail: &str| {
        s.ok(
            &format!(
                "{{ now: consent(customerId: \"acme\", subjectId: \"dana\") {{ purposes {{ purpose event {{ {sel} }} }} }} \
                 then: consent(customerId: \"acme\", subjectId: \"dana\", asOf: \"{later}\") {{ purposes {{ purpose event {{ {sel} }} }} }} }} {tail}"
            ),
            json!({}),
        )
    };
    let entry_fields = "id sequence recordedAt purposes { purpose choice } entryHash";
    let without = read(entry_fields, "");
    let with = read(&format!("{entry_fields} subjectId"), "");
    for when in ["now", "then"] {
        let (a, b) = (&without[when]["purposes"], &with[when]["purposes"]);
        assert!(!a.as_array().unwrap().is_empty(), "{without:#}");
        assert_eq!(a.as_array().unwrap().len(), b.as_array().unwrap().len());
        for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            for f in ["id", "sequence", "recordedAt", "purposes", "entryHash"] {
                assert_eq!(x["event"][f], y["event"][f], "{when}.{f}");
            }
            assert_eq!(y["event"]["subjectId"], "dana", "{with:#}");
        }
    }
    let shapes = [
        ("who: subjectId", ""),
        (
            "...P",
            "fragment P on ConsentEvent { evidence { ipAddress } }",
        ),
        ("... on ConsentEvent { tcfString }", ""),
        (
            "id gppString @include(if: false) tcfString @skip(if: false)",
            "",
        ),
    ];
    for (sel, tail) in shapes {
        assert_shows_named_personal_fields(&read(sel, tail), sel, tail);
    }
}

/// Asserts that `got`, the answer to a selection `sel` (with fragments `tail`) that names
/// personal fields of dana's events (`event()`'s), shows each named field's value and no
/// null (the null that means "erased").
fn assert_shows_named_personal_fields(got: &Value, sel: &str, tail: &str) {
    let (text, named) = (got.to_string(), format!("{sel} {tail}"));
    let values = [
        ("subjectId", "dana"),
        ("evidence", "198.51.100.7"),
        ("tcfString", "CQ-TCF"),
    ];
    for (field, value) in values {
        if named.contains(field) {
            assert!(text.contains(value), "{field} of {sel}: {got:#}");
        }
    }
    assert!(!text.contains("null"), "{sel}: {got:#}");
}

#[test]
fn event_pages_read_personal_records_exactly_when_a_personal_field_is_selected() {
    // Proves: history and customer-event pages answer entry fields alike whether or not the
    // personal records are read, and every way of naming a personal field (on `node` or
    // `nodes`, aliased, in a named or inline fragment, under a directive) gets the records,
    // never the null that means "erased"; an erased subject's events still read null.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    for (subject, choice) in [("dana", "GRANTED"), ("dana", "DENIED"), ("eli", "GRANTED")] {
        s.ok(
            RECORD,
            json!({ "c": "acme", "e": event(subject, choice, None) }),
        );
    }
    let pages = |sel: &str, tail: &str| {
        s.ok(
            &format!(
                "{{ consentHistory(customerId: \"acme\", subjectId: \"dana\") {{ {sel} }} \
                 consentEvents(customerId: \"acme\") {{ {sel} }} }} {tail}"
            ),
            json!({}),
        )
    };
    let entry_fields = "id sequence recordedAt purposes { purpose choice } entryHash";
    let without = pages(&format!("edges {{ node {{ {entry_fields} }} }}"), "");
    let with = pages(
        &format!("edges {{ node {{ {entry_fields} subjectId }} }}"),
        "",
    );
    for connection in ["consentHistory", "consentEvents"] {
        let (a, b) = (&without[connection]["edges"], &with[connection]["edges"]);
        assert_eq!(a.as_array().unwrap().len(), b.as_array().unwrap().len());
        for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            for f in ["id", "sequence", "recordedAt", "purposes", "entryHash"] {
                assert_eq!(x["node"][f], y["node"][f], "{connection}.{f}");
            }
            assert!(y["node"]["subjectId"].is_string(), "{with:#}");
        }
    }
    let shapes = [
        ("nodes { subjectId }", ""),
        ("edges { node { who: subjectId } }", ""),
        (
            "edges { node { ...P } }",
            "fragment P on ConsentEvent { evidence { ipAddress } }",
        ),
        ("edges { node { ... on ConsentEvent { tcfString } } }", ""),
        (
            "edges { node { id gppString @include(if: false) tcfString @skip(if: false) } }",
            "",
        ),
    ];
    for (sel, tail) in shapes {
        assert_shows_named_personal_fields(&pages(sel, tail), sel, tail);
    }
    let erased = s.gql(
        "mutation { eraseSubject(customerId: \"acme\", subjectId: \"dana\", reason: \"DSAR\") { erasedEvents } }",
        json!({}),
    );
    assert!(erased.get("errors").is_none(), "{erased:#}");
    let after = pages("edges { node { sequence subjectId } }", "");
    let events = after["consentEvents"]["edges"].as_array().unwrap();
    let subjects: Vec<&Value> = events.iter().map(|e| &e["node"]["subjectId"]).collect();
    assert_eq!(
        subjects,
        [&Value::Null, &Value::Null, &json!("eli")],
        "{after:#}"
    );
}
