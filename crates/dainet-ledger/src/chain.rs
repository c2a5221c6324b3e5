//! The chain: a genesis, the blocks after it, and the state they lead to, kept in a
//! [`BlockStore`].
//!
//! This module owns the rules that make a block the valid next block (checked identically by
//! [`Chain::propose_block`], [`Chain::verify_block`], [`Chain::append`] and [`Chain::open`]):
//! 1. its height is the tip's plus one and its `prev_hash` is the tip's hash;
//! 2. its timestamp is not below the tip's (block times never go backwards; they are arguments,
//!    never read from a clock here);
//! 3. its encoding fits [`MAX_BLOCK_BYTES`];
//! 4. its `tx_root` is the Merkle root of its transactions;
//! 5. **every** transaction applies to the parent state at the block's timestamp — a block that
//!    carries a rejected transaction is invalid as a whole;
//! 6. its `state_root` is the root of the resulting state.
//!
//! [`Chain::append`] is write-ahead: the block is committed to the store (for
//! [`crate::store::RedbStore`], the redb transaction has committed) before the in-memory state
//! moves; on restart [`Chain::open`] rebuilds the state by replaying the stored blocks.

use crate::block::{Block, MAX_BLOCK_BYTES};
use crate::codec::CodecError;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::{BlockHash, Digest, TxHash};
use crate::merkle;
use crate::state::{State, TxRejection};
use crate::store::{BlockStore, StoreError};
use crate::tx::Transaction;

/// Room left in a block for everything but its transactions (header fields and length prefix).
const BLOCK_OVERHEAD: usize = 256;

/// Errors from building, checking or storing the chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The store failed.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// [`Chain::create`] was given a store that already holds a chain.
    #[error("store not empty: found={found}")]
    NotEmpty {
        /// What was found (`"genesis"` or `"blocks"`).
        found: &'static str,
    },
    /// [`Chain::open`] found no genesis.
    #[error("store holds no genesis")]
    NoGenesis,
    /// The genesis breaks a rule.
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The stored genesis does not decode.
    #[error("undecodable genesis: {0}")]
    UndecodableGenesis(CodecError),
    /// A stored block does not decode.
    #[error("undecodable block: height={height} reason={source}")]
    UndecodableBlock {
        /// The height it is stored at.
        height: u64,
        /// What the decoder said.
        source: CodecError,
    },
    /// A block below the tip is missing from the store.
    #[error("missing block: height={height}")]
    MissingBlock {
        /// The height.
        height: u64,
    },
    /// The stored block 0 is not the one the genesis defines.
    #[error("block 0 does not match the genesis")]
    GenesisBlockMismatch,
    /// Rule 1: not the next height.
    #[error("wrong height: expected={expected} found={found}")]
    WrongHeight {
        /// The tip's height plus one.
        expected: u64,
        /// The block's height.
        found: u64,
    },
    /// Rule 1: not built on the tip.
    #[error("wrong parent: height={height} expected={expected} found={found}")]
    WrongParent {
        /// The block's height.
        height: u64,
        /// The tip's hash.
        expected: BlockHash,
        /// The block's `prev_hash`.
        found: BlockHash,
    },
    /// Rule 2: the timestamp went backwards.
    #[error("timestamp regression: height={height} parent_ms={parent_ms} found_ms={found_ms}")]
    TimestampRegression {
        /// The block's height.
        height: u64,
        /// The parent's timestamp.
        parent_ms: u64,
        /// The block's timestamp.
        found_ms: u64,
    },
    /// Rule 3: the block is too large.
    #[error("block too large: height={height} bytes={bytes} max={max}")]
    TooLarge {
        /// The block's height.
        height: u64,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Rule 4: the transaction root does not match the transactions.
    #[error("tx root mismatch: height={height} header={header} computed={computed}")]
    TxRootMismatch {
        /// The block's height.
        height: u64,
        /// The root in the header.
        header: Digest,
        /// The root of the transactions carried.
        computed: Digest,
    },
    /// Rule 5: a transaction in the block does not apply.
    #[error("rejected transaction: height={height} index={index} tx={tx_hash} reason={reason}")]
    RejectedTx {
        /// The block's height.
        height: u64,
        /// The transaction's position in the block.
        index: usize,
        /// Its hash.
        tx_hash: TxHash,
        /// Why it was rejected.
        reason: TxRejection,
    },
    /// Rule 6: the state root does not match the replayed state.
    #[error("state root mismatch: height={height} header={header} computed={computed}")]
    StateRootMismatch {
        /// The block's height.
        height: u64,
        /// The root in the header.
        header: Digest,
        /// The root of the replayed state.
        computed: Digest,
    },
    /// The store's tip does not name the last block.
    #[error("tip mismatch: height={height} stored={stored} computed={computed}")]
    TipMismatch {
        /// The tip height.
        height: u64,
        /// The hash the store records.
        stored: BlockHash,
        /// The hash of the block at that height.
        computed: BlockHash,
    },
}

