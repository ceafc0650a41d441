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
                "--server-pid",
                &pid,
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
