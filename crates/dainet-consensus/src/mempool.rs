//! The mempool: one validator's transactions waiting for a block, and the block builder that
//! draws from it.
//!
//! This module owns three rules:
//! - **order**: transactions are kept in the order they were submitted and a proposal takes them
//!   in that order ([`build_block`]); a transaction whose nonce is ahead of its signer's next one
//!   is retried in a further pass over the leftovers, so a signer's transactions submitted out of
//!   order still land in one block;
//! - **admission**: a transaction is refused at [`Mempool::insert`] only if the pool is full or
//!   it is already there; whether it applies is decided against a state, never here. Its
//!   signature must have been verified before it is inserted ([`crate::core::Core::submit`]
//!   does): blocks are built without checking signatures again;
//! - **eviction**: after a finalization, [`Mempool::prune`] removes what the finalized blocks
//!   carried and every transaction the finalized state rejects *for good* — anything but a nonce
//!   ahead of the signer's next one, which may still become valid once the gap is filled.
//!
//! Nothing here reads a clock: times are arguments.

use std::collections::BTreeSet;

use dainet_ledger::block::{Block, MAX_BLOCK_TX_BYTES};
use dainet_ledger::chain::Head;
use dainet_ledger::hash::{BlockHash, Domain, TxHash};
use dainet_ledger::state::{State, TxRejection};
use dainet_ledger::tx::Transaction;

/// Most passes over the leftovers when transactions wait for a lower nonce: a signer's
/// transactions submitted in reverse order land over several blocks instead of costing a
/// quadratic replay.
const MAX_PASSES: usize = 16;

/// Where a transaction ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// It is in a finalized block.
    Committed(Inclusion),
    /// It was dropped and will never be included by this validator.
    Rejected(RejectReason),
}

/// The finalized block that holds a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inclusion {
    /// The block's height.
    pub height: u64,
    /// The block's hash.
    pub block_hash: BlockHash,
    /// The block's timestamp, ms.
    pub timestamp_ms: u64,
}

/// Why a transaction was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The finalized state rejects it and always will (a stale nonce, a bad signature, a rule).
    #[error("rejected by the ledger: {0}")]
    Ledger(TxRejection),
    /// The mempool is full.
    #[error("mempool full: capacity={capacity}")]
    MempoolFull {
        /// Its capacity.
        capacity: usize,
    },
    /// It does not fit in any block.
    #[error("transaction larger than a block: bytes={bytes} max={max}")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The most a block leaves for transactions.
        max: usize,
    },
    /// The validator stopped before the transaction was finalized.
    #[error("validator stopped")]
    Stopped,
}

/// A validator's pending transactions, in submission order.
#[derive(Clone, Debug)]
pub struct Mempool {
    txs: Vec<Pooled>,
    hashes: BTreeSet<TxHash>,
    capacity: usize,
    /// Transactions admitted so far (new to the pool), ever.
    admitted: u64,
}

/// A waiting transaction with what its encoding gave on entry, so no block build encodes it
/// again.
#[derive(Clone, Debug)]
struct Pooled {
    hash: TxHash,
    /// Its encoded size, bytes.
    size: usize,
    tx: Transaction,
}

impl Mempool {
    /// An empty pool that holds at most `capacity` transactions.
    pub fn new(capacity: usize) -> Mempool {
        Mempool { txs: Vec::new(), hashes: BTreeSet::new(), capacity, admitted: 0 }
    }

    /// Add `tx` at the end. Returns its hash and whether it was new (a transaction already in the
    /// pool is not added twice).
    pub fn insert(&mut self, tx: Transaction) -> Result<(TxHash, bool), RejectReason> {
        let encoded = tx.encode();
        let (size, max) = (encoded.len(), MAX_BLOCK_TX_BYTES);
        if size > max {
            return Err(RejectReason::TooLarge { bytes: size, max });
        }
        // `Transaction::hash`, from the bytes already encoded.
        let hash = Domain::Tx.hash(&encoded);
        if self.hashes.contains(&hash) {
            return Ok((hash, false));
        }
        if self.txs.len() >= self.capacity {
            return Err(RejectReason::MempoolFull { capacity: self.capacity });
        }
        self.hashes.insert(hash);
        self.txs.push(Pooled { hash, size, tx });
        self.admitted += 1;
        Ok((hash, true))
    }

