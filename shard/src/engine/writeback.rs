//! Writes an index file's dirty pages back between its durable steps, from a thread of
//! its own, so that the index writer's durable commit finds little left to write.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often the writeback thread `fdatasync`s the index file. Every subject step dirties
/// one random `subjects` leaf and branch per event (non-durable: in the page cache), and
/// without this the full step's durable commit wrote back all of them at once: 165–270 ms
/// on the 10M ledger, during which no subject step ran, so a reader of a subject it had
/// just written waited up to a quarter of a second (docs/benchmarks.md, session 31).
/// Measured against no writeback: that read's p99 at 10M 83–122 instead of 183–242 ms,
/// 10M `record` the same, fresh `record` +5 % server CPU per event (its small `subjects`
/// table's pages are rewritten within seconds, and each flush writes them again: +17 %
/// bytes written). 1 s: p99 143–161 ms, fresh cost within the noise (2 pairs).
pub const INDEX_WRITEBACK_INTERVAL_MS: u64 = 250;

/// The running writeback thread of one index file; stops (and joins) when dropped.
pub(crate) struct Writeback {
    /// Set to stop the thread; its condition variable wakes it.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    /// Starts writing back the file at `path` every [`INDEX_WRITEBACK_INTERVAL_MS`]. The
    /// file is opened afresh each time (a scrub replaces it), read-only: `fdatasync` needs
    /// no write access, and this thread never writes. Extra flushes are safe with redb:
    /// its copy-on-write never overwrites a page the last durable commit reaches, so
    /// anything a flush makes durable early is what a crash at that moment would leave.
    /// Returns `None` when the thread cannot be started (the durable steps still flush).
    pub(crate) fn start(path: PathBuf, shard_id: u32) -> Option<Writeback> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("index-sync-{shard_id:04}"))
            .spawn(move || run(&path, &signal))
            .ok()?;
        Some(Writeback {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(path: &std::path::Path, stop: &(Mutex<bool>, Condvar)) {
    let interval = Duration::from_millis(INDEX_WRITEBACK_INTERVAL_MS);
    loop {
        let stopped = stop.0.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = stop
            .1
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        if *stopped {
            return;
        }
        drop(stopped);
        // A missing file (between a scrub's rename steps) or a failed flush is left to the
        // durable step, which reports its own errors.
        if let Ok(file) = std::fs::File::open(path) {
            let _ = file.sync_data();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writeback_thread_flushes_on_through_a_missing_file_and_stops_when_dropped() {
        // Proves: the thread keeps running when its file is missing (a scrub's rename) or
        // present, and dropping it stops and joins it without waiting out an interval.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let writeback = Writeback::start(path.clone(), 7).expect("thread started");
        let thread = writeback.thread.as_ref().unwrap();
        assert_eq!(thread.thread().name(), Some("index-sync-0007"));
        std::thread::sleep(Duration::from_millis(INDEX_WRITEBACK_INTERVAL_MS + 50));
        std::fs::write(&path, b"pages").unwrap();
        std::thread::sleep(Duration::from_millis(INDEX_WRITEBACK_INTERVAL_MS + 50));
        assert!(!writeback.thread.as_ref().unwrap().is_finished());
        let started = std::time::Instant::now();
        drop(writeback);
        assert!(started.elapsed() < Duration::from_millis(INDEX_WRITEBACK_INTERVAL_MS));
    }
}
