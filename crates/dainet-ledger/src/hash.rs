//! Hashes: the 32-byte blake3 [`Digest`] every other module commits to, and the hex form people
//! read.
//!
//! This module owns two guarantees:
//! - [`Digest::of`] is plain blake3, so a blob's address is what `b3sum` prints for the file;
//! - every *structural* hash in the ledger (transactions, Merkle nodes, block headers, the state,
//!   the genesis, proposals) goes through [`Domain::hash`], blake3 in key-derivation mode under a context
//!   string of its own, so a value of one kind can never be passed off as a value of another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors from parsing hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// The text had the wrong number of characters.
    #[error("wrong hex length: expected={expected} found={found}")]
    Length {
        /// Hex characters expected.
        expected: usize,
        /// Hex characters found.
        found: usize,
    },
    /// A character was not a hex digit.
    #[error("not a hex digit: position={position} char={ch:?}")]
    Digit {
        /// Byte offset of the bad character.
        position: usize,
        /// The character itself.
        ch: char,
    },
}

/// A 32-byte blake3 hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

/// The hash of a transaction ([`crate::tx::Transaction::hash`]).
pub type TxHash = Digest;
/// The hash of a block header ([`crate::block::Block::hash`]).
pub type BlockHash = Digest;

impl Digest {
    /// The all-zero digest.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Plain blake3 of `bytes`: the content address of a blob.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl FromStr for Digest {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        from_hex(s, &mut out)?;
        Ok(Digest(out))
    }
}

/// A hashing domain: blake3 in key-derivation mode under a fixed context string.
///
/// The context strings are part of the ledger format; changing one changes every hash of that
/// kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Domain {
    /// A transaction's hash (the Merkle leaf's input).
    Tx,
    /// A transaction's signing message (used by [`crate::tx`], hashed by ed25519 itself).
    TxSigning,
    /// A Merkle leaf.
    MerkleLeaf,
    /// A Merkle interior node.
    MerkleNode,
    /// The Merkle root of no transactions.
    MerkleEmpty,
    /// A block header.
    BlockHeader,
    /// The ledger state.
    State,
    /// The genesis configuration.
    Genesis,
    /// A chain id: the hash of a whole genesis.
    ChainId,
    /// A chain id derived from a name alone (tests and examples built outside any genesis).
    ChainName,
    /// A proposal's id: the hash of the body its approvers sign ([`crate::state::proposal_id`]).
    Proposal,
}

impl Domain {
    /// The context string of this domain.
    pub fn context(self) -> &'static str {
        match self {
            Domain::Tx => "dainet-ledger v1 transaction hash",
            Domain::TxSigning => "dainet-ledger v1 transaction signature",
            Domain::MerkleLeaf => "dainet-ledger v1 merkle leaf",
            Domain::MerkleNode => "dainet-ledger v1 merkle node",
            Domain::MerkleEmpty => "dainet-ledger v1 merkle empty",
            Domain::BlockHeader => "dainet-ledger v1 block header",
            Domain::State => "dainet-ledger v1 state",
            Domain::Genesis => "dainet-ledger v1 genesis",
            Domain::ChainId => "dainet-ledger v2 chain id",
            Domain::ChainName => "dainet-ledger v1 chain name",
            Domain::Proposal => "dainet-ledger v1 proposal",
        }
    }

    /// A hasher for this domain, for input that arrives in parts.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_derive_key(self.context())
    }

    /// Hash `bytes` in this domain.
    pub fn hash(self, bytes: &[u8]) -> Digest {
        Digest(*self.hasher().update(bytes).finalize().as_bytes())
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parse exactly `out.len() * 2` hex digits (either case) into `out`.
pub(crate) fn from_hex(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    let expected = out.len() * 2;
    if s.len() != expected {
        return Err(HexError::Length { expected, found: s.len() });
    }
    let bytes = s.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let hi = nibble(bytes[2 * i]).ok_or_else(|| bad_digit(s, 2 * i))?;
        let lo = nibble(bytes[2 * i + 1]).ok_or_else(|| bad_digit(s, 2 * i + 1))?;
        *slot = (hi << 4) | lo;
    }
    Ok(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn bad_digit(s: &str, position: usize) -> HexError {
    // `s` may hold multi-byte characters; report the one that starts at or covers `position`.
    let ch = s.char_indices().take_while(|(i, _)| *i <= position).last().map_or('?', |(_, c)| c);
    HexError::Digit { position, ch }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_is_plain_blake3() {
        // The blake3 test vector for the empty input.
        assert_eq!(Digest::of(b"").to_hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    }

    #[test]
    fn hex_round_trips_and_accepts_uppercase() {
        let d = Digest::of(b"dainet");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!(d.to_string().to_uppercase().parse::<Digest>(), Ok(d));
    }

    #[test]
    fn hex_rejects_wrong_length_and_bad_digits() {
        assert_eq!("abcd".parse::<Digest>(), Err(HexError::Length { expected: 64, found: 4 }));
        let mut s = Digest::of(b"x").to_hex();
        s.replace_range(10..11, "g");
        assert_eq!(s.parse::<Digest>(), Err(HexError::Digit { position: 10, ch: 'g' }));
        // A multi-byte character must not panic.
        let s = format!("é{}", "0".repeat(62));
        assert!(matches!(s.parse::<Digest>(), Err(HexError::Digit { position: 0, ch: 'é' })));
    }

    #[test]
    fn domains_separate() {
        let all = [
            Domain::Tx,
            Domain::TxSigning,
            Domain::MerkleLeaf,
            Domain::MerkleNode,
            Domain::MerkleEmpty,
            Domain::BlockHeader,
            Domain::State,
            Domain::Genesis,
            Domain::ChainId,
            Domain::ChainName,
            Domain::Proposal,
        ];
        let hashes: std::collections::BTreeSet<Digest> = all.iter().map(|d| d.hash(b"same input")).collect();
        assert_eq!(hashes.len(), all.len());
        assert!(!hashes.contains(&Digest::of(b"same input")));
    }
}
