//! Handing freed memory back to the OS from the threads that own it.
//!
//! The allocator is the binary's choice, so the engine only calls a hook the binary sets
//! ([`set_memory_release`]). With mimalloc, a block freed by another thread than the one
//! that allocated it waits in its page until the owning thread next looks at its heap, and
//! the page, even when all its blocks are free, stays resident until then. A shard's
//! entries are allocated on its writer and freed on its index writer; redb's cached pages
//! are allocated by whichever thread read them and freed by whichever evicts them; a
//! scrub's old files are closed on a thread of their own. Measured (docs/benchmarks.md,
//! session 20): on the 10M ledger, the live heap was 95–105 MiB under `batch` and fell to
//! 14 MiB through four scrubs while RSS rose to 263–275 MiB; with the shards' writers and
//! index writers releasing every `MEMORY_RELEASE_INTERVAL_MS`, RSS stayed at or below the
//! `batch` peak (221–229 MiB) through the scrubs and fell to 149 MiB after. The HTTP
//! workers do not release: doing it there cost `batch` ≈ 6 % of server CPU (their request
//! buffers were faulted back in), and the engine threads alone kept the budget.

use std::sync::OnceLock;

/// How often a long-lived engine thread (a shard's writer, its index writer) releases the
/// memory other threads freed into its heap, while it runs and once after it goes idle.
pub const MEMORY_RELEASE_INTERVAL_MS: u64 = 500;

static HOOK: OnceLock<fn()> = OnceLock::new();

/// Sets what [`release_memory`] calls (once per process; later calls are ignored): the
/// allocator's "collect this thread's heap" (`mi_collect(false)` for mimalloc).
pub fn set_memory_release(hook: fn()) {
    let _ = HOOK.set(hook);
}

/// Returns to the OS what the calling thread's heap holds freed, if the binary set a hook.
pub fn release_memory() {
    if let Some(hook) = HOOK.get() {
        hook();
    }
}

/// Whether a hook is set (threads that would wake only to release skip it otherwise).
pub(crate) fn releases_memory() -> bool {
    HOOK.get().is_some()
}
