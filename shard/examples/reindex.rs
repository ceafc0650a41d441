//! Rebuilds a shard's index file from its journal, to measure the index writer's work per
//! event apart from HTTP and the shard's commits (e.g. under `valgrind --tool=callgrind`).
//!
//!   cargo run --release -p shard --example reindex -- COPY/shards/shard-0000.redb
//!
//! Deletes the index file beside the given shard file first: run it on a copy.

fn main() {
    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .expect("usage: reindex SHARD_FILE (a copy: its index file is deleted)");
    let index = shard::engine::index_path(&path);
    match std::fs::remove_file(&index) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot delete {}: {e}", index.display()),
    }
    let started = std::time::Instant::now();
    let store = shard::engine::Store::open(&path, 0).expect("the shard opens");
    let size = store.head().size;
    store.close();
    let s = started.elapsed().as_secs_f64();
    println!(
        "{size} entries indexed in {s:.2} s ({:.0} entries/s)",
        size as f64 / s
    );
}
