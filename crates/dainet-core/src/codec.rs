//! The byte format of everything dainet stores or sends between nodes: one version byte, then
//! postcard. The ledger's records (transactions, blocks, the genesis) and the protocol's
//! messages (`dainet-protocol`'s `wire`) use it.
//!
//! This module owns the guarantee that decoding never panics and never trusts a length it has not
//! bounded: input longer than the record's maximum is refused before it is parsed (so no length
//! field inside it can claim more than that), and every failure is a [`CodecError`] that names
//! the record and what was wrong (empty, too large, an unknown version, cut short, malformed, or
//! followed by stray bytes).
//!
//! [`decode_canonical`] also refuses any encoding [`encode`] would not have written: postcard
//! writes each value one way, and decoding re-encodes the value and compares, so
//! `encode(decode(b)) == b` for every `b` that decodes. Hashes and signatures are taken over that
//! one encoding (the ledger's), which is what makes a flipped byte anywhere in a stored block
//! visible. Messages that are never hashed as bytes skip that second pass ([`decode`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors from decoding a ledger record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// There were no bytes at all.
    #[error("empty input: record={record}")]
    Empty {
        /// What was being decoded ("transaction", "block", "genesis", "message to a trainer", …).
        record: &'static str,
    },
    /// The input is longer than this record may be.
    #[error("record too large: record={record} bytes={bytes} max={max}")]
    TooLarge {
        /// What was being decoded.
        record: &'static str,
        /// Its length.
        bytes: usize,
        /// The most this record may take.
        max: usize,
    },
    /// The version byte is not one this build reads.
    #[error("unsupported version: record={record} found={found} supported={supported}")]
    Version {
        /// What was being decoded.
        record: &'static str,
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The input ended in the middle of a value.
    #[error("truncated: record={record} bytes={bytes}")]
    Truncated {
        /// What was being decoded.
        record: &'static str,
        /// How many bytes there were.
        bytes: usize,
    },
    /// The bytes do not form a valid value (bad enum tag, bad UTF-8, overlong varint, …).
    #[error("malformed: record={record} reason={reason}")]
    Malformed {
        /// What was being decoded.
        record: &'static str,
        /// What the parser objected to.
        reason: String,
    },
    /// The bytes decode, but not in the one form this format writes (an overlong varint, say), so
    /// two byte strings would name one value.
    #[error("non-canonical encoding: record={record}")]
    NonCanonical {
        /// What was being decoded.
        record: &'static str,
    },
    /// A whole value was read and bytes were left over.
    #[error("trailing bytes: record={record} extra={extra}")]
    Trailing {
        /// What was being decoded.
        record: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
}

/// `[version] ++ postcard(value)`.
pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let out = vec![version];
    // Serializing into a growable Vec fails only for types postcard cannot express (unsized
    // sequences, maps of unknown length); every encoded type is a plain derive, so this is an
    // internal invariant.
    postcard::to_extend(value, out).expect("postcard encodes every record type into a Vec")
}

/// Postcard alone (no version byte), for hashing and signing.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes every record type into a Vec")
}

/// The inverse of [`encode`], refusing input over `max` bytes and any encoding [`encode`] would not
/// have written.
pub fn decode_canonical<T: DeserializeOwned + Serialize>(
    record: &'static str,
    version: u8,
    max: usize,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let value = decode(record, version, max, bytes)?;
    if to_bytes(&value) != bytes[1..] {
        return Err(CodecError::NonCanonical { record });
    }
    Ok(value)
}

/// The inverse of [`encode`], refusing input over `max` bytes; a value may have other encodings
/// than the one [`encode`] writes (an overlong varint, say), so use it only for what is never
/// hashed or signed as bytes.
pub fn decode<T: DeserializeOwned>(
    record: &'static str,
    version: u8,
    max: usize,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let Some((&found, body)) = bytes.split_first() else {
        return Err(CodecError::Empty { record });
    };
    if bytes.len() > max {
        return Err(CodecError::TooLarge { record, bytes: bytes.len(), max });
    }
    if found != version {
        return Err(CodecError::Version { record, found, supported: version });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated { record, bytes: bytes.len() },
        other => CodecError::Malformed { record, reason: other.to_string() },
    })?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing { record, extra: rest.len() });
    }
    Ok(value)
}

/// The record at the start of an [`encode`]d value, ignoring what follows it: for reading a
/// prefix of a larger record (a block's header fields, which come first in the block) without
/// decoding the rest. Refuses input over `max` bytes; never panics.
pub fn decode_prefix<T: DeserializeOwned>(
    record: &'static str,
    version: u8,
    max: usize,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let Some((&found, body)) = bytes.split_first() else {
        return Err(CodecError::Empty { record });
    };
    if bytes.len() > max {
        return Err(CodecError::TooLarge { record, bytes: bytes.len(), max });
    }
    if found != version {
        return Err(CodecError::Version { record, found, supported: version });
    }
    postcard::take_from_bytes::<T>(body).map(|(value, _)| value).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated { record, bytes: bytes.len() },
        other => CodecError::Malformed { record, reason: other.to_string() },
    })
}

/// A 4-byte value that travels as its little-endian bytes.
pub trait LeWord: Copy {
    /// Its little-endian bytes.
    fn to_le(self) -> [u8; 4];
    /// The value of little-endian `bytes`.
    fn from_le(bytes: [u8; 4]) -> Self;
}

impl LeWord for f32 {
    fn to_le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
    fn from_le(bytes: [u8; 4]) -> Self {
        f32::from_le_bytes(bytes)
    }
}

impl LeWord for u32 {
    fn to_le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
    fn from_le(bytes: [u8; 4]) -> Self {
        u32::from_le_bytes(bytes)
    }
}

/// `values` as little-endian bytes: a view without a copy on little-endian machines (the
/// formats' byte order), a converted copy elsewhere.
pub fn le_bytes<T: LeWord>(values: &[T]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 and u32 (the only LeWords) have no padding and every byte of them is
        // initialised; u8 has alignment 1; the length is the slice's size in bytes. On a
        // little-endian machine these are exactly the bytes `to_le` would give.
        let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
        std::borrow::Cow::Borrowed(bytes)
    }
    #[cfg(not(target_endian = "little"))]
    std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le()).collect())
}

/// The values of little-endian `bytes`, or `None` if their length is not a multiple of 4.
pub fn from_le_bytes<T: LeWord>(bytes: &[u8]) -> Option<Vec<T>> {
    let (words, rest) = bytes.as_chunks::<4>();
    rest.is_empty().then(|| words.iter().map(|w| T::from_le(*w)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_round_trip_bit_for_bit() {
        let values = [1.0f32, -0.0, f32::from_bits(0x7fc0_1234), f32::INFINITY];
        let bytes = le_bytes(&values);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        let back: Vec<f32> = from_le_bytes(&bytes).unwrap();
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), values.map(f32::to_bits));
        assert_eq!(le_bytes(&[0x0102_0304u32])[..], [4, 3, 2, 1]);
        assert_eq!(from_le_bytes::<u32>(&[1, 2, 3]), None);
    }
}
