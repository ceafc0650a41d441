//! `assent bench` drives every workload against a real server without errors (a check of
//! the tool's correctness, not of speed).

mod common;

use std::process::Command;

use common::Server;
use serde_json::Value;

#[test]
fn every_workload_runs_briefly_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    for workload in [
        "noop", "record", "batch", "withdraw", "read", "mixed", "receipt",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_assent"))
            .args([
                "bench",
                "--url",
                &s.url,
                "--workload",
                workload,
                "--duration",
                "0.5",
                "--connections",
                "4",
            ])
            .args([
                "--customers",
                "5",
                "--seed-subjects",
                "3",
                "--batch",
                "10",
                "--json",
            ])
            .env("ASSENT_BENCH_TOKEN", &s.admin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{workload}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
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
