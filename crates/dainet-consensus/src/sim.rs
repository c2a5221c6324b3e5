//! A synchronous, simulated BFT ledger for the simulator: `n` validators in one deterministic
//! Commonware runtime on a thread of its own, driven by blocking calls.
//!
//! This module owns the bridge between a caller that is busy most of the time (the training
//! loop) and a virtual-time runtime:
//! - the runtime's root task blocks on a std channel while no call is pending, so virtual time
//!   **stands still** while the caller computes — no spinning, no timeouts firing behind its back;
//! - [`SimulatedLedger::submit`] hands transactions to one validator's mempool and runs the
//!   runtime until every one is finalized by that validator (or dropped for good), or until
//!   [`SimulatedLedgerConfig::submit_timeout_ms`] of virtual time has passed — never longer, so
//!   a ledger without a quorum answers with [`ConsensusError::Timeout`] instead of hanging;
//! - the same seed, genesis, keys and sequence of calls give the same blocks, byte for byte.
//!
//! Links between validators have the configured latency, jitter and delivery rate; validators
//! listed in [`SimulatedLedgerConfig::down`] never start, and [`SimulatedLedger::crash`] stops
//! one mid-run.
//!
//! **Resuming** ([`SimulatedLedger::resume`]) continues a stored chain, e.g. an interrupted
//! run's ledger: every validator starts on its own in-memory copy of all its blocks and its
//! state, so the members' nonces carry over and the next block is `head + 1` on the head's hash;
//! the virtual clock starts at the head's timestamp, so block times keep never decreasing. What
//! [`SimulatedLedger::finish`] then returns holds the stored chain unchanged below the new blocks;
//! [`Chain::extend_from`] appends them to the store it came from (and refuses a store whose
//! chain they do not continue). Same chain, keys, config and calls ⇒ same blocks. Its limits:
//! - all validators restart together, from the same chain (there is no way to restart one);
//! - no finalization certificate or vote journal is stored, so simplex starts afresh with the
//!   stored head as its floor ([`Anchor::Head`]) and reuses views 1, 2, … of epoch 0. The
//!   earlier run's votes are gone with its runtime, so nothing conflicts here; a networked node
//!   must not restart this way (it keeps its journal);
//! - what the stored chain proves is only what its blocks say: that the validators finalized
//!   it is taken on trust, as for any chain the simulated ledger hands back.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use commonware_cryptography::Signer as _;
use commonware_macros::select;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{deterministic, Clock, Quota, Runner as _, Supervisor as _};
use commonware_utils::probability::Probability;
use dainet_ledger::chain::Chain;
use dainet_ledger::genesis::Genesis;
use dainet_ledger::hash::TxHash;
use dainet_ledger::identity::Keypair;
use dainet_ledger::store::{BlockStore, MemStore};
use dainet_ledger::tx::Transaction;

use crate::application::{ApplicationConfig, Status, StatusHandle};
use crate::error::ConsensusError;
use crate::mempool::{RejectReason, TxOutcome};
use crate::types::{consensus_key, node_id, PublicKey};
use crate::validator::{
    start_validator, Anchor, Channels, Timing, Validator, ValidatorConfig, CHANNEL_BLOCKS, CHANNEL_CERTIFICATES,
    CHANNEL_RESOLVER, CHANNEL_VOTES,
};

/// How the simulated ledger's network and validators behave.
#[derive(Clone, Debug)]
pub struct SimulatedLedgerConfig {
    /// Seed of the runtime: message order, latencies, losses.
    pub seed: u64,
    /// Mean one-way latency of every link, ms.
    pub latency_ms: u64,
    /// Standard deviation of the latency, ms.
    pub jitter_ms: u64,
    /// Probability that a message is delivered, in \[0, 1\].
    pub success_rate: f64,
    /// Validators (indices into the keys) that never start.
    pub down: Vec<usize>,
    /// Most virtual time one [`SimulatedLedger::submit`] may take, ms.
    pub submit_timeout_ms: u64,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Application tuning.
    pub application: ApplicationConfig,
}

impl Default for SimulatedLedgerConfig {
    fn default() -> Self {
        SimulatedLedgerConfig {
            seed: 0,
            latency_ms: 10,
            jitter_ms: 2,
            success_rate: 1.0,
            down: Vec::new(),
            submit_timeout_ms: 30_000,
            timing: Timing::default(),
            application: ApplicationConfig::default(),
        }
    }
}

/// What became of one submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Its hash.
    pub tx_hash: TxHash,
    /// The block holding it, or why it was dropped.
    pub outcome: TxOutcome,
}

