//! The block channel's wire format: what validators send each other besides votes.
//!
//! Consensus agrees on block *hashes*; the bytes travel here, and so do the transactions waiting
//! for a block. Three messages, each one tag byte and a body:
//!
//! | tag | message | body |
//! |---|---|---|
//! | `0` | [`WireMessage::Block`] | [`Block::encode`] (its own version byte, then postcard) |
//! | `1` | [`WireMessage::Request`] | the 32-byte block hash wanted |
//! | `2` | [`WireMessage::Transactions`] | a count `n`, 1 to [`MAX_BATCH_TXS`], then `n` records: a length and [`Transaction::encode`] (both integers `u32`, little-endian) |
//! | `3` | [`WireMessage::HeadersRequest`] | the 32-byte hash of the highest block wanted, the height above which headers are wanted (`u64`), the most headers wanted (`u32`) |
//! | `4` | [`WireMessage::Headers`] | a count `n`, 0 to [`MAX_SYNC_HEADERS`], then `n` records: a length and a header ([`BLOCK_VERSION`], then postcard), lowest height first |
//! | `5` | [`WireMessage::BlocksRequest`] | a count `n`, 1 to [`MAX_SYNC_BLOCKS`], then `n` 32-byte block hashes |
//! | `6` | [`WireMessage::Blocks`] | a count `n`, 0 to [`MAX_SYNC_BLOCKS`], then `n` records: a length and [`Block::encode`] |
//!
//! A validator broadcasts the block it proposes; one that is asked to verify (or finalize) a
//! hash whose bytes it lacks requests them from every peer until one answers. A validator gossips
//! the transactions submitted to it, in batches ([`transaction_batches`]), so that whichever
//! validator leads next can propose them. A validator that is behind catches up by ranges
//! ([`crate::sync`]): headers ending at a finalized hash, then the blocks they name; an empty
//! answer means "not held here".
//!
//! This module owns the encoding and the guarantee that [`WireMessage::decode`] never panics and
//! never allocates beyond its input: any byte string from a peer is either a message or a
//! [`WireError`] that says what was wrong. No message is larger than [`MAX_WIRE_BYTES`].

use dainet_ledger::block::{Block, BlockHeader, BLOCK_VERSION, MAX_BLOCK_BYTES};
use dainet_ledger::codec::{self, CodecError};
use dainet_ledger::hash::{BlockHash, Digest};
use dainet_ledger::tx::{Transaction, MAX_TX_BYTES};

/// Tag of [`WireMessage::Block`].
pub const TAG_BLOCK: u8 = 0;
/// Tag of [`WireMessage::Request`].
pub const TAG_REQUEST: u8 = 1;
/// Tag of [`WireMessage::Transactions`].
pub const TAG_TRANSACTIONS: u8 = 2;
/// Tag of [`WireMessage::HeadersRequest`].
pub const TAG_HEADERS_REQUEST: u8 = 3;
/// Tag of [`WireMessage::Headers`].
pub const TAG_HEADERS: u8 = 4;
/// Tag of [`WireMessage::BlocksRequest`].
pub const TAG_BLOCKS_REQUEST: u8 = 5;
/// Tag of [`WireMessage::Blocks`].
pub const TAG_BLOCKS: u8 = 6;
/// The largest message this module produces or accepts: a maximal block in a
/// [`WireMessage::Blocks`] of one (its tag, count and length prefix).
pub const MAX_WIRE_BYTES: usize = MAX_BLOCK_BYTES + 1 + 2 * U32_BYTES;
/// Most headers in one [`WireMessage::Headers`] (about 110 KiB of them).
pub const MAX_SYNC_HEADERS: usize = 1_024;
/// Most blocks asked for or sent in one [`WireMessage::BlocksRequest`] / [`WireMessage::Blocks`].
pub const MAX_SYNC_BLOCKS: usize = 256;
/// The most bytes a header record takes (its version byte and five fields, varints at their
/// widest), so a [`WireMessage::Headers`] of [`MAX_SYNC_HEADERS`] always fits a message.
const MAX_HEADER_BYTES: usize = 1 + 3 * 32 + 2 * 10;
/// Most transactions in one [`WireMessage::Transactions`].
pub const MAX_BATCH_TXS: usize = 4_096;
/// The count at the start of a batch, and the length prefix of each transaction in it.
const U32_BYTES: usize = 4;

