//! The ledger's one on-disk layout: a folder holding the block store and the blob store.
//!
//! ```text
//! DIR/
//!   ledger.redb   the genesis, the blocks by height and the tip (a RedbStore)
//!   blobs/        one file per blob, named by the 64-hex blake3 of its bytes (a DirBlobs)
//!   UNFINISHED    present while the writer that records it has not finished
//! ```
//!
//! A writer that fills a ledger over a long run (a simulation) marks the folder
//! ([`mark_unfinished`]) when it starts and removes the mark ([`mark_finished`]) only once
//! everything is written and synced. A folder still marked ([`is_unfinished`]) was left by a
//! writer that was killed or failed: however well it verifies, it is not the whole record.
//!
//! This module owns that layout, so the CLI, the simulator and a node agree on where a ledger's
//! bytes are: [`LedgerDir::create`] makes a new, empty ledger folder and refuses one that already
//! holds a ledger; [`LedgerDir::open`] opens an existing one and refuses a folder that is not a
//! ledger, naming the file that is missing — it never creates anything there. What goes into the
//! store (the genesis, block 0) is [`crate::chain::Chain::create`]'s job:
//!
//! ```
//! use dainet_ledger::chain::Chain;
//! use dainet_ledger::folder::LedgerDir;
//! use dainet_ledger::genesis::{Founder, Genesis};
//! use dainet_ledger::identity::Keypair;
//! use dainet_ledger::tx::ChainId;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().join("ledger");
//! let alice = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
//! let founders = vec![Founder { id: alice.node_id(), name: "alice".into(), validator: true }];
//! let genesis = Genesis { name: "doc".into(), timestamp_ms: 0, founders, treasury: None };
//!
//! let (store, _blobs) = LedgerDir::create(&dir)?.into_parts();
//! let chain = Chain::create(store, genesis)?;
//! drop(chain); // redb allows one open handle per file
//!
//! let ledger = LedgerDir::open(&dir)?;
//! assert!(ledger.verify().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A `RedbStore` holds a lock on its file, so one process at a time opens a ledger folder.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::blob::{BlobError, DirBlobs};
use crate::store::{RedbStore, StoreError};
use crate::verify::{verify, Report};

/// The block store's file name inside a ledger folder.
pub const STORE_FILE: &str = "ledger.redb";
/// The blob folder's name inside a ledger folder.
pub const BLOBS_DIR: &str = "blobs";
/// The mark of a ledger folder whose writer has not finished.
pub const UNFINISHED_FILE: &str = "UNFINISHED";

/// Marks the ledger folder `dir` as being written (see the module docs); the mark is synced.
pub fn mark_unfinished(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(UNFINISHED_FILE);
    let file = fs::File::create(&path)?;
    std::io::Write::write_all(&mut &file, b"the run writing this ledger has not finished\n")?;
    file.sync_all()?;
    fs::File::open(dir)?.sync_all()
}

/// Removes the mark of [`mark_unfinished`]: the writer has finished.
pub fn mark_finished(dir: &Path) -> std::io::Result<()> {
    match fs::remove_file(dir.join(UNFINISHED_FILE)) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => fs::File::open(dir)?.sync_all(),
    }
}

/// Whether the ledger folder `dir` is marked as still being written.
pub fn is_unfinished(dir: &Path) -> bool {
    dir.join(UNFINISHED_FILE).exists()
}
/// What a ledger folder holds, for messages.
const LAYOUT: &str = "a ledger folder holds ledger.redb (the genesis and blocks) and blobs/ (one file per blob)";

/// Errors from creating or opening a ledger folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// A file operation on the folder failed.
    #[error("ledger folder i/o failed: path={path} reason={source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// [`LedgerDir::create`] found a ledger (or part of one) already there.
    #[error("ledger folder already holds a ledger: found={found}; open it, or create the new ledger elsewhere")]
    AlreadyALedger {
        /// The file or non-empty folder found.
        found: PathBuf,
    },
    /// [`LedgerDir::open`] was pointed at something that is not a folder.
    #[error("no ledger folder at {dir}: it does not exist or is not a folder; {LAYOUT}")]
    NoFolder {
        /// The path given.
        dir: PathBuf,
    },
    /// [`LedgerDir::open`] was pointed at a folder without a ledger's files.
    #[error("not a ledger folder: {dir} has no {missing}; {LAYOUT}")]
    NotALedger {
        /// The folder.
        dir: PathBuf,
        /// The name of the first missing entry (`ledger.redb` or `blobs/`).
        missing: &'static str,
    },
    /// The block store failed to open.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The blob store failed to open.
    #[error("{0}")]
    Blobs(#[from] BlobError),
}

