//! The consensus binding: one actor per validator that answers simplex's `Automaton`, `Relay` and
//! `Reporter` calls over a [`Core`], and moves block bytes over a p2p channel.
//!
//! This module owns the I/O around [`crate::core`]:
//! - [`Mailbox`] is the handle simplex holds (it implements `Automaton`, `CertifiableAutomaton`,
//!   `Relay` and `Reporter`) and the handle a node or the simulator uses to [`Mailbox::submit`]
//!   transactions. Every call is a message to the actor; nothing blocks.
//! - [`Application`] is the actor. It is generic over the runtime (`commonware_runtime`'s
//!   `Clock + Spawner`: the deterministic runtime in tests and simulations, tokio in a node) and
//!   over the p2p [`Sender`]/[`Receiver`] of the block channel (simulated or authenticated).
//! - **Block transport**: the proposer broadcasts its block ([`crate::wire`]). A request that
//!   needs bytes it lacks — a `verify`, a `propose` on an unseen parent, a finalization — is
//!   parked, and every `fetch_retry` the actor asks all peers for the missing hash until one
//!   answers; every validator answers requests for blocks it holds. So a block lost to a dropped
//!   message is fetched, not waited for forever. Parked requests that consensus abandons (their
//!   response channel closed) are dropped.
//! - **Transaction gossip**: a transaction submitted here and new to the mempool is queued and
//!   broadcast to every peer in a [`WireMessage::Transactions`] batch once the actor has drained
//!   its mailbox — at most one flush per [`ApplicationConfig::gossip_interval`], split to fit the
//!   message size — so whichever validator leads next can propose it. A validator puts gossiped
//!   transactions in its mempool (signature checked once, stale nonces refused) without a
//!   watcher and without gossiping them again: the validators are a full mesh. A duplicate is
//!   ignored; it is safe for several mempools to hold one transaction, since a block is built
//!   against its parent's state (a transaction an ancestor carries no longer applies) and
//!   finality prunes what it included from every mempool. A watcher fires whichever leader's
//!   block carries its transaction.
//! - **Pacing**: when the core says an empty block is not due yet ([`Proposed::Wait`], the rule
//!   is [`Core`]'s), the actor holds the proposal request and asks again when the mempool admits
//!   a transaction or the time comes (a newer request replaces it: consensus has moved on). An
//!   idle ledger adds a block per [`ApplicationConfig::empty_block_interval`], not one per vote
//!   round trip; a submission is proposed at once.
//! - **Time**: proposals are stamped with the runtime clock ([`Clock::current`]), never below the
//!   parent's time; verification reads no clock.
//! - **Bad input**: a message that does not decode, a block whose body does not match its
//!   header, or a gossiped transaction no honest peer would send (a bad signature), is dropped,
//!   logged (`tracing`, target `dainet_consensus`) and counted in [`Status`]; the actor never
//!   panics on peer input.
//!
//! Fault reports (conflicting votes) are counted per offender in [`Status::faults`]; turning them
//! into ledger `Evidence` transactions is left to the node, which owns a signing identity.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commonware_actor::Feedback;
use commonware_consensus::simplex::types::Attributable;
use commonware_consensus::simplex::Plan;
use commonware_consensus::types::View;
use commonware_consensus::{Automaton, CertifiableAutomaton, Relay, Reporter, Viewable};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Handle, Spawner};
use commonware_utils::channel::{mpsc, oneshot};
use commonware_utils::ordered::Set;
use dainet_ledger::chain::Chain;
use dainet_ledger::hash::{BlockHash, TxHash};
use dainet_ledger::identity::NodeId;
use dainet_ledger::store::BlockStore;
use dainet_ledger::tx::Transaction;
use tracing::{debug, error, info, warn};

use crate::core::{Core, Finality, Inserted, Proposed, Verdict};
use crate::error::ConsensusError;
use crate::mempool::{Inclusion, RejectReason, TxOutcome};
use crate::sync::{RangeSync, SyncConfig, SyncEvent, SyncRequest};
use crate::types::{block_hash, node_id, payload, Activity, Payload, ProposalContext, PublicKey};
use crate::wire::{blocks_message, blocks_message_len, gossipable, transaction_batches, WireMessage, MAX_WIRE_BYTES};

