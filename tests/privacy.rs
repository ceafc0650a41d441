//! Privacy operations against the real server over HTTP and its real data directory:
//! erasure and retention keep every proof yet leave no byte of the person on disk; subject
//! export, expiry, renewal lists, GPC and `assent export`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, code, files_containing};
use serde_json::{Value, json};

const RECORD: &str = "mutation($c: ID!, $e: ConsentEventInput!) { recordConsent(customerId: $c, event: $e) { event { id purposes { purpose choice } expiresAt } } }";

fn assent(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An event whose subject id, IP address and user agent are unique to `subject`.
fn event_of(subject: &str, n: u32) -> Value {
    json!({
        "subjectId": subject,
        "purposes": [
            { "purpose": "analytics", "choice": if n.is_multiple_of(2) { "GRANTED" } else { "DENIED" } },
            { "purpose": "ads", "choice": "GRANTED" },
        ],
        "noticeId": "cookie-banner", "noticeVersion": "2026-11",
        "captureMethod": "BANNER_CUSTOM", "jurisdiction": "EU",
        "tcfString": format!("TCF-{subject}"),
        "evidence": { "ipAddress": ip_of(subject), "userAgent": format!("Agent-{subject}/1.0") },
        "occurredAt": "2026-11-27T10:00:00Z",
        // Idempotency keys are stored in the ledger for good: they must not name the person.
        "idempotencyKey": format!("req-{}-{n}", subject.len()),
    })
}

fn ip_of(subject: &str) -> String {
    format!("203.0.113.{}", subject.len() * 7 % 250)
}

fn record(s: &Server, token: &str, customer: &str, e: Value) -> Value {
    let v = s.gql_as(Some(token), RECORD, json!({ "c": customer, "e": e }));
    assert!(v.get("errors").is_none(), "{v:#}");
    v["data"]["recordConsent"]["event"].clone()
}

fn receipt(s: &Server, token: &str, id: &str) -> String {
    let v = s.gql_as(
        Some(token),
        "query($id: ID!) { receipt(eventId: $id) { document } }",
        json!({ "id": id }),
    );
    v["data"]["receipt"]["document"]
        .as_str()
        .unwrap_or_else(|| panic!("{v:#}"))
        .to_string()
}

/// `assent verify receipt` on a document: exit 0 means every step verified.
fn verify_receipt(dir: &Path, doc: &str, name: &str) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, doc).unwrap();
    let (code, out, err) = assent(&["verify", "receipt", path.to_str().unwrap()], &[]);
    (code, format!("{out}{err}"))
}