/// A message on the block channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireMessage {
    /// A block's full contents.
    Block(Block),
    /// "Send me the block with this hash."
    Request(BlockHash),
    /// Transactions waiting for a block, to put in the receiver's mempool. [`WireMessage::encode`]
    /// writes whatever it is given; [`transaction_batches`] splits a longer list into messages
    /// that [`WireMessage::decode`] accepts.
    Transactions(Vec<Transaction>),
    /// "Send me the headers of the finalized chain ending at `end`, those above height `above`,
    /// at most `max` of them."
    HeadersRequest {
        /// The highest block wanted.
        end: BlockHash,
        /// The asker's finalized height: no header at or below it is wanted.
        above: u64,
        /// The most headers wanted.
        max: u32,
    },
    /// Consecutive headers, lowest height first, the last one the requested `end`; empty when
    /// the sender does not hold `end`.
    Headers(Vec<BlockHeader>),
    /// "Send me these blocks", in this order.
    BlocksRequest(Vec<BlockHash>),
    /// The blocks asked for that the sender holds, in the order asked, stopping at the first it
    /// lacks or that would not fit the message.
    Blocks(Vec<Block>),
}

/// Why bytes from a peer are not a [`WireMessage`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// The message is longer than any this module produces.
    #[error("message too large: bytes={bytes} max={max}")]
    TooLarge {
        /// The message length.
        bytes: usize,
        /// [`MAX_WIRE_BYTES`].
        max: usize,
    },
    /// The first byte is no known tag.
    #[error("unknown message tag: tag={tag} bytes={bytes}")]
    UnknownTag {
        /// The tag found.
        tag: u8,
        /// The message length.
        bytes: usize,
    },
    /// A request does not carry exactly one hash.
    #[error("malformed block request: body_bytes={found} expected=32")]
    RequestLength {
        /// The body length found.
        found: usize,
    },
    /// A block message does not hold a decodable block.
    #[error("undecodable block: bytes={bytes} reason={reason}")]
    Block {
        /// The body length.
        bytes: usize,
        /// What the block decoder said.
        reason: CodecError,
    },
    /// A transaction batch is too short for its count.
    #[error("transaction batch without a count: body_bytes={found} expected>=4")]
    BatchHeader {
        /// The body length found.
        found: usize,
    },
    /// A transaction batch holds no transaction.
    #[error("empty transaction batch")]
    EmptyBatch,
    /// A transaction batch announces more than [`MAX_BATCH_TXS`] transactions.
    #[error("too many transactions in a batch: count={found} max={max}")]
    BatchCount {
        /// The count announced.
        found: usize,
        /// [`MAX_BATCH_TXS`].
        max: usize,
    },
    /// A transaction batch ends inside a length prefix or inside the transaction it announces.
    #[error("truncated transaction batch: index={index} needed={needed} left={left}")]
    BatchTruncated {
        /// The position of the transaction being read.
        index: usize,
        /// The bytes its prefix (or its prefix's announced length) needed.
        needed: usize,
        /// The bytes the body had left.
        left: usize,
    },
    /// A transaction in a batch does not decode.
    #[error("undecodable transaction in a batch: index={index} reason={reason}")]
    Transaction {
        /// Its position in the batch.
        index: usize,
        /// What the transaction decoder said.
        reason: CodecError,
    },
    /// Bytes follow the last transaction a batch announced.
    #[error("trailing bytes after a transaction batch: count={count} extra={extra}")]
    BatchTrailing {
        /// The count announced.
        count: usize,
        /// The bytes left over.
        extra: usize,
    },
    /// A catch-up message (headers or blocks, or a request for them) is malformed.
    #[error("malformed {message}: {reason}")]
    Sync {
        /// Which message: `"headers request"`, `"headers"`, `"blocks request"` or `"blocks"`.
        message: &'static str,
        /// What was wrong.
        reason: RecordError,
    },
}

