//! Block storage: the encoded genesis, the encoded blocks by height, and the tip.
//!
//! This module owns the [`BlockStore`] trait, the small boundary the chain and the verifier read
//! and write through, and two implementations: [`MemStore`] (tests, simulations) and
//! [`RedbStore`] (a single `redb` file, which also holds blobs by hash).
//!
//! A store keeps **bytes**, not decoded values: it never interprets what it holds, so a corrupt
//! record reaches the decoder and is reported there, and the verifier checks exactly the bytes on
//! disk. Ordering and validity are the caller's job ([`crate::chain::Chain`] only writes the next
//! valid block).
//!
//! Durability: [`BlockStore::put_block`] writes the block and moves the tip in one step, and
//! returns only once that step is durable — for `RedbStore`, once the redb write transaction has
//! committed (redb's default `Durability::Immediate`, fsynced). Committed means on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use crate::blob::{BlobError, BlobStore};
use crate::hash::{BlockHash, Digest};

/// Errors from a block store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database was not closed cleanly (its writer crashed) and needs a repair, which only
    /// [`RedbStore::open`] (for writing) does.
    #[error("store needs repair (not closed cleanly): path={path}")]
    NeedsRepair {
        /// The database file.
        path: PathBuf,
    },
    /// A write to a store opened with [`RedbStore::open_read_only`].
    #[error("store opened read-only: path={path}")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The database failed.
    #[error("store backend failed: path={path} reason={reason}")]
    Backend {
        /// The database file.
        path: PathBuf,
        /// The backend's message.
        reason: String,
    },
    /// A record the store keeps for itself (the tip) is unreadable.
    #[error("corrupt store record: record={record} reason={reason}")]
    Corrupt {
        /// Which record.
        record: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Where the chain ends: the last block's height and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    /// The last block's height.
    pub height: u64,
    /// The last block's hash.
    pub hash: BlockHash,
}

/// Storage for one chain's encoded genesis and blocks.
pub trait BlockStore {
    /// Store the encoded genesis.
    fn put_genesis(&mut self, bytes: &[u8]) -> Result<(), StoreError>;

    /// The encoded genesis, if stored.
    fn genesis(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Store the encoded block at `height` and make `(height, hash)` the tip, durably and
    /// atomically: after a crash either both happened or neither.
    fn put_block(&mut self, height: u64, hash: &BlockHash, bytes: &[u8]) -> Result<(), StoreError>;

    /// Store consecutive encoded blocks `(height, hash, bytes)` and make the last one the tip, in
    /// one durable, atomic step where the store can (one redb transaction, one fsync); the
    /// default stores them one by one.
    fn put_blocks(&mut self, blocks: &[(u64, BlockHash, Vec<u8>)]) -> Result<(), StoreError> {
        for (height, hash, bytes) in blocks {
            self.put_block(*height, hash, bytes)?;
        }
        Ok(())
    }

    /// The encoded block at `height`, if stored.
    fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every height that has a block, ascending.
    fn heights(&self) -> Result<Vec<u64>, StoreError>;

    /// The tip, if any block is stored.
    fn tip(&self) -> Result<Option<Tip>, StoreError>;
}

/// Blocks in memory, with hooks to corrupt them for tests.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    genesis: Option<Vec<u8>>,
    blocks: BTreeMap<u64, Vec<u8>>,
    tip: Option<Tip>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// The stored bytes of a block, writable — for fault injection (a flipped byte on disk).
    pub fn block_bytes_mut(&mut self, height: u64) -> Option<&mut Vec<u8>> {
        self.blocks.get_mut(&height)
    }

    /// Delete a block without moving the tip — for fault injection (a lost block).
    pub fn remove_block(&mut self, height: u64) -> Option<Vec<u8>> {
        self.blocks.remove(&height)
    }

    /// Overwrite a block and the tip without any check — for fault injection (a rewritten chain).
    pub fn put_raw(&mut self, height: u64, bytes: Vec<u8>, tip: Option<Tip>) {
        self.blocks.insert(height, bytes);
        self.tip = tip;
    }
}

impl BlockStore for MemStore {
    fn put_genesis(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.genesis = Some(bytes.to_vec());
        Ok(())
    }

