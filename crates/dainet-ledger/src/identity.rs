//! Identities: an ed25519 [`Keypair`] per member, and the [`NodeId`] everyone else knows it by.
//!
//! This module owns three guarantees:
//! - keys come only from the random generator the caller passes ([`Keypair::generate`]); nothing
//!   here reads ambient randomness, so a seeded generator gives the same keys every run;
//! - a [`NodeId`] *is* the 32-byte public key, so naming a node and checking its signature need
//!   no directory;
//! - verification is ed25519 in its strict form ([`ed25519_dalek::VerifyingKey::verify_strict`]):
//!   weak keys and non-canonical signatures are refused, so one message has one valid signature
//!   per key and a transaction's hash cannot be changed by re-encoding its signature.
//!
//! A key file holds the 32-byte secret seed as 64 hex characters and a newline; loading also
//! accepts the 32 raw bytes. On unix the file is created with mode 0600 and never overwritten.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{from_hex, to_hex, HexError};

/// The longest key file [`Keypair::load`] reads: a key file is 64 hex characters and a line
/// break, or 32 raw bytes; 4 KiB leaves room for whitespace and refuses anything else unread.
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// Errors from keys, key files and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing a key file failed.
    #[error("key file i/o failed: path={path} reason={source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key file exists but does not hold a key.
    #[error("corrupt key file: path={path} reason={reason}")]
    CorruptKeyFile {
        /// The key file.
        path: PathBuf,
        /// What was wrong with its contents.
        reason: String,
    },
    /// A node id is not a valid ed25519 public key, so nothing it signs can verify.
    #[error("invalid public key: node={node}")]
    InvalidPublicKey {
        /// The node id.
        node: NodeId,
    },
    /// A signature does not verify under the node's key.
    #[error("bad signature: node={node}")]
    BadSignature {
        /// The node whose key was used.
        node: NodeId,
    },
}

/// A node's identity: its 32-byte ed25519 public key. Displays as 64 hex characters.
///
/// Parsing (`FromStr`) checks only the hex; [`NodeId::is_valid_key`] says whether the bytes are
/// a key anything could be signed with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether these bytes are a usable ed25519 public key: the canonical encoding of a curve
    /// point that is not of small order. (A non-canonical encoding would give one key two ids.)
    pub fn is_valid_key(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|k| !k.is_weak() && k.to_edwards().compress().to_bytes() == self.0)
    }

    /// Check that `signature` is this node's strict ed25519 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        let key = self.verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).map_err(|_| IdentityError::BadSignature { node: *self })
    }

    /// The decompressed public key. Decompressing costs about a third of a verification, and a
    /// ledger checks the same few signers' signatures over and over, so each thread keeps the
    /// last [`KEY_CACHE`] keys it decompressed (a cache: the answer is the same either way).
    fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        thread_local! {
            static KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> =
                std::cell::RefCell::default();
        }
        if let Some(key) = KEYS.with(|keys| keys.borrow().get(&self.0).copied()) {
            return Ok(key);
        }
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::InvalidPublicKey { node: *self })?;
        KEYS.with(|keys| {
            let mut keys = keys.borrow_mut();
            if keys.len() >= KEY_CACHE {
                keys.clear();
            }
            keys.insert(self.0, key);
        });
        Ok(key)
    }
}

/// Decompressed public keys each thread keeps (see [`NodeId::verify`]): 32 + 160 bytes each.
const KEY_CACHE: usize = 4096;

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &to_hex(&self.0)[..16])
    }
}

impl FromStr for NodeId {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        from_hex(s, &mut out)?;
        Ok(NodeId(out))
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", &to_hex(&self.0)[..16])
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

// serde derives arrays only up to 32 elements; a signature is written as a 64-tuple, which
// postcard encodes as the 64 raw bytes with no length prefix.
impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SigVisitor;
        impl<'de> Visitor<'de> for SigVisitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(64, SigVisitor)
    }
}

/// An ed25519 key pair. `Debug` shows only the node id; the secret never leaves except through
/// [`Keypair::secret_bytes`] and [`Keypair::save`].
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

