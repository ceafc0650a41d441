//! Criterion benches of the ledger engine (figures in docs/benchmarks.md).
//!
//! Run: `cargo bench --bench engine`. The 1M-entry shard for the proof benches is built
//! once under `target/bench-data/` and reused by later runs.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shard::engine::{Append, ShardHandle, Store};
use shard::format::{
    CaptureMethod, Choice, ConsentEvent, ConsentRecord, Entry, EntryBody, Evidence, Purposes,
};
use shard::hash::{Hash, entry_hash, personal_commitment, subject_key};
use shard::merkle::{Blake3Tree, TreeHasher};
use shard::verify::verify_entry_inclusion;

fn event(n: u64) -> ConsentEvent {
    let choice = |k: u64| {
        if (n >> k) & 1 == 0 {
            Choice::Granted
        } else {
            Choice::Denied
        }
    };
    ConsentEvent {
        customer_id: format!("customer-{:04}", n % 1000),
        subject_id: format!("9f1c2a7e-subject-{n:012}"),
        purposes: Purposes::from([
            ("analytics".to_string(), choice(0)),
            ("marketing".to_string(), choice(1)),
            ("personalisation".to_string(), choice(2)),
            ("ads".to_string(), choice(3)),
            ("functional".to_string(), Choice::Granted),
        ]),
        notice_id: "cookie-banner".into(),
        notice_version: "2026-11-01".into(),
        capture_method: CaptureMethod::BannerCustom,
        jurisdiction: "EU".into(),
        gpc: false,
        tcf_string: Some("CQHx5AAQHx5AAAHABBENBJFsAP_gAEPgAAAAKZtV_G__bWlr8X73aftkeY1P9_h77sQxBhfJE-4FzLvW_JwXx2ExNA36tqIKmRIAu3bBIQNlGJDUTVCgaogVryDMaE2coTNKJ6BkiFMRM2dYCF5vm4tj-QKY5vr991dx2B-t7dr83dzyz4VHn3a5_2a0WJCdA5-tDfv9bROb-9IOd_x8v4v8_F_rE2_eT1l_tWvp7D9-cts7_XW89_fff_9Ln_-uB_-_3_vBSEAAAAA".into()),
        gpp_string: None,
        evidence: Evidence {
            ip_address: Some("203.0.113.42".into()),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0".into()),
            page_url: Some("https://shop.example.com/checkout".into()),
        },
        occurred_at_ms: 1_767_225_600_000 + n as i64,
        expires_at_ms: Some(1_801_353_600_000),
        idempotency_key: None,
    }
}

/// The consent entry of `ev` at a fixed place, with `commitment` to its personal record.
fn entry_of(ev: &ConsentEvent, commitment: Hash) -> Entry {
    Entry {
        shard_id: 0,
        seq: 123_456,
        recorded_at_ms: 1_767_225_600_123,
        prev_hash: Hash::ZERO,
        customer_id: ev.customer_id.clone(),
        body: EntryBody::Consent(ConsentRecord::from_event(ev, commitment)),
    }
}

fn encode_and_hash(c: &mut Criterion) {
    let ev = event(7);
    let salt = [9u8; 32];
    c.bench_function("encode_and_hash_one_event", |b| {
        b.iter(|| {
            let personal = black_box(&ev).personal_record().encode();
            let bytes = entry_of(&ev, personal_commitment(&salt, &personal)).encode();
            (entry_hash(&bytes), Blake3Tree.hash_leaf(&bytes))
        })
    });
}

/// The blake3 work `assent audit` does for one consent entry: its entry hash and leaf hash,
/// the commitment of its personal record (salt ‖ record), one tree node (an entry completes
/// one on average) and its subject key. The audit's speed is stated as a fraction of this.
fn audit_hashing(c: &mut Criterion) {
    let ev = event(7);
    let salt = [9u8; 32];
    let personal = ev.personal_record().encode();
    let entry = entry_of(&ev, personal_commitment(&salt, &personal)).encode();
    let mut group = c.benchmark_group("audit_hashing");
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        format!("entry_{}B_personal_{}B", entry.len(), personal.len()),
        |b| {
            b.iter(|| {
                let e = black_box(&entry);
                let leaf = Blake3Tree.hash_leaf(e);
                (
                    entry_hash(e),
                    Blake3Tree.hash_children(&leaf, &leaf),
                    personal_commitment(&salt, black_box(&personal)),
                    subject_key(&salt, black_box(&ev.subject_id)),
                )
            })
        },
    );
    group.finish();
}

