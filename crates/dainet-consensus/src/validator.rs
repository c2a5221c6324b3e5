//! One validator: a simplex engine wired to the ledger application, on any Commonware runtime
//! and any p2p stack.
//!
//! This module owns the engine configuration: the signing scheme (ed25519, keys as in
//! [`crate::types`]), the leader schedule (round-robin over the genesis validators), the floor
//! ([`Anchor`]: the block whose hash is simplex's view-0 payload, which the first proposal of an
//! empty vote journal builds on — block 0, or the chain's head when every validator resumes a
//! stored chain together), the timeouts ([`Timing`]) and the four p2p channels ([`Channels`]). [`start_validator`] is generic over the
//! runtime context and the channel types, so a node on tokio with authenticated p2p calls it the
//! same way the deterministic simulation does.
//!
//! Fixed choices, each a limit worth knowing:
//! - the validator set is the genesis validators, for good (one epoch, no reconfiguration);
//! - safety and liveness need `n >= 3f + 1`: with 4 validators, 1 may be faulty;
//! - simplex journals its votes in the runtime's storage under [`ValidatorConfig::partition`]; a
//!   restarted validator must keep that journal, or it could sign conflicting votes;
//! - [`Anchor::Head`] restarts simplex at view 1 of epoch 0 on the stored head. It is sound only
//!   when all validators start that way together, on the same chain, with empty journals, and no
//!   vote of the earlier run survives anywhere (its views are reused). The simulated ledger's
//!   `resume` is that case; a networked node keeps its journal and uses [`Anchor::Genesis`].

use std::num::{NonZeroU16, NonZeroUsize};
use std::time::Duration;

use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::{Config, Engine, Floor, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::types::{Epoch, ViewDelta};
use commonware_cryptography::{ed25519, Signer as _};
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage};
use commonware_utils::NonZeroDuration;
use dainet_ledger::chain::{genesis_block, Chain};
use dainet_ledger::store::BlockStore;
use rand_core::CryptoRng;

use crate::application::{Application, ApplicationConfig, Mailbox, StatusHandle};
use crate::error::ConsensusError;
use crate::types::{self, node_id, payload, PublicKey, Scheme};

/// The p2p channel carrying votes.
pub const CHANNEL_VOTES: u64 = 0;
/// The p2p channel carrying certificates.
pub const CHANNEL_CERTIFICATES: u64 = 1;
/// The p2p channel carrying certificate requests and answers.
pub const CHANNEL_RESOLVER: u64 = 2;
/// The p2p channel carrying block bytes ([`crate::wire`]).
pub const CHANNEL_BLOCKS: u64 = 3;

/// Consensus timeouts. The defaults suit links of tens of milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for the leader's proposal before voting to skip the view.
    pub leader_timeout: Duration,
    /// How long to wait for a proposal to be notarized and certified; above `leader_timeout`.
    pub certification_timeout: Duration,
    /// How often to re-broadcast a skip vote while stuck in a view.
    pub timeout_retry: Duration,
    /// After this long without hearing from a leader (while a quorum is active), skip its views
    /// at once; above `certification_timeout` and `timeout_retry`. `None` never skips early: a
    /// crashed leader then costs `leader_timeout` per view it leads. With skipping, a leader
    /// whose first messages were lost can be skipped spuriously and votes can split for up to
    /// `certification_timeout` (simplex tolerates this; it costs time, never safety).
    pub skip_timeout: Option<Duration>,
    /// How long to wait for a peer to answer a certificate request.
    pub fetch_timeout: Duration,
    /// Delay before retrying an unanswered certificate request.
    pub fetch_retry_delay: Duration,
    /// Views below the finalized one for which votes are still tracked (at least 1).
    pub view_retention: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(1),
            skip_timeout: Some(Duration::from_secs(5)),
            fetch_timeout: Duration::from_secs(1),
            fetch_retry_delay: Duration::from_millis(100),
            view_retention: 10,
        }
    }
}

impl Timing {
    /// Check the orderings simplex requires (it would panic on them otherwise).
    pub fn validate(&self) -> Result<(), ConsensusError> {
        let bad = |field: &'static str, reason: &str| Err(ConsensusError::Config { field, reason: reason.into() });
        if self.leader_timeout.is_zero() {
            return bad("leader_timeout", "must be positive");
        }
        if self.certification_timeout <= self.leader_timeout {
            return bad("certification_timeout", "must exceed leader_timeout");
        }
        if self.timeout_retry.is_zero() {
            return bad("timeout_retry", "must be positive");
        }
        if let Some(skip) = self.skip_timeout {
            if skip <= self.certification_timeout || skip <= self.timeout_retry {
                return bad("skip_timeout", "must exceed certification_timeout and timeout_retry");
            }
        }
        if self.fetch_timeout.is_zero() {
            return bad("fetch_timeout", "must be positive");
        }
        if self.view_retention == 0 {
            return bad("view_retention", "must be at least 1");
        }
        Ok(())
    }
}

/// Which block simplex's view 0 stands for: the payload of its `Floor::Genesis`, the parent of
/// the first proposal made with an empty vote journal. Heights come from the ledger blocks, never
/// from views, so either way a proposal is the next block on its parent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Anchor {
    /// Block 0. For a new chain, and for a validator restarted with its vote journal (simplex
    /// replays the views above view 0, so proposals continue from the last certified block).
    /// A networked node always uses this.
    #[default]
    Genesis,
    /// The chain's head. For every validator starting at once on the same stored chain with
    /// empty journals (no finalization certificate is stored, so the head is the floor): views
    /// start again at 1 and the first proposal is block `head + 1`. A validator started this way
    /// on a chain the others do not share, or among validators already past view 0, rejects
    /// their proposals (wrong parent) or makes ones they reject.
    Head,
}

