//! What a new subject's state row costs in a `subjects` table of a given size, written the
//! way the index writer writes it today, against two ways a two-table ("young" and "old")
//! subject tier would: the question behind the 10M flatness target (docs/benchmarks.md,
//! session 29). Plain redb, no Assent code: keys and values have the shapes of the index
//! file's `subjects` rows, `(customer, subject key, STATE_ROW) → 81 bytes`.
//!
//!   cargo bench --bench subject_tier -- FILE OLD_ROWS NEW_ROWS MODE
//!
//! FILE is created with OLD_ROWS random subjects when it does not exist (then copy it per
//! run: every run adds NEW_ROWS rows; `benches/subject_tier.sh` does the copying). MODE:
//! - `steps`: the index writer today: a lookup and an insert per row into the big table,
//!   `ROWS_PER_STEP` rows per non-durable transaction, a durable one every
//!   `STEPS_PER_DURABLE` steps (a 2 ms subject step and a 3 s durable step at `record`'s
//!   rate on a 10M ledger of 4 shards: the writer until session 30, whose 10 ms step
//!   carries five times the rows; the constants stay so that the figures of sessions 29
//!   and 30 in docs/benchmarks.md reproduce);
//! - `young`: the same, into a table of its own that starts empty (a young table, which a
//!   filter over the old table's keys would let new subjects reach without a lookup there);
//! - `merge`: the NEW_ROWS rows inserted into the big table in key order in one durable
//!   transaction (merging a young table into the old one).
//!
//! Prints the wall time per row.

use std::time::Instant;

use redb::{Database, Durability, ReadableTable, TableDefinition};

/// The rows' table: the shape of the index file's `subjects` table.
const SUBJECTS: TableDefinition<(u32, &[u8; 32], u64), &[u8]> = TableDefinition::new("subjects");
/// The young table of the `young` mode.
const YOUNG: TableDefinition<(u32, &[u8; 32], u64), &[u8]> = TableDefinition::new("young");
/// The seq part of a state row's key (as the index file's `STATE_ROW`).
const STATE_ROW: u64 = u64::MAX;
/// Bytes of a state row's value: a first event's five purposes in index layout 4 (81; layout
/// 3 took 160, and session 29's figures were taken with 90).
const VALUE_BYTES: usize = 81;
/// Rows per subject step: `record` at ≈ 10,000 events/s over 4 shards, a step every 2 ms
/// (`INDEX_DELAY_MS` until session 30).
const ROWS_PER_STEP: usize = 5;
/// Subject steps per durable step: 3 s of 2 ms steps.
const STEPS_PER_DURABLE: usize = 1_500;
/// The index file's redb cache (`INDEX_CACHE_BYTES`).
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Customers the rows spread over (the bench's default).
const CUSTOMERS: u64 = 1_000;
/// Rows per transaction while building the file.
const BUILD_ROWS_PER_TXN: usize = 100_000;

/// The key of subject number `i`: a customer and a random-looking 32-byte subject key.
fn row_key(i: u64) -> (u32, [u8; 32]) {
    let customer = u32::try_from(i % CUSTOMERS).expect("fewer than 2^32 customers");
    (customer, *blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn build(db: &Database, rows: u64) {
    let started = Instant::now();
    let mut keys: Vec<(u32, [u8; 32])> = (0..rows).map(row_key).collect();
    keys.sort_unstable();
    let value = [7u8; VALUE_BYTES];
    for chunk in keys.chunks(BUILD_ROWS_PER_TXN) {
        let txn = db.begin_write().expect("write transaction");
        {
            let mut table = txn.open_table(SUBJECTS).expect("table");
            for (customer, key) in chunk {
                table
                    .insert((*customer, key, STATE_ROW), value.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    eprintln!(
        "built {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A lookup and an insert per row, in steps, as the index writer does.
fn steps(
    db: &Database,
    table: TableDefinition<(u32, &[u8; 32], u64), &[u8]>,
    rows: &[(u32, [u8; 32])],
) {
    let value = [7u8; VALUE_BYTES];
    for (i, chunk) in rows.chunks(ROWS_PER_STEP).enumerate() {
        let mut txn = db.begin_write().expect("write transaction");
        if (i + 1) % STEPS_PER_DURABLE != 0 {
            txn.set_durability(Durability::None).expect("durability");
        }
        {
            let mut t = txn.open_table(table).expect("table");
            let mut sorted = chunk.to_vec();
            sorted.sort_unstable();
            for (customer, key) in &sorted {
                let known = t.get((*customer, key, STATE_ROW)).expect("get").is_some();
                assert!(!known, "new subjects only");
                t.insert((*customer, key, STATE_ROW), value.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    db.begin_write()
        .expect("write")
        .commit()
        .expect("durable commit");
}

/// Every row into the big table in key order, one durable transaction.
fn merge(db: &Database, rows: &[(u32, [u8; 32])]) {
    let value = [7u8; VALUE_BYTES];
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    let txn = db.begin_write().expect("write transaction");
    {
        let mut t = txn.open_table(SUBJECTS).expect("table");
        for (customer, key) in &sorted {
            t.insert((*customer, key, STATE_ROW), value.as_slice())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}

fn main() {
    // `cargo bench` adds `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [path, old_rows, new_rows, mode] = args.as_slice() else {
        eprintln!(
            "usage: cargo bench --bench subject_tier -- FILE OLD_ROWS NEW_ROWS steps|young|merge"
        );
        std::process::exit(2);
    };
    let old_rows: u64 = old_rows.parse().expect("OLD_ROWS is a count");
    let new_rows: u64 = new_rows.parse().expect("NEW_ROWS is a count");
    let exists = std::path::Path::new(path).exists();
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .expect("a redb file");
    if !exists {
        build(&db, old_rows);
    }
    // Subjects numbered past any the file holds, different in every run.
    let base = (1 << 40) | (u64::from(std::process::id()) << 24);
    let rows: Vec<(u32, [u8; 32])> = (base..base + new_rows).map(row_key).collect();
    let started = Instant::now();
    match mode.as_str() {
        "steps" => steps(&db, SUBJECTS, &rows),
        "young" => steps(&db, YOUNG, &rows),
        "merge" => merge(&db, &rows),
        other => {
            eprintln!("unknown mode {other}: steps, young or merge");
            std::process::exit(2);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{mode}: {new_rows} rows in {seconds:.2} s, {:.1} µs per row",
        seconds * 1e6 / new_rows as f64
    );
}