/// Where the parts of a ledger folder live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerPaths {
    /// The ledger folder.
    pub dir: PathBuf,
    /// `DIR/ledger.redb`, the block store.
    pub store: PathBuf,
    /// `DIR/blobs`, the blob folder.
    pub blobs: PathBuf,
}

impl LedgerPaths {
    /// The layout of the ledger folder `dir` (nothing is read or checked).
    pub fn of(dir: impl Into<PathBuf>) -> LedgerPaths {
        let dir = dir.into();
        LedgerPaths { store: dir.join(STORE_FILE), blobs: dir.join(BLOBS_DIR), dir }
    }
}

/// An open ledger folder: its block store and its blob store.
#[derive(Debug)]
pub struct LedgerDir {
    paths: LedgerPaths,
    store: RedbStore,
    blobs: DirBlobs,
}

impl LedgerDir {
    /// Make a new ledger folder at `dir` (creating it and its parents if missing) with an empty
    /// block store and an empty blob folder.
    ///
    /// Refuses a folder that already holds `ledger.redb` or a non-empty `blobs/`: a ledger is
    /// never overwritten. Other files in `dir` are left alone.
    pub fn create(dir: impl AsRef<Path>) -> Result<LedgerDir, FolderError> {
        let paths = LedgerPaths::of(dir.as_ref());
        fs::create_dir_all(&paths.dir).map_err(|source| FolderError::Io { path: paths.dir.clone(), source })?;
        if exists(&paths.store)? {
            return Err(FolderError::AlreadyALedger { found: paths.store });
        }
        match fs::read_dir(&paths.blobs) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(FolderError::AlreadyALedger { found: paths.blobs });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => return Err(FolderError::Io { path: paths.blobs, source }),
        }
        let blobs = DirBlobs::open(&paths.blobs)?;
        let store = RedbStore::open(&paths.store)?;
        sync_dir(&paths.dir)?;
        Ok(LedgerDir { paths, store, blobs })
    }

    /// Open the ledger folder at `dir`. Creates nothing: a folder without `ledger.redb` or
    /// `blobs/` is refused with [`FolderError::NotALedger`] naming what is missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<LedgerDir, FolderError> {
        Self::open_with(dir.as_ref(), |path| RedbStore::open(path))
    }

    /// [`LedgerDir::open`] for reading only ([`RedbStore::open_read_only`]): for auditing a copy
    /// on read-only media; writing to the store fails. A folder a running node holds is refused
    /// with an error that says so. One exception: a store whose writer crashed is opened for
    /// writing, because only a writer can repair it (redb's own recovery; the blocks are then
    /// checked as usual).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<LedgerDir, FolderError> {
        Self::open_with(dir.as_ref(), |path| match RedbStore::open_read_only(path) {
            Err(StoreError::NeedsRepair { .. }) => RedbStore::open(path),
            opened => opened,
        })
    }

    fn open_with(
        dir: &Path,
        open_store: impl FnOnce(&Path) -> Result<RedbStore, StoreError>,
    ) -> Result<LedgerDir, FolderError> {
        let paths = LedgerPaths::of(dir);
        if !is_dir(&paths.dir)? {
            return Err(FolderError::NoFolder { dir: paths.dir });
        }
        if !exists(&paths.store)? {
            return Err(FolderError::NotALedger { dir: paths.dir, missing: STORE_FILE });
        }
        if !is_dir(&paths.blobs)? {
            return Err(FolderError::NotALedger { dir: paths.dir, missing: "blobs/" });
        }
        let store = open_store(&paths.store)?;
        let blobs = DirBlobs::open(&paths.blobs)?;
        Ok(LedgerDir { paths, store, blobs })
    }

    /// Where the folder and its parts are.
    pub fn paths(&self) -> &LedgerPaths {
        &self.paths
    }

    /// The block store.
    pub fn store(&self) -> &RedbStore {
        &self.store
    }

    /// The block store, writable.
    pub fn store_mut(&mut self) -> &mut RedbStore {
        &mut self.store
    }

    /// The blob store.
    pub fn blobs(&self) -> &DirBlobs {
        &self.blobs
    }

    /// The blob store, writable.
    pub fn blobs_mut(&mut self) -> &mut DirBlobs {
        &mut self.blobs
    }

    /// The block store and the blob store, e.g. to hand the store to
    /// [`Chain::create`](crate::chain::Chain::create) or [`Chain::open`](crate::chain::Chain::open)
    /// while blobs are still written.
    pub fn into_parts(self) -> (RedbStore, DirBlobs) {
        (self.store, self.blobs)
    }

    /// [`verify`] this folder's blocks and blobs.
    pub fn verify(&self) -> Report {
        verify(&self.store, &self.blobs)
    }
}

