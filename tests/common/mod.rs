//! Starts the real `assent serve` binary on a free port in a temp dir and talks to it over
//! real HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

/// A running server process.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    /// The admin token the server bootstrapped (read from `<data-dir>/admin-token`).
    pub admin: String,
    client: reqwest::blocking::Client,
}

impl Server {
    /// The server's process id (for `assent bench --server-pid`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `assent serve` on `data_dir` with extra flags; waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_env(data_dir, extra, &[])
    }

    /// Like [`Server::start`] with extra environment variables. With `ASSENT_ADMIN_TOKEN`
    /// among them, that is the admin token; otherwise `<data-dir>/admin-token` is.
    pub fn start_env(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::spawn(
            Command::new(env!("CARGO_BIN_EXE_assent")),
            data_dir,
            extra,
            envs,
        )
    }

    /// Like [`Server::start`] with a file-size limit (`ulimit -f`, rounded down to 512-byte
    /// blocks): a write that would make a file larger fails (EFBIG), as on a full disk.
    pub fn start_with_file_limit(data_dir: &Path, extra: &[&str], limit_bytes: u64) -> Server {
        let mut sh = Command::new("sh");
        let script = format!("ulimit -f {} && exec \"$0\" \"$@\"", limit_bytes / 512);
        sh.args(["-c", &script, env!("CARGO_BIN_EXE_assent")]);
        Server::spawn(sh, data_dir, extra, &[])
    }

    /// Runs `serve` with `command` (the binary, or a shell that execs it).
    fn spawn(
        mut command: Command,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(envs.iter().copied())
            .env("ASSENT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the assent binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("listening on http://") {
                        let rest = &line[i + "listening on ".len()..];
                        let url = rest.split_whitespace().next().unwrap().to_string();
                        let _ = tx.send(url);
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", log.lock().unwrap()));
        let supplied = envs
            .iter()
            .find(|(k, _)| *k == "ASSENT_ADMIN_TOKEN")
            .map(|(_, v)| v.to_string());
        let admin = supplied.unwrap_or_else(|| {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .expect("admin-token written")
                .trim()
                .to_string()
        });
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
            admin,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// POSTs a GraphQL request with `token` (or none) and returns the JSON response.
    pub fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .expect("request sent")
            .json()
            .expect("JSON response")
    }

    /// Creates customers (as admin).
    pub fn customers(&self, ids: &[&str]) {
        for id in ids {
            self.ok(
                "mutation($id: ID!) { createCustomer(id: $id, name: $id) { id } }",
                json!({ "id": id }),
            );
        }
    }

    /// Creates a key (as admin) and returns its secret.
    pub fn key(&self, customer: Option<&str>, role: &str) -> String {
        let d = self.ok(
            "mutation($c: ID, $r: Role!) { createApiKey(customerId: $c, role: $r, label: \"test\") { secret key { id } } }",
            json!({ "c": customer, "r": role }),
        );
        d["createApiKey"]["secret"].as_str().unwrap().to_string()
    }

    /// POSTs a GraphQL request as admin and returns the JSON response (any HTTP status).
    pub fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(Some(&self.admin), query, variables)
    }

    /// Like [`Server::gql`] but panics on any GraphQL error; returns `data`.
    pub fn ok(&self, query: &str, variables: Value) -> Value {
        let v = self.gql(query, variables);
        assert!(
            v.get("errors").is_none(),
            "unexpected errors: {v:#}\nquery: {query}"
        );
        v["data"].clone()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .expect("request sent")
    }

    /// The sum of the `/metrics` series whose line starts with `series` (a counter's name,
    /// or its name with labels).
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.get("/metrics").text().unwrap();
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    pub fn post_raw(&self, body: Vec<u8>) -> reqwest::blocking::Response {
        self.client
            .post(format!("{}/graphql", self.url))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("request sent")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
        std::thread::sleep(Duration::from_millis(50));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `assent audit --data-dir DIR` with `extra` flags: its exit code and its output
/// (stdout then stderr).
pub fn audit(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["audit", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("assent runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// A temp folder holding the real clients of `tests/node` (the graphql-ws library, the
/// verifier written from the docs) with their npm packages installed from the registry.
pub fn node_clients() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    for f in ["package.json", "subscribe.mjs", "verify.mjs"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let install = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(dir.path())
        .output()
        .expect("npm is installed (Node.js is part of the development machine)");
    assert!(
        install.status.success(),
        "npm install failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    dir
}

/// Every file below `dir` (recursively), sorted: what tests that look at the bytes on disk
/// walk.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Every file under `dir` that contains `needle`: where a test looks for bytes that must
/// have left the disk.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// The first error's `extensions.code`.
pub fn code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}

/// A realistic consent event input.
pub fn event(subject: &str, analytics: &str, key: Option<&str>) -> Value {
    json!({
        "subjectId": subject,
        "purposes": [
            { "purpose": "analytics", "choice": analytics },
            { "purpose": "ads", "choice": "GRANTED" },
        ],
        "noticeId": "cookie-banner",
        "noticeVersion": "2026-11",
        "captureMethod": "BANNER_CUSTOM",
        "jurisdiction": "EU",
        "tcfString": "CQ-TCF",
        "evidence": { "ipAddress": "198.51.100.7", "userAgent": "Mozilla/5.0 test" },
        "occurredAt": "2026-11-27T10:00:00Z",
        "idempotencyKey": key,
    })
}

pub const RECORD: &str = "mutation($c: ID!, $e: ConsentEventInput!) { recordConsent(customerId: $c, event: $e) { duplicate event { id sequence shard recordedAt entryHash subjectId purposes { purpose choice } } } }";
pub const RECORD_MANY: &str = "mutation($c: ID!, $e: [ConsentEventInput!]!) { recordConsents(customerId: $c, events: $e) { duplicate event { id sequence } } }";
