//! Audit a stored ledger from its bytes: every hash, link, Merkle root, signature, the state by
//! replay, and every blob the ledger references.
//!
//! This module owns [`verify`], which trusts nothing it reads. It decodes the genesis and each
//! stored block (decoding is canonical, so any changed byte either fails to decode or changes
//! the value), then checks, block by block:
//! - block 0 is exactly the block the genesis defines;
//! - each block is stored at its own height, every height up to the tip is present, nothing is
//!   stored beyond it, and the store's tip names the last block's hash;
//! - each `prev_hash` is the hash of the block below, and timestamps never decrease;
//! - each `tx_root` is the Merkle root of the block's transactions;
//! - each transaction's signature verifies for the genesis chain id;
//! - replaying the transactions from the genesis state accepts every one and reproduces each
//!   block's `state_root`;
//! - every aggregate hash a transaction commits to is in the [`BlobStore`] and its bytes hash
//!   to it;
//! - with the owners' update stores ([`verify_with_updates`]), every update commitment names an
//!   update one of them holds for that round. Individual updates stay with the trainers that made them, not in
//!   the shared ledger folder, so without those stores the commitments are only counted
//!   ([`Report::updates_unchecked`]).
//!
//! It never stops at the first problem: the [`Report`] lists every [`Finding`]. To keep one fault
//! from burying the rest in consequences, a transaction with a bad signature is reported and then
//! replayed as if signed, and state replay stops at the first state-root mismatch or the first
//! missing or undecodable block ([`Report::state_verified_through`] says how far it got); the
//! other checks continue to the tip.
//!
//! What `verify` proves is that the store is *internally* consistent and signed. That it holds
//! *the* chain — the one the validators finalized — follows when the tip hash is compared with a
//! finalization certificate or a hash the reader already trusts; [`Report::tip`] is for that.
//!
//! `verify` is deterministic: the same bytes give the same report.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use crate::blob::BlobStore;
use crate::block::Block;
use crate::chain::{check_block, genesis_block, BlockContext, BlockFault, Head, StoreFault};
use crate::codec::CodecError;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::Digest;
use crate::state::State;
use crate::store::{BlockStore, Tip};
use crate::tx::TxBody;

