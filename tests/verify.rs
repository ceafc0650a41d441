//! Offline verification and audit against artefacts of the real server: receipts,
//! checkpoints, consistency proofs, and tampered data directories.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::{RECORD, RECORD_MANY, Server, event};
use gateway::CHECKPOINTS;
use redb::ReadableTable;
use serde_json::{Value, json};
use shard::checkpoint::{Checkpoint, open_checkpoint};

fn assent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stopped ledger with events on two shards, and files of its artefacts.
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    files: PathBuf,
    public_key: String,
}

/// The running server's signing key, base64, as `publicKeys` publishes it.
fn public_key_of(s: &Server) -> String {
    s.ok("{ publicKeys { publicKey } }", json!({}))["publicKeys"][0]["publicKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A ledger's public key (base64, as `publicKeys` gives it), as a verifier pins it.
fn pinned_key(public_key: &str) -> ed25519_dalek::VerifyingKey {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(public_key)
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let s = Server::start(
        &data,
        &["--shards", "2", "--checkpoint-interval-ms", "100000"],
    );
    let customers: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    s.customers(&customers.iter().map(String::as_str).collect::<Vec<_>>());
    let public_key = public_key_of(&s);
    let mut first_id = String::new();
    for c in &customers {
        // Half the events carry idempotency keys: the audit recomputes their request
        // digests from the stored entry and personal record.
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                let key = (i % 2 == 0).then(|| format!("req-{c}-{i}"));
                event(&format!("s{i}"), "GRANTED", key.as_deref())
            })
            .collect();
        let d = s.ok(RECORD_MANY, json!({ "c": c, "e": batch }));
        if first_id.is_empty() {
            first_id = d["recordConsents"][0]["event"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        }
    }
    let receipt = s.ok(
        "query($id: ID!) { receipt(eventId: $id) { document checkpoint { number note } } }",
        json!({ "id": first_id }),
    );
    std::fs::write(
        files.join("receipt.json"),
        receipt["receipt"]["document"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        files.join("old.note"),
        receipt["receipt"]["checkpoint"]["note"].as_str().unwrap(),
    )
    .unwrap();
    let old_n = receipt["receipt"]["checkpoint"]["number"]
        .as_str()
        .unwrap()
        .to_string();
    for c in &customers {
        s.ok(
            RECORD,
            json!({ "c": c, "e": event("late", "DENIED", None) }),
        );
    }
    let later = s.ok(
        RECORD,
        json!({ "c": "c0", "e": event("last", "DENIED", None) }),
    );
    let id = later["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s.ok(
        "query($id: ID!) { receipt(eventId: $id) { checkpoint { number note } } }",
        json!({ "id": id }),
    );
    std::fs::write(
        files.join("new.note"),
        d["receipt"]["checkpoint"]["note"].as_str().unwrap(),
    )
    .unwrap();
    let new_n = d["receipt"]["checkpoint"]["number"]
        .as_str()
        .unwrap()
        .to_string();
    let proof = s.ok("query($a: UInt64!, $b: UInt64!) { consistencyProof(fromCheckpoint: $a, toCheckpoint: $b) { shards { shardId path } } }", json!({ "a": old_n, "b": new_n }));
    std::fs::write(
        files.join("proof.json"),
        serde_json::to_string(&proof["consistencyProof"]).unwrap(),
    )
    .unwrap();
    s.stop();
    Fixture {
        _dir: dir,
        data,
        files,
        public_key,
    }
}

#[test]
fn receipts_checkpoints_and_consistency_verify_offline_and_every_changed_byte_is_caught() {
    let f = fixture();
    let receipt = f.files.join("receipt.json");
    let r = receipt.to_str().unwrap();
    let ok = assent(&["verify", "receipt", r, "--public-key", &f.public_key]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(
        text(&ok).contains("VALID") && text(&ok).contains("signed by key"),
        "{}",
        text(&ok)
    );
    let unpinned = assent(&["verify", "receipt", r]);
    assert_eq!(unpinned.status.code(), Some(0));
    assert!(
        text(&unpinned).contains("NOT checked"),
        "without a key the output says the signer was not checked"
    );
    let other = base64::engine::general_purpose::STANDARD.encode(
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
            .verifying_key()
            .as_bytes(),
    );
    let wrong = assent(&["verify", "receipt", r, "--public-key", &other, "--json"]);
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "a receipt signed by an unpinned key is refused"
    );
    let v: Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert_eq!(v["step"], "signature");
    let garbage = f.files.join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    assert_eq!(
        assent(&["verify", "receipt", garbage.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );

    // Every single-byte change anywhere in the receipt document is caught.
    let doc = std::fs::read(&receipt).unwrap();
    let key = pinned_key(&f.public_key);
    let mut steps = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..doc.len() {
        let mut bad = doc.clone();
        bad[i] ^= 0x01;
        let Ok(parsed) = serde_json::from_slice::<shard::receipt::Receipt>(&bad) else {
            *steps.entry("unusable".into()).or_default() += 1;
            continue;
        };
        let origin = "localhost/assent";
        match shard::receipt::verify_receipt(&parsed, Some((origin, &key))) {
            Ok(_) => panic!("byte {i} ({:?}) changed undetected", doc[i] as char),
            Err(e) => {
                *steps
                    .entry(format!("{e:?}").split('(').next().unwrap().to_string())
                    .or_default() += 1
            }
        }
    }
    for step in [
        "Entry",
        "Checkpoint",
        "ShardProof",
        "CombinedProof",
        "PersonalCommitment",
    ] {
        assert!(
            steps.contains_key(step),
            "no change was caught at step {step}: {steps:?}"
        );
    }

    let note = |n: &str| f.files.join(n).to_str().unwrap().to_string();
    let cp = assent(&[
        "verify",
        "checkpoint",
        &note("new.note"),
        "--public-key",
        &f.public_key,
    ]);
    assert_eq!(cp.status.code(), Some(0), "{}", text(&cp));
    let cons = assent(&[
        "verify",
        "consistency",
        "--old",
        &note("old.note"),
        "--new",
        &note("new.note"),
        "--proof",
        &note("proof.json"),
        "--public-key",
        &f.public_key,
    ]);
    assert_eq!(cons.status.code(), Some(0), "{}", text(&cons));
    let backwards = assent(&[
        "verify",
        "consistency",
        "--old",
        &note("new.note"),
        "--new",
        &note("old.note"),
        "--proof",
        &note("proof.json"),
    ]);
    assert_eq!(backwards.status.code(), Some(1), "{}", text(&backwards));
    let mut bad_note = std::fs::read_to_string(note("new.note")).unwrap();
    bad_note = bad_note.replacen("assent-shard 0 ", "assent-shard 0 1", 1);
    std::fs::write(f.files.join("bad.note"), bad_note).unwrap();
    assert_eq!(
        assent(&[
            "verify",
            "checkpoint",
            &note("bad.note"),
            "--public-key",
            &f.public_key
        ])
        .status
        .code(),
        Some(1)
    );
}

const JOURNAL: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("journal");

/// Records an event of `subject` for `customer` and asks for its receipt, which makes the
/// server issue a checkpoint that covers it.
/// Records one event and asks for its receipt, which issues a checkpoint covering it;
/// returns the receipt document.
fn record_and_checkpoint(s: &Server, customer: &str, subject: &str) -> String {
    let id = s.ok(
        RECORD,
        json!({ "c": customer, "e": event(subject, "GRANTED", None) }),
    )["recordConsent"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        "query($id: ID!) { receipt(eventId: $id) { document } }",
        json!({ "id": id }),
    )["receipt"]["document"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs the monitor, `assent audit --server URL --state STATE --json EXTRA…`, with `key`.
fn monitor(s: &Server, key: &str, state: &Path, extra: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["audit", "--server", &s.url, "--json", "--state"])
        .arg(state)
        .args(extra)
        .env("ASSENT_AUDIT_TOKEN", key)
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for f in common::files_under(from) {
        let t = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        std::fs::copy(&f, &t).unwrap();
    }
}

fn with_journal(data: &Path, shard: u32, f: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
    let db =
        redb::Database::open(data.join("shards").join(format!("shard-{shard:04}.redb"))).unwrap();
    let txn = db.begin_write().unwrap();
    f(&mut txn.open_table(JOURNAL).unwrap());
    txn.commit().unwrap();
}

#[test]
fn audit_passes_an_intact_ledger_and_names_each_kind_of_tampering() {
    let f = fixture();
    let (code, out) = common::audit(&f.data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    let run = |name: &str, tamper: &dyn Fn(&Path)| -> String {
        let copy = f.data.parent().unwrap().join(name);
        copy_dir(&f.data, &copy);
        tamper(&copy);
        let (code, out) = common::audit(&copy, &[]);
        assert_ne!(code, 0, "{name}: audit passed a tampered ledger: {out}");
        eprintln!("{name}: {out}");
        out
    };
    let out = run("flip", &|d| {
        with_journal(d, 1, |t| {
            let mut b = t.get(5).unwrap().unwrap().value().to_vec();
            let n = b.len();
            b[n - 3] ^= 1;
            t.insert(5, b.as_slice()).unwrap();
        })
    });
    assert!(out.contains("shard 1") && out.contains("entry 5"), "{out}");
    let out = run("delete", &|d| {
        with_journal(d, 0, |t| {
            t.remove(7).unwrap();
        })
    });
    assert!(
        out.contains("shard 0") && out.contains("entry 7 is missing"),
        "{out}"
    );
    let out = run("swap", &|d| {
        with_journal(d, 1, |t| {
            let a = t.get(3).unwrap().unwrap().value().to_vec();
            let b = t.get(4).unwrap().unwrap().value().to_vec();
            t.insert(3, b.as_slice()).unwrap();
            t.insert(4, a.as_slice()).unwrap();
        })
    });
    assert!(out.contains("shard 1") && out.contains("entry 3"), "{out}");
    let out = run("personal", &|d| {
        const PERSONAL: redb::TableDefinition<u64, &[u8]> =
            redb::TableDefinition::new("personal_records");
        let path = d.join("shards").join("shard-0001.redb");
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PERSONAL).unwrap();
            let mut b = t.get(2).unwrap().unwrap().value().to_vec();
            b[40] ^= 1;
            t.insert(2, b.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    });
    assert!(
        out.contains("shard 1") && out.contains("personal record of entry 2"),
        "{out}"
    );
    let out = run("checkpoint", &|d| {
        let db = redb::Database::open(d.join("ledger.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(CHECKPOINTS).unwrap();
            let note = t.get(2).unwrap().unwrap().value().to_string();
            t.insert(
                2,
                note.replacen("assent-time 1", "assent-time 2", 1).as_str(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
    });
    assert!(out.contains("checkpoint 2"), "{out}");
    let out = run("truncate", &|d| {
        let p = d.join("shards").join("shard-0000.redb");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
    });
    assert!(out.contains("shard") || out.contains("redb"), "{out}");
    // The index file: a history row removed (an operator hiding an event from queries),
    // and the whole file deleted.
    let out = run("index-row", &|d| {
        const SUBJECTS: redb::TableDefinition<(u32, [u8; 32], u64), &[u8]> =
            redb::TableDefinition::new("subjects");
        let path = d.join("shards").join("shard-0001.index.redb");
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SUBJECTS).unwrap();
            let first = t.first().unwrap().unwrap().0.value();
            t.remove(first).unwrap();
        }
        txn.commit().unwrap();
    });
    assert!(
        out.contains("shard 1") && out.contains("subject history"),
        "{out}"
    );
    let out = run("index-file", &|d| {
        std::fs::remove_file(d.join("shards").join("shard-0000.index.redb")).unwrap();
    });
    assert!(
        out.contains("shard 0") && out.contains("index file"),
        "{out}"
    );
    // A shard file of an older layout (indexes inside it) is refused, not misread.
    let out = run("layout-4", &|d| {
        const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(d.join("shards").join("shard-0001.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format_version", 4u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    });
    assert!(
        out.contains("shard 1") && out.contains("storage layout 4"),
        "{out}"
    );
    // An index file of an older index layout (2: a time row per event, not runs) is refused
    // as unusable input, not misread as a tampered index.
    let copy = f.data.parent().unwrap().join("index-layout-2");
    copy_dir(&f.data, &copy);
    {
        const INDEX_META: redb::TableDefinition<&str, &[u8]> =
            redb::TableDefinition::new("index_meta");
        let db = redb::Database::open(copy.join("shards").join("shard-0000.index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(INDEX_META)
            .unwrap()
            .insert("format_version", 2u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let (code, out) = common::audit(&copy, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("shard 0") && out.contains("index layout 2"),
        "{out}"
    );
}

/// Replaces the stored checkpoints of the data directory `data` with what `f` makes of
/// them (parsed, in order), each signed again with the directory's own key: a forger who
/// holds the key, which only the audit's comparison with the journal can catch.
fn resign_checkpoints(data: &Path, f: &dyn Fn(Vec<Checkpoint>) -> Vec<Checkpoint>) {
    let key = gateway::read_signing_key(&data.join("signing-key")).unwrap();
    let db = redb::Database::open(data.join("ledger.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(CHECKPOINTS).unwrap();
        let old: Vec<(u64, Checkpoint)> = t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), open_checkpoint(v.value(), None).unwrap().0)
            })
            .collect();
        for (n, _) in &old {
            t.remove(n).unwrap();
        }
        for c in f(old.into_iter().map(|(_, c)| c).collect()) {
            t.insert(c.number, c.sign(&key).as_str()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn audit_spills_state_claims_to_its_temp_dir_and_refuses_a_temp_dir_it_cannot_write() {
    // Proves: with a memory bound of about one state, the audit of a real ledger spills
    // every claim to --temp-dir and reports what it reports in memory; a changed state is
    // still named through the spilled runs; a --temp-dir that cannot take a file is an
    // unusable input (exit 2), named before anything is read, and one that fills up
    // during the audit leaves it unfinished (exit 2), never a verdict on the ledger.
    let f = fixture();
    let report = |dir: &Path, extra: &[&str]| -> (i32, Value, String) {
        let (code, out) = common::audit(dir, &[&["--json"], extra].concat());
        let json = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or(Value::Null);
        (code, json, out)
    };
    let (code, whole, out) = report(&f.data, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(whole["spilledClaims"], 0, "{out}");
    let tmp = tempfile::tempdir().unwrap();
    let small = [
        "--claim-memory-bytes",
        "64",
        "--temp-dir",
        tmp.path().to_str().unwrap(),
    ];
    let (code, spilled, out) = report(&f.data, &small);
    assert_eq!(code, 0, "{out}");
    assert!(spilled["spilledClaims"].as_u64().unwrap() >= 120, "{out}");
    for field in [
        "entries",
        "indexRows",
        "personalRecords",
        "checkpoints",
        "intact",
    ] {
        assert_eq!(spilled[field], whole[field], "{field}: {out}");
    }

    let copy = f.data.parent().unwrap().join("state-flip");
    copy_dir(&f.data, &copy);
    {
        const SUBJECTS: redb::TableDefinition<(u32, [u8; 32], u64), &[u8]> =
            redb::TableDefinition::new("subjects");
        let db = redb::Database::open(copy.join("shards").join("shard-0000.index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SUBJECTS).unwrap();
            let (key, mut state) = {
                let mut rows = t.iter().unwrap().map(|r| r.unwrap());
                let (k, v) = rows.find(|(k, _)| k.value().2 == u64::MAX).unwrap();
                (k.value(), v.value().to_vec())
            };
            // Index layout 4: group count, seq, occurred_at_ms, expires_at_ms (a tag, and
            // 8 bytes when present), purpose count, then the first name and its choice.
            let expires_at = 4 + 16;
            let count_at = expires_at + if state[expires_at] == 0 { 1 } else { 9 };
            let name_len = usize::from(state[count_at + 4]);
            state[count_at + 5 + name_len] ^= 3; // GRANTED <-> DENIED
            t.insert(key, state.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let (code, out) = common::audit(&copy, &small);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("shard 0") && out.contains("does not set it so"),
        "{out}"
    );

    let missing = tmp.path().join("no-such-dir");
    let (code, out) = common::audit(&f.data, &["--temp-dir", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--temp-dir") && out.contains("no-such-dir"),
        "{out}"
    );

    // A temp dir that fills up during the audit (a 512-byte file-size limit stands for a
    // full disk): the audit is unfinished (exit 2), not a verdict on the ledger (exit 1).
    let limited = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -f 1 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_assent"),
        ])
        .args(["audit", "--data-dir"])
        .arg(&f.data)
        .args(small)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&limited.stderr).to_string()
        + &String::from_utf8_lossy(&limited.stdout);
    assert_eq!(limited.status.code(), Some(2), "{out}");
    assert!(
        out.contains("audit not finished") && out.contains("temporary file"),
        "{out}"
    );
}

#[test]
fn audit_meets_thousands_of_checkpoints_one_at_a_time_and_names_each_that_lies() {
    // Proves: checkpoints are read as a stream (3,000 more of them audit INTACT and are
    // counted), and a gap, a time going back, a root that is not the journal's and a size
    // beyond the journal are each named, even when the forger re-signs with the real key.
    let f = fixture();
    let run = |name: &str, edit: &dyn Fn(Vec<Checkpoint>) -> Vec<Checkpoint>| {
        let copy = f.data.parent().unwrap().join(name);
        copy_dir(&f.data, &copy);
        resign_checkpoints(&copy, edit);
        common::audit(&copy, &["--json"])
    };
    let (code, out) = run("many", &|mut cs| {
        let last = cs.last().unwrap().clone();
        for i in 1..=3_000 {
            cs.push(Checkpoint {
                number: last.number + i,
                ..last.clone()
            });
        }
        cs
    });
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let stored = report["checkpoints"].as_u64().unwrap();
    assert!(stored > 3_000, "{out}");
    let (code, out) = run("gap", &|cs| {
        assert!(cs.len() >= 2, "the fixture stores at least two checkpoints");
        cs.into_iter().filter(|c| c.number != 2).collect()
    });
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint 2 is missing"), "{out}");
    fn last_edited(mut cs: Vec<Checkpoint>, edit: impl Fn(&mut Checkpoint)) -> Vec<Checkpoint> {
        edit(cs.last_mut().unwrap());
        cs
    }
    let (code, out) = run("time", &|cs| {
        last_edited(cs, |c| c.time_ms = i64::from(u32::MAX))
    });
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("time goes back"), "{out}");
    let (code, out) = run("root", &|cs| {
        last_edited(cs, |c| c.shards[1].root = c.shards[0].chain_head)
    });
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("disagrees with shard 1's journal"), "{out}");
    let (code, out) = run("size", &|cs| last_edited(cs, |c| c.shards[0].size += 5));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("in shard 0 but its journal has") && out.contains("entries were removed"),
        "{out}"
    );
}

/// Every file under `dir` with its bytes, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    common::files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn audit_never_changes_what_it_checks_and_repairs_an_unclean_copy_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &["--shards", "2"]);
    s.customers(&["c0"]);
    let batch: Vec<Value> = (0..30)
        .map(|i| event(&format!("s{i}"), "GRANTED", None))
        .collect();
    s.ok(RECORD_MANY, json!({ "c": "c0", "e": batch }));
    drop(s); // SIGKILL: the files were not shut down cleanly.

    let before = snapshot(&data);
    let (code, out) = common::audit(&data, &[]);
    assert_eq!(
        code, 2,
        "an unclean ledger is unusable without --repair: {out}"
    );
    assert!(
        out.contains("not shut down cleanly") && out.contains("--repair"),
        "{out}"
    );
    assert!(
        snapshot(&data) == before,
        "the refused audit changed a file"
    );

    let (code, out) = common::audit(&data, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("30 entries"), "{out}");

    // Now clean: the plain audit passes and leaves every byte as it was.
    let before = snapshot(&data);
    let (code, out) = common::audit(&data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(snapshot(&data) == before, "the audit changed a file");
}

#[test]
fn the_monitor_checks_that_each_new_checkpoint_extends_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--checkpoint-interval-ms", "100000"]);
    s.customers(&["c0", "c1"]);
    let state = dir.path().join("monitor.json");
    let monitor = || {
        let o = monitor(&s, &s.admin, &state, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let checkpoint_now = |c: &str| record_and_checkpoint(&s, c, "x");
    checkpoint_now("c0");
    let first = monitor();
    assert!(first["checked"].as_u64().unwrap() >= 1, "{first}");
    checkpoint_now("c1");
    checkpoint_now("c0");
    let second = monitor();
    assert!(second["checked"].as_u64().unwrap() >= 2, "{second}");
    assert!(second["latest"].as_u64() > first["latest"].as_u64());
    assert_eq!(monitor()["checked"], 0, "nothing new since the last run");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(
        saved["verifierKey"]
            .as_str()
            .unwrap()
            .starts_with("localhost/assent+"),
        "the signer is pinned on first use"
    );
}

#[test]
fn the_monitor_checks_the_checkpoints_of_its_first_page_against_each_other() {
    // Proves: on a first run (no state), the checkpoints of the first page are checked
    // against each other, not only signed: checkpoint 2, re-signed with the server's own
    // key over a root its shard never had, is named (with checkpoint 1 or 3).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--checkpoint-interval-ms", "100000"];
    let s = Server::start(&data, &flags);
    s.customers(&["c0"]);
    for subject in ["alice", "bob", "carol"] {
        record_and_checkpoint(&s, "c0", subject);
    }
    s.stop();
    resign_checkpoints(&data, &|mut cs| {
        let two = cs.iter_mut().find(|c| c.number == 2).expect("checkpoint 2");
        let grown = two
            .shards
            .iter_mut()
            .find(|h| h.size > 0)
            .expect("a written shard");
        grown.root = grown.chain_head;
        cs
    });
    let s = Server::start(&data, &flags);
    let o = monitor(&s, &s.admin, &dir.path().join("monitor.json"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The pair before it passes when checkpoint 1 held that shard empty (any tree extends
    // the empty one); the pair after it cannot.
    let said = text(&o);
    assert!(
        said.contains("checkpoint 2 does not extend checkpoint 1")
            || said.contains("checkpoint 3 does not extend checkpoint 2"),
        "{said}"
    );
}

#[test]
fn the_monitor_catches_a_server_that_forks_its_history_under_the_same_key() {
    // Proves: a real server that signs a different history after a checkpoint the monitor
    // saw (same key, same checkpoint numbers: a copy of its data directory taken earlier
    // and written to differently) is named as rewriting history, with exit code 1.
    let dir = tempfile::tempdir().unwrap();
    let honest_dir = dir.path().join("honest");
    let fork_dir = dir.path().join("fork");
    let state = dir.path().join("monitor.json");
    let flags = ["--checkpoint-interval-ms", "100000"];
    let monitor = |s: &Server| monitor(s, &s.admin, &state, &[]);
    let s = Server::start(&honest_dir, &flags);
    s.customers(&["c0"]);
    record_and_checkpoint(&s, "c0", "alice");
    let o = monitor(&s);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    s.stop();
    copy_dir(&honest_dir, &fork_dir);

    // The honest history goes on; the monitor follows it.
    let s = Server::start(&honest_dir, &flags);
    record_and_checkpoint(&s, "c0", "bob");
    let o = monitor(&s);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    s.stop();

    // The forked copy signs other events with the same key and the same numbers.
    let forked = Server::start(&fork_dir, &flags);
    record_and_checkpoint(&forked, "c0", "mallory");
    record_and_checkpoint(&forked, "c0", "mallory-2");
    let o = monitor(&forked);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(json!({}));
    let said = format!("{report} {}", text(&o));
    assert!(said.contains("rewrote history"), "{said}");
}

#[test]
fn the_monitor_compares_checkpoints_shown_to_others_and_names_a_split_view() {
    // Proves: `--compare` takes checkpoints shown to someone else (a receipt, a note,
    // another monitor's state file); one the server serves is accepted, while one of the
    // same number from a forked copy signed with the same key (a split view), and one with
    // a number the followed server never issued, are each named with exit code 1; a note
    // no trusted key signed is unusable input (exit 2).
    let dir = tempfile::tempdir().unwrap();
    let (honest_dir, fork_dir) = (dir.path().join("honest"), dir.path().join("fork"));
    let flags = ["--checkpoint-interval-ms", "100000"];
    let s = Server::start(&honest_dir, &flags);
    s.customers(&["c0"]);
    record_and_checkpoint(&s, "c0", "alice");
    s.stop();
    copy_dir(&honest_dir, &fork_dir);
    let save = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let latest_note = |s: &Server| {
        s.ok("{ checkpoint { note } }", json!({}))["checkpoint"]["note"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Someone else is shown the fork: one checkpoint, then one more.
    let forked = Server::start(&fork_dir, &flags);
    record_and_checkpoint(&forked, "c0", "mallory");
    let fork_note = save("fork.note", &latest_note(&forked));
    record_and_checkpoint(&forked, "c0", "mallory-2");
    let fork_later = save("fork-later.note", &latest_note(&forked));
    forked.stop();

    let s = Server::start(&honest_dir, &flags);
    let receipt = save("receipt.json", &record_and_checkpoint(&s, "c0", "bob"));
    let monitor = |state: &str, compare: &[&Path]| {
        let args: Vec<&Path> = compare
            .iter()
            .flat_map(|c| [Path::new("--compare"), c])
            .collect();
        monitor(&s, &s.admin, &dir.path().join(state), &args)
    };
    let o = monitor("a.json", &[&receipt]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["compared"], 1, "{report}");
    let other_monitor = dir.path().join("a.json");
    let o = monitor("b.json", &[&receipt, &other_monitor]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = monitor("c.json", &[&receipt, &fork_note]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("shows different histories"),
        "{}",
        text(&o)
    );
    let o = monitor("d.json", &[&fork_later]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not served"), "{}", text(&o));

    let unsigned = save("unsigned.note", "not a checkpoint\n");
    let o = monitor("e.json", &[&unsigned]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn the_monitor_pages_through_many_checkpoints_with_a_rate_limited_key_and_names_a_withheld_one() {
    // Proves: a reader key limited to 2 requests a second checks 251 checkpoints (three
    // pages) by waiting out RATE_LIMITED answers instead of failing; a server that lists
    // checkpoint 181 after 179 is named as withholding 180, and the state file keeps the
    // first page's progress (checkpoint 100), written before the failing page; a
    // checkpoint signed by another key is named, and so are the last checkpoint a run saw
    // changed or gone on the next run (history replaced, or rolled back to a backup).
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let flags = [
        "--checkpoint-interval-ms",
        "100000",
        "--rate-limit-per-second",
        "2",
    ];
    let s = Server::start(&base, &flags);
    s.customers(&["c0"]);
    record_and_checkpoint(&s, "c0", "alice");
    s.stop();
    let more = |cs: Vec<Checkpoint>| {
        let last = cs.last().unwrap().clone();
        (1..=251)
            .map(|n| Checkpoint {
                number: n,
                ..last.clone()
            })
            .collect::<Vec<_>>()
    };
    let monitor = |s: &Server, key: &str, state: &Path| monitor(s, key, state, &[]);
    let problem = |o: &Output, said: &str| {
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
        assert!(text(o).contains(said), "{}", text(o));
    };

    let many = dir.path().join("many");
    copy_dir(&base, &many);
    resign_checkpoints(&many, &|cs| more(cs));
    let s = Server::start(&many, &flags);
    let reader = s.key(Some("c0"), "READER");
    let o = monitor(&s, &reader, &dir.path().join("many.json"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["checked"], 251, "{report}");
    assert_eq!(report["latest"], 251, "{report}");
    let limited = s.metric("assent_graphql_errors_total{code=\"RATE_LIMITED\"}");
    assert!(
        limited > 0,
        "the run never met the rate limit, so it proves nothing"
    );
    s.stop();

    let gap = dir.path().join("gap");
    copy_dir(&base, &gap);
    resign_checkpoints(&gap, &|cs| {
        more(cs).into_iter().filter(|c| c.number != 180).collect()
    });
    let s = Server::start(&gap, &flags);
    let state = dir.path().join("gap.json");
    problem(&monitor(&s, &s.admin, &state), "checkpoint 180 is missing");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let note = saved["note"].as_str().unwrap();
    assert_eq!(
        open_checkpoint(note, None).unwrap().0.number,
        100,
        "{saved}"
    );
    s.stop();

    // Checkpoint 150 signed by another key (its body unchanged) is named.
    let forged = dir.path().join("forged");
    copy_dir(&many, &forged);
    {
        let db = redb::Database::open(forged.join("ledger.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(CHECKPOINTS).unwrap();
            let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            for n in [150, 251] {
                let note = t.get(n).unwrap().unwrap().value().to_string();
                let c = open_checkpoint(&note, None).unwrap().0;
                t.insert(n, c.sign(&other).as_str()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let s = Server::start(&forged, &flags);
    problem(
        &monitor(&s, &s.admin, &dir.path().join("forged.json")),
        "checkpoint 150: ",
    );

    // The monitor that saw checkpoint 251 finds it changed here, and gone from a server
    // restored from the base copy (one checkpoint).
    let seen = dir.path().join("many.json");
    problem(
        &monitor(&s, &s.admin, &seen),
        "checkpoint 251, checked on the last run, is not the same note",
    );
    s.stop();
    let s = Server::start(&base, &flags);
    problem(
        &monitor(&s, &s.admin, &seen),
        "checkpoint 251, checked on the last run, is gone",
    );
}

#[test]
fn vectors_verify_as_the_manifest_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.len() >= 10);
    for case in manifest {
        let args: Vec<String> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_assent"))
            .current_dir(&dir)
            .args(&args)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            case["exit"].as_i64().map(|c| c as i32),
            "{args:?}: {}",
            text(&out)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(step) = case["step"].as_str() {
            assert_eq!(v["step"], step, "{args:?}: {v}");
        }
    }
}

/// Runs `node verify.mjs ARGS` (the verifier written from the docs alone) in `dir`, feeding
/// it `stdin`: its exit code and its JSON output lines.
fn js_verify(node: &Path, dir: &Path, args: &[&str], stdin: &str) -> (i32, Vec<Value>) {
    use std::io::Write as _;
    let mut child = Command::new("node")
        .arg(node.join("verify.mjs"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "the verifier crashed: {}",
        text(&out)
    );
    let lines = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("{l}: {}", text(&out))))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn a_verifier_written_from_the_docs_alone_gives_every_vector_the_manifests_verdict() {
    // tests/node/verify.mjs was written from docs/receipts.md and design.md only; if the
    // docs left out a rule it needs, it could not agree with every vector.
    let node = common::node_clients();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in manifest {
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let (code, out) = js_verify(node.path(), &dir, &args[1..], "");
        assert_eq!(
            Some(code as i64),
            case["exit"].as_i64(),
            "{args:?}: {out:?}"
        );
        assert_eq!(out[0]["step"], case["step"], "{args:?}: {out:?}");
        checked += 1;
    }
    assert_eq!(checked, 27, "every vector was run");
}

/// Judges every single-bit change of the receipt `doc` that still parses as a receipt with
/// `shard::receipt::verify_receipt` and with the docs' verifier (one `node` run for all),
/// asserts that both give the same verdict and step, and returns assent's verdicts.
fn js_agrees_on_every_change(
    node: &Path,
    dir: &Path,
    key_file: &Path,
    doc: &[u8],
    key: &ed25519_dalek::VerifyingKey,
) -> Vec<(usize, &'static str)> {
    let (mut lines, mut want) = (String::new(), Vec::new());
    for i in 0..doc.len() {
        let mut bad = doc.to_vec();
        bad[i] ^= 0x01;
        let Ok(parsed) = serde_json::from_slice::<shard::receipt::Receipt>(&bad) else {
            continue;
        };
        let as_value: Value = serde_json::from_slice(&bad).unwrap();
        lines += &format!("{as_value}\n");
        let verdict = shard::receipt::verify_receipt(&parsed, Some(("localhost/assent", key)));
        want.push((i, verdict.err().map_or("valid", |e| e.step())));
    }
    let args = ["receipts", "--public-key", key_file.to_str().unwrap()];
    let (code, got) = js_verify(node, dir, &args, &lines);
    assert_eq!((code, got.len()), (0, want.len()));
    let disagree: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|((_, step), js)| js["step"].as_str().unwrap_or("valid") != *step)
        .map(|((i, step), js)| format!("byte {i}: assent {step}, the docs' verifier {js}"))
        .collect();
    assert!(
        disagree.is_empty(),
        "{} of {}: {disagree:#?}",
        disagree.len(),
        want.len()
    );
    want
}

#[test]
fn a_verifier_written_from_the_docs_alone_agrees_with_assent_on_every_changed_byte_of_a_real_receipt()
 {
    // A receipt, checkpoints and a consistency proof from a real server; then every
    // single-bit change of the receipt document that still parses, judged by both.
    let f = fixture();
    let node = common::node_clients();
    let key_file = f.files.join("public-key.txt");
    std::fs::write(&key_file, &f.public_key).unwrap();
    let key_arg = ["--public-key", key_file.to_str().unwrap()];
    for args in [
        vec!["receipt", "receipt.json"],
        vec!["checkpoint", "new.note"],
        vec![
            "consistency",
            "--old",
            "old.note",
            "--new",
            "new.note",
            "--proof",
            "proof.json",
        ],
    ] {
        let args = [&args[..], &key_arg[..]].concat();
        let (code, out) = js_verify(node.path(), &f.files, &args, "");
        assert_eq!(
            (code, &out[0]["valid"]),
            (0, &json!(true)),
            "{args:?}: {out:?}"
        );
    }

    let doc = std::fs::read(f.files.join("receipt.json")).unwrap();
    let want = js_agrees_on_every_change(
        node.path(),
        &f.files,
        &key_file,
        &doc,
        &pinned_key(&f.public_key),
    );
    let steps: std::collections::BTreeSet<&str> = want.iter().map(|(_, s)| *s).collect();
    assert!(!steps.contains("valid"), "every change is caught");
    for step in [
        "format",
        "entry",
        "personal-commitment",
        "checkpoint",
        "signature",
        "shard-inclusion",
        "combined-inclusion",
    ] {
        assert!(
            steps.contains(step),
            "no change was caught at step {step}: {steps:?}"
        );
    }
}

#[test]
fn a_verifier_written_from_the_docs_alone_agrees_with_assent_on_erasure_receipts() {
    // The erasure entry (kind 2) of a real server, and a receipt of an erased event
    // (`personal: null`): both valid to both verifiers, and every change judged alike.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    s.customers(&["shop"]);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let d = s.ok(
                RECORD,
                json!({ "c": "shop", "e": event("v", "GRANTED", None) }),
            );
            d["recordConsent"]["event"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let erase = "mutation { eraseSubject(customerId: \"shop\", subjectId: \"v\", reason: \"DSAR 7\") { receipts { document } } }";
    let erasure = s.ok(erase, json!({}))["eraseSubject"]["receipts"][0]["document"]
        .as_str()
        .unwrap()
        .to_string();
    let erased = s.ok(
        "query($id: ID!) { receipt(eventId: $id) { document } }",
        json!({ "id": ids[1] }),
    )["receipt"]["document"]
        .as_str()
        .unwrap()
        .to_string();
    let public_key = public_key_of(&s);
    s.stop();
    let node = common::node_clients();
    let key_file = dir.path().join("public-key.txt");
    std::fs::write(&key_file, &public_key).unwrap();
    let key = pinned_key(&public_key);
    for doc in [&erasure, &erased] {
        let parsed: Value = serde_json::from_str(doc).unwrap();
        let (code, out) = js_verify(
            node.path(),
            dir.path(),
            &["receipts", "--public-key", key_file.to_str().unwrap()],
            &format!("{parsed}\n"),
        );
        assert_eq!(
            (code, &out[0]["valid"]),
            (0, &json!(true)),
            "{doc}: {out:?}"
        );
        let want =
            js_agrees_on_every_change(node.path(), dir.path(), &key_file, doc.as_bytes(), &key);
        assert!(want.iter().any(|(_, step)| *step == "entry"), "{want:?}");
        assert!(
            want.iter().all(|(_, step)| *step != "valid"),
            "every change is caught"
        );
    }
    assert!(
        erased.contains("\"personal\": null") || erased.contains("\"personal\":null"),
        "{erased}"
    );
}

/// Runs `assent verify export FILE --json` with extra arguments; (exit code, parsed output).
fn verify_export(file: &Path, extra: &[&str]) -> (i32, Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["verify", "export", "--json"])
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    let out: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| json!(text(&o)));
    (o.status.code().unwrap(), out)
}

/// A change to an export's lines.
type Change = Box<dyn FnOnce(&mut Vec<Value>)>;

/// The export's lines, changed by `f`, written to `name` under `dir`.
fn changed_export(
    dir: &Path,
    name: &str,
    lines: &[Value],
    f: impl FnOnce(&mut Vec<Value>),
) -> PathBuf {
    let mut lines = lines.to_vec();
    f(&mut lines);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_verifier_written_from_the_docs_alone_checks_a_whole_journal_against_signed_checkpoints() {
    // `assent journal` prints a stopped ledger's entries as stored; the docs' verifier
    // re-chains them and recomputes each shard's root at the sizes two signed checkpoints
    // name. Each kind of tampering with the printed journal, and a changed entry in the
    // data directory itself, is caught by it (and the latter by `assent audit` too).
    let f = fixture();
    let node = common::node_clients();
    let key_file = f.files.join("public-key.txt");
    std::fs::write(&key_file, &f.public_key).unwrap();
    let dump = |data: &Path| {
        let out = assent(&["journal", "--data-dir", data.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    // Both verifiers judge each journal: they must agree on the verdict and the step.
    let check = |name: &str, lines: &[String]| {
        let file = f.files.join(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let key = key_file.to_str().unwrap();
        let args = [
            "journal",
            name,
            "--checkpoint",
            "old.note",
            "--public-key",
            key,
        ];
        let (code, out) = js_verify(node.path(), &f.files, &args, "");
        let old = f.files.join("old.note");
        let ours = assent(&[
            "verify",
            "journal",
            file.to_str().unwrap(),
            "--checkpoint",
            old.to_str().unwrap(),
            "--public-key",
            key,
            "--json",
        ]);
        let ours: Value = serde_json::from_slice(&ours.stdout).unwrap();
        assert_eq!(
            (ours["valid"].as_bool(), ours["step"].as_str()),
            (out[0]["valid"].as_bool(), out[0]["step"].as_str()),
            "{name}: assent verify journal says {ours}, the docs' verifier {out:?}"
        );
        (code, out[0].clone())
    };
    let lines: Vec<String> = dump(&f.data).lines().map(String::from).collect();
    let entries: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"entry\""))
        .collect();
    let (code, out) = check("intact.jsonl", &lines);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["entries"], json!(entries.len()), "{out}");
    assert_eq!(
        out["checkpoints"], 2,
        "the stored newest and old.note: {out}"
    );

    // Byte 60 is inside the customer id: the entry still decodes, its hash changes.
    let changed = |i: usize| {
        let mut lines = lines.clone();
        let mut v: Value = serde_json::from_str(&lines[i]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(v["entry"].as_str().unwrap()).unwrap();
        bytes[60] ^= 0x01;
        v["entry"] = json!(b64.encode(bytes));
        lines[i] = v.to_string();
        lines
    };
    let last = *entries.last().unwrap();
    let mut deleted = lines.clone();
    deleted.remove(entries[7]);
    let mut swapped = lines.clone();
    swapped.swap(entries[3], entries[4]);
    let cases = [
        ("changed entry", changed(entries[5]), "chain"),
        ("changed last entry", changed(last), "root"),
        ("deleted entry", deleted, "entry"),
        ("swapped entries", swapped, "entry"),
        ("truncated", lines[..last - 2].to_vec(), "missing"),
    ];
    for (name, lines, step) in cases {
        let (code, out) = check("tampered.jsonl", &lines);
        assert_eq!(
            (code, out["step"].as_str()),
            (1, Some(step)),
            "{name}: {out}"
        );
    }

    // An entry changed in the data directory: both tools name the shard's problem.
    let copy = f.files.join("copy");
    copy_dir(&f.data, &copy);
    with_journal(&copy, 0, |t| {
        let mut bytes = t.get(5).unwrap().unwrap().value().to_vec();
        bytes[60] ^= 0x01;
        t.insert(5, bytes.as_slice()).unwrap();
    });
    let (code, report) = common::audit(&copy, &[]);
    assert_eq!(code, 1, "{report}");
    let lines: Vec<String> = dump(&copy).lines().map(String::from).collect();
    let (code, out) = check("from-copy.jsonl", &lines);
    assert_eq!((code, out["step"].as_str()), (1, Some("chain")), "{out}");
    let nothing = f.files.join("nothing");
    let missing = assent(&["journal", "--data-dir", nothing.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
}

#[test]
fn a_running_server_serves_its_admin_the_journal_on_its_disk_and_it_verifies() {
    // `assent journal --server` pages through `journalEntries` (more than one page on a
    // shard): the entry lines are those `assent journal --data-dir` prints once the server
    // stopped, and they verify against the server's signed checkpoint. Only an ADMIN key
    // reaches them; bad page arguments are BAD_USER_INPUT.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(
        &data,
        &["--shards", "2", "--checkpoint-interval-ms", "100000"],
    );
    s.customers(&["acme", "shop"]);
    for (c, n) in [("acme", 600), ("acme", 600), ("shop", 30)] {
        let events: Vec<Value> = (0..n)
            .map(|i| event(&format!("s{i}"), "GRANTED", None))
            .collect();
        s.ok(RECORD_MANY, json!({ "c": c, "e": events }));
    }
    record_and_checkpoint(&s, "shop", "last");
    let token_file = data.join("admin-token");
    let from_server = |key_file: &Path| {
        let key_file = key_file.to_str().unwrap();
        assent(&["journal", "--server", &s.url, "--token-file", key_file])
    };
    let remote = from_server(&token_file);
    assert_eq!(remote.status.code(), Some(0), "{}", text(&remote));
    let reader_file = dir.path().join("reader");
    std::fs::write(&reader_file, s.key(Some("acme"), "READER")).unwrap();
    let refused = from_server(&reader_file);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("FORBIDDEN"), "{}", text(&refused));
    let page = "query($s: Int!, $n: Int) { journalEntries(shard: $s, first: $n) { size } }";
    for (shard, first) in [(9, 1), (0, 1_001), (0, 0), (-1, 1)] {
        let v = s.gql(page, json!({ "s": shard, "n": first }));
        assert_eq!(
            common::code(&v),
            "BAD_USER_INPUT",
            "shard {shard}, first {first}: {v}"
        );
    }
    let public_key = public_key_of(&s);
    s.stop();

    let local = assent(&["journal", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(local.status.code(), Some(0), "{}", text(&local));
    let entry_lines = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("\"entry\""))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        entry_lines(&remote).len(),
        1_231,
        "every entry, over two pages on acme's shard"
    );
    assert_eq!(entry_lines(&remote), entry_lines(&local));
    let file = dir.path().join("remote.jsonl");
    std::fs::write(&file, &remote.stdout).unwrap();
    let verified = assent(&[
        "verify",
        "journal",
        file.to_str().unwrap(),
        "--public-key",
        &public_key,
        "--json",
    ]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

/// A value changed the way a forger might: strings and numbers altered, booleans flipped,
/// nulls filled, lists reordered, objects emptied.
fn forged(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(format!("{s}x")),
        Value::Number(n) => json!(n.as_u64().unwrap_or(0) + 1),
        Value::Bool(b) => json!(!b),
        Value::Null => json!("2030-01-01T00:00:00Z"),
        Value::Array(a) if a.len() > 1 => Value::Array(a.iter().rev().cloned().collect()),
        Value::Array(_) => json!([]),
        Value::Object(_) => json!({}),
    }
}

/// `assent verify export`'s verdict on `file`: its exit code and failing step.
fn assent_export_verdict(file: &Path, key: &str) -> (i32, Option<String>) {
    let (code, out) = verify_export(file, &["--public-key", key]);
    (code, out["step"].as_str().map(String::from))
}

#[test]
fn a_verifier_written_from_the_docs_alone_agrees_with_assent_on_changed_exports() {
    // Exports of a real server (JSON lines and an access document), each field of each
    // event removed or forged, lines reordered, the document's subject and state changed:
    // the docs' verifier must give every variant assent's exit code and step.
    let x = real_export();
    let node = common::node_clients();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("public-key.txt");
    std::fs::write(&key_file, &x.key).unwrap();
    let mut variants: Vec<(String, String)> = Vec::new();
    let jsonl = |lines: &[Value]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    variants.push(("intact".into(), jsonl(&x.lines)));
    let erased = x
        .lines
        .iter()
        .position(|l| l["subjectId"].is_null())
        .unwrap();
    for i in [0, erased] {
        for field in x.lines[i]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "receipt")
        {
            for (how, change) in [
                ("removed", None),
                ("forged", Some(forged(&x.lines[i][field]))),
            ] {
                let mut lines = x.lines.clone();
                match change {
                    None => drop(lines[i].as_object_mut().unwrap().remove(field)),
                    Some(v) => lines[i][field] = v,
                }
                variants.push((format!("line {i} {field} {how}"), jsonl(&lines)));
            }
        }
    }
    let mut swapped = x.lines.clone();
    swapped.swap(3, 4);
    variants.push(("swapped".into(), jsonl(&swapped)));
    let mut repeated = x.lines.clone();
    repeated.insert(2, x.lines[2].clone());
    variants.push(("repeated".into(), jsonl(&repeated)));
    let mut added = x.lines.clone();
    added[1]["note"] = json!("added");
    variants.push(("added field".into(), jsonl(&added)));
    let doc: Value = serde_json::from_str(&x.access).unwrap();
    variants.push(("document".into(), doc.to_string()));
    for pointer in [
        "/subjectId",
        "/customerId",
        "/currentState/0/choice",
        "/currentState/0/eventId",
        "/currentState/1/expiresAt",
        "/events/0/event/purposes",
        "/events/1/event/occurredAt",
    ] {
        let mut v = doc.clone();
        let target = v.pointer_mut(pointer).unwrap();
        *target = forged(target);
        variants.push((format!("document {pointer}"), v.to_string()));
    }
    let mut fewer = doc.clone();
    fewer["currentState"].as_array_mut().unwrap().pop();
    variants.push(("document state left out".into(), fewer.to_string()));

    let mut steps = std::collections::BTreeMap::<String, u32>::new();
    let mut disagree = Vec::new();
    for (name, text_) in &variants {
        let file = dir.path().join("variant");
        std::fs::write(&file, text_).unwrap();
        let want = assent_export_verdict(&file, &x.key);
        let (code, out) = js_verify(
            node.path(),
            dir.path(),
            &[
                "export",
                "variant",
                "--public-key",
                key_file.to_str().unwrap(),
            ],
            "",
        );
        let got = (code, out[0]["step"].as_str().map(String::from));
        if got != want {
            disagree.push(format!(
                "{name}: assent {want:?}, the docs' verifier {out:?}"
            ));
        }
        *steps.entry(format!("{want:?}")).or_default() += 1;
    }
    assert!(
        disagree.is_empty(),
        "{} of {}: {disagree:#?}",
        disagree.len(),
        variants.len()
    );
    for want in ["(0, None)", "fields", "order", "subject", "current-state"] {
        assert!(
            steps.keys().any(|k| k.contains(want)),
            "no variant ended with {want}: {steps:?}"
        );
    }
}

/// A real server's exports: customer `shop` on two shards, six events of three subjects
/// (one with an idempotency key, `s1`'s two erased), as `assent export --receipts` lines,
/// `s0`'s access export document, and the ledger's public key.
struct RealExport {
    _dir: tempfile::TempDir,
    lines: Vec<Value>,
    access: String,
    key: String,
}

fn real_export() -> RealExport {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &["--shards", "2"]);
    s.customers(&["shop"]);
    let (reader, writer) = (s.key(Some("shop"), "READER"), s.key(Some("shop"), "WRITER"));
    for i in 0..5 {
        let key = format!("req-{i}");
        let e = event(
            &format!("s{}", i % 3),
            "GRANTED",
            (i == 2).then_some(key.as_str()),
        );
        s.ok(RECORD, json!({ "c": "shop", "e": e }));
    }
    s.ok(
        RECORD,
        json!({ "c": "shop", "e": event("s0", "DENIED", None) }),
    );
    let erased = s.gql_as(
        Some(&writer),
        "mutation { eraseSubject(customerId: \"shop\", subjectId: \"s1\", reason: \"DSAR\") { erasedEvents } }",
        json!({}),
    );
    assert!(erased.get("errors").is_none(), "{erased:#}");
    let key = public_key_of(&s);
    let exported = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args([
            "export",
            "--customer",
            "shop",
            "--receipts",
            "--url",
            &s.url,
        ])
        .env("ASSENT_TOKEN", &reader)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", text(&exported));
    let lines: Vec<Value> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let access = s.gql_as(
        Some(&reader),
        "{ subjectExport(customerId: \"shop\", subjectId: \"s0\") { document } }",
        json!({}),
    )["data"]["subjectExport"]["document"]
        .as_str()
        .unwrap()
        .to_string();
    RealExport {
        _dir: dir,
        lines,
        access,
        key,
    }
}

#[test]
fn an_export_verifies_event_by_event_against_its_receipts_and_each_change_is_named() {
    let RealExport {
        _dir: dir,
        lines,
        access: doc,
        key,
    } = real_export();
    let d = dir.path();
    let intact = changed_export(d, "export.jsonl", &lines, |_| {});

    // The API's rendering of every exported field is what the receipts prove.
    let (code, out) = verify_export(&intact, &["--public-key", &key]);
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(out["details"]["events"], 6);
    assert_eq!(
        out["details"]["erased"], 2,
        "s1's two events lost their personal data"
    );
    assert_eq!(out["details"]["customers"], json!(["shop"]));
    let (code, out) = verify_export(&intact, &[]);
    assert_eq!(code, 0);
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .contains("signer NOT checked"),
        "{out:#}"
    );
    let mut piped = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["verify", "export", "-", "--public-key", &key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut piped.stdin.take().unwrap(),
        &std::fs::read(&intact).unwrap(),
    )
    .unwrap();
    let piped = piped.wait_with_output().unwrap();
    assert!(piped.status.success(), "{}", text(&piped));
    assert!(
        text(&piped).contains("6 events of customer shop"),
        "{}",
        text(&piped)
    );

    // Each kind of change is caught and named with its line and step.
    let erased_line = lines.iter().position(|l| l["subjectId"].is_null()).unwrap();
    let cases: Vec<(&str, Change, &str, &str)> = vec![
        (
            "choice",
            Box::new(|l| l[1]["purposes"][0]["choice"] = json!("DENIED")),
            "fields",
            "line 2",
        ),
        (
            "time",
            Box::new(|l| l[0]["recordedAt"] = json!("2020-01-01T00:00:00Z")),
            "fields",
            "`recordedAt`",
        ),
        (
            "extra",
            Box::new(|l| l[2]["note"] = json!("added")),
            "fields",
            "`note` is not a field",
        ),
        (
            "unerased",
            Box::new(move |l| l[erased_line]["subjectId"] = json!("s1")),
            "fields",
            "`subjectId`",
        ),
        ("swapped", Box::new(|l| l.swap(3, 4)), "order", "line 5"),
        (
            "repeated",
            Box::new(|l| l.insert(3, l[2].clone())),
            "order",
            "line 4",
        ),
        (
            "receipt of another",
            Box::new(|l| l[1]["receipt"] = l[0]["receipt"].clone()),
            "fields",
            "`id`",
        ),
        (
            "entry byte",
            Box::new(|l| {
                let e = l[0]["receipt"]["entry"].as_str().unwrap().to_string();
                let mut b = base64::engine::general_purpose::STANDARD.decode(e).unwrap();
                b[20] ^= 1;
                l[0]["receipt"]["entry"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(b));
            }),
            "shard-inclusion",
            "line 1",
        ),
    ];
    for (name, change, step, named) in cases {
        let f = changed_export(d, &format!("{name}.jsonl"), &lines, change);
        let (code, out) = verify_export(&f, &["--public-key", &key]);
        assert_eq!(code, 1, "{name}: {out:#}");
        assert_eq!(out["step"], step, "{name}: {out:#}");
        assert!(
            out["reason"].as_str().unwrap().contains(named),
            "{name}: {out:#}"
        );
    }
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let other = base64::engine::general_purpose::STANDARD.encode(other.as_bytes());
    let (code, out) = verify_export(&intact, &["--public-key", &other]);
    assert_eq!(
        (code, out["step"].as_str()),
        (1, Some("signature")),
        "{out:#}"
    );
    let bare = changed_export(d, "bare.jsonl", &lines, |l| {
        l[3].as_object_mut().unwrap().remove("receipt");
    });
    let (code, out) = verify_export(&bare, &[]);
    assert_eq!(
        code, 2,
        "an export without receipts proves nothing: {out:#}"
    );

    // A subject's access export: its events, customer, subject and current state.
    let access = d.join("access.json");
    std::fs::write(&access, &doc).unwrap();
    let (code, out) = verify_export(&access, &["--public-key", &key]);
    assert_eq!(
        (code, out["details"]["events"].as_u64()),
        (0, Some(3)),
        "{out:#}"
    );
    let original: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(original["currentState"][1]["purpose"], "analytics");
    assert_eq!(
        original["currentState"][1]["choice"], "DENIED",
        "s0's last event denied it"
    );
    let changes = [
        ("/currentState/1/choice", json!("GRANTED"), "current-state"),
        ("/subjectId", json!("s2"), "subject"),
    ];
    for (pointer, value, step) in changes {
        let mut v = original.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        std::fs::write(&access, v.to_string()).unwrap();
        let (code, out) = verify_export(&access, &[]);
        assert_eq!(
            (code, out["step"].as_str()),
            (1, Some(step)),
            "{pointer}: {out:#}"
        );
    }
}
