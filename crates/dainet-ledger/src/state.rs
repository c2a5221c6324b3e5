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
//! 2. its signer is a member (a founder from the genesis, or admitted by a majority's
//!    `RegisterMember`).
//!    Devices are identities, not signers: their member signs for them;
//! 3. its signature verifies for this chain id;
//! 4. its nonce is exactly one more than the signer's last accepted nonce (the first is 1), so a
//!    nonce can be neither reused nor skipped, and a member's transactions apply in the order it
//!    numbered them.
//!
//! Then, by body — who may sign it (authorization) and what else must hold. The same rules as
//! one table, with each refusal, are in the crate README ("Who may sign what").
//! - `RegisterMember`, `RemoveMember`, `DeployPolicy` (**governance**): any member signs, but one
//!   signature is only an *approval*. The body is a proposal, identified by [`proposal_id`] (the
//!   hash of the body), that the state keeps pending with the set of members that signed it; it
//!   takes effect in the block where its approvals reach a majority of the current members,
//!   `⌊members / 2⌋ + 1` ([`State::approvals_needed`]; a one-member chain needs its one member).
//!   A member approves a proposal once. Each approval must make sense on the current state:
//!   `RegisterMember` names a usable key, not yet a member or device; `RemoveMember` names a
//!   member and never the last validator; `DeployPolicy` names a code hash other than the active
//!   one. When a proposal takes effect, the removed member's approvals stop counting, and every
//!   pending proposal is looked at again in id order: one that no longer makes sense is dropped,
//!   one that now has a majority (a removal lowers the majority) takes effect. A removed member
//!   takes its devices with it; its nonce stays recorded, so its old transactions cannot be
//!   replayed should it be admitted again. Why approvals by signing the same body: it needs no
//!   new transaction kind or vote format, every approval is an ordinary signed, nonce-protected
//!   transaction, and the pending set is part of the state, so its root commits to it.
//! - `RegisterDevice`: `member` is the signer; the device id is a usable key, not yet a member or
//!   device.
//! - `OpenRound`: any member. The round number is new; participants are non-empty, distinct,
//!   each a member or device; `deadline_ms` is not before the block time. The signer becomes the
//!   coordinator.
//! - `CommitUpdate`: the coordinator, the node itself, or the member that owns the device. The
//!   round is open; `node` is a participant with no update yet this round; the block time is not
//!   past the deadline; the norm is finite and non-negative.
//! - `CommitAggregate`: the coordinator of an open round; participants non-empty, distinct, each
//!   with a committed update. Closes the round.
//! - `Contribution`: the coordinator of a closed round, for a participant, once.
//! - `Reward`: only the treasury the genesis names ([`Genesis::treasury`]); a genesis without one
//!   has no rewards. To a member or device; the balance must not overflow.
//! - `DataUse`: any member, recorded as given. The state only counts them: the records are the
//!   transactions, in their blocks. (A copy in the state made every block's state clone and root
//!   grow with the log: at 40,000 records, 13 ms and 7 ms per block, against microseconds without
//!   — the ledger benchmark, which signs data-use records, could not keep up.)
//! - `PrivacySpend`: the coordinator of an existing round or a participant (or its member); ε
//!   finite and ≥ 0, δ in \[0, 1\].
//! - `Evidence`: any member, with a proof the state machine checks: two transactions the accused
//!   (a member) signed for this chain with the same nonce and different bodies — both decode,
//!   both are signed by the accused, both signatures verify. One record per accused and nonce.
//!   A double sign proves the key signed two histories for one slot, not why: a member that
//!   signs a new body under the nonce of a transaction the ledger refused has made one too (it
//!   has no other way past the refusal). So evidence is a record, not a penalty; a client that
//!   re-sends a nonce after a restart signs the same body again, which is no double sign.
//!
//! The state is encoded whole for its root, O(state) per block; a Merkleized state with proofs
//! for light clients is future work.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::codec::CodecError;
use crate::genesis::Genesis;
use crate::hash::{Digest, Domain, TxHash};
use crate::identity::NodeId;
use crate::tx::{ChainId, EvidenceProof, Metric, Transaction, TxBody, MAX_TX_BYTES};

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
    /// A `Reward` on a chain whose genesis names no treasury: nobody may mint.
    #[error(
        "not authorized: signer={signer} action=reward reason=the genesis names no treasury, so this chain has no \
         rewards (a genesis made with `dainet ledger genesis --treasury NODEID` has one)"
    )]
    NoTreasury {
        /// The signer.
        signer: NodeId,
    },
    /// A `Reward` signed by a member other than the treasury.
    #[error("not authorized: signer={signer} action=reward reason=only the treasury {treasury} named in the genesis signs rewards")]
    NotTreasury {
        /// The signer.
        signer: NodeId,
        /// The treasury.
        treasury: NodeId,
    },
    /// The signer already approved this proposal; a member's approval counts once.
    #[error(
        "already approved: signer={signer} proposal={proposal} reason=a member approves a proposal once; it \
         takes effect when a majority of the members has"
    )]
    AlreadyApproved {
        /// The signer.
        signer: NodeId,
        /// The proposal's id ([`proposal_id`]).
        proposal: Digest,
    },
    /// A `RemoveMember` (or the accused of `Evidence`) names a node that is not a member.
    #[error("not a member: node={node}")]
    NotMember {
        /// The node.
        node: NodeId,
    },
    /// A `RemoveMember` of the only validator: no block could be finalized after it.
    #[error("last validator: member={member} reason=removing it would leave no validator; admit another first")]
    LastValidator {
        /// The member.
        member: NodeId,
    },
    /// A `DeployPolicy` of the policy that is already active.
    #[error("policy already active: code_hash={code_hash}")]
    PolicyActive {
        /// The policy's code hash.
        code_hash: Digest,
    },
    /// An `Evidence` whose proof does not hold.
    #[error("invalid evidence: node={node} reason={reason}")]
    InvalidEvidence {
        /// The accused.
        node: NodeId,
        /// What is wrong with the proof (boxed: it is rare and large, and every other rejection is
        /// small).
        reason: Box<ProofFault>,
    },
    /// Evidence of this double sign is already recorded.
    #[error("evidence already recorded: node={node} nonce={nonce}")]
    EvidenceRecorded {
        /// The accused.
        node: NodeId,
        /// The nonce it signed twice.
        nonce: u64,
    },
}