/// One problem found in a stored ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Finding {
    /// The store could not be read.
    #[error("store unreadable: what={what} reason={reason}")]
    Store {
        /// What was being read.
        what: String,
        /// The store's error.
        reason: String,
    },
    /// The store holds no genesis; nothing else can be checked.
    #[error("no genesis in store")]
    NoGenesis,
    /// The genesis does not decode; nothing else can be checked.
    #[error("undecodable genesis: {0}")]
    UndecodableGenesis(CodecError),
    /// The genesis breaks a rule; nothing else is checked.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(GenesisError),
    /// The store records no tip.
    #[error("no tip in store")]
    NoTip,
    /// A block missing or undecodable at a height up to the tip, or a tip that does not name
    /// the last block.
    #[error(transparent)]
    Stored(#[from] StoreFault),
    /// A block is stored above the tip.
    #[error("block beyond tip: height={height} tip={tip}")]
    BeyondTip {
        /// Its height.
        height: u64,
        /// The tip's height.
        tip: u64,
    },
    /// Block 0 differs from the block the genesis defines.
    #[error("genesis block mismatch: field={field}")]
    GenesisBlockMismatch {
        /// The first differing field.
        field: &'static str,
    },
    /// A block breaks one of the chain's rules 1–6 ([`crate::chain::BlockFault`]).
    #[error(transparent)]
    Block(#[from] BlockFault),
    /// An update commitment names no update the owners' stores hold.
    #[error("update not in the owners' stores: height={height} index={index} hash={hash}")]
    MissingUpdate {
        /// The block.
        height: u64,
        /// The transaction's index in it.
        index: usize,
        /// The committed hash.
        hash: Digest,
    },
    /// A referenced blob is not in the blob store.
    #[error("missing blob: height={height} index={index} hash={hash}")]
    MissingBlob {
        /// The block's height.
        height: u64,
        /// The referencing transaction's position.
        index: usize,
        /// The blob's hash.
        hash: Digest,
    },
    /// A referenced blob's bytes do not hash to its name.
    #[error("blob mismatch: height={height} index={index} hash={hash} found={found}")]
    BlobMismatch {
        /// The block's height.
        height: u64,
        /// The referencing transaction's position.
        index: usize,
        /// The hash committed to.
        hash: Digest,
        /// The hash of the bytes stored.
        found: Digest,
    },
    /// A referenced blob could not be read.
    #[error("blob unreadable: height={height} index={index} hash={hash} reason={reason}")]
    BlobUnreadable {
        /// The block's height.
        height: u64,
        /// The referencing transaction's position.
        index: usize,
        /// The blob's hash.
        hash: Digest,
        /// The blob store's error.
        reason: String,
    },
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Report {
    /// The genesis hash, if the genesis decoded.
    pub genesis_hash: Option<Digest>,
    /// The tip the store records.
    pub tip: Option<Tip>,
    /// Blocks decoded and checked.
    pub blocks_checked: u64,
    /// Transactions checked.
    pub txs_checked: u64,
    /// Aggregate blob references checked.
    pub blobs_checked: u64,
    /// Update commitments checked against the owners' stores.
    pub updates_checked: u64,
    /// Update commitments not checked (no owners' stores given).
    pub updates_unchecked: u64,
    /// The highest block whose state root replay confirmed, if any.
    pub state_verified_through: Option<u64>,
    /// Every problem, in the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() { "ok" } else { "failed" };
        write!(
            f,
            "ledger {verdict}: blocks={} txs={} blobs={} findings={}",
            self.blocks_checked,
            self.txs_checked,
            self.blobs_checked,
            self.findings.len()
        )?;
        if let Some(tip) = self.tip {
            write!(f, " tip_height={} tip_hash={}", tip.height, tip.hash)?;
        }
        for finding in &self.findings {
            write!(f, "\n  {finding}")?;
        }
        Ok(())
    }
}

/// Check everything in `store` and every aggregate it references in `blobs`; see the module
/// docs. Never panics on what it reads.
pub fn verify<S: BlockStore + ?Sized, B: BlobStore + ?Sized>(store: &S, blobs: &B) -> Report {
    verify_with_updates(store, blobs, None)
}

/// [`verify`], and with `updates` (the round and hash of each update the owners' stores hold),
/// check that every update commitment names one of them for its round.
pub fn verify_with_updates<S: BlockStore + ?Sized, B: BlobStore + ?Sized>(
    store: &S,
    blobs: &B,
    updates: Option<&BTreeSet<(u64, Digest)>>,
) -> Report {
    let mut report = Report::default();
    let Some(genesis) = read_genesis(store, &mut report) else { return report };
    report.genesis_hash = Some(genesis.hash());

    let heights = match store.heights() {
        Ok(h) => h,
        Err(e) => {
            report.findings.push(Finding::Store { what: "heights".into(), reason: e.to_string() });
            Vec::new()
        }
    };
    let tip = match store.tip() {
        Ok(t) => t,
        Err(e) => {
            report.findings.push(Finding::Store { what: "tip".into(), reason: e.to_string() });
            None
        }
    };
    report.tip = tip;
    let last = match tip {
        Some(t) => t.height,
        None => {
            report.findings.push(Finding::NoTip);
            match heights.last() {
                Some(&h) => h,
                None => return report,
            }
        }
    };
    for &h in heights.iter().filter(|&&h| h > last) {
        report.findings.push(Finding::BeyondTip { height: h, tip: last });
    }

    let mut walk = Walk { state: Some(State::from_genesis(&genesis)), parent: None, genesis, report, updates };
    let mut height = 0u64;
    loop {
        walk.visit(store, blobs, height);
        if height >= last {
            break;
        }
        height += 1;
    }
    let mut report = walk.report;
    if let (Some(tip), Some(parent)) = (tip, walk.parent) {
        if parent.height == tip.height && parent.hash != tip.hash {
            report.findings.push(Finding::Stored(StoreFault::TipMismatch {
                height: tip.height,
                stored: tip.hash,
                computed: parent.hash,
            }));
        }
    }
    report
}

fn read_genesis<S: BlockStore + ?Sized>(store: &S, report: &mut Report) -> Option<Genesis> {
    let bytes = match store.genesis() {
        Ok(Some(b)) => b,
        Ok(None) => {
            report.findings.push(Finding::NoGenesis);
            return None;
        }
        Err(e) => {
            report.findings.push(Finding::Store { what: "genesis".into(), reason: e.to_string() });
            return None;
        }
    };
    let genesis = match Genesis::decode(&bytes) {
        Ok(g) => g,
        Err(e) => {
            report.findings.push(Finding::UndecodableGenesis(e));
            return None;
        }
    };
    if let Err(e) = genesis.validate() {
        report.findings.push(Finding::InvalidGenesis(e));
        return None;
    }
    Some(genesis)
}

/// The verifier's position while walking up the chain.
struct Walk<'a> {
    /// The owners' updates by round, if given.
    updates: Option<&'a BTreeSet<(u64, Digest)>>,
    genesis: Genesis,
    /// The replayed state; `None` once replay has stopped.
    state: Option<State>,
    /// The block below, if it decoded.
    parent: Option<Head>,
    report: Report,
}