/// The chain's head: height, hash and timestamp of the last block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: BlockHash,
    /// Its timestamp.
    pub timestamp_ms: u64,
}

impl Head {
    /// The head a chain ending in `block` has.
    pub fn of(block: &Block) -> Head {
        Head { height: block.height, hash: block.hash(), timestamp_ms: block.timestamp_ms }
    }
}

/// Why [`Chain::propose_block`] left a transaction out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The state rejected it.
    Rejected(TxRejection),
    /// The block was full; it may fit in the next one.
    BlockFull,
}

/// A transaction left out of a proposed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Its hash.
    pub tx_hash: TxHash,
    /// Why.
    pub reason: DropReason,
}

/// A proposed block and what was left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Proposal {
    /// The block, valid on the current tip.
    pub block: Block,
    /// The transactions not included, with reasons, in the order given.
    pub dropped: Vec<Dropped>,
}

/// Block 0 for `genesis`: no transactions, `prev_hash` the genesis hash, the founders' state.
pub fn genesis_block(genesis: &Genesis) -> Block {
    Block {
        height: 0,
        prev_hash: genesis.hash(),
        tx_root: merkle::empty_root(),
        state_root: State::from_genesis(genesis).root(),
        timestamp_ms: genesis.timestamp_ms,
        txs: Vec::new(),
    }
}

/// Check `block` as the successor of `head` on `state` (rules 1–6); return the state after it.
pub(crate) fn check_next(state: &State, head: &Head, block: &Block) -> Result<State, ChainError> {
    let height = block.height;
    let expected = head.height.saturating_add(1);
    if height != expected {
        return Err(ChainError::WrongHeight { expected, found: height });
    }
    if block.prev_hash != head.hash {
        return Err(ChainError::WrongParent { height, expected: head.hash, found: block.prev_hash });
    }
    if block.timestamp_ms < head.timestamp_ms {
        return Err(ChainError::TimestampRegression {
            height,
            parent_ms: head.timestamp_ms,
            found_ms: block.timestamp_ms,
        });
    }
    let bytes = block.encode().len();
    if bytes > MAX_BLOCK_BYTES {
        return Err(ChainError::TooLarge { height, bytes, max: MAX_BLOCK_BYTES });
    }
    let tx_hashes = block.tx_hashes();
    let computed = merkle::root(&tx_hashes);
    if computed != block.tx_root {
        return Err(ChainError::TxRootMismatch { height, header: block.tx_root, computed });
    }
    let mut next = state.clone();
    for (index, (tx, tx_hash)) in block.txs.iter().zip(tx_hashes).enumerate() {
        next.apply(tx, block.timestamp_ms).map_err(|reason| ChainError::RejectedTx {
            height,
            index,
            tx_hash,
            reason,
        })?;
    }
    let computed = next.root();
    if computed != block.state_root {
        return Err(ChainError::StateRootMismatch { height, header: block.state_root, computed });
    }
    Ok(next)
}

/// A genesis, the blocks after it and the current state, backed by a [`BlockStore`].
///
/// Two ways in: [`Chain::create`] starts a new chain in an empty store; [`Chain::open`] replays
/// a stored one. One way forward: [`Chain::append`] a block that [`Chain::verify_block`] accepts
/// (typically one [`Chain::propose_block`] built, here or on another replica).
#[derive(Debug)]
pub struct Chain<S: BlockStore> {
    store: S,
    genesis: Genesis,
    state: State,
    head: Head,
}

impl<S: BlockStore> Chain<S> {
    /// Start a chain from `genesis` in an empty `store`, writing the genesis and block 0.
    pub fn create(mut store: S, genesis: Genesis) -> Result<Chain<S>, ChainError> {
        if store.genesis()?.is_some() {
            return Err(ChainError::NotEmpty { found: "genesis" });
        }
        if store.tip()?.is_some() || !store.heights()?.is_empty() {
            return Err(ChainError::NotEmpty { found: "blocks" });
        }
        genesis.validate()?;
        let block0 = genesis_block(&genesis);
        store.put_genesis(&genesis.encode())?;
        store.put_block(0, &block0.hash(), &block0.encode())?;
        let state = State::from_genesis(&genesis);
        Ok(Chain { store, genesis, state, head: Head::of(&block0) })
    }

