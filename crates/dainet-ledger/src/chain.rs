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
//! 5. **every** transaction is signed by its signer for the chain id and applies to the parent
//!    state at the block's timestamp — a block that carries a rejected transaction is invalid as a
//!    whole;
//! 6. its `state_root` is the root of the resulting state.
//!
//! The rules live in one function, [`check_block`], which reports each broken rule as a
//! [`BlockFault`]: the chain stops at the first, the auditor ([`crate::verify`]) collects them all.
//!
//! [`Chain::append`] is write-ahead: the block is committed to the store (for
//! [`crate::store::RedbStore`], the redb transaction has committed) before the in-memory state
//! moves; on restart [`Chain::open`] rebuilds the state by replaying the stored blocks.

use std::ops::ControlFlow;

use crate::block::{Block, MAX_BLOCK_BYTES, MAX_BLOCK_TX_BYTES};
use crate::codec::CodecError;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::{BlockHash, Digest, TxHash};
use crate::identity::NodeId;
use crate::merkle;
use crate::state::{State, TxRejection};
use crate::store::{BlockStore, StoreError};
use crate::tx::{ChainId, Transaction};

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
    /// The stored blocks are missing, undecodable or out of step with the tip (the first
    /// such fault found).
    #[error(transparent)]
    Stored(#[from] StoreFault),
    /// The stored block 0 is not the one the genesis defines.
    #[error("block 0 does not match the genesis")]
    GenesisBlockMismatch,
    /// The block breaks one of the rules 1–6 (the first one found).
    #[error(transparent)]
    Block(#[from] BlockFault),
    /// [`Chain::extend_from`]: the other chain holds another block at this chain's head height
    /// (it forked below, or has another genesis), so it does not continue this chain.
    #[error("other chain does not continue this head: height={height} head={head} other={other}")]
    Diverged {
        /// This chain's head height.
        height: u64,
        /// This chain's head hash.
        head: BlockHash,
        /// The other chain's block hash at that height.
        other: BlockHash,
    },
    /// [`Chain::extend_from`]: the other chain ends below this chain's head.
    #[error("other chain is shorter than this one: height={height} other_height={other_height}")]
    Shorter {
        /// This chain's head height.
        height: u64,
        /// The other chain's head height.
        other_height: u64,
    },
}

/// What can be wrong with how a chain's blocks are stored, as opposed to what a block says
/// ([`BlockFault`]). Opening a chain stops at the first; [`crate::verify`] lists them all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreFault {
    /// A stored block does not decode.
    #[error("undecodable block: height={height} reason={source}")]
    UndecodableBlock {
        /// The height it is stored at.
        height: u64,
        /// What the decoder said.
        source: CodecError,
    },
    /// A height up to the tip has no block.
    #[error("missing block: height={height}")]
    MissingBlock {
        /// The height.
        height: u64,
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

/// One way a block fails to be the valid next block: a broken rule of this module's list.
///
/// The one list both the chain ([`Chain::verify_block`], [`Chain::append`], [`Chain::open`]: the
/// first fault is the error) and the auditor ([`crate::verify::verify`]: every fault is a
/// finding) report from, so the two can never disagree on what a valid block is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockFault {
    /// Rule 1: not the expected height.
    #[error("wrong height: expected={expected} found={found}")]
    WrongHeight {
        /// The height the block should have (the parent's plus one, or where it is stored).
        expected: u64,
        /// The block's height.
        found: u64,
    },
    /// Rule 1: not built on the parent.
    #[error("wrong parent: height={height} expected={expected} found={found}")]
    WrongParent {
        /// The block's height.
        height: u64,
        /// The parent's hash.
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
    /// Rule 5: a transaction's signature does not verify for the chain id.
    #[error("bad signature: height={height} index={index} tx={tx_hash} signer={signer}")]
    BadSignature {
        /// The block's height.
        height: u64,
        /// The transaction's position in the block.
        index: usize,
        /// Its hash.
        tx_hash: TxHash,
        /// The claimed signer.
        signer: NodeId,
    },
    /// Rule 5: a transaction does not apply to the state (for a reason other than its signature).
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
}

/// What [`check_block`] checks a block against.
pub struct BlockContext<'a> {
    /// The height the block must have.
    pub height: u64,
    /// The block below, when known: rules 1 (link) and 2 need it and are skipped without it.
    pub parent: Option<&'a Head>,
    /// The chain id signatures are checked for.
    pub chain_id: &'a ChainId,
    /// Transactions (by hash) whose signature the caller has already checked for this chain id,
    /// e.g. on entry to its mempool: theirs is not checked again. The hash covers the signature,
    /// so a transaction with these exact bytes is the one that was checked.
    pub presigned: Option<&'a dyn Fn(&TxHash) -> bool>,
}

impl std::fmt::Debug for BlockContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockContext")
            .field("height", &self.height)
            .field("parent", &self.parent)
            .field("chain_id", &self.chain_id)
            .field("presigned", &self.presigned.is_some())
            .finish()
    }
}

