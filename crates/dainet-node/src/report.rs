//! What a node says when it stops: one record, printed by the CLI as one JSON line.

use serde::Serialize;

use crate::load::LoadReport;

/// A stopped node's account of its run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeReport {
    /// Its node id (hex).
    pub node: String,
    /// The address it listened on.
    pub listen: String,
    /// Seconds from start to stop.
    pub duration_s: f64,
    /// The finalized height it started from (0 for a new ledger; the stored tip after a restart).
    pub start_height: u64,
    /// The finalized height it stopped at (the persisted tip).
    pub height: u64,
    /// The persisted tip's hash (hex).
    pub tip: String,
    /// Blocks finalized and persisted during the run.
    pub blocks_finalized: u64,
    /// Blocks it proposed.
    pub proposed: u64,
    /// Peer proposals it verified as valid.
    pub verified: u64,
    /// Peer proposals it rejected as invalid.
    pub rejected_blocks: u64,
    /// Block-channel messages from peers that did not decode or did not match their header.
    pub rejected_messages: u64,
    /// Finalized blocks that did not check against its chain (must be 0).
    pub finality_errors: u64,
    /// Consensus faults (conflicting votes) reported against peers.
    pub faults: u64,
    /// The last error consensus recorded, for diagnosis.
    pub last_error: Option<String>,
    /// What the load generator measured, if it ran.
    pub load: Option<LoadReport>,
}