/// Tuning of the application actor.
#[derive(Clone, Debug)]
pub struct ApplicationConfig {
    /// Most transactions waiting in the mempool.
    pub mempool_capacity: usize,
    /// Most unchecked blocks from peers kept at once.
    pub max_cached_blocks: usize,
    /// How often to re-request a missing block from the peers.
    pub fetch_retry: Duration,
    /// The largest message the block channel accepts; larger blocks are not sent, and gossip is
    /// split into batches no larger.
    pub max_message_bytes: usize,
    /// Least time between two gossip flushes: transactions submitted meanwhile go out together,
    /// so a validator sends each peer at most one gossip batch per interval (while batches fit a
    /// message). Zero flushes whenever the mailbox is drained.
    pub gossip_interval: Duration,
    /// A leader whose block would carry no transaction waits until this long after its parent's
    /// time before proposing it, and proposes at once when a transaction arrives meanwhile. An
    /// idle ledger then grows about one block per interval instead of one per vote round trip
    /// (dozens a second, each written to disk), while a submission still goes into the next
    /// block. Must stay below the leader timeout, or idle views are skipped instead of filled.
    /// Zero proposes empty blocks at once.
    pub empty_block_interval: Duration,
    /// Catching up by ranges after falling behind ([`crate::sync`]).
    pub sync: SyncConfig,
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        ApplicationConfig {
            mempool_capacity: 100_000,
            max_cached_blocks: 1_024,
            fetch_retry: Duration::from_millis(100),
            max_message_bytes: MAX_WIRE_BYTES,
            gossip_interval: Duration::from_millis(10),
            empty_block_interval: Duration::from_millis(500),
            sync: SyncConfig::default(),
        }
    }
}

/// What a validator has finalized and counted, shared with whoever holds its [`StatusHandle`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The finalized block hashes, by height from block 0.
    pub finalized: Vec<BlockHash>,
    /// The finalized tip's timestamp, ms.
    pub tip_timestamp_ms: u64,
    /// Transactions waiting in the mempool.
    pub mempool: usize,
    /// Transactions submitted to this validator (by its own clients) that it has finalized.
    pub submissions_committed: u64,
    /// Blocks this validator proposed.
    pub proposed: u64,
    /// Proposals it verified as valid.
    pub verified: u64,
    /// Proposals it rejected as invalid.
    pub rejected_blocks: u64,
    /// Messages from peers that did not decode or did not match their header.
    pub rejected_messages: u64,
    /// Block requests it sent.
    pub requests_sent: u64,
    /// Blocks it sent in answer to requests.
    pub blocks_served: u64,
    /// Transaction batches it gossiped.
    pub gossip_sent: u64,
    /// Gossiped transactions it put in its mempool (new to it).
    pub gossip_received: u64,
    /// Fault proofs (conflicting votes) seen, per offender.
    pub faults: BTreeMap<NodeId, u64>,
    /// Finalized blocks that did not check against this validator's chain (must stay 0).
    pub finality_errors: u64,
    /// The catch-up running now, if this validator is behind ([`crate::sync`]).
    pub sync: Option<SyncStatus>,
    /// Catch-up jobs started (each towards one finalized block this validator lacked).
    pub sync_jobs: u64,
    /// Blocks appended by catching up (all checked in full), over all jobs.
    pub synced_blocks: u64,
    /// Catch-up answers that were wrong or empty ("not held").
    pub sync_bad_answers: u64,
    /// Catch-up requests that went unanswered in time.
    pub sync_timeouts: u64,
    /// Header and block ranges this validator served to peers catching up.
    pub ranges_served: u64,
    /// Views it led while catching up, declined at once (see `Application::propose`).
    pub declined_while_syncing: u64,
    /// The last error, for diagnosis.
    pub last_error: Option<String>,
}

/// A running catch-up, as [`Status::sync`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// The finalized height the job fetches up to, once known.
    pub target_height: Option<u64>,
    /// How many blocks behind that target this validator is, once known.
    pub behind: Option<u64>,
    /// Headers known so far (while fetching headers, before blocks).
    pub headers_known: u64,
    /// Blocks appended per second since the job started.
    pub blocks_per_s: u64,
}

impl Status {
    /// The finalized height (0 before any block after the genesis block).
    pub fn height(&self) -> u64 {
        self.finalized.len().saturating_sub(1) as u64
    }

    /// The finalized tip's hash, if any block is final.
    pub fn tip(&self) -> Option<BlockHash> {
        self.finalized.last().copied()
    }
}

/// A shared, read-only view of one validator's [`Status`].
#[derive(Clone, Debug, Default)]
pub struct StatusHandle(Arc<Mutex<Status>>);

