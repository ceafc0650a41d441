//! `assent bench` drives every workload against a real server without errors (a check of
//! the tool's correctness, not of speed).

mod common;

use std::process::Command;

use common::Server;
use serde_json::Value;

#[test]
fn every_workload_runs_briefly_without_errors() {
    // Proves: each workload completes against a real server with no error, writes exactly
    // when it should, and reports the CPU per request of both client and server.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let pid = s.pid().to_string();
    for workload in [
        "noop", "record", "batch", "withdraw", "read", "mixed", "receipt",
    ] {
        let args = [
            "--workload",
            workload,
            "--duration",
            "0.5",
            "--connections",
            "4",
        ];
        let more = ["--customers", "5", "--seed-subjects", "3", "--batch", "10"];
        let report = bench(&s, &[&args[..], &more, &["--server-pid", &pid]].concat());
        assert_eq!(report["workload"], workload);
        assert!(
            report["requests"].as_u64().unwrap() > 0,
            "{workload}: {report}"
        );
        assert_eq!(
            report["errors"],
            serde_json::json!({}),
            "{workload}: {report}"
        );
        for side in ["client", "server"] {
            let cpu = report[format!("{side}_cpu_us_per_request")].as_f64();
            assert!(cpu.is_some_and(|c| c > 0.0), "{workload}, {side}: {report}");
        }
        let writes = matches!(
            workload,
            "record" | "batch" | "withdraw" | "mixed" | "subscribe"
        );
        if workload == "subscribe" {
            assert!(
                report["delivered"].as_u64().unwrap() > 0,
                "subscribers received changes: {report}"
            );
        }
        assert_eq!(
            report["events"].as_u64().unwrap() > 0,
            writes,
            "{workload}: {report}"
        );
    }
    let admin = s.admin.clone();
    let log = s.stop();
    assert!(!log.contains(&admin), "the admin key never reaches the log");
}

/// Runs `assent bench --json` against `s` with `args`, asserts that it succeeded, and
/// returns its report.
fn bench(s: &Server, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["bench", "--url", &s.url, "--json"])
        .args(args)
        .env("ASSENT_BENCH_TOKEN", &s.admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `assent bench` (batch, keyed, 4 requests of 25 events) against `s` with `extra`
/// arguments; its report.
fn keyed_batch(s: &Server, extra: &[&str]) -> Value {
    let args = ["--workload", "batch", "--requests", "4", "--duration", "30"];
    let more = ["--connections", "1", "--customers", "3", "--batch", "25"];
    bench(
        s,
        &[&args[..], &more, &["--idempotency-keys"], extra].concat(),
    )
}

#[test]
fn a_second_run_records_new_events_and_a_given_seed_repeats_a_run() {
    // Proves: without `--seed` each run sends requests of its own (a second keyed run
    // appends as many events as the first, where a fixed stream made every one a
    // duplicate the server answered without a write), the report names its seed, and
    // that seed given back sends the same requests again (all duplicates: nothing new).
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let appended = || s.metric("assent_events_appended_total");
    let first = keyed_batch(&s, &[]);
    let after_first = appended();
    let second = keyed_batch(&s, &[]);
    let after_second = appended();
    assert_eq!(first["events"], 100, "{first}");
    assert_eq!(after_first, 100, "the first run appends its events");
    assert_eq!(
        after_second - after_first,
        100,
        "the second run's are new too"
    );
    let seed = second["seed"].as_u64().expect("the report names its seed");
    assert_ne!(
        first["seed"].as_u64(),
        Some(seed),
        "each run has its own seed"
    );
    let again = keyed_batch(&s, &["--seed", &seed.to_string()]);
    assert_eq!(again["seed"].as_u64(), Some(seed), "{again}");
    assert_eq!(again["errors"], serde_json::json!({}), "{again}");
    assert_eq!(
        appended(),
        after_second,
        "the same requests again: duplicates only"
    );
    s.stop();
}
