//! Blocks: an ordered batch of transactions with the roots that commit to them and to the state
//! they lead to, hash-chained to their parent.
//!
//! This module owns the block format:
//! - a block's identity is [`Block::hash`], blake3 in [`Domain::BlockHeader`] over the encoding
//!   of its [`BlockHeader`] (height, parent hash, transaction root, state root, timestamp); the
//!   transactions are bound through `tx_root` ([`crate::merkle`]), so a header, its hash and a
//!   Merkle proof suffice to show a transaction is in the chain;
//! - block 0 has `prev_hash` = [`crate::genesis::Genesis::hash`] and no transactions; block `h+1`
//!   has `prev_hash` = the hash of block `h`;
//! - the wire and disk form is [`Block::encode`]: version byte [`BLOCK_VERSION`], then postcard,
//!   at most [`MAX_BLOCK_BYTES`]; [`Block::decode`] refuses anything else with a [`CodecError`].
//!
//! Whether a block is *valid* (its transactions apply, its roots match) depends on the state
//! before it and is checked by [`crate::chain`] and [`crate::verify`].

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::{BlockHash, Digest, Domain, TxHash};
use crate::merkle;
use crate::tx::Transaction;

/// The version byte of the block encoding this build writes and reads. A block carries its
/// transactions in their encoding, so a transaction format change is a block format change too:
/// version 1 held version-1 transactions ([`crate::tx::TX_VERSION`]) and is no longer read.
pub const BLOCK_VERSION: u8 = 2;
/// The most bytes one encoded block may take (4 MiB).
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// The most encoded transaction bytes a block builder puts in one block: [`MAX_BLOCK_BYTES`]
/// less room for the header fields and length prefixes.
pub const MAX_BLOCK_TX_BYTES: usize = MAX_BLOCK_BYTES - 256;

/// A block's header: everything its hash covers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Distance from block 0.
    pub height: u64,
    /// The parent's hash (the genesis hash for block 0).
    pub prev_hash: BlockHash,
    /// Merkle root over the transactions' hashes.
    pub tx_root: Digest,
    /// [`crate::state::State::root`] after applying the transactions.
    pub state_root: Digest,
    /// The proposer's timestamp, ms; never below the parent's.
    pub timestamp_ms: u64,
}

impl BlockHeader {
    /// blake3 in [`Domain::BlockHeader`] over the header's postcard encoding.
    pub fn hash(&self) -> BlockHash {
        Domain::BlockHeader.hash(&codec::to_bytes(self))
    }
}

/// A block: its header fields and its transactions.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Block {
    /// Distance from block 0.
    pub height: u64,
    /// The parent's hash (the genesis hash for block 0).
    pub prev_hash: BlockHash,
    /// Merkle root over the transactions' hashes.
    pub tx_root: Digest,
    /// The state root after applying the transactions.
    pub state_root: Digest,
    /// The proposer's timestamp, ms.
    pub timestamp_ms: u64,
    /// The transactions, in the order they apply.
    pub txs: Vec<Transaction>,
}

impl Block {
    /// The header this block's hash covers.
    pub fn header(&self) -> BlockHeader {
        BlockHeader {
            height: self.height,
            prev_hash: self.prev_hash,
            tx_root: self.tx_root,
            state_root: self.state_root,
            timestamp_ms: self.timestamp_ms,
        }
    }

    /// The block's hash: [`BlockHeader::hash`] of [`Block::header`].
    pub fn hash(&self) -> BlockHash {
        self.header().hash()
    }

    /// The hashes of the transactions, in order.
    pub fn tx_hashes(&self) -> Vec<TxHash> {
        self.txs.iter().map(Transaction::hash).collect()
    }

    /// The block with these fields and transactions, its `tx_root` computed from them: what a
    /// proposer builds.
    pub fn seal(
        height: u64,
        prev_hash: BlockHash,
        state_root: Digest,
        timestamp_ms: u64,
        txs: Vec<Transaction>,
    ) -> Block {
        let mut block = Block { height, prev_hash, tx_root: Digest::ZERO, state_root, timestamp_ms, txs };
        block.tx_root = block.compute_tx_root();
        block
    }

    /// The Merkle root the transactions actually have (compare with `tx_root`).
    pub fn compute_tx_root(&self) -> Digest {
        merkle::root(&self.tx_hashes())
    }

