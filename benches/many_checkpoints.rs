//! Appends N checkpoints to a stopped server's data directory, each a copy of the last one
//! with the next number, signed again with the directory's own key: the ledger an old
//! server accumulates (one checkpoint a second while it writes), for measuring what the
//! audit and the server hold in memory against it (`benches/audit/checkpoints.sh`).
//!
//!   cargo bench --bench many_checkpoints -- DATA_DIR N
use redb::ReadableTable;
use shard::checkpoint::open_checkpoint;

fn main() {
    // `cargo bench` adds `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [dir, n] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench many_checkpoints -- DATA_DIR N");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(dir);
    let n: u64 = n.parse().expect("N is a count");
    let key = gateway::read_signing_key(&dir.join("signing-key")).expect("its signing key");
    let db = gateway::ledger_db_builder()
        .create(dir.join("ledger.redb"))
        .expect("a stopped server's ledger.redb");
    let txn = db.begin_write().expect("write transaction");
    let first = {
        let mut table = txn.open_table(gateway::CHECKPOINTS).expect("checkpoints");
        let note = table
            .last()
            .expect("readable")
            .expect("one checkpoint at least");
        let last = open_checkpoint(note.1.value(), None)
            .expect("a checkpoint")
            .0;
        drop(note);
        for i in 1..=n {
            let mut c = last.clone();
            c.number += i;
            table
                .insert(c.number, c.sign(&key).as_str())
                .expect("insert");
        }
        last.number
    };
    txn.commit().expect("commit");
    println!("appended {n} checkpoints after checkpoint {first}");
}
