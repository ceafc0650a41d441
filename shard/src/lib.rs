//! The Assent ledger engine.
//!
//! Map of the crate (see ARCHITECTURE.md):
//! - [`hash`]: the digest type and the blake3 rules for entries, commitments and subject keys.
//! - [`format`](mod@format): consent events, journal entries, personal records, canonical encodings, limits.
//! - [`merkle`]: RFC 9162 tree, inclusion and consistency proofs, generic over the hash.
//! - [`verify`]: streaming verification of a journal against its chain and root.
//! - [`checkpoint`]: signed checkpoints (C2SP signed notes) over all shard heads.
//! - [`receipt`]: offline receipts and their step-by-step verification.
//! - `engine` (feature `engine`): redb storage and the actix shard actor.
//!
//! Everything outside `engine` is pure: no I/O, no actix, no redb.
//! `cargo check -p shard --no-default-features` builds exactly that part.

pub mod checkpoint;
pub mod format;
pub mod hash;
pub mod merkle;
pub mod receipt;
pub mod verify;

#[cfg(feature = "engine")]
pub mod engine;
