//! What a coordinator writes to record one federated round: the transactions, in the order the
//! state machine ([`crate::state`]) accepts them.
//!
//! This module owns that one decision, so a simulator and a networked coordinator record rounds
//! the same way. It is pure: it signs what it is given and touches no store and no network.
//! Storing the blobs the commitments name, and having the transactions finalized, are the
//! caller's.
//!
//! A round is recorded as:
//! 1. `OpenRound` naming every sampled participant (contributors and those that sent nothing);
//! 2. a `CommitUpdate` per update folded into the aggregate, in the order given;
//! 3. `CommitAggregate` with the participants whose updates were committed and the metrics
//!    (only if the round aggregated something);
//! 4. `PrivacySpend` (ε, δ spent so far) under differential privacy.
//!
//! All are signed by the coordinator with consecutive nonces.

use crate::hash::Digest;
use crate::identity::{Keypair, NodeId};
use crate::tx::{ChainId, Metric, Transaction, TxBody};

/// Slack added to a round's own timeout for its `OpenRound` deadline: commitments reach the
/// ledger after the round closes, through consensus, so the deadline must outlast the round.
pub const DEADLINE_SLACK_MS: u64 = 60_000;

/// The `OpenRound` deadline for a round recorded at block time `opened_ms` whose coordinator
/// waits at most `round_timeout_ms` for updates (none: no timeout of its own).
pub fn deadline_ms(opened_ms: u64, round_timeout_ms: Option<u64>) -> u64 {
    opened_ms.saturating_add(round_timeout_ms.unwrap_or(0)).saturating_add(DEADLINE_SLACK_MS)
}

/// One participant's update, as the ledger commits to it.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateCommitment {
    /// The participant.
    pub node: NodeId,
    /// blake3 of the update blob.
    pub update_hash: Digest,
    /// Examples it trained on.
    pub examples: u64,
    /// The L2 norm of its change to the global model.
    pub norm: f64,
}

/// A closed round, as the ledger records it. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundCommitments {
    /// The round number.
    pub round: u64,
    /// The task, e.g. `"mnist mlp:784-200-200-10"`.
    pub task: String,
    /// The aggregation strategy, e.g. `"fedavg"`.
    pub strategy: String,
    /// The last block time (ms) at which an update may be committed.
    pub deadline_ms: u64,
    /// Every sampled participant.
    pub participants: Vec<NodeId>,
    /// The updates folded into the aggregate.
    pub updates: Vec<UpdateCommitment>,
    /// blake3 of the aggregate model blob and the round's metrics, if the round aggregated.
    pub aggregate: Option<(Digest, Vec<Metric>)>,
    /// (ε, δ) spent so far, under differential privacy.
    pub privacy: Option<(f64, f64)>,
}

impl RoundCommitments {
    /// The round's transactions, signed by `coordinator` for `chain_id` with nonces
    /// `first_nonce, first_nonce + 1, …`. The aggregate is left out when no update was committed
    /// (the state machine refuses an aggregate of nothing).
    pub fn transactions(&self, coordinator: &Keypair, chain_id: &ChainId, first_nonce: u64) -> Vec<Transaction> {
        let mut bodies = vec![TxBody::OpenRound {
            round: self.round,
            task: self.task.clone(),
            participants: self.participants.clone(),
            strategy: self.strategy.clone(),
            deadline_ms: self.deadline_ms,
        }];
        bodies.extend(self.updates.iter().map(|u| TxBody::CommitUpdate {
            round: self.round,
            node: u.node,
            update_hash: u.update_hash,
            examples: u.examples,
            norm_bits: u.norm.to_bits(),
        }));
        if let (Some((aggregate_hash, metrics)), false) = (&self.aggregate, self.updates.is_empty()) {
            bodies.push(TxBody::CommitAggregate {
                round: self.round,
                aggregate_hash: *aggregate_hash,
                participants: self.updates.iter().map(|u| u.node).collect(),
                metrics: metrics.clone(),
            });
        }
        if let Some((epsilon, delta)) = self.privacy {
            bodies.push(TxBody::PrivacySpend {
                round: self.round,
                epsilon_bits: epsilon.to_bits(),
                delta_bits: delta.to_bits(),
            });
        }
        bodies
            .into_iter()
            .zip(first_nonce..)
            .map(|(body, nonce)| Transaction::sign(coordinator, chain_id, nonce, body))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{Founder, Genesis};
    use crate::state::State;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> Keypair {
        Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn a_round_applies_in_order_and_closes() {
        let (coordinator, device) = (key(1), key(2));
        let genesis = Genesis {
            chain_id: ChainId::from_name("round-record"),
            timestamp_ms: 0,
            founders: vec![Founder { id: coordinator.node_id(), name: "org".into(), validator: true }],
        };
        let mut state = State::from_genesis(&genesis);
        let register = TxBody::RegisterDevice { device: device.node_id(), member: coordinator.node_id() };
        state.apply(&Transaction::sign(&coordinator, &genesis.chain_id, 1, register), 0).unwrap();
        let update =
            UpdateCommitment { node: device.node_id(), update_hash: Digest::of(b"u"), examples: 80, norm: 1.5 };
        let record = RoundCommitments {
            round: 1,
            task: "mnist".into(),
            strategy: "fedavg".into(),
            deadline_ms: 60_000,
            participants: vec![device.node_id()],
            updates: vec![update],
            aggregate: Some((Digest::of(b"model"), vec![Metric::new("accuracy", 0.9)])),
            privacy: Some((0.5, 1e-5)),
        };
        let txs = record.transactions(&coordinator, &genesis.chain_id, 2);
        let kinds: Vec<&str> = txs.iter().map(|tx| tx.body.kind()).collect();
        assert_eq!(kinds, ["open_round", "commit_update", "commit_aggregate", "privacy_spend"]);
        assert_eq!(txs.iter().map(|tx| tx.nonce).collect::<Vec<_>>(), [2, 3, 4, 5]);
        for tx in &txs {
            state.apply(tx, 1_000).unwrap_or_else(|e| panic!("{}: {e}", tx.body.kind()));
        }
        let round = state.round(1).unwrap();
        assert_eq!(round.aggregate.as_ref().unwrap().aggregate_hash, Digest::of(b"model"));
        assert_eq!(round.updates.len(), 1);

        // Nothing committed: no aggregate, even if one is given.
        let empty = RoundCommitments { round: 2, updates: vec![], privacy: None, ..record };
        let kinds: Vec<&str> =
            empty.transactions(&coordinator, &genesis.chain_id, 6).iter().map(|tx| tx.body.kind()).collect();
        assert_eq!(kinds, ["open_round"]);
    }
}
