//! `assent audit --server`: a monitor of a running server's checkpoints. It checks that
//! every checkpoint the server lists carries the pinned key's signature, that none is
//! withheld (numbers run on without a gap from the last one it saw) and that each extends
//! the one before (a consistency proof per shard), so a server that rewrites history, or
//! shows one history to the monitor and another to someone else, is caught.
//!
//! A page of checkpoints costs two requests: the page, then the consistency proofs of all
//! its consecutive pairs in one `consistencyProofs` field. After each page the state file is
//! replaced atomically, so an interrupted run loses at most one page of work and the next
//! run goes on from there.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shard::checkpoint::{Checkpoint, open_checkpoint};
use shard::hash::Hash;
use shard::merkle::{Blake3Tree, verify_consistency};

use crate::audit::Failure;
use crate::remote::RemoteError;
use crate::verify_cmd::{KeyArgs, Trusted, open_with, trusted};

/// Checkpoints fetched per page, and consistency proofs asked for in one request (at most
/// the server's `MAX_CONSISTENCY_PROOFS`).
pub const MONITOR_PAGE_CHECKPOINTS: usize = 100;
const _: () = assert!(MONITOR_PAGE_CHECKPOINTS <= gateway::MAX_CONSISTENCY_PROOFS as usize);

/// What the monitor keeps between runs (`--state FILE`, JSON).
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MonitorState {
    /// The signer, pinned on the first run when no key was given on the command line.
    verifier_key: Option<String>,
    /// The last checkpoint checked, as the signed note the server sent.
    note: Option<String>,
    /// The list cursor just after that checkpoint.
    cursor: Option<String>,
}

impl MonitorState {
    fn load(path: &Path) -> Result<MonitorState, Failure> {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| Failure::Unusable(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MonitorState::default()),
            Err(e) => Err(Failure::Unusable(format!("{}: {e}", path.display()))),
        }
    }

    /// Replaces the file at once (a new file renamed over it), so a crash leaves either the
    /// old state or the new one, never half of one.
    fn save(&self, path: &Path) -> Result<(), Failure> {
        let io = |e: std::io::Error| Failure::Unusable(format!("{}: {e}", path.display()));
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        let tmp: PathBuf = path.with_file_name(name);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("plain JSON"))
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// A server's GraphQL endpoint with the monitor's key.
struct Server<'a> {
    client: reqwest::blocking::Client,
    url: &'a str,
    token: String,
}

impl Server<'_> {
    fn query(&self, query: &str, variables: Value) -> Result<Value, Failure> {
        self.call(query, variables)
            .map_err(|e| Failure::Unusable(format!("{}: {e}", self.url)))
    }

    fn call(&self, query: &str, variables: Value) -> Result<Value, RemoteError> {
        crate::remote::graphql(&self.client, self.url, &self.token, query, variables)
    }
}