#[test]
fn erasing_a_subject_keeps_old_receipts_valid_and_leaves_no_byte_of_it_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--scrub-interval-ms", "0"]);
    s.customers(&["shop"]);
    let writer = s.key(Some("shop"), "WRITER");
    let reader = s.key(Some("shop"), "READER");
    let victim = "victim-4b1d@example.com";
    let mut victim_ids = Vec::new();
    for n in 0..5 {
        victim_ids.push(
            record(&s, &writer, "shop", event_of(victim, n))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        record(&s, &writer, "shop", event_of("bystander-9", n));
    }
    let old_receipts: Vec<String> = victim_ids[..2]
        .iter()
        .map(|id| receipt(&s, &reader, id))
        .collect();
    let consent_q = "query($s: String!) { consent(customerId: \"shop\", subjectId: $s) { purposes { purpose status } } consentHistory(customerId: \"shop\", subjectId: $s) { edges { node { id } } } }";
    let bystander_before = s.gql_as(Some(&reader), consent_q, json!({ "s": "bystander-9" }));

    // A reader may not erase; the writer may.
    let erase = "mutation($s: String!) { eraseSubject(customerId: \"shop\", subjectId: $s, reason: \"DSAR-1138\") { erasureEventIds erasedEvents recordedAt receipts { eventId document } } }";
    assert_eq!(
        code(&s.gql_as(Some(&reader), erase, json!({ "s": victim }))),
        "FORBIDDEN"
    );
    let v = s.gql_as(Some(&writer), erase, json!({ "s": victim }));
    let out = &v["data"]["eraseSubject"];
    assert_eq!(out["erasedEvents"], json!("5"), "{v:#}");
    let erasure_doc = out["receipts"][0]["document"].as_str().unwrap();
    assert!(
        !erasure_doc.contains(victim),
        "the erasure receipt names no one"
    );

    // Every receipt verifies offline: the two issued before, and the erasure's own.
    for (i, doc) in old_receipts.iter().enumerate() {
        let (c, text) = verify_receipt(dir.path(), doc, &format!("old-{i}.json"));
        assert_eq!(c, 0, "an old receipt no longer verifies: {text}");
    }
    let (c, text) = verify_receipt(dir.path(), erasure_doc, "erasure.json");
    assert_eq!(c, 0, "the erasure receipt does not verify: {text}");
    assert!(
        text.contains("personal records of 5 events erased"),
        "{text}"
    );

    // The subject is gone from every query; the bystander is untouched.
    let gone = s.gql_as(Some(&reader), consent_q, json!({ "s": victim }));
    assert_eq!(gone["data"]["consent"]["purposes"], json!([]), "{gone:#}");
    assert_eq!(gone["data"]["consentHistory"]["edges"], json!([]));
    let export =
        "query($s: String!) { subjectExport(customerId: \"shop\", subjectId: $s) { events } }";
    assert_eq!(
        code(&s.gql_as(Some(&reader), export, json!({ "s": victim }))),
        "NOT_FOUND"
    );
    let ev = s.gql_as(
        Some(&reader),
        "query($id: ID!) { event(id: $id) { subjectId evidence { ipAddress } } }",
        json!({ "id": victim_ids[0] }),
    );
    assert_eq!(ev["data"]["event"]["subjectId"], Value::Null, "{ev:#}");
    assert_eq!(ev["data"]["event"]["evidence"], Value::Null);
    assert_eq!(
        s.gql_as(Some(&reader), consent_q, json!({ "s": "bystander-9" })),
        bystander_before
    );
    assert_eq!(
        code(&s.gql_as(Some(&writer), erase, json!({ "s": victim }))),
        "NOT_FOUND"
    );
    // Retrying an erased event's request does not record the person again.
    let retry = s.gql_as(
        Some(&writer),
        RECORD,
        json!({ "c": "shop", "e": event_of(victim, 0) }),
    );
    assert_eq!(code(&retry), "IDEMPOTENCY_CONFLICT", "{retry:#}");

    // The scrub rewrites the shard file; then no byte of the data directory names the person.
    let scrub = s.ok(
        "mutation { scrubStorage { shard bytesBefore bytesAfter } }",
        json!({}),
    );
    assert_eq!(
        scrub["scrubStorage"].as_array().unwrap().len(),
        1,
        "{scrub:#}"
    );
    s.stop();
    let (c, text) = common::audit(&data, &[]);
    assert_eq!(c, 0, "audit after erasure: {text}");
    for needle in [victim, &ip_of(victim), "Agent-victim", "TCF-victim"] {
        assert_eq!(
            files_containing(&data, needle),
            Vec::<String>::new(),
            "{needle} is still on disk"
        );
    }
    assert!(
        !files_containing(&data, "Agent-bystander-9").is_empty(),
        "others are kept"
    );
}

