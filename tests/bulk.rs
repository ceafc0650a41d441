//! The bulk path (`gateway::bulk`): event lists sent as a `[ConsentEventInput!]!` variable
//! are decoded straight from the body. These tests prove it records exactly what
//! async-graphql's own input path records, refuses what that path refuses, and writes
//! nothing when it refuses. A real server over real HTTP; the async-graphql path is reached
//! through a JSON-array request, which the bulk path never takes.

mod common;

use common::{Server, code};
use serde_json::{Value, json};

const FIELDS: &str = "duplicate event { customerId subjectId occurredAt expiresAt purposes { purpose choice } noticeId noticeVersion captureMethod jurisdiction gpc tcfString gppString evidence { ipAddress userAgent pageUrl } idempotencyKey }";

fn record_many() -> String {
    format!(
        "mutation($c: ID!, $events: [ConsentEventInput!]!) {{ recordConsents(customerId: $c, events: $events) {{ {FIELDS} }} }}"
    )
}

/// The same request as a one-element JSON array: async-graphql's input path.
fn via_graphql(s: &Server, query: &str, variables: Value) -> Value {
    let body = json!([{ "query": query, "variables": variables }]);
    let resp: Value = s
        .post_raw(serde_json::to_vec(&body).unwrap())
        .json()
        .unwrap();
    resp[0].clone()
}

/// Events covering every input field and every coercion rule the bulk path mirrors.
fn varied_events(tag: &str) -> Value {
    json!([
        {
            "subjectId": format!("{tag}-full"),
            "purposes": [
                { "purpose": "analytics", "choice": "GRANTED" },
                { "purpose": "ads", "choice": "DENIED" }
            ],
            "noticeId": "banner", "noticeVersion": "v7",
            "captureMethod": "PREFERENCE_CENTRE", "jurisdiction": "EU", "gpc": false,
            "tcfString": "CQ-TCF", "gppString": "DBABMA~CQ",
            "evidence": { "ipAddress": "198.51.100.7", "userAgent": "Mozilla/5.0", "pageUrl": "https://shop.example/" },
            "occurredAt": "2026-11-27T10:00:00.123Z",
            "expiresAt": "2027-11-27T10:00:00+02:00"
        },
        {
            "subjectId": format!("{tag}-minimal"),
            "purposes": { "purpose": "analytics", "choice": "DENIED" },
            "noticeId": "banner", "noticeVersion": "v7",
            "captureMethod": "BANNER_REJECT_ALL", "jurisdiction": "EU",
            "occurredAt": "2026-11-27T10:00:01Z"
        },
        {
            "subjectId": format!("{tag}-nulls"),
            "purposes": [{ "purpose": "ads", "choice": "GRANTED" }],
            "noticeId": "banner", "noticeVersion": "v7",
            "captureMethod": "API", "jurisdiction": "US-CA", "gpc": true,
            "tcfString": null, "gppString": null, "evidence": null, "expiresAt": null,
            "idempotencyKey": null,
            "occurredAt": "2026-11-27T10:00:02Z"
        }
    ])
}

/// An event's fields with the test's subject tag removed.
fn without_tag(mut event: Value, tag: &str) -> Value {
    let subject = event["event"]["subjectId"].as_str().unwrap().to_string();
    event["event"]["subjectId"] = json!(subject.replacen(tag, "", 1));
    event
}

/// The results of a `recordConsents` answer with the test's subject tag removed.
fn untagged(results: &Value, tag: &str) -> Vec<Value> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|e| without_tag(e.clone(), tag))
        .collect()
}

/// Records `events("g")` through async-graphql's input path, then (the text cached by a
/// first bulk request) `events("b")` through the bulk path, checking that all three took
/// it; returns both answers untagged: (bulk, async-graphql's).
fn recorded_both_ways(s: &Server, events: impl Fn(&str) -> Value) -> (Vec<Value>, Vec<Value>) {
    let q = record_many();
    let reference = via_graphql(s, &q, json!({ "c": "acme", "events": events("g") }));
    assert!(reference.get("errors").is_none(), "{reference:#}");
    // The first single request caches the text; the bulk path starts with the second.
    s.ok(&q, json!({ "c": "acme", "events": varied_events("warm") }));
    let before = s.metric("assent_bulk_decoded_events_total");
    let bulk = s.ok(&q, json!({ "c": "acme", "events": events("b") }));
    assert_eq!(
        s.metric("assent_bulk_decoded_events_total"),
        before + 3,
        "the three events took the bulk path"
    );
    let want = untagged(&reference["data"]["recordConsents"], "g");
    (untagged(&bulk["recordConsents"], "b"), want)
}

