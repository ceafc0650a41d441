//! `assent export` (a customer's events as JSON lines) and `assent retention apply`: thin
//! clients of a running server's GraphQL API.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

/// Events per page of `assent export` (and receipts asked for in one request).
const EXPORT_PAGE: u32 = 200;

/// A running server and the key to use with it.
#[derive(clap::Args)]
pub(crate) struct Remote {
    /// URL of the running server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "ASSENT_URL")]
    url: String,
    /// File holding the API key; otherwise it is read from ASSENT_TOKEN (never from the
    /// command line, where `ps` would show it).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl Remote {
    fn token(&self) -> Result<String, String> {
        crate::remote::token(self.token_file.as_deref(), "ASSENT_TOKEN", "the API key")
    }

    fn call(
        &self,
        client: &reqwest::blocking::Client,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, String> {
        crate::remote::graphql(client, &self.url, token, query, variables)
            .map_err(|e| e.to_string())
    }
}

/// `assent export`.
#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Customer whose events are exported (the key must be its READER, or ADMIN).
    #[arg(long)]
    customer: String,
    /// Output format: one JSON object per event per line.
    #[arg(long, value_parser = ["jsonl"], default_value = "jsonl")]
    format: String,
    /// Add each event's receipt (`receipt` field, docs/receipts.md).
    #[arg(long)]
    receipts: bool,
    #[command(flatten)]
    remote: Remote,
}

const EVENT_FIELDS: &str = "id customerId subjectId shard sequence recordedAt occurredAt expiresAt purposes { purpose choice } noticeId noticeVersion captureMethod jurisdiction gpc tcfString gppString evidence { ipAddress userAgent pageUrl } idempotencyKey entryHash personalCommitment";

/// Streams every event of the customer to stdout, page by page (memory bounded by one
/// page); returns the process exit code.
pub(crate) fn export(args: ExportArgs) -> u8 {
    match export_to(&args, &mut std::io::stdout().lock()) {
        Ok(n) => {
            eprintln!("exported {n} events of {}", args.customer);
            0
        }
        Err(e) => {
            eprintln!("assent export: {e}");
            1
        }
    }
}

fn export_to(args: &ExportArgs, out: &mut impl Write) -> Result<u64, String> {
    let token = args.remote.token()?;
    let client = reqwest::blocking::Client::new();
    let query = format!(
        "query($c: ID!, $first: Int!, $after: String) {{ consentEvents(customerId: $c, first: $first, after: $after) {{ pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {EVENT_FIELDS} }} }} }} }}"
    );
    let (mut after, mut count): (Option<String>, u64) = (None, 0);
    loop {
        let data = args.remote.call(
            &client,
            &token,
            &query,
            json!({ "c": args.customer, "first": EXPORT_PAGE, "after": after }),
        )?;
        let conn = &data["consentEvents"];
        let mut nodes: Vec<Value> = conn["edges"]
            .as_array()
            .map(|e| e.iter().map(|e| e["node"].clone()).collect())
            .unwrap_or_default();
        if args.receipts && !nodes.is_empty() {
            add_receipts(&args.remote, &client, &token, &mut nodes)?;
        }
        for node in &nodes {
            serde_json::to_writer(&mut *out, node).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| format!("writing: {e}"))?;
        }
        count += nodes.len() as u64;
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            out.flush().map_err(|e| format!("writing: {e}"))?;
            return Ok(count);
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}

/// Fetches the receipts of one page of events in one request (aliased fields).
fn add_receipts(
    remote: &Remote,
    client: &reqwest::blocking::Client,
    token: &str,
    nodes: &mut [Value],
) -> Result<(), String> {
    let fields: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("r{i}: receipt(eventId: {}) {{ document }}", n["id"]))
        .collect();
    let data = remote.call(
        client,
        token,
        &format!("{{ {} }}", fields.join(" ")),
        json!({}),
    )?;
    for (i, node) in nodes.iter_mut().enumerate() {
        let doc = data[format!("r{i}")]["document"]
            .as_str()
            .ok_or("a receipt is missing from the answer")?;
        node["receipt"] = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `assent retention apply`.
#[derive(clap::Args)]
pub(crate) struct RetentionArgs {
    /// Only this customer (default: every customer with a retention period).
    #[arg(long)]
    customer: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

/// Applies retention periods through the server (admin key); prints what was erased.
pub(crate) fn retention_apply(args: RetentionArgs) -> u8 {
    let run = || -> Result<Value, String> {
        let token = args.remote.token()?;
        args.remote.call(
            &reqwest::blocking::Client::new(),
            &token,
            "mutation($c: ID) { applyRetention(customerId: $c) { customerId cutoff erasedEvents erasureEventIds } }",
            json!({ "c": args.customer }),
        )
    };
    match run() {
        Ok(data) => {
            let done = data["applyRetention"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for r in &done {
                println!(
                    "{}: erased the personal records of {} events recorded before {} (erasure entries {})",
                    r["customerId"].as_str().unwrap_or("?"),
                    r["erasedEvents"],
                    r["cutoff"].as_str().unwrap_or("?"),
                    r["erasureEventIds"]
                );
            }
            if done.is_empty() {
                println!("nothing had outlived its retention period");
            }
            0
        }
        Err(e) => {
            eprintln!("assent retention apply: {e}");
            1
        }
    }
}
