//! Shared fixtures for the integration tests: a genesis with `n` validators and signed
//! transactions.
#![allow(dead_code)]

use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::identity::Keypair;
use dainet_ledger::tx::{Transaction, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A genesis with `n` validator founders (and their keys, in founder order) plus one
/// non-validating member, the treasury (it signs the tests' rewards), whose key is returned last.
pub fn genesis(n: usize) -> (Genesis, Vec<Keypair>, Keypair) {
    let keys: Vec<Keypair> =
        (0..n).map(|i| Keypair::generate(&mut ChaCha20Rng::seed_from_u64(100 + i as u64))).collect();
    let user = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(99));
    let mut founders: Vec<Founder> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Founder { id: k.node_id(), name: format!("org{i}"), validator: true })
        .collect();
    founders.push(Founder { id: user.node_id(), name: "user".into(), validator: false });
    let treasury = Some(user.node_id());
    let genesis = Genesis { name: "dainet-consensus-test".into(), timestamp_ms: 1_000, founders, treasury };
    (genesis, keys, user)
}

/// `count` reward transactions signed by `signer` (the treasury, for them to apply), nonces
/// `first..first + count`.
pub fn rewards(signer: &Keypair, genesis: &Genesis, first: u64, count: u64) -> Vec<Transaction> {
    (first..first + count)
        .map(|nonce| {
            Transaction::sign(
                signer,
                &genesis.chain_id(),
                nonce,
                TxBody::Reward { node: signer.node_id(), amount: nonce },
            )
        })
        .collect()
}

use std::time::Duration;

use commonware_macros::select;
use commonware_p2p::simulated::{Link, Oracle};
use commonware_runtime::{deterministic, Clock, Supervisor as _};
use commonware_utils::channel::oneshot;
use commonware_utils::probability::Probability;
use dainet_consensus::application::{ApplicationConfig, Status};
use dainet_consensus::mempool::TxOutcome;
use dainet_consensus::sim;
use dainet_consensus::types::{consensus_key, PublicKey};
use dainet_consensus::validator::{start_validator, Anchor, Timing, Validator, ValidatorConfig};
use dainet_ledger::chain::Chain;
use dainet_ledger::store::MemStore;

/// A link with `latency_ms` ± `jitter_ms` that delivers with probability `success`.
pub fn link(latency_ms: u64, jitter_ms: u64, success: f64) -> Link {
    Link {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        success_rate: Probability::from_f64(success).unwrap(),
    }
}

/// A simulated network of `n` validators, all linked with `link`, nothing started yet.
pub struct Net {
    pub genesis: Genesis,
    pub keys: Vec<Keypair>,
    pub user: Keypair,
    pub publics: Vec<PublicKey>,
    pub oracle: Oracle<PublicKey, deterministic::Context>,
}

impl Net {
    pub async fn new(context: &deterministic::Context, n: usize, link: Link) -> Net {
        let (genesis, keys, user) = genesis(n);
        let publics: Vec<PublicKey> = keys.iter().map(|k| consensus_key(k).public_key()).collect();
        let oracle = sim::start_network(context, &publics, ApplicationConfig::default().max_message_bytes).await;
        sim::link_all(&oracle, &publics, &link).await.unwrap();
        Net { genesis, keys, user, publics, oracle }
    }

    /// Start validator `index` as an honest validator.
    pub async fn start(&self, context: &deterministic::Context, index: usize) -> Validator<MemStore> {
        let channels = sim::register(&self.oracle, self.publics[index].clone()).await.unwrap();
        let config = ValidatorConfig {
            chain: Chain::create(MemStore::new(), self.genesis.clone()).unwrap(),
            key: consensus_key(&self.keys[index]),
            timing: Timing::default(),
            application: ApplicationConfig::default(),
            partition: Some(format!("validator_{index}")),
            anchor: Anchor::Genesis,
        };
        let context = context.child("validator").with_attribute("index", index);
        start_validator(context, config, self.oracle.control(self.publics[index].clone()), channels).unwrap()
    }
}

use commonware_cryptography::Signer as _;

/// Wait (in virtual time) until `done()` or `within` passes; returns whether `done()` held.
pub async fn wait_until(context: &deterministic::Context, within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = context.current() + within;
    while context.current() < deadline {
        if done() {
            return true;
        }
        context.sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// Wait for every outcome, each for at most until `within` from now has passed.
pub async fn outcomes(
    context: &deterministic::Context,
    receivers: Vec<oneshot::Receiver<TxOutcome>>,
    within: Duration,
) -> Vec<Option<TxOutcome>> {
    let deadline = context.current() + within;
    let mut out = Vec::new();
    for receiver in receivers {
        select! {
            outcome = receiver => out.push(outcome.ok()),
            _ = context.sleep_until(deadline) => out.push(None),
        }
    }
    out
}

/// Panic unless every pair of statuses agrees on every height both finalized.
pub fn assert_no_fork(statuses: &[Status]) {
    for (i, a) in statuses.iter().enumerate() {
        for (j, b) in statuses.iter().enumerate().skip(i + 1) {
            for (height, (x, y)) in a.finalized.iter().zip(&b.finalized).enumerate() {
                assert_eq!(x, y, "fork at height {height} between validators {i} and {j}");
            }
        }
    }
    assert!(sim::chains_agree(statuses));
}

/// Every outcome is a commit.
pub fn assert_all_committed(outcomes: &[Option<TxOutcome>]) {
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(matches!(outcome, Some(TxOutcome::Committed(_))), "tx {i}: {outcome:?}");
    }
}