#[test]
fn the_bulk_path_records_exactly_what_async_graphqls_input_path_records() {
    // Proves: an event list decoded from the body (every field, single-object purposes,
    // nulls, omitted defaults, time zones, GPC under a CCPA-type law) is recorded field for
    // field as async-graphql's own coercion records it, and the bulk path was taken.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let (got, want) = recorded_both_ways(&s, varied_events);
    assert_eq!(got, want);
    let gpc = &got[2]["event"]["purposes"];
    assert!(
        gpc.as_array().unwrap().len() == 3,
        "GPC under US-CA added sale and sharing: {gpc}"
    );
}

fn record_one() -> String {
    format!(
        "mutation($c: ID!, $event: ConsentEventInput!) {{ recordConsent(customerId: $c, event: $event) {{ {FIELDS} }} }}"
    )
}

#[test]
fn single_events_take_the_bulk_path_and_record_what_async_graphql_records() {
    // Proves: a `ConsentEventInput!` variable decoded from the body records, field for
    // field, what async-graphql's coercion records for the same event, for every variety
    // of event, and that the bulk path was taken.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let q = record_one();
    s.ok(
        &q,
        json!({ "c": "acme", "event": varied_events("warm")[0] }),
    );
    for i in 0..3 {
        let reference = via_graphql(
            &s,
            &q,
            json!({ "c": "acme", "event": varied_events("g")[i] }),
        );
        assert!(reference.get("errors").is_none(), "{reference:#}");
        let before = s.metric("assent_bulk_decoded_events_total");
        let bulk = s.ok(&q, json!({ "c": "acme", "event": varied_events("b")[i] }));
        assert_eq!(s.metric("assent_bulk_decoded_events_total"), before + 1);
        assert_eq!(
            without_tag(bulk["recordConsent"].clone(), "b"),
            without_tag(reference["data"]["recordConsent"].clone(), "g"),
            "event {i}"
        );
    }
}

#[test]
fn bad_event_lists_are_refused_by_both_paths_and_write_nothing() {
    // Proves: each malformed event list, and each malformed single event, is
    // BAD_USER_INPUT on the bulk path as on async-graphql's path, and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let q = record_many();
    s.ok(&q, json!({ "c": "acme", "events": varied_events("warm") }));
    let good = varied_events("x")[0].clone();
    let with = |field: &str, value: Value| {
        let mut e = good.clone();
        e[field] = value;
        json!([good.clone(), e])
    };
    let mut without_notice = good.clone();
    without_notice.as_object_mut().unwrap().remove("noticeId");
    let cases = [
        ("unknown field", with("colour", json!("red"))),
        (
            "unknown evidence field",
            with("evidence", json!({ "ip": "1.2.3.4" })),
        ),
        ("enum value", with("captureMethod", json!("BANNER"))),
        ("enum as a number", with("captureMethod", json!(3))),
        ("date", with("occurredAt", json!("yesterday"))),
        ("null purposes", with("purposes", json!(null))),
        (
            "null in a non-null field",
            with("noticeVersion", json!(null)),
        ),
        ("null gpc", with("gpc", json!(null))),
        ("string gpc", with("gpc", json!("true"))),
        ("number subject", with("subjectId", json!(42))),
        ("missing field", json!([good.clone(), without_notice])),
        ("null event", json!([good.clone(), null])),
    ];
    let appended = s.metric("assent_events_appended_total");
    for (what, events) in cases {
        let vars = json!({ "c": "acme", "events": events });
        let bulk = s.gql(&q, vars.clone());
        assert_eq!(code(&bulk), "BAD_USER_INPUT", "bulk path, {what}: {bulk:#}");
        assert!(bulk["data"].is_null(), "{what}: {bulk:#}");
        let reference = via_graphql(&s, &q, vars);
        assert_eq!(code(&reference), "BAD_USER_INPUT", "graphql path, {what}");
    }
    assert_eq!(
        s.metric("assent_events_appended_total"),
        appended,
        "nothing of a refused list written"
    );
    let one = record_one();
    s.ok(&one, json!({ "c": "acme", "event": good.clone() }));
    let appended = s.metric("assent_events_appended_total");
    for (what, event) in [
        ("unknown field", with("colour", json!("red"))[1].clone()),
        ("missing field", without_notice.clone()),
        ("null purposes", with("purposes", json!(null))[1].clone()),
        ("date", with("occurredAt", json!("yesterday"))[1].clone()),
        ("a list for one event", json!([good.clone()])),
    ] {
        let vars = json!({ "c": "acme", "event": event });
        let bulk = s.gql(&one, vars.clone());
        assert_eq!(
            code(&bulk),
            "BAD_USER_INPUT",
            "bulk path, one event, {what}: {bulk:#}"
        );
        let reference = via_graphql(&s, &one, vars);
        assert_eq!(
            code(&reference),
            "BAD_USER_INPUT",
            "graphql path, one event, {what}"
        );
    }
    assert_eq!(
        s.metric("assent_events_appended_total"),
        appended,
        "nothing written"
    );
}

