//! Why a node refuses to start. Once running, a node does not fail on what peers send it: bad
//! messages are dropped, logged and counted (see [`crate::report::NodeReport`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use dainet_consensus::error::ConsensusError;
use dainet_ledger::chain::ChainError;
use dainet_ledger::codec::CodecError;
use dainet_ledger::folder::FolderError;
use dainet_ledger::genesis::GenesisError;
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::{IdentityError, NodeId};

/// Errors from configuring or starting a node. Each message names the file, address or node
/// involved and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The key file could not be read or holds no key.
    #[error("cannot read the node key: {0}; make one with `dainet keygen --out FILE`")]
    Key(#[from] IdentityError),
    /// The key file may be read by other users of the machine, who could then sign as this
    /// node.
    #[error(
        "the node key {} is readable by group or others (mode {mode:o}): anyone who can read it can sign as this node; \
         run `chmod 600 {}`, or make a new key with `dainet keygen` if it may have been copied",
        path.display(),
        path.display()
    )]
    KeyExposed {
        /// The key file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The genesis file could not be read.
    #[error("cannot read the genesis file: path={path} reason={source}")]
    GenesisIo {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The genesis file does not hold an encoded genesis.
    #[error("not a genesis file: path={path} reason={source}; make one with `dainet ledger genesis`")]
    NotAGenesis {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        source: CodecError,
    },
    /// The genesis decodes but breaks a rule.
    #[error("invalid genesis: path={path} reason={source}")]
    InvalidGenesis {
        /// The file.
        path: PathBuf,
        /// The broken rule.
        source: GenesisError,
    },
    /// The node's key is not one of the genesis validators.
    #[error("this key is not a validator of the genesis: node={node} validators={validators}; pass the key of a validator the genesis names")]
    NotAValidator {
        /// The key's node id.
        node: NodeId,
        /// How many validators the genesis names.
        validators: usize,
    },
    /// A `--peer` value is not `NODEID@IP:PORT`.
    #[error("bad peer: value={value:?} reason={reason}; expected NODEID@IP:PORT, e.g. 3b6a…e1@127.0.0.1:7001")]
    BadPeer {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer is not a genesis validator, so the network would refuse it.
    #[error("peer is not a validator of the genesis: node={node}")]
    PeerNotAValidator {
        /// The peer's node id.
        node: NodeId,
    },
    /// A peer was listed twice, or is this node itself.
    #[error("peer listed twice or is this node: node={node}")]
    DuplicatePeer {
        /// The peer's node id.
        node: NodeId,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen: addr={addr} reason={source}; pick a free port")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid node config: field={field} reason={reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data folder could not be created or read.
    #[error("node folder i/o failed: path={path} reason={source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The ledger folder could not be created or opened.
    #[error("{0}")]
    Folder(#[from] FolderError),
    /// The stored ledger does not replay: a block is garbled, missing or breaks a rule. The node
    /// refuses to serve it.
    #[error("stored ledger does not replay: dir={dir} reason={source}; the node refuses to serve a bad chain — `dainet ledger verify {dir}` lists every problem")]
    BadLedger {
        /// The ledger folder.
        dir: PathBuf,
        /// The first problem found.
        source: Box<ChainError>,
    },
    /// A new ledger could not be written.
    #[error("cannot create the ledger: dir={dir} reason={source}")]
    CreateLedger {
        /// The ledger folder.
        dir: PathBuf,
        /// What went wrong.
        source: Box<ChainError>,
    },
    /// The ledger folder holds another chain than the genesis given.
    #[error("ledger folder holds another chain: dir={dir} stored_genesis={stored} given_genesis={given}; use a new --dir for this genesis")]
    GenesisMismatch {
        /// The ledger folder.
        dir: PathBuf,
        /// The hash of the genesis stored there.
        stored: Digest,
        /// The hash of the genesis given.
        given: Digest,
    },
    /// The ledger has finalized blocks but simplex's vote journal is gone: started over, the
    /// validator could vote twice in a view it voted in before, and it would not finalize
    /// past its ledger (measured: a lone validator restarted this way stayed at its height).
    #[error(
        "the node folder holds a ledger at height {height} but no consensus journal: dir={} journal={}; \
         restore the journal from where it was: started over, this validator could vote twice in a view it voted \
         in before (equivocation). If it is lost, wait until the other validators are past the views it may have \
         voted in, then start it in a new --dir",
        dir.display(),
        journal.display()
    )]
    LedgerWithoutJournal {
        /// The node folder.
        dir: PathBuf,
        /// Where the journal should be.
        journal: PathBuf,
        /// The ledger's height.
        height: u64,
    },
    /// Simplex's vote journal is there but the ledger is not: a new ledger would start at
    /// height 0 under a journal that has voted past it.
    #[error(
        "the node folder holds a consensus journal but no ledger: dir={} missing={}; restore the ledger from where \
         it was, or start this validator in a new --dir",
        dir.display(),
        ledger.display()
    )]
    JournalWithoutLedger {
        /// The node folder.
        dir: PathBuf,
        /// The missing ledger file.
        ledger: PathBuf,
    },
    /// Consensus refused to start.
    #[error("consensus did not start: {0}")]
    Consensus(Box<ConsensusError>),
    /// The runtime thread ended without a report (it panicked).
    #[error("node runtime stopped unexpectedly: reason={reason}")]
    Runtime {
        /// What is known about why.
        reason: String,
    },
}

impl From<ConsensusError> for NodeError {
    fn from(err: ConsensusError) -> NodeError {
        NodeError::Consensus(Box::new(err))
    }
}
