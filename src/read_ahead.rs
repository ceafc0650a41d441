//! The audit's read-ahead: the shards' files into the page cache, in the order the audit
//! walks them, a bounded queue at the disk at a time (see [`ReadAhead`]).

/// Reads the shards' files into the page cache ahead of the audits that walk them in key
/// order: redb's pages are not laid out in key order, and sequential reads fill the page
/// cache at disk speed instead of one page fault at a time. One thread reads the shards in
/// the order they are audited, each shard's index file first, then its shard file: the
/// index check walks the whole `subjects` table (scattered over the index file) before the
/// journal walk can get more than `AUDIT_BATCHES_IN_FLIGHT` batches ahead of it, and then
/// both follow the shard file. It reads the next shard while the ones before it are
/// audited (at most `ahead` shards read and unfinished at once: one more than are audited
/// at once, so a ledger larger than memory is not read further ahead than that), and keeps
/// at most [`READ_AHEAD_CHUNKS_IN_FLIGHT`] chunks queued at the disk, so that a page an
/// audit needs before the read-ahead reaches it waits behind those alone. With every chunk of every
/// file queued at once (before session 24), a cold audit at 150 MB/s did nothing until
/// the whole shard was read, and the disk idled while a shard's audit computed
/// (docs/benchmarks.md, session 24). On Linux the thread only advises
/// (`posix_fadvise(WILLNEED)`, no copy to user space: reading into a buffer cost 4 % of a
/// warm audit's CPU) and waits for a chunk by reading its last byte; elsewhere it reads.
/// Stops when dropped.
pub(crate) struct ReadAhead {
    shared: std::sync::Arc<ReadAheadState>,
}

/// What the audits and the read-ahead thread share.
struct ReadAheadState {
    /// Set when the audits are over (or failed): the thread returns.
    stop: std::sync::atomic::AtomicBool,
    /// Shards whose audit has finished.
    finished: std::sync::Mutex<usize>,
    /// Signalled when `finished` or `stop` changes.
    changed: std::sync::Condvar,
}

/// Bytes advised (or read) per call by [`ReadAhead`].
const READ_AHEAD_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Chunks [`ReadAhead`] keeps queued at the disk: enough that the disk never waits for the
/// thread, few enough that the audit's own reads do not wait long behind them (8 MiB: 53 ms
/// at 150 MB/s, 8 ms at 1 GB/s).
const READ_AHEAD_CHUNKS_IN_FLIGHT: usize = 2;

impl ReadAhead {
    /// Starts reading `shards` (each a list of files) in order, shard `k` once fewer than
    /// `ahead` of the shards before it are unfinished.
    pub(crate) fn start(shards: Vec<Vec<std::path::PathBuf>>, ahead: usize) -> ReadAhead {
        let shared = std::sync::Arc::new(ReadAheadState {
            stop: std::sync::atomic::AtomicBool::new(false),
            finished: std::sync::Mutex::new(0),
            changed: std::sync::Condvar::new(),
        });
        let state = shared.clone();
        std::thread::spawn(move || {
            for (k, paths) in shards.iter().enumerate() {
                let mut finished = state.finished.lock().unwrap_or_else(|p| p.into_inner());
                while k >= *finished + ahead.max(1) && !state.stopped() {
                    finished = state
                        .changed
                        .wait(finished)
                        .unwrap_or_else(|p| p.into_inner());
                }
                drop(finished);
                if state.stopped() {
                    return;
                }
                let files: Vec<std::fs::File> = paths
                    .iter()
                    .filter_map(|p| std::fs::File::open(p).ok())
                    .collect();
                read_ahead(&files, &state.stop);
            }
        });
        ReadAhead { shared }
    }

    /// Counts one more shard's audit as finished (its pages are no longer needed).
    pub(crate) fn finished_one(&self) {
        *self
            .shared
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
        self.shared.changed.notify_all();
    }
}

impl ReadAheadState {
    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let _guard = self
            .shared
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared.changed.notify_all();
    }
}

/// Advises the kernel to read the data of `files`, one after another, in
/// [`READ_AHEAD_CHUNK_BYTES`] steps with at most [`READ_AHEAD_CHUNKS_IN_FLIGHT`] queued,
/// until every chunk is read, an error, or `stop`. Holes are skipped: redb extends its file
/// sparsely and never reads pages it has not written, and reading a hole only zero-fills
/// page-cache pages (0.8 GB of the 2.25 GB shard file of the 1M-entry bench ledger, and most of the
/// read-ahead's CPU in a cold audit by `perf`).
#[cfg(target_os = "linux")]
fn read_ahead(files: &[std::fs::File], stop: &std::sync::atomic::AtomicBool) {
    let mut queued = std::collections::VecDeque::new();
    for f in files {
        let len = f.metadata().map_or(0, |m| m.len());
        for (start, end) in data_ranges(f, len) {
            let mut at = start;
            while at < end {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let chunk = (end - at).min(READ_AHEAD_CHUNK_BYTES);
                let advice = rustix::fs::Advice::WillNeed;
                if rustix::fs::fadvise(f, at, std::num::NonZeroU64::new(chunk), advice).is_err() {
                    return;
                }
                queued.push_back((f, at + chunk - 1));
                at += chunk;
                if queued.len() > READ_AHEAD_CHUNKS_IN_FLIGHT {
                    let (oldest, last_byte) = queued.pop_front().expect("more than zero queued");
                    wait_until_read(oldest, last_byte);
                }
            }
        }
    }
    for (f, last_byte) in queued {
        wait_until_read(f, last_byte);
    }
}

