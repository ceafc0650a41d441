//! The shard's open redb database as its writer and readers share it, and the read
//! snapshot that point reads share between two commits.

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::error::StorageError;
use super::tables::{CUSTOMERS, JOURNAL, PERSONAL, SUBJECTS, in_index_file};

/// A shard's database: the writer's, or a read-only one that never changes the file (audits).
pub(crate) enum Db {
    /// Opened by the shard's writer (`Store`).
    Writable(Database),
    /// Opened by `ShardReader::open_existing` (audits).
    ReadOnly(redb::ReadOnlyDatabase),
    /// Closed by the writer's `Store::close`; every read fails.
    Closed,
}

impl Db {
    /// A read snapshot.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
            Db::Closed => Err(closed()),
        }
    }

    /// A write transaction. Only the writer's database is written.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_write(),
            Db::ReadOnly(_) => panic!("a shard opened read-only is never written"),
            Db::Closed => Err(closed()),
        }
    }
}

fn closed() -> redb::TransactionError {
    redb::TransactionError::Storage(redb::StorageError::DatabaseClosed)
}

/// The shard's open database, replaceable as a whole: a scrub rewrites the file and swaps
/// the new one in, and every reader (they share this cell) moves to it at its next read.
/// A read already running keeps its snapshot of the old file until it ends.
pub(crate) struct DbCell {
    db: RwLock<Arc<Db>>,
    /// The snapshot point reads share ([`DbCell::shared_snapshot`]); emptied by every
    /// commit ([`DbCell::commit`]) before its caller is answered, and when the database is
    /// replaced or closed.
    shared: Mutex<Option<Arc<Snapshot>>>,
}

impl DbCell {
    /// The writer's cell.
    pub(crate) fn new(db: Database) -> DbCell {
        DbCell::holding(Db::Writable(db))
    }

    /// A cell holding `db`.
    pub(crate) fn holding(db: Db) -> DbCell {
        DbCell {
            db: RwLock::new(Arc::new(db)),
            shared: Mutex::new(None),
        }
    }

    /// The current database.
    pub(crate) fn get(&self) -> Arc<Db> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A snapshot that holds every transaction committed before this call: the shared one
    /// when no commit has happened since it was taken, else a new one, which is then
    /// shared. Opening a snapshot and its tables was ≈ 7 % of a `read` request's server
    /// CPU; between two commits every point read can use the same one. Long walks
    /// (audits, scrub) take their own with `get().begin_read()`: a shared snapshot lives
    /// only until the next commit.
    pub(crate) fn shared_snapshot(&self) -> Result<Arc<Snapshot>, StorageError> {
        // Taken under the lock: a commit empties the slot under the same lock after its
        // transaction is visible, so a snapshot stored here never misses a commit whose
        // caller was answered.
        let mut slot = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(snapshot) = slot.as_ref() {
            return Ok(snapshot.clone());
        }
        let snapshot = Arc::new(Snapshot::new(self.get().begin_read()?));
        *slot = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Commits `txn` and drops the shared snapshot, so that every read that begins after
    /// this returns sees the transaction. Every write transaction of a serving shard
    /// commits through here.
    pub(crate) fn commit(&self, txn: WriteTransaction) -> Result<(), redb::CommitError> {
        let result = txn.commit();
        self.drop_shared();
        result
    }

    /// Forgets the shared snapshot (its last reader drops it): it must not outlive the
    /// data it was taken of, nor pin the pages a commit freed (erased records' pages).
    fn drop_shared(&self) {
        let old = self.shared.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(old);
    }

    /// Takes the database out, leaving every holder of the cell a closed one; returns it
    /// so that the caller drops it (redb records a clean shutdown when it is dropped).
    pub(crate) fn close(&self) -> Arc<Db> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *slot, Arc::new(Db::Closed));
        self.drop_shared();
        old
    }

    /// Replaces the database; returns the old one (dropped by its last reader).
    pub(crate) fn replace(&self, db: Database) -> Arc<Db> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *slot, Arc::new(Db::Writable(db)));
        self.drop_shared();
        old
    }
}

/// The `subjects` table as read (history rows and state rows).
type SubjectsTable = ReadOnlyTable<(u32, &'static [u8; 32], u64), &'static [u8]>;

/// A read snapshot and the tables point reads use, each opened on first use and then
/// shared by every read of this snapshot.
pub(crate) struct Snapshot {
    txn: ReadTransaction,
    customers: OnceLock<ReadOnlyTable<&'static str, (u32, &'static [u8; 32])>>,
    subjects: OnceLock<SubjectsTable>,
    journal: OnceLock<ReadOnlyTable<u64, &'static [u8]>>,
    personal: OnceLock<ReadOnlyTable<u64, &'static [u8]>>,
}

impl Snapshot {
    fn new(txn: ReadTransaction) -> Snapshot {
        Snapshot {
            txn,
            customers: OnceLock::new(),
            subjects: OnceLock::new(),
            journal: OnceLock::new(),
            personal: OnceLock::new(),
        }
    }

    /// The transaction, for tables that are not kept open here.
    pub(crate) fn txn(&self) -> &ReadTransaction {
        &self.txn
    }

    /// The `customers` table.
    pub(crate) fn customers(
        &self,
    ) -> Result<&ReadOnlyTable<&'static str, (u32, &'static [u8; 32])>, StorageError> {
        opened(&self.txn, &self.customers, CUSTOMERS)
    }

    /// The `subjects` table.
    pub(crate) fn subjects(&self) -> Result<&SubjectsTable, StorageError> {
        opened(&self.txn, &self.subjects, SUBJECTS)
    }

    /// The `journal` table.
    pub(crate) fn journal(&self) -> Result<&ReadOnlyTable<u64, &'static [u8]>, StorageError> {
        opened(&self.txn, &self.journal, JOURNAL)
    }

    /// The `personal_records` table.
    pub(crate) fn personal(&self) -> Result<&ReadOnlyTable<u64, &'static [u8]>, StorageError> {
        opened(&self.txn, &self.personal, PERSONAL)
    }
}

/// The table in `slot`, opened from `txn` first if it is not yet (two racing first uses
/// both open it; one is kept).
fn opened<'s, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    slot: &'s OnceLock<ReadOnlyTable<K, V>>,
    table: TableDefinition<K, V>,
) -> Result<&'s ReadOnlyTable<K, V>, StorageError> {
    if let Some(open) = slot.get() {
        return Ok(open);
    }
    let open = txn.open_table(table)?;
    Ok(slot.get_or_init(|| open))
}

/// Read snapshots of both files of a shard, for walks over tables of both (audits). The
/// index snapshot is taken first: the index writer indexes only committed entries, so the
/// shard snapshot then holds every entry an index row names.
pub(crate) struct Snapshots {
    /// Of the index file.
    pub(crate) index: ReadTransaction,
    /// Of the shard file.
    pub(crate) shard: ReadTransaction,
}

impl Snapshots {
    /// Opens `table` in the snapshot of the file that holds it.
    pub(crate) fn open_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, redb::TableError> {
        if in_index_file(table.name()) {
            self.index.open_table(table)
        } else {
            self.shard.open_table(table)
        }
    }
}