impl Keypair {
    /// A new key pair drawn from `rng`, which must be a cryptographically secure generator
    /// (`rand_chacha::ChaCha20Rng` seeded from the OS in a node; seeded from a test seed in tests).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Keypair {
        Keypair { signing: SigningKey::generate(rng) }
    }

    /// The key pair whose secret seed is `secret`.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Keypair {
        Keypair { signing: SigningKey::from_bytes(&secret) }
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half: this key pair's node id.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// Sign `message`. Ed25519 signing is deterministic: no randomness is drawn.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// Write the secret seed to a new file at `path` as hex, mode 0600 on unix, synced to disk.
    ///
    /// Refuses to overwrite an existing file: losing a key loses an identity.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io { path: path.to_path_buf(), source };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let mut text = to_hex(&self.secret_bytes());
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Read a key file written by [`Keypair::save`] (hex, surrounding whitespace ignored) or one
    /// holding exactly the 32 raw secret bytes.
    ///
    /// At most [`MAX_KEY_FILE_BYTES`] are read: a longer file is refused without reading it whole.
    pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
        use std::io::Read;
        let io = |source| IdentityError::Io { path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        fs::File::open(path).map_err(io)?.take(MAX_KEY_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() > MAX_KEY_FILE_BYTES {
            let reason = format!("longer than {MAX_KEY_FILE_BYTES} bytes: not a key file (64 hex characters)");
            return Err(IdentityError::CorruptKeyFile { path: path.to_path_buf(), reason });
        }
        Self::decode_key_file(&bytes)
            .map_err(|reason| IdentityError::CorruptKeyFile { path: path.to_path_buf(), reason })
    }

    /// The contents of a key file ([`Keypair::load`]) already in memory: 64 hex characters
    /// (surrounding whitespace ignored) or exactly 32 raw bytes; `Err` says what was wrong.
    /// Never panics.
    pub fn decode_key_file(bytes: &[u8]) -> Result<Keypair, String> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let text = text.trim();
            if text.len() == 64 {
                let mut secret = [0u8; 32];
                from_hex(text, &mut secret).map_err(|e| e.to_string())?;
                return Ok(Keypair::from_secret_bytes(secret));
            }
        }
        match <[u8; 32]>::try_from(bytes) {
            Ok(secret) => Ok(Keypair::from_secret_bytes(secret)),
            Err(_) => Err(format!("expected 64 hex characters or 32 raw bytes, found {} bytes", bytes.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn keypair(seed: u64) -> Keypair {
        Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn generation_is_a_function_of_the_injected_rng() {
        assert_eq!(keypair(7).node_id(), keypair(7).node_id());
        assert_ne!(keypair(7).node_id(), keypair(8).node_id());
        assert!(keypair(7).node_id().is_valid_key());
    }

    #[test]
    fn node_id_hex_round_trips() {
        let id = keypair(1).node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert!("xyz".parse::<NodeId>().is_err());
    }

    #[test]
    fn sign_verify_and_reject_tampering() {
        let kp = keypair(2);
        let sig = kp.sign(b"round 3");
        kp.node_id().verify(b"round 3", &sig).unwrap();
        assert!(matches!(kp.node_id().verify(b"round 4", &sig), Err(IdentityError::BadSignature { .. })));
        let mut bad = sig;
        bad.0[5] ^= 1;
        assert!(kp.node_id().verify(b"round 3", &bad).is_err());
        assert!(keypair(3).node_id().verify(b"round 3", &sig).is_err());
    }

    #[test]
    fn invalid_public_key_is_an_error_not_a_panic() {
        // The identity point (y = 1) is weak; 0xff.. encodes y = p + 18, not canonical; and the
        // first y with no point on the curve, found with dalek as the oracle.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let not_a_point = (2u8..=255)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .unwrap();
        for id in [NodeId(identity), NodeId([0xff; 32]), NodeId(not_a_point)] {
            assert!(!id.is_valid_key());
            assert!(id.verify(b"m", &Signature([0; 64])).is_err());
        }
    }

    #[test]
    fn signature_serializes_as_64_raw_bytes() {
        let sig = keypair(4).sign(b"x");
        let bytes = postcard::to_allocvec(&sig).unwrap();
        assert_eq!(bytes, sig.0.to_vec());
        assert_eq!(postcard::from_bytes::<Signature>(&bytes).unwrap(), sig);
        assert!(postcard::from_bytes::<Signature>(&bytes[..63]).is_err());
    }

    #[test]
    fn key_file_round_trips_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let kp = keypair(5);
        kp.save(&path).unwrap();
        assert_eq!(Keypair::load(&path).unwrap().node_id(), kp.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Never overwrite an identity.
        assert!(matches!(keypair(6).save(&path), Err(IdentityError::Io { .. })));
        assert_eq!(Keypair::load(&path).unwrap().node_id(), kp.node_id());
    }

    #[test]
    fn raw_key_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.key");
        let kp = keypair(9);
        fs::write(&path, kp.secret_bytes()).unwrap();
        assert_eq!(Keypair::load(&path).unwrap().node_id(), kp.node_id());
    }

    #[test]
    fn corrupt_key_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        for contents in [&b"not a key"[..], &[b'z'; 64][..], &[0u8; 31][..], b""] {
            fs::write(&path, contents).unwrap();
            let err = Keypair::load(&path).unwrap_err();
            assert!(matches!(err, IdentityError::CorruptKeyFile { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
        let missing = dir.path().join("missing.key");
        let err = Keypair::load(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.key"), "{err}");
    }
}