impl Committed {
    /// The height of the block holding it, if it was committed.
    pub fn height(&self) -> Option<u64> {
        match &self.outcome {
            TxOutcome::Committed(inclusion) => Some(inclusion.height),
            TxOutcome::Rejected(_) => None,
        }
    }
}

/// What [`SimulatedLedger::finish`] hands back.
#[derive(Debug)]
pub struct Finished {
    /// The validator whose chain this is: of those still running, the one that finalized the
    /// most blocks (the first of them on a tie). A call may return as soon as the submitting
    /// validator has finalized its transactions, before the others have, so the longest chain is
    /// the one sure to hold every committed transaction.
    pub validator: usize,
    /// Its finalized chain, to persist: [`Chain::copy_into`] an empty store, or, after
    /// [`SimulatedLedger::resume`], [`Chain::extend_from`] onto the chain it resumed.
    pub chain: Chain<MemStore>,
    /// Every validator's status at the end (crashed ones as they were when they stopped).
    pub statuses: Vec<Status>,
    /// Whether all validators' finalized chains agree on every height they share.
    pub agree: bool,
}

enum Command {
    Submit { validator: usize, txs: Vec<Transaction>, reply: std_mpsc::Sender<Result<Vec<Committed>, ConsensusError>> },
    Crash { validator: usize, reply: std_mpsc::Sender<Result<(), ConsensusError>> },
    Status { reply: std_mpsc::Sender<Vec<Status>> },
    Now { reply: std_mpsc::Sender<u64> },
    Idle { ms: u64, reply: std_mpsc::Sender<()> },
    Finish { reply: std_mpsc::Sender<Result<Finished, ConsensusError>> },
}

/// `n` validators in a deterministic runtime on their own thread. See the module docs.
pub struct SimulatedLedger {
    commands: Option<std_mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    validators: usize,
}

impl SimulatedLedger {
    /// Start one validator per key (each must be a genesis validator, and every genesis validator
    /// needs its key), all linked to each other as configured.
    pub fn start(
        genesis: Genesis,
        validator_keys: Vec<Keypair>,
        config: SimulatedLedgerConfig,
    ) -> Result<SimulatedLedger, ConsensusError> {
        let n = validator_keys.len();
        check_config(&config, n)?;
        check_keys(&genesis, &validator_keys)?;
        let chains = (0..n).map(|_| Chain::create(MemStore::new(), genesis.clone())).collect::<Result<Vec<_>, _>>()?;
        SimulatedLedger::launch(chains, validator_keys, config, Anchor::Genesis)
    }

    /// Continue `chain` (e.g. a stored run's ledger, reopened): start one validator per key
    /// (the keys of `chain`'s genesis validators, as for [`SimulatedLedger::start`]), each on its
    /// own in-memory copy of every block of `chain`, so new blocks extend its head — height
    /// `head + 1` on, parent the head's hash, times from the head's on (the virtual clock starts
    /// at the head's timestamp). The members' nonces and every other part of the state carry
    /// over: a transaction signed with the next nonce `chain.state()` expects is accepted.
    ///
    /// simplex starts afresh on the head ([`Anchor::Head`]): no finalization certificate is
    /// stored, so the head is the floor, and all validators restart together. The same chain,
    /// keys, config and calls give the same blocks. To persist the result, append what
    /// [`SimulatedLedger::finish`] returns to the stored chain with
    /// [`Chain::extend_from`](dainet_ledger::chain::Chain::extend_from).
    pub fn resume<S: BlockStore>(
        chain: &Chain<S>,
        validator_keys: Vec<Keypair>,
        config: SimulatedLedgerConfig,
    ) -> Result<SimulatedLedger, ConsensusError> {
        let n = validator_keys.len();
        check_config(&config, n)?;
        check_keys(chain.genesis(), &validator_keys)?;
        let chains = (0..n).map(|_| chain.copy_into(MemStore::new())).collect::<Result<Vec<_>, _>>()?;
        SimulatedLedger::launch(chains, validator_keys, config, Anchor::Head)
    }

