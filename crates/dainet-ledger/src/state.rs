//! The ledger state and the deterministic rules that move it, one transaction at a time.
//!
//! This module owns the state machine. [`State::apply`] is a pure function of the state, the
//! transaction and the block time: no clock, no randomness, no I/O, no floating-point arithmetic
//! on the accept/reject path beyond comparisons, and iteration only over `BTreeMap`s — so every
//! honest replica that applies the same blocks holds the same bytes, and [`State::root`] (blake3
//! in [`Domain::State`] over the postcard encoding of the whole state) agrees.
//!
//! `apply` either accepts a transaction and records it, or rejects it with a [`TxRejection`] and
//! leaves the state exactly as it was: [`State::check`] decides with `&self`, and only then does
//! an infallible step mutate.
//!
//! # Rules
//!
//! Every transaction, in this order:
//! 1. its encoding is at most [`MAX_TX_BYTES`];
//! 2. its signer is a member (a founder from the genesis, or admitted by `RegisterMember`).
//!    Devices are identities, not signers: their member signs for them;
//! 3. its signature verifies for this chain id;
//! 4. its nonce is exactly one more than the signer's last accepted nonce (the first is 1), so a
//!    nonce can be neither reused nor skipped, and a member's transactions apply in the order it
//!    numbered them.
//!
//! Then, by body:
//! - `RegisterMember`: the id is a usable key, not yet a member or device.
//! - `RegisterDevice`: `member` is the signer; the device id is a usable key, not yet a member or
//!   device.
//! - `DeployPolicy`: appended to the policy history; the last is active. Who may deploy is the
//!   policy layer's decision; the core only requires a member.
//! - `OpenRound`: the round number is new; participants are non-empty, distinct, each a member or
//!   device; `deadline_ms` is not before the block time. The signer becomes the coordinator.
//! - `CommitUpdate`: the round is open; `node` is a participant with no update yet this round;
//!   the block time is not past the deadline; the norm is finite and non-negative; the signer is
//!   the coordinator, the node itself, or the member that owns the device.
//! - `CommitAggregate`: signed by the coordinator of an open round; participants non-empty,
//!   distinct, each with a committed update. Closes the round.
//! - `Contribution`: signed by the coordinator of a closed round, for a participant, once.
//! - `Reward`: to a member or device; the balance must not overflow. Who may mint is policy.
//! - `DataUse`: recorded as given.
//! - `PrivacySpend`: for an existing round, by its coordinator or a participant (or its member);
//!   ε finite and ≥ 0, δ in \[0, 1\].
//! - `Evidence`: about a known member or device.
//!
//! The state is encoded whole for its root, O(state) per block; a Merkleized state with proofs
//! for light clients is future work.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::genesis::Genesis;
use crate::hash::{Digest, Domain};
use crate::identity::NodeId;
use crate::tx::{ChainId, EvidenceKind, Metric, Transaction, TxBody, MAX_TX_BYTES};