/// Checks every checkpoint `url` issued since the last run recorded in `state_path`.
pub(crate) fn run(
    url: &str,
    state_path: &Path,
    token_file: Option<&Path>,
    keys: &KeyArgs,
    compare: &[PathBuf],
) -> Result<Value, Failure> {
    let token = crate::remote::token(token_file, "ASSENT_AUDIT_TOKEN", "a READER or ADMIN key")
        .map_err(Failure::Unusable)?;
    let server = Server {
        client: reqwest::blocking::Client::new(),
        url,
        token,
    };
    let mut state = MonitorState::load(state_path)?;
    let keys = signer(&server, keys, &mut state)?;
    let compared: Vec<Compared> = compare
        .iter()
        .map(|p| read_compared(p, &keys))
        .collect::<Result<_, _>>()?;
    let mut last: Option<Checkpoint> = match &state.note {
        Some(n) => Some(
            open_with(n, &keys)
                .map_err(|e| Failure::Problem(format!("state file checkpoint: {e}")))?
                .0,
        ),
        None => None,
    };
    if let (Some(seen), Some(note)) = (&last, &state.note) {
        still_served(&server, seen.number, note)?;
    }
    let bar = progress();
    let mut checked = 0u64;
    loop {
        let (edges, more) = fetch_page(&server, state.cursor.as_deref())?;
        let page = open_page(&edges, last.as_ref())?;
        std::thread::scope(|scope| {
            let signed = scope.spawn(|| check_signatures(&page, &keys));
            let extended = check_page(&server, last.as_ref(), &page);
            signed.join().expect("signature checks do not panic")?;
            extended
        })?;
        if let Some(l) = page.last() {
            last = Some(l.checkpoint.clone());
            state.note = Some(l.note.clone());
            state.cursor = l.cursor.clone();
            state.save(state_path)?;
        }
        checked += page.len() as u64;
        bar.inc(page.len() as u64);
        if !more {
            break;
        }
    }
    bar.finish_and_clear();
    if checked == 0 {
        // Each page saved the state already; a run with nothing new still keeps the key it
        // pinned on first use.
        state.save(state_path)?;
    }
    compare_all(&server, &compared)?;
    let latest = last.map_or(0, |c| c.number);
    let also = match compared.len() {
        0 => String::new(),
        n => format!("; {n} checkpoints shown elsewhere are the server's own"),
    };
    Ok(
        json!({ "intact": true, "checked": checked, "latest": latest, "compared": compared.len(),
        "summary": format!("{checked} new checkpoints verified, each extending the one before; latest is {latest}{also}: CONSISTENT") }),
    )
}

/// A checkpoint as the server listed it: parsed (its signature not yet checked), with its
/// note and the list cursor just after it.
struct Listed {
    /// The parsed body.
    checkpoint: Checkpoint,
    /// The signed note, kept in the state file once checked.
    note: String,
    /// Where the next run's listing starts.
    cursor: Option<String>,
}

/// One listed checkpoint's signed note, and the list cursor just after it.
type Edge = (String, Option<String>);

/// The next page of the listing after `cursor`: each checkpoint's (note, cursor), and
/// whether more follow.
fn fetch_page(server: &Server<'_>, cursor: Option<&str>) -> Result<(Vec<Edge>, bool), Failure> {
    let page = server.query(
        "query($a: String, $n: Int) { checkpoints(first: $n, after: $a) { edges { cursor node { note } } pageInfo { hasNextPage } } }",
        json!({ "a": cursor, "n": MONITOR_PAGE_CHECKPOINTS }),
    )?;
    let edges: Vec<Edge> = page["checkpoints"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let note = e["node"]["note"].as_str().unwrap_or("").to_string();
                    (note, e["cursor"].as_str().map(String::from))
                })
                .collect()
        })
        .unwrap_or_default();
    let more = page["checkpoints"]["pageInfo"]["hasNextPage"] == true;
    if more && edges.is_empty() {
        return Err(Failure::Unusable(format!(
            "{}: the server says more checkpoints follow but lists none",
            server.url
        )));
    }
    Ok((edges, more))
}

/// Parses a page and checks that its numbers run on from `before` (or from 1).
fn open_page(edges: &[Edge], before: Option<&Checkpoint>) -> Result<Vec<Listed>, Failure> {
    let mut page: Vec<Listed> = Vec::with_capacity(edges.len());
    for (note, cursor) in edges {
        let (checkpoint, _) = open_checkpoint(note, None)
            .map_err(|err| Failure::Problem(format!("a listed checkpoint: {err}")))?;
        let prev = page.last().map(|l| &l.checkpoint).or(before);
        follows(prev, &checkpoint)?;
        page.push(Listed {
            checkpoint,
            note: note.clone(),
            cursor: cursor.clone(),
        });
    }
    Ok(page)
}

/// That the server still holds checkpoint `number`, the last one checked, byte for byte as
/// it was then: a server restored from an old backup, or one that replaced its history,
/// no longer does (and might never list a new checkpoint to be caught by).
fn still_served(server: &Server<'_>, number: u64, seen: &str) -> Result<(), Failure> {
    match served(server, number)? {
        Some(note) if note == seen => Ok(()),
        Some(_) => Err(Failure::Problem(format!(
            "checkpoint {number}, checked on the last run, is not the same note now (the server rewrote history)"
        ))),
        None => Err(Failure::Problem(format!(
            "checkpoint {number}, checked on the last run, is gone (the server's history was rolled back or replaced)"
        ))),
    }
}