    /// Run `chains` (one per key, all with the same head) in a new runtime whose clock starts at
    /// the head's timestamp.
    fn launch(
        chains: Vec<Chain<MemStore>>,
        validator_keys: Vec<Keypair>,
        config: SimulatedLedgerConfig,
        anchor: Anchor,
    ) -> Result<SimulatedLedger, ConsensusError> {
        let n = validator_keys.len();
        let head_ms = chains.first().map_or(0, |chain| chain.head().timestamp_ms);
        let start_time = UNIX_EPOCH + Duration::from_millis(head_ms);
        let runtime = deterministic::Config::new().with_seed(config.seed).with_start_time(start_time);
        let (commands, command_rx) = std_mpsc::channel();
        let (ready, ready_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dainet-ledger-sim".into())
            .spawn(move || {
                deterministic::Runner::new(runtime)
                    .start(|context| drive(context, chains, validator_keys, config, anchor, command_rx, ready))
            })
            .map_err(|err| ConsensusError::Stopped { reason: format!("cannot spawn thread: {err}") })?;
        let mut ledger = SimulatedLedger { commands: Some(commands), thread: Some(thread), validators: n };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ledger),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ledger.stopped()),
        }
    }

    /// How many validators there are.
    pub fn validators(&self) -> usize {
        self.validators
    }

    /// Put `txs` into validator `validator`'s mempool and block until every one is finalized
    /// (by that validator) or dropped for good. Returns, per transaction in the order given,
    /// the block holding it or why it was dropped.
    ///
    /// Fails with [`ConsensusError::Timeout`] after `submit_timeout_ms` of virtual time (the
    /// transactions stay in the mempool and may still be committed by a later call), and with
    /// [`ConsensusError::ValidatorDown`] if the validator is not running.
    pub fn submit(&mut self, validator: usize, txs: Vec<Transaction>) -> Result<Vec<Committed>, ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        self.call(Command::Submit { validator, txs, reply }, rx)?
    }

    /// Crash validator `validator` now: its engine and application stop without a goodbye.
    pub fn crash(&mut self, validator: usize) -> Result<(), ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        self.call(Command::Crash { validator, reply }, rx)?
    }

    /// Every validator's status: finalized hashes, counters.
    pub fn statuses(&mut self) -> Result<Vec<Status>, ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        self.call(Command::Status { reply }, rx)
    }

    /// The runtime's virtual time, ms since the Unix epoch (it starts at the genesis time, or
    /// the resumed chain's head's time, and moves only while a call runs).
    pub fn now_ms(&mut self) -> Result<u64, ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        self.call(Command::Now { reply }, rx)
    }

    /// Let `ms` of virtual time pass with nothing submitted: the validators keep running
    /// (finalizing empty blocks at their pace, catching up, timing out views).
    pub fn idle(&mut self, ms: u64) -> Result<(), ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        self.call(Command::Idle { ms, reply }, rx)
    }

    /// Stop the validators and return the longest finalized chain of a running validator, every
    /// validator's status, and whether they all agree.
    pub fn finish(mut self) -> Result<Finished, ConsensusError> {
        let (reply, rx) = std_mpsc::channel();
        let result = self.call(Command::Finish { reply }, rx);
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        result?
    }

    fn call<T>(&mut self, command: Command, rx: std_mpsc::Receiver<T>) -> Result<T, ConsensusError> {
        let sent = self.commands.as_ref().is_some_and(|commands| commands.send(command).is_ok());
        if !sent {
            return Err(self.stopped());
        }
        rx.recv().map_err(|_| self.stopped())
    }

    /// The error for a runtime thread that is gone, with its panic message if it panicked.
    fn stopped(&mut self) -> ConsensusError {
        self.commands = None;
        let reason = match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
            Some(Ok(())) => "runtime exited".into(),
            None => "already stopped".into(),
        };
        ConsensusError::Stopped { reason }
    }
}

