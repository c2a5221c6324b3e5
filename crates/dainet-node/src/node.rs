//! Start, run and stop one validator node.
//!
//! [`start`] does, in order, everything that can fail because of the configuration or the disk —
//! check the configuration, open (replaying every block) or create the ledger, check that the
//! listen address is free — and only then starts the node's runtime on a thread of its own:
//! Commonware's tokio runtime with its storage in `DIR/consensus`, the authenticated network
//! ([`crate::network`]), the validator ([`dainet_consensus::validator::start_validator`]) and,
//! if asked, the load generator ([`crate::load`]). It returns once the validator runs, or with the
//! error that stopped it.
//!
//! The node stops when [`RunningNode::stop`] is called (or the handle is dropped), when its
//! `duration` has passed, or on SIGINT/SIGTERM if `stop_on_signals` is set. Stopping is graceful:
//! the load generator reports, the application actor hands back its chain (every finalized block
//! was already committed to redb before it counted as finalized), and the runtime ends its tasks.
//! A node killed without a goodbye loses nothing committed either: on restart [`start`] reopens
//! the ledger at its persisted tip and simplex replays its journal; blocks finalized by the others
//! meanwhile are fetched from them.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use commonware_macros::select;
use commonware_runtime::{tokio as cw_tokio, Clock, Runner as _, Spawner as _, Supervisor as _};
use commonware_utils::channel::oneshot;
use dainet_consensus::application::{ApplicationConfig, Status, StatusHandle};
use dainet_consensus::types::{consensus_key, public_key, PublicKey};
use dainet_consensus::validator::{start_validator, Anchor, ValidatorConfig};
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::{LedgerDir, LedgerPaths};
use dainet_ledger::genesis::Genesis;
use dainet_ledger::identity::NodeId;
use dainet_ledger::store::RedbStore;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::load::{self, LoadReport};
use crate::network::{check_listen, start_network};
use crate::report::NodeReport;

/// The simplex journal's partition name inside `DIR/consensus`.
const PARTITION: &str = "simplex";

/// A node whose runtime is running on its own thread.
pub struct RunningNode {
    node: NodeId,
    listen: SocketAddr,
    status: StatusHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Option<NodeReport>>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode").field("node", &self.node).field("listen", &self.listen).finish_non_exhaustive()
    }
}

impl RunningNode {
    /// Its node id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The address it listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// What its validator has finalized and counted so far.
    pub fn status(&self) -> Status {
        self.status.snapshot()
    }

    /// Whether it has stopped by itself (its duration passed, a signal, a failure); then
    /// [`RunningNode::wait`] returns at once.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stop it now (gracefully) and return its report.
    pub fn stop(mut self) -> Result<NodeReport, NodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Wait until it stops by itself (its duration passed, or a signal) and return its report.
    pub fn wait(mut self) -> Result<NodeReport, NodeError> {
        self.join()
    }