    /// How many transactions the pool has admitted since it was made (a transaction already
    /// waiting is not counted again): it moves whenever something new arrives.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Whether a transaction with this hash is waiting.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.hashes.contains(hash)
    }

    /// How many transactions are waiting.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The waiting transactions, in submission order.
    pub fn iter(&self) -> impl Iterator<Item = &Transaction> {
        self.txs.iter().map(|p| &p.tx)
    }

    /// After a finalization: drop the transactions in `included` (the finalized blocks' hashes),
    /// then replay the rest on `state` (the finalized state) at `time_ms`, as far as one block
    /// holds, and drop those it rejects for good. Returns the dropped ones with their reasons, in
    /// pool order. Costs what building one block costs (no signature checks: they were made on
    /// entry), so a large pool is pruned a block's worth at a time.
    pub fn prune(&mut self, included: &BTreeSet<TxHash>, state: &State, time_ms: u64) -> Vec<(TxHash, TxRejection)> {
        self.txs.retain(|p| !included.contains(&p.hash));
        for hash in included {
            self.hashes.remove(hash);
        }
        let selection = select(state, time_ms, &self.txs, MAX_BLOCK_TX_BYTES);
        let mut evicted = Vec::new();
        let mut evict = vec![false; self.txs.len()];
        for (index, reason) in selection.rejected {
            if !is_future_nonce(&reason) {
                evict[index] = true;
                evicted.push((self.txs[index].hash, reason));
            }
        }
        let mut i = 0;
        self.txs.retain(|_| {
            let keep = !evict[i];
            i += 1;
            keep
        });
        for (hash, _) in &evicted {
            self.hashes.remove(hash);
        }
        evicted
    }
}

impl RejectReason {
    /// Whether a peer that gossiped a transaction refused for this reason misbehaved: no honest
    /// peer sends a bad signature or a transaction too large for any block. A stale nonce or a
    /// full pool is not its fault (it may have finalized less than this validator has).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, RejectReason::Ledger(TxRejection::BadSignature { .. }) | RejectReason::TooLarge { .. })
    }
}

/// Whether `reason` is a nonce ahead of the signer's next one: the transaction may apply once
/// the signer's earlier ones do.
fn is_future_nonce(reason: &TxRejection) -> bool {
    matches!(reason, TxRejection::BadNonce { expected, found, .. } if found > expected)
}

/// The outcome of replaying candidate transactions on a state.
struct Selection {
    /// Indices (into the candidates) of the transactions that applied, in block order.
    included: Vec<usize>,
    /// Indices of the others, with the reason from the last pass that tried them.
    rejected: Vec<(usize, TxRejection)>,
    /// The state after the included ones.
    state: State,
}

/// Apply `candidates` to a copy of `state` at `time_ms`, in order, within `budget` bytes of
/// encoded transactions (those that do not fit are neither included nor rejected); a transaction
/// rejected only for a future nonce is retried in a later pass while passes make progress, at
/// most [`MAX_PASSES`] passes.
fn select(state: &State, time_ms: u64, candidates: &[Pooled], mut budget: usize) -> Selection {
    let mut state = state.clone();
    let mut included = Vec::new();
    let mut rejected: Vec<(usize, TxRejection)> = Vec::new();
    let mut pending: Vec<usize> = (0..candidates.len()).collect();
    for pass in 1.. {
        let mut progress = false;
        let mut retry = Vec::new();
        for index in pending {
            let Pooled { size, tx, .. } = &candidates[index];
            let size = *size;
            if size > budget {
                continue;
            }
            // Signatures were checked once, on entry (`Core::submit`).
            match state.apply_presigned(tx, time_ms) {
                Ok(()) => {
                    budget -= size;
                    included.push(index);
                    progress = true;
                }
                Err(reason) if is_future_nonce(&reason) => retry.push((index, reason)),
                Err(reason) => rejected.push((index, reason)),
            }
        }
        if !progress || retry.is_empty() || pass >= MAX_PASSES {
            rejected.extend(retry);
            break;
        }
        pending = retry.into_iter().map(|(index, _)| index).collect();
    }
    rejected.sort_by_key(|(index, _)| *index);
    Selection { included, rejected, state }
}

