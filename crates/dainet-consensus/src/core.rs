//! The application's state machine, sans I/O: the finalized chain, the blocks seen but not
//! finalized, and the answers simplex asks for.
//!
//! This module owns the ledger side of consensus and no I/O at all — no clock (times are
//! arguments), no network, no channels — so each rule is a plain function call in its tests:
//!
//! - **ancestry**: simplex may propose and verify on a parent that is notarized but not yet
//!   finalized. [`Core`] keeps every block it has checked, with the state after it, as long as
//!   the block still descends from the finalized tip; a parent is usable only if it is the tip or
//!   such a block. A block whose bytes or whose ancestors' bytes are missing is answered with
//!   [`Verdict::Missing`] naming the first hash to fetch, never with a guess.
//! - **verification** ([`Core::verify`]): deterministic and the same on every honest validator —
//!   the block's `prev_hash` must be the parent consensus names, and the ledger's rules 1–6
//!   ([`dainet_ledger::chain::check_next`]) must hold on that parent's state. No local clock. The
//!   signature of a transaction already in the mempool (checked once, on entry) is not checked
//!   again; that changes the cost, not the verdict.
//! - **pacing** ([`Core::propose`]): a block that would carry no transaction is not built before
//!   [`Core::with_empty_block_interval`] after its parent's time; the caller is told when
//!   ([`Proposed::Wait`]) and asks again then, or sooner if the mempool admits a transaction.
//! - **proposal** ([`Core::propose`]): the mempool's transactions that apply on the parent's state,
//!   at the given time or the parent's, whichever is later (block times never decrease).
//! - **finality** ([`Core::finalize`]): the finalized block and its unfinalized ancestors are
//!   appended to the [`Chain`] in height order (write-ahead, with the state their check
//!   computed: `Chain::append_checked`); then blocks
//!   on dead forks are forgotten and the mempool is pruned.
//! - **bytes from peers** ([`Core::insert_block`]): a block is cached only if its body matches its
//!   header (transaction root), so a peer cannot pin a wrong body to an honest block's hash; the
//!   cache is bounded and prefers blocks nearest the tip.

use std::collections::{BTreeMap, BTreeSet};

use dainet_ledger::block::{Block, BlockHeader};
use dainet_ledger::chain::{check_next_presigned, Chain, Head};
use dainet_ledger::hash::{BlockHash, TxHash};
use dainet_ledger::state::{State, TxRejection};
use dainet_ledger::store::BlockStore;
use dainet_ledger::tx::Transaction;

use crate::mempool::{build_block, Mempool, RejectReason};

/// A checked block that descends from the finalized tip, with the state after it.
#[derive(Debug)]
struct Checked {
    block: Block,
    state: State,
}

/// Whether consensus may vote for a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The block is the valid successor of the parent consensus named.
    Valid,
    /// The block can never be valid in this context; the reason says why.
    Invalid(String),
    /// The bytes of this block (the one asked about or an ancestor) are needed first.
    Missing(BlockHash),
}

/// What [`Core::propose`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposed {
    /// A block with this hash, kept for broadcast and already counted as checked.
    Block(BlockHash),
    /// The parent (or an ancestor) is needed first.
    Missing(BlockHash),
    /// No block can be built on this parent.
    Declined(String),
    /// The block would be empty and its parent is younger than the empty-block interval: ask
    /// again at `until_ms`, or as soon as the mempool admits a transaction.
    Wait {
        /// When an empty block becomes due.
        until_ms: u64,
    },
}

/// What [`Core::insert_block`] did with a block from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Cached under this hash.
    New(BlockHash),
    /// Already known (cached, checked, finalized or known invalid).
    Known,
    /// At or below the finalized height: cannot matter any more.
    Stale,
    /// The cache is full of blocks nearer the tip.
    Full,
    /// The body does not match the header: not the block its hash names.
    Malformed(String),
}

/// One block appended by [`Core::finalize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizedBlock {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: BlockHash,
    /// Its timestamp, ms.
    pub timestamp_ms: u64,
    /// Its transactions' hashes, in order.
    pub tx_hashes: Vec<TxHash>,
}