impl StatusHandle {
    /// A copy of the current status.
    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    /// The finalized height.
    pub fn height(&self) -> u64 {
        self.lock().height()
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        // A panic while holding the lock cannot leave a Status half-written in a way that
        // matters to a reader, so a poisoned lock is still read.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A message to the actor.
enum Message<B: BlockStore> {
    Propose { context: ProposalContext, response: oneshot::Sender<Payload> },
    Verify { context: ProposalContext, payload: Payload, response: oneshot::Sender<bool> },
    Broadcast { payload: Payload, plan: Plan<PublicKey> },
    Finalized { view: View, payload: Payload },
    Fault { signer: u32, kind: &'static str },
    Submit { tx: Transaction, response: oneshot::Sender<TxOutcome> },
    Stop { response: oneshot::Sender<Chain<B>> },
}

/// The handle to a validator's application actor: what simplex calls, and where transactions
/// are submitted. Cheap to clone.
pub struct Mailbox<B: BlockStore> {
    sender: mpsc::UnboundedSender<Message<B>>,
}

impl<B: BlockStore> Clone for Mailbox<B> {
    fn clone(&self) -> Self {
        Mailbox { sender: self.sender.clone() }
    }
}

impl<B: BlockStore + Send + 'static> Mailbox<B> {
    fn send(&self, message: Message<B>) -> Feedback {
        if self.sender.send(message).is_ok() {
            Feedback::Ok
        } else {
            Feedback::Closed
        }
    }

    /// Put `tx` in this validator's mempool. The receiver resolves once the transaction is in a
    /// block this validator finalized, or is dropped for good; it errs if the validator stopped.
    pub fn submit(&self, tx: Transaction) -> oneshot::Receiver<TxOutcome> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Submit { tx, response });
        receiver
    }

    /// Stop the actor and hand back its finalized chain (`None` if it had already stopped).
    pub async fn stop(&self) -> Option<Chain<B>> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Stop { response });
        receiver.await.ok()
    }
}

impl<B: BlockStore + Send + 'static> Automaton for Mailbox<B> {
    type Context = ProposalContext;
    type Digest = Payload;

    async fn propose(&mut self, context: ProposalContext) -> oneshot::Receiver<Payload> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Propose { context, response });
        receiver
    }

    async fn verify(&mut self, context: ProposalContext, payload: Payload) -> oneshot::Receiver<bool> {
        let (response, receiver) = oneshot::channel();
        self.send(Message::Verify { context, payload, response });
        receiver
    }
}

/// Certification is the default (always): a block that verified is certified, since verification
/// already depends only on the block and its parent.
impl<B: BlockStore + Send + 'static> CertifiableAutomaton for Mailbox<B> {}

impl<B: BlockStore + Send + 'static> Relay for Mailbox<B> {
    type Digest = Payload;
    type PublicKey = PublicKey;
    type Plan = Plan<PublicKey>;

    fn broadcast(&mut self, payload: Payload, plan: Plan<PublicKey>) -> Feedback {
        self.send(Message::Broadcast { payload, plan })
    }
}

impl<B: BlockStore + Send + 'static> Reporter for Mailbox<B> {
    type Activity = Activity;

    fn report(&mut self, activity: Activity) -> Feedback {
        match activity {
            Activity::Finalization(finalization) => {
                self.send(Message::Finalized { view: finalization.view(), payload: finalization.proposal.payload })
            }
            Activity::ConflictingNotarize(proof) => {
                self.send(Message::Fault { signer: proof.signer().get(), kind: "conflicting_notarize" })
            }
            Activity::ConflictingFinalize(proof) => {
                self.send(Message::Fault { signer: proof.signer().get(), kind: "conflicting_finalize" })
            }
            Activity::NullifyFinalize(proof) => {
                self.send(Message::Fault { signer: proof.signer().get(), kind: "nullify_finalize" })
            }
            _ => Feedback::Ok,
        }
    }
}

/// Most mailbox messages handled in a row before the network gets a turn.
const MAX_DRAIN: usize = 1_024;

/// A request waiting for a block's bytes.
enum Parked {
    Propose { parent: BlockHash, response: oneshot::Sender<Payload> },
    Verify { parent: BlockHash, payload: BlockHash, response: oneshot::Sender<bool> },
}

impl Parked {
    fn is_abandoned(&self) -> bool {
        match self {
            Parked::Propose { response, .. } => response.is_closed(),
            Parked::Verify { response, .. } => response.is_closed(),
        }
    }
}