impl Walk<'_> {
    fn visit<S: BlockStore + ?Sized, B: BlobStore + ?Sized>(&mut self, store: &S, blobs: &B, height: u64) {
        let block = match store.block(height) {
            Ok(Some(bytes)) => match Block::decode(&bytes) {
                Ok(b) => Some(b),
                Err(source) => {
                    self.report.findings.push(Finding::Stored(StoreFault::UndecodableBlock { height, source }));
                    None
                }
            },
            Ok(None) => {
                self.report.findings.push(Finding::Stored(StoreFault::MissingBlock { height }));
                None
            }
            Err(e) => {
                self.report.findings.push(Finding::Store { what: format!("block {height}"), reason: e.to_string() });
                None
            }
        };
        let Some(block) = block else {
            // Nothing above can be linked to this height or replayed past it.
            self.parent = None;
            self.state = None;
            return;
        };
        self.report.blocks_checked += 1;
        if height == 0 {
            self.check_genesis_block(&block);
        } else {
            self.check_block(blobs, height, &block);
        }
        self.parent = Some(Head::of(&block));
    }

    fn check_genesis_block(&mut self, block: &Block) {
        if block.height != 0 {
            self.report.findings.push(Finding::Block(BlockFault::WrongHeight { expected: 0, found: block.height }));
        }
        let expected = genesis_block(&self.genesis);
        let field = if block.prev_hash != expected.prev_hash {
            Some("prev_hash")
        } else if block.tx_root != expected.tx_root {
            Some("tx_root")
        } else if block.state_root != expected.state_root {
            Some("state_root")
        } else if block.timestamp_ms != expected.timestamp_ms {
            Some("timestamp_ms")
        } else if !block.txs.is_empty() {
            Some("txs")
        } else {
            None
        };
        match field {
            Some(field) => {
                self.report.findings.push(Finding::GenesisBlockMismatch { field });
                self.state = None;
            }
            None => self.report.state_verified_through = Some(0),
        }
    }

    fn check_block<B: BlobStore + ?Sized>(&mut self, blobs: &B, height: u64, block: &Block) {
        let chain_id = self.genesis.chain_id();
        let context = BlockContext { height, parent: self.parent.as_ref(), chain_id: &chain_id, presigned: None };
        let replaying = self.state.is_some();
        let mut state_diverged = false;
        let findings = &mut self.report.findings;
        let _ = check_block(block, &context, self.state.as_mut(), &mut |fault| {
            state_diverged |= matches!(fault, BlockFault::StateRootMismatch { .. });
            findings.push(Finding::Block(fault));
            ControlFlow::Continue(())
        });
        if state_diverged {
            // Past a wrong state root every later root would differ too: stop replaying.
            self.state = None;
        } else if replaying {
            self.report.state_verified_through = Some(height);
        }
        self.report.txs_checked += block.txs.len() as u64;
        for (index, tx) in block.txs.iter().enumerate() {
            if let TxBody::CommitUpdate { round, update_hash, .. } = &tx.body {
                match self.updates {
                    Some(held) => {
                        self.report.updates_checked += 1;
                        if !held.contains(&(*round, *update_hash)) {
                            findings.push(Finding::MissingUpdate { height, index, hash: *update_hash });
                        }
                    }
                    None => self.report.updates_unchecked += 1,
                }
                continue;
            }
            let Some(hash) = tx.body.referenced_blob() else { continue };
            self.report.blobs_checked += 1;
            match blobs.get(&hash) {
                Ok(Some(bytes)) => {
                    let found = Digest::of(&bytes);
                    if found != hash {
                        findings.push(Finding::BlobMismatch { height, index, hash, found });
                    }
                }
                Ok(None) => findings.push(Finding::MissingBlob { height, index, hash }),
                Err(e) => findings.push(Finding::BlobUnreadable { height, index, hash, reason: e.to_string() }),
            }
        }
    }
}