/// Returns once the page holding `offset` is in the page cache: a one-byte read waits for
/// the advised read of that page (and reads it itself if the kernel dropped the advice).
#[cfg(target_os = "linux")]
fn wait_until_read(f: &std::fs::File, offset: u64) {
    use std::os::unix::fs::FileExt;
    let _ = f.read_at(&mut [0u8; 1], offset);
}

/// The ranges `[start, end)` of the first `len` bytes of `f` that hold data, in order
/// (`SEEK_DATA` / `SEEK_HOLE`; a file system without holes reports one range).
#[cfg(target_os = "linux")]
fn data_ranges(f: &std::fs::File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        // ENXIO: no data at or after `offset`.
        let Ok(start) = seek(f, SeekFrom::Data(offset)) else {
            break;
        };
        let end = seek(f, SeekFrom::Hole(start)).map_or(len, |e| e.min(len));
        if start >= end {
            break;
        }
        ranges.push((start, end));
        offset = end;
    }
    ranges
}

/// Reads `files` front to back, one after another, in [`READ_AHEAD_CHUNK_BYTES`] steps
/// until done, an error, or `stop` (no advice call on this system).
#[cfg(not(target_os = "linux"))]
fn read_ahead(files: &[std::fs::File], stop: &std::sync::atomic::AtomicBool) {
    let mut buf = vec![0u8; READ_AHEAD_CHUNK_BYTES as usize];
    for mut f in files {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{READ_AHEAD_CHUNK_BYTES, READ_AHEAD_CHUNKS_IN_FLIGHT, data_ranges, read_ahead};
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::atomic::AtomicBool;

    /// Pages of `f` (whole file) in the page cache, and pages in all.
    fn resident_pages(f: &std::fs::File) -> (usize, usize) {
        use std::os::fd::AsRawFd;
        let len = f.metadata().unwrap().len() as usize;
        let page = 4096;
        let pages = len.div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of an open file of `len` bytes, unmapped below;
        // mincore writes one byte per page into `vec`, which holds `pages` bytes.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        (vec.iter().filter(|b| **b & 1 == 1).count(), pages)
    }

    #[test]
    fn the_read_ahead_reads_every_file_it_is_given_and_stops_when_told() {
        // Proves: paced as it is, the read-ahead brings every page of both files into the
        // page cache (it waits for queued chunks and moves on to the second file), and a
        // stopped read-ahead returns at once without reading.
        let dir = tempfile::tempdir().unwrap();
        let chunks = READ_AHEAD_CHUNKS_IN_FLIGHT as u64 * 3;
        let files: Vec<std::fs::File> = ["first", "second"]
            .iter()
            .map(|name| {
                let path = dir.path().join(name);
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(&vec![9u8; (chunks * READ_AHEAD_CHUNK_BYTES) as usize])
                    .unwrap();
                f.sync_all().unwrap();
                std::fs::File::open(&path).unwrap()
            })
            .collect();
        let evict = |f: &std::fs::File| {
            rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        };
        files.iter().for_each(evict);
        if files.iter().any(|f| resident_pages(f).0 > 0) {
            eprintln!("this file system keeps its pages in memory; nothing to prove here");
            return;
        }
        read_ahead(&files, &AtomicBool::new(true));
        assert_eq!(resident_pages(&files[0]).0, 0, "a stopped read-ahead read");
        read_ahead(&files, &AtomicBool::new(false));
        // It waits for each chunk's last page; the kernel may complete the chunk's other
        // pages a moment later (this assertion failed once in a full `cargo test` run
        // when read at the instant it returned, session 31), so they get a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for f in &files {
            let (mut resident, pages) = resident_pages(f);
            while resident < pages && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                resident = resident_pages(f).0;
            }
            assert_eq!(resident, pages, "every page read");
        }
    }

    #[test]
    fn the_read_ahead_skips_the_holes_of_a_sparse_file() {
        // Proves: only the written middle of a sparse file is advised, not its holes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut f = std::fs::File::create(&path).unwrap();
        let mib = 1u64 << 20;
        f.set_len(16 * mib).unwrap();
        f.seek(SeekFrom::Start(8 * mib)).unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.sync_all().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let ranges = data_ranges(&f, 16 * mib);
        if ranges == [(0, 16 * mib)] {
            eprintln!("this file system reports no holes; nothing to prove here");
            return;
        }
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        let (start, end) = ranges[0];
        assert!(start <= 8 * mib && start > 0, "{ranges:?}");
        assert!(end >= 8 * mib + 64 * 1024 && end < 16 * mib, "{ranges:?}");
    }
}
