//! Kill -9 of a real server under write load: every acknowledged event survives, and the
//! indexes (maintained behind the durable commit) reach every one of them after restart.

mod common;

use std::collections::BTreeMap;

use common::{RECORD, RECORD_MANY, Server, event};
use serde_json::{Value, json};

#[test]
fn acknowledged_events_survive_kill_9_and_the_restarted_indexes_show_each() {
    // Proves: an acknowledged event is durable although its index step may not have run,
    // and the reopened shards index it from the journal before answering reads.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["c0", "c1", "c2", "c3"]);
    // 8 writers, each recording until the server dies; subject w{writer}-{n % 5}.
    let url = s.url.clone();
    let admin = s.admin.clone();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, admin) = (url.clone(), admin.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut acked: Vec<(String, String, String)> = Vec::new();
                for n in 0.. {
                    let customer = format!("c{}", w % 4);
                    let subject = format!("w{w}-{}", n % 5);
                    let choice = if n % 2 == 0 { "GRANTED" } else { "DENIED" };
                    let body = json!({ "query": RECORD, "variables": { "c": customer, "e": event(&subject, choice, None) } });
                    let sent = client
                        .post(format!("{url}/graphql"))
                        .bearer_auth(&admin)
                        .json(&body)
                        .send()
                        .and_then(|r| r.json::<Value>());
                    match sent {
                        Ok(v) if v["data"]["recordConsent"]["event"]["id"].is_string() => {
                            let id = v["data"]["recordConsent"]["event"]["id"].as_str().unwrap();
                            acked.push((customer, subject, id.to_string()));
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(s); // SIGKILL, no shutdown path
    let acked: Vec<(String, String, String)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acked.len() > 100, "load ran: {} acknowledged", acked.len());

    let s = Server::start(dir.path(), &[]);
    let mut by_subject: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (c, subject, id) in &acked {
        by_subject
            .entry((c.clone(), subject.clone()))
            .or_default()
            .push(id.clone());
    }
    for ((c, subject), ids) in &by_subject {
        let d = s.ok(
            "query($c: ID!, $s: String!) { consentHistory(customerId: $c, subjectId: $s, first: 100, order: OLDEST_FIRST) { edges { node { id } } } consent(customerId: $c, subjectId: $s) { purposes { purpose event { id } } } }",
            json!({ "c": c, "s": subject }),
        );
        let stored: Vec<&str> = d["consentHistory"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap())
            .collect();
        // A request in flight at the kill may have committed without its answer: the
        // history holds every acknowledged event and at most one more per writer.
        for id in ids {
            assert!(stored.contains(&id.as_str()), "{c}/{subject}: {id} lost");
        }
        let latest = stored.last().unwrap();
        let state = &d["consent"]["purposes"];
        assert!(
            state
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["event"]["id"] == *latest),
            "{c}/{subject}: the current state is set by its latest event: {state}"
        );
    }
    s.stop();
    let (code, out) = common::audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
}

/// The scrub copies in the data directory's `shards/` (files ending in `.scrub`).
fn scrub_copies(data: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data.join("shards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".scrub"))
        .collect()
}

#[test]
fn a_kill_9_while_a_scrub_copies_loses_nothing_and_leaves_no_copy_behind() {
    // Proves: a crash in the middle of a scrub's copy (appends answered meanwhile) leaves
    // a ledger that reopens with every acknowledged event, deletes the copies, scrubs
    // again and passes the audit.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--shards", "1"]);
    s.customers(&["c0"]);
    for b in 0..20 {
        let events: Vec<Value> = (0..1_000)
            .map(|i| event(&format!("bulk-{b}-{i}"), "GRANTED", None))
            .collect();
        s.ok(RECORD_MANY, json!({ "c": "c0", "e": events }));
    }
    let (url, admin) = (s.url.clone(), s.admin.clone());
    let scrub = std::thread::spawn(move || {
        let q = json!({ "query": "mutation { scrubStorage(force: true) { shard } }" });
        let client = reqwest::blocking::Client::new();
        let _ = client
            .post(format!("{url}/graphql"))
            .bearer_auth(&admin)
            .json(&q)
            .send();
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while scrub_copies(dir.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut acked = Vec::new();
    for n in 0..5 {
        let d = s.ok(
            RECORD,
            json!({ "c": "c0", "e": event(&format!("during-{n}"), "DENIED", None) }),
        );
        acked.push(
            d["recordConsent"]["event"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        !scrub_copies(dir.path()).is_empty(),
        "the copy was under way at the kill (else raise the event count)"
    );
    drop(s); // SIGKILL, no shutdown path
    scrub.join().unwrap();

    let s = Server::start(dir.path(), &["--shards", "1"]);
    assert_eq!(scrub_copies(dir.path()), Vec::<String>::new());
    for (n, id) in acked.iter().enumerate() {
        let d = s.ok(
            "query($s: String!) { consentHistory(customerId: \"c0\", subjectId: $s) { edges { node { id } } } }",
            json!({ "s": format!("during-{n}") }),
        );
        assert_eq!(d["consentHistory"]["edges"][0]["node"]["id"], json!(id));
    }
    let d = s.ok(
        "mutation { scrubStorage(force: true) { shard rows } }",
        json!({}),
    );
    assert_eq!(d["scrubStorage"].as_array().unwrap().len(), 1, "{d:#}");
    s.stop();
    let (code, out) = common::audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
}

/// Stops `s` and starts it again on the same data directory with `args`, under a
/// file-size limit 2 MiB above its largest file: the shard that grows past it first fails
/// on I/O, as on a full disk.
fn restart_with_little_room(s: Server, args: &[&str]) -> Server {
    let dir = s.data_dir.clone();
    s.stop();
    let largest = common::files_under(&dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .max()
        .unwrap();
    Server::start_with_file_limit(&dir, args, largest + 2 * 1024 * 1024)
}

/// A batch of `n` events with idempotency keys `{tag}-{i}`.
fn keyed_batch(tag: &str, n: u32) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut e = event(&format!("{tag}-{}", i % 50), "GRANTED", None);
            e["idempotencyKey"] = json!(format!("{tag}-{i}"));
            e
        })
        .collect()
}

#[test]
fn a_shard_whose_file_cannot_grow_refuses_writes_clearly_and_loses_nothing() {
    // Proves: when a write fails on I/O (here a file-size limit, as a full disk does), the
    // server lives on, answers STORAGE_FAILED at once from then on (not INTERNAL, no
    // hang), reports it on /healthz, does not flood its log, and a restart once the cause
    // is gone has every acknowledged event, nothing of the failed batch, and audits clean.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--shards", "1"]);
    s.customers(&["c0"]);
    let s = restart_with_little_room(s, &["--shards", "1"]);
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut failed = None;
    for b in 0..400 {
        let tag = format!("b{b}");
        let v = s.gql(
            RECORD_MANY,
            json!({ "c": "c0", "e": keyed_batch(&tag, 200) }),
        );
        if v.get("errors").is_some() {
            failed = Some((tag, v));
            break;
        }
        let events = v["data"]["recordConsents"].as_array().unwrap();
        let first = events[0]["event"]["id"].as_str().unwrap().to_string();
        let last = events[199]["event"]["id"].as_str().unwrap().to_string();
        acked.push((first, last));
    }
    let (failed_tag, v) = failed.expect("the file-size limit was reached");
    assert!(
        acked.len() > 3,
        "batches were acknowledged before the limit"
    );
    assert_eq!(common::code(&v), "STORAGE_FAILED", "{v:#}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("restart the server"), "{message}");
    // From now on every write is refused at once, and the server says why.
    let started = std::time::Instant::now();
    for n in 0..20 {
        let v = s.gql(
            RECORD,
            json!({ "c": "c0", "e": event(&format!("after-{n}"), "DENIED", None) }),
        );
        assert_eq!(common::code(&v), "STORAGE_FAILED", "{v:#}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refusals are prompt"
    );
    let health = s.get("/healthz");
    assert_eq!(health.status(), 503);
    assert!(health.text().unwrap().contains("storage failed"));
    // The index writer retries a failed step after INDEX_RETRY_MS, not in a loop.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let log = s.log.lock().unwrap().clone();
    assert!(log.lines().count() < 200, "the log is not flooded:\n{log}");
    assert_eq!(
        log.matches("storage failed: it refuses writes").count(),
        1,
        "{log}"
    );
    drop(s); // SIGKILL: the latched files are not shut down cleanly either way

    let s = Server::start(dir.path(), &["--shards", "1"]);
    for (first, last) in &acked {
        for id in [first, last] {
            let d = s.ok(
                "query($id: ID!) { event(id: $id) { id } }",
                json!({ "id": id }),
            );
            assert_eq!(d["event"]["id"], json!(id));
        }
    }
    // All or nothing: the refused batch left nothing, so its retry records all 200 anew.
    let retry = s.ok(
        RECORD_MANY,
        json!({ "c": "c0", "e": keyed_batch(&failed_tag, 200) }),
    );
    let events = retry["recordConsents"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e["duplicate"] == json!(false)),
        "{retry:#}"
    );
    assert_eq!(s.get("/healthz").status(), 200);
    s.stop();
    let (code, out) = common::audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
}

/// `(customer on shard 0, customer on shard 1)` among `c0`…`c7` of a two-shard server,
/// found by recording one event (subject `probe`) for each.
fn customers_on_two_shards(s: &Server) -> (String, String) {
    let names: Vec<String> = (0..8).map(|n| format!("c{n}")).collect();
    s.customers(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut on = [None, None];
    for c in &names {
        let d = s.ok(
            "mutation($c: ID!, $e: ConsentEventInput!) { recordConsent(customerId: $c, event: $e) { event { shard } } }",
            json!({ "c": c, "e": event("probe", "GRANTED", None) }),
        );
        let shard = d["recordConsent"]["event"]["shard"].as_u64().unwrap() as usize;
        on[shard].get_or_insert_with(|| c.clone());
    }
    let [Some(a), Some(b)] = on else {
        panic!("c0…c7 all live on one shard")
    };
    (a, b)
}

#[test]
fn a_failed_shard_does_not_keep_the_other_shards_from_their_scrub() {
    // Proves: a scrub of every shard tries each one: a shard whose file failed on I/O is
    // named in a STORAGE_FAILED error that also says which shards were scrubbed meanwhile,
    // and the healthy shard's erased bytes leave the disk all the same (the scrub used to
    // stop at the first shard that failed, shard 0 here).
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shards", "2", "--scrub-interval-ms", "0"];
    let s = Server::start(dir.path(), &args);
    let (failing, healthy) = customers_on_two_shards(&s);
    let s = restart_with_little_room(s, &args);
    const ERASE: &str = "mutation($c: ID!, $s: String!) { eraseSubject(customerId: $c, subjectId: $s, reason: \"t\") { erasedEvents } }";
    // Shard 0 has an erasure pending when its file fails; shard 1 one after that.
    s.ok(ERASE, json!({ "c": failing, "s": "probe" }));
    let v = (0..400)
        .map(|b| {
            let tag = format!("b{b}");
            s.gql(
                RECORD_MANY,
                json!({ "c": failing, "e": keyed_batch(&tag, 200) }),
            )
        })
        .find(|v| v.get("errors").is_some())
        .expect("the file-size limit was reached");
    assert_eq!(common::code(&v), "STORAGE_FAILED", "{v:#}");
    let gone = "healthy-erased-subject";
    s.ok(
        RECORD,
        json!({ "c": healthy, "e": event(gone, "GRANTED", None) }),
    );
    s.ok(ERASE, json!({ "c": healthy, "s": gone }));

    let v = s.gql("mutation { scrubStorage { shard } }", json!({}));
    assert_eq!(common::code(&v), "STORAGE_FAILED", "{v:#}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("shard 0: "), "{message}");
    assert!(message.contains("done meanwhile: [shard 1]"), "{message}");
    drop(s); // SIGKILL: the failed shard is not shut down cleanly either way
    assert_eq!(
        common::files_containing(dir.path(), gone),
        Vec::<String>::new()
    );
}
