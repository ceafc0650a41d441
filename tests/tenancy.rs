//! Tenant isolation end to end: every role against every operation, for its own customer
//! and another's, over real HTTP; secrets never logged or stored in clear.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{RECORD, Server, code, event};
use serde_json::{Value, json};

/// What a caller gets for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Allowed,
    Forbidden,
    Unauthenticated,
}

fn outcome(v: &Value) -> Outcome {
    match code(v).as_str() {
        "FORBIDDEN" => Outcome::Forbidden,
        "UNAUTHENTICATED" => Outcome::Unauthenticated,
        // No error, or an error from the operation itself: the policy let it through.
        _ => Outcome::Allowed,
    }
}

struct Op {
    name: &'static str,
    query: String,
    vars: Value,
}

fn ops(event_id: &str, caller: &str, throwaway_key: &str) -> Vec<Op> {
    let op = |name, query: &str, vars| Op {
        name,
        query: query.to_string(),
        vars,
    };
    let mut rec = event(&format!("by-{caller}"), "GRANTED", None);
    rec["subjectId"] = json!(format!("by-{caller}"));
    vec![
        op("recordConsent", RECORD, json!({ "c": "alpha", "e": rec })),
        op(
            "withdrawConsent",
            "mutation { withdrawConsent(customerId: \"alpha\", subjectId: \"w\", purposes: [\"ads\"], jurisdiction: \"EU\", noticeId: \"n\", noticeVersion: \"1\") { duplicate } }",
            json!({}),
        ),
        op(
            "consent",
            "{ consent(customerId: \"alpha\", subjectId: \"s\") { purposes { purpose } } }",
            json!({}),
        ),
        op(
            "consentHistory",
            "{ consentHistory(customerId: \"alpha\", subjectId: \"s\") { edges { cursor } } }",
            json!({}),
        ),
        op(
            "consentEvents",
            "{ consentEvents(customerId: \"alpha\") { edges { cursor } } }",
            json!({}),
        ),
        op(
            "consentStats",
            "{ consentStats(customerId: \"alpha\", since: \"2026-01-01T00:00:00Z\", until: \"2027-01-01T00:00:00Z\") { day } }",
            json!({}),
        ),
        op(
            "event",
            "query($id: ID!) { event(id: $id) { id } }",
            json!({ "id": event_id }),
        ),
        op(
            "receipt",
            "query($id: ID!) { receipt(eventId: $id) { eventId } }",
            json!({ "id": event_id }),
        ),
        op("checkpoint", "{ checkpoint { number } }", json!({})),
        op("publicKeys", "{ publicKeys { keyId } }", json!({})),
        op(
            "createCustomer",
            "mutation($id: ID!) { createCustomer(id: $id, name: \"x\") { id } }",
            json!({ "id": format!("new-{caller}") }),
        ),
        op("customers", "{ customers { edges { cursor } } }", json!({})),
        op(
            "createApiKey",
            "mutation { createApiKey(customerId: \"alpha\", role: READER, label: \"x\") { secret } }",
            json!({}),
        ),
        op(
            "apiKeys",
            "{ apiKeys(customerId: \"alpha\") { id } }",
            json!({}),
        ),
        op(
            "revokeApiKey",
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": throwaway_key }),
        ),
    ]
}

