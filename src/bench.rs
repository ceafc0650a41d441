//! `assent bench`: drives a running server over real HTTP (keep-alive) and reports
//! throughput, latency percentiles and errors by code — Assent's `pgbench`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// What the load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// One event per `recordConsent`.
    Record,
    /// `recordConsents` with `--batch` events.
    Batch,
    /// `withdrawConsent` of subjects that exist.
    Withdraw,
    /// Current state and history of subjects that exist.
    Read,
    /// Reads and single records, `--read-ratio` of them reads.
    Mixed,
    /// Receipts of recorded events.
    Receipt,
    /// `GET /healthz`: the HTTP ceiling of this machine with the same client.
    Noop,
    /// `record` while `--subscribers` WebSocket subscriptions (default 100) receive the
    /// changes: writer throughput and commit-to-client delivery latency.
    Subscribe,
}

/// Options of `assent bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An ADMIN key (it creates the bench customers and acts for them).
    #[arg(long, env = "ASSENT_BENCH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Workload.
    #[arg(long, value_enum, default_value = "record")]
    pub workload: Workload,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// How long to drive load, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many requests (whichever of this and --duration comes first).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Events per `recordConsents` request (`batch` workload).
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
    /// Customers to spread the load over.
    #[arg(long, default_value_t = 1000)]
    pub customers: u32,
    /// Put all load on one customer (one shard).
    #[arg(long)]
    pub hot_customer: bool,
    /// Give every recorded event a unique idempotency key (as a CMP that retries safely
    /// sends): the shard stores a key row and a request digest per event, and the audit
    /// recomputes each digest.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Share of reads in the `mixed` workload.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Subjects seeded per customer for the read, withdraw and receipt workloads.
    #[arg(long, default_value_t = 10)]
    pub seed_subjects: u32,
    /// WebSocket subscribers listening while the workload runs (`subscribe` defaults to 100).
    #[arg(long)]
    pub subscribers: Option<u32>,
    /// PID of the server, when on this machine: its peak RSS and its CPU per request are
    /// reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seed of the subjects, customers and choices each connection sends. By default a new
    /// one per run (reported): a second run against the same server then records new
    /// subjects, as the first did. With a fixed seed it sent the first run's subjects
    /// again, so it measured updates of existing subjects instead (and with
    /// `--idempotency-keys`, duplicates the server answers without a write). Give the
    /// reported seed to repeat a run's exact requests.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, serde::Serialize)]
pub struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// The outcome of a run.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    workload: String,
    connections: u32,
    /// The seed the connections' requests came from (`--seed` repeats them).
    seed: u64,
    seconds: f64,
    requests: u64,
    requests_per_s: f64,
    events: u64,
    events_per_s: f64,
    latency_ms: Latency,
    errors: BTreeMap<String, u64>,
    server_peak_rss_mib: Option<f64>,
    /// CPU time (user + system) this client used per request while the workload ran: the
    /// share of the two cores the client took from the server it measures (Linux only).
    client_cpu_us_per_request: Option<f64>,
    /// The same for the server (`--server-pid`): what a request costs the server, steadier
    /// than requests/s on a host whose speed drifts.
    server_cpu_us_per_request: Option<f64>,
    subscribers: u32,
    /// Changes received by all subscribers, and commit-to-client latency (recordedAt to
    /// arrival, millisecond clock resolution).
    delivered: u64,
    delivery_ms: Option<Latency>,
}

/// A GraphQL response read for its errors only.
#[derive(serde::Deserialize)]
struct ErrorsOnly {
    errors: Option<Vec<ErrorCode>>,
}

/// The part of a GraphQL error the bench counts.
#[derive(serde::Deserialize)]
struct ErrorCode {
    #[serde(default)]
    extensions: ErrorExtensions,
}

/// `extensions.code` (every Assent error has one; `UNKNOWN` otherwise).
#[derive(serde::Deserialize)]
struct ErrorExtensions {
    code: String,
}

impl Default for ErrorExtensions {
    fn default() -> Self {
        ErrorExtensions {
            code: "UNKNOWN".into(),
        }
    }
}

/// A small xorshift generator: the bench needs variety, not cryptographic randomness.
struct Rng(u64);

