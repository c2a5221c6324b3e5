//! The genesis: the chain id, its founding members and its start time, fixed before block 0.
//!
//! This module owns the rule that a genesis is well formed before any state is built from it
//! ([`Genesis::validate`]: at least one founder, no founder twice, every founder a usable ed25519
//! key, at least one validator), and its encoding and hash. The genesis hash is block 0's
//! `prev_hash`, so every block hash commits to the founding set.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::{Digest, Domain};
use crate::identity::NodeId;
use crate::tx::ChainId;

/// The version byte of the genesis encoding.
pub const GENESIS_VERSION: u8 = 1;
/// The most bytes an encoded genesis may take (1 MiB).
pub const MAX_GENESIS_BYTES: usize = 1024 * 1024;

/// Errors from checking a genesis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// No founding members.
    #[error("genesis has no founders")]
    NoFounders,
    /// No founder validates, so no block could ever be finalized.
    #[error("genesis has no validator")]
    NoValidator,
    /// A founder appears twice.
    #[error("duplicate founder: node={node}")]
    DuplicateFounder {
        /// The repeated node id.
        node: NodeId,
    },
    /// A founder's node id is not a usable ed25519 key.
    #[error("founder key invalid: node={node}")]
    InvalidKey {
        /// The founder.
        node: NodeId,
    },
}

/// A founding member, a member from block 0 without a registration transaction.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Founder {
    /// Its node id.
    pub id: NodeId,
    /// A human-readable name.
    pub name: String,
    /// Whether it validates.
    pub validator: bool,
}

/// Everything block 0 is built from.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain id every transaction signs.
    pub chain_id: ChainId,
    /// Block 0's timestamp (ms since the Unix epoch, or virtual ms in a simulation).
    pub timestamp_ms: u64,
    /// The founding members.
    pub founders: Vec<Founder>,
}

impl Genesis {
    /// Check the rules in the module docs.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.founders.is_empty() {
            return Err(GenesisError::NoFounders);
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.founders {
            if !seen.insert(f.id) {
                return Err(GenesisError::DuplicateFounder { node: f.id });
            }
            if !f.id.is_valid_key() {
                return Err(GenesisError::InvalidKey { node: f.id });
            }
        }
        if !self.founders.iter().any(|f| f.validator) {
            return Err(GenesisError::NoValidator);
        }
        Ok(())
    }

    /// blake3 in [`Domain::Genesis`] over the encoding: block 0's `prev_hash`.
    pub fn hash(&self) -> Digest {
        Domain::Genesis.hash(&self.encode())
    }

    /// [`GENESIS_VERSION`], then postcard.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(GENESIS_VERSION, self)
    }

    /// Parse [`Genesis::encode`]'s output; never panics. Does not [`validate`](Genesis::validate).
    pub fn decode(bytes: &[u8]) -> Result<Genesis, CodecError> {
        codec::decode_canonical("genesis", GENESIS_VERSION, MAX_GENESIS_BYTES, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn founder(seed: u64, validator: bool) -> Founder {
        let id = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed)).node_id();
        Founder { id, name: format!("org{seed}"), validator }
    }

    fn genesis(founders: Vec<Founder>) -> Genesis {
        Genesis { chain_id: ChainId::from_name("g"), timestamp_ms: 0, founders }
    }

    #[test]
    fn validate_names_each_problem() {
        genesis(vec![founder(1, true), founder(2, false)]).validate().unwrap();
        assert_eq!(genesis(vec![]).validate(), Err(GenesisError::NoFounders));
        assert_eq!(genesis(vec![founder(1, false)]).validate(), Err(GenesisError::NoValidator));
        let f = founder(1, true);
        assert_eq!(genesis(vec![f.clone(), f.clone()]).validate(), Err(GenesisError::DuplicateFounder { node: f.id }));
        let bad = Founder { id: NodeId([0xff; 32]), name: "x".into(), validator: true };
        assert_eq!(genesis(vec![bad.clone()]).validate(), Err(GenesisError::InvalidKey { node: bad.id }));
    }

    #[test]
    fn round_trips_and_hash_commits_to_founders() {
        let g = genesis(vec![founder(1, true)]);
        assert_eq!(Genesis::decode(&g.encode()).unwrap(), g);
        let mut h = g.clone();
        h.founders[0].validator = false;
        assert_ne!(h.hash(), g.hash());
        assert!(Genesis::decode(&g.encode()[..5]).is_err());
    }
}
