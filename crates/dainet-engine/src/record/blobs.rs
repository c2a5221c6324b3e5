//! The blob writer: a thread that writes a ledger's blobs into its folder's `blobs/` in the
//! order given, so the page-cache copies (slow on some machines) overlap the recording of the
//! next transactions instead of adding to it.
//!
//! Guarantees: the queue holds at most [`BlobWriter::QUEUE`] blobs, so memory stays bounded when
//! the disk is slower than training; the first write error stops the writer and is what
//! [`BlobWriter::finish`] returns. Whenever its queue is empty the writer syncs what it wrote,
//! so the caller's one sync at the end (before the blocks that name the blobs are written)
//! finds little left; durability is never claimed before that sync.

use super::{LedgerContext, Result};
use crate::error::EngineError;
use dainet_ledger::blob::{BlobError, DirBlobs};
use dainet_ledger::hash::Digest;
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError};
use std::thread::JoinHandle;

pub(super) struct BlobWriter {
    queue: Option<SyncSender<(Digest, Vec<u8>)>>,
    thread: Option<JoinHandle<std::result::Result<DirBlobs, BlobError>>>,
}

impl BlobWriter {
    /// Blobs waiting at most: about two rounds of updates.
    const QUEUE: usize = 24;

    pub(super) fn start(mut blobs: DirBlobs) -> Result<Self> {
        let (queue, incoming) = sync_channel::<(Digest, Vec<u8>)>(Self::QUEUE);
        let thread = std::thread::Builder::new()
            .name("dainet-blob-writer".into())
            .spawn(move || {
                loop {
                    let (hash, bytes) = match incoming.try_recv() {
                        Ok(blob) => blob,
                        // Idle: make what is written durable now, so the sync at the end (which
                        // the training loop waits for) finds little left to do.
                        Err(TryRecvError::Empty) => {
                            blobs.sync()?;
                            match incoming.recv() {
                                Ok(blob) => blob,
                                Err(_) => break,
                            }
                        }
                        Err(TryRecvError::Disconnected) => break,
                    };
                    blobs.put_unsynced_hashed(&hash, &bytes)?;
                }
                Ok(blobs)
            })
            .ledger(|| "cannot start the blob writer thread".into())?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Queues `bytes`, whose blake3 is `hash`; fails if the writer stopped on an error (which
    /// `finish` returns).
    pub(super) fn write(&mut self, hash: Digest, bytes: Vec<u8>) -> Result<()> {
        let sent = self.queue.as_ref().is_some_and(|q| q.send((hash, bytes)).is_ok());
        if !sent {
            // The writer stopped early: report why.
            self.finish()?;
            return Err(EngineError::ledger("writing the blobs", "the blob writer stopped"));
        }
        Ok(())
    }

    /// Waits for every queued blob to be written; returns the store, or the first write error.
    pub(super) fn finish(&mut self) -> Result<DirBlobs> {
        drop(self.queue.take());
        let thread = self
            .thread
            .take()
            .ok_or_else(|| EngineError::ledger("writing the blobs", "the blob writer already finished"))?;
        let blobs = thread
            .join()
            .map_err(|_| EngineError::ledger("writing the blobs", "the blob writer panicked"))?
            .ledger(|| "writing the blobs".into())?;
        Ok(blobs)
    }
}