/// What is wrong with a counted list of records (see [`WireError::Sync`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Too short for the fields it must hold.
    #[error("too short: body_bytes={found} expected>={expected}")]
    Short {
        /// The body length found.
        found: usize,
        /// The least length.
        expected: usize,
    },
    /// The count is outside what the message allows.
    #[error("count out of range: count={found} min={min} max={max}")]
    Count {
        /// The count announced.
        found: usize,
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// The body ends inside a record.
    #[error("truncated: index={index} needed={needed} left={left}")]
    Truncated {
        /// The record being read.
        index: usize,
        /// The bytes it needed.
        needed: usize,
        /// The bytes left.
        left: usize,
    },
    /// A record does not decode.
    #[error("undecodable record: index={index} reason={reason}")]
    Record {
        /// Its position.
        index: usize,
        /// What its decoder said.
        reason: CodecError,
    },
    /// Bytes follow the last record.
    #[error("trailing bytes: count={count} extra={extra}")]
    Trailing {
        /// The count announced.
        count: usize,
        /// The bytes left over.
        extra: usize,
    },
}

impl WireMessage {
    /// The tag byte, then the body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            WireMessage::Block(block) => block_message(&block.encode()),
            WireMessage::Request(hash) => {
                let mut out = Vec::with_capacity(33);
                out.push(TAG_REQUEST);
                out.extend_from_slice(hash.as_bytes());
                out
            }
            WireMessage::Transactions(txs) => {
                let mut out = vec![TAG_TRANSACTIONS];
                out.extend_from_slice(&u32_le(txs.len()));
                for tx in txs {
                    push_record(&mut out, &tx.encode());
                }
                out
            }
            WireMessage::HeadersRequest { end, above, max } => {
                let mut out = Vec::with_capacity(1 + 32 + 8 + U32_BYTES);
                out.push(TAG_HEADERS_REQUEST);
                out.extend_from_slice(end.as_bytes());
                out.extend_from_slice(&above.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
                out
            }
            WireMessage::Headers(headers) => {
                let mut out = vec![TAG_HEADERS];
                out.extend_from_slice(&u32_le(headers.len()));
                for header in headers {
                    push_record(&mut out, &codec::encode(BLOCK_VERSION, header));
                }
                out
            }
            WireMessage::BlocksRequest(hashes) => {
                let mut out = Vec::with_capacity(1 + U32_BYTES + 32 * hashes.len());
                out.push(TAG_BLOCKS_REQUEST);
                out.extend_from_slice(&u32_le(hashes.len()));
                for hash in hashes {
                    out.extend_from_slice(hash.as_bytes());
                }
                out
            }
            WireMessage::Blocks(blocks) => {
                let encoded: Vec<Vec<u8>> = blocks.iter().map(Block::encode).collect();
                blocks_message(&encoded)
            }
        }
    }

    /// Parse [`WireMessage::encode`]'s output. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<WireMessage, WireError> {
        if bytes.len() > MAX_WIRE_BYTES {
            return Err(WireError::TooLarge { bytes: bytes.len(), max: MAX_WIRE_BYTES });
        }
        let (&tag, body) = bytes.split_first().ok_or(WireError::Empty)?;
        match tag {
            TAG_BLOCK => Block::decode(body)
                .map(WireMessage::Block)
                .map_err(|reason| WireError::Block { bytes: body.len(), reason }),
            TAG_REQUEST => {
                let hash: [u8; 32] = body.try_into().map_err(|_| WireError::RequestLength { found: body.len() })?;
                Ok(WireMessage::Request(Digest(hash)))
            }
            TAG_TRANSACTIONS => decode_transactions(body).map(WireMessage::Transactions),
            TAG_HEADERS_REQUEST => {
                let sync = |reason| WireError::Sync { message: "headers request", reason };
                let expected = 32 + 8 + U32_BYTES;
                if body.len() != expected {
                    return Err(sync(RecordError::Short { found: body.len(), expected }));
                }
                let (end, rest) = body.split_at(32);
                let (above, max) = rest.split_at(8);
                let end: [u8; 32] = end.try_into().unwrap_or([0; 32]);
                let above = u64::from_le_bytes(above.try_into().unwrap_or([0; 8]));
                let max = read_u32(max).map_or(0, |(max, _)| max);
                if max == 0 || max > MAX_SYNC_HEADERS {
                    return Err(sync(RecordError::Count { found: max, min: 1, max: MAX_SYNC_HEADERS }));
                }
                Ok(WireMessage::HeadersRequest { end: Digest(end), above, max: u32::try_from(max).unwrap_or(u32::MAX) })
            }
            TAG_HEADERS => decode_records(body, 0, MAX_SYNC_HEADERS, |bytes| {
                codec::decode_canonical("block header", BLOCK_VERSION, MAX_HEADER_BYTES, bytes)
            })
            .map(WireMessage::Headers)
            .map_err(|reason| WireError::Sync { message: "headers", reason }),
            TAG_BLOCKS_REQUEST => {
                let sync = |reason| WireError::Sync { message: "blocks request", reason };
                let (count, rest) =
                    read_u32(body).ok_or(sync(RecordError::Short { found: body.len(), expected: U32_BYTES }))?;
                if count == 0 || count > MAX_SYNC_BLOCKS {
                    return Err(sync(RecordError::Count { found: count, min: 1, max: MAX_SYNC_BLOCKS }));
                }
                let (hashes, trailing) = rest.as_chunks::<32>();
                if hashes.len() < count {
                    return Err(sync(RecordError::Truncated { index: hashes.len(), needed: 32, left: trailing.len() }));
                }
                if hashes.len() > count || !trailing.is_empty() {
                    let extra = rest.len() - 32 * count;
                    return Err(sync(RecordError::Trailing { count, extra }));
                }
                Ok(WireMessage::BlocksRequest(hashes.iter().map(|h| Digest(*h)).collect()))
            }
            TAG_BLOCKS => decode_records(body, 0, MAX_SYNC_BLOCKS, Block::decode)
                .map(WireMessage::Blocks)
                .map_err(|reason| WireError::Sync { message: "blocks", reason }),
            tag => Err(WireError::UnknownTag { tag, bytes: bytes.len() }),
        }
    }
}

