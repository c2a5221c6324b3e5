//! Errors of this crate: what can stop a validator from starting or a simulated submission from
//! completing. Per-transaction verdicts are not errors: see
//! [`TxOutcome`](crate::mempool::TxOutcome).

use dainet_ledger::chain::ChainError;
use dainet_ledger::identity::NodeId;

/// Errors from setting up validators or driving the simulated ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// The ledger refused the genesis or a block operation.
    #[error("ledger error: {0}")]
    Chain(#[from] ChainError),
    /// The block store could not be read at startup.
    #[error("block store unreadable: reason={reason}")]
    Store {
        /// What went wrong.
        reason: String,
    },
    /// A node id is not a usable ed25519 key, so it cannot sign votes.
    #[error("invalid validator key: node={node}")]
    InvalidKey {
        /// The node id.
        node: NodeId,
    },
    /// The genesis names no validator.
    #[error("genesis has no validator")]
    NoValidators,
    /// A key pair was passed for a node that is not a genesis validator.
    #[error("not a genesis validator: index={index} node={node}")]
    NotAValidator {
        /// Its position in the keys passed.
        index: usize,
        /// Its node id.
        node: NodeId,
    },
    /// A genesis validator has no key pair, or one was passed twice.
    #[error("validator keys do not match the genesis: validators={validators} keys={keys}")]
    KeyCount {
        /// Validators in the genesis.
        validators: usize,
        /// Distinct keys passed.
        keys: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid config: field={field} reason={reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No validator has this index.
    #[error("no such validator: validator={validator} validators={validators}")]
    NoSuchValidator {
        /// The index asked for.
        validator: usize,
        /// How many there are.
        validators: usize,
    },
    /// The validator is crashed (never started, or stopped).
    #[error("validator down: validator={validator}")]
    ValidatorDown {
        /// Its index.
        validator: usize,
    },
    /// Submitted transactions were not finalized within the allowed (virtual) time, e.g. because
    /// fewer than a quorum of validators are live.
    #[error("submission not finalized in time: validator={validator} pending={pending} waited_ms={waited_ms}")]
    Timeout {
        /// The validator they were submitted to.
        validator: usize,
        /// How many transactions were still pending.
        pending: usize,
        /// Virtual milliseconds waited.
        waited_ms: u64,
    },
    /// The simulation thread is gone (it panicked or was shut down).
    #[error("simulated ledger stopped: reason={reason}")]
    Stopped {
        /// What is known about why.
        reason: String,
    },
}
