//! What a node says: while it runs, a [`NodeStatus`] whenever asked (the CLI prints one JSON line
//! every `--status-every`); when it stops, one [`NodeReport`] (the CLI's last JSON line).

use dainet_consensus::application::Status;
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
    /// Catch-up jobs it ran (each after finding itself behind a finalized block).
    pub sync_jobs: u64,
    /// Blocks it appended by catching up.
    pub synced_blocks: u64,
    /// Header and block ranges it served to peers catching up.
    pub ranges_served: u64,
    /// What the load generator measured, if it ran.
    pub load: Option<LoadReport>,
}

/// A running node's state, as one JSON line: `{"status": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStatus {
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// The finalized height.
    pub height: u64,
    /// The finalized tip's hash (hex; empty before block 0 is known).
    pub tip: String,
    /// Transactions waiting in the mempool.
    pub mempool: usize,
    /// The catch-up running now, if the node is behind.
    pub sync: Option<SyncLine>,
    /// Catch-up jobs so far.
    pub sync_jobs: u64,
    /// Blocks appended by catching up so far.
    pub synced_blocks: u64,
    /// Ranges served to peers catching up so far.
    pub ranges_served: u64,
    /// Finalized blocks that did not check (must be 0).
    pub finality_errors: u64,
}

/// A running catch-up in a [`NodeStatus`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncLine {
    /// The finalized height it fetches up to, once known.
    pub target_height: Option<u64>,
    /// How many blocks behind it the node is, once known.
    pub behind: Option<u64>,
    /// Headers fetched so far, before the blocks.
    pub headers_known: u64,
    /// Blocks appended per second since the catch-up started.
    pub blocks_per_s: u64,
}

impl NodeStatus {
    /// The status of a validator that has run `uptime_s` seconds.
    pub fn of(status: &Status, uptime_s: f64) -> NodeStatus {
        NodeStatus {
            uptime_s,
            height: status.height(),
            tip: status.tip().map(|t| t.to_string()).unwrap_or_default(),
            mempool: status.mempool,
            sync: status.sync.as_ref().map(|s| SyncLine {
                target_height: s.target_height,
                behind: s.behind,
                headers_known: s.headers_known,
                blocks_per_s: s.blocks_per_s,
            }),
            sync_jobs: status.sync_jobs,
            synced_blocks: status.synced_blocks,
            ranges_served: status.ranges_served,
            finality_errors: status.finality_errors,
        }
    }
}