/// Why a transaction was not applied. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxRejection {
    /// The encoded transaction exceeds [`MAX_TX_BYTES`].
    #[error("transaction too large: bytes={bytes} max={max}")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The signer is not a member.
    #[error("unknown signer: signer={signer}")]
    UnknownSigner {
        /// The signer.
        signer: NodeId,
    },
    /// The signature does not verify for this chain.
    #[error("bad signature: signer={signer}")]
    BadSignature {
        /// The claimed signer.
        signer: NodeId,
    },
    /// The nonce is not the signer's next one (reused, skipped or out of order).
    #[error("bad nonce: signer={signer} expected={expected} found={found}")]
    BadNonce {
        /// The signer.
        signer: NodeId,
        /// The only nonce accepted next.
        expected: u64,
        /// The nonce given.
        found: u64,
    },
    /// The signer has used every nonce.
    #[error("nonces exhausted: signer={signer}")]
    NoncesExhausted {
        /// The signer.
        signer: NodeId,
    },
    /// The signer may not do this.
    #[error("not authorized: signer={signer} action={action}")]
    Unauthorized {
        /// The signer.
        signer: NodeId,
        /// What it tried, e.g. `"commit_aggregate"`.
        action: &'static str,
    },
    /// A node id to be registered is not a usable ed25519 key.
    #[error("invalid key: node={node}")]
    InvalidKey {
        /// The node id.
        node: NodeId,
    },
    /// The node is already registered as a member or device.
    #[error("already registered: node={node}")]
    AlreadyRegistered {
        /// The node id.
        node: NodeId,
    },
    /// The node is neither a member nor a device.
    #[error("unknown node: node={node}")]
    UnknownNode {
        /// The node id.
        node: NodeId,
    },
    /// A round with this number was already opened.
    #[error("round exists: round={round}")]
    RoundExists {
        /// The round.
        round: u64,
    },
    /// No round with this number was opened.
    #[error("unknown round: round={round}")]
    UnknownRound {
        /// The round.
        round: u64,
    },
    /// The round is closed (its aggregate is committed).
    #[error("round closed: round={round}")]
    RoundClosed {
        /// The round.
        round: u64,
    },
    /// The round is still open (no aggregate yet).
    #[error("round still open: round={round}")]
    RoundOpen {
        /// The round.
        round: u64,
    },
    /// A participant list is empty.
    #[error("no participants: round={round}")]
    NoParticipants {
        /// The round.
        round: u64,
    },
    /// A node appears twice in a participant list.
    #[error("duplicate participant: round={round} node={node}")]
    DuplicateParticipant {
        /// The round.
        round: u64,
        /// The repeated node.
        node: NodeId,
    },
    /// The node is not a participant of the round.
    #[error("not a participant: round={round} node={node}")]
    NotParticipant {
        /// The round.
        round: u64,
        /// The node.
        node: NodeId,
    },
    /// The node already has an update (or a contribution) recorded for the round.
    #[error("already recorded: round={round} node={node} record={record}")]
    AlreadyRecorded {
        /// The round.
        round: u64,
        /// The node.
        node: NodeId,
        /// `"update"` or `"contribution"`.
        record: &'static str,
    },
    /// An aggregate names a participant that committed no update.
    #[error("missing update: round={round} node={node}")]
    MissingUpdate {
        /// The round.
        round: u64,
        /// The participant.
        node: NodeId,
    },
    /// The block time is past the round's deadline.
    #[error("deadline passed: round={round} deadline_ms={deadline_ms} time_ms={time_ms}")]
    DeadlinePassed {
        /// The round.
        round: u64,
        /// Its deadline.
        deadline_ms: u64,
        /// The block time.
        time_ms: u64,
    },
    /// A round's deadline is before the block time that opens it.
    #[error("deadline before open: round={round} deadline_ms={deadline_ms} time_ms={time_ms}")]
    DeadlineBeforeOpen {
        /// The round.
        round: u64,
        /// Its deadline.
        deadline_ms: u64,
        /// The block time.
        time_ms: u64,
    },
    /// A real-valued field is NaN, infinite or out of range.
    #[error("invalid value: field={field} value={}", f64::from_bits(*value_bits))]
    InvalidValue {
        /// The field, e.g. `"norm"`.
        field: &'static str,
        /// `f64::to_bits` of the value as decoded.
        value_bits: u64,
    },
    /// A balance would exceed `u64::MAX`.
    #[error("balance overflow: node={node}")]
    BalanceOverflow {
        /// The node.
        node: NodeId,
    },
}

/// A member organisation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Member {
    /// Its human-readable name.
    pub name: String,
    /// Whether it validates.
    pub validator: bool,
    /// Whether it was a founder (in the genesis) rather than admitted by transaction.
    pub founder: bool,
}

/// An update commitment recorded in a round.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// blake3 of the update blob.
    pub update_hash: Digest,
    /// Local examples.
    pub examples: u64,
    /// `f64::to_bits` of the update's norm.
    pub norm_bits: u64,
    /// Who signed the commitment.
    pub committed_by: NodeId,
}

/// A round's aggregate commitment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AggregateRecord {
    /// blake3 of the global model blob.
    pub aggregate_hash: Digest,
    /// The participants whose updates went in, in the order given.
    pub participants: Vec<NodeId>,
    /// The metrics reported.
    pub metrics: Vec<Metric>,
}

/// Privacy budget spent in a round.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PrivacyRecord {
    /// Who recorded it.
    pub signer: NodeId,
    /// `f64::to_bits` of ε.
    pub epsilon_bits: u64,
    /// `f64::to_bits` of δ.
    pub delta_bits: u64,
}

/// A training round as the ledger knows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Round {
    /// The member that opened it and alone may aggregate it.
    pub coordinator: NodeId,
    /// The task.
    pub task: String,
    /// The strategy.
    pub strategy: String,
    /// The invited participants.
    pub participants: BTreeSet<NodeId>,
    /// The last block time at which an update may be committed.
    pub deadline_ms: u64,
    /// The block time at which it opened.
    pub opened_ms: u64,
    /// Committed updates, by participant.
    pub updates: BTreeMap<NodeId, UpdateRecord>,
    /// The aggregate; `Some` once the round is closed.
    pub aggregate: Option<AggregateRecord>,
    /// Contribution scores, by participant.
    pub contributions: BTreeMap<NodeId, i64>,
    /// Privacy spends, in the order recorded.
    pub privacy: Vec<PrivacyRecord>,
}

impl Round {
    /// Whether updates may still be committed (no aggregate yet).
    pub fn is_open(&self) -> bool {
        self.aggregate.is_none()
    }

    /// Total ε recorded for this round (basic composition, summed in record order).
    pub fn epsilon_spent(&self) -> f64 {
        self.privacy.iter().map(|p| f64::from_bits(p.epsilon_bits)).sum()
    }
}

/// A data-use record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DataUseRecord {
    /// Who recorded it.
    pub signer: NodeId,
    /// The dataset.
    pub dataset_id: String,
    /// The purpose.
    pub purpose: String,
    /// The consent reference.
    pub consent_ref: String,
    /// The block time.
    pub time_ms: u64,
}