/// One validator's application actor. See the module docs.
pub struct Application<B: BlockStore, S, R> {
    core: Core<B>,
    participants: Set<PublicKey>,
    mailbox: mpsc::UnboundedReceiver<Message<B>>,
    sender: S,
    receiver: R,
    config: ApplicationConfig,
    parked: Vec<(BlockHash, Parked)>,
    /// The highest finalization not yet applied, and the hash it waits for.
    finalizing: Option<(View, BlockHash, Option<BlockHash>)>,
    /// When each missing hash may next be requested.
    fetches: BTreeMap<BlockHash, SystemTime>,
    /// The catch-up towards a finalized block whose ancestry is missing here.
    sync: RangeSync<PublicKey>,
    /// When the running catch-up started, its blocks so far, and when it was last logged.
    sync_clock: Option<SyncClock>,
    watchers: BTreeMap<TxHash, Vec<oneshot::Sender<TxOutcome>>>,
    /// Encoded transactions submitted here, new to the mempool, not yet gossiped.
    outbox: Vec<Vec<u8>>,
    /// When gossip was last flushed.
    last_gossip: Option<SystemTime>,
    /// An empty proposal held back (see [`ApplicationConfig::empty_block_interval`]).
    held: Option<HeldProposal>,
    status: StatusHandle,
}

/// Timing of the running catch-up, for its rate and its progress log.
struct SyncClock {
    started: SystemTime,
    blocks: u64,
    logged: SystemTime,
}

/// How often a running catch-up logs its progress.
const SYNC_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A request to propose on `parent`, asked again once the mempool admits a transaction
/// (`admitted` moves) or at `due_ms`.
struct HeldProposal {
    parent: BlockHash,
    response: oneshot::Sender<Payload>,
    due_ms: u64,
    admitted: u64,
}