/// The note the server serves as checkpoint `number`, or None when it has none.
fn served(server: &Server<'_>, number: u64) -> Result<Option<String>, Failure> {
    let q = "query($n: UInt64!) { consistencyProof(fromCheckpoint: $n, toCheckpoint: $n) { from { note } } }";
    match server.call(q, json!({ "n": number.to_string() })) {
        Ok(d) => Ok(Some(
            d["consistencyProof"]["from"]["note"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )),
        Err(e) if e.code.as_deref() == Some("NOT_FOUND") => Ok(None),
        Err(e) => Err(Failure::Unusable(format!("{}: {e}", server.url))),
    }
}

/// A checkpoint someone else was shown (`--compare FILE`), its signature checked.
struct Compared {
    /// Where it came from, to name it.
    source: String,
    /// The checkpoint the note holds.
    checkpoint: Checkpoint,
}

/// Reads a checkpoint shown to someone else: a signed note as it is, a receipt (its
/// `checkpoint` field) or another monitor's state file (its `note` field). It must carry a
/// trusted key's signature; otherwise it proves nothing about the server.
fn read_compared(path: &Path, keys: &[Trusted]) -> Result<Compared, Failure> {
    let source = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::Unusable(format!("{source}: {e}")))?;
    let note = match serde_json::from_str::<Value>(&text) {
        Ok(v) => match v["checkpoint"].as_str().or(v["note"].as_str()) {
            Some(n) => n.to_string(),
            None => {
                return Err(Failure::Unusable(format!(
                    "{source}: JSON without a `checkpoint` (receipt) or `note` (monitor state) field"
                )));
            }
        },
        Err(_) => text,
    };
    let (checkpoint, _) =
        open_with(&note, keys).map_err(|e| Failure::Unusable(format!("{source}: {e}")))?;
    Ok(Compared { source, checkpoint })
}

/// That the server serves each compared checkpoint under its number: numbers are never
/// reused, so two different checkpoints with one number, both signed with the ledger's
/// key, are two histories shown to different people.
fn compare_all(server: &Server<'_>, compared: &[Compared]) -> Result<(), Failure> {
    for c in compared {
        let n = c.checkpoint.number;
        let Some(note) = served(server, n)? else {
            return Err(Failure::Problem(format!(
                "checkpoint {n} of {}, signed with the ledger's key, is not served by the server (it shows someone a history it does not show the monitor)",
                c.source
            )));
        };
        let ours = open_checkpoint(&note, None)
            .map_err(|err| Failure::Problem(format!("checkpoint {n} as served: {err}")))?
            .0;
        if ours != c.checkpoint {
            return Err(Failure::Problem(format!(
                "checkpoint {n} of {} is not the checkpoint {n} the server serves: it shows different histories to different people",
                c.source
            )));
        }
    }
    Ok(())
}

/// The trusted keys: pinned on the command line, else in the state file, else the
/// server's own key pinned now (trust on first use) and kept in the state.
fn signer(
    server: &Server<'_>,
    keys: &KeyArgs,
    state: &mut MonitorState,
) -> Result<Vec<Trusted>, Failure> {
    let pinned = trusted(keys).map_err(Failure::Unusable)?;
    if !pinned.is_empty() {
        return Ok(pinned);
    }
    let vk = match &state.verifier_key {
        Some(k) => k.clone(),
        None => server.query("{ publicKeys { verifierKey } }", json!({}))?["publicKeys"][0]
            ["verifierKey"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    };
    let keys = trusted(&KeyArgs::from_verifier(&vk)).map_err(Failure::Unusable)?;
    state.verifier_key = Some(vk);
    Ok(keys)
}

/// That every checkpoint of `page` is signed by a trusted key, on as many threads as the
/// machine has cores (≈ 70 µs per signature: most of a monitor's own work).
fn check_signatures(page: &[Listed], keys: &[Trusted]) -> Result<(), Failure> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = page.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let checks: Vec<_> = page
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.iter().try_for_each(|l| {
                        open_with(&l.note, keys).map(|_| ()).map_err(|err| {
                            Failure::Problem(format!("checkpoint {}: {err}", l.checkpoint.number))
                        })
                    })
                })
            })
            .collect();
        checks
            .into_iter()
            .try_for_each(|t| t.join().expect("signature checks do not panic"))
    })
}

