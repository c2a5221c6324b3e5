//! Order ledger blocks among validators with Commonware simplex.
//!
//! `dainet-ledger` says which block may follow which; this crate makes the validators agree on
//! one chain of them, despite crashes, lost messages and up to `f` Byzantine validators out of
//! `n >= 3f + 1`. It binds the ledger to [`commonware_consensus::simplex`] (ed25519 votes,
//! round-robin leaders) and ships a synchronous simulated ledger for the simulator.
//!
//! Stability: ALPHA — the wire format ([`wire`]) carries tags but no version yet.
//!
//! # Roles
//!
//! | module | owns |
//! |---|---|
//! | [`types`] | the payload digest (a block hash) and consensus keys (a validator's ledger key) |
//! | [`mempool`] | pending transactions, the block builder on any parent, eviction after finality |
//! | [`core`] | the sans-IO application: ancestry, deterministic verification, finality |
//! | [`application`] | the actor simplex talks to (`Automaton`, `Relay`, `Reporter`), block transport, transaction gossip |
//! | [`sync`] | catching up by ranges, sans-IO: headers down from a finalized hash, then blocks up from the tip, verified as they come |
//! | [`wire`] | the block channel's messages (blocks, requests, transaction batches, catch-up ranges); decoding never panics |
//! | [`validator`] | engine wiring, generic over the runtime and the p2p stack |
//! | [`sim`] | `n` validators in a deterministic runtime behind blocking calls, on a new chain or resuming a stored one |
//! | [`error`] | what can go wrong, with key=value context |
//!
//! # What it guarantees
//!
//! - **Agreement**: with at most `f` faulty validators out of `n >= 3f + 1`, no two honest
//!   validators finalize different blocks at one height (simplex's safety; every test here
//!   checks it).
//! - **Validity**: a finalized block passed [`dainet_ledger::chain::check_next`] on its parent
//!   at a quorum of validators (at least `f + 1` of them honest), and each validator has run
//!   that check itself before it appends the block (`Chain::append_checked`, which re-checks
//!   the link and the state root), so every honest chain is a valid ledger.
//! - **Liveness** after the network stabilises with a quorum (`2f + 1`) of honest validators
//!   connected: blocks keep being finalized and a transaction in a live validator's mempool that
//!   stays valid is eventually included. Blocks lost in transit are fetched from peers.
//! - **Gossip**: a transaction submitted to a validator and new to its mempool is broadcast to
//!   every peer in a batch, so the next leader, whichever it is, can propose it. Mempools may
//!   overlap freely: a block is built against its parent's state (a transaction an ancestor
//!   carries no longer applies) and finality prunes what it included from every mempool.
//! - **Pacing**: a block with no transaction waits for `empty_block_interval` after its parent
//!   (a transaction arriving meanwhile is proposed at once), so an idle ledger grows about two
//!   blocks a second, not dozens.
//! - **Determinism**: verification reads no clock and no randomness; on the deterministic
//!   runtime the same seed and inputs give the same blocks.
//!
//! # What it does not do
//!
//! - No reconfiguration: the validators are the genesis's, for good.
//! - No bound on how far ahead of real time a proposer may stamp a block (verification would
//!   need a local clock for that, which is not deterministic); block times only never decrease.
//! - Gossip is one hop and best effort: a batch lost in transit is not resent (the submitting
//!   validator still proposes the transaction on its own turn), and a validator that was down
//!   does not learn what was gossiped meanwhile.
//! - Fault proofs are counted per validator, not yet written to the ledger as `Evidence`.
//!
//! # Example
//!
//! Four validators in a simulation, 12 transactions, finalized:
//!
//! ```
//! use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};
//! use dainet_ledger::genesis::{Founder, Genesis};
//! use dainet_ledger::identity::Keypair;
//! use dainet_ledger::tx::{ChainId, Transaction, TxBody};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let keys: Vec<Keypair> = (0..4).map(|i| Keypair::generate(&mut ChaCha20Rng::seed_from_u64(i))).collect();
//! let founders = keys
//!     .iter()
//!     .enumerate()
//!     .map(|(i, k)| Founder { id: k.node_id(), name: format!("org{i}"), validator: true })
//!     .collect();
//! // keys[0] signs the rewards below: only the genesis's treasury may.
//! let genesis = Genesis { name: "example".into(), timestamp_ms: 0, founders, treasury: Some(keys[0].node_id()) };
//!
//! let config = SimulatedLedgerConfig { seed: 7, latency_ms: 20, success_rate: 0.99, ..Default::default() };
//! let mut ledger = SimulatedLedger::start(genesis.clone(), keys.clone(), config)?;
//! let txs: Vec<Transaction> = (1..=12)
//!     .map(|nonce| {
//!         let body = TxBody::Reward { node: keys[0].node_id(), amount: nonce };
//!         Transaction::sign(&keys[0], &genesis.chain_id(), nonce, body)
//!     })
//!     .collect();
//! let committed = ledger.submit(0, txs)?;
//! assert!(committed.iter().all(|c| c.height().is_some()));
//!
//! let finished = ledger.finish()?;
//! assert!(finished.agree);
//! assert_eq!(finished.chain.state().balance(&keys[0].node_id()), (1..=12).sum::<u64>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod application;
pub mod core;
pub mod error;
pub mod mempool;
pub mod sim;
pub mod sync;
pub mod types;
pub mod validator;
pub mod wire;

pub use error::ConsensusError;