#[test]
fn every_role_against_every_operation_for_its_own_and_another_customer() {
    use Outcome::*;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["alpha", "beta"]);
    let mut secrets = vec![s.admin.clone()];
    let mut key = |c: Option<&str>, r: &str| {
        let k = s.key(c, r);
        secrets.push(k.clone());
        k
    };
    let writer_a = key(Some("alpha"), "WRITER");
    let reader_a = key(Some("alpha"), "READER");
    let writer_b = key(Some("beta"), "WRITER");
    let reader_b = key(Some("beta"), "READER");
    let revoked = key(Some("alpha"), "WRITER");
    let revoked_id = s.ok("{ apiKeys(customerId: \"alpha\") { id label } }", json!({}))["apiKeys"]
        [2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({ "id": revoked_id }),
    );
    let ev = s.ok(
        RECORD,
        json!({ "c": "alpha", "e": event("s", "GRANTED", None) }),
    );
    let event_id = ev["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        RECORD,
        json!({ "c": "alpha", "e": event("w", "GRANTED", None) }),
    );

    let callers: Vec<(&str, Option<String>)> = vec![
        ("ADMIN", Some(s.admin.clone())),
        ("WRITER of alpha", Some(writer_a)),
        ("READER of alpha", Some(reader_a)),
        ("WRITER of beta", Some(writer_b)),
        ("READER of beta", Some(reader_b)),
        ("revoked key", Some(revoked)),
        (
            "unknown key",
            Some("asnt_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        ("no key", None),
    ];
    let expected: BTreeMap<&str, [Outcome; 15]> = BTreeMap::from([
        ("ADMIN", [Allowed; 15]),
        (
            "WRITER of alpha",
            [
                Allowed, Allowed, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Allowed,
                Allowed, Allowed, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
            ],
        ),
        (
            "READER of alpha",
            [
                Forbidden, Forbidden, Allowed, Allowed, Allowed, Allowed, Allowed, Allowed,
                Allowed, Allowed, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
            ],
        ),
        (
            "WRITER of beta",
            [
                Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
                Forbidden, Allowed, Allowed, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
            ],
        ),
        (
            "READER of beta",
            [
                Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
                Forbidden, Allowed, Allowed, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden,
            ],
        ),
        ("revoked key", [Unauthenticated; 15]),
        ("unknown key", [Unauthenticated; 15]),
        ("no key", [Unauthenticated; 15]),
    ]);
    let mut table = String::from(
        "| caller | recordConsent | withdrawConsent | consent | consentHistory | consentEvents | consentStats | event | receipt | checkpoint | publicKeys | createCustomer | customers | createApiKey | apiKeys | revokeApiKey |\n",
    );
    let mut mismatches = Vec::new();
    for (who, token) in &callers {
        let throwaway = s.key(Some("beta"), "READER");
        let throwaway_id = s.ok("{ apiKeys(customerId: \"beta\") { id } }", json!({}))["apiKeys"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let _ = throwaway;
        let slug = who.replace(' ', "-");
        let mut row = format!("| {who} |");
        for (i, op) in ops(&event_id, &slug, &throwaway_id).iter().enumerate() {
            let v = s.gql_as(token.as_deref(), &op.query, op.vars.clone());
            let got = outcome(&v);
            row.push_str(&format!(" {got:?} |"));
            if got != expected[who][i] {
                mismatches.push(format!(
                    "{who} {}: expected {:?}, got {v}",
                    op.name, expected[who][i]
                ));
            }
        }
        table.push_str(&row);
        table.push('\n');
        // Refused writes wrote nothing; allowed ones did.
        let h = s.ok("query($s: String!) { consentHistory(customerId: \"alpha\", subjectId: $s) { edges { cursor } } }", json!({ "s": format!("by-{slug}") }));
        let written = h["consentHistory"]["edges"].as_array().unwrap().len();
        assert_eq!(
            written,
            usize::from(expected[who][0] == Allowed),
            "{who}: events written by recordConsent"
        );
        let created = s.gql(
            "query { customers(first: 500) { edges { node { id } } } }",
            json!({}),
        );
        let exists = created.to_string().contains(&format!("new-{slug}"));
        assert_eq!(
            exists,
            expected[who][10] == Allowed,
            "{who}: createCustomer"
        );
    }
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "policy mismatches:\n{}",
        mismatches.join("\n")
    );

    let log = s.stop();
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a key's secret appears in the server log"
        );
    }
    assert!(
        log.contains("admin-token"),
        "the log says where the admin token is"
    );
}