    /// Open the chain in `store`, replaying and checking every block (rules 1–6) to rebuild the
    /// state. Fails at the first problem; [`crate::verify::verify`] lists them all.
    ///
    /// A store that holds a genesis but no block (a crash inside [`Chain::create`]) gets its
    /// block 0 written now.
    pub fn open(mut store: S) -> Result<Chain<S>, ChainError> {
        let bytes = store.genesis()?.ok_or(ChainError::NoGenesis)?;
        let genesis = Genesis::decode(&bytes).map_err(ChainError::UndecodableGenesis)?;
        genesis.validate()?;
        let block0 = genesis_block(&genesis);
        let mut state = State::from_genesis(&genesis);
        let mut head = Head::of(&block0);
        let Some(tip) = store.tip()? else {
            store.put_block(0, &block0.hash(), &block0.encode())?;
            return Ok(Chain { store, genesis, state, head });
        };
        if load(&store, 0)? != block0 {
            return Err(ChainError::GenesisBlockMismatch);
        }
        for height in 1..=tip.height {
            let block = load(&store, height)?;
            state = check_next(&state, &head, &block)?;
            head = Head::of(&block);
        }
        if head.hash != tip.hash {
            return Err(ChainError::TipMismatch { height: tip.height, stored: tip.hash, computed: head.hash });
        }
        Ok(Chain { store, genesis, state, head })
    }

    /// Build the next block from `txs` at `timestamp_ms`: transactions that apply are included in
    /// the order given, the others are left out with their reasons. Changes nothing; pass the
    /// block to [`Chain::append`] (or, under consensus, broadcast it and append once finalized).
    pub fn propose_block(
        &self,
        txs: impl IntoIterator<Item = Transaction>,
        timestamp_ms: u64,
    ) -> Result<Proposal, ChainError> {
        let height = self.head.height.saturating_add(1);
        if timestamp_ms < self.head.timestamp_ms {
            return Err(ChainError::TimestampRegression {
                height,
                parent_ms: self.head.timestamp_ms,
                found_ms: timestamp_ms,
            });
        }
        let mut state = self.state.clone();
        let mut included = Vec::new();
        let mut dropped = Vec::new();
        let mut budget = MAX_BLOCK_BYTES - BLOCK_OVERHEAD;
        for tx in txs {
            let size = tx.encode().len();
            if size > budget {
                dropped.push(Dropped { tx_hash: tx.hash(), reason: DropReason::BlockFull });
                continue;
            }
            match state.apply(&tx, timestamp_ms) {
                Ok(()) => {
                    budget -= size;
                    included.push(tx);
                }
                Err(reason) => dropped.push(Dropped { tx_hash: tx.hash(), reason: DropReason::Rejected(reason) }),
            }
        }
        let mut block = Block {
            height,
            prev_hash: self.head.hash,
            tx_root: Digest::ZERO,
            state_root: state.root(),
            timestamp_ms,
            txs: included,
        };
        block.tx_root = block.compute_tx_root();
        Ok(Proposal { block, dropped })
    }

    /// Check that `block` is the valid next block (rules 1–6) without changing anything; return
    /// the state it leads to. Deterministic: the answer depends only on the chain and the block,
    /// never on the local clock, so every honest replica agrees — what consensus needs of
    /// `Automaton::verify`.
    pub fn verify_block(&self, block: &Block) -> Result<State, ChainError> {
        check_next(&self.state, &self.head, block)
    }

    /// Check `block` and, if valid, commit it to the store and advance. Returns its hash.
    ///
    /// Write-ahead: returns `Ok` only after the store has durably committed the block; if the
    /// store fails, the chain in memory is unchanged.
    pub fn append(&mut self, block: Block) -> Result<BlockHash, ChainError> {
        let state = self.verify_block(&block)?;
        let head = Head::of(&block);
        self.store.put_block(head.height, &head.hash, &block.encode())?;
        self.state = state;
        self.head = head;
        Ok(head.hash)
    }

    /// The stored block at `height`, decoded.
    pub fn block(&self, height: u64) -> Result<Option<Block>, ChainError> {
        match self.store.block(height)? {
            Some(bytes) => {
                Block::decode(&bytes).map(Some).map_err(|source| ChainError::UndecodableBlock { height, source })
            }
            None => Ok(None),
        }
    }

    /// The state after the last block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last block's height, hash and timestamp.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Give the store back.
    pub fn into_store(self) -> S {
        self.store
    }
}

fn load<S: BlockStore + ?Sized>(store: &S, height: u64) -> Result<Block, ChainError> {
    let bytes = store.block(height)?.ok_or(ChainError::MissingBlock { height })?;
    Block::decode(&bytes).map_err(|source| ChainError::UndecodableBlock { height, source })
}