/// What [`Core::finalize`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finality {
    /// Blocks were appended (possibly none) and transactions evicted; `error` is set if the
    /// store failed partway (the blocks listed were appended).
    Done {
        /// The blocks appended, in height order.
        blocks: Vec<FinalizedBlock>,
        /// Transactions dropped from the mempool for good, with the finalized state's reason.
        evicted: Vec<(TxHash, TxRejection)>,
        /// Why appending stopped early, if it did.
        error: Option<String>,
    },
    /// The block is already final.
    Already,
    /// The bytes of this block are needed first.
    Missing(BlockHash),
    /// The finalized block does not check against our chain: a safety violation (more than a
    /// third of the validators are faulty) or a bug. Nothing was appended.
    Failed(String),
}

/// How [`Core::resolve`] ended.
enum Resolution {
    Ready,
    Missing(BlockHash),
    Invalid(String),
}

/// The application state of one validator. See the module docs.
#[derive(Debug)]
pub struct Core<B: BlockStore> {
    chain: Chain<B>,
    checked: BTreeMap<BlockHash, Checked>,
    cache: BTreeMap<BlockHash, Block>,
    invalid: BTreeMap<BlockHash, (u64, String)>,
    finalized: BTreeMap<BlockHash, u64>,
    mempool: Mempool,
    max_cached: usize,
    /// Least time between a parent and an empty child, ms (0: no pacing).
    empty_block_interval_ms: u64,
}

impl<B: BlockStore> Core<B> {
    /// Wrap `chain` (its tip is the finalized tip), with a mempool of `mempool_capacity`
    /// transactions and room for `max_cached` unchecked blocks from peers.
    pub fn new(chain: Chain<B>, mempool_capacity: usize, max_cached: usize) -> Result<Core<B>, String> {
        let mut finalized = BTreeMap::new();
        for height in 0..=chain.head().height {
            match chain.block(height) {
                Ok(Some(block)) => {
                    finalized.insert(block.hash(), height);
                }
                Ok(None) => return Err(format!("missing block: height={height}")),
                Err(err) => return Err(err.to_string()),
            }
        }
        Ok(Core {
            chain,
            checked: BTreeMap::new(),
            cache: BTreeMap::new(),
            invalid: BTreeMap::new(),
            finalized,
            mempool: Mempool::new(mempool_capacity),
            max_cached: max_cached.max(1),
            empty_block_interval_ms: 0,
        })
    }

    /// Pace empty blocks: [`Core::propose`] builds one no sooner than `ms` after its parent's
    /// time (0, the default, builds at once).
    pub fn with_empty_block_interval(mut self, ms: u64) -> Core<B> {
        self.empty_block_interval_ms = ms;
        self
    }

    /// The finalized block hashes, by height from block 0.
    pub fn finalized_hashes(&self) -> Vec<BlockHash> {
        let mut hashes: Vec<(u64, BlockHash)> = self.finalized.iter().map(|(h, height)| (*height, *h)).collect();
        hashes.sort();
        hashes.into_iter().map(|(_, h)| h).collect()
    }

    /// The finalized chain.
    pub fn chain(&self) -> &Chain<B> {
        &self.chain
    }