/// Check `block` against rules 1–6, handing each broken rule to `fault` in rule order; `fault`
/// answers whether to go on ([`ControlFlow::Break`] stops at once).
///
/// `state` is the state after the parent: the block's transactions are applied to it in place
/// (one that does not apply is reported and skipped, so the state stays that of the transactions
/// that did), then its root is compared (rule 6). With `None`, rules 5's replay and 6 are skipped
/// and only signatures are checked. A transaction with a bad signature is reported once and then
/// replayed as if signed, so one forged signature is one fault, not a cascade of nonce faults.
pub fn check_block(
    block: &Block,
    context: &BlockContext<'_>,
    mut state: Option<&mut State>,
    fault: &mut dyn FnMut(BlockFault) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let height = block.height;
    if height != context.height {
        fault(BlockFault::WrongHeight { expected: context.height, found: height })?;
    }
    if let Some(parent) = context.parent {
        if block.prev_hash != parent.hash {
            fault(BlockFault::WrongParent { height, expected: parent.hash, found: block.prev_hash })?;
        }
        if block.timestamp_ms < parent.timestamp_ms {
            fault(BlockFault::TimestampRegression {
                height,
                parent_ms: parent.timestamp_ms,
                found_ms: block.timestamp_ms,
            })?;
        }
    }
    let bytes = block.encode().len();
    if bytes > MAX_BLOCK_BYTES {
        fault(BlockFault::TooLarge { height, bytes, max: MAX_BLOCK_BYTES })?;
    }
    let tx_hashes = block.tx_hashes();
    let computed = merkle::root(&tx_hashes);
    if computed != block.tx_root {
        fault(BlockFault::TxRootMismatch { height, header: block.tx_root, computed })?;
    }
    for (index, (tx, tx_hash)) in block.txs.iter().zip(tx_hashes).enumerate() {
        let presigned = context.presigned.is_some_and(|checked| checked(&tx_hash));
        if !presigned && tx.verify(context.chain_id).is_err() {
            fault(BlockFault::BadSignature { height, index, tx_hash, signer: tx.signer })?;
        }
        if let Some(state) = state.as_deref_mut() {
            if let Err(reason) = state.apply_presigned(tx, block.timestamp_ms) {
                fault(BlockFault::RejectedTx { height, index, tx_hash, reason })?;
            }
        }
    }
    if let Some(state) = state {
        let computed = state.root();
        if computed != block.state_root {
            fault(BlockFault::StateRootMismatch { height, header: block.state_root, computed })?;
        }
    }
    ControlFlow::Continue(())
}

/// Check `block` as the successor of `head` on `state` (rules 1–6); return the state after it,
/// or the first broken rule.
pub fn check_next(state: &State, head: &Head, block: &Block) -> Result<State, ChainError> {
    check_next_presigned(state, head, block, None)
}

