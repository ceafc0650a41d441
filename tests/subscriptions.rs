//! Subscriptions over a real WebSocket: live delivery in order, filters, resume with no gap
//! or duplicate while writes continue, authentication in `connection_init`, both protocols.

mod common;

use std::time::Duration;

use common::{RECORD, Server, event};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SUB: &str = "subscription($c: ID!, $s: String, $a: String) { consentChanges(customerId: $c, subjectId: $s, after: $a) { cursor event { id sequence subjectId } } }";

/// Opens a WebSocket with `protocol` and sends `connection_init` with `token`.
async fn connect(url: &str, protocol: &str, token: Option<&str>) -> (Ws, Value) {
    let mut req = format!("{}/graphql", url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket opens");
    let payload = match token {
        Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
        None => json!({}),
    };
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": payload }).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await;
    (ws, ack)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ka" && v["type"] != "ping" {
                return v;
            }
        }
    }
}

async fn start(ws: &mut Ws, protocol: &str, id: &str, vars: Value) {
    start_query(ws, protocol, id, SUB, vars).await;
}

async fn start_query(ws: &mut Ws, protocol: &str, id: &str, query: &str, vars: Value) {
    let kind = if protocol == "graphql-ws" {
        "start"
    } else {
        "subscribe"
    };
    ws.send(Message::text(
        json!({ "id": id, "type": kind, "payload": { "query": query, "variables": vars } })
            .to_string(),
    ))
    .await
    .unwrap();
}

/// The next delivered change (`next`, or `data` in the legacy protocol).
async fn change(ws: &mut Ws) -> Value {
    let v = next_json(ws).await;
    assert!(
        v["type"] == "next" || v["type"] == "data",
        "expected a change, got {v}"
    );
    v["payload"]["data"]["consentChanges"].clone()
}

/// Starts a server with `args` and `customers` (off the async runtime's threads).
async fn server(
    args: &'static [&'static str],
    customers: &'static [&'static str],
) -> (tempfile::TempDir, std::sync::Arc<Server>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let s = tokio::task::spawn_blocking(move || {
        let s = Server::start(&d, args);
        s.customers(customers);
        s
    })
    .await
    .unwrap();
    (dir, std::sync::Arc::new(s))
}