    fn join(&mut self) -> Result<NodeReport, NodeError> {
        let Some(thread) = self.thread.take() else {
            return Err(NodeError::Runtime { reason: "already stopped".into() });
        };
        let result = thread.join();
        // Keep the stop sender alive until the thread is done: dropping it means "stop".
        drop(self.stop.take());
        match result {
            Ok(Some(report)) => Ok(report),
            Ok(None) => Err(NodeError::Runtime { reason: "the node stopped without a report".into() }),
            Err(panic) => Err(NodeError::Runtime { reason: panic_message(panic) }),
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start a node (see the module docs). Returns once its validator is running.
pub fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
    config.validate()?;
    let consensus_dir = config.consensus_dir();
    let journal = has_journal(&consensus_dir)?;
    let store = LedgerPaths::of(&config.dir).store;
    if journal && !store.exists() {
        return Err(NodeError::JournalWithoutLedger { dir: config.dir.clone(), ledger: store });
    }
    let chain = open_ledger(&config.dir, &config.genesis)?;
    let height = chain.head().height;
    if height > 0 && !journal {
        return Err(NodeError::LedgerWithoutJournal { dir: config.dir.clone(), journal: consensus_dir, height });
    }
    check_listen(config.listen)?;
    fs::create_dir_all(&consensus_dir).map_err(|source| NodeError::Io { path: consensus_dir.clone(), source })?;
    info!(
        target: "dainet_node",
        node = %config.key.node_id(),
        listen = %config.listen,
        height = chain.head().height,
        tip = %chain.head().hash,
        "ledger open"
    );

    let runtime = cw_tokio::Config::new()
        .with_worker_threads(config.worker_threads)
        .with_storage_directory(consensus_dir)
        .with_catch_panics(false);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let node = config.key.node_id();
    let listen = config.listen;
    let thread = std::thread::Builder::new()
        .name("dainet-node".into())
        .spawn(move || cw_tokio::Runner::new(runtime).start(|context| drive(context, chain, config, stop_rx, ready_tx)))
        .map_err(|err| NodeError::Runtime { reason: format!("cannot spawn the runtime thread: {err}") })?;
    match ready_rx.recv() {
        Ok(Ok(status)) => Ok(RunningNode { node, listen, status, stop: Some(stop_tx), thread: Some(thread) }),
        Ok(Err(err)) => {
            let _ = thread.join();
            Err(err)
        }
        Err(_) => {
            let reason = match thread.join() {
                Err(panic) => panic_message(panic),
                Ok(_) => "the runtime ended during startup".into(),
            };
            Err(NodeError::Runtime { reason })
        }
    }
}

/// Whether simplex's vote journal is in `consensus_dir` (the folder exists and holds anything).
fn has_journal(consensus_dir: &Path) -> Result<bool, NodeError> {
    match fs::read_dir(consensus_dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(NodeError::Io { path: consensus_dir.to_path_buf(), source }),
    }
}

/// Start a node and run it until its duration passes or a signal stops it; return its report.
pub fn run(config: NodeConfig) -> Result<NodeReport, NodeError> {
    start(config)?.wait()
}

/// Open the ledger in `dir` (replaying and checking every stored block) or, if `dir` holds none,
/// create one from `genesis`. A ledger of another genesis, or one that does not replay, is an
/// error: the node refuses to serve a bad chain.
pub fn open_ledger(dir: &Path, genesis: &Genesis) -> Result<Chain<RedbStore>, NodeError> {
    let paths = LedgerPaths::of(dir);
    if paths.store.exists() {
        let (store, _blobs) = LedgerDir::open(dir)?.into_parts();
        let chain = Chain::open(store)
            .map_err(|source| NodeError::BadLedger { dir: dir.to_path_buf(), source: Box::new(source) })?;
        let (stored, given) = (chain.genesis().hash(), genesis.hash());
        if stored != given {
            return Err(NodeError::GenesisMismatch { dir: dir.to_path_buf(), stored, given });
        }
        Ok(chain)
    } else {
        let (store, _blobs) = LedgerDir::create(dir)?.into_parts();
        Chain::create(store, genesis.clone())
            .map_err(|source| NodeError::CreateLedger { dir: dir.to_path_buf(), source: Box::new(source) })
    }
}

/// The runtime's root task: network, validator, load; then wait for the stop and report.
async fn drive(
    context: cw_tokio::Context,
    chain: Chain<RedbStore>,
    config: NodeConfig,
    stop: oneshot::Receiver<()>,
    ready: std_mpsc::Sender<Result<StatusHandle, NodeError>>,
) -> Option<NodeReport> {
    // The node owns the runtime, so reading the real clock is legitimate here.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let me = config.key.node_id();
    let start_height = chain.head().height;
    let first_nonce = chain.state().next_nonce(&me);
    let validators = config.genesis.founders.iter().filter(|f| f.validator).count();

    let peers: Result<Vec<(PublicKey, SocketAddr)>, _> =
        config.peers.iter().map(|p| public_key(&p.node).map(|k| (k, p.addr))).collect();
    let setup = peers.map_err(NodeError::from).and_then(|peers| {
        let key = consensus_key(&config.key);
        let network =
            start_network(&context, key.clone(), config.listen, &peers, &config.genesis, validators, config.quotas)?;
        let validator_config = ValidatorConfig {
            chain,
            key,
            timing: config.timing.clone(),
            application: ApplicationConfig::default(),
            partition: Some(PARTITION.into()),
            // The node keeps its vote journal across restarts: simplex replays it from block 0's view.
            anchor: Anchor::Genesis,
        };
        let validator =
            start_validator(context.child("validator"), validator_config, network.oracle, network.channels)?;
        Ok((validator, network.task))
    });
    let (validator, _network) = match setup {
        Ok(started) => started,
        Err(err) => {
            let _ = ready.send(Err(err));
            return None;
        }
    };
    let status = validator.status().clone();
    let _ = ready.send(Ok(status.clone()));
    info!(target: "dainet_node", node = %me, validators, peers = config.peers.len(), "validator running");

    let deadline = config.duration.map(|d| started + d);
    let (finish_tx, finish_rx) = oneshot::channel();
    let load = config.load.map(|load_config| {
        let submit_until = deadline.map(|d| d.checked_sub(config.drain).unwrap_or(started));
        let (mailbox, status, key) = (validator.mailbox().clone(), status.clone(), config.key.clone());
        let chain_id = config.genesis.chain_id();
        context.child("load").spawn(move |context| {
            load::generate(
                context,
                mailbox,
                status,
                key,
                chain_id,
                first_nonce,
                load_config,
                start_height + 2 * validators as u64,
                submit_until,
                finish_rx,
            )
        })
    });

    wait_for_stop(&context, stop, deadline, config.stop_on_signals).await;
    let _ = finish_tx.send(());
    let load: Option<LoadReport> = match load {
        Some(handle) => handle.await.ok(),
        None => None,
    };
    let counted = status.snapshot();
    let chain = validator.stop().await;
    let (height, tip) = match &chain {
        Some(chain) => (chain.head().height, chain.head().hash.to_string()),
        None => (counted.height(), counted.tip().map(|t| t.to_string()).unwrap_or_default()),
    };
    // Close the ledger (redb) before the report goes out, so a reader may open it at once.
    drop(chain);
    let report = NodeReport {
        node: me.to_string(),
        listen: config.listen.to_string(),
        duration_s: started.elapsed().as_secs_f64(),
        start_height,
        height,
        tip,
        blocks_finalized: height.saturating_sub(start_height),
        proposed: counted.proposed,
        verified: counted.verified,
        rejected_blocks: counted.rejected_blocks,
        rejected_messages: counted.rejected_messages,
        finality_errors: counted.finality_errors,
        faults: counted.faults.values().sum(),
        last_error: counted.last_error,
        sync_jobs: counted.sync_jobs,
        synced_blocks: counted.synced_blocks,
        ranges_served: counted.ranges_served,
        load,
    };
    info!(target: "dainet_node", node = %me, height, blocks = report.blocks_finalized, "stopped");
    Some(report)
}

/// Resolve when the stop handle fires (or is dropped), the deadline passes, or — if
/// `on_signals` — SIGINT or SIGTERM arrives.
async fn wait_for_stop(
    context: &cw_tokio::Context,
    stop: oneshot::Receiver<()>,
    deadline: Option<Instant>,
    on_signals: bool,
) {
    let timer = async {
        match deadline {
            Some(deadline) => {
                #[allow(clippy::disallowed_methods)]
                let left = deadline.saturating_duration_since(Instant::now());
                context.sleep(left).await
            }
            None => std::future::pending().await,
        }
    };
    let signal = async {
        if on_signals {
            wait_for_signal().await
        } else {
            std::future::pending().await
        }
    };
    select! {
        _ = stop => {},
        _ = timer => {},
        name = signal => info!(target: "dainet_node", signal = name, "stopping"),
    }
}

/// Resolve with the signal's name at SIGINT or SIGTERM; never, if they cannot be watched.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            warn!(target: "dainet_node", %err, "cannot watch signals; stop the node with its --duration");
            std::future::pending::<()>().await;
            "none"
        }
    }
}

/// A panic payload as text.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}