impl Drop for SimulatedLedger {
    fn drop(&mut self) {
        // Closing the command channel ends the runtime's root task.
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every key must be a distinct validator of `genesis`, and every validator needs its key.
fn check_keys(genesis: &Genesis, keys: &[Keypair]) -> Result<(), ConsensusError> {
    let validators = crate::types::validators(genesis)?;
    let mut seen = BTreeSet::new();
    for (index, key) in keys.iter().enumerate() {
        let public = consensus_key(key).public_key();
        if validators.position(&public).is_none() {
            return Err(ConsensusError::NotAValidator { index, node: key.node_id() });
        }
        seen.insert(key.node_id());
    }
    if seen.len() != keys.len() || keys.len() != validators.len() {
        return Err(ConsensusError::KeyCount { validators: validators.len(), keys: seen.len() });
    }
    Ok(())
}

fn check_config(config: &SimulatedLedgerConfig, n: usize) -> Result<(), ConsensusError> {
    let bad = |field: &'static str, reason: String| Err(ConsensusError::Config { field, reason });
    if n == 0 {
        return bad("validator_keys", "at least one validator is needed".into());
    }
    if !(0.0..=1.0).contains(&config.success_rate) {
        return bad("success_rate", format!("must be in [0, 1]: found={}", config.success_rate));
    }
    if let Some(&v) = config.down.iter().find(|&&v| v >= n) {
        return bad("down", format!("no such validator: validator={v} validators={n}"));
    }
    if config.submit_timeout_ms == 0 {
        return bad("submit_timeout_ms", "must be positive".into());
    }
    config.timing.validate()
}

/// The runtime's root task: build the network and validators, then serve calls.
async fn drive(
    context: deterministic::Context,
    chains: Vec<Chain<MemStore>>,
    keys: Vec<Keypair>,
    config: SimulatedLedgerConfig,
    anchor: Anchor,
    commands: std_mpsc::Receiver<Command>,
    ready: std_mpsc::Sender<Result<(), ConsensusError>>,
) {
    let (mut validators, statuses) = match setup(&context, chains, &keys, &config, anchor).await {
        Ok(started) => started,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let timeout = Duration::from_millis(config.submit_timeout_ms);
    // Blocking here is the point: while the caller computes, virtual time stands still.
    while let Ok(command) = commands.recv() {
        match command {
            Command::Submit { validator, txs, reply } => {
                let result = submit(&context, &validators, validator, txs, timeout).await;
                let _ = reply.send(result);
            }
            Command::Crash { validator, reply } => {
                let result = match validators.get_mut(validator) {
                    None => Err(ConsensusError::NoSuchValidator { validator, validators: keys.len() }),
                    Some(slot) => {
                        if let Some(v) = slot.take() {
                            v.abort();
                        }
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(statuses.iter().map(StatusHandle::snapshot).collect());
            }
            Command::Now { reply } => {
                let now = crate::application::ms_since_epoch(context.current());
                let _ = reply.send(now);
            }
            Command::Idle { ms, reply } => {
                context.sleep(Duration::from_millis(ms)).await;
                let _ = reply.send(());
            }
            Command::Finish { reply } => {
                let _ = reply.send(finish(validators, &statuses).await);
                return;
            }
        }
    }
}

type Started = (Vec<Option<Validator<MemStore>>>, Vec<StatusHandle>);

async fn setup(
    context: &deterministic::Context,
    chains: Vec<Chain<MemStore>>,
    keys: &[Keypair],
    config: &SimulatedLedgerConfig,
    anchor: Anchor,
) -> Result<Started, ConsensusError> {
    let n = keys.len();
    let publics: Vec<PublicKey> = keys.iter().map(|k| consensus_key(k).public_key()).collect();
    let oracle = start_network(context, &publics, config.application.max_message_bytes).await;
    let success_rate = Probability::from_f64(config.success_rate)
        .ok_or(ConsensusError::Config { field: "success_rate", reason: "not a probability".into() })?;
    let link = Link {
        latency: Duration::from_millis(config.latency_ms),
        jitter: Duration::from_millis(config.jitter_ms),
        success_rate,
    };
    link_all(&oracle, &publics, &link).await?;
    let down: BTreeSet<usize> = config.down.iter().copied().collect();
    let mut validators = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    for (index, (chain, key)) in chains.into_iter().zip(keys).enumerate() {
        if down.contains(&index) {
            statuses.push(StatusHandle::default());
            validators.push(None);
            continue;
        }
        let public = publics[index].clone();
        let channels = register(&oracle, public.clone()).await?;
        let validator_config = ValidatorConfig {
            chain,
            key: consensus_key(key),
            timing: config.timing.clone(),
            application: config.application.clone(),
            partition: Some(format!("validator_{index}")),
            anchor,
        };
        let context = context.child("validator").with_attribute("index", index);
        let validator = start_validator(context, validator_config, oracle.control(public), channels)?;
        statuses.push(validator.status().clone());
        validators.push(Some(validator));
    }
    Ok((validators, statuses))
}

/// Start a simulated network among `publics` (one peer set, blocked peers disconnected) whose
/// messages may be as large as simplex's for that committee or `max_message_bytes`.
pub async fn start_network(
    context: &deterministic::Context,
    publics: &[PublicKey],
    max_message_bytes: usize,
) -> Oracle<PublicKey, deterministic::Context> {
    let n = publics.len();
    let max_size = crate::wire::max_message_size(n, max_message_bytes);
    let network_config = simulated::Config {
        max_size,
        max_peers_per_set: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
        disconnect_on_block: true,
        tracked_peer_sets: NonZeroUsize::MIN,
    };
    let (network, oracle) = Network::new_with_peers(context.child("network"), network_config, publics.to_vec()).await;
    network.start();
    oracle
}

/// Link every pair of distinct peers of a simulated network both ways with `link`.
pub async fn link_all(
    oracle: &Oracle<PublicKey, deterministic::Context>,
    publics: &[PublicKey],
    link: &Link,
) -> Result<(), ConsensusError> {
    for a in publics {
        for b in publics {
            if a != b {
                oracle.add_link(a.clone(), b.clone(), link.clone()).await.map_err(|err| ConsensusError::Config {
                    field: "link",
                    reason: format!("cannot link: from={} to={} reason={err}", node_id(a), node_id(b)),
                })?;
            }
        }
    }
    Ok(())
}

/// The channels of a validator on the simulated network.
pub type SimChannels = Channels<simulated::Sender<PublicKey, deterministic::Context>, simulated::Receiver<PublicKey>>;

/// Register the four channels ([`CHANNEL_VOTES`], [`CHANNEL_CERTIFICATES`], [`CHANNEL_RESOLVER`],
/// [`CHANNEL_BLOCKS`]) of validator `public` on a simulated network.
pub async fn register(
    oracle: &Oracle<PublicKey, deterministic::Context>,
    public: PublicKey,
) -> Result<SimChannels, ConsensusError> {
    let control = oracle.control(public.clone());
    let quota = Quota::per_second(std::num::NonZeroU32::new(10_000).unwrap_or(std::num::NonZeroU32::MIN));
    let mut pairs = Vec::with_capacity(4);
    for channel in [CHANNEL_VOTES, CHANNEL_CERTIFICATES, CHANNEL_RESOLVER, CHANNEL_BLOCKS] {
        let pair = control.register(channel, quota).await.map_err(|err| ConsensusError::Config {
            field: "network",
            reason: format!("cannot register: node={} channel={channel} reason={err}", node_id(&public)),
        })?;
        pairs.push(pair);
    }
    let mut pairs = pairs.into_iter();
    match (pairs.next(), pairs.next(), pairs.next(), pairs.next()) {
        (Some(votes), Some(certificates), Some(resolver), Some(blocks)) => {
            Ok(Channels { votes, certificates, resolver, blocks })
        }
        _ => Err(ConsensusError::Config { field: "network", reason: "channel registration incomplete".into() }),
    }
}

async fn submit(
    context: &deterministic::Context,
    validators: &[Option<Validator<MemStore>>],
    index: usize,
    txs: Vec<Transaction>,
    timeout: Duration,
) -> Result<Vec<Committed>, ConsensusError> {
    let validator = validators
        .get(index)
        .ok_or(ConsensusError::NoSuchValidator { validator: index, validators: validators.len() })?
        .as_ref()
        .ok_or(ConsensusError::ValidatorDown { validator: index })?;
    let pending: Vec<_> = txs.into_iter().map(|tx| (tx.hash(), validator.mailbox().submit(tx))).collect();
    let total = pending.len();
    let start = context.current();
    let deadline = start + timeout;
    let mut out = Vec::with_capacity(total);
    for (tx_hash, receiver) in pending {
        select! {
            outcome = receiver => {
                let outcome = outcome.unwrap_or(TxOutcome::Rejected(RejectReason::Stopped));
                out.push(Committed { tx_hash, outcome });
            },
            _ = context.sleep_until(deadline) => {
                let waited_ms = context.current().duration_since(start).map_or(0, |d| d.as_millis() as u64);
                return Err(ConsensusError::Timeout { validator: index, pending: total - out.len(), waited_ms });
            },
        }
    }
    Ok(out)
}

async fn finish(
    validators: Vec<Option<Validator<MemStore>>>,
    statuses: &[StatusHandle],
) -> Result<Finished, ConsensusError> {
    let mut longest: Option<(usize, Chain<MemStore>)> = None;
    for (index, validator) in validators.into_iter().enumerate() {
        let Some(validator) = validator else { continue };
        let Some(chain) = validator.stop().await else { continue };
        if longest.as_ref().is_none_or(|(_, best)| chain.head().height > best.head().height) {
            longest = Some((index, chain));
        }
    }
    let statuses: Vec<Status> = statuses.iter().map(StatusHandle::snapshot).collect();
    let agree = chains_agree(&statuses);
    let (validator, chain) =
        longest.ok_or(ConsensusError::Stopped { reason: "no validator was running at the end".into() })?;
    Ok(Finished { validator, chain, statuses, agree })
}

/// Whether every pair of statuses has the same finalized hash at every height both reached.
pub fn chains_agree(statuses: &[Status]) -> bool {
    statuses
        .iter()
        .enumerate()
        .all(|(i, a)| statuses[i + 1..].iter().all(|b| a.finalized.iter().zip(&b.finalized).all(|(x, y)| x == y)))
}