/// A piece of misbehaviour evidence.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Who reported it.
    pub reporter: NodeId,
    /// What kind.
    pub kind: EvidenceKind,
    /// The accused.
    pub node: NodeId,
    /// blake3 of the proof blob.
    pub detail_hash: Digest,
    /// The block time.
    pub time_ms: u64,
}

/// The ledger state: registry, nonces, rounds, balances and records.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct State {
    chain_id: ChainId,
    members: BTreeMap<NodeId, Member>,
    devices: BTreeMap<NodeId, NodeId>,
    nonces: BTreeMap<NodeId, u64>,
    rounds: BTreeMap<u64, Round>,
    balances: BTreeMap<NodeId, u64>,
    policies: Vec<Digest>,
    data_uses: Vec<DataUseRecord>,
    evidence: Vec<EvidenceRecord>,
}

impl State {
    /// The state at block 0: the founders as members, nothing else. The genesis should have been
    /// [validated](Genesis::validate); a repeated founder keeps its last entry.
    pub fn from_genesis(genesis: &Genesis) -> State {
        let members = genesis
            .founders
            .iter()
            .map(|f| (f.id, Member { name: f.name.clone(), validator: f.validator, founder: true }))
            .collect();
        State {
            chain_id: genesis.chain_id(),
            members,
            devices: BTreeMap::new(),
            nonces: BTreeMap::new(),
            rounds: BTreeMap::new(),
            balances: BTreeMap::new(),
            policies: Vec::new(),
            data_uses: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// blake3 in [`Domain::State`] over the postcard encoding of the whole state.
    pub fn root(&self) -> Digest {
        Domain::State.hash(&codec::to_bytes(self))
    }

    /// The chain id transactions must be signed for.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// A member, if `id` is one.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// All members, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// The validating members, in id order.
    pub fn validators(&self) -> impl Iterator<Item = &NodeId> {
        self.members.iter().filter(|(_, m)| m.validator).map(|(id, _)| id)
    }

    /// The member a device belongs to, if `id` is a device.
    pub fn device_owner(&self, id: &NodeId) -> Option<&NodeId> {
        self.devices.get(id)
    }

    /// The nonce the signer must use next (1 for a signer with no accepted transaction).
    pub fn next_nonce(&self, signer: &NodeId) -> u64 {
        self.nonces.get(signer).map_or(1, |n| n.saturating_add(1))
    }

    /// A round, if it was opened.
    pub fn round(&self, round: u64) -> Option<&Round> {
        self.rounds.get(&round)
    }

    /// All rounds, by number.
    pub fn rounds(&self) -> &BTreeMap<u64, Round> {
        &self.rounds
    }

    /// A node's balance (0 if never rewarded).
    pub fn balance(&self, node: &NodeId) -> u64 {
        self.balances.get(node).copied().unwrap_or(0)
    }

    /// The active policy's code hash, if one was deployed.
    pub fn policy(&self) -> Option<&Digest> {
        self.policies.last()
    }

    /// Every policy deployed, oldest first.
    pub fn policies(&self) -> &[Digest] {
        &self.policies
    }

    /// Data-use records, oldest first.
    pub fn data_uses(&self) -> &[DataUseRecord] {
        &self.data_uses
    }

    /// Evidence records, oldest first.
    pub fn evidence(&self) -> &[EvidenceRecord] {
        &self.evidence
    }

    fn is_known(&self, node: &NodeId) -> bool {
        self.members.contains_key(node) || self.devices.contains_key(node)
    }

    /// Whether `signer` may act for `node`: it is the node, or the member owning the device.
    fn acts_for(&self, signer: &NodeId, node: &NodeId) -> bool {
        signer == node || self.devices.get(node) == Some(signer)
    }

    /// Apply `tx` at block time `time_ms`: record it and advance the signer's nonce, or reject it
    /// and change nothing. See the module docs for the rules.
    pub fn apply(&mut self, tx: &Transaction, time_ms: u64) -> Result<(), TxRejection> {
        self.check(tx, time_ms)?;
        self.execute(tx, time_ms);
        Ok(())
    }

    /// Decide whether [`State::apply`] would accept `tx` at `time_ms`, without changing anything.
    pub fn check(&self, tx: &Transaction, time_ms: u64) -> Result<(), TxRejection> {
        self.check_with(tx, time_ms, true)
    }

    /// [`State::apply`], but trusting that `tx`'s signature was already verified for this
    /// state's chain id — by the caller, once: e.g. a mempool that checks each transaction as it
    /// enters, so building a block does not check every signature again. Never call it on a
    /// transaction whose signature nobody checked; blocks from peers go through
    /// [`crate::chain::check_block`], which checks every signature.
    pub fn apply_presigned(&mut self, tx: &Transaction, time_ms: u64) -> Result<(), TxRejection> {
        self.check_with(tx, time_ms, false)?;
        self.execute(tx, time_ms);
        Ok(())
    }

    fn check_with(&self, tx: &Transaction, time_ms: u64, verify_signature: bool) -> Result<(), TxRejection> {
        let signer = tx.signer;
        let bytes = tx.encode().len();
        if bytes > MAX_TX_BYTES {
            return Err(TxRejection::TooLarge { bytes, max: MAX_TX_BYTES });
        }
        if !self.members.contains_key(&signer) {
            return Err(TxRejection::UnknownSigner { signer });
        }
        if verify_signature && tx.verify(&self.chain_id).is_err() {
            return Err(TxRejection::BadSignature { signer });
        }
        let last = self.nonces.get(&signer).copied().unwrap_or(0);
        let expected = last.checked_add(1).ok_or(TxRejection::NoncesExhausted { signer })?;
        if tx.nonce != expected {
            return Err(TxRejection::BadNonce { signer, expected, found: tx.nonce });
        }
        self.check_body(&signer, &tx.body, time_ms)
    }

    fn check_body(&self, signer: &NodeId, body: &TxBody, time_ms: u64) -> Result<(), TxRejection> {
        let unauthorized = || TxRejection::Unauthorized { signer: *signer, action: body.kind() };
        match body {
            TxBody::RegisterMember { member, .. } => self.check_new_identity(member),
            TxBody::RegisterDevice { device, member } => {
                if member != signer {
                    return Err(unauthorized());
                }
                self.check_new_identity(device)
            }
            TxBody::DeployPolicy { .. } | TxBody::DataUse { .. } => Ok(()),
            TxBody::OpenRound { round, participants, deadline_ms, .. } => {
                let round = *round;
                if self.rounds.contains_key(&round) {
                    return Err(TxRejection::RoundExists { round });
                }
                if *deadline_ms < time_ms {
                    return Err(TxRejection::DeadlineBeforeOpen { round, deadline_ms: *deadline_ms, time_ms });
                }
                check_distinct(round, participants)?;
                match participants.iter().find(|p| !self.is_known(p)) {
                    Some(node) => Err(TxRejection::UnknownNode { node: *node }),
                    None => Ok(()),
                }
            }
            TxBody::CommitUpdate { round, node, norm_bits, .. } => {
                let r = self.open_round(*round)?;
                if !r.participants.contains(node) {
                    return Err(TxRejection::NotParticipant { round: *round, node: *node });
                }
                if *signer != r.coordinator && !self.acts_for(signer, node) {
                    return Err(unauthorized());
                }
                if r.updates.contains_key(node) {
                    return Err(TxRejection::AlreadyRecorded { round: *round, node: *node, record: "update" });
                }
                if time_ms > r.deadline_ms {
                    return Err(TxRejection::DeadlinePassed { round: *round, deadline_ms: r.deadline_ms, time_ms });
                }
                let norm = f64::from_bits(*norm_bits);
                if !(norm.is_finite() && norm >= 0.0) {
                    return Err(TxRejection::InvalidValue { field: "norm", value_bits: *norm_bits });
                }
                Ok(())
            }
            TxBody::CommitAggregate { round, participants, .. } => {
                let r = self.open_round(*round)?;
                if *signer != r.coordinator {
                    return Err(unauthorized());
                }
                check_distinct(*round, participants)?;
                match participants.iter().find(|p| !r.updates.contains_key(p)) {
                    Some(node) => Err(TxRejection::MissingUpdate { round: *round, node: *node }),
                    None => Ok(()),
                }
            }
            TxBody::Contribution { round, node, .. } => {
                let r = self.rounds.get(round).ok_or(TxRejection::UnknownRound { round: *round })?;
                if r.is_open() {
                    return Err(TxRejection::RoundOpen { round: *round });
                }
                if *signer != r.coordinator {
                    return Err(unauthorized());
                }
                if !r.participants.contains(node) {
                    return Err(TxRejection::NotParticipant { round: *round, node: *node });
                }
                if r.contributions.contains_key(node) {
                    return Err(TxRejection::AlreadyRecorded { round: *round, node: *node, record: "contribution" });
                }
                Ok(())
            }
            TxBody::Reward { node, amount } => {
                if !self.is_known(node) {
                    return Err(TxRejection::UnknownNode { node: *node });
                }
                match self.balance(node).checked_add(*amount) {
                    Some(_) => Ok(()),
                    None => Err(TxRejection::BalanceOverflow { node: *node }),
                }
            }
            TxBody::PrivacySpend { round, epsilon_bits, delta_bits } => {
                let r = self.rounds.get(round).ok_or(TxRejection::UnknownRound { round: *round })?;
                let by_participant = r.participants.iter().any(|p| self.acts_for(signer, p));
                if *signer != r.coordinator && !by_participant {
                    return Err(unauthorized());
                }
                let epsilon = f64::from_bits(*epsilon_bits);
                if !(epsilon.is_finite() && epsilon >= 0.0) {
                    return Err(TxRejection::InvalidValue { field: "epsilon", value_bits: *epsilon_bits });
                }
                let delta = f64::from_bits(*delta_bits);
                if !(0.0..=1.0).contains(&delta) {
                    return Err(TxRejection::InvalidValue { field: "delta", value_bits: *delta_bits });
                }
                Ok(())
            }
            TxBody::Evidence { node, .. } => {
                if !self.is_known(node) {
                    return Err(TxRejection::UnknownNode { node: *node });
                }
                Ok(())
            }
        }
    }

    fn check_new_identity(&self, node: &NodeId) -> Result<(), TxRejection> {
        if self.is_known(node) {
            return Err(TxRejection::AlreadyRegistered { node: *node });
        }
        if !node.is_valid_key() {
            return Err(TxRejection::InvalidKey { node: *node });
        }
        Ok(())
    }

    fn open_round(&self, round: u64) -> Result<&Round, TxRejection> {
        let r = self.rounds.get(&round).ok_or(TxRejection::UnknownRound { round })?;
        if !r.is_open() {
            return Err(TxRejection::RoundClosed { round });
        }
        Ok(r)
    }

    /// Record a transaction [`State::check_with`] accepted. Infallible by construction: every
    /// condition that could fail here was checked there.
    fn execute(&mut self, tx: &Transaction, time_ms: u64) {
        let signer = tx.signer;
        self.nonces.insert(signer, tx.nonce);
        match tx.body.clone() {
            TxBody::RegisterMember { member, name, validator } => {
                self.members.insert(member, Member { name, validator, founder: false });
            }
            TxBody::RegisterDevice { device, member } => {
                self.devices.insert(device, member);
            }
            TxBody::DeployPolicy { code_hash } => self.policies.push(code_hash),
            TxBody::OpenRound { round, task, participants, strategy, deadline_ms } => {
                let r = Round {
                    coordinator: signer,
                    task,
                    strategy,
                    participants: participants.into_iter().collect(),
                    deadline_ms,
                    opened_ms: time_ms,
                    updates: BTreeMap::new(),
                    aggregate: None,
                    contributions: BTreeMap::new(),
                    privacy: Vec::new(),
                };
                self.rounds.insert(round, r);
            }
            TxBody::CommitUpdate { round, node, update_hash, examples, norm_bits } => {
                if let Some(r) = self.rounds.get_mut(&round) {
                    let record = UpdateRecord { update_hash, examples, norm_bits, committed_by: signer };
                    r.updates.insert(node, record);
                }
            }
            TxBody::CommitAggregate { round, aggregate_hash, participants, metrics } => {
                if let Some(r) = self.rounds.get_mut(&round) {
                    r.aggregate = Some(AggregateRecord { aggregate_hash, participants, metrics });
                }
            }
            TxBody::Contribution { round, node, score } => {
                if let Some(r) = self.rounds.get_mut(&round) {
                    r.contributions.insert(node, score);
                }
            }
            TxBody::Reward { node, amount } => {
                let balance = self.balances.entry(node).or_insert(0);
                *balance = balance.saturating_add(amount);
            }
            TxBody::DataUse { dataset_id, purpose, consent_ref } => {
                self.data_uses.push(DataUseRecord { signer, dataset_id, purpose, consent_ref, time_ms });
            }
            TxBody::PrivacySpend { round, epsilon_bits, delta_bits } => {
                if let Some(r) = self.rounds.get_mut(&round) {
                    r.privacy.push(PrivacyRecord { signer, epsilon_bits, delta_bits });
                }
            }
            TxBody::Evidence { kind, node, detail_hash } => {
                self.evidence.push(EvidenceRecord { reporter: signer, kind, node, detail_hash, time_ms });
            }
        }
    }
}

fn check_distinct(round: u64, nodes: &[NodeId]) -> Result<(), TxRejection> {
    if nodes.is_empty() {
        return Err(TxRejection::NoParticipants { round });
    }
    let mut seen = BTreeSet::new();
    match nodes.iter().find(|n| !seen.insert(**n)) {
        Some(node) => Err(TxRejection::DuplicateParticipant { round, node: *node }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::Founder;
    use crate::identity::Keypair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const T0: u64 = 1_000;

    struct Fixture {
        state: State,
        chain: ChainId,
        a: Keypair,
        b: Keypair,
        outsider: Keypair,
        nonces: BTreeMap<NodeId, u64>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let mut rng = ChaCha20Rng::seed_from_u64(42);
            let (a, b, outsider) =
                (Keypair::generate(&mut rng), Keypair::generate(&mut rng), Keypair::generate(&mut rng));
            let genesis = Genesis {
                name: "state-tests".into(),
                timestamp_ms: 0,
                founders: vec![
                    Founder { id: a.node_id(), name: "a".into(), validator: true },
                    Founder { id: b.node_id(), name: "b".into(), validator: false },
                ],
                treasury: None,
            };
            let chain = genesis.chain_id();
            Fixture { state: State::from_genesis(&genesis), chain, a, b, outsider, nonces: BTreeMap::new() }
        }

        /// Sign `body` as `kp` with its next nonce (counted locally, accepted or not).
        fn tx(&mut self, kp: &Keypair, body: TxBody) -> Transaction {
            let n = self.nonces.entry(kp.node_id()).or_insert(0);
            *n += 1;
            Transaction::sign(kp, &self.chain, *n, body)
        }

        fn apply(&mut self, kp: &Keypair, body: TxBody) -> Result<(), TxRejection> {
            let tx = self.tx(kp, body);
            self.state.apply(&tx, T0)
        }

        /// Apply and, on rejection, check the state did not change.
        fn apply_checked(&mut self, kp: &Keypair, body: TxBody, time_ms: u64) -> Result<(), TxRejection> {
            let tx = self.tx(kp, body);
            let before = self.state.clone();
            let result = self.state.apply(&tx, time_ms);
            if result.is_err() {
                assert_eq!(self.state, before, "a rejection changed the state");
                assert_eq!(self.state.root(), before.root());
                // The unused nonce is still the next one.
                *self.nonces.get_mut(&tx.signer).unwrap() -= 1;
            }
            result
        }

        fn open_round(&mut self, round: u64, participants: Vec<NodeId>) {
            let a = self.a.clone();
            let body = TxBody::OpenRound {
                round,
                task: "mnist".into(),
                participants,
                strategy: "fedavg".into(),
                deadline_ms: T0 + 500,
            };
            self.apply(&a, body).unwrap();
        }
    }

    fn update(round: u64, node: NodeId, blob: &[u8]) -> TxBody {
        TxBody::CommitUpdate { round, node, update_hash: Digest::of(blob), examples: 10, norm_bits: 2.0f64.to_bits() }
    }

    fn aggregate(round: u64, participants: Vec<NodeId>) -> TxBody {
        TxBody::CommitAggregate {
            round,
            aggregate_hash: Digest::of(b"global"),
            participants,
            metrics: vec![Metric::new("accuracy", 0.91)],
        }
    }

    #[test]
    fn a_whole_round_is_recorded() {
        let mut f = Fixture::new();
        let (a, b) = (f.a.clone(), f.b.clone());
        let (ida, idb) = (a.node_id(), b.node_id());
        f.apply(&a, TxBody::DeployPolicy { code_hash: Digest::of(b"policy") }).unwrap();
        f.open_round(1, vec![ida, idb]);
        f.apply(&a, update(1, ida, b"ua")).unwrap();
        f.apply(&b, update(1, idb, b"ub")).unwrap();
        f.apply(&a, aggregate(1, vec![ida, idb])).unwrap();
        f.apply(&a, TxBody::Contribution { round: 1, node: idb, score: 600_000 }).unwrap();
        f.apply(&a, TxBody::Reward { node: idb, amount: 5 }).unwrap();
        f.apply(&a, TxBody::Reward { node: idb, amount: 7 }).unwrap();
        let spend = TxBody::PrivacySpend { round: 1, epsilon_bits: 0.5f64.to_bits(), delta_bits: 1e-5f64.to_bits() };
        f.apply(&b, spend).unwrap();
        let use_ = TxBody::DataUse { dataset_id: "mnist".into(), purpose: "round 1".into(), consent_ref: "c-1".into() };
        f.apply(&b, use_).unwrap();
        let ev = TxBody::Evidence { kind: EvidenceKind::InvalidUpdate, node: idb, detail_hash: Digest::of(b"proof") };
        f.apply(&a, ev).unwrap();

        let s = &f.state;
        let r = s.round(1).unwrap();
        assert!(!r.is_open());
        assert_eq!(r.coordinator, ida);
        assert_eq!(r.updates[&idb].update_hash, Digest::of(b"ub"));
        assert_eq!(r.aggregate.as_ref().unwrap().aggregate_hash, Digest::of(b"global"));
        assert_eq!(r.contributions[&idb], 600_000);
        assert_eq!(r.epsilon_spent(), 0.5);
        assert_eq!(s.balance(&idb), 12);
        assert_eq!(s.balance(&ida), 0);
        assert_eq!(s.policy(), Some(&Digest::of(b"policy")));
        assert_eq!(s.data_uses()[0].time_ms, T0);
        assert_eq!(s.evidence()[0].reporter, ida);
        assert_eq!(s.next_nonce(&ida), 9);
        assert_eq!(s.next_nonce(&idb), 4);
        assert_eq!(s.validators().collect::<Vec<_>>(), vec![&ida]);
    }

    /// Issue 5 acceptance: "a transaction with a reused nonce ... is rejected".
    #[test]
    fn reused_nonce_is_rejected() {
        let mut f = Fixture::new();
        let a = f.a.clone();
        let first = f.tx(&a, TxBody::Reward { node: a.node_id(), amount: 1 });
        f.state.apply(&first, T0).unwrap();
        let before = f.state.clone();
        // The identical transaction replayed, and a different one under the used nonce.
        let replay = f.state.apply(&first, T0);
        assert_eq!(replay, Err(TxRejection::BadNonce { signer: a.node_id(), expected: 2, found: 1 }));
        let other = Transaction::sign(&a, &f.chain, 1, TxBody::Reward { node: a.node_id(), amount: 9 });
        assert!(matches!(f.state.apply(&other, T0), Err(TxRejection::BadNonce { .. })));
        assert_eq!(f.state, before);
    }

    #[test]
    fn skipped_or_zero_nonce_is_rejected() {
        let f = Fixture::new();
        let a = &f.a;
        for nonce in [0, 2, u64::MAX] {
            let tx = Transaction::sign(a, &f.chain, nonce, TxBody::Reward { node: a.node_id(), amount: 1 });
            assert_eq!(
                f.state.check(&tx, T0),
                Err(TxRejection::BadNonce { signer: a.node_id(), expected: 1, found: nonce })
            );
        }
    }

    /// Issue 5 acceptance: "a transaction with ... an unknown signer is rejected".
    #[test]
    fn unknown_signer_is_rejected() {
        let mut f = Fixture::new();
        let o = f.outsider.clone();
        assert_eq!(
            f.apply_checked(&o, TxBody::Reward { node: o.node_id(), amount: 1 }, T0),
            Err(TxRejection::UnknownSigner { signer: o.node_id() })
        );
    }

    #[test]
    fn registered_member_may_sign_afterwards() {
        let mut f = Fixture::new();
        let (a, o) = (f.a.clone(), f.outsider.clone());
        let body = TxBody::RegisterMember { member: o.node_id(), name: "o".into(), validator: false };
        f.apply(&a, body.clone()).unwrap();
        assert_eq!(f.apply_checked(&a, body, T0), Err(TxRejection::AlreadyRegistered { node: o.node_id() }));
        f.apply(&o, TxBody::DeployPolicy { code_hash: Digest::ZERO }).unwrap();
        assert!(!f.state.member(&o.node_id()).unwrap().founder);
    }

    #[test]
    fn bad_signature_is_rejected() {
        let mut f = Fixture::new();
        let a = f.a.clone();
        let mut tx = f.tx(&a, TxBody::Reward { node: a.node_id(), amount: 1 });
        tx.signature.0[10] ^= 0x40;
        let before = f.state.clone();
        assert_eq!(f.state.apply(&tx, T0), Err(TxRejection::BadSignature { signer: a.node_id() }));
        // A signature for another chain is a bad signature here.
        let other = Transaction::sign(&a, &ChainId::from_name("elsewhere"), 1, tx.body.clone());
        assert_eq!(f.state.apply(&other, T0), Err(TxRejection::BadSignature { signer: a.node_id() }));
        assert_eq!(f.state, before);
    }

    #[test]
    fn update_for_a_closed_round_is_rejected() {
        let mut f = Fixture::new();
        let (a, b) = (f.a.clone(), f.b.clone());
        let (ida, idb) = (a.node_id(), b.node_id());
        f.open_round(1, vec![ida, idb]);
        f.apply(&a, update(1, ida, b"ua")).unwrap();
        f.apply(&a, aggregate(1, vec![ida])).unwrap();
        assert_eq!(f.apply_checked(&b, update(1, idb, b"late"), T0), Err(TxRejection::RoundClosed { round: 1 }));
        assert_eq!(f.apply_checked(&a, aggregate(1, vec![ida]), T0), Err(TxRejection::RoundClosed { round: 1 }));
        assert_eq!(f.apply_checked(&b, update(2, idb, b"x"), T0), Err(TxRejection::UnknownRound { round: 2 }));
    }

    #[test]
    fn round_rules_reject_with_reasons_and_leave_state_unchanged() {
        let mut f = Fixture::new();
        let (a, b, o) = (f.a.clone(), f.b.clone(), f.outsider.clone());
        let (ida, idb, ido) = (a.node_id(), b.node_id(), o.node_id());
        f.open_round(1, vec![ida]);
        let open = |round, participants: Vec<NodeId>, deadline_ms| TxBody::OpenRound {
            round,
            task: "t".into(),
            participants,
            strategy: "s".into(),
            deadline_ms,
        };
        let cases: Vec<(&Keypair, TxBody, u64, TxRejection)> = vec![
            (&a, open(1, vec![ida], T0 + 1), T0, TxRejection::RoundExists { round: 1 }),
            (&a, open(2, vec![], T0 + 1), T0, TxRejection::NoParticipants { round: 2 }),
            (&a, open(2, vec![ida, ida], T0 + 1), T0, TxRejection::DuplicateParticipant { round: 2, node: ida }),
            (&a, open(2, vec![ido], T0 + 1), T0, TxRejection::UnknownNode { node: ido }),
            (
                &a,
                open(2, vec![ida], T0 - 1),
                T0,
                TxRejection::DeadlineBeforeOpen { round: 2, deadline_ms: T0 - 1, time_ms: T0 },
            ),
            (&b, update(1, idb, b"u"), T0, TxRejection::NotParticipant { round: 1, node: idb }),
            (&b, update(1, ida, b"u"), T0, TxRejection::Unauthorized { signer: idb, action: "commit_update" }),
            (
                &a,
                update(1, ida, b"u"),
                T0 + 501,
                TxRejection::DeadlinePassed { round: 1, deadline_ms: T0 + 500, time_ms: T0 + 501 },
            ),
            (
                &a,
                TxBody::CommitUpdate {
                    round: 1,
                    node: ida,
                    update_hash: Digest::ZERO,
                    examples: 1,
                    norm_bits: f64::NAN.to_bits(),
                },
                T0,
                TxRejection::InvalidValue { field: "norm", value_bits: f64::NAN.to_bits() },
            ),
            (&a, aggregate(1, vec![ida]), T0, TxRejection::MissingUpdate { round: 1, node: ida }),
            (&b, aggregate(1, vec![ida]), T0, TxRejection::Unauthorized { signer: idb, action: "commit_aggregate" }),
            (&a, TxBody::Contribution { round: 1, node: ida, score: 1 }, T0, TxRejection::RoundOpen { round: 1 }),
            (&a, TxBody::Reward { node: ido, amount: 1 }, T0, TxRejection::UnknownNode { node: ido }),
            (
                &a,
                TxBody::PrivacySpend { round: 1, epsilon_bits: (-1.0f64).to_bits(), delta_bits: 0 },
                T0,
                TxRejection::InvalidValue { field: "epsilon", value_bits: (-1.0f64).to_bits() },
            ),
            (
                &a,
                TxBody::PrivacySpend { round: 1, epsilon_bits: 0, delta_bits: 2.0f64.to_bits() },
                T0,
                TxRejection::InvalidValue { field: "delta", value_bits: 2.0f64.to_bits() },
            ),
            (
                &b,
                TxBody::PrivacySpend { round: 1, epsilon_bits: 0, delta_bits: 0 },
                T0,
                TxRejection::Unauthorized { signer: idb, action: "privacy_spend" },
            ),
            (&a, TxBody::RegisterDevice { device: ido, member: idb }, T0, {
                TxRejection::Unauthorized { signer: ida, action: "register_device" }
            }),
            (
                &a,
                TxBody::RegisterMember { member: NodeId([0xff; 32]), name: "x".into(), validator: false },
                T0,
                TxRejection::InvalidKey { node: NodeId([0xff; 32]) },
            ),
        ];
        for (i, (kp, body, time, want)) in cases.into_iter().enumerate() {
            let got = f.apply_checked(kp, body, time);
            assert_eq!(got, Err(want), "case {i}");
        }
    }

    #[test]
    fn duplicate_update_and_contribution_are_rejected() {
        let mut f = Fixture::new();
        let a = f.a.clone();
        let ida = a.node_id();
        f.open_round(1, vec![ida]);
        f.apply(&a, update(1, ida, b"u")).unwrap();
        assert_eq!(
            f.apply_checked(&a, update(1, ida, b"other"), T0),
            Err(TxRejection::AlreadyRecorded { round: 1, node: ida, record: "update" })
        );
        f.apply(&a, aggregate(1, vec![ida])).unwrap();
        f.apply(&a, TxBody::Contribution { round: 1, node: ida, score: 1 }).unwrap();
        assert_eq!(
            f.apply_checked(&a, TxBody::Contribution { round: 1, node: ida, score: 2 }, T0),
            Err(TxRejection::AlreadyRecorded { round: 1, node: ida, record: "contribution" })
        );
    }

    #[test]
    fn a_member_commits_for_its_device_but_a_device_cannot_sign() {
        let mut f = Fixture::new();
        let (b, dev) = (f.b.clone(), f.outsider.clone());
        let (idb, idd) = (b.node_id(), dev.node_id());
        f.apply(&b, TxBody::RegisterDevice { device: idd, member: idb }).unwrap();
        assert_eq!(f.state.device_owner(&idd), Some(&idb));
        f.open_round(1, vec![idd]);
        assert_eq!(f.apply_checked(&dev, update(1, idd, b"u"), T0), Err(TxRejection::UnknownSigner { signer: idd }));
        f.apply(&b, update(1, idd, b"u")).unwrap();
        assert_eq!(f.state.round(1).unwrap().updates[&idd].committed_by, idb);
    }

    #[test]
    fn reward_overflow_is_rejected() {
        let mut f = Fixture::new();
        let a = f.a.clone();
        f.apply(&a, TxBody::Reward { node: a.node_id(), amount: u64::MAX }).unwrap();
        assert_eq!(
            f.apply_checked(&a, TxBody::Reward { node: a.node_id(), amount: 1 }, T0),
            Err(TxRejection::BalanceOverflow { node: a.node_id() })
        );
    }

    #[test]
    fn oversized_transaction_is_rejected() {
        let mut f = Fixture::new();
        let a = f.a.clone();
        let body =
            TxBody::DataUse { dataset_id: "d".repeat(MAX_TX_BYTES), purpose: String::new(), consent_ref: "".into() };
        assert!(matches!(f.apply_checked(&a, body, T0), Err(TxRejection::TooLarge { .. })));
    }

    #[test]
    fn root_is_a_function_of_the_accepted_history() {
        let run = |rewards: &[(u64, u64)]| {
            let mut f = Fixture::new();
            let a = f.a.clone();
            let ids = [f.a.node_id(), f.b.node_id()];
            for &(who, amount) in rewards {
                f.apply(&a, TxBody::Reward { node: ids[who as usize], amount }).unwrap();
            }
            f.state.root()
        };
        assert_eq!(run(&[(0, 1), (1, 2)]), run(&[(0, 1), (1, 2)]));
        assert_ne!(run(&[(0, 1), (1, 2)]), run(&[(0, 1), (1, 3)]));
        assert_ne!(run(&[]), run(&[(0, 1)]));
    }
}
