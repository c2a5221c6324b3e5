//! Run a ledger validator on a real network.
//!
//! A node is one validator of a dainet ledger as an operating-system process: Commonware's
//! simplex consensus ([`dainet_consensus`]) over Commonware's authenticated p2p on a real TCP
//! socket, on Commonware's tokio runtime, with the finalized chain persisted in a ledger folder
//! ([`dainet_ledger::folder::LedgerDir`]) and simplex's vote journal beside it.
//!
//! ```text
//! DIR/                 the node folder, given as --dir
//!   ledger.redb        the genesis and every finalized block (a ledger folder:
//!   blobs/             `dainet ledger show|verify DIR` read it)
//!   consensus/         Commonware's storage: simplex's vote journal
//! ```
//!
//! # Roles
//!
//! - [`config`]: what a node is told ([`config::NodeConfig`]), `NODEID@IP:PORT` peers, the key
//!   and genesis file loaders, and the checks that turn a wrong configuration into an error.
//! - [`network`]: the authenticated p2p network, its message cap and per-channel quotas.
//! - [`node`]: [`node::start`] / [`node::run`]: open or create the ledger, start the runtime,
//!   network and validator, stop gracefully, report.
//! - [`load`]: the built-in load generator and finality-latency measurement for benchmarks.
//! - [`report`]: the [`report::NodeReport`] a stopped node hands back (the CLI prints it as JSON).
//!
//! # What a node guarantees
//!
//! - **Nothing committed is lost.** A block counts as finalized for this node only after
//!   `Chain::append` committed it to redb (write-ahead, fsync). A crash at any point leaves the
//!   ledger at a finalized tip; the restarted node replays and checks every stored block, resumes
//!   simplex from its journal, and fetches what the others finalized meanwhile.
//! - **A bad ledger is never served.** If a stored block is garbled, missing or breaks a rule,
//!   [`node::start`] fails with an error naming the height and the problem and starts nothing.
//! - **Peers cannot crash it with bytes.** Connections are authenticated against the genesis
//!   validators and encrypted; a failed handshake closes the connection. Messages from
//!   authenticated peers that do not decode, blocks whose body does not match their header, or
//!   gossiped transactions with a bad signature, are dropped, logged (target `dainet_consensus`)
//!   and counted in the report.
//! - **Transactions are gossiped.** A transaction submitted to a node is batched to every peer
//!   (`dainet_consensus::wire::WireMessage::Transactions`), so whichever validator leads next
//!   proposes it: its latency does not include waiting for the submitting node's turn to lead.
//! - **Safety with up to `f` faulty validators of `n >= 3f + 1`** — simplex's guarantee; liveness
//!   needs a quorum (`2f + 1`) connected.
//!
//! # What it does not
//!
//! - No reconfiguration: the validator set is the genesis's, for good.
//! - No fast sync: a node that was down fetches the missing blocks one request at a time, and
//!   replays every stored block at startup (O(chain)).
//! - Addresses are fixed `IP:PORT`s given at start (no discovery, no DNS).
//! - No HTTP API or metrics endpoint yet; the report and the logs are the interface.
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod load;
pub mod network;
pub mod node;
pub mod report;

pub use config::{LoadConfig, NodeConfig, Peer};
pub use error::NodeError;
pub use node::{run, start, RunningNode};
pub use report::{NodeReport, NodeStatus, SyncLine};

/// Send `tracing` logs to stderr, filtered by `RUST_LOG` (default: `warn` for everything,
/// `info` for `dainet_node` and `dainet_consensus`, whose info lines are a catch-up's progress).
/// For binaries; call once. Does nothing if a subscriber is set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,dainet_node=info,dainet_consensus=info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