/// [`check_next`], skipping the signature check of the transactions `presigned` names (see
/// [`BlockContext::presigned`]).
pub fn check_next_presigned(
    state: &State,
    head: &Head,
    block: &Block,
    presigned: Option<&dyn Fn(&TxHash) -> bool>,
) -> Result<State, ChainError> {
    let mut next = state.clone();
    let mut first = None;
    let context = BlockContext {
        height: head.height.saturating_add(1),
        parent: Some(head),
        chain_id: state.chain_id(),
        presigned,
    };
    let _ = check_block(block, &context, Some(&mut next), &mut |f| {
        first = Some(f);
        ControlFlow::Break(())
    });
    match first {
        Some(f) => Err(ChainError::Block(f)),
        None => Ok(next),
    }
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
            return Err(ChainError::Stored(StoreFault::TipMismatch {
                height: tip.height,
                stored: tip.hash,
                computed: head.hash,
            }));
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
            return Err(ChainError::Block(BlockFault::TimestampRegression {
                height,
                parent_ms: self.head.timestamp_ms,
                found_ms: timestamp_ms,
            }));
        }
        let mut state = self.state.clone();
        let mut included = Vec::new();
        let mut dropped = Vec::new();
        let mut budget = MAX_BLOCK_TX_BYTES;
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
        let block = Block::seal(height, self.head.hash, state.root(), timestamp_ms, included);
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
        self.commit(block, state)
    }

    /// Write `block` and move the head to it, with `state` the state after it (already checked).
    fn commit(&mut self, block: Block, state: State) -> Result<BlockHash, ChainError> {
        let head = Head::of(&block);
        self.store.put_block(head.height, &head.hash, &block.encode())?;
        self.state = state;
        self.head = head;
        Ok(head.hash)
    }

    /// Commit `block`, which the caller has already checked with [`check_next`] against this
    /// chain's head, together with the `state` that check returned — without re-verifying every
    /// transaction signature (consensus checks each block once, when it votes; appending it
    /// after finalization need not pay for that again).
    ///
    /// The cheap rules are still enforced, so a mix-up cannot corrupt the chain: the height and
    /// parent must be the head's successor and `state` must hash to the block's state root;
    /// otherwise nothing changes and the fault is returned.
    pub fn append_checked(&mut self, block: Block, state: State) -> Result<BlockHash, ChainError> {
        let expected = self.head.height.saturating_add(1);
        if block.height != expected {
            return Err(BlockFault::WrongHeight { expected, found: block.height }.into());
        }
        if block.prev_hash != self.head.hash {
            let fault =
                BlockFault::WrongParent { height: block.height, expected: self.head.hash, found: block.prev_hash };
            return Err(fault.into());
        }
        let computed = state.root();
        if computed != block.state_root {
            return Err(
                BlockFault::StateRootMismatch { height: block.height, header: block.state_root, computed }.into()
            );
        }
        self.commit(block, state)
    }

    /// Check `blocks` as the next blocks in order and commit them all in one durable step (see
    /// [`BlockStore::put_blocks`]), or none: on any error the chain and the store are unchanged.
    /// Returns the new head. For catching up or persisting many finalized blocks at once.
    pub fn append_all(&mut self, blocks: impl IntoIterator<Item = Block>) -> Result<Head, ChainError> {
        let mut state = self.state.clone();
        let mut head = self.head;
        let mut encoded = Vec::new();
        for block in blocks {
            state = check_next(&state, &head, &block)?;
            head = Head::of(&block);
            encoded.push((head.height, head.hash, block.encode()));
        }
        self.store.put_blocks(&encoded)?;
        self.state = state;
        self.head = head;
        Ok(head)
    }

    /// Append the blocks `other` holds above this chain's head, each checked (rules 1–6), in one
    /// durable step ([`Chain::append_all`]); return the new head. For writing back a chain that
    /// continued this one elsewhere (e.g. a simulated ledger resumed from a copy of it) into the
    /// store this one lives in.
    ///
    /// `other` must hold this chain's head block at its height; the blocks are hash-linked down
    /// to block 0 (which names the genesis), so it then holds this whole chain. Otherwise nothing
    /// is written and the error says where they part: [`ChainError::Diverged`] (another block at
    /// this head's height) or [`ChainError::Shorter`]. An `other` whose head is this head appends
    /// nothing.
    pub fn extend_from<T: BlockStore>(&mut self, other: &Chain<T>) -> Result<Head, ChainError> {
        let (height, other_height) = (self.head.height, other.head.height);
        if other_height < height {
            return Err(ChainError::Shorter { height, other_height });
        }
        let base = other.block(height)?.ok_or(StoreFault::MissingBlock { height })?.hash();
        if base != self.head.hash {
            return Err(ChainError::Diverged { height, head: self.head.hash, other: base });
        }
        let mut blocks = Vec::new();
        for h in height.saturating_add(1)..=other_height {
            blocks.push(other.block(h)?.ok_or(StoreFault::MissingBlock { height: h })?);
        }
        self.append_all(blocks)
    }

    /// This chain written into the empty `store`: the genesis, then every block's stored bytes
    /// in one durable step ([`BlockStore::put_blocks`]). Returns the chain over `store`. Nothing is
    /// checked again: every block was checked when this chain took it.
    pub fn copy_into<T: BlockStore>(&self, store: T) -> Result<Chain<T>, ChainError> {
        let mut copy = Chain::create(store, self.genesis.clone())?;
        let mut blocks = Vec::new();
        for height in 1..=self.head.height {
            let bytes = self.store.block(height)?.ok_or(StoreFault::MissingBlock { height })?;
            let hash = Block::decode(&bytes).map_err(|source| StoreFault::UndecodableBlock { height, source })?.hash();
            blocks.push((height, hash, bytes));
        }
        copy.store.put_blocks(&blocks)?;
        copy.state = self.state.clone();
        copy.head = self.head;
        Ok(copy)
    }

    /// The stored block at `height`, decoded.
    pub fn block(&self, height: u64) -> Result<Option<Block>, ChainError> {
        match self.store.block(height)? {
            Some(bytes) => Block::decode(&bytes)
                .map(Some)
                .map_err(|source| ChainError::Stored(StoreFault::UndecodableBlock { height, source })),
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
    let bytes = store.block(height)?.ok_or(ChainError::Stored(StoreFault::MissingBlock { height }))?;
    Block::decode(&bytes).map_err(|source| ChainError::Stored(StoreFault::UndecodableBlock { height, source }))
}