    /// Give the finalized chain back.
    pub fn into_chain(self) -> Chain<B> {
        self.chain
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Put `tx` in the mempool. Its signature is checked here, once — the mempool builds blocks
    /// trusting it (`State::apply_presigned`), which halves the signature checks per transaction
    /// — and a transaction whose nonce the finalized state has already used is refused at once.
    pub fn submit(&mut self, tx: Transaction) -> Result<(TxHash, bool), RejectReason> {
        let state = self.chain.state();
        if tx.verify(state.chain_id()).is_err() {
            return Err(RejectReason::Ledger(TxRejection::BadSignature { signer: tx.signer }));
        }
        let expected = state.next_nonce(&tx.signer);
        if tx.nonce < expected {
            return Err(RejectReason::Ledger(TxRejection::BadNonce { signer: tx.signer, expected, found: tx.nonce }));
        }
        self.mempool.insert(tx)
    }

    /// How many blocks are checked but not final, and how many are cached unchecked.
    pub fn pending(&self) -> (usize, usize) {
        (self.checked.len(), self.cache.len())
    }

    /// The head and state after block `hash`, if it is the tip or a checked block.
    fn head_state(&self, hash: &BlockHash) -> Option<(Head, &State)> {
        let tip = self.chain.head();
        if *hash == tip.hash {
            return Some((tip, self.chain.state()));
        }
        self.checked.get(hash).map(|c| (Head::of(&c.block), &c.state))
    }

    /// Make block `hash` checked (or find it is the tip), checking any cached ancestors on the way.
    fn resolve(&mut self, hash: BlockHash) -> Resolution {
        let tip = self.chain.head();
        let mut path = Vec::new();
        let mut cur = hash;
        // Each step goes one height down; the walk ends at the tip's height at the latest.
        loop {
            if cur == tip.hash || self.checked.contains_key(&cur) {
                break;
            }
            if let Some((_, reason)) = self.invalid.get(&cur) {
                return Resolution::Invalid(format!("ancestor invalid: block={cur} reason={reason}"));
            }
            if let Some(height) = self.finalized.get(&cur) {
                return Resolution::Invalid(format!(
                    "builds on a block below the finalized tip: block={cur} height={height} tip_height={}",
                    tip.height
                ));
            }
            let Some(block) = self.cache.get(&cur) else {
                return Resolution::Missing(cur);
            };
            if block.height <= tip.height {
                return Resolution::Invalid(format!(
                    "conflicts with the finalized chain: block={cur} height={} tip_height={}",
                    block.height, tip.height
                ));
            }
            if let Some(&child) = path.last() {
                let child_height = self.cache.get(&child).map_or(0, |b: &Block| b.height);
                if block.height.saturating_add(1) != child_height {
                    let reason = format!("parent height is not one below: parent={cur} height={}", block.height);
                    self.mark_invalid(&path, &reason);
                    return Resolution::Invalid(reason);
                }
            }
            path.push(cur);
            cur = block.prev_hash;
        }
        while let Some(hash) = path.pop() {
            let Some(block) = self.cache.remove(&hash) else {
                return Resolution::Missing(hash);
            };
            let checked = match self.head_state(&block.prev_hash) {
                Some((head, state)) => {
                    // A transaction in the mempool had its signature checked on entry; its hash
                    // covers the signature, so the block's copy is that transaction. With
                    // gossip most of a block is already in every mempool.
                    let presigned = |hash: &TxHash| self.mempool.contains(hash);
                    check_next_presigned(state, &head, &block, Some(&presigned))
                }
                None => return Resolution::Missing(block.prev_hash),
            };
            match checked {
                Ok(state) => {
                    self.checked.insert(hash, Checked { block, state });
                }
                Err(err) => {
                    let reason = format!("block={hash} height={} reason={err}", block.height);
                    self.invalid.insert(hash, (block.height, reason.clone()));
                    self.mark_invalid(&path, &reason);
                    return Resolution::Invalid(reason);
                }
            }
        }
        Resolution::Ready
    }

    /// Remember the cached blocks in `path` (descendants of a bad block) as invalid.
    fn mark_invalid(&mut self, path: &[BlockHash], reason: &str) {
        for hash in path {
            if let Some(block) = self.cache.remove(hash) {
                self.invalid.insert(*hash, (block.height, format!("descends from an invalid block: {reason}")));
            }
        }
    }

    /// Whether block `payload`, built on `parent`, may be voted for. See the module docs.
    pub fn verify(&mut self, parent: BlockHash, payload: BlockHash) -> Verdict {
        if let Some((_, reason)) = self.invalid.get(&payload) {
            return Verdict::Invalid(reason.clone());
        }
        let prev = if let Some(c) = self.checked.get(&payload) {
            c.block.prev_hash
        } else if let Some(b) = self.cache.get(&payload) {
            b.prev_hash
        } else if let Some(&height) = self.finalized.get(&payload) {
            // Consensus does not ask about a block it finalized, but the answer is still defined:
            // a final block is valid on its own parent.
            return match self.chain.block(height) {
                Ok(Some(block)) if block.prev_hash == parent => Verdict::Valid,
                Ok(Some(block)) => Verdict::Invalid(format!(
                    "wrong parent: block={payload} prev_hash={} consensus_parent={parent}",
                    block.prev_hash
                )),
                Ok(None) | Err(_) => {
                    Verdict::Invalid(format!("final block unreadable: block={payload} height={height}"))
                }
            };
        } else {
            return Verdict::Missing(payload);
        };
        if prev != parent {
            return Verdict::Invalid(format!(
                "wrong parent: block={payload} prev_hash={prev} consensus_parent={parent}"
            ));
        }
        match self.resolve(payload) {
            Resolution::Ready => Verdict::Valid,
            Resolution::Missing(hash) => Verdict::Missing(hash),
            Resolution::Invalid(reason) => Verdict::Invalid(reason),
        }
    }

    /// Build a block on `parent` at `now_ms` (or the parent's time, if later). See the module docs.
    pub fn propose(&mut self, parent: BlockHash, now_ms: u64) -> Proposed {
        match self.resolve(parent) {
            Resolution::Ready => {}
            Resolution::Missing(hash) => return Proposed::Missing(hash),
            Resolution::Invalid(reason) => return Proposed::Declined(reason),
        }
        let Some((head, state)) = self.head_state(&parent) else {
            return Proposed::Declined(format!("parent not checked: block={parent}"));
        };
        let (block, state) = build_block(&head, state, &self.mempool, now_ms);
        let until_ms = head.timestamp_ms.saturating_add(self.empty_block_interval_ms);
        if block.txs.is_empty() && now_ms < until_ms {
            return Proposed::Wait { until_ms };
        }
        let hash = block.hash();
        self.checked.entry(hash).or_insert(Checked { block, state });
        Proposed::Block(hash)
    }

    /// Keep a block that arrived from a peer (or was fetched). See the module docs.
    pub fn insert_block(&mut self, block: Block) -> Inserted {
        let hash = block.hash();
        if self.checked.contains_key(&hash)
            || self.cache.contains_key(&hash)
            || self.finalized.contains_key(&hash)
            || self.invalid.contains_key(&hash)
        {
            return Inserted::Known;
        }
        let computed = block.compute_tx_root();
        if computed != block.tx_root {
            return Inserted::Malformed(format!(
                "body does not match header: block={hash} tx_root={} computed={computed}",
                block.tx_root
            ));
        }
        if block.height <= self.chain.head().height {
            return Inserted::Stale;
        }
        if self.cache.len() >= self.max_cached {
            let farthest = self.cache.iter().max_by_key(|(h, b)| (b.height, **h)).map(|(h, b)| (*h, b.height));
            match farthest {
                Some((far, height)) if height > block.height => {
                    self.cache.remove(&far);
                }
                _ => return Inserted::Full,
            }
        }
        self.cache.insert(hash, block);
        Inserted::New(hash)
    }

    /// The encoded block with this hash, if known (cached, checked or finalized).
    pub fn block_bytes(&self, hash: &BlockHash) -> Option<Vec<u8>> {
        if let Some(c) = self.checked.get(hash) {
            return Some(c.block.encode());
        }
        if let Some(b) = self.cache.get(hash) {
            return Some(b.encode());
        }
        let height = *self.finalized.get(hash)?;
        self.chain.store().block(height).ok().flatten()
    }

    /// The block with this hash, if cached or checked (not finalized).
    pub fn pending_block(&self, hash: &BlockHash) -> Option<&Block> {
        self.checked.get(hash).map(|c| &c.block).or_else(|| self.cache.get(hash))
    }

    /// Block `payload` was finalized by consensus: append it and its ancestors. See the module
    /// docs.
    pub fn finalize(&mut self, payload: BlockHash) -> Finality {
        if self.finalized.contains_key(&payload) {
            return Finality::Already;
        }
        match self.resolve(payload) {
            Resolution::Ready => {}
            Resolution::Missing(hash) => return Finality::Missing(hash),
            Resolution::Invalid(reason) => return Finality::Failed(reason),
        }
        let tip = self.chain.head();
        let mut path = Vec::new();
        let mut cur = payload;
        while cur != tip.hash {
            let Some(c) = self.checked.get(&cur) else {
                return Finality::Failed(format!("ancestor not checked: block={cur}"));
            };
            path.push(cur);
            cur = c.block.prev_hash;
        }
        let mut blocks = Vec::new();
        let mut included = BTreeSet::new();
        let mut error = None;
        while let Some(hash) = path.pop() {
            let Some(c) = self.checked.remove(&hash) else { break };
            let (block, state) = (c.block, c.state);
            let record = FinalizedBlock {
                height: block.height,
                hash,
                timestamp_ms: block.timestamp_ms,
                tx_hashes: block.tx_hashes(),
            };
            // Checked when it was verified (`check_next` on this parent); not again.
            match self.chain.append_checked(block, state) {
                Ok(_) => {
                    self.finalized.insert(hash, record.height);
                    included.extend(record.tx_hashes.iter().copied());
                    blocks.push(record);
                }
                Err(err) => {
                    error = Some(format!("append failed: height={} block={hash} reason={err}", record.height));
                    break;
                }
            }
        }
        self.prune();
        let head = self.chain.head();
        let evicted = self.mempool.prune(&included, self.chain.state(), head.timestamp_ms);
        Finality::Done { blocks, evicted, error }
    }

    /// Forget what can no longer matter after the tip moved: blocks at or below it and checked
    /// blocks that do not descend from it.
    /// Up to `max` consecutive headers above height `above` of the chain ending at `end`,
    /// lowest height first, for a validator catching up ([`crate::sync`]): from the blocks
    /// checked or cached here while they descend to the finalized chain, then from the finalized
    /// chain itself (each header read from the stored block without decoding its transactions).
    /// Empty if `end` is not held here. A stored block that does not read stops the walk (the
    /// answer is then shorter, never wrong: the asker checks every link).
    pub fn headers_ending_at(&self, end: BlockHash, above: u64, max: usize) -> Vec<BlockHeader> {
        let mut headers = Vec::new();
        let mut cur = end;
        while headers.len() < max {
            if let Some(block) = self.pending_block(&cur) {
                if block.height <= above {
                    break;
                }
                headers.push(block.header());
                cur = block.prev_hash;
                continue;
            }
            if let Some(&height) = self.finalized.get(&cur) {
                let lowest = height.saturating_sub((max - headers.len()) as u64 - 1).max(above.saturating_add(1));
                for h in (lowest..=height).rev() {
                    match self.chain.store().block(h).ok().flatten().map(|bytes| Block::decode_header(&bytes)) {
                        Some(Ok(header)) => headers.push(header),
                        _ => break,
                    }
                }
            }
            break;
        }
        headers.reverse();
        headers
    }

    /// The encoded blocks named by `hashes`, in order, stopping at the first not held here or
    /// at the first that would take the total past `max_bytes` (at least one is returned if the
    /// first is held). For serving [`crate::wire::WireMessage::BlocksRequest`].
    pub fn blocks_by_hash(&self, hashes: &[BlockHash], max_bytes: usize) -> Vec<Vec<u8>> {
        let mut blocks = Vec::new();
        let mut total = 0usize;
        for hash in hashes {
            let Some(bytes) = self.block_bytes(hash) else { break };
            total = total.saturating_add(bytes.len());
            if !blocks.is_empty() && total > max_bytes {
                break;
            }
            blocks.push(bytes);
        }
        blocks
    }

    /// Append blocks fetched by a catch-up as the next finalized blocks: each is checked in full
    /// on its parent's state (rules 1–6, signatures included: these blocks were never verified
    /// here), and all are written in one durable step, or none. The caller vouches that they are
    /// finalized: their hashes link up to a block a finalization certificate named
    /// ([`crate::sync`]). Then, as after [`Core::finalize`], dead forks are forgotten and the
    /// mempool is pruned.
    pub fn append_synced(&mut self, blocks: Vec<Block>) -> Finality {
        let records: Vec<FinalizedBlock> = blocks
            .iter()
            .map(|block| FinalizedBlock {
                height: block.height,
                hash: block.hash(),
                timestamp_ms: block.timestamp_ms,
                tx_hashes: block.tx_hashes(),
            })
            .collect();
        if let Err(err) = self.chain.append_all(blocks) {
            let first = records.first().map_or(0, |r| r.height);
            return Finality::Failed(format!("synced blocks do not check: from_height={first} reason={err}"));
        }
        let mut included = BTreeSet::new();
        for record in &records {
            self.finalized.insert(record.hash, record.height);
            self.checked.remove(&record.hash);
            included.extend(record.tx_hashes.iter().copied());
        }
        self.prune();
        let head = self.chain.head();
        let evicted = self.mempool.prune(&included, self.chain.state(), head.timestamp_ms);
        Finality::Done { blocks: records, evicted, error: None }
    }

    fn prune(&mut self) {
        let tip = self.chain.head();
        self.cache.retain(|_, b| b.height > tip.height);
        self.invalid.retain(|_, (height, _)| *height > tip.height);
        let mut by_height: Vec<(u64, BlockHash, BlockHash)> =
            self.checked.iter().map(|(h, c)| (c.block.height, *h, c.block.prev_hash)).collect();
        by_height.sort();
        let mut live: BTreeSet<BlockHash> = [tip.hash].into();
        for (height, hash, prev) in by_height {
            if height > tip.height && live.contains(&prev) {
                live.insert(hash);
            } else {
                self.checked.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::chain::genesis_block;
    use dainet_ledger::genesis::{Founder, Genesis};
    use dainet_ledger::hash::Digest;
    use dainet_ledger::identity::Keypair;
    use dainet_ledger::store::MemStore;
    use dainet_ledger::tx::TxBody;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    struct Fixture {
        kp: Keypair,
        genesis: Genesis,
    }

    impl Fixture {
        fn new() -> Fixture {
            let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
            let genesis = Genesis {
                name: "core".into(),
                timestamp_ms: 100,
                founders: vec![Founder { id: kp.node_id(), name: "a".into(), validator: true }],
                // The founder signs the rewards these tests submit, so it is the treasury.
                treasury: Some(kp.node_id()),
            };
            Fixture { kp, genesis }
        }

        fn core(&self) -> Core<MemStore> {
            Core::new(Chain::create(MemStore::new(), self.genesis.clone()).unwrap(), 100, 8).unwrap()
        }

        fn tx(&self, nonce: u64) -> Transaction {
            Transaction::sign(
                &self.kp,
                &self.genesis.chain_id(),
                nonce,
                TxBody::Reward { node: self.kp.node_id(), amount: 1 },
            )
        }

        fn block0(&self) -> BlockHash {
            genesis_block(&self.genesis).hash()
        }
    }

    #[test]
    fn empty_blocks_wait_for_the_interval_and_a_transaction_does_not() {
        let f = Fixture::new();
        // Block 0 is at 100 ms; an empty child is due at 600 ms.
        let mut core = f.core().with_empty_block_interval(500);
        assert_eq!(core.propose(f.block0(), 200), Proposed::Wait { until_ms: 600 });
        assert_eq!(core.pending(), (0, 0), "nothing kept for a block not proposed");
        let Proposed::Block(empty) = core.propose(f.block0(), 600) else { panic!("due at 600 ms") };
        assert!(core.pending_block(&empty).unwrap().txs.is_empty());
        let admitted = core.mempool().admitted();
        core.submit(f.tx(1)).unwrap();
        assert_eq!(core.mempool().admitted(), admitted + 1);
        let Proposed::Block(full) = core.propose(f.block0(), 200) else { panic!("a transaction goes at once") };
        assert_eq!(core.pending_block(&full).unwrap().txs.len(), 1);
        // Without pacing, an empty block is built at once.
        assert!(matches!(f.core().propose(f.block0(), 200), Proposed::Block(_)));
    }

    #[test]
    fn proposes_on_unfinalized_parent_and_peers_verify_the_same_blocks() {
        let f = Fixture::new();
        let mut leader = f.core();
        let mut peer = f.core();
        leader.submit(f.tx(1)).unwrap();
        let Proposed::Block(b1) = leader.propose(f.block0(), 200) else { panic!() };
        leader.submit(f.tx(2)).unwrap();
        // Block 2 builds on block 1 before block 1 is final.
        let Proposed::Block(b2) = leader.propose(b1, 150) else { panic!() };
        let block1 = leader.pending_block(&b1).unwrap().clone();
        let block2 = leader.pending_block(&b2).unwrap().clone();
        assert_eq!(block1.txs.len(), 1);
        assert_eq!(block2.txs.len(), 1, "tx 1 is in the parent, so only tx 2 is new");
        assert_eq!(block2.timestamp_ms, 200, "time never goes backwards");

        // The peer sees block 2 first: it must ask for block 1, not guess.
        assert_eq!(peer.insert_block(block2.clone()), Inserted::New(b2));
        assert_eq!(peer.verify(b1, b2), Verdict::Missing(b1));
        assert_eq!(peer.insert_block(block1), Inserted::New(b1));
        assert_eq!(peer.verify(b1, b2), Verdict::Valid);
        assert!(matches!(peer.verify(f.block0(), b2), Verdict::Invalid(_)), "wrong parent");

        // Finalizing block 2 appends block 1 then block 2, on both.
        for core in [&mut leader, &mut peer] {
            let Finality::Done { blocks, error, .. } = core.finalize(b2) else { panic!() };
            assert_eq!(error, None);
            assert_eq!(blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![1, 2]);
            assert_eq!(core.chain().head().hash, b2);
            assert_eq!(core.finalize(b2), Finality::Already);
            assert_eq!(core.pending(), (0, 0));
        }
        assert!(leader.mempool().is_empty(), "included transactions leave the pool");
    }

    #[test]
    fn invalid_blocks_are_rejected_with_a_reason_and_garbage_never_panics() {
        let f = Fixture::new();
        let mut leader = f.core();
        let mut peer = f.core();
        leader.submit(f.tx(1)).unwrap();
        let Proposed::Block(b1) = leader.propose(f.block0(), 200) else { panic!() };
        let good = leader.pending_block(&b1).unwrap().clone();

        // A wrong state root: decodes, matches its tx root, fails rule 6.
        let mut bad = good.clone();
        bad.state_root = Digest::of(b"lie");
        let bad_hash = bad.hash();
        assert_eq!(peer.insert_block(bad), Inserted::New(bad_hash));
        let Verdict::Invalid(reason) = peer.verify(f.block0(), bad_hash) else { panic!() };
        assert!(reason.contains("state root"), "{reason}");
        assert!(matches!(peer.verify(f.block0(), bad_hash), Verdict::Invalid(_)), "remembered");

        // A body swapped under an honest header is refused outright.
        let mut swapped = good.clone();
        swapped.txs.clear();
        assert!(matches!(peer.insert_block(swapped), Inserted::Malformed(_)));
        assert_eq!(peer.verify(f.block0(), b1), Verdict::Missing(b1));
        assert_eq!(peer.insert_block(good), Inserted::New(b1));
        assert_eq!(peer.verify(f.block0(), b1), Verdict::Valid);

        // A final block is valid on its own parent only; nothing can be built below the tip.
        let Finality::Done { .. } = peer.finalize(b1) else { panic!() };
        assert_eq!(peer.verify(f.block0(), b1), Verdict::Valid);
        assert!(matches!(peer.verify(b1, b1), Verdict::Invalid(_)));
        assert!(matches!(peer.propose(f.block0(), 300), Proposed::Declined(_)));
    }

    #[test]
    fn cache_is_bounded_and_prefers_blocks_near_the_tip() {
        let f = Fixture::new();
        let mut core = f.core();
        let mut far = genesis_block(&f.genesis);
        for height in 100..108 {
            far.height = height;
            assert!(matches!(core.insert_block(far.clone()), Inserted::New(_)));
        }
        far.height = 200;
        assert_eq!(core.insert_block(far.clone()), Inserted::Full);
        far.height = 1;
        assert!(matches!(core.insert_block(far), Inserted::New(_)), "evicts the farthest");
        assert_eq!(core.pending(), (0, 8));
        let stale = genesis_block(&f.genesis);
        assert_eq!(core.insert_block(stale), Inserted::Known);
    }

    #[test]
    fn stale_submission_is_refused() {
        let f = Fixture::new();
        let mut core = f.core();
        core.submit(f.tx(1)).unwrap();
        let Proposed::Block(b1) = core.propose(f.block0(), 200) else { panic!() };
        let Finality::Done { .. } = core.finalize(b1) else { panic!() };
        assert!(matches!(core.submit(f.tx(1)), Err(RejectReason::Ledger(TxRejection::BadNonce { .. }))));
    }
}
