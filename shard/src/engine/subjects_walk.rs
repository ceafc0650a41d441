//! The index check's walk of the `subjects` table, in one thread or in two halves on two.
//!
//! The walk (the digest of the history rows, the expiry rows the current states imply,
//! and the states' claims) must be complete before the journal reaches the index check,
//! and the audit's chain walk waits for it once its batches are queued: with a core to
//! spare, two halves shorten that wait. Subject keys are
//! keyed blake3 hashes, so their first byte splits every customer's subjects evenly: the
//! first half takes, for each customer number, the keys whose subject starts below 0x80;
//! the second half takes every other key (including rows of customer numbers no customer
//! has, which then fail the digests), so each row is walked exactly once. Each half holds
//! half of the claims' memory bound.

use super::db::Snapshots;

use super::error::StorageError;
use super::index::{STATE_ROW, decode_state_view, expiry_rows, latest_seq};
use super::index_check::{Multiset, MultisetKey, expiry_key, history_row};
use super::state_check::{ClaimProblem, ClaimSpill, StateClaims};
use super::tables::SUBJECTS;

/// A `subjects` key: customer number, subject key, seq (`STATE_ROW` for the state row).
type Key = (u32, [u8; 32], u64);

/// The lowest subject key.
const LOW: [u8; 32] = [0; 32];
/// The first subject key of a customer's second half.
const MID: [u8; 32] = {
    let mut mid = [0u8; 32];
    mid[0] = 0x80;
    mid
};

/// How the `subjects` table is walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectsPass {
    /// In key order on the index check's own thread: for audits that already keep every
    /// core busy (several shards at once).
    OneThread,
    /// In two halves on two threads: when a core would otherwise wait (one shard audited
    /// at a time). The same checks, the same memory bound.
    TwoThreads,
}

/// What the walk of one half (or of the whole table) found.
pub(crate) struct SubjectsWalk {
    /// The stored history rows, and the row each state row stands for (its subject's
    /// latest event, index layout 2).
    pub(crate) have_history: Multiset,
    /// The expiry rows the current states imply.
    pub(crate) want_expiries: Multiset,
    /// How many state rows.
    pub(crate) state_rows: u64,
    /// The states' claims, sorted for the journal pass.
    pub(crate) claims: StateClaims,
    /// The first state problem of this half (reported after the history is proven).
    pub(crate) state_problem: Option<ClaimProblem>,
}

/// Walks `txn`'s `subjects` table as `pass` says; `customers` are the shard's customer
/// numbers. The walks together hold at most `spill.bytes_per_pass` of claims in memory.
pub(crate) fn walk_subjects(
    txn: &Snapshots,
    pass: SubjectsPass,
    customers: &[u32],
    key: MultisetKey,
    spill: &ClaimSpill,
) -> Result<Vec<SubjectsWalk>, StorageError> {
    if pass == SubjectsPass::OneThread {
        let everything = [((0, LOW, 0), None)];
        let walk = SubjectsWalk::run(txn, &everything, key, spill.clone())?;
        return Ok(vec![walk]);
    }
    let [first, second] = halves(customers);
    let per_half = spill.half();
    std::thread::scope(|scope| {
        let other = scope.spawn(|| SubjectsWalk::run(txn, &second, key, per_half.clone()));
        let mine = SubjectsWalk::run(txn, &first, key, per_half.clone());
        let other = other.join().expect("the subjects walk does not panic");
        Ok(vec![mine?, other?])
    })
}

/// The key ranges (from, to: exclusive, `None` for the end) of each half.
fn halves(customers: &[u32]) -> [Vec<(Key, Option<Key>)>; 2] {
    let mut sorted = customers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let mut from = (0, LOW, 0);
    for c in sorted {
        if from != (c, LOW, 0) {
            second.push((from, Some((c, LOW, 0))));
        }
        first.push(((c, LOW, 0), Some((c, MID, 0))));
        from = (c, MID, 0);
    }
    second.push((from, None));
    [first, second]
}

impl SubjectsWalk {
    /// Walks `ranges` of the `subjects` table in order.
    fn run(
        txn: &Snapshots,
        ranges: &[(Key, Option<Key>)],
        key: MultisetKey,
        spill: ClaimSpill,
    ) -> Result<SubjectsWalk, StorageError> {
        let subjects = txn.open_table(SUBJECTS)?;
        let mut walk = SubjectsWalk {
            have_history: Multiset::default(),
            want_expiries: Multiset::default(),
            state_rows: 0,
            claims: StateClaims::new(spill),
            state_problem: None,
        };
        let mut subject: Option<(u32, [u8; 32])> = None;
        let mut history: Vec<u64> = Vec::new();
        for (from, to) in ranges {
            let from = (from.0, &from.1, from.2);
            let rows = match to {
                Some(to) => subjects.range(from..(to.0, &to.1, to.2))?,
                None => subjects.range(from..)?,
            };
            for row in rows {
                let (k, v) = row?;
                let (c, &s, seq) = k.value();
                if subject != Some((c, s)) {
                    subject = Some((c, s));
                    history.clear();
                }
                if seq != STATE_ROW {
                    walk.have_history.add(key, &history_row(c, &s, seq));
                    history.push(seq);
                    continue;
                }
                let states = decode_state_view(v.value())?;
                // The state row stands for its subject's latest event, which has no
                // history row of its own (index layout 2): its row is implied here.
                if let Some(latest) = latest_seq(&states) {
                    walk.have_history.add(key, &history_row(c, &s, latest));
                    let at = history.partition_point(|&h| h < latest);
                    history.insert(at, latest);
                }
                for (at, seq) in expiry_rows(&states) {
                    walk.want_expiries.add(key, &expiry_key(c, at, seq, &s));
                }
                if walk.state_problem.is_none() {
                    walk.state_problem = walk.claims.add(&states, &history).err();
                }
                walk.state_rows += 1;
            }
        }
        if let Err(e) = walk.claims.sort_for_pass() {
            walk.state_problem.get_or_insert(e);
        }
        Ok(walk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_cover_every_key_once_in_order() {
        // Proves: the two halves' ranges, merged, tile the whole key space without gap or
        // overlap, whatever customer numbers (unsorted, repeated, 0, u32::MAX) are given.
        for customers in [vec![], vec![0], vec![5, 2, 2, u32::MAX], vec![7]] {
            let [first, second] = halves(&customers);
            let mut all: Vec<_> = first.iter().chain(&second).copied().collect();
            all.sort_unstable_by_key(|r| r.0);
            assert_eq!(all[0].0, (0, LOW, 0), "{customers:?}");
            for pair in all.windows(2) {
                assert_eq!(pair[0].1, Some(pair[1].0), "{customers:?}");
            }
            assert_eq!(all.last().unwrap().1, None, "{customers:?}");
            assert!(
                first
                    .iter()
                    .all(|(from, to)| to.is_some_and(|to| from.0 == to.0))
            );
        }
    }
}