    /// The wire and disk form: [`BLOCK_VERSION`], then postcard.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(BLOCK_VERSION, self)
    }

    /// The header of an encoded block ([`Block::encode`]) without decoding its transactions:
    /// the header fields come first in the encoding, in [`BlockHeader`]'s order. For serving
    /// headers from stored blocks cheaply; the caller that needs the block itself decodes it all.
    /// Never panics, whatever the bytes.
    pub fn decode_header(bytes: &[u8]) -> Result<BlockHeader, CodecError> {
        codec::decode_prefix("block header", BLOCK_VERSION, MAX_BLOCK_BYTES, bytes)
    }

    /// Parse [`Block::encode`]'s output; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Block, CodecError> {
        codec::decode_canonical("block", BLOCK_VERSION, MAX_BLOCK_BYTES, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::tx::{ChainId, TxBody};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn block() -> Block {
        let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let chain = ChainId::from_name("b");
        let txs: Vec<Transaction> = (1..=3)
            .map(|n| Transaction::sign(&kp, &chain, n, TxBody::Reward { node: kp.node_id(), amount: n }))
            .collect();
        let mut b = Block {
            height: 4,
            prev_hash: Digest::of(b"parent"),
            tx_root: Digest::ZERO,
            state_root: Digest::of(b"state"),
            timestamp_ms: 1_000,
            txs,
        };
        b.tx_root = b.compute_tx_root();
        b
    }

    #[test]
    fn the_header_reads_from_the_encoded_block_alone() {
        let b = block();
        let bytes = b.encode();
        assert_eq!(Block::decode_header(&bytes).unwrap(), b.header());
        assert_eq!(Block::decode_header(&bytes).unwrap().hash(), b.hash());
        // Truncated inside the header fields, or another version: an error, never a panic.
        assert!(matches!(Block::decode_header(&bytes[..20]), Err(CodecError::Truncated { .. })));
        let mut other = bytes.clone();
        other[0] = BLOCK_VERSION + 1;
        assert!(matches!(Block::decode_header(&other), Err(CodecError::Version { .. })));
        assert!(matches!(Block::decode_header(&[]), Err(CodecError::Empty { .. })));
    }

    #[test]
    fn round_trips() {
        let b = block();
        let bytes = b.encode();
        assert_eq!(bytes[0], BLOCK_VERSION);
        assert_eq!(Block::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn hash_covers_every_header_field_and_only_those() {
        let b = block();
        let h = b.hash();
        let edits: [fn(&mut Block); 5] = [
            |b| b.height += 1,
            |b| b.prev_hash.0[0] ^= 1,
            |b| b.tx_root.0[0] ^= 1,
            |b| b.state_root.0[0] ^= 1,
            |b| b.timestamp_ms += 1,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut c = b.clone();
            edit(&mut c);
            assert_ne!(c.hash(), h, "field {i}");
        }
        // The transactions are bound through tx_root, not the header hash directly.
        let mut c = b.clone();
        c.txs.pop();
        assert_eq!(c.hash(), h);
        assert_ne!(c.compute_tx_root(), c.tx_root);
    }

    #[test]
    fn decode_errors_say_what_was_wrong() {
        let bytes = block().encode();
        assert_eq!(Block::decode(&[]), Err(CodecError::Empty { record: "block" }));
        assert!(matches!(Block::decode(&bytes[..bytes.len() / 2]), Err(CodecError::Truncated { .. })));
        // Version 1, whose transactions had another format, is refused by its version byte.
        let mut v = bytes.clone();
        v[0] = 1;
        assert!(matches!(Block::decode(&v), Err(CodecError::Version { found: 1, supported: BLOCK_VERSION, .. })));
        let mut v = bytes.clone();
        v.push(0);
        assert!(matches!(Block::decode(&v), Err(CodecError::Trailing { extra: 1, .. })));
        let mut big = vec![BLOCK_VERSION];
        big.resize(MAX_BLOCK_BYTES + 1, 0);
        assert!(matches!(Block::decode(&big), Err(CodecError::TooLarge { .. })));
        for len in 1..bytes.len() {
            assert!(Block::decode(&bytes[..len]).is_err(), "len={len}");
        }
    }
}