/// The [`WireMessage::Block`] message for a block already encoded ([`Block::encode`]): for
/// relaying stored bytes without decoding them.
pub fn block_message(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 1);
    out.push(TAG_BLOCK);
    out.extend_from_slice(encoded);
    out
}

/// The largest message a validator of a committee of `validators` sends on any channel: a
/// block-channel message of up to `max_block_message` bytes, or simplex's largest vote or
/// certificate, whichever is larger.
pub fn max_message_size(validators: usize, max_block_message: usize) -> u32 {
    let validators = u32::try_from(validators).unwrap_or(u32::MAX);
    commonware_p2p::max_message_size(&[
        commonware_consensus::simplex::max_payload_size::<crate::types::Scheme, crate::types::Payload>(validators),
        max_block_message,
    ])
}

/// The [`WireMessage::Blocks`] message for blocks already encoded ([`Block::encode`]): for
/// serving stored bytes without decoding them.
pub fn blocks_message(encoded: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + U32_BYTES + encoded.iter().map(|b| U32_BYTES + b.len()).sum::<usize>());
    out.push(TAG_BLOCKS);
    out.extend_from_slice(&u32_le(encoded.len()));
    for block in encoded {
        push_record(&mut out, block);
    }
    out
}

/// The length of a [`WireMessage::Blocks`] message that holds blocks of these encoded lengths.
pub fn blocks_message_len(encoded_lengths: impl IntoIterator<Item = usize>) -> usize {
    1 + U32_BYTES + encoded_lengths.into_iter().map(|len| U32_BYTES + len).sum::<usize>()
}