/// Build the block that follows `parent` (whose state is `state`) from the pool's transactions
/// at `timestamp_ms`, which must not be below the parent's. Returns the block and the state after
/// it. Transactions that do not apply are left out (and left in the pool).
///
/// This is [`dainet_ledger::chain::Chain::propose_block`] on an arbitrary parent: consensus may
/// ask for a block on a notarized parent that is not finalized yet.
pub fn build_block(parent: &Head, state: &State, pool: &Mempool, timestamp_ms: u64) -> (Block, State) {
    let timestamp_ms = timestamp_ms.max(parent.timestamp_ms);
    let selection = select(state, timestamp_ms, &pool.txs, MAX_BLOCK_TX_BYTES);
    let txs: Vec<Transaction> = selection.included.iter().map(|&i| pool.txs[i].tx.clone()).collect();
    let block = Block::seal(parent.height.saturating_add(1), parent.hash, selection.state.root(), timestamp_ms, txs);
    (block, selection.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::chain::{check_next, genesis_block};
    use dainet_ledger::genesis::{Founder, Genesis};
    use dainet_ledger::identity::Keypair;
    use dainet_ledger::tx::TxBody;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn setup() -> (Keypair, Genesis) {
        let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let genesis = Genesis {
            name: "mempool".into(),
            timestamp_ms: 10,
            founders: vec![Founder { id: kp.node_id(), name: "a".into(), validator: true }],
            // The founder signs the rewards these tests submit, so it is the treasury.
            treasury: Some(kp.node_id()),
        };
        (kp, genesis)
    }

    fn reward(kp: &Keypair, genesis: &Genesis, nonce: u64) -> Transaction {
        Transaction::sign(kp, &genesis.chain_id(), nonce, TxBody::Reward { node: kp.node_id(), amount: nonce })
    }

    #[test]
    fn builds_a_valid_block_in_nonce_order_even_if_submitted_out_of_order() {
        let (kp, genesis) = setup();
        let state = State::from_genesis(&genesis);
        let head = Head::of(&genesis_block(&genesis));
        let mut pool = Mempool::new(10);
        for nonce in [2, 1, 3] {
            pool.insert(reward(&kp, &genesis, nonce)).unwrap();
        }
        let (block, after) = build_block(&head, &state, &pool, 5);
        assert_eq!(block.timestamp_ms, 10, "never below the parent's time");
        assert_eq!(block.txs.iter().map(|tx| tx.nonce).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(check_next(&state, &head, &block).unwrap(), after);
    }

    #[test]
    fn reverse_order_costs_bounded_passes_and_nothing_is_lost() {
        let (kp, genesis) = setup();
        let state = State::from_genesis(&genesis);
        let head = Head::of(&genesis_block(&genesis));
        let mut pool = Mempool::new(100);
        for nonce in (1..=20).rev() {
            pool.insert(reward(&kp, &genesis, nonce)).unwrap();
        }
        let (block, after) = build_block(&head, &state, &pool, 20);
        assert_eq!(
            block.txs.iter().map(|tx| tx.nonce).collect::<Vec<_>>(),
            (1..=MAX_PASSES as u64).collect::<Vec<_>>()
        );
        let included: BTreeSet<TxHash> = block.tx_hashes().into_iter().collect();
        assert!(pool.prune(&included, &after, 20).is_empty(), "future nonces are kept");
        assert_eq!(pool.len(), 20 - MAX_PASSES);
    }

    #[test]
    fn insert_refuses_duplicates_and_overflow() {
        let (kp, genesis) = setup();
        let mut pool = Mempool::new(1);
        let tx = reward(&kp, &genesis, 1);
        assert!(pool.insert(tx.clone()).unwrap().1);
        assert!(!pool.insert(tx).unwrap().1);
        assert_eq!(pool.insert(reward(&kp, &genesis, 2)), Err(RejectReason::MempoolFull { capacity: 1 }));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn prune_drops_included_and_stale_and_keeps_future_nonces() {
        let (kp, genesis) = setup();
        let mut state = State::from_genesis(&genesis);
        let mut pool = Mempool::new(10);
        let t1 = reward(&kp, &genesis, 1);
        let t1_again = Transaction::sign(&kp, &genesis.chain_id(), 1, TxBody::Reward { node: kp.node_id(), amount: 9 });
        let t3 = reward(&kp, &genesis, 3);
        for tx in [t1.clone(), t1_again.clone(), t3.clone()] {
            pool.insert(tx).unwrap();
        }
        state.apply(&t1, 20).unwrap();
        let included: BTreeSet<TxHash> = [t1.hash()].into();
        let evicted = pool.prune(&included, &state, 20);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0, t1_again.hash());
        assert!(matches!(evicted[0].1, TxRejection::BadNonce { expected: 2, found: 1, .. }));
        assert!(pool.contains(&t3.hash()), "nonce 3 waits for nonce 2");
        assert_eq!(pool.len(), 1);
    }
}