impl Rng {
    /// Connection `t`'s generator for the run seeded `seed` (splitmix64 of both, never the
    /// all-zero state xorshift cannot leave).
    fn for_connection(seed: u64, t: u32) -> Rng {
        let mut z = seed ^ (u64::from(t) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// A seed for a run not given one: the clock's nanoseconds and this process's id.
    fn fresh_seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Ctx {
    args: BenchArgs,
    client: reqwest::Client,
    graphql: String,
    /// Seeded (customer index, subject index) → an event id, for receipts.
    seeded_ids: Vec<String>,
}

fn customer(i: u64) -> String {
    format!("bench-{i:05}")
}

/// Appends one realistic event as JSON to `out`. Written as text, not built as a
/// `serde_json::Value`: the client shares the machine with the server, and building and
/// printing value trees cost it ≈ 19 µs of CPU per batched event (docs/benchmarks.md).
fn push_event(out: &mut String, rng: &mut Rng, subject: &str, keyed: bool) {
    assert!(
        !subject.contains(['"', '\\']),
        "bench subjects need no JSON escaping"
    );
    let mut c = || {
        if rng.next() & 1 == 0 {
            "GRANTED"
        } else {
            "DENIED"
        }
    };
    let (a, b, m, p) = (c(), c(), c(), c());
    let _ = write!(
        out,
        r#"{{"subjectId":"{subject}","purposes":[{{"purpose":"analytics","choice":"{a}"}},{{"purpose":"ads","choice":"{b}"}},{{"purpose":"marketing","choice":"{m}"}},{{"purpose":"personalisation","choice":"{p}"}},{{"purpose":"functional","choice":"GRANTED"}}],"noticeId":"cookie-banner","noticeVersion":"2026-11-01","captureMethod":"BANNER_CUSTOM","jurisdiction":"EU","gpc":false,"evidence":{{"ipAddress":"203.0.113.42","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0","pageUrl":"https://shop.example.com/checkout"}},"occurredAt":"2026-11-27T10:00:00Z""#
    );
    if keyed {
        let _ = write!(
            out,
            r#","idempotencyKey":"b-{:016x}{:016x}""#,
            rng.next(),
            rng.next()
        );
    }
    out.push('}');
}

/// The body of a `RECORD` (one subject) or `RECORD_MANY` request for `customer`, its
/// events with unique idempotency keys when `keyed`.
fn record_body(
    rng: &mut Rng,
    customer: &str,
    subjects: &[String],
    many: bool,
    keyed: bool,
) -> String {
    let query = if many { RECORD_MANY } else { RECORD };
    let mut out = String::with_capacity(128 + subjects.len() * 640);
    let _ = write!(
        out,
        r#"{{"query":{},"variables":{{"c":"{customer}","e":"#,
        Value::from(query)
    );
    if many {
        out.push('[');
    }
    for (i, subject) in subjects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_event(&mut out, rng, subject, keyed);
    }
    if many {
        out.push(']');
    }
    out.push_str("}}");
    out
}

const RECORD: &str = "mutation($c: ID!, $e: ConsentEventInput!) { recordConsent(customerId: $c, event: $e) { event { id } } }";
const RECORD_MANY: &str = "mutation($c: ID!, $e: [ConsentEventInput!]!) { recordConsents(customerId: $c, events: $e) { event { id } } }";

impl Ctx {
    fn pick_customer(&self, rng: &mut Rng) -> u64 {
        if self.args.hot_customer {
            0
        } else {
            rng.below(u64::from(self.args.customers))
        }
    }

    fn seeded_subject(&self, rng: &mut Rng) -> (String, String) {
        let c = self.pick_customer(rng);
        (
            customer(c),
            format!("seed-{}", rng.below(u64::from(self.args.seed_subjects))),
        )
    }

    /// One request of the workload: (body or None for GET /healthz, events it records).
    fn request(&self, rng: &mut Rng, workload: Workload) -> (Option<String>, u64) {
        let body = |q: &str, v: Value| Some(json!({ "query": q, "variables": v }).to_string());
        match workload {
            Workload::Noop => (None, 0),
            Workload::Record => {
                let c = customer(self.pick_customer(rng));
                let subject = format!("s-{}", rng.next() % 1_000_000_000);
                let keyed = self.args.idempotency_keys;
                (Some(record_body(rng, &c, &[subject], false, keyed)), 1)
            }
            Workload::Batch => {
                let c = customer(self.pick_customer(rng));
                let subjects: Vec<String> = (0..self.args.batch)
                    .map(|_| format!("s-{}", rng.next() % 1_000_000_000))
                    .collect();
                (
                    Some(record_body(
                        rng,
                        &c,
                        &subjects,
                        true,
                        self.args.idempotency_keys,
                    )),
                    u64::from(self.args.batch),
                )
            }
            Workload::Withdraw => {
                let (c, s) = self.seeded_subject(rng);
                let q = "mutation($c: ID!, $s: String!) { withdrawConsent(customerId: $c, subjectId: $s, purposes: [\"ads\"], jurisdiction: \"EU\", noticeId: \"pc\", noticeVersion: \"1\") { event { id } } }";
                (body(q, json!({ "c": c, "s": s })), 1)
            }
            Workload::Read => {
                let (c, s) = self.seeded_subject(rng);
                let q = if rng.next() & 1 == 0 {
                    "query($c: ID!, $s: String!) { consent(customerId: $c, subjectId: $s) { purposes { purpose choice expiresAt } } }"
                } else {
                    "query($c: ID!, $s: String!) { consentHistory(customerId: $c, subjectId: $s, first: 10, order: NEWEST_FIRST) { edges { node { id recordedAt purposes { purpose choice } } } } }"
                };
                (body(q, json!({ "c": c, "s": s })), 0)
            }
            Workload::Mixed => {
                let read = (rng.below(1_000_000) as f64) < self.args.read_ratio * 1_000_000.0;
                self.request(
                    rng,
                    if read {
                        Workload::Read
                    } else {
                        Workload::Record
                    },
                )
            }
            Workload::Subscribe => self.request(rng, Workload::Record),
            Workload::Receipt => {
                let id = &self.seeded_ids[rng.below(self.seeded_ids.len() as u64) as usize];
                let q = "query($id: ID!) { receipt(eventId: $id) { document } }";
                (body(q, json!({ "id": id })), 0)
            }
        }
    }

    /// Sends one request; the response's `data` is parsed only when `want_data` (the
    /// measured loop checks for errors alone, which skips the data's value tree).
    async fn send(&self, body: Option<String>, want_data: bool) -> Result<Value, String> {
        let req = match body {
            None => self.client.get(format!("{}/healthz", self.args.url)),
            Some(b) => self
                .client
                .post(&self.graphql)
                .header("content-type", "application/json")
                .body(b),
        };
        let resp = req
            .bearer_auth(&self.args.token)
            .send()
            .await
            .map_err(|_| "TRANSPORT".to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|_| "TRANSPORT".to_string())?;
        if !text.starts_with('{') {
            return if status.is_success() {
                Ok(Value::Null)
            } else {
                Err(format!("HTTP_{}", status.as_u16()))
            };
        }
        let bad = |_| "BAD_RESPONSE".to_string();
        let v: ErrorsOnly = serde_json::from_str(&text).map_err(bad)?;
        if let Some([first, ..]) = v.errors.as_deref() {
            return Err(first.extensions.code.clone());
        }
        match want_data {
            true => serde_json::from_str(&text).map_err(bad),
            false => Ok(Value::Null),
        }
    }
}

async fn setup(ctx: &mut Ctx) -> Result<(), String> {
    let n = if ctx.args.hot_customer {
        1
    } else {
        ctx.args.customers
    };
    let seed = matches!(
        ctx.args.workload,
        Workload::Read | Workload::Mixed | Workload::Withdraw | Workload::Receipt
    );
    let mut ids = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for chunk in (0..u64::from(n)).collect::<Vec<_>>().chunks(32) {
        let mut futs = Vec::new();
        for &c in chunk {
            let create = json!({ "query": "mutation($id: ID!) { createCustomer(id: $id, name: $id) { id } }", "variables": { "id": customer(c) } }).to_string();
            let subjects: Vec<String> = (0..ctx.args.seed_subjects)
                .map(|s| format!("seed-{s}"))
                .collect();
            let record = record_body(&mut rng, &customer(c), &subjects, true, false);
            futs.push(async {
                match ctx.send(Some(create), false).await {
                    Ok(_) => {}
                    Err(code) if code == "BAD_USER_INPUT" => {} // exists from an earlier run
                    Err(code) => return Err(format!("creating bench customers failed: {code}")),
                }
                if !seed {
                    return Ok(vec![]);
                }
                let v = ctx
                    .send(Some(record), true)
                    .await
                    .map_err(|c| format!("seeding failed: {c}"))?;
                Ok(v["data"]["recordConsents"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r["event"]["id"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default())
            });
        }
        for r in futures::future::join_all(futs).await {
            ids.extend(r?);
        }
    }
    ctx.seeded_ids = ids;
    Ok(())
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Clock ticks per second of the times in `/proc/PID/stat` (Linux's `USER_HZ`, 100 on every
/// architecture it runs on; the kernel converts to it whatever its internal tick rate).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) process `pid` (or `self`) has used so far, in microseconds,
/// from `/proc/PID/stat`; `None` where that file does not exist.
fn cpu_us(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ * 1e6)
}

/// Runs the bench and prints its report.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let report = rt.block_on(drive(args.clone()))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    } else {
        let l = &report.latency_ms;
        let mut t = format!(
            "workload {} · {} connections · {:.1} s · seed {}\n",
            report.workload, report.connections, report.seconds, report.seed
        );
        t += &format!(
            "requests {:>10}  {:>10.0}/s\n",
            report.requests, report.requests_per_s
        );
        t += &format!(
            "events   {:>10}  {:>10.0}/s\n",
            report.events, report.events_per_s
        );
        t += &format!(
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        t += &format!("errors   {:?}", report.errors);
        if report.subscribers > 0 {
            t += &format!(
                "\nsubscribers {}  delivered {}",
                report.subscribers, report.delivered
            );
            if let Some(d) = &report.delivery_ms {
                t += &format!(
                    "  commit-to-client ms p50 {:.1}  p99 {:.1}  max {:.1}",
                    d.p50, d.p99, d.max
                );
            }
        }
        if let Some(r) = report.server_peak_rss_mib {
            t += &format!("\nserver peak RSS {r:.1} MiB");
        }
        if let Some(c) = report.client_cpu_us_per_request {
            t += &format!("\nCPU µs per request  client {c:.1}");
            if let Some(s) = report.server_cpu_us_per_request {
                t += &format!("  server {s:.1}");
            }
        }
        t
    };
    // A closed pipe (`| head`) is not worth a panic.
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

async fn drive(args: BenchArgs) -> Result<Report, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let graphql = format!("{}/graphql", args.url.trim_end_matches('/'));
    let mut ctx = Ctx {
        args: args.clone(),
        client,
        graphql,
        seeded_ids: Vec::new(),
    };
    if args.workload != Workload::Noop {
        setup(&mut ctx).await?;
    }
    if args.workload == Workload::Receipt && ctx.seeded_ids.is_empty() {
        return Err("no events were seeded for the receipt workload".into());
    }
    let subscriber_count = args
        .subscribers
        .unwrap_or(if args.workload == Workload::Subscribe {
            100
        } else {
            0
        });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut listeners = Vec::new();
    for i in 0..subscriber_count {
        let customer_index = if args.hot_customer {
            0
        } else {
            u64::from(i) % u64::from(args.customers)
        };
        listeners.push(tokio::spawn(listen(
            args.url.clone(),
            args.token.clone(),
            customer(customer_index),
            stop.clone(),
        )));
    }
    if subscriber_count > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await; // let them subscribe
    }
    let ctx = Arc::new(ctx);
    let seed = args.seed.unwrap_or_else(Rng::fresh_seed);
    let issued = Arc::new(AtomicU64::new(0));
    let server_pid = args.server_pid.map(|p| p.to_string());
    let cpu_before = (cpu_us("self"), server_pid.as_deref().and_then(cpu_us));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let limit = args.requests.unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    for t in 0..args.connections {
        let (ctx, issued) = (ctx.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::for_connection(seed, t);
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut events = 0u64;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                let (body, n) = ctx.request(&mut rng, ctx.args.workload);
                let t0 = Instant::now();
                let outcome = ctx.send(body, false).await;
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                match outcome {
                    Ok(_) => events += n,
                    Err(code) => *errors.entry(code).or_default() += 1,
                }
            }
            (hist, errors, events)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = 0u64;
    for t in tasks {
        let (h, e, n) = t.await.map_err(|e| e.to_string())?;
        hist.add(&h).map_err(|e| e.to_string())?;
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        events += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = (cpu_us("self"), server_pid.as_deref().and_then(cpu_us));
    let per_request = |before: Option<f64>, after: Option<f64>| {
        let requests = hist.len().max(1) as f64;
        Some((after? - before?) / requests)
    };
    let client_cpu_us_per_request = per_request(cpu_before.0, cpu_after.0);
    let server_cpu_us_per_request = per_request(cpu_before.1, cpu_after.1);
    tokio::time::sleep(Duration::from_millis(300)).await; // let in-flight deliveries land
    stop.store(true, Ordering::Relaxed);
    let mut delivery =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for l in listeners {
        if let Ok(Ok(h)) = l.await {
            delivery.add(&h).map_err(|e| e.to_string())?;
        }
    }
    let dms = |q: f64| delivery.value_at_quantile(q) as f64 / 1000.0;
    let delivery_ms = (!delivery.is_empty()).then(|| Latency {
        p50: dms(0.5),
        p90: dms(0.9),
        p99: dms(0.99),
        p999: dms(0.999),
        max: delivery.max() as f64 / 1000.0,
    });
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        workload: format!("{:?}", args.workload).to_lowercase(),
        connections: args.connections,
        seed,
        seconds,
        requests: hist.len(),
        requests_per_s: hist.len() as f64 / seconds,
        events,
        events_per_s: events as f64 / seconds,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: hist.max() as f64 / 1000.0,
        },
        errors,
        server_peak_rss_mib: args.server_pid.and_then(peak_rss_mib),
        client_cpu_us_per_request,
        server_cpu_us_per_request,
        subscribers: subscriber_count,
        delivered: delivery.len(),
        delivery_ms,
    })
}

/// One WebSocket subscriber: records, for each change, the time from its commit
/// (`recordedAt`) to its arrival here.
async fn listen(
    url: String,
    token: String,
    customer: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Histogram<u64>, String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut req = format!(
        "{}/graphql",
        url.trim_end_matches('/').replacen("http", "ws", 1)
    )
    .into_client_request()
    .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header value"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let sub = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($c: ID!) { consentChanges(customerId: $c) { event { recordedAt } } }",
        "variables": { "c": customer } } });
    ws.send(Message::text(sub.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await
        else {
            continue;
        };
        let Message::Text(text) = msg else { continue };
        let arrived = chrono::Utc::now();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(t) = v["payload"]["data"]["consentChanges"]["event"]["recordedAt"].as_str()
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
        {
            let us = (arrived - t.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0)
                .max(1) as u64;
            hist.saturating_record(us);
        }
    }
    Ok(hist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_and_a_connection_give_one_stream_and_others_give_others() {
        // Proves: a run's requests follow from its seed (the same seed and connection give
        // the same numbers), and different seeds or connections give different ones, none
        // stuck at xorshift's all-zero state.
        let first = |seed: u64, t: u32| {
            let mut rng = Rng::for_connection(seed, t);
            [rng.next(), rng.next(), rng.next()]
        };
        assert_eq!(first(42, 0), first(42, 0));
        assert_ne!(first(42, 0), first(43, 0));
        assert_ne!(first(42, 0), first(42, 1));
        for seed in [0, 1, u64::MAX] {
            assert!(first(seed, 0).iter().all(|&x| x != 0), "seed {seed}");
        }
        assert_ne!(Rng::fresh_seed(), 0);
    }

    #[test]
    fn written_bodies_are_the_json_requests_the_workloads_mean() {
        // Proves: the hand-written request text parses as JSON, names the right query and
        // customer, and carries one event (record) or a list (batch) of complete events.
        let mut rng = Rng(7);
        let one: Value = serde_json::from_str(&record_body(
            &mut rng,
            "bench-00001",
            &["s-1".into()],
            false,
            false,
        ))
        .expect("valid JSON");
        assert_eq!(one["query"], RECORD);
        assert_eq!(one["variables"]["c"], "bench-00001");
        assert_eq!(one["variables"]["e"]["subjectId"], "s-1");
        let subjects: Vec<String> = (0..3).map(|i| format!("s-{i}")).collect();
        let many: Value = serde_json::from_str(&record_body(&mut rng, "c", &subjects, true, false))
            .expect("valid JSON");
        assert_eq!(many["query"], RECORD_MANY);
        let events = many["variables"]["e"].as_array().expect("a list");
        assert_eq!(events.len(), 3);
        for (e, s) in events.iter().zip(&subjects) {
            assert_eq!(e["subjectId"], s.as_str());
            assert_eq!(e["purposes"].as_array().map(Vec::len), Some(5));
            assert_eq!(
                e["evidence"]["pageUrl"],
                "https://shop.example.com/checkout"
            );
            assert_eq!(e["occurredAt"], "2026-11-27T10:00:00Z");
            assert!(e.get("idempotencyKey").is_none());
        }
        let keyed: Value = serde_json::from_str(&record_body(&mut rng, "c", &subjects, true, true))
            .expect("valid JSON with keys");
        let keys: std::collections::HashSet<&str> = keyed["variables"]["e"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["idempotencyKey"].as_str().expect("a key"))
            .collect();
        assert_eq!(keys.len(), 3, "one distinct key per event");
    }
}