/// A count (`min..=max`), then that many length-prefixed records, each decoded by `decode`, and
/// nothing after them.
fn decode_records<T>(
    body: &[u8],
    min: usize,
    max: usize,
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<Vec<T>, RecordError> {
    let (count, mut rest) = read_u32(body).ok_or(RecordError::Short { found: body.len(), expected: U32_BYTES })?;
    if count < min || count > max {
        return Err(RecordError::Count { found: count, min, max });
    }
    let mut records = Vec::new();
    for index in 0..count {
        let (len, after) =
            read_u32(rest).ok_or(RecordError::Truncated { index, needed: U32_BYTES, left: rest.len() })?;
        if len > after.len() {
            return Err(RecordError::Truncated { index, needed: len, left: after.len() });
        }
        let (encoded, after) = after.split_at(len);
        records.push(decode(encoded).map_err(|reason| RecordError::Record { index, reason })?);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(RecordError::Trailing { count, extra: rest.len() });
    }
    Ok(records)
}

/// `n` as a little-endian `u32` (saturating: no message holds more than `u32::MAX` of anything).
fn u32_le(n: usize) -> [u8; U32_BYTES] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

/// Split off a little-endian `u32`, if there are four bytes.
fn read_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = bytes.split_first_chunk::<U32_BYTES>()?;
    Some((usize::try_from(u32::from_le_bytes(*n)).unwrap_or(usize::MAX), rest))
}

/// Append one batch record: the length, then the encoded transaction.
fn push_record(out: &mut Vec<u8>, encoded: &[u8]) {
    out.extend_from_slice(&u32_le(encoded.len()));
    out.extend_from_slice(encoded);
}

fn decode_transactions(body: &[u8]) -> Result<Vec<Transaction>, WireError> {
    let (count, mut rest) = read_u32(body).ok_or(WireError::BatchHeader { found: body.len() })?;
    if count == 0 {
        return Err(WireError::EmptyBatch);
    }
    if count > MAX_BATCH_TXS {
        return Err(WireError::BatchCount { found: count, max: MAX_BATCH_TXS });
    }
    let mut txs = Vec::new();
    for index in 0..count {
        let (len, after) =
            read_u32(rest).ok_or(WireError::BatchTruncated { index, needed: U32_BYTES, left: rest.len() })?;
        if len > after.len() {
            return Err(WireError::BatchTruncated { index, needed: len, left: after.len() });
        }
        let (encoded, after) = after.split_at(len);
        txs.push(Transaction::decode(encoded).map_err(|reason| WireError::Transaction { index, reason })?);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(WireError::BatchTrailing { count, extra: rest.len() });
    }
    Ok(txs)
}

/// Whether a transaction of `encoded_bytes` may be gossiped in messages of at most `max_bytes`:
/// a peer's [`Transaction::decode`] accepts at most [`MAX_TX_BYTES`], and the record (its length
/// prefix and its bytes) must fit in one message after the tag.
pub fn gossipable(encoded_bytes: usize, max_bytes: usize) -> bool {
    encoded_bytes <= MAX_TX_BYTES && 1 + 2 * U32_BYTES + encoded_bytes <= max_bytes.min(MAX_WIRE_BYTES)
}