/// Why an [`EvidenceProof`] does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofFault {
    /// One of the two transactions does not decode.
    #[error("the {which} transaction does not decode: {source}")]
    Undecodable {
        /// `"first"` or `"second"`.
        which: &'static str,
        /// What the decoder said.
        source: CodecError,
    },
    /// One of the two transactions is signed by someone other than the accused.
    #[error("the {which} transaction is signed by {signer}, not by the accused")]
    WrongSigner {
        /// `"first"` or `"second"`.
        which: &'static str,
        /// Its signer.
        signer: NodeId,
    },
    /// One of the two signatures does not verify for this chain.
    #[error("the {which} transaction's signature does not verify for this chain")]
    BadSignature {
        /// `"first"` or `"second"`.
        which: &'static str,
    },
    /// The two transactions have different nonces, so they do not compete for one slot.
    #[error("the transactions have different nonces (first={first} second={second}): no conflict")]
    DifferentNonces {
        /// The first's nonce.
        first: u64,
        /// The second's nonce.
        second: u64,
    },
    /// The two transactions sign the same body with the same nonce: one statement, no conflict.
    #[error("the transactions sign the same body with nonce {nonce}: no conflict")]
    SameBody {
        /// The nonce.
        nonce: u64,
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

/// A piece of misbehaviour evidence whose proof the ledger checked: a double sign.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Who reported it.
    pub reporter: NodeId,
    /// The accused.
    pub node: NodeId,
    /// The nonce it signed two transactions with.
    pub nonce: u64,
    /// The hashes of the two transactions, in the order the proof gave them (the transactions
    /// themselves are in the evidence transaction, in its block).
    pub transactions: [TxHash; 2],
    /// The block time.
    pub time_ms: u64,
}

/// A governance change (`RegisterMember`, `RemoveMember`, `DeployPolicy`) waiting for a majority
/// of the members to sign it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Proposal {
    /// The body every approver signs; what happens when it takes effect.
    pub body: TxBody,
    /// The current members that signed it so far.
    pub approvals: BTreeSet<NodeId>,
    /// The block time of its first approval.
    pub proposed_ms: u64,
}

/// The id of the proposal `body` is an approval of: blake3 in [`Domain::Proposal`] over its
/// postcard encoding. Members that sign equal bodies approve the same proposal.
pub fn proposal_id(body: &TxBody) -> Digest {
    Domain::Proposal.hash(&codec::to_bytes(body))
}

