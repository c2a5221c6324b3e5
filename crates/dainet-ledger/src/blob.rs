//! Content-addressed blob storage: model updates and global models, kept off the chain and named
//! by the blake3 of their bytes.
//!
//! This module owns the [`BlobStore`] trait and two implementations: [`MemBlobs`] for tests and
//! simulations, and [`DirBlobs`], a folder with one file per blob named by its 64-hex-character
//! hash. ([`crate::store::RedbStore`] implements the trait too, blobs in the same file as blocks.)
//!
//! A store returns what it holds; it does not promise the bytes still match their name. Use
//! [`BlobStore::get_verified`] where that matters; [`crate::verify`] checks every blob the ledger
//! references. [`DirBlobs::put`] is write-ahead: the bytes are in a synced temporary file, renamed
//! into place and the folder synced before `put` returns.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::hash::Digest;

/// Errors from a blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A file operation failed.
    #[error("blob i/o failed: path={path} reason={source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The underlying database failed.
    #[error("blob backend failed: reason={reason}")]
    Backend {
        /// The backend's message.
        reason: String,
    },
    /// A stored blob's bytes no longer hash to its name.
    #[error("blob hash mismatch: expected={expected} found={found}")]
    HashMismatch {
        /// The name it is stored under.
        expected: Digest,
        /// The hash of the bytes found.
        found: Digest,
    },
}

/// A store of blobs addressed by their blake3 hash.
///
/// Implementors provide [`put`](BlobStore::put) and [`get`](BlobStore::get); the rest is
/// defaulted.
pub trait BlobStore {
    /// Store `bytes` durably and return their address, [`Digest::of`]`(bytes)`. Storing the same
    /// bytes twice is harmless.
    fn put(&mut self, bytes: &[u8]) -> Result<Digest, BlobError>;

    /// The bytes stored under `hash`, as stored (unchecked), or `None`.
    fn get(&self, hash: &Digest) -> Result<Option<Vec<u8>>, BlobError>;

    /// Whether anything is stored under `hash`.
    fn contains(&self, hash: &Digest) -> Result<bool, BlobError> {
        Ok(self.get(hash)?.is_some())
    }

    /// The bytes stored under `hash`, checked to hash to it.
    fn get_verified(&self, hash: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        match self.get(hash)? {
            Some(bytes) => {
                let found = Digest::of(&bytes);
                if found != *hash {
                    return Err(BlobError::HashMismatch { expected: *hash, found });
                }
                Ok(Some(bytes))
            }
            None => Ok(None),
        }
    }
}

/// Blobs in memory.
#[derive(Clone, Debug, Default)]
pub struct MemBlobs {
    blobs: BTreeMap<Digest, Vec<u8>>,
}

impl MemBlobs {
    /// An empty store.
    pub fn new() -> MemBlobs {
        MemBlobs::default()
    }

    /// Store `bytes` under `hash` without checking that they match — for fault injection in
    /// tests (a corrupted disk, a lying peer).
    pub fn insert_unchecked(&mut self, hash: Digest, bytes: Vec<u8>) {
        self.blobs.insert(hash, bytes);
    }

    /// Remove a blob, returning it.
    pub fn remove(&mut self, hash: &Digest) -> Option<Vec<u8>> {
        self.blobs.remove(hash)
    }

    /// How many blobs are held.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is held.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

impl BlobStore for MemBlobs {
    fn put(&mut self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let hash = Digest::of(bytes);
        self.blobs.insert(hash, bytes.to_vec());
        Ok(hash)
    }

    fn get(&self, hash: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self.blobs.get(hash).cloned())
    }
}

/// Blobs as files in one folder, each named by the lowercase hex of its hash.
#[derive(Clone, Debug)]
pub struct DirBlobs {
    dir: PathBuf,
    /// Blobs written by [`DirBlobs::put_unsynced`] and not yet synced.
    unsynced: Vec<PathBuf>,
    /// Page-aligned staging for direct writes; `None` once the folder's file system has refused
    /// them (buffered writes from then on).
    direct: Option<Vec<u8>>,
}