#[test]
fn text_beyond_ascii_is_recorded_as_sent_and_a_body_that_is_not_utf8_writes_nothing() {
    // Proves: the bulk path's one UTF-8 check of the whole body keeps every string as sent
    // (multi-byte characters raw and escaped, recorded as async-graphql's path records
    // them), and a body with a byte that is not UTF-8 inside an event's string is
    // BAD_USER_INPUT (HTTP 400) with nothing written.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let q = record_many();
    let events = |tag: &str| {
        let mut e = varied_events(tag);
        e[0]["noticeVersion"] = json!("été–2026 🍪");
        e[0]["evidence"]["userAgent"] = json!("Mözilla \u{1F600} \"quoted\"");
        e[1]["jurisdiction"] = json!("ÉU");
        e
    };
    let (got, want) = recorded_both_ways(&s, events);
    assert_eq!(got, want);
    assert_eq!(got[0]["event"]["noticeVersion"], "été–2026 🍪");
    // Escaped in the body: the decoder's slow path for escapes still meets the check.
    let escaped = serde_json::to_string(
        &json!({ "query": q, "variables": { "c": "acme", "events": events("e") } }),
    )
    .unwrap()
    .replace("é", "\\u00e9");
    let resp: Value = s.post_raw(escaped.into_bytes()).json().unwrap();
    let got = untagged(&resp["data"]["recordConsents"], "e");
    assert_eq!(got[0]["event"]["noticeVersion"], "été–2026 🍪", "{resp:#}");

    let appended = s.metric("assent_events_appended_total");
    let body = json!({ "query": q, "variables": { "c": "acme", "events": events("bad") } });
    let mut bytes = serde_json::to_vec(&body).unwrap();
    let at = bytes.windows(7).position(|w| w == b"bad-nul").unwrap();
    bytes[at + 4] = 0xFF;
    let resp = s.post_raw(bytes);
    assert_eq!(resp.status().as_u16(), 400);
    let resp: Value = resp.json().unwrap();
    assert_eq!(code(&resp), "BAD_USER_INPUT", "{resp:#}");
    let message = resp["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("not a GraphQL request in JSON"),
        "{message}"
    );
    assert_eq!(
        s.metric("assent_events_appended_total"),
        appended,
        "nothing written"
    );
}

#[test]
fn a_variable_used_by_two_fields_records_its_events_for_each() {
    // Proves: when two fields of one operation use the same event-list variable, each gets
    // the events (the second decodes them again), and operationName picks the operation
    // whose variables are decoded.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let q = "mutation Twice($c: ID!, $e: [ConsentEventInput!]!) { a: recordConsents(customerId: $c, events: $e) { event { id subjectId } } b: recordConsents(customerId: $c, events: $e) { event { id subjectId } } } query Other { __typename }";
    let send = |tag: &str| {
        let body = json!({ "query": q, "operationName": "Twice", "variables": { "c": "acme", "e": varied_events(tag) } });
        let v: Value = s
            .post_raw(serde_json::to_vec(&body).unwrap())
            .json()
            .unwrap();
        assert!(v.get("errors").is_none(), "{v:#}");
        v["data"].clone()
    };
    send("warm");
    let before = s.metric("assent_bulk_decoded_events_total");
    let d = send("t");
    assert_eq!(s.metric("assent_bulk_decoded_events_total"), before + 3);
    let a = d["a"].as_array().unwrap();
    let b = d["b"].as_array().unwrap();
    assert_eq!((a.len(), b.len()), (3, 3));
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["event"]["subjectId"], y["event"]["subjectId"]);
        assert_ne!(x["event"]["id"], y["event"]["id"], "two recorded events");
    }
}