/// That `c` is the checkpoint after `before` (the first, 1, when there is none), of the
/// same ledger and shards: a gap means the server withholds a checkpoint it issued (and
/// may show it to someone else).
fn follows(before: Option<&Checkpoint>, c: &Checkpoint) -> Result<(), Failure> {
    let expected = before.map_or(1, |b| b.number + 1);
    if c.number != expected {
        return Err(Failure::Problem(format!(
            "checkpoint {expected} is missing: the server lists checkpoint {} next (a withheld checkpoint may be shown to others)",
            c.number
        )));
    }
    if let Some(b) = before
        && (c.shards.len() != b.shards.len() || c.origin != b.origin)
    {
        return Err(Failure::Problem(format!(
            "checkpoint {} is of another ledger or shard count than checkpoint {}",
            c.number, b.number
        )));
    }
    Ok(())
}

/// The proofs of a page's pairs of consecutive checkpoints, in one request whose text never
/// changes (the server parses and validates it once).
const PROOFS: &str = "query($f: UInt64!, $n: Int!) { consistencyProofs(fromCheckpoint: $f, count: $n) { shards { shardId path } } }";

/// Checks that each checkpoint of `page` extends the one before it (the first extends
/// `before`, the state's last), asking for every pair's proofs in one request. `follows`
/// has made the numbers consecutive.
fn check_page(
    server: &Server<'_>,
    before: Option<&Checkpoint>,
    page: &[Listed],
) -> Result<(), Failure> {
    let news = page.iter().map(|l| &l.checkpoint);
    // Each checkpoint after the one before it; on a first run the first listed has none.
    let olds = before.into_iter().chain(news.clone());
    let skip = usize::from(before.is_none());
    let pairs: Vec<(&Checkpoint, &Checkpoint)> = olds.zip(news.skip(skip)).collect();
    let Some(first) = pairs.first() else {
        return Ok(());
    };
    let vars = json!({ "f": first.0.number.to_string(), "n": pairs.len() });
    let data = server.query(PROOFS, vars)?;
    let proofs = data["consistencyProofs"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if proofs.len() != pairs.len() {
        return Err(Failure::Problem(format!(
            "the server sent {} consistency proofs for checkpoints {} to {}, not {}",
            proofs.len(),
            first.0.number,
            first.0.number + pairs.len() as u64,
            pairs.len()
        )));
    }
    for ((old, new), proof) in pairs.iter().zip(proofs) {
        extends(old, new, &proof["shards"])?;
    }
    Ok(())
}

/// Verifies one pair's per-shard consistency proofs.
fn extends(old: &Checkpoint, new: &Checkpoint, shards: &Value) -> Result<(), Failure> {
    for (a, b) in old.shards.iter().zip(&new.shards) {
        let listed = shards.as_array().and_then(|s| {
            s.iter()
                .find(|s| s["shardId"].as_u64() == Some(a.shard_id.into()))
        });
        let path: Vec<Hash> = listed
            .and_then(|s| s["path"].as_array())
            .map(|p| {
                p.iter()
                    .filter_map(|h| h.as_str().and_then(Hash::from_hex))
                    .collect()
            })
            .unwrap_or_default();
        verify_consistency(&Blake3Tree, a.size, b.size, &a.root, &b.root, &path).map_err(|e| {
            Failure::Problem(format!("checkpoint {} does not extend checkpoint {} on shard {}: {e} (the server rewrote history)", new.number, old.number, a.shard_id))
        })?;
    }
    Ok(())
}

/// A count of checkpoints checked on a terminal; nothing when stderr is piped.
fn progress() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} checkpoints checked ({per_sec})")
            .expect("a valid template"),
    );
    bar
}