impl DirBlobs {
    /// Use `dir`, creating it (and its parents) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DirBlobs, BlobError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| BlobError::Io { path: dir.clone(), source })?;
        Ok(DirBlobs { dir, unsynced: Vec::new(), direct: Some(Vec::new()) })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a blob with this hash lives in.
    pub fn path_of(&self, hash: &Digest) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    /// Like [`BlobStore::put`], but without waiting for the disk: the blob is complete and named
    /// (written to a temporary file, then renamed), just not yet durable. Call
    /// [`DirBlobs::sync`] before anything that refers to it is made durable.
    ///
    /// For writers of many blobs (a simulation stores every update): one sync at the end instead
    /// of two per blob. On Linux the bytes bypass the page cache (`O_DIRECT`), where the file
    /// system allows it: a blob is written once and read rarely, so caching it would only evict
    /// pages worth keeping, and copying it into the cache costs CPU the writer's caller wants.
    pub fn put_unsynced(&mut self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let hash = Digest::of(bytes);
        self.put_unsynced_hashed(&hash, bytes)?;
        Ok(hash)
    }

    /// [`DirBlobs::put_unsynced`] for a caller that already hashed `bytes` (`hash` must be
    /// [`Digest::of`]`(bytes)`; a wrong one names the blob wrongly, which
    /// [`crate::verify::verify`] reports as a blob mismatch). Saves hashing large blobs twice.
    pub fn put_unsynced_hashed(&mut self, hash: &Digest, bytes: &[u8]) -> Result<(), BlobError> {
        debug_assert_eq!(*hash, Digest::of(bytes), "put_unsynced_hashed given the wrong hash");
        let path = match self.write_direct(hash, bytes)? {
            Some(path) => path,
            None => self.write_named(hash, bytes, false)?,
        };
        self.unsynced.push(path);
        Ok(())
    }