/// Appends through the actor, `appenders` concurrent senders each sending `batch`-event requests.
fn append_through_actor(c: &mut Criterion, name: &str, batch: u64, appenders: u64) {
    let dir = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    let shard =
        system.block_on(async { ShardHandle::start(&dir.path().join("s.redb"), 0).unwrap() });
    let mut group = c.benchmark_group("append_durable");
    group.throughput(Throughput::Elements(batch * appenders));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let sends = (0..appenders).map(|a| {
                        // One customer per appender and request, so each batch is valid.
                        let events: Vec<_> = (0..batch)
                            .map(|i| {
                                let mut e = event(n + i);
                                e.customer_id = format!("customer-{a}");
                                e
                            })
                            .collect();
                        shard.addr.send(Append(events))
                    });
                    for r in futures::future::join_all(sends).await {
                        r.unwrap().unwrap();
                    }
                    n += batch;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    system.block_on(shard.stop());
}

fn append(c: &mut Criterion) {
    append_through_actor(c, "batch_1", 1, 1);
    append_through_actor(c, "batch_100", 100, 1);
    append_through_actor(c, "batch_1000", 1000, 1);
    append_through_actor(c, "concurrent_64x1", 1, 64);
}

const PROOF_TREE_SIZE: u64 = 1_000_000;

/// A shard of 1M entries, built once and kept under target/bench-data.
fn million_entry_shard() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shard-1m.redb");
    let mut store = Store::open(&path, 0).unwrap();
    let mut n = store.head().size;
    while n < PROOF_TREE_SIZE {
        let batch: Vec<_> = (n..n + 1000)
            .map(|i| {
                let mut e = event(i);
                e.customer_id = "customer-0001".into();
                e
            })
            .collect();
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
        n += 1000;
    }
    path
}

fn proofs(c: &mut Criterion) {
    let path = million_entry_shard();
    let store = Store::open(&path, 0).unwrap();
    let reader = store.reader();
    let head = store.head();
    assert!(head.size >= PROOF_TREE_SIZE);
    let mut group = c.benchmark_group("proof_at_1m");
    let mut seq = 0u64;
    group.bench_function("inclusion_generate", |b| {
        b.iter(|| {
            seq = (seq + 7_919) % head.size;
            reader.inclusion_proof(seq, head.size).unwrap()
        })
    });
    let samples: Vec<_> = (0..64u64)
        .map(|i| {
            let s = (i * 15_485_863) % head.size;
            (
                reader.event(s).unwrap().unwrap().entry_bytes,
                reader.inclusion_proof(s, head.size).unwrap(),
            )
        })
        .collect();
    let mut i = 0usize;
    group.bench_function("inclusion_verify", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % samples.len();
                &samples[i]
            },
            |(bytes, p)| verify_entry_inclusion(bytes, p.seq, p.size, &p.path, &head.root).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("consistency_generate", |b| {
        b.iter(|| {
            seq = (seq + 7_919) % head.size;
            reader.consistency_proof(seq + 1, head.size).unwrap()
        })
    });
    group.finish();
}

/// A fresh shard holding `subject_events` events of one subject among as many of others.
fn shard_with_subject(dir: &Path, subject_events: u64) -> Store {
    let mut store = Store::open(&dir.join("s.redb"), 0).unwrap();
    for chunk in 0..(2 * subject_events).div_ceil(1000) {
        let batch: Vec<_> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| {
                let mut e = event(i);
                e.customer_id = "customer-0001".into();
                if i % 2 == 0 {
                    e.subject_id = "the-subject".into();
                }
                e
            })
            .collect();
        store
            .append_batches(vec![batch])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    store
}

/// Erasing a subject with 10,000 events (one durable transaction), and the scrub that
/// then rewrites the 20,000-event shard file.
fn erasure(c: &mut Criterion) {
    use shard::engine::{ErasureRequest, ErasureTarget};
    let mut group = c.benchmark_group("erasure");
    group.sample_size(10);
    let request = ErasureRequest {
        customer_id: "customer-0001".into(),
        target: ErasureTarget::Subject("the-subject".into()),
        reason: "bench".into(),
    };
    group.bench_function("erase_subject_10k_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let mut store = shard_with_subject(dir.path(), 10_000);
                let started = Instant::now();
                let erased = store.erase(&request).unwrap();
                total += started.elapsed();
                assert_eq!(erased.erased_events, 10_000);
            }
            total
        })
    });
    group.bench_function("scrub_20k_event_shard", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let mut store = shard_with_subject(dir.path(), 10_000);
                store.erase(&request).unwrap();
                let started = Instant::now();
                black_box(store.scrub().unwrap());
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    encode_and_hash,
    audit_hashing,
    append,
    proofs,
    erasure
);
criterion_main!(benches);
