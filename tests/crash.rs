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