#[test]
fn retention_erases_old_records_in_bulk_with_the_same_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--scrub-interval-ms", "0"]);
    s.ok(
        "mutation { createCustomer(id: \"old\", name: \"Old\", retentionDays: 1) { id } }",
        json!({}),
    );
    s.customers(&["young"]);
    let old_writer = s.key(Some("old"), "WRITER");
    let young_writer = s.key(Some("young"), "WRITER");
    let subjects = ["ret-subject-aaa", "ret-subject-bbbbbb", "ret-subject-c"];
    let mut ids = Vec::new();
    for (n, subject) in subjects.iter().enumerate() {
        ids.push(
            record(&s, &old_writer, "old", event_of(subject, n as u32))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    record(&s, &young_writer, "young", event_of("young-subject-zz", 0));
    let early = receipt(&s, &old_writer, &ids[0]);

    // Today nothing is older than a day; as of three days from now, everything of "old" is.
    let apply = "mutation($at: DateTime) { applyRetention(asOf: $at) { customerId erasedEvents erasureEventIds } }";
    assert_eq!(
        s.ok(apply, json!({ "at": null }))["applyRetention"],
        json!([])
    );
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let done = s.ok(apply, json!({ "at": later }));
    let runs = done["applyRetention"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        1,
        "only the customer with a retention period: {done:#}"
    );
    assert_eq!(runs[0]["customerId"], "old");
    assert_eq!(runs[0]["erasedEvents"], json!("3"));
    let erasure_id = runs[0]["erasureEventIds"][0].as_str().unwrap();
    let erasure_receipt = receipt(&s, &old_writer, erasure_id);
    assert_eq!(verify_receipt(dir.path(), &early, "early.json").0, 0);
    assert_eq!(
        verify_receipt(dir.path(), &erasure_receipt, "retention.json").0,
        0
    );
    let q = "query($c: ID!, $s: String!) { consent(customerId: $c, subjectId: $s) { purposes { purpose } } }";
    let gone = s.gql(q, json!({ "c": "old", "s": subjects[0] }));
    assert_eq!(gone["data"]["consent"]["purposes"], json!([]), "{gone:#}");
    let kept = s.gql(q, json!({ "c": "young", "s": "young-subject-zz" }));
    assert_eq!(
        kept["data"]["consent"]["purposes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // `assent retention apply` reaches the same mutation (nothing is left to erase now).
    let (c, out, err) = assent(
        &["retention", "apply", "--url", &s.url],
        &[("ASSENT_TOKEN", &s.admin)],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert!(out.contains("nothing had outlived"), "{out}");

    s.ok("mutation { scrubStorage { shard } }", json!({}));
    s.stop();
    assert_eq!(common::audit(&data, &[]).0, 0);
    for subject in subjects {
        for needle in [
            subject.to_string(),
            format!("Agent-{subject}"),
            ip_of(subject),
        ] {
            assert_eq!(
                files_containing(&data, &needle),
                Vec::<String>::new(),
                "{needle} is still on disk"
            );
        }
    }
    assert!(!files_containing(&data, "young-subject-zz").is_empty());
}

#[test]
fn expiry_renewal_lists_gpc_subject_export_and_the_export_tool() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    s.ok("mutation { createCustomer(id: \"exp\", name: \"Exp\", defaultConsentLifetimeDays: 30) { id } }", json!({}));
    let writer = s.key(Some("exp"), "WRITER");
    let reader = s.key(Some("exp"), "READER");
    let now = chrono::Utc::now();
    // 40 days ago without expiresAt: the customer's 30-day lifetime makes it lapse 10 days ago.
    let mut lapsed = event_of("lapsed-subject", 0);
    lapsed["occurredAt"] = json!((now - chrono::Duration::days(40)).to_rfc3339());
    let e = record(&s, &writer, "exp", lapsed);
    assert!(
        e["expiresAt"].is_string(),
        "the default lifetime applies: {e:#}"
    );
    let mut soon = event_of("soon-subject", 1);
    soon["expiresAt"] = json!((now + chrono::Duration::days(5)).to_rfc3339());
    record(&s, &writer, "exp", soon);

    let state = s.gql_as(Some(&reader), "{ consent(customerId: \"exp\", subjectId: \"lapsed-subject\") { purposes { purpose choice status } } }", json!({}));
    let purposes = state["data"]["consent"]["purposes"].clone();
    assert_eq!(
        purposes,
        json!([
            { "purpose": "ads", "choice": "GRANTED", "status": "EXPIRED" },
            { "purpose": "analytics", "choice": "GRANTED", "status": "EXPIRED" },
        ]),
        "{state:#}"
    );

    let list = "query($b: DateTime!) { expiringConsents(customerId: \"exp\", before: $b, first: 10) { edges { node { subjectId purpose expired } } } }";
    let week = s.gql_as(
        Some(&reader),
        list,
        json!({ "b": (now + chrono::Duration::days(7)).to_rfc3339() }),
    );
    let rows: Vec<(String, bool)> = week["data"]["expiringConsents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["subjectId"].as_str().unwrap().to_string(),
                e["node"]["expired"].as_bool().unwrap(),
            )
        })
        .collect();
    // lapsed: ads + analytics (expired); soon: ads only (analytics DENIED needs no renewal).
    assert_eq!(
        rows,
        vec![
            ("lapsed-subject".to_string(), true),
            ("lapsed-subject".to_string(), true),
            ("soon-subject".to_string(), false),
        ],
        "{week:#}"
    );
    let today = s.gql_as(Some(&reader), list, json!({ "b": now.to_rfc3339() }));
    assert_eq!(
        today["data"]["expiringConsents"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // GPC under a CCPA-type law records the opt-out of sale and sharing; a grant is refused.
    let mut gpc = event_of("gpc-subject", 2);
    gpc["gpc"] = json!(true);
    gpc["jurisdiction"] = json!("US-CA");
    let e = record(&s, &writer, "exp", gpc.clone());
    let names: Vec<(String, String)> = e["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["purpose"].as_str().unwrap().into(),
                p["choice"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        names.contains(&("sale".into(), "DENIED".into()))
            && names.contains(&("sharing".into(), "DENIED".into())),
        "{e:#}"
    );
    gpc["idempotencyKey"] = json!("gpc-2");
    gpc["purposes"] = json!([{ "purpose": "sale", "choice": "GRANTED" }]);
    let refused = s.gql_as(Some(&writer), RECORD, json!({ "c": "exp", "e": gpc }));
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused:#}");

    // The access export: the subject's events, personal records and receipts that verify.
    let v = s.gql_as(
        Some(&reader),
        "{ subjectExport(customerId: \"exp\", subjectId: \"soon-subject\") { events document } }",
        json!({}),
    );
    let doc: Value =
        serde_json::from_str(v["data"]["subjectExport"]["document"].as_str().unwrap()).unwrap();
    assert_eq!(doc["subjectId"], "soon-subject");
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["event"]["evidence"]["userAgent"],
        "Agent-soon-subject/1.0"
    );
    let r = serde_json::to_string(&events[0]["receipt"]).unwrap();
    assert_eq!(verify_receipt(dir.path(), &r, "export.json").0, 0);
    assert_eq!(doc["currentState"].as_array().unwrap().len(), 2);
    assert_eq!(doc["currentState"][0]["purpose"], "ads");
    assert_eq!(doc["currentState"][0]["choice"], "GRANTED");
    assert_eq!(doc["currentState"][0]["status"], "GRANTED");
    assert_eq!(doc["currentState"][1]["status"], "DENIED");

    // `assent export`: every event of the customer as JSON lines, receipts included.
    let (c, out, err) = assent(
        &[
            "export",
            "--customer",
            "exp",
            "--format",
            "jsonl",
            "--receipts",
            "--url",
            &s.url,
        ],
        &[("ASSENT_TOKEN", &reader)],
    );
    assert_eq!(c, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (i, line) in lines.iter().enumerate() {
        assert!(line["subjectId"].is_string());
        let doc = serde_json::to_string(&line["receipt"]).unwrap();
        assert_eq!(
            verify_receipt(dir.path(), &doc, &format!("line-{i}.json")).0,
            0
        );
    }
    // Another customer's export is refused.
    s.customers(&["other"]);
    let (c, _, err) = assent(
        &["export", "--customer", "other", "--url", &s.url],
        &[("ASSENT_TOKEN", &reader)],
    );
    assert_eq!(c, 1);
    assert!(err.contains("FORBIDDEN"), "{err}");
}

/// Records `batches` batches of `per_batch` events of customer `shop`, each of its own
/// subject `bulk-B-I` with its own idempotency key.
fn record_bulk(s: &Server, writer: &str, batches: u32, per_batch: u32) {
    let batch = "mutation($c: ID!, $e: [ConsentEventInput!]!) { recordConsents(customerId: $c, events: $e) { event { id } } }";
    for b in 0..batches {
        let events: Vec<Value> = (0..per_batch)
            .map(|i| {
                let mut e = event_of(&format!("bulk-{b}-{i}"), i);
                e["idempotencyKey"] = json!(format!("bulk-{b}-{i}"));
                e
            })
            .collect();
        let v = s.gql_as(Some(writer), batch, json!({ "c": "shop", "e": events }));
        assert!(v.get("errors").is_none(), "{v:#}");
    }
}

/// The server's log line of a finished scrub.
const REWRITTEN: &str = "shard file rewritten";

/// How many times `line` appears in the server's log so far.
fn log_count(s: &Server, line: &str) -> usize {
    s.log.lock().unwrap().matches(line).count()
}

/// Waits (up to 10 s) until `line` appears `n` times in the server's log, which arrives
/// through a pipe, later than the responses.
fn wait_for_log(s: &Server, line: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log_count(s, line) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(log_count(s, line) >= n, "{line:?} not {n} times in the log");
}

#[test]
fn the_scrub_timer_rewrites_a_shard_file_after_an_erasure_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &["--scrub-interval-ms", "100"]);
    s.customers(&["shop"]);
    let writer = s.key(Some("shop"), "WRITER");
    record(&s, &writer, "shop", event_of("timer-subject", 0));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(log_count(&s, REWRITTEN), 0, "no erasure, no rewrite");
    let erase = "mutation { eraseSubject(customerId: \"shop\", subjectId: \"timer-subject\", reason: \"t\") { erasedEvents } }";
    let v = s.gql_as(Some(&writer), erase, json!({}));
    assert_eq!(
        v["data"]["eraseSubject"]["erasedEvents"],
        json!("1"),
        "{v:#}"
    );
    wait_for_log(&s, REWRITTEN, 1);
    let data = s.data_dir.clone();
    s.stop();
    assert!(files_containing(&data, "timer-subject").is_empty());
}

#[test]
fn the_scrub_timer_spaces_a_large_shards_rewrites_while_scrub_storage_runs_at_once() {
    // Proves: right after a rewrite the timer defers the next one (SCRUB_SPACING_FACTOR x
    // its length) although an erasure is pending; `scrubStorage` rewrites at once.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        &["--scrub-interval-ms", "50", "--shards", "1"],
    );
    s.customers(&["shop"]);
    let writer = s.key(Some("shop"), "WRITER");
    // Enough events that a rewrite takes tens of milliseconds (68 ms here): its spacing
    // then outlasts the test's next steps by far.
    record_bulk(&s, &writer, 4, 500);
    record(&s, &writer, "shop", event_of("spaced-first", 0));
    record(&s, &writer, "shop", event_of("spaced-second", 1));
    let erase = |subject: &str| {
        let q = format!(
            "mutation {{ eraseSubject(customerId: \"shop\", subjectId: \"{subject}\", reason: \"t\") {{ erasedEvents }} }}"
        );
        let v = s.gql_as(Some(&writer), &q, json!({}));
        assert_eq!(
            v["data"]["eraseSubject"]["erasedEvents"],
            json!("1"),
            "{v:#}"
        );
    };
    const DEFERRED: &str = "scheduled scrub deferred";
    erase("spaced-first");
    wait_for_log(&s, REWRITTEN, 1);
    assert_eq!(
        log_count(&s, DEFERRED),
        0,
        "nothing was pending after the rewrite"
    );
    erase("spaced-second");
    wait_for_log(&s, DEFERRED, 1);
    assert_eq!(
        log_count(&s, REWRITTEN),
        1,
        "the timer rewrote the file again at once"
    );
    let v = s.ok("mutation { scrubStorage { shard } }", json!({}));
    assert_eq!(v["scrubStorage"].as_array().unwrap().len(), 1, "{v:#}");
    wait_for_log(&s, REWRITTEN, 2);
    let data = s.data_dir.clone();
    s.stop();
    assert!(files_containing(&data, "spaced-second").is_empty());
}

#[test]
fn writes_are_answered_while_scrub_storage_copies_the_shard() {
    // Proves: a scrub copies beside the writer: appends sent while it copies are answered
    // before it ends (the writer pauses only for the hand-over), and they are all kept.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &["--shards", "1"]);
    s.customers(&["shop"]);
    let writer = s.key(Some("shop"), "WRITER");
    // Enough events that the copy takes far longer than a few appends.
    record_bulk(&s, &writer, 20, 1_000);
    let done = std::sync::atomic::AtomicBool::new(false);
    let answered_meanwhile = std::thread::scope(|scope| {
        let scrub = scope.spawn(|| {
            let q = "mutation { scrubStorage(force: true) { shard rows tookMs pausedMs } }";
            let v = s.gql(q, json!({}));
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            v
        });
        wait_for_log(&s, "scrub started", 1);
        let mut answered = 0;
        for n in 0.. {
            let mut e = event_of(&format!("during-{n}"), n);
            e["idempotencyKey"] = json!(format!("during-{n}"));
            record(&s, &writer, "shop", e);
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            answered += 1;
        }
        let v = scrub.join().unwrap();
        assert_eq!(
            v["data"]["scrubStorage"].as_array().map(Vec::len),
            Some(1),
            "{v:#} {}",
            s.log.lock().unwrap()
        );
        let ms = |field: &str| {
            let n = &v["data"]["scrubStorage"][0][field];
            n.as_str()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{field}: {v:#}"))
        };
        assert!(ms("pausedMs") <= ms("tookMs"), "{v:#}");
        answered
    });
    assert!(
        answered_meanwhile >= 5,
        "only {answered_meanwhile} appends were answered while the scrub ran"
    );
    wait_for_log(&s, REWRITTEN, 1);
    let q = "query($s: String!) { consentHistory(customerId: \"shop\", subjectId: $s) { edges { node { id } } } }";
    let reader = s.key(Some("shop"), "READER");
    for n in [0, answered_meanwhile] {
        let v = s.gql_as(Some(&reader), q, json!({ "s": format!("during-{n}") }));
        let edges = v["data"]["consentHistory"]["edges"].as_array().cloned();
        assert_eq!(edges.map(|e| e.len()), Some(1), "during-{n}: {v:#}");
    }
    let data = s.data_dir.clone();
    s.stop();
    let (status, out, err) = assent(&["audit", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(status, 0, "{out}{err}");
}