#[test]
fn root_fragments_directives_introspection_get_and_batches_meet_the_same_access_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["alpha", "beta"]);
    s.ok(
        RECORD,
        json!({ "c": "alpha", "e": event("s", "GRANTED", None) }),
    );
    let reader_b = s.key(Some("beta"), "READER");
    let writer_b = s.key(Some("beta"), "WRITER");
    let alpha_read = "consent(customerId: \"alpha\", subjectId: \"s\") { purposes { purpose } }";
    let hidden_reads = [
        format!("query {{ ...F }} fragment F on Query {{ {alpha_read} }}"),
        format!("query {{ ... on Query {{ {alpha_read} }} }}"),
        format!("query {{ ... @include(if: true) {{ {alpha_read} }} }}"),
        format!("query {{ mine: __typename ...F }} fragment F on Query {{ x: {alpha_read} }}"),
    ];
    for q in &hidden_reads {
        let v = s.gql_as(Some(&reader_b), q, json!({}));
        assert_eq!(code(&v), "FORBIDDEN", "{q}: {v}");
        assert!(
            v["data"].is_null() || v["data"].get("x").is_none_or(Value::is_null),
            "{q}: {v}"
        );
    }
    let mut rec = event("by-fragment", "GRANTED", None);
    rec["subjectId"] = json!("by-fragment");
    let write = "mutation($e: ConsentEventInput!) { ...M } fragment M on Mutation { recordConsent(customerId: \"alpha\", event: $e) { duplicate } }";
    let v = s.gql_as(Some(&writer_b), write, json!({ "e": rec }));
    assert_eq!(code(&v), "FORBIDDEN", "{v}");
    let h = s.ok(
        "{ consentHistory(customerId: \"alpha\", subjectId: \"by-fragment\") { edges { cursor } } }",
        json!({}),
    );
    assert_eq!(
        h["consentHistory"]["edges"],
        json!([]),
        "the refused write wrote nothing"
    );

    // Introspection needs a valid key, as every other field does.
    for q in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"Query\") { name } }",
    ] {
        let v = s.gql_as(None, q, json!({}));
        assert_eq!(code(&v), "UNAUTHENTICATED", "{q} without a key: {v}");
        let v = s.gql_as(
            Some("asnt_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            q,
            json!({}),
        );
        assert_eq!(code(&v), "UNAUTHENTICATED", "{q} with an unknown key: {v}");
        let v = s.gql_as(Some(&reader_b), q, json!({}));
        assert!(v.get("errors").is_none(), "{q} with a key: {v}");
        assert!(v.to_string().contains("\"Query\""), "{q} with a key: {v}");
    }
    // GET and JSON-array batches go through the same check.
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/graphql", s.url);
    let get = |token: &str, q: &str| -> Value {
        client
            .get(&url)
            .query(&[("query", q)])
            .bearer_auth(token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(code(&get(&reader_b, &hidden_reads[0])), "FORBIDDEN");
    let v: Value = client
        .get(&url)
        .query(&[("query", "{ __schema { queryType { name } } }")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        code(&v),
        "UNAUTHENTICATED",
        "GET introspection without a key: {v}"
    );
    let batch: Value = client
        .post(&url)
        .bearer_auth(&reader_b)
        .json(&json!([
            { "query": "{ publicKeys { keyId } }" },
            { "query": hidden_reads[1] },
        ]))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(batch[0].get("errors").is_none(), "{batch}");
    assert_eq!(code(&batch[1]), "FORBIDDEN", "{batch}");
}

#[test]
fn secrets_are_stored_only_hashed_and_the_admin_token_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    s.customers(&["alpha"]);
    let secrets: Vec<String> = (0..3).map(|_| s.key(Some("alpha"), "WRITER")).collect();
    let admin = s.admin.clone();
    drop(s.stop());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for f in &common::files_under(dir.path()) {
        let bytes = std::fs::read(f).unwrap();
        let found = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        for secret in &secrets {
            assert!(
                !found(secret),
                "{} holds a key secret in clear",
                f.display()
            );
        }
        if f.file_name().unwrap() != "admin-token" {
            assert!(
                !found(&admin),
                "{} holds the admin token in clear",
                f.display()
            );
        }
    }
}

#[test]
fn rate_limits_failed_logins_and_a_supplied_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "operator-supplied-admin-token-with-enough-entropy-0001";
    let s = Server::start_env(
        dir.path(),
        &["--rate-limit-per-second", "3"],
        &[("ASSENT_ADMIN_TOKEN", token)],
    );
    assert!(
        !dir.path().join("admin-token").exists(),
        "a supplied token is not written to disk"
    );
    s.customers(&["alpha"]);
    let reader = s.key(Some("alpha"), "READER");
    let results: Vec<Value> = (0..12)
        .map(|_| s.gql_as(Some(&reader), "{ checkpoint { number } }", json!({})))
        .collect();
    let limited: Vec<&Value> = results
        .iter()
        .filter(|v| code(v) == "RATE_LIMITED")
        .collect();
    assert!(
        !limited.is_empty(),
        "12 quick requests at 3/s must be limited"
    );
    assert!(
        limited[0]["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .unwrap()
            > 0
    );
    for _ in 0..12 {
        assert!(
            s.gql("{ checkpoint { number } }", json!({}))
                .get("errors")
                .is_none(),
            "admins are not rate limited"
        );
    }
    let started = std::time::Instant::now();
    assert_eq!(
        code(&s.gql_as(Some("asnt_nope"), "{ checkpoint { number } }", json!({}))),
        "UNAUTHENTICATED"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "failed authentication is slowed down"
    );
    let metrics = s.get("/metrics").text().unwrap();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("assent_auth_failures_total"))
        .unwrap();
    assert!(!failures.ends_with(" 0"), "{failures}");
    let log = s.stop();
    assert!(!log.contains(token) && !log.contains(&reader));
}

#[test]
fn the_cli_creates_keys_offline_and_through_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    let data_dir = dir.path().to_str().unwrap().to_string();
    // Runs `assent <args>`; returns (success, trimmed stdout, stderr).
    let cli = |args: &[&str]| -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_assent"))
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let s = Server::start(dir.path(), &[]);
    // Through the running server, with the admin token read from a file.
    let via_url = [
        "--url",
        &s.url,
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let (ok, _, err) = cli(&[
        &["customers", "create", "--id", "alpha", "--name", "Alpha"][..],
        &via_url,
    ]
    .concat());
    assert!(ok, "{err}");
    let (ok, online, err) = cli(&[
        &["keys", "create", "--customer", "alpha", "--role", "WRITER"][..],
        &via_url,
    ]
    .concat());
    assert!(ok, "{err}");
    assert!(online.starts_with("asnt_"));
    // Offline on the running server's directory is refused with a clear message.
    let offline_reader = [
        "keys",
        "create",
        "--customer",
        "alpha",
        "--role",
        "READER",
        "--data-dir",
        &data_dir,
    ];
    let (ok, _, err) = cli(&offline_reader);
    assert!(!ok);
    assert!(err.contains("running"), "{err}");
    s.stop();
    // Offline on the stopped server's directory.
    let (ok, offline, err) = cli(&offline_reader);
    assert!(ok, "{err}");
    let s = Server::start(dir.path(), &[]);
    let rec = s.gql_as(
        Some(&online),
        RECORD,
        json!({ "c": "alpha", "e": event("x", "GRANTED", None) }),
    );
    assert!(rec.get("errors").is_none(), "{rec}");
    let read = s.gql_as(
        Some(&offline),
        "{ consent(customerId: \"alpha\", subjectId: \"x\") { purposes { choice } } }",
        json!({}),
    );
    assert_eq!(
        read["data"]["consent"]["purposes"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{read}"
    );
    assert_eq!(
        code(&s.gql_as(
            Some(&offline),
            RECORD,
            json!({ "c": "alpha", "e": event("y", "GRANTED", None) })
        )),
        "FORBIDDEN"
    );
}
