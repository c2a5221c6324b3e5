//! The block relay's wire format: what validators send each other on the block channel.
//!
//! Consensus agrees on block *hashes*; the bytes travel here. Two messages, each one tag byte
//! and a body:
//!
//! | tag | message | body |
//! |---|---|---|
//! | `0` | [`WireMessage::Block`] | [`Block::encode`] (its own version byte, then postcard) |
//! | `1` | [`WireMessage::Request`] | the 32-byte block hash wanted |
//!
//! A validator broadcasts the block it proposes; one that is asked to verify (or finalize) a
//! hash whose bytes it lacks requests them from every peer until one answers. This module owns
//! the encoding and the guarantee that [`WireMessage::decode`] never panics: any byte string
//! from a peer is either a message or a [`WireError`] that says what was wrong.

use dainet_ledger::block::{Block, MAX_BLOCK_BYTES};
use dainet_ledger::codec::CodecError;
use dainet_ledger::hash::{BlockHash, Digest};

/// Tag of [`WireMessage::Block`].
pub const TAG_BLOCK: u8 = 0;
/// Tag of [`WireMessage::Request`].
pub const TAG_REQUEST: u8 = 1;
/// The largest message this module produces or accepts: a maximal block and its tag.
pub const MAX_WIRE_BYTES: usize = MAX_BLOCK_BYTES + 1;

/// A message on the block channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireMessage {
    /// A block's full contents.
    Block(Block),
    /// "Send me the block with this hash."
    Request(BlockHash),
}

/// Why bytes from a peer are not a [`WireMessage`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
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
}

impl WireMessage {
    /// The tag byte, then the body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            WireMessage::Block(block) => {
                let body = block.encode();
                let mut out = Vec::with_capacity(body.len() + 1);
                out.push(TAG_BLOCK);
                out.extend_from_slice(&body);
                out
            }
            WireMessage::Request(hash) => {
                let mut out = Vec::with_capacity(33);
                out.push(TAG_REQUEST);
                out.extend_from_slice(hash.as_bytes());
                out
            }
        }
    }

    /// Parse [`WireMessage::encode`]'s output. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<WireMessage, WireError> {
        let (&tag, body) = bytes.split_first().ok_or(WireError::Empty)?;
        match tag {
            TAG_BLOCK => Block::decode(body)
                .map(WireMessage::Block)
                .map_err(|reason| WireError::Block { bytes: body.len(), reason }),
            TAG_REQUEST => {
                let hash: [u8; 32] = body.try_into().map_err(|_| WireError::RequestLength { found: body.len() })?;
                Ok(WireMessage::Request(Digest(hash)))
            }
            tag => Err(WireError::UnknownTag { tag, bytes: bytes.len() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::chain::genesis_block;
    use dainet_ledger::genesis::{Founder, Genesis};
    use dainet_ledger::identity::Keypair;
    use dainet_ledger::tx::ChainId;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn block() -> Block {
        let id = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(3)).node_id();
        genesis_block(&Genesis {
            chain_id: ChainId::from_name("wire"),
            timestamp_ms: 0,
            founders: vec![Founder { id, name: "a".into(), validator: true }],
        })
    }

    #[test]
    fn round_trips() {
        for msg in [WireMessage::Block(block()), WireMessage::Request(Digest::of(b"x"))] {
            assert_eq!(WireMessage::decode(&msg.encode()).unwrap(), msg);
        }
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
            let _ = WireMessage::decode(&bytes);
            if let Some(first) = bytes.first_mut() {
                *first = TAG_BLOCK;
            }
            let _ = WireMessage::decode(&bytes);
        }
    }
}
