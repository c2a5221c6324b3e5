//! The genesis: a chain's name, start time, founding members and treasury, fixed before block 0,
//! and the chain id that is their hash.
//!
//! This module owns:
//! - the rule that a genesis is well formed before any state is built from it
//!   ([`Genesis::validate`]: a name, at least one founder, no founder twice, every founder a usable
//!   ed25519 key, at least one validator, a treasury that is a founder);
//! - the **chain id**, [`Genesis::chain_id`]: blake3 in [`Domain::ChainId`] over the whole genesis
//!   (name, time, founders with their roles, treasury). Two genesis files that differ in any field
//!   — even two made with the same name a second apart — have different ids, so a transaction
//!   signed for one never verifies on the other and their validators never talk (the id is their
//!   consensus and p2p namespace);
//! - the file form, [`Genesis::encode`]: the genesis, then its chain id. [`Genesis::decode`]
//!   recomputes the id and refuses a file whose stored id differs, so a changed or damaged
//!   genesis file is caught on load rather than starting a node on another chain;
//! - the genesis hash, block 0's `prev_hash`, over the file form, so every block hash commits to
//!   the founding set.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::{Digest, Domain};
use crate::identity::NodeId;
use crate::tx::ChainId;

/// The version byte of the genesis encoding. Version 1 (a chain id named rather than derived)
/// is no longer read.
pub const GENESIS_VERSION: u8 = 2;
/// The most bytes a chain name may take.
pub const MAX_CHAIN_NAME_BYTES: usize = 64;
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
    /// The chain name is empty or longer than [`MAX_CHAIN_NAME_BYTES`].
    #[error("bad chain name: name={name:?} reason=must be 1 to {MAX_CHAIN_NAME_BYTES} bytes")]
    BadName {
        /// The name.
        name: String,
    },
    /// The treasury key is not a founder, so it could never sign.
    #[error("treasury is not a founder: node={node}")]
    TreasuryNotFounder {
        /// The treasury key.
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
    /// The chain's human-readable name, e.g. `"relnet"`. Not unique: the chain id is.
    pub name: String,
    /// Block 0's timestamp (ms since the Unix epoch, or virtual ms in a simulation).
    pub timestamp_ms: u64,
    /// The founding members.
    pub founders: Vec<Founder>,
    /// The founder whose key alone may sign `Reward` (see the ledger README's authorization
    /// table); `None`: no rewards on this chain.
    pub treasury: Option<NodeId>,
}

impl Genesis {
    /// Check the rules in the module docs.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.name.is_empty() || self.name.len() > MAX_CHAIN_NAME_BYTES {
            return Err(GenesisError::BadName { name: self.name.clone() });
        }
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
        if let Some(treasury) = self.treasury {
            if !seen.contains(&treasury) {
                return Err(GenesisError::TreasuryNotFounder { node: treasury });
            }
        }
        Ok(())
    }

    /// The chain id: blake3 in [`Domain::ChainId`] over [`GENESIS_VERSION`] and postcard of the
    /// whole genesis. Every transaction signs it; it names the consensus and p2p namespace.
    pub fn chain_id(&self) -> ChainId {
        ChainId(Domain::ChainId.hash(&codec::encode(GENESIS_VERSION, self)))
    }

    /// blake3 in [`Domain::Genesis`] over the file form: block 0's `prev_hash`.
    pub fn hash(&self) -> Digest {
        Domain::Genesis.hash(&self.encode())
    }

    /// The file form: [`GENESIS_VERSION`], then postcard of the genesis and its chain id.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(GENESIS_VERSION, &(self, self.chain_id()))
    }

    /// Parse [`Genesis::encode`]'s output and check that the chain id it carries is the
    /// genesis's own; never panics. Does not [`validate`](Genesis::validate).
    pub fn decode(bytes: &[u8]) -> Result<Genesis, CodecError> {
        let (genesis, stored): (Genesis, ChainId) =
            codec::decode_canonical("genesis", GENESIS_VERSION, MAX_GENESIS_BYTES, bytes)?;
        let computed = genesis.chain_id();
        if stored != computed {
            return Err(CodecError::Malformed {
                record: "genesis",
                reason: format!(
                    "the chain id it carries ({}) is not the hash of its contents ({}): the genesis was \
                     changed or damaged; get the genesis file again from the chain's founders",
                    stored.0, computed.0
                ),
            });
        }
        Ok(genesis)
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
        Genesis { name: "g".into(), timestamp_ms: 0, founders, treasury: None }
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
        let mut unnamed = genesis(vec![founder(1, true)]);
        unnamed.name.clear();
        assert_eq!(unnamed.validate(), Err(GenesisError::BadName { name: String::new() }));
        unnamed.name = "n".repeat(MAX_CHAIN_NAME_BYTES + 1);
        assert!(matches!(unnamed.validate(), Err(GenesisError::BadName { .. })));
        let mut stranger_treasury = genesis(vec![founder(1, true)]);
        stranger_treasury.treasury = Some(founder(2, false).id);
        assert_eq!(stranger_treasury.validate(), Err(GenesisError::TreasuryNotFounder { node: founder(2, false).id }));
        stranger_treasury.treasury = Some(founder(1, true).id);
        stranger_treasury.validate().unwrap();
    }

    #[test]
    fn two_genesis_files_with_one_name_have_different_chain_ids() {
        let first = genesis(vec![founder(1, true), founder(2, true)]);
        let mut a_second_later = first.clone();
        a_second_later.timestamp_ms += 1_000;
        let mut other_validators = first.clone();
        other_validators.founders[1].validator = false;
        let mut with_treasury = first.clone();
        with_treasury.treasury = Some(first.founders[0].id);
        let ids: std::collections::BTreeSet<_> =
            [&first, &a_second_later, &other_validators, &with_treasury].iter().map(|g| g.chain_id()).collect();
        assert_eq!(ids.len(), 4, "every field is part of the chain id");
        assert_eq!(first.chain_id(), first.clone().chain_id(), "the id is a function of the genesis");
    }

    #[test]
    fn every_change_to_a_genesis_file_is_refused_on_load() {
        let g = genesis(vec![founder(1, true), founder(2, false), founder(3, true)]);
        let bytes = g.encode();
        // Every single-bit flip, anywhere in the file (contents or stored id): none may load as a
        // genesis, since a flip either breaks the encoding or makes the id disagree.
        let mut loaded = 0;
        for i in 0..bytes.len() * 8 {
            let mut mutant = bytes.clone();
            mutant[i / 8] ^= 1 << (i % 8);
            if Genesis::decode(&mutant).is_ok() {
                loaded += 1;
            }
        }
        assert_eq!(loaded, 0, "{} bit flips of a {}-byte genesis", bytes.len() * 8, bytes.len());
        // A changed field with the old id carried along is named as such.
        let mut changed = g.clone();
        changed.timestamp_ms = 7;
        let forged = codec::encode(GENESIS_VERSION, &(&changed, g.chain_id()));
        let err = Genesis::decode(&forged).unwrap_err().to_string();
        assert!(err.contains("is not the hash of its contents"), "{err}");
        assert!(err.contains(&g.chain_id().0.to_string()) && err.contains(&changed.chain_id().0.to_string()), "{err}");
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