/// The ledger state: registry, nonces, rounds, balances and records.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct State {
    chain_id: ChainId,
    treasury: Option<NodeId>,
    members: BTreeMap<NodeId, Member>,
    devices: BTreeMap<NodeId, NodeId>,
    nonces: BTreeMap<NodeId, u64>,
    rounds: BTreeMap<u64, Round>,
    balances: BTreeMap<NodeId, u64>,
    policies: Vec<Digest>,
    /// How many `DataUse` records the chain holds; the records are the transactions themselves.
    data_uses: u64,
    proposals: BTreeMap<Digest, Proposal>,
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
            treasury: genesis.treasury,
            members,
            devices: BTreeMap::new(),
            nonces: BTreeMap::new(),
            rounds: BTreeMap::new(),
            balances: BTreeMap::new(),
            policies: Vec::new(),
            data_uses: 0,
            proposals: BTreeMap::new(),
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

    /// How many data-use records the chain holds. The records themselves are the `DataUse`
    /// transactions in the blocks (signer, body, block time); the state does not copy them.
    pub fn data_use_count(&self) -> u64 {
        self.data_uses
    }

    /// Evidence records, oldest first.
    pub fn evidence(&self) -> &[EvidenceRecord] {
        &self.evidence
    }

    /// The key that alone may sign `Reward`, from the genesis; `None`: no rewards.
    pub fn treasury(&self) -> Option<&NodeId> {
        self.treasury.as_ref()
    }

    /// Governance proposals waiting for approvals, by [`proposal_id`].
    pub fn proposals(&self) -> &BTreeMap<Digest, Proposal> {
        &self.proposals
    }

    /// How many members' approvals a proposal needs to take effect: a majority of the current
    /// members, `⌊members / 2⌋ + 1`.
    pub fn approvals_needed(&self) -> usize {
        self.members.len() / 2 + 1
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
            TxBody::RegisterMember { .. } | TxBody::RemoveMember { .. } | TxBody::DeployPolicy { .. } => {
                self.check_proposal(body)?;
                let proposal = proposal_id(body);
                if self.proposals.get(&proposal).is_some_and(|p| p.approvals.contains(signer)) {
                    return Err(TxRejection::AlreadyApproved { signer: *signer, proposal });
                }
                Ok(())
            }
            TxBody::RegisterDevice { device, member } => {
                if member != signer {
                    return Err(unauthorized());
                }
                self.check_new_identity(device)
            }
            TxBody::DataUse { .. } => Ok(()),
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
                match self.treasury {
                    None => return Err(TxRejection::NoTreasury { signer: *signer }),
                    Some(treasury) if treasury != *signer => {
                        return Err(TxRejection::NotTreasury { signer: *signer, treasury })
                    }
                    Some(_) => {}
                }
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
            TxBody::Evidence { node, proof } => self.check_evidence(node, proof),
        }
    }

    /// Whether the governance change `body` makes sense on this state (see the module docs).
    fn check_proposal(&self, body: &TxBody) -> Result<(), TxRejection> {
        match body {
            TxBody::RegisterMember { member, .. } => self.check_new_identity(member),
            TxBody::RemoveMember { member } => {
                let m = self.members.get(member).ok_or(TxRejection::NotMember { node: *member })?;
                if m.validator && self.validators().all(|v| v == member) {
                    return Err(TxRejection::LastValidator { member: *member });
                }
                Ok(())
            }
            TxBody::DeployPolicy { code_hash } if self.policy() == Some(code_hash) => {
                Err(TxRejection::PolicyActive { code_hash: *code_hash })
            }
            _ => Ok(()),
        }
    }

    /// Check that `proof` shows member `node` signing two histories, and that it is not recorded
    /// yet.
    fn check_evidence(&self, node: &NodeId, proof: &EvidenceProof) -> Result<(), TxRejection> {
        if !self.members.contains_key(node) {
            return Err(TxRejection::NotMember { node: *node });
        }
        let invalid = |reason| TxRejection::InvalidEvidence { node: *node, reason: Box::new(reason) };
        let EvidenceProof::DoubleSign { first, second } = proof;
        let signed = |which, bytes: &[u8]| -> Result<Transaction, TxRejection> {
            let tx = Transaction::decode(bytes).map_err(|source| invalid(ProofFault::Undecodable { which, source }))?;
            if tx.signer != *node {
                return Err(invalid(ProofFault::WrongSigner { which, signer: tx.signer }));
            }
            if tx.verify(&self.chain_id).is_err() {
                return Err(invalid(ProofFault::BadSignature { which }));
            }
            Ok(tx)
        };
        let (first, second) = (signed("first", first)?, signed("second", second)?);
        if first.nonce != second.nonce {
            return Err(invalid(ProofFault::DifferentNonces { first: first.nonce, second: second.nonce }));
        }
        let nonce = first.nonce;
        if first.body == second.body {
            return Err(invalid(ProofFault::SameBody { nonce }));
        }
        if self.evidence.iter().any(|e| e.node == *node && e.nonce == nonce) {
            return Err(TxRejection::EvidenceRecorded { node: *node, nonce });
        }
        Ok(())
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
            body @ (TxBody::RegisterMember { .. } | TxBody::RemoveMember { .. } | TxBody::DeployPolicy { .. }) => {
                self.approve(signer, body, time_ms);
            }
            TxBody::RegisterDevice { device, member } => {
                self.devices.insert(device, member);
            }
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
            TxBody::DataUse { .. } => self.data_uses = self.data_uses.saturating_add(1),
            TxBody::PrivacySpend { round, epsilon_bits, delta_bits } => {
                if let Some(r) = self.rounds.get_mut(&round) {
                    r.privacy.push(PrivacyRecord { signer, epsilon_bits, delta_bits });
                }
            }
            TxBody::Evidence { node, proof: EvidenceProof::DoubleSign { first, second } } => {
                // The proof was checked just before: both decode, to two transactions with one nonce.
                if let (Ok(first), Ok(second)) = (Transaction::decode(&first), Transaction::decode(&second)) {
                    let transactions = [first.hash(), second.hash()];
                    self.evidence.push(EvidenceRecord {
                        reporter: signer,
                        node,
                        nonce: first.nonce,
                        transactions,
                        time_ms,
                    });
                }
            }
        }
    }

    /// Record `signer`'s approval of the governance change `body` (already checked); if that makes
    /// a majority, the change takes effect and the pending proposals are settled.
    fn approve(&mut self, signer: NodeId, body: TxBody, time_ms: u64) {
        let id = proposal_id(&body);
        let proposal = self.proposals.entry(id).or_insert_with(|| Proposal {
            body,
            approvals: BTreeSet::new(),
            proposed_ms: time_ms,
        });
        proposal.approvals.insert(signer);
        if proposal.approvals.len() >= self.approvals_needed() {
            if let Some(proposal) = self.proposals.remove(&id) {
                self.enact(proposal.body);
                self.settle();
            }
        }
    }

    /// Make the governance change `body` take effect (it was checked to make sense).
    fn enact(&mut self, body: TxBody) {
        match body {
            TxBody::RegisterMember { member, name, validator } => {
                self.members.insert(member, Member { name, validator, founder: false });
            }
            TxBody::RemoveMember { member } => {
                self.members.remove(&member);
                self.devices.retain(|_, owner| *owner != member);
                for proposal in self.proposals.values_mut() {
                    proposal.approvals.remove(&member);
                }
            }
            TxBody::DeployPolicy { code_hash } => self.policies.push(code_hash),
            _ => {}
        }
    }

    /// After a change took effect, look at every pending proposal again, in id order: drop those
    /// that no longer make sense or have no approval left, enact one that now has a majority,
    /// and repeat until neither happens. Ends: every round removes a proposal or stops.
    fn settle(&mut self) {
        loop {
            let stale: Vec<Digest> = self
                .proposals
                .iter()
                .filter(|(_, p)| p.approvals.is_empty() || self.check_proposal(&p.body).is_err())
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                self.proposals.remove(&id);
            }
            let needed = self.approvals_needed();
            let Some(ready) = self.proposals.iter().find(|(_, p)| p.approvals.len() >= needed).map(|(id, _)| *id)
            else {
                return;
            };
            if let Some(proposal) = self.proposals.remove(&ready) {
                self.enact(proposal.body);
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
        /// A founder, the only validator, and the treasury (unless made without one).
        a: Keypair,
        /// A founder that does not validate.
        b: Keypair,
        /// Founders after `a` and `b` (non-validating), as asked for.
        more: Vec<Keypair>,
        outsider: Keypair,
        nonces: BTreeMap<NodeId, u64>,
    }

    impl Fixture {
        /// Founders `a` (validator, treasury) and `b`.
        fn new() -> Fixture {
            Fixture::with(0, true)
        }

        /// Founders `a`, `b` and `more` others; `a` is the treasury if `treasury`.
        fn with(more: usize, treasury: bool) -> Fixture {
            let mut rng = ChaCha20Rng::seed_from_u64(42);
            let (a, b, outsider) =
                (Keypair::generate(&mut rng), Keypair::generate(&mut rng), Keypair::generate(&mut rng));
            let more: Vec<Keypair> = (0..more).map(|_| Keypair::generate(&mut rng)).collect();
            let mut founders = vec![
                Founder { id: a.node_id(), name: "a".into(), validator: true },
                Founder { id: b.node_id(), name: "b".into(), validator: false },
            ];
            founders.extend(more.iter().enumerate().map(|(i, k)| Founder {
                id: k.node_id(),
                name: format!("m{i}"),
                validator: false,
            }));
            let genesis = Genesis {
                name: "state-tests".into(),
                timestamp_ms: 0,
                founders,
                treasury: treasury.then(|| a.node_id()),
            };
            let chain = genesis.chain_id();
            Fixture { state: State::from_genesis(&genesis), chain, a, b, more, outsider, nonces: BTreeMap::new() }
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

    fn data_use(purpose: &str) -> TxBody {
        TxBody::DataUse { dataset_id: "d".into(), purpose: purpose.into(), consent_ref: "c".into() }
    }

    /// Two different transactions `kp` signs with `nonce`, outside the fixture's nonce count.
    fn double_sign(chain: &ChainId, kp: &Keypair, nonce: u64) -> (Transaction, Transaction) {
        (Transaction::sign(kp, chain, nonce, data_use("one")), Transaction::sign(kp, chain, nonce, data_use("two")))
    }

    /// Evidence that `kp` signed two histories at `nonce`.
    fn double_sign_evidence(chain: &ChainId, kp: &Keypair, nonce: u64) -> TxBody {
        let (first, second) = double_sign(chain, kp, nonce);
        TxBody::Evidence { node: kp.node_id(), proof: EvidenceProof::double_sign(&first, &second) }
    }

    fn register(member: NodeId, name: &str) -> TxBody {
        TxBody::RegisterMember { member, name: name.into(), validator: false }
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
        f.apply(&b, TxBody::DeployPolicy { code_hash: Digest::of(b"policy") }).unwrap();
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
        f.apply(&a, double_sign_evidence(&f.chain, &b, 99)).unwrap();

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
        assert_eq!(s.data_use_count(), 1);
        assert_eq!((s.evidence()[0].reporter, s.evidence()[0].node, s.evidence()[0].nonce), (ida, idb, 99));
        assert_eq!(s.next_nonce(&ida), 9);
        assert_eq!(s.next_nonce(&idb), 5);
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
        let (a, b, o) = (f.a.clone(), f.b.clone(), f.outsider.clone());
        let body = TxBody::RegisterMember { member: o.node_id(), name: "o".into(), validator: false };
        f.apply(&a, body.clone()).unwrap();
        f.apply(&b, body.clone()).unwrap();
        assert_eq!(f.apply_checked(&a, body, T0), Err(TxRejection::AlreadyRegistered { node: o.node_id() }));
        f.apply(&o, TxBody::DataUse { dataset_id: "d".into(), purpose: "p".into(), consent_ref: "c".into() }).unwrap();
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

    // ---------------------------------------------------------------------------------------
    // Authorization (issue 12, item 4): who may sign each body.

    /// "A member signing `Reward` to itself ... is refused with a reason."
    #[test]
    fn a_reward_not_signed_by_the_treasury_is_refused() {
        let mut f = Fixture::new();
        let (a, b) = (f.a.clone(), f.b.clone());
        let (ida, idb) = (a.node_id(), b.node_id());
        let got = f.apply_checked(&b, TxBody::Reward { node: idb, amount: 1_000_000 }, T0);
        assert_eq!(got, Err(TxRejection::NotTreasury { signer: idb, treasury: ida }));
        let message = got.unwrap_err().to_string();
        assert!(message.contains("only the treasury") && message.contains(&ida.to_string()), "{message}");
        assert_eq!(f.state.balance(&idb), 0);
        // The treasury's reward, to anyone, is accepted.
        f.apply_checked(&a, TxBody::Reward { node: idb, amount: 5 }, T0).unwrap();
        f.apply_checked(&a, TxBody::Reward { node: ida, amount: 2 }, T0).unwrap();
        assert_eq!((f.state.balance(&idb), f.state.balance(&ida)), (5, 2));
        assert_eq!(f.state.treasury(), Some(&ida));
    }

    #[test]
    fn a_chain_without_a_treasury_has_no_rewards() {
        let mut f = Fixture::with(0, false);
        let a = f.a.clone();
        let got = f.apply_checked(&a, TxBody::Reward { node: a.node_id(), amount: 1 }, T0);
        assert_eq!(got, Err(TxRejection::NoTreasury { signer: a.node_id() }));
        let message = got.unwrap_err().to_string();
        assert!(message.contains("names no treasury") && message.contains("--treasury"), "{message}");
    }

    /// "Registering a member alone is refused": one member's signature is an approval, not an
    /// admission; the admission needs a majority.
    #[test]
    fn a_lone_registration_is_only_an_approval_until_a_majority_signs() {
        let mut f = Fixture::new();
        let (a, b, o) = (f.a.clone(), f.b.clone(), f.outsider.clone());
        let ido = o.node_id();
        let body = register(ido, "o");
        let id = proposal_id(&body);
        assert_eq!(f.state.approvals_needed(), 2, "two members: both");
        let root_before = f.state.root();
        f.apply_checked(&a, body.clone(), T0).unwrap();
        assert!(f.state.member(&ido).is_none(), "one approval of two admitted the member");
        let pending = &f.state.proposals()[&id];
        assert_eq!(pending.approvals, BTreeSet::from([a.node_id()]));
        assert_eq!((&pending.body, pending.proposed_ms), (&body, T0));
        assert_ne!(f.state.root(), root_before, "the state root must commit to the pending approval");
        // The proposed member cannot sign yet, and its proposer cannot approve twice.
        assert_eq!(f.apply_checked(&o, data_use("x"), T0), Err(TxRejection::UnknownSigner { signer: ido }));
        let got = f.apply_checked(&a, body.clone(), T0);
        assert_eq!(got, Err(TxRejection::AlreadyApproved { signer: a.node_id(), proposal: id }));
        assert!(got.unwrap_err().to_string().contains("approves a proposal once"));

        // The second member's approval is the majority: it takes effect in that transaction.
        f.apply_checked(&b, body.clone(), T0 + 5).unwrap();
        let member = f.state.member(&ido).expect("admitted by the majority");
        assert!(!member.founder && !member.validator);
        assert!(f.state.proposals().is_empty(), "an enacted proposal is no longer pending");
        f.apply_checked(&o, data_use("x"), T0).unwrap();
        // Approving it again no longer makes sense.
        assert_eq!(f.apply_checked(&a, body, T0), Err(TxRejection::AlreadyRegistered { node: ido }));
    }

    #[test]
    fn a_majority_is_half_the_members_plus_one() {
        for (more, needed) in [(0, 2), (1, 2), (2, 3), (3, 3), (4, 4)] {
            let f = Fixture::with(more, true);
            assert_eq!(f.state.approvals_needed(), needed, "members={}", 2 + more);
        }
        // Three members: two approvals admit; the third is refused as no longer making sense.
        let mut f = Fixture::with(1, true);
        let (a, b, c, o) = (f.a.clone(), f.b.clone(), f.more[0].clone(), f.outsider.clone());
        let body = register(o.node_id(), "o");
        f.apply_checked(&c, body.clone(), T0).unwrap();
        assert!(f.state.member(&o.node_id()).is_none());
        f.apply_checked(&b, body.clone(), T0).unwrap();
        assert!(f.state.member(&o.node_id()).is_some());
        assert_eq!(f.apply_checked(&a, body, T0), Err(TxRejection::AlreadyRegistered { node: o.node_id() }));
        assert_eq!(f.state.approvals_needed(), 3, "four members now");
    }

    #[test]
    fn a_one_member_chain_governs_itself() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (solo, other) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
        let genesis = Genesis {
            name: "solo".into(),
            timestamp_ms: 0,
            founders: vec![Founder { id: solo.node_id(), name: "solo".into(), validator: true }],
            treasury: None,
        };
        let mut state = State::from_genesis(&genesis);
        assert_eq!(state.approvals_needed(), 1);
        let tx = Transaction::sign(&solo, &genesis.chain_id(), 1, register(other.node_id(), "other"));
        state.apply(&tx, T0).unwrap();
        assert!(state.member(&other.node_id()).is_some(), "a lone member is its own majority");
        let deploy = Transaction::sign(&solo, &genesis.chain_id(), 2, TxBody::DeployPolicy { code_hash: Digest::ZERO });
        state.apply(&deploy, T0).unwrap();
        assert_eq!(state.policy(), None, "two members now: the policy waits for the second");
    }

    #[test]
    fn a_policy_takes_effect_with_a_majority_and_not_twice() {
        let mut f = Fixture::new();
        let (a, b) = (f.a.clone(), f.b.clone());
        let deploy = |name: &[u8]| TxBody::DeployPolicy { code_hash: Digest::of(name) };
        f.apply_checked(&b, deploy(b"p1"), T0).unwrap();
        assert_eq!(f.state.policy(), None);
        f.apply_checked(&a, deploy(b"p1"), T0).unwrap();
        assert_eq!(f.state.policy(), Some(&Digest::of(b"p1")));
        assert_eq!(
            f.apply_checked(&a, deploy(b"p1"), T0),
            Err(TxRejection::PolicyActive { code_hash: Digest::of(b"p1") })
        );
        // Another policy, then back to the first: each needs its majority.
        for policy in [b"p2", b"p1"] {
            f.apply_checked(&a, deploy(policy), T0).unwrap();
            f.apply_checked(&b, deploy(policy), T0).unwrap();
        }
        assert_eq!(f.state.policies(), &[Digest::of(b"p1"), Digest::of(b"p2"), Digest::of(b"p1")]);
    }

    #[test]
    fn removal_needs_a_majority_keeps_a_validator_and_takes_the_devices() {
        let mut f = Fixture::with(1, true);
        let (a, b, c, dev) = (f.a.clone(), f.b.clone(), f.more[0].clone(), f.outsider.clone());
        let (ida, idb, idd) = (a.node_id(), b.node_id(), dev.node_id());
        // The only validator cannot be removed, whoever asks.
        assert_eq!(
            f.apply_checked(&b, TxBody::RemoveMember { member: ida }, T0),
            Err(TxRejection::LastValidator { member: ida })
        );
        assert_eq!(
            f.apply_checked(&b, TxBody::RemoveMember { member: idd }, T0),
            Err(TxRejection::NotMember { node: idd })
        );
        f.apply(&b, TxBody::RegisterDevice { device: idd, member: idb }).unwrap();
        f.apply(&b, data_use("before")).unwrap();
        let remove_b = TxBody::RemoveMember { member: idb };
        f.apply_checked(&a, remove_b.clone(), T0).unwrap();
        assert!(f.state.member(&idb).is_some(), "one approval of three removed a member");
        f.apply_checked(&c, remove_b.clone(), T0).unwrap();
        assert!(f.state.member(&idb).is_none());
        assert_eq!(f.state.device_owner(&idd), None, "its device left with it");
        assert_eq!(f.apply_checked(&b, data_use("after"), T0), Err(TxRejection::UnknownSigner { signer: idb }));
        // Its nonce stays recorded: admitted again, it continues where it stopped, so its old
        // transactions cannot be replayed.
        assert_eq!(f.state.next_nonce(&idb), 3);
        f.apply_checked(&a, register(idb, "b again"), T0).unwrap();
        f.apply_checked(&c, register(idb, "b again"), T0).unwrap();
        let old = Transaction::sign(&b, &f.chain, 2, data_use("before"));
        assert!(matches!(f.state.check(&old, T0), Err(TxRejection::BadNonce { expected: 3, .. })));
    }

    #[test]
    fn a_removal_settles_the_pending_proposals() {
        // Four members a, b, c, d: a majority is 3.
        let mut f = Fixture::with(2, true);
        let (a, b, c, d) = (f.a.clone(), f.b.clone(), f.more[0].clone(), f.more[1].clone());
        let (p1, p2) = (TxBody::DeployPolicy { code_hash: Digest::of(b"p1") }, Digest::of(b"p2"));
        let p2 = TxBody::DeployPolicy { code_hash: p2 };
        // p1 has a and b (2 of 3); p2 has only d, who is about to leave.
        f.apply(&a, p1.clone()).unwrap();
        f.apply(&b, p1.clone()).unwrap();
        f.apply(&d, p2.clone()).unwrap();
        // Two competing admissions of one key: the first to a majority wins, the other is dropped.
        let o = f.outsider.node_id();
        f.apply(&a, register(o, "first name")).unwrap();
        f.apply(&b, register(o, "second name")).unwrap();
        assert_eq!(f.state.proposals().len(), 4);

        let remove_d = TxBody::RemoveMember { member: d.node_id() };
        for kp in [&a, &b, &c] {
            f.apply(kp, remove_d.clone()).unwrap();
        }
        // Three members now, a majority is 2: p1 has it and took effect in the same transaction;
        // p2 lost its only approval and is gone.
        assert_eq!(f.state.approvals_needed(), 2);
        assert_eq!(f.state.policy(), Some(&Digest::of(b"p1")));
        assert!(!f.state.proposals().contains_key(&proposal_id(&p2)));
        assert_eq!(f.state.proposals().len(), 2, "the two admissions wait");

        f.apply(&c, register(o, "first name")).unwrap();
        assert_eq!(f.state.member(&o).map(|m| m.name.as_str()), Some("first name"));
        assert!(f.state.proposals().is_empty(), "the competing admission no longer makes sense");
        assert_eq!(
            f.apply_checked(&c, register(o, "second name"), T0),
            Err(TxRejection::AlreadyRegistered { node: o })
        );
    }

    /// "Submitting evidence without a valid proof is refused with a reason."
    #[test]
    fn evidence_without_a_valid_proof_is_refused() {
        let mut f = Fixture::new();
        let (a, b, o) = (f.a.clone(), f.b.clone(), f.outsider.clone());
        let (idb, ido) = (b.node_id(), o.node_id());
        let (first, second) = double_sign(&f.chain, &b, 7);
        let evidence = |node, first: &Transaction, second: &Transaction| TxBody::Evidence {
            node,
            proof: EvidenceProof::double_sign(first, second),
        };
        let invalid = |reason| Err(TxRejection::InvalidEvidence { node: idb, reason: Box::new(reason) });

        let no_proof =
            TxBody::Evidence { node: idb, proof: EvidenceProof::DoubleSign { first: vec![], second: vec![] } };
        let got = f.apply_checked(&a, no_proof, T0);
        assert_eq!(
            got,
            invalid(ProofFault::Undecodable { which: "first", source: CodecError::Empty { record: "transaction" } })
        );
        assert!(got.unwrap_err().to_string().contains("the first transaction does not decode"));

        let mut forged = second.clone();
        forged.signature.0[3] ^= 1;
        assert_eq!(
            f.apply_checked(&a, evidence(idb, &first, &forged), T0),
            invalid(ProofFault::BadSignature { which: "second" })
        );
        // Signed by b, but for another chain: not a double sign here.
        let (elsewhere, _) = double_sign(&ChainId::from_name("elsewhere"), &b, 7);
        assert_eq!(
            f.apply_checked(&a, evidence(idb, &elsewhere, &second), T0),
            invalid(ProofFault::BadSignature { which: "first" })
        );
        // a's own double sign does not accuse b.
        let (a1, a2) = double_sign(&f.chain, &a, 7);
        assert_eq!(
            f.apply_checked(&a, evidence(idb, &a1, &a2), T0),
            invalid(ProofFault::WrongSigner { which: "first", signer: a.node_id() })
        );
        // Two transactions that do not compete for one slot.
        let later = Transaction::sign(&b, &f.chain, 8, data_use("two"));
        assert_eq!(
            f.apply_checked(&a, evidence(idb, &first, &later), T0),
            invalid(ProofFault::DifferentNonces { first: 7, second: 8 })
        );
        assert_eq!(f.apply_checked(&a, evidence(idb, &first, &first), T0), invalid(ProofFault::SameBody { nonce: 7 }));
        // Someone who is not a member cannot be accused (its signatures never counted here).
        let (o1, o2) = double_sign(&f.chain, &o, 7);
        assert_eq!(f.apply_checked(&a, evidence(ido, &o1, &o2), T0), Err(TxRejection::NotMember { node: ido }));
        assert!(f.state.evidence().is_empty());
    }

    #[test]
    fn a_double_sign_is_recorded_once() {
        let mut f = Fixture::new();
        let (a, b) = (f.a.clone(), f.b.clone());
        let idb = b.node_id();
        // b's first transaction is on the chain; b then signs another body with the same nonce.
        let applied = f.tx(&b, data_use("one"));
        f.state.apply(&applied, T0).unwrap();
        let conflicting = Transaction::sign(&b, &f.chain, applied.nonce, data_use("two"));
        let body = TxBody::Evidence { node: idb, proof: EvidenceProof::double_sign(&applied, &conflicting) };
        f.apply_checked(&a, body.clone(), T0 + 1).unwrap();
        let record = &f.state.evidence()[0];
        assert_eq!(
            record,
            &EvidenceRecord {
                reporter: a.node_id(),
                node: idb,
                nonce: 1,
                transactions: [applied.hash(), conflicting.hash()],
                time_ms: T0 + 1
            }
        );
        // The same conflict again, by anyone, in either order, is refused.
        let again = Err(TxRejection::EvidenceRecorded { node: idb, nonce: 1 });
        assert_eq!(f.apply_checked(&a, body, T0), again);
        let swapped = TxBody::Evidence { node: idb, proof: EvidenceProof::double_sign(&conflicting, &applied) };
        assert_eq!(f.apply_checked(&b, swapped, T0), again);
        // A third body at that nonce is the same slot: still recorded once.
        let third = Transaction::sign(&b, &f.chain, 1, data_use("three"));
        let body = TxBody::Evidence { node: idb, proof: EvidenceProof::double_sign(&applied, &third) };
        assert_eq!(f.apply_checked(&a, body, T0), again);
        assert_eq!(f.state.evidence().len(), 1);
    }
}
