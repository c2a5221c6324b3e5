//! Record the training in a ledger that no single member can rewrite.
//!
//! dainet's trust layer: registrations, policy deployments, round plans, update and aggregate
//! commitments (hashes, never tensors), contribution scores, rewards, data-use records, privacy
//! budget spent and misbehaviour evidence, in hash-chained blocks that anyone can re-check from
//! the bytes.
//!
//! Stability: ALPHA — breaking changes expected; the formats carry version bytes
//! ([`tx::TX_VERSION`], [`block::BLOCK_VERSION`], [`genesis::GENESIS_VERSION`]) so that a later
//! BETA can freeze them.
//!
//! # Roles
//!
//! - [`identity`]: an ed25519 [`Keypair`](identity::Keypair) per member; its public key is its
//!   [`NodeId`](identity::NodeId).
//! - [`tx`]: a [`Transaction`](tx::Transaction) is a [`TxBody`](tx::TxBody) signed with a nonce
//!   for one [`ChainId`](tx::ChainId).
//! - [`state`]: the deterministic state machine that accepts or rejects each transaction,
//!   including who may sign which body (majority approvals for governance, the treasury for
//!   rewards, checked proofs for evidence).
//! - [`merkle`], [`block`]: blocks commit to their transactions (Merkle root), to the state after
//!   them (state root) and to their parent (hash chain) — see [`genesis`] for block 0.
//! - [`chain`]: proposes, checks and appends blocks over a [`store::BlockStore`].
//! - [`round_record`]: what the ledger requires of a round's records (its deadline).
//! - [`blob`]: the content-addressed store the commitments point into.
//! - [`verify`]: audits a stored ledger and its blobs and lists every problem.
//! - [`export`]: the `dainet-ledger-export` JSON document of a stored ledger.
//! - [`folder`]: the on-disk layout, `DIR/ledger.redb` and `DIR/blobs/`, that the CLI, the
//!   simulator and nodes share.
//!
//! The crate is sans-IO in the sense that matters for replay: it reads no clock (block times are
//! arguments), draws randomness only from a generator the caller passes, and every decision is a
//! function of its inputs. I/O happens only inside the storage implementations.
//!
//! # The one hard decision: what is deterministic
//!
//! Every replica must reach the same state from the same blocks, or consensus forks. So the state
//! holds `BTreeMap`s, real numbers travel as `f64` bits and are only compared, never summed on
//! the accept/reject path, and a block is valid only if *every* transaction in it applies; a
//! proposer drops invalid transactions *before* building the block ([`chain::Chain::propose_block`]).
//!
//! # Tutorial
//!
//! A genesis with one founder, a round with one update, and an audit:
//!
//! ```
//! use dainet_ledger::blob::{BlobStore, MemBlobs};
//! use dainet_ledger::chain::Chain;
//! use dainet_ledger::genesis::{Founder, Genesis};
//! use dainet_ledger::identity::Keypair;
//! use dainet_ledger::store::MemStore;
//! use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! // 1. Identities come from a generator you pass (seeded here; from the OS in a node).
//! let alice = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
//! let me = alice.node_id();
//!
//! // 2. The genesis fixes the founding members; the chain id is its hash.
//! let founders = vec![Founder { id: me, name: "alice".into(), validator: true }];
//! let genesis = Genesis { name: "tutorial".into(), timestamp_ms: 0, founders, treasury: None };
//! let chain_id = genesis.chain_id();
//! let mut chain = Chain::create(MemStore::new(), genesis)?;
//!
//! // 3. Tensors go to the blob store; the ledger gets their hashes.
//! let mut blobs = MemBlobs::new();
//! let update_hash = blobs.put(b"update tensor bytes")?;
//! let aggregate_hash = blobs.put(b"global model bytes")?;
//!
//! // 4. Transactions are signed with the next nonce (1, 2, 3, ...).
//! let open = TxBody::OpenRound {
//!     round: 1,
//!     task: "mnist".into(),
//!     participants: vec![me],
//!     strategy: "fedavg".into(),
//!     deadline_ms: 60_000,
//! };
//! let update = TxBody::CommitUpdate { round: 1, node: me, update_hash, examples: 600, norm_bits: 1.5f64.to_bits() };
//! let aggregate = TxBody::CommitAggregate {
//!     round: 1,
//!     aggregate_hash,
//!     participants: vec![me],
//!     metrics: vec![Metric::new("accuracy", 0.93)],
//! };
//! let txs = [open, update, aggregate]
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, body)| Transaction::sign(&alice, &chain_id, i as u64 + 1, body));
//!
//! // 5. Propose a block at a time you choose, then append it (under consensus: once finalized).
//! let proposal = chain.propose_block(txs, 1_000)?;
//! assert!(proposal.dropped.is_empty());
//! chain.append(proposal.block)?;
//! assert!(!chain.state().round(1).unwrap().is_open());
//!
//! // 6. Anyone with the store and the blobs can check all of it.
//! let report = dainet_ledger::verify::verify(chain.store(), &blobs);
//! assert!(report.is_ok(), "{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Binding to consensus (not in this crate yet)
//!
//! The ledger is replicated by Commonware's simplex consensus among the validator members
//! ([`state::State::validators`]). The seam is the three traits of `commonware-consensus`:
//!
//! - `Automaton::propose` → [`chain::Chain::propose_block`] over the mempool at the view's time;
//!   the payload digest is [`block::Block::hash`] and the payload bytes [`block::Block::encode`].
//! - `Automaton::verify` → [`block::Block::decode`] then [`chain::Chain::verify_block`]. It must
//!   be deterministic and the same on every honest validator: it depends only on the parent chain
//!   and the block, never on the local clock (a bound on how far a block time may run ahead of
//!   the validator's clock, if wanted, belongs in the binding and must tolerate skew).
//! - `Relay::broadcast` ships the encoded block by digest; `Reporter` finalizations call
//!   [`chain::Chain::append`] in height order; its activity reports (notably equivocation
//!   proofs) are input to contribution scoring and, once the ledger can check a vote's
//!   signature, to [`tx::TxBody::Evidence`] — which today proves transaction double signs only.
//!
//! A finalization certificate over a block hash is also what turns [`verify`]'s "internally
//! consistent" into "the chain the validators agreed on".
#![deny(missing_docs)]

pub mod blob;
pub mod block;
pub mod chain;
pub use dainet_core::codec;
pub mod export;
pub mod folder;
pub mod genesis;
pub mod hash;
pub mod identity;
pub mod merkle;
pub mod round_record;
pub mod state;
pub mod store;
pub mod tx;
pub mod verify;