    /// Writes the blob as [`DirBlobs::write_named`] does, unsynced, but with `O_DIRECT`: from a
    /// page-aligned copy, padded to whole pages, then cut to length. `None` (nothing written)
    /// where the file system refuses direct I/O; this store then stops trying.
    #[cfg(target_os = "linux")]
    fn write_direct(&mut self, hash: &Digest, bytes: &[u8]) -> Result<Option<PathBuf>, BlobError> {
        use std::os::unix::fs::OpenOptionsExt;
        const PAGE: usize = 4096;
        let Some(staging) = self.direct.as_mut() else { return Ok(None) };
        let path = self.dir.join(hash.to_hex());
        let tmp = self.dir.join(format!(".{}.tmp", hash.to_hex()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&tmp)
        {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = None;
                return Ok(None);
            }
            Err(source) => return Err(BlobError::Io { path: tmp, source }),
        };
        let padded = bytes.len().div_ceil(PAGE) * PAGE;
        staging.resize(padded + PAGE, 0);
        let start = staging.as_ptr().align_offset(PAGE);
        let aligned = &mut staging[start..start + padded];
        aligned[..bytes.len()].copy_from_slice(bytes);
        aligned[bytes.len()..].fill(0);
        match file.write_all(aligned) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Opened, but this file system will not write directly after all.
                drop(file);
                let _ = fs::remove_file(&tmp);
                self.direct = None;
                return Ok(None);
            }
            Err(source) => return Err(BlobError::Io { path: tmp, source }),
        }
        file.set_len(bytes.len() as u64).map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(Some(path))
    }

    #[cfg(not(target_os = "linux"))]
    fn write_direct(&mut self, _hash: &Digest, _bytes: &[u8]) -> Result<Option<PathBuf>, BlobError> {
        Ok(None)
    }

    /// Write `bytes` to a temporary file in the folder (synced to disk if `durable`), then
    /// rename it to the blob's name, so a reader never sees a partial blob under its name.
    fn write_named(&self, hash: &Digest, bytes: &[u8], durable: bool) -> Result<PathBuf, BlobError> {
        let path = self.path_of(hash);
        let tmp = self.dir.join(format!(".{}.tmp", hash.to_hex()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        if durable {
            file.sync_all().map_err(io(&tmp))?;
        }
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// Make every blob [`DirBlobs::put_unsynced`] wrote durable, and the folder's entries too.
    pub fn sync(&mut self) -> Result<(), BlobError> {
        for path in &self.unsynced {
            let file = fs::File::open(path).map_err(|source| BlobError::Io { path: path.clone(), source })?;
            file.sync_all().map_err(|source| BlobError::Io { path: path.clone(), source })?;
        }
        sync_dir(&self.dir)?;
        self.unsynced.clear();
        Ok(())
    }
}

impl BlobStore for DirBlobs {
    fn put(&mut self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let hash = Digest::of(bytes);
        self.write_named(&hash, bytes, true)?;
        sync_dir(&self.dir)?;
        Ok(hash)
    }

    fn get(&self, hash: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path_of(hash);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }

    fn contains(&self, hash: &Digest) -> Result<bool, BlobError> {
        let path = self.path_of(hash);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }
}

/// Make a rename in `dir` durable (a no-op where folders cannot be opened, e.g. Windows).
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        let d = fs::File::open(dir).map_err(|source| BlobError::Io { path: dir.to_path_buf(), source })?;
        d.sync_all().map_err(|source| BlobError::Io { path: dir.to_path_buf(), source })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_blobs_are_readable_at_once_and_sync_empties_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = DirBlobs::open(dir.path()).unwrap();
        let hash = blobs.put_unsynced(b"update").unwrap();
        assert_eq!(hash, Digest::of(b"update"));
        assert_eq!(blobs.get_verified(&hash).unwrap().as_deref(), Some(&b"update"[..]));
        assert_eq!(blobs.unsynced.len(), 1);
        blobs.sync().unwrap();
        assert!(blobs.unsynced.is_empty());
        assert!(!dir.path().join(format!(".{}.tmp", hash.to_hex())).exists());
    }

    /// Direct writes pad to whole pages and cut back: every length must come back exact,
    /// including empty, one byte short of a page, a page, and a page and a bit.
    #[test]
    fn unsynced_blobs_of_any_length_come_back_exact() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = DirBlobs::open(dir.path()).unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 17, 800_123] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let hash = blobs.put_unsynced(&bytes).unwrap();
            assert_eq!(blobs.get_verified(&hash).unwrap().as_deref(), Some(&bytes[..]), "len={len}");
            assert_eq!(fs::metadata(blobs.path_of(&hash)).unwrap().len(), len as u64, "len={len}");
        }
        blobs.sync().unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 7, "no temporary files left: {names:?}");
    }

    fn exercise(store: &mut dyn BlobStore) {
        let hash = store.put(b"model bytes").unwrap();
        assert_eq!(hash, Digest::of(b"model bytes"));
        assert_eq!(store.put(b"model bytes").unwrap(), hash, "idempotent");
        assert_eq!(store.get(&hash).unwrap().as_deref(), Some(&b"model bytes"[..]));
        assert_eq!(store.get_verified(&hash).unwrap().as_deref(), Some(&b"model bytes"[..]));
        assert!(store.contains(&hash).unwrap());
        let absent = Digest::of(b"absent");
        assert_eq!(store.get(&absent).unwrap(), None);
        assert!(!store.contains(&absent).unwrap());
    }

    #[test]
    fn mem_blobs_store_by_hash() {
        exercise(&mut MemBlobs::new());
    }

    #[test]
    fn dir_blobs_store_by_hash_in_hex_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DirBlobs::open(dir.path().join("blobs")).unwrap();
        exercise(&mut store);
        let hash = Digest::of(b"model bytes");
        assert_eq!(fs::read(dir.path().join("blobs").join(hash.to_hex())).unwrap(), b"model bytes");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 1);
    }

    #[test]
    fn get_verified_catches_a_changed_blob() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DirBlobs::open(dir.path()).unwrap();
        let hash = store.put(b"global model").unwrap();
        fs::write(store.path_of(&hash), b"global modeL").unwrap();
        assert!(store.get(&hash).unwrap().is_some(), "get does not check");
        assert!(matches!(store.get_verified(&hash), Err(BlobError::HashMismatch { .. })));
    }
}