fn record(s: &Server, customer: &str, subject: &str) -> String {
    s.ok(
        RECORD,
        json!({ "c": customer, "e": event(subject, "GRANTED", None) }),
    )["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_arrive_in_order_filtered_and_resume_without_gaps() {
    let (_dir, s) = server(&[], &["acme", "other"]).await;
    let reader = tokio::task::spawn_blocking({
        let s = s.clone();
        move || s.key(Some("acme"), "READER")
    })
    .await
    .unwrap();

    let (mut all, ack) = connect(&s.url, "graphql-transport-ws", Some(&reader)).await;
    assert_eq!(ack["type"], "connection_ack");
    start(
        &mut all,
        "graphql-transport-ws",
        "1",
        json!({ "c": "acme" }),
    )
    .await;
    let (mut alice, _) = connect(&s.url, "graphql-transport-ws", Some(&reader)).await;
    start(
        &mut alice,
        "graphql-transport-ws",
        "1",
        json!({ "c": "acme", "s": "alice" }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let subjects = ["alice", "bob", "alice", "carol", "alice"];
    let ids: Vec<String> = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            let mut ids = Vec::new();
            for subject in subjects {
                ids.push(record(&s, "acme", subject));
                record(&s, "other", subject); // another customer's events must not appear
            }
            ids
        }
    })
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(change(&mut all).await);
    }
    let got_ids: Vec<&str> = got
        .iter()
        .map(|c| c["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got_ids, ids, "every change once, in ledger order");
    for expected in [&ids[0], &ids[2], &ids[4]] {
        let c = change(&mut alice).await;
        assert_eq!(&c["event"]["id"], expected.as_str());
        assert_eq!(c["event"]["subjectId"], "alice");
    }

    // Resume: disconnect after the second change, write while away, reconnect with its cursor.
    let cursor = got[1]["cursor"].as_str().unwrap().to_string();
    drop(all);
    let writer = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            (0..30)
                .map(|i| record(&s, "acme", &format!("w{i}")))
                .collect::<Vec<_>>()
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (mut again, _) = connect(&s.url, "graphql-transport-ws", Some(&reader)).await;
    start(
        &mut again,
        "graphql-transport-ws",
        "1",
        json!({ "c": "acme", "a": cursor }),
    )
    .await;
    let written = writer.await.unwrap();
    let mut expected: Vec<String> = ids[2..].to_vec();
    expected.extend(written);
    let mut resumed = Vec::new();
    while resumed.len() < expected.len() {
        resumed.push(
            change(&mut again).await["event"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(resumed, expected, "no gap and no duplicate at the seam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_need_a_key_of_the_customer_and_the_legacy_protocol_works() {
    let (_dir, s) = server(&[], &["acme", "other"]).await;
    let (reader, other, writer) = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            (
                s.key(Some("acme"), "READER"),
                s.key(Some("other"), "READER"),
                s.key(Some("acme"), "WRITER"),
            )
        }
    })
    .await
    .unwrap();
    for (token, code) in [
        (Some(other.as_str()), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
        (Some(writer.as_str()), "FORBIDDEN"),
        (Some("asnt_bogus"), "UNAUTHENTICATED"),
    ] {
        let (mut ws, _) = connect(&s.url, "graphql-transport-ws", token).await;
        start(&mut ws, "graphql-transport-ws", "1", json!({ "c": "acme" })).await;
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "next", "{v}");
        assert_eq!(v["payload"]["errors"][0]["extensions"]["code"], code, "{v}");
        assert_eq!(next_json(&mut ws).await["type"], "complete");
    }
    let (mut legacy, ack) = connect(&s.url, "graphql-ws", Some(&reader)).await;
    assert_eq!(ack["type"], "connection_ack");
    start(&mut legacy, "graphql-ws", "7", json!({ "c": "acme" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = tokio::task::spawn_blocking({
        let s = s.clone();
        move || record(&s, "acme", "zoe")
    })
    .await
    .unwrap();
    assert_eq!(change(&mut legacy).await["event"]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_inside_a_root_fragment_is_refused_not_silently_ended() {
    let (_dir, s) = server(&[], &["acme", "other"]).await;
    let other = tokio::task::spawn_blocking({
        let s = s.clone();
        move || s.key(Some("other"), "READER")
    })
    .await
    .unwrap();
    let hidden = [
        "subscription($c: ID!) { ...F } fragment F on Subscription { consentChanges(customerId: $c) { cursor } }",
        "subscription($c: ID!) { ... on Subscription { consentChanges(customerId: $c) { cursor } } }",
        "subscription($c: ID!) { ... @include(if: true) { consentChanges(customerId: $c) { cursor } } }",
    ];
    for (i, q) in hidden.iter().enumerate() {
        let (mut ws, _) = connect(&s.url, "graphql-transport-ws", Some(&other)).await;
        let id = format!("{i}");
        start_query(
            &mut ws,
            "graphql-transport-ws",
            &id,
            q,
            json!({ "c": "acme" }),
        )
        .await;
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "next", "{q}: {v}");
        assert_eq!(
            v["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{q}: {v}"
        );
        assert_eq!(next_json(&mut ws).await["type"], "complete", "{q}");
    }
    // The same subscription written directly is refused for this key.
    let (mut ws, _) = connect(&s.url, "graphql-transport-ws", Some(&other)).await;
    start(&mut ws, "graphql-transport-ws", "d", json!({ "c": "acme" })).await;
    let v = next_json(&mut ws).await;
    assert_eq!(
        v["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_open_subscriptions_leaves_files_that_open_without_repair() {
    // Proves: shutdown closes every shard file cleanly even while subscriptions (and the
    // server's timers) still hold the ledger, so the read-only audit accepts the files.
    for round in 0..3 {
        let (dir, s) = server(&["--shards", "2"], &["acme"]).await;
        let mut sockets = Vec::new();
        for i in 0..3 {
            let (mut ws, _) = connect(&s.url, "graphql-transport-ws", Some(&s.admin)).await;
            start(
                &mut ws,
                "graphql-transport-ws",
                &format!("{i}"),
                json!({ "c": "acme" }),
            )
            .await;
            sockets.push(ws);
        }
        tokio::task::spawn_blocking({
            let s = s.clone();
            move || {
                for i in 0..10 {
                    record(&s, "acme", &format!("s{i}"));
                }
            }
        })
        .await
        .unwrap();
        let s = std::sync::Arc::try_unwrap(s).ok().expect("one owner");
        tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
        drop(sockets);
        let (code, out) = common::audit(dir.path(), &[]);
        assert_eq!(code, 0, "round {round}: {out}");
    }
}

#[test]
fn the_graphql_ws_npm_client_subscribes_unchanged() {
    // Installs graphql-ws and ws from the npm registry into the test's own folder.
    let node_dir = common::node_clients();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    s.customers(&["acme"]);
    let reader = s.key(Some("acme"), "READER");
    let ws_url = format!("{}/graphql", s.url.replace("http://", "ws://"));
    let mut child = std::process::Command::new("node")
        .args(["subscribe.mjs", &ws_url, &reader, "acme", "3"])
        .current_dir(node_dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Record until the client has had three: it may take a moment to connect, and a
    // subscription without a cursor starts at the head.
    let mut ids = Vec::new();
    for i in 0..100 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        ids.push(record(&s, "acme", &format!("n{i}")));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got.len(), 3);
    let first = ids
        .iter()
        .position(|id| *id == got[0])
        .expect("a recorded event");
    assert_eq!(
        got,
        ids[first..first + 3],
        "three consecutive events, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_does_not_stall_writers_and_catches_up_from_the_journal() {
    let (_dir, s) = server(&["--shards", "1", "--feed-capacity", "4"], &["acme"]).await;
    let reader = tokio::task::spawn_blocking({
        let s = s.clone();
        move || s.key(Some("acme"), "READER")
    })
    .await
    .unwrap();
    let (mut slow, _) = connect(&s.url, "graphql-transport-ws", Some(&reader)).await;
    // Large deliveries (a 1 KiB user agent each), so the socket buffers fill quickly.
    let big = "subscription($c: ID!) { consentChanges(customerId: $c) { cursor event { id evidence { userAgent } } } }";
    slow.send(Message::text(json!({ "id": "1", "type": "subscribe", "payload": { "query": big, "variables": { "c": "acme" } } }).to_string())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 12 commits of 1,000 events (≈ 13 MB of deliveries) while the subscriber reads
    // nothing: far more than the socket buffers and the 4-commit feed hold.
    let started = std::time::Instant::now();
    let ids: Vec<String> = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            let mut ids = Vec::new();
            for b in 0..12 {
                let batch: Vec<Value> = (0..1000)
                    .map(|i| {
                        let mut e = event(&format!("b{b}-{i}"), "GRANTED", None);
                        e["evidence"]["userAgent"] = json!("x".repeat(1024));
                        e
                    })
                    .collect();
                let d = s.ok(common::RECORD_MANY, json!({ "c": "acme", "e": batch }));
                ids.extend(
                    d["recordConsents"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["event"]["id"].as_str().unwrap().to_string()),
                );
            }
            ids
        }
    })
    .await
    .unwrap();
    let writing = started.elapsed();
    let mut got = Vec::with_capacity(ids.len());
    while got.len() < ids.len() {
        got.push(
            change(&mut slow).await["event"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        got == ids,
        "the slow subscriber still gets every event once, in order"
    );
    let metrics = tokio::task::spawn_blocking({
        let s = s.clone();
        move || s.get("/metrics").text().unwrap()
    })
    .await
    .unwrap();
    let lagged = metrics
        .lines()
        .find(|l| l.starts_with("assent_subscribers_lagged_total"))
        .unwrap()
        .to_string();
    assert!(
        !lagged.ends_with(" 0"),
        "the subscriber fell behind and replayed from the journal: {lagged}"
    );
    eprintln!("12,000 events written in {writing:?} while the subscriber did not read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_subscriptions_with_a_close_code() {
    let (_dir, s) = server(&[], &["acme"]).await;
    let (mut ws, _) = connect(&s.url, "graphql-transport-ws", Some(&s.admin)).await;
    start(&mut ws, "graphql-transport-ws", "1", json!({ "c": "acme" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::task::spawn_blocking(move || {
        std::sync::Arc::into_inner(s)
            .expect("the only handle")
            .stop()
    });
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        u16::from(close.expect("a close code").code),
        1001,
        "going away"
    );
    let log = stopping.await.unwrap();
    assert!(log.contains("stopped"));
}