fn exists(path: &Path) -> Result<bool, FolderError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FolderError::Io { path: path.to_path_buf(), source }),
    }
}

fn is_dir(path: &Path) -> Result<bool, FolderError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => Ok(false),
        Err(source) => Err(FolderError::Io { path: path.to_path_buf(), source }),
    }
}

/// Make the new entries in `dir` durable (a no-op where folders cannot be opened, e.g. Windows).
fn sync_dir(dir: &Path) -> Result<(), FolderError> {
    #[cfg(unix)]
    {
        let io = |source| FolderError::Io { path: dir.to_path_buf(), source };
        fs::File::open(dir).map_err(io)?.sync_all().map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobStore;
    use crate::chain::Chain;
    use crate::genesis::{Founder, Genesis};
    use crate::identity::Keypair;
    use crate::store::BlockStore;
    use crate::tx::{Transaction, TxBody};
    use crate::verify::Finding;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn genesis(key: &Keypair) -> Genesis {
        let founders = vec![Founder { id: key.node_id(), name: "alice".into(), validator: true }];
        Genesis { name: "folder".into(), timestamp_ms: 0, founders, treasury: None }
    }

    /// A ledger folder with one round: an open, an update (blob stored) and an aggregate.
    fn one_round(dir: &Path) {
        let alice = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let me = alice.node_id();
        let genesis = genesis(&alice);
        let (store, mut blobs) = LedgerDir::create(dir).unwrap().into_parts();
        let mut chain = Chain::create(store, genesis.clone()).unwrap();
        let update_hash = blobs.put(b"update").unwrap();
        let aggregate_hash = blobs.put(b"aggregate").unwrap();
        let bodies = [
            TxBody::OpenRound {
                round: 1,
                task: "t".into(),
                participants: vec![me],
                strategy: "fedavg".into(),
                deadline_ms: 10_000,
            },
            TxBody::CommitUpdate { round: 1, node: me, update_hash, examples: 3, norm_bits: 1f64.to_bits() },
            TxBody::CommitAggregate { round: 1, aggregate_hash, participants: vec![me], metrics: vec![] },
        ];
        let txs = bodies
            .into_iter()
            .zip(1..)
            .map(|(body, nonce)| Transaction::sign(&alice, &genesis.chain_id(), nonce, body));
        let proposal = chain.propose_block(txs, 1_000).unwrap();
        assert!(proposal.dropped.is_empty());
        chain.append(proposal.block).unwrap();
    }

    #[test]
    fn read_only_opening_audits_without_writing_and_repairs_a_crashed_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ledger");
        one_round(&dir);
        let store_file = dir.join(STORE_FILE);
        let before = fs::read(&store_file).unwrap();
        assert!(LedgerDir::open_read_only(&dir).unwrap().verify().is_ok());
        assert_eq!(fs::read(&store_file).unwrap(), before, "a read-only audit changed ledger.redb");

        // A copy taken while a writer holds the store is what a crash leaves: redb needs a repair
        // that only a writer can do, and the read-only opening does it rather than fail.
        let crashed = tmp.path().join("crashed");
        fs::create_dir_all(crashed.join("blobs")).unwrap();
        for entry in fs::read_dir(dir.join("blobs")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), crashed.join("blobs").join(entry.file_name())).unwrap();
        }
        let held = LedgerDir::open(&dir).unwrap();
        fs::copy(&store_file, crashed.join(STORE_FILE)).unwrap();
        drop(held);
        assert!(matches!(RedbStore::open_read_only(crashed.join(STORE_FILE)), Err(StoreError::NeedsRepair { .. })));
        assert!(LedgerDir::open_read_only(&crashed).unwrap().verify().is_ok());
    }

    #[test]
    fn paths_are_the_documented_layout() {
        let paths = LedgerPaths::of("/x/ledger");
        assert_eq!(paths.dir, Path::new("/x/ledger"));
        assert_eq!(paths.store, Path::new("/x/ledger/ledger.redb"));
        assert_eq!(paths.blobs, Path::new("/x/ledger/blobs"));
    }

    #[test]
    fn create_makes_the_layout_and_open_finds_the_chain_and_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/ledger");
        one_round(&dir);
        assert!(dir.join(STORE_FILE).is_file());
        assert_eq!(fs::read_dir(dir.join(BLOBS_DIR)).unwrap().count(), 2);

        let ledger = LedgerDir::open(&dir).unwrap();
        assert_eq!(ledger.paths(), &LedgerPaths::of(&dir));
        assert_eq!(ledger.store().tip().unwrap().map(|t| t.height), Some(1));
        assert!(ledger.blobs().contains(&crate::hash::Digest::of(b"update")).unwrap());
        let report = ledger.verify();
        assert!(report.is_ok(), "{report}");
        // The aggregate is checked; the update commitment is only counted (it is its owner's).
        assert_eq!((report.blocks_checked, report.txs_checked, report.blobs_checked), (2, 3, 1));
        assert_eq!(report.updates_unchecked, 1);
        let (store, _) = ledger.into_parts();
        assert_eq!(Chain::open(store).unwrap().head().height, 1);
    }

    #[test]
    fn create_refuses_a_folder_that_holds_a_ledger() {
        let tmp = tempfile::tempdir().unwrap();
        one_round(tmp.path());
        let before = fs::read(tmp.path().join(STORE_FILE)).unwrap();
        let err = LedgerDir::create(tmp.path()).unwrap_err();
        assert!(matches!(&err, FolderError::AlreadyALedger { found } if found.ends_with(STORE_FILE)), "{err}");
        assert!(err.to_string().contains("ledger.redb"), "{err}");
        assert_eq!(fs::read(tmp.path().join(STORE_FILE)).unwrap(), before, "the ledger is untouched");
    }

    #[test]
    fn create_refuses_leftover_blobs_but_accepts_an_empty_blob_folder_and_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(BLOBS_DIR)).unwrap();
        fs::write(tmp.path().join(BLOBS_DIR).join("abc"), b"x").unwrap();
        let err = LedgerDir::create(tmp.path()).unwrap_err();
        assert!(matches!(&err, FolderError::AlreadyALedger { found } if found.ends_with(BLOBS_DIR)), "{err}");
        assert!(!tmp.path().join(STORE_FILE).exists(), "nothing was created");

        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(BLOBS_DIR)).unwrap();
        fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        LedgerDir::create(tmp.path()).unwrap();
        assert!(tmp.path().join(STORE_FILE).is_file());
    }

    #[test]
    fn open_refuses_a_folder_without_a_store_naming_it_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("report.json"), b"{}").unwrap();
        let err = LedgerDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, FolderError::NotALedger { missing: STORE_FILE, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("has no ledger.redb"), "{text}");
        assert!(text.contains("a ledger folder holds ledger.redb") && text.contains("blobs/"), "{text}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "open created something");
    }

    #[test]
    fn open_refuses_a_folder_without_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        one_round(tmp.path());
        fs::rename(tmp.path().join(BLOBS_DIR), tmp.path().join("moved")).unwrap();
        let err = LedgerDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, FolderError::NotALedger { missing: "blobs/", .. }), "{err}");
        assert!(!tmp.path().join(BLOBS_DIR).exists(), "open created blobs/");
    }

    #[test]
    fn open_refuses_a_missing_folder_and_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = LedgerDir::open(&missing).unwrap_err();
        assert!(matches!(err, FolderError::NoFolder { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!missing.exists());
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(LedgerDir::open(&file), Err(FolderError::NoFolder { .. })));
    }

    #[test]
    fn open_on_a_garbage_store_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(BLOBS_DIR)).unwrap();
        fs::write(tmp.path().join(STORE_FILE), vec![0xAB; 4096]).unwrap();
        let err = LedgerDir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, FolderError::Store(_)), "{err}");
        assert!(err.to_string().contains("ledger.redb"), "{err}");
    }

    #[test]
    fn the_unfinished_mark_comes_and_goes() {
        let tmp = tempfile::tempdir().unwrap();
        one_round(tmp.path());
        assert!(!is_unfinished(tmp.path()));
        mark_unfinished(tmp.path()).unwrap();
        assert!(is_unfinished(tmp.path()));
        assert!(LedgerDir::open(tmp.path()).is_ok(), "a marked folder is still a ledger folder");
        mark_finished(tmp.path()).unwrap();
        assert!(!is_unfinished(tmp.path()));
        mark_finished(tmp.path()).unwrap();
    }

    #[test]
    fn verify_sees_a_changed_blob_file() {
        let tmp = tempfile::tempdir().unwrap();
        one_round(tmp.path());
        let ledger = LedgerDir::open(tmp.path()).unwrap();
        let hash = crate::hash::Digest::of(b"aggregate");
        assert!(ledger.blobs().contains(&hash).unwrap());
        fs::write(ledger.blobs().path_of(&hash), b"aggregatE").unwrap();
        let report = ledger.verify();
        assert!(
            matches!(report.findings.as_slice(), [Finding::BlobMismatch { hash: h, .. }] if *h == hash),
            "{report}"
        );
    }
}