/// Pack encoded transactions ([`Transaction::encode`]), in order, into as few
/// [`WireMessage::Transactions`] messages as hold them, each at most `max_bytes` (and
/// [`MAX_WIRE_BYTES`]) long and with at most [`MAX_BATCH_TXS`] transactions. A transaction that is
/// not [`gossipable`] in such messages is left out. No transactions, no messages.
pub fn transaction_batches<'a>(encoded: impl IntoIterator<Item = &'a [u8]>, max_bytes: usize) -> Vec<Vec<u8>> {
    let max_bytes = max_bytes.min(MAX_WIRE_BYTES);
    let start = || {
        let mut message = vec![TAG_TRANSACTIONS];
        message.extend_from_slice(&u32_le(0));
        message
    };
    let finish = |mut message: Vec<u8>, count: usize| {
        message[1..1 + U32_BYTES].copy_from_slice(&u32_le(count));
        message
    };
    let mut messages = Vec::new();
    let mut current = start();
    let mut count = 0;
    for tx in encoded {
        if !gossipable(tx.len(), max_bytes) {
            continue;
        }
        if count == MAX_BATCH_TXS || current.len() + U32_BYTES + tx.len() > max_bytes {
            messages.push(finish(std::mem::replace(&mut current, start()), count));
            count = 0;
        }
        push_record(&mut current, tx);
        count += 1;
    }
    if count > 0 {
        messages.push(finish(current, count));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::chain::genesis_block;
    use dainet_ledger::genesis::{Founder, Genesis};
    use dainet_ledger::identity::Keypair;
    use dainet_ledger::tx::{ChainId, TxBody};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn block() -> Block {
        let id = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(3)).node_id();
        genesis_block(&Genesis {
            name: "wire".into(),
            timestamp_ms: 0,
            founders: vec![Founder { id, name: "a".into(), validator: true }],
            treasury: None,
        })
    }

    fn txs(count: u64) -> Vec<Transaction> {
        let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(5));
        let chain = ChainId::from_name("wire");
        (1..=count)
            .map(|nonce| Transaction::sign(&kp, &chain, nonce, TxBody::Reward { node: kp.node_id(), amount: nonce }))
            .collect()
    }

    #[test]
    fn round_trips() {
        for msg in [
            WireMessage::Block(block()),
            WireMessage::Request(Digest::of(b"x")),
            WireMessage::Transactions(txs(1)),
            WireMessage::Transactions(txs(7)),
            WireMessage::HeadersRequest { end: Digest::of(b"x"), above: 7, max: MAX_SYNC_HEADERS as u32 },
            WireMessage::Headers(vec![]),
            WireMessage::Headers(vec![block().header(); 3]),
            WireMessage::BlocksRequest(vec![Digest::of(b"x"), Digest::of(b"y")]),
            WireMessage::Blocks(vec![]),
            WireMessage::Blocks(vec![block(), block()]),
        ] {
            assert_eq!(WireMessage::decode(&msg.encode()).unwrap(), msg);
        }
    }

    #[test]
    fn catch_up_messages_refuse_what_no_honest_peer_sends() {
        let sync = |message, reason| Err(WireError::Sync { message, reason });
        let request = WireMessage::HeadersRequest { end: Digest::of(b"x"), above: 0, max: 1 }.encode();
        assert_eq!(
            WireMessage::decode(&request[..40]),
            sync("headers request", RecordError::Short { found: 39, expected: 44 })
        );
        let zero = WireMessage::HeadersRequest { end: Digest::of(b"x"), above: 0, max: 0 }.encode();
        let too_many =
            WireMessage::HeadersRequest { end: Digest::of(b"x"), above: 0, max: 1 + MAX_SYNC_HEADERS as u32 };
        for bad in [zero, too_many.encode()] {
            assert!(matches!(
                WireMessage::decode(&bad),
                Err(WireError::Sync { reason: RecordError::Count { .. }, .. })
            ));
        }
        assert!(matches!(
            WireMessage::decode(&WireMessage::BlocksRequest(vec![]).encode()),
            Err(WireError::Sync { message: "blocks request", reason: RecordError::Count { found: 0, .. } })
        ));
        let two = WireMessage::BlocksRequest(vec![Digest::of(b"x"), Digest::of(b"y")]).encode();
        assert!(matches!(
            WireMessage::decode(&two[..two.len() - 1]),
            Err(WireError::Sync { reason: RecordError::Truncated { index: 1, .. }, .. })
        ));
        let mut trailing = two.clone();
        trailing.push(0);
        assert!(matches!(
            WireMessage::decode(&trailing),
            Err(WireError::Sync { reason: RecordError::Trailing { .. }, .. })
        ));
        let blocks = WireMessage::Blocks(vec![block()]).encode();
        assert!(matches!(
            WireMessage::decode(&blocks[..blocks.len() - 1]),
            Err(WireError::Sync { message: "blocks", reason: RecordError::Truncated { .. } })
        ));
        let mut header = WireMessage::Headers(vec![block().header()]).encode();
        header[9] ^= 0xff; // the header record's version byte
        assert!(matches!(
            WireMessage::decode(&header),
            Err(WireError::Sync { message: "headers", reason: RecordError::Record { index: 0, .. } })
        ));
        // The largest block fits a blocks message of one.
        assert_eq!(blocks_message_len([MAX_BLOCK_BYTES]), MAX_WIRE_BYTES);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(WireMessage::decode(&[]), Err(WireError::Empty));
        assert!(matches!(WireMessage::decode(&[9, 1, 2]), Err(WireError::UnknownTag { tag: 9, bytes: 3 })));
        assert!(matches!(WireMessage::decode(&[TAG_REQUEST, 1]), Err(WireError::RequestLength { found: 1 })));
        let good = WireMessage::Block(block()).encode();
        for len in 1..good.len() {
            assert!(WireMessage::decode(&good[..len]).is_err(), "truncated to {len}");
        }
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for len in 0..512 {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            for tag in [None, Some(TAG_BLOCK), Some(TAG_TRANSACTIONS)] {
                if let (Some(first), Some(tag)) = (bytes.first_mut(), tag) {
                    *first = tag;
                }
                let _ = WireMessage::decode(&bytes);
            }
        }
    }

    #[test]
    fn bad_transaction_batches_say_what_is_wrong() {
        assert_eq!(WireMessage::decode(&[TAG_TRANSACTIONS, 1, 0]), Err(WireError::BatchHeader { found: 2 }));
        assert_eq!(WireMessage::decode(&[TAG_TRANSACTIONS, 0, 0, 0, 0]), Err(WireError::EmptyBatch));
        assert_eq!(WireMessage::decode(&WireMessage::Transactions(vec![]).encode()), Err(WireError::EmptyBatch));
        let good = WireMessage::Transactions(txs(3)).encode();
        // Tag, count, first length: the first transaction starts at byte 9.
        let first_len = u32::from_le_bytes(good[5..9].try_into().unwrap()) as usize;
        let second = 9 + first_len;
        // Every cut, at a record boundary or not, is an error.
        for len in 1..good.len() {
            assert!(WireMessage::decode(&good[..len]).is_err(), "truncated to {len}");
        }
        assert_eq!(WireMessage::decode(&good[..7]), Err(WireError::BatchTruncated { index: 0, needed: 4, left: 2 }));
        assert_eq!(
            WireMessage::decode(&good[..12]),
            Err(WireError::BatchTruncated { index: 0, needed: first_len, left: 3 })
        );
        assert_eq!(
            WireMessage::decode(&good[..second]),
            Err(WireError::BatchTruncated { index: 1, needed: 4, left: 0 })
        );
        assert!(matches!(
            WireMessage::decode(&good[..good.len() - 1]),
            Err(WireError::BatchTruncated { index: 2, .. })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(WireMessage::decode(&trailing), Err(WireError::BatchTrailing { count: 3, extra: 1 }));
        // A garbled byte in the second transaction (its version byte), a zero-length record.
        let mut garbled = good.clone();
        garbled[second + 4] ^= 0xff;
        assert!(matches!(
            WireMessage::decode(&garbled),
            Err(WireError::Transaction { index: 1, reason: CodecError::Version { .. } })
        ));
        let mut empty_record = good[..second].to_vec();
        empty_record.extend_from_slice(&0u32.to_le_bytes());
        empty_record.extend_from_slice(&good[second..]);
        assert!(matches!(
            WireMessage::decode(&empty_record),
            Err(WireError::Transaction { index: 1, reason: CodecError::Empty { .. } })
        ));
        // A length beyond everything; a count beyond the bound; a message beyond the size bound.
        let mut huge = good[..5].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[1; 16]);
        assert_eq!(
            WireMessage::decode(&huge),
            Err(WireError::BatchTruncated { index: 0, needed: u32::MAX as usize, left: 16 })
        );
        let mut many = vec![TAG_TRANSACTIONS];
        many.extend_from_slice(&u32_le(MAX_BATCH_TXS + 1));
        many.extend_from_slice(&good[5..]);
        assert_eq!(
            WireMessage::decode(&many),
            Err(WireError::BatchCount { found: MAX_BATCH_TXS + 1, max: MAX_BATCH_TXS })
        );
        let mut oversized = good;
        oversized.resize(MAX_WIRE_BYTES + 1, 0);
        assert_eq!(
            WireMessage::decode(&oversized),
            Err(WireError::TooLarge { bytes: MAX_WIRE_BYTES + 1, max: MAX_WIRE_BYTES })
        );
    }

    #[test]
    fn batches_split_by_size_and_count_and_keep_order() {
        let all = txs(10);
        let encoded: Vec<Vec<u8>> = all.iter().map(Transaction::encode).collect();
        let record = U32_BYTES + encoded[0].len();
        assert_eq!(transaction_batches(std::iter::empty(), MAX_WIRE_BYTES), Vec::<Vec<u8>>::new());
        let one = transaction_batches(encoded.iter().map(Vec::as_slice), MAX_WIRE_BYTES);
        assert_eq!(one.len(), 1);
        assert_eq!(WireMessage::decode(&one[0]).unwrap(), WireMessage::Transactions(all.clone()));
        // Room for three records per message: 10 transactions in 4 messages, none lost or reordered.
        let max = 1 + U32_BYTES + 3 * record + record / 2;
        let split = transaction_batches(encoded.iter().map(Vec::as_slice), max);
        assert_eq!(split.len(), 4);
        let mut back = Vec::new();
        for message in &split {
            assert!(message.len() <= max);
            let Ok(WireMessage::Transactions(txs)) = WireMessage::decode(message) else { panic!() };
            back.extend(txs);
        }
        assert_eq!(back, all);
        // The count bound.
        let many: Vec<&[u8]> = std::iter::repeat_n(encoded[0].as_slice(), MAX_BATCH_TXS + 1).collect();
        let split = transaction_batches(many, MAX_WIRE_BYTES);
        assert_eq!(split.len(), 2);
        assert!(matches!(WireMessage::decode(&split[0]), Ok(WireMessage::Transactions(t)) if t.len() == MAX_BATCH_TXS));
        // A message too small for any record holds none.
        assert!(!gossipable(encoded[0].len(), record + U32_BYTES));
        assert!(gossipable(encoded[0].len(), 1 + U32_BYTES + record));
        assert!(transaction_batches(encoded.iter().map(Vec::as_slice), record + U32_BYTES).is_empty());
        assert!(!gossipable(MAX_TX_BYTES + 1, MAX_WIRE_BYTES));
    }
}