#[test]
fn every_member_order_records_what_async_graphql_records_and_decodes_events_once() {
    // Proves: whatever the order of a body's members (variables before or after the query,
    // operationName before or after the variables, a second operation in the text), and
    // with a variable written `$ e`, the recorded events equal async-graphql's, the bulk
    // path decodes each event list exactly once, and a bulk variable's bad event is still
    // BAD_USER_INPUT while a body cut inside the events is refused as malformed JSON.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["acme"]);
    let named = format!(
        "mutation Rec($c: ID!, $ e: [ConsentEventInput!]!) {{ recordConsents(customerId: $c, events: $ e) {{ {FIELDS} }} }} query Other {{ __typename }}"
    );
    let single = format!(
        "mutation Rec($c: ID!, $e: [ConsentEventInput!]!) {{ recordConsents(customerId: $c, events: $e) {{ {FIELDS} }} }}"
    );
    let anonymous = single.replacen("mutation Rec(", "mutation(", 1);
    let body = |order: &[&str], query: &str, tag: &str, name: bool| {
        let events = serde_json::to_string(&varied_events(tag)).unwrap();
        let member = |m: &str| match m {
            "query" => format!("\"query\":{}", serde_json::to_string(query).unwrap()),
            "variables" => format!("\"variables\":{{\"c\":\"acme\",\"e\":{events}}}"),
            "operationName" => "\"operationName\":\"Rec\"".to_string(),
            _ => "\"extensions\":{\"x\":1}".to_string(),
        };
        let members: Vec<String> = order
            .iter()
            .filter(|m| name || **m != "operationName")
            .map(|m| member(m))
            .collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    };
    let reference = via_graphql(
        &s,
        &anonymous,
        json!({ "c": "acme", "e": varied_events("g") }),
    );
    assert!(reference.get("errors").is_none(), "{reference:#}");
    let want = untagged(&reference["data"]["recordConsents"], "g");
    let orders: [&[&str]; 4] = [
        &["query", "operationName", "variables", "extensions"],
        &["operationName", "variables", "query"],
        &["variables", "extensions", "query", "operationName"],
        &["query", "variables", "operationName"],
    ];
    for (text, name) in [(&named, true), (&anonymous, false), (&single, true)] {
        // The first request caches the text; the bulk path starts with the second.
        s.post_raw(body(orders[0], text, "warm", name));
        for (i, order) in orders.iter().enumerate() {
            let tag = format!("o{i}");
            let before = s.metric("assent_bulk_decoded_events_total");
            let got: Value = s.post_raw(body(order, text, &tag, name)).json().unwrap();
            assert!(got.get("errors").is_none(), "{order:?}: {got:#}");
            let got = untagged(&got["data"]["recordConsents"], &tag);
            assert_eq!(got, want, "{order:?}, operation named: {name}");
            assert_eq!(
                s.metric("assent_bulk_decoded_events_total"),
                before + 3,
                "{order:?}: the three events decoded once, on the bulk path"
            );
        }
    }
    let bad = String::from_utf8(body(orders[0], &anonymous, "bad", false))
        .unwrap()
        .replace("\"captureMethod\":\"API\"", "\"captureMethod\":\"BANNER\"");
    let refused: Value = s.post_raw(bad.clone().into_bytes()).json().unwrap();
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused:#}");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid variable value: $e:"),
        "{message}"
    );
    let cut = &bad.as_bytes()[..bad.find("BANNER").unwrap()];
    let refused: Value = s.post_raw(cut.to_vec()).json().unwrap();
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the body is not a GraphQL request in JSON"),
        "{message}"
    );
}