    fn genesis(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.genesis.clone())
    }

    fn put_block(&mut self, height: u64, hash: &BlockHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.blocks.insert(height, bytes.to_vec());
        self.tip = Some(Tip { height, hash: *hash });
        Ok(())
    }

    fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blocks.get(&height).cloned())
    }

    fn heights(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.blocks.keys().copied().collect())
    }

    fn tip(&self) -> Result<Option<Tip>, StoreError> {
        Ok(self.tip)
    }
}

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_GENESIS: &str = "genesis";
const META_TIP: &str = "tip";

/// Blocks (by height), blobs (by hash) and the genesis and tip in one `redb` file.
///
/// Tables: `blocks: u64 -> bytes`, `blobs: [u8; 32] -> bytes`, `meta: str -> bytes` with keys
/// `genesis` and `tip` (8 bytes little-endian height, then the 32-byte hash).
pub struct RedbStore {
    db: Db,
    path: PathBuf,
}

/// The database, opened for writing or only for reading.
enum Db {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open the database at `path`, creating it (not its folder) if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| backend(&path, e))?;
        let store = RedbStore { db: Db::Writable(db), path };
        // Create the tables once, so readers never meet a missing one.
        let txn = store.writable()?.begin_write().map_err(|e| store.err(e))?;
        {
            txn.open_table(BLOCKS).map_err(|e| store.err(e))?;
            txn.open_table(BLOBS).map_err(|e| store.err(e))?;
            txn.open_table(META).map_err(|e| store.err(e))?;
        }
        txn.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Open the existing database at `path` for reading only: nothing is created or changed, so
    /// a copy on read-only media can be audited. Writes fail with [`StoreError::ReadOnly`]. A
    /// database a process holds for writing (a running node) is refused with an error that
    /// says so: redb locks the file. A database whose writer crashed needs a repair first
    /// ([`StoreError::NeedsRepair`]).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = ReadOnlyDatabase::open(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Backend {
                path: path.clone(),
                reason: "in use by another process (a running node?); stop it, or copy the folder and read the copy"
                    .into(),
            },
            DatabaseError::RepairAborted => StoreError::NeedsRepair { path: path.clone() },
            e => backend(&path, e),
        })?;
        Ok(RedbStore { db: Db::ReadOnly(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writable(&self) -> Result<&Database, StoreError> {
        match &self.db {
            Db::Writable(db) => Ok(db),
            Db::ReadOnly(_) => Err(StoreError::ReadOnly { path: self.path.clone() }),
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match &self.db {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        backend(&self.path, e)
    }

    fn blob_err(&self, e: impl Into<redb::Error>) -> BlobError {
        BlobError::Backend { reason: format!("path={} {}", self.path.display(), e.into()) }
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(META).map_err(|e| self.err(e))?;
        let value = table.get(key).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

fn backend(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend { path: path.to_path_buf(), reason: e.into().to_string() }
}

impl BlockStore for RedbStore {
    fn put_genesis(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.writable()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_GENESIS, bytes).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn put_blocks(&mut self, blocks: &[(u64, BlockHash, Vec<u8>)]) -> Result<(), StoreError> {
        let Some((last_height, last_hash, _)) = blocks.last() else { return Ok(()) };
        let mut tip = last_height.to_le_bytes().to_vec();
        tip.extend_from_slice(last_hash.as_bytes());
        let txn = self.writable()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(BLOCKS).map_err(|e| self.err(e))?;
            for (height, _, bytes) in blocks {
                table.insert(*height, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_TIP, tip.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn genesis(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta(META_GENESIS)
    }

    fn put_block(&mut self, height: u64, hash: &BlockHash, bytes: &[u8]) -> Result<(), StoreError> {
        let mut tip = height.to_le_bytes().to_vec();
        tip.extend_from_slice(hash.as_bytes());
        let txn = self.writable()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(|e| self.err(e))?;
            blocks.insert(height, bytes).map_err(|e| self.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_TIP, tip.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let value = table.get(height).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn heights(&self) -> Result<Vec<u64>, StoreError> {
        let txn = self.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.err(e))? {
            let (k, _) = entry.map_err(|e| self.err(e))?;
            out.push(k.value());
        }
        Ok(out)
    }

    fn tip(&self) -> Result<Option<Tip>, StoreError> {
        let Some(bytes) = self.meta(META_TIP)? else { return Ok(None) };
        if bytes.len() != 40 {
            return Err(StoreError::Corrupt {
                record: "tip",
                reason: format!("expected 40 bytes, found {}", bytes.len()),
            });
        }
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[8..]);
        Ok(Some(Tip { height: u64::from_le_bytes(height), hash: Digest(hash) }))
    }
}

impl BlobStore for RedbStore {
    fn put(&mut self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let hash = Digest::of(bytes);
        let txn = self
            .writable()
            .map_err(|e| BlobError::Backend { reason: e.to_string() })?
            .begin_write()
            .map_err(|e| self.blob_err(e))?;
        {
            let mut blobs = txn.open_table(BLOBS).map_err(|e| self.blob_err(e))?;
            blobs.insert(hash.as_bytes().as_slice(), bytes).map_err(|e| self.blob_err(e))?;
        }
        txn.commit().map_err(|e| self.blob_err(e))?;
        Ok(hash)
    }

    fn get(&self, hash: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        let txn = self.begin_read().map_err(|e| self.blob_err(e))?;
        let table = txn.open_table(BLOBS).map_err(|e| self.blob_err(e))?;
        let value = table.get(hash.as_bytes().as_slice()).map_err(|e| self.blob_err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &mut dyn BlockStore) {
        assert_eq!(store.genesis().unwrap(), None);
        assert_eq!(store.tip().unwrap(), None);
        store.put_genesis(b"g").unwrap();
        store.put_block(0, &Digest::of(b"0"), b"block 0").unwrap();
        store.put_block(1, &Digest::of(b"1"), b"block 1").unwrap();
        assert_eq!(store.genesis().unwrap().as_deref(), Some(&b"g"[..]));
        assert_eq!(store.block(1).unwrap().as_deref(), Some(&b"block 1"[..]));
        assert_eq!(store.block(2).unwrap(), None);
        assert_eq!(store.heights().unwrap(), vec![0, 1]);
        assert_eq!(store.tip().unwrap(), Some(Tip { height: 1, hash: Digest::of(b"1") }));
    }

    #[test]
    fn mem_store_keeps_blocks_and_tip() {
        exercise(&mut MemStore::new());
    }

    #[test]
    fn redb_store_keeps_blocks_tip_and_blobs_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        {
            let mut store = RedbStore::open(&path).unwrap();
            exercise(&mut store);
            store.put(b"blob").unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.tip().unwrap(), Some(Tip { height: 1, hash: Digest::of(b"1") }));
        assert_eq!(store.block(0).unwrap().as_deref(), Some(&b"block 0"[..]));
        assert_eq!(store.get_verified(&Digest::of(b"blob")).unwrap().as_deref(), Some(&b"blob"[..]));
    }

    #[test]
    fn read_only_store_reads_refuses_writes_and_names_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        {
            let mut store = RedbStore::open(&path).unwrap();
            exercise(&mut store);
            // A writer holds the file: a reader is told why it cannot open it.
            let err = RedbStore::open_read_only(&path).unwrap_err();
            assert!(err.to_string().contains("in use by another process"), "{err}");
        }
        let before = std::fs::read(&path).unwrap();
        let mut store = RedbStore::open_read_only(&path).unwrap();
        assert_eq!(store.tip().unwrap(), Some(Tip { height: 1, hash: Digest::of(b"1") }));
        assert_eq!(store.heights().unwrap(), vec![0, 1]);
        assert!(matches!(store.put_block(2, &Digest::of(b"2"), b"block 2"), Err(StoreError::ReadOnly { .. })));
        assert!(store.put(b"blob").is_err());
        drop(store);
        assert_eq!(std::fs::read(&path).unwrap(), before, "opening read-only changed the file");
    }

    #[test]
    fn redb_open_on_a_garbage_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-db.redb");
        std::fs::write(&path, vec![0xAB; 4096]).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("not-a-db.redb"), "{err}");
    }
}