/// Everything one validator needs besides its runtime and network.
pub struct ValidatorConfig<B: BlockStore> {
    /// The finalized chain to extend (a new one from the genesis, or a reopened one).
    pub chain: Chain<B>,
    /// The validator's consensus key ([`types::consensus_key`] of its ledger key pair).
    pub key: ed25519::PrivateKey,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Application tuning.
    pub application: ApplicationConfig,
    /// Where simplex journals its votes; `None` derives a name from the public key.
    pub partition: Option<String>,
    /// Which block the first proposal of an empty journal builds on ([`Anchor::Genesis`] unless
    /// all validators resume a stored chain together).
    pub anchor: Anchor,
}

/// The four p2p channels of one validator, each a `(sender, receiver)` pair registered on the
/// channel numbers [`CHANNEL_VOTES`], [`CHANNEL_CERTIFICATES`], [`CHANNEL_RESOLVER`] and
/// [`CHANNEL_BLOCKS`].
pub struct Channels<S, R> {
    /// Votes.
    pub votes: (S, R),
    /// Certificates.
    pub certificates: (S, R),
    /// Certificate requests.
    pub resolver: (S, R),
    /// Block bytes.
    pub blocks: (S, R),
}

/// A running validator: its engine and application tasks, and the handles to talk to them.
pub struct Validator<B: BlockStore> {
    public_key: PublicKey,
    mailbox: Mailbox<B>,
    status: StatusHandle,
    engine: Handle<()>,
    application: Handle<()>,
}

impl<B: BlockStore + Send + 'static> Validator<B> {
    /// Its consensus public key (the bytes of its node id).
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Where to submit transactions.
    pub fn mailbox(&self) -> &Mailbox<B> {
        &self.mailbox
    }

    /// What it has finalized and counted.
    pub fn status(&self) -> &StatusHandle {
        &self.status
    }

    /// Crash it: abort the engine and the application at once, without a goodbye.
    pub fn abort(&self) {
        self.engine.abort();
        self.application.abort();
    }

    /// Stop the application and hand back its finalized chain (the engine is aborted).
    pub async fn stop(self) -> Option<Chain<B>> {
        let chain = self.mailbox.stop().await;
        self.engine.abort();
        chain
    }
}

/// Start a validator on `context`: the application actor and the simplex engine, over
/// `channels`, blocking misbehaving peers through `blocker`.
///
/// Fails if the timing is invalid or the key is not one of the genesis validators.
pub fn start_validator<E, B, L, S, R>(
    context: E,
    config: ValidatorConfig<B>,
    blocker: L,
    channels: Channels<S, R>,
) -> Result<Validator<B>, ConsensusError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    B: BlockStore + Send + 'static,
    L: Blocker<PublicKey = PublicKey>,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    config.timing.validate()?;
    let genesis = config.chain.genesis().clone();
    let floor = match config.anchor {
        Anchor::Genesis => genesis_block(&genesis).hash(),
        Anchor::Head => config.chain.head().hash,
    };
    let participants = types::validators(&genesis)?;
    let public_key = config.key.public_key();
    let Some(index) = participants.position(&public_key) else {
        return Err(ConsensusError::NotAValidator { index: 0, node: node_id(&public_key) });
    };
    let namespace = types::namespace(&genesis);
    let Some(scheme) = Scheme::signer(&namespace, participants.clone(), config.key) else {
        return Err(ConsensusError::NotAValidator { index, node: node_id(&public_key) });
    };
    let (application, mailbox, status) =
        Application::new(config.chain, &public_key, participants, channels.blocks, config.application)?;
    let application = application.start(context.child("application"));

    let timing = config.timing;
    let elector: RoundRobin = RoundRobin::default();
    let partition = config.partition.unwrap_or_else(|| format!("dainet-consensus-{public_key}"));
    let engine_config = Config {
        scheme,
        elector,
        blocker,
        automaton: mailbox.clone(),
        relay: mailbox.clone(),
        reporter: mailbox.clone(),
        strategy: Sequential,
        partition,
        mailbox_size: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
        epoch: Epoch::new(0),
        floor: Floor::Genesis(payload(&floor)),
        replay_buffer: NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN),
        write_buffer: NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN),
        page_cache: CacheRef::new(
            NonZeroU16::new(1024).unwrap_or(NonZeroU16::MIN),
            NonZeroUsize::new(10).unwrap_or(NonZeroUsize::MIN),
        ),
        leader_timeout: timing.leader_timeout,
        certification_timeout: timing.certification_timeout,
        timeout_retry: timing.timeout_retry,
        view_retention: ViewDelta::new(timing.view_retention),
        skip: match timing.skip_timeout {
            Some(timeout) => SkipPolicy::Enabled { timeout, budget: SkipBudget::Participants },
            None => SkipPolicy::Disabled,
        },
        fetch_timeout: NonZeroDuration::new(timing.fetch_timeout)
            .ok_or(ConsensusError::Config { field: "fetch_timeout", reason: "must be positive".into() })?,
        fetch_retry_delay: timing.fetch_retry_delay,
        forward: ForwardPolicy::Disabled,
        track_historical_votes: false,
    };
    let engine = Engine::new(context.child("engine"), engine_config);
    let (votes, certificates, resolver) = (channels.votes, channels.certificates, channels.resolver);
    let engine = engine.start(votes, certificates, resolver);
    Ok(Validator { public_key, mailbox, status, engine, application })
}