impl<B, S, R> Application<B, S, R>
where
    B: BlockStore + Send + 'static,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    /// An actor over `chain` (its tip is taken as finalized) for validator `me` among
    /// `participants`, with the block channel `(sender, receiver)`. Returns the actor, to
    /// [`Application::start`], and its mailbox and status.
    pub fn new(
        chain: Chain<B>,
        me: &PublicKey,
        participants: Set<PublicKey>,
        (sender, receiver): (S, R),
        config: ApplicationConfig,
    ) -> Result<(Self, Mailbox<B>, StatusHandle), ConsensusError> {
        let tip_timestamp_ms = chain.head().timestamp_ms;
        let empty_block_interval_ms = u64::try_from(config.empty_block_interval.as_millis()).unwrap_or(u64::MAX);
        let core = Core::new(chain, config.mempool_capacity, config.max_cached_blocks)
            .map_err(|reason| ConsensusError::Store { reason })?
            .with_empty_block_interval(empty_block_interval_ms);
        let status = StatusHandle(Arc::new(Mutex::new(Status {
            finalized: core.finalized_hashes(),
            tip_timestamp_ms,
            ..Status::default()
        })));
        let (tx, rx) = mpsc::unbounded_channel();
        let peers: Vec<PublicKey> = participants.iter().filter(|p| *p != me).cloned().collect();
        let sync = RangeSync::new(peers, config.sync.clone());
        let actor = Application {
            core,
            participants,
            mailbox: rx,
            sender,
            receiver,
            config,
            parked: Vec::new(),
            finalizing: None,
            fetches: BTreeMap::new(),
            sync,
            sync_clock: None,
            watchers: BTreeMap::new(),
            outbox: Vec::new(),
            last_gossip: None,
            held: None,
            status: status.clone(),
        };
        Ok((actor, Mailbox { sender: tx }, status))
    }

    /// Run the actor as a task of `context` until it is stopped or its channels close.
    pub fn start<E: Clock + Spawner>(self, context: E) -> Handle<()> {
        context.spawn(move |context| self.run(context))
    }

    async fn run<E: Clock>(mut self, context: E) {
        let tick = self.config.fetch_retry.max(Duration::from_millis(1));
        let mut next_tick = context.current() + tick;
        loop {
            let mut wake = self.gossip_due().map_or(next_tick, |due| due.min(next_tick));
            if let Some(held) = &self.held {
                wake = wake.min(UNIX_EPOCH + Duration::from_millis(held.due_ms));
            }
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else { break };
                    // Handle what is already queued before flushing gossip, so transactions
                    // submitted together leave in one batch.
                    let mut next = Some(message);
                    let mut handled = 0;
                    while let Some(message) = next.take() {
                        if let Message::Stop { response } = message {
                            self.shutdown(response);
                            return;
                        }
                        self.on_message(&context, message);
                        handled += 1;
                        if handled < MAX_DRAIN {
                            next = self.mailbox.try_recv().ok();
                        }
                    }
                },
                received = self.receiver.recv() => {
                    let Ok((from, bytes)) = received else { break };
                    self.on_network(&context, from, bytes.as_ref());
                },
                _ = context.sleep_until(wake) => {
                    if context.current() >= next_tick {
                        self.fetch_missing(context.current());
                        self.poll_sync(context.current());
                        next_tick = context.current() + tick;
                    }
                },
            }
            self.release_held(now_ms(&context));
            self.flush_gossip(context.current());
        }
        self.fail_watchers();
    }

    fn shutdown(mut self, response: oneshot::Sender<Chain<B>>) {
        self.fail_watchers();
        let _ = response.send(self.core.into_chain());
    }

    fn fail_watchers(&mut self) {
        for (_, watchers) in std::mem::take(&mut self.watchers) {
            for watcher in watchers {
                let _ = watcher.send(TxOutcome::Rejected(RejectReason::Stopped));
            }
        }
    }

    fn on_message<E: Clock>(&mut self, context: &E, message: Message<B>) {
        match message {
            Message::Propose { context: ctx, response } => {
                let parent = block_hash(&ctx.parent.1);
                self.propose(now_ms(context), parent, response);
            }
            Message::Verify { context: ctx, payload: p, response } => {
                self.verify(block_hash(&ctx.parent.1), block_hash(&p), response);
            }
            Message::Broadcast { payload: p, plan } => {
                let recipients = match plan {
                    Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
                    Plan::Forward { recipients, .. } => recipients,
                };
                self.send_block(&block_hash(&p), recipients);
            }
            Message::Finalized { view, payload: p } => {
                if self.finalizing.as_ref().is_none_or(|(v, _, _)| view > *v) {
                    self.finalizing = Some((view, block_hash(&p), None));
                }
                self.try_finalize(context.current());
            }
            Message::Fault { signer, kind } => {
                let offender = self.participants.get(signer as usize).map(node_id);
                warn!(target: "dainet_consensus", ?offender, kind, "fault reported");
                if let Some(offender) = offender {
                    *self.status.lock().faults.entry(offender).or_insert(0) += 1;
                }
            }
            Message::Submit { tx, response } => {
                let encoded = tx.encode();
                match self.core.submit(tx) {
                    Ok((hash, new)) => {
                        if new {
                            self.queue_gossip(hash, encoded);
                        }
                        self.watchers.entry(hash).or_default().push(response);
                        self.status.lock().mempool = self.core.mempool().len();
                    }
                    Err(reason) => {
                        let _ = response.send(TxOutcome::Rejected(reason));
                    }
                }
            }
            Message::Stop { .. } => {}
        }
    }

    fn propose(&mut self, now_ms: u64, parent: BlockHash, response: oneshot::Sender<Payload>) {
        if self.sync.active() {
            // Behind and catching up: the parent is far ahead of this validator's tip. Declining
            // at once (simplex nullifies the view, and the others follow the leader's nullify)
            // costs the network one round trip per view this validator leads; parking the
            // request until the parent arrives cost a whole leader timeout (1 s) per such view,
            // measured as 25-30 -> 2 blocks/s for the other three while one caught up.
            self.status.lock().declined_while_syncing += 1;
            drop(response);
            return;
        }
        match self.core.propose(parent, now_ms) {
            Proposed::Wait { until_ms } => {
                // A newer request means consensus moved on: the older one lapses.
                let admitted = self.core.mempool().admitted();
                self.held = Some(HeldProposal { parent, response, due_ms: until_ms, admitted });
            }
            Proposed::Block(hash) => {
                self.status.lock().proposed += 1;
                let _ = response.send(payload(&hash));
            }
            Proposed::Missing(missing) => self.park(missing, Parked::Propose { parent, response }),
            Proposed::Declined(reason) => {
                // Dropping the response declines the view.
                debug!(target: "dainet_consensus", %parent, %reason, "declined to propose");
            }
        }
    }

    /// Ask the core again for a held proposal once a transaction has arrived or its time has
    /// come (it may be held again: the new transaction may not apply on that parent).
    fn release_held(&mut self, now_ms: u64) {
        let admitted = self.core.mempool().admitted();
        let ready = self.held.as_ref().is_some_and(|h| now_ms >= h.due_ms || admitted != h.admitted);
        if let Some(held) = self.held.take_if(|_| ready) {
            self.propose(now_ms, held.parent, held.response);
        }
    }

    fn verify(&mut self, parent: BlockHash, hash: BlockHash, response: oneshot::Sender<bool>) {
        match self.core.verify(parent, hash) {
            Verdict::Valid => {
                self.status.lock().verified += 1;
                let _ = response.send(true);
            }
            Verdict::Invalid(reason) => {
                warn!(target: "dainet_consensus", block = %hash, %reason, "rejected proposal");
                let mut status = self.status.lock();
                status.rejected_blocks += 1;
                status.last_error = Some(reason);
                drop(status);
                let _ = response.send(false);
            }
            Verdict::Missing(missing) => self.park(missing, Parked::Verify { parent, payload: hash, response }),
        }
    }

    fn park(&mut self, missing: BlockHash, request: Parked) {
        self.parked.push((missing, request));
    }

    /// Re-run every parked request: bytes or a checked ancestor may have arrived.
    fn retry_parked(&mut self, now_ms: u64) {
        for (_, request) in std::mem::take(&mut self.parked) {
            if request.is_abandoned() {
                continue;
            }
            match request {
                Parked::Propose { parent, response } => self.propose(now_ms, parent, response),
                Parked::Verify { parent, payload, response } => self.verify(parent, payload, response),
            }
        }
    }

    /// Apply the newest finalization, or start catching up towards it when its ancestry is
    /// missing here. While a catch-up runs it alone appends; the newest finalization is tried
    /// again when it ends.
    fn try_finalize(&mut self, now: SystemTime) {
        let Some((view, hash, _)) = self.finalizing else { return };
        if self.sync.active() {
            return;
        }
        match self.core.finalize(hash) {
            Finality::Missing(missing) => {
                self.finalizing = Some((view, hash, Some(missing)));
                let head = self.core.chain().head();
                if self.sync.start(hash, (head.height, head.hash)) {
                    debug!(target: "dainet_consensus", target = %hash, height = head.height, "catching up");
                    self.status.lock().sync_jobs += 1;
                    self.sync_clock = Some(SyncClock { started: now, blocks: 0, logged: now });
                    self.poll_sync(now);
                }
            }
            Finality::Already => self.finalizing = None,
            Finality::Failed(reason) => {
                self.finalizing = None;
                self.finality_failed(&hash, reason);
            }
            done @ Finality::Done { .. } => {
                self.finalizing = None;
                self.record_appended(done);
            }
        }
    }

    fn finality_failed(&mut self, hash: &BlockHash, reason: String) {
        error!(target: "dainet_consensus", block = %hash, %reason, "finalized block does not check");
        let mut status = self.status.lock();
        status.finality_errors += 1;
        status.last_error = Some(reason);
    }

    /// Report blocks appended to the finalized chain: status, watchers, evictions.
    fn record_appended(&mut self, finality: Finality) {
        let Finality::Done { blocks, evicted, error } = finality else { return };
        let mut status = self.status.lock();
        for block in &blocks {
            status.finalized.push(block.hash);
            status.tip_timestamp_ms = block.timestamp_ms;
            let inclusion =
                Inclusion { height: block.height, block_hash: block.hash, timestamp_ms: block.timestamp_ms };
            for tx in &block.tx_hashes {
                for watcher in self.watchers.remove(tx).unwrap_or_default() {
                    status.submissions_committed += 1;
                    let _ = watcher.send(TxOutcome::Committed(inclusion));
                }
            }
        }
        for (tx, reason) in evicted {
            for watcher in self.watchers.remove(&tx).unwrap_or_default() {
                let _ = watcher.send(TxOutcome::Rejected(RejectReason::Ledger(reason.clone())));
            }
        }
        status.mempool = self.core.mempool().len();
        if let Some(reason) = error {
            error!(target: "dainet_consensus", %reason, "could not append a finalized block");
            status.finality_errors += 1;
            status.last_error = Some(reason);
        }
    }

    /// Send the catch-up's next request, if one is due, and refresh its status.
    fn poll_sync(&mut self, now: SystemTime) {
        if let Some((peer, request)) = self.sync.poll(ms_since_epoch(now)) {
            let message = match request {
                SyncRequest::Headers { end, above, max } => WireMessage::HeadersRequest { end, above, max },
                SyncRequest::Blocks(hashes) => WireMessage::BlocksRequest(hashes),
            };
            let _ = self.sender.send(Recipients::One(peer), message.encode(), false);
        }
        self.report_sync(now);
    }

    /// Put the catch-up's progress in the status, and log it every [`SYNC_LOG_INTERVAL`].
    fn report_sync(&mut self, now: SystemTime) {
        let progress = self.sync.progress();
        let rate = self.sync_clock.as_ref().map_or(0, |clock| {
            let ms = now.duration_since(clock.started).map_or(0, |d| d.as_millis()).max(1);
            u64::try_from(u128::from(clock.blocks) * 1000 / ms).unwrap_or(u64::MAX)
        });
        if let (Some(p), Some(clock)) = (&progress, self.sync_clock.as_mut()) {
            if now.duration_since(clock.logged).is_ok_and(|d| d >= SYNC_LOG_INTERVAL) {
                clock.logged = now;
                info!(
                    target: "dainet_consensus",
                    height = p.height,
                    target_height = ?p.target_height,
                    behind = ?p.behind(),
                    headers_known = p.headers_known,
                    blocks_per_s = rate,
                    "catching up"
                );
            }
        }
        let mut status = self.status.lock();
        status.sync = progress.map(|p| SyncStatus {
            target_height: p.target_height,
            behind: p.behind(),
            headers_known: p.headers_known,
            blocks_per_s: rate,
        });
        status.sync_timeouts = self.sync.timeouts;
    }

    /// Act on what a catch-up answer did.
    fn on_sync_event<E: Clock>(&mut self, context: &E, from: &PublicKey, event: SyncEvent) {
        let now = context.current();
        match event {
            SyncEvent::Ignored | SyncEvent::Progress => {}
            SyncEvent::BadAnswer(reason) => {
                debug!(target: "dainet_consensus", peer = %node_id(from), %reason, "catch-up answer not used");
                self.status.lock().sync_bad_answers += 1;
            }
            SyncEvent::Failed(reason) => {
                self.sync_clock = None;
                let target = self.finalizing.map(|(_, hash, _)| hash).unwrap_or_default();
                self.finality_failed(&target, reason);
            }
            SyncEvent::Append(blocks) => {
                let count = blocks.len() as u64;
                let result = self.core.append_synced(blocks);
                // The runtime's clock: real time in a node, virtual (so no rest) in a simulation.
                let (took_ms, now_ms) = (now_ms(context).saturating_sub(ms_since_epoch(now)), now_ms(context));
                match result {
                    done @ Finality::Done { .. } => {
                        self.record_appended(done);
                        self.status.lock().synced_blocks += count;
                        if let Some(clock) = self.sync_clock.as_mut() {
                            clock.blocks += count;
                        }
                        let head = self.core.chain().head();
                        if self.sync.appended((head.height, head.hash), took_ms, now_ms) {
                            let blocks = self.sync_clock.take().map_or(0, |c| c.blocks);
                            info!(target: "dainet_consensus", height = head.height, blocks, "caught up");
                            self.report_sync(now);
                            self.try_finalize(now);
                        }
                        self.retry_parked(ms_since_epoch(now));
                    }
                    other => {
                        self.sync.fail();
                        self.sync_clock = None;
                        let reason = match other {
                            Finality::Failed(reason) => reason,
                            other => format!("unexpected catch-up result: {other:?}"),
                        };
                        let target = self.finalizing.map(|(_, hash, _)| hash).unwrap_or_default();
                        self.finality_failed(&target, reason);
                    }
                }
            }
        }
        self.poll_sync(now);
    }

    fn on_network<E: Clock>(&mut self, context: &E, from: PublicKey, bytes: &[u8]) {
        let now = context.current();
        let message = match WireMessage::decode(bytes) {
            Ok(message) => message,
            Err(err) => {
                self.reject_message(&from, err.to_string());
                return;
            }
        };
        match message {
            WireMessage::Request(hash) => {
                if self.send_block(&hash, Recipients::One(from)) {
                    self.status.lock().blocks_served += 1;
                }
            }
            WireMessage::Block(block) => match self.core.insert_block(block) {
                Inserted::New(_) => {
                    self.retry_parked(ms_since_epoch(now));
                    if self.finalizing.is_some() {
                        self.try_finalize(now);
                    }
                    // A fetched block may reveal a missing parent: ask for it at once, so
                    // catching up costs a round trip per block, not a retry period.
                    self.fetch_missing(now);
                }
                Inserted::Malformed(reason) => self.reject_message(&from, reason),
                Inserted::Known | Inserted::Stale | Inserted::Full => {}
            },
            WireMessage::Transactions(txs) => self.on_gossip(&from, txs),
            WireMessage::HeadersRequest { end, above, max } => {
                let headers = self.core.headers_ending_at(end, above, max as usize);
                let sent = self.sender.send(Recipients::One(from), WireMessage::Headers(headers).encode(), false);
                if !sent.is_empty() {
                    self.status.lock().ranges_served += 1;
                }
            }
            WireMessage::BlocksRequest(hashes) => {
                let overhead = blocks_message_len(hashes.iter().map(|_| 0));
                let budget = self.config.max_message_bytes.saturating_sub(overhead);
                let blocks = self.core.blocks_by_hash(&hashes, budget);
                let message = blocks_message(&blocks);
                if message.len() > self.config.max_message_bytes {
                    warn!(target: "dainet_consensus", bytes = message.len(), "block too large to serve a catch-up");
                    return;
                }
                if !self.sender.send(Recipients::One(from), message, false).is_empty() {
                    self.status.lock().ranges_served += 1;
                }
            }
            WireMessage::Headers(headers) => {
                let event = self.sync.on_headers(&from, headers);
                self.on_sync_event(context, &from, event);
            }
            WireMessage::Blocks(blocks) => {
                let event = self.sync.on_blocks(&from, blocks);
                self.on_sync_event(context, &from, event);
            }
        }
    }

    /// Put a peer's gossiped transactions in the mempool: no watcher, no gossip onward. Those no
    /// honest peer sends (a bad signature, too large for a block) make the message a rejected one;
    /// the rest of the batch still counts.
    fn on_gossip(&mut self, from: &PublicKey, txs: Vec<Transaction>) {
        let total = txs.len();
        let (mut admitted, mut bad, mut first_bad) = (0u64, 0usize, None);
        for tx in txs {
            match self.core.submit(tx) {
                Ok((_, new)) => admitted += u64::from(new),
                Err(reason) if reason.is_peer_fault() => {
                    bad += 1;
                    first_bad.get_or_insert(reason);
                }
                Err(reason) => debug!(target: "dainet_consensus", %reason, "gossiped transaction not admitted"),
            }
        }
        {
            let mut status = self.status.lock();
            status.gossip_received += admitted;
            status.mempool = self.core.mempool().len();
        }
        if let Some(reason) = first_bad {
            self.reject_message(from, format!("bad gossiped transactions: bad={bad} batch={total} first={reason}"));
        }
    }

    /// Queue a transaction submitted here for the next gossip flush, if peers can take it.
    fn queue_gossip(&mut self, hash: TxHash, encoded: Vec<u8>) {
        if gossipable(encoded.len(), self.config.max_message_bytes) {
            self.outbox.push(encoded);
        } else {
            debug!(target: "dainet_consensus", tx = %hash, bytes = encoded.len(), "transaction too large to gossip");
        }
    }

    /// When the outbox may be flushed next, if it holds anything.
    fn gossip_due(&self) -> Option<SystemTime> {
        if self.outbox.is_empty() {
            return None;
        }
        Some(self.last_gossip.map_or(UNIX_EPOCH, |last| last + self.config.gossip_interval))
    }

    /// Broadcast the outbox in as few batches as fit a message, if it is due.
    fn flush_gossip(&mut self, now: SystemTime) {
        if self.gossip_due().is_none_or(|due| now < due) {
            return;
        }
        let outbox = std::mem::take(&mut self.outbox);
        self.last_gossip = Some(now);
        for message in transaction_batches(outbox.iter().map(Vec::as_slice), self.config.max_message_bytes) {
            if !self.sender.send(Recipients::All, message, false).is_empty() {
                self.status.lock().gossip_sent += 1;
            }
        }
    }

    fn reject_message(&mut self, from: &PublicKey, reason: String) {
        warn!(target: "dainet_consensus", peer = %node_id(from), %reason, "rejected message");
        let mut status = self.status.lock();
        status.rejected_messages += 1;
        status.last_error = Some(reason);
    }

    /// Send the block with this hash, if held. Returns whether it was sent.
    fn send_block(&mut self, hash: &BlockHash, recipients: Recipients<PublicKey>) -> bool {
        let Some(bytes) = self.core.block_bytes(hash) else {
            debug!(target: "dainet_consensus", block = %hash, "asked to send a block not held");
            return false;
        };
        let message = crate::wire::block_message(&bytes);
        if message.len() > self.config.max_message_bytes {
            warn!(target: "dainet_consensus", block = %hash, bytes = message.len(), "block too large to send");
            return false;
        }
        !self.sender.send(recipients, message, false).is_empty()
    }

    /// Request every missing hash that waiting requests need: new ones at once, others again
    /// once `fetch_retry` has passed since their last request.
    fn fetch_missing(&mut self, now: SystemTime) {
        self.parked.retain(|(_, request)| !request.is_abandoned());
        // While catching up, the blocks that parked requests wait for are far above the tip:
        // fetching them one hash at a time would crawl down the whole gap and make every peer
        // answer for each step. The catch-up brings the chain; they are fetched after it.
        // A finalization's missing ancestry is the catch-up's to fetch.
        let needed: BTreeSet<BlockHash> = if self.sync.active() {
            BTreeSet::new()
        } else {
            self.parked.iter().map(|(missing, _)| *missing).collect()
        };
        self.fetches.retain(|hash, _| needed.contains(hash));
        for hash in needed {
            let due = self.fetches.entry(hash).or_insert(now);
            if *due <= now {
                *due = now + self.config.fetch_retry;
                let sent = self.sender.send(Recipients::All, WireMessage::Request(hash).encode(), false);
                if !sent.is_empty() {
                    self.status.lock().requests_sent += 1;
                }
            }
        }
    }
}

fn now_ms<E: Clock>(context: &E) -> u64 {
    ms_since_epoch(context.current())
}

pub(crate) fn ms_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
