//! The names consensus uses for ledger things: the payload digest of a block, and a validator's
//! consensus key.
//!
//! This module owns two mappings, both identities on the bytes:
//! - **payload** — simplex orders opaque 32-byte digests; ours is the ledger's
//!   [`Block::hash`](dainet_ledger::block::Block::hash) (blake3 in the block-header domain),
//!   carried in Commonware's [`blake3::Digest`](commonware_cryptography::blake3::Digest) type.
//!   [`payload`] and [`block_hash`] convert without touching the bytes.
//! - **keys** — a validator signs votes with ed25519 ([`Scheme`]); its consensus private key is
//!   derived from the same 32-byte secret seed as its ledger [`Keypair`] ([`consensus_key`]), so
//!   its consensus public key *is* its [`NodeId`] ([`public_key`], [`node_id`]). One key file
//!   serves both roles, and a vote's signer is named on the ledger with no directory.

use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519;
use commonware_utils::ordered::Set;
use dainet_ledger::genesis::Genesis;
use dainet_ledger::hash::{BlockHash, Digest};
use dainet_ledger::identity::{Keypair, NodeId};

use crate::error::ConsensusError;

/// The digest simplex agrees on: a block hash.
pub type Payload = commonware_cryptography::blake3::Digest;

/// The consensus signing scheme: attributable ed25519 signatures (certificates carry every
/// signer's signature, so faults can be proven to third parties).
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;

/// A validator's consensus identity.
pub type PublicKey = ed25519::PublicKey;

/// What simplex passes to `propose` and `verify`: the round, its leader and the parent.
pub type ProposalContext = commonware_consensus::simplex::types::Context<Payload, PublicKey>;

/// What simplex reports: votes, certificates and proofs of faults.
pub type Activity = commonware_consensus::simplex::types::Activity<Scheme, Payload>;

/// The payload digest of the block with hash `hash`.
pub fn payload(hash: &BlockHash) -> Payload {
    commonware_cryptography::blake3::Digest(hash.0)
}

/// The block hash a payload digest names.
pub fn block_hash(payload: &Payload) -> BlockHash {
    Digest(payload.0)
}

/// The consensus private key of a ledger key pair: the same 32-byte ed25519 seed.
pub fn consensus_key(keypair: &Keypair) -> ed25519::PrivateKey {
    let secret = keypair.secret_bytes();
    // A 32-byte seed is a valid ed25519 private key, so decoding cannot fail.
    match ed25519::PrivateKey::decode(secret.to_vec()) {
        Ok(key) => key,
        Err(err) => unreachable!("32 bytes are an ed25519 seed: {err}"),
    }
}

/// The consensus public key of a node: its node id's bytes.
pub fn public_key(node: &NodeId) -> Result<PublicKey, ConsensusError> {
    if !node.is_valid_key() {
        return Err(ConsensusError::InvalidKey { node: *node });
    }
    PublicKey::decode(node.as_bytes().to_vec()).map_err(|_| ConsensusError::InvalidKey { node: *node })
}

/// The node id of a consensus public key.
pub fn node_id(key: &PublicKey) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key.as_ref());
    NodeId(bytes)
}

/// The validator set of `genesis` (its founders marked `validator`), as simplex's ordered
/// participant set. The set is fixed: there is no reconfiguration.
pub fn validators(genesis: &Genesis) -> Result<Set<PublicKey>, ConsensusError> {
    let keys =
        genesis.founders.iter().filter(|f| f.validator).map(|f| public_key(&f.id)).collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(ConsensusError::NoValidators);
    }
    Ok(Set::from_iter_dedup(keys))
}

/// The namespace votes are signed under: fixed per chain, so a vote for one chain is worthless
/// on another.
pub fn namespace(genesis: &Genesis) -> Vec<u8> {
    let mut out = b"dainet-consensus-v1/".to_vec();
    out.extend_from_slice(genesis.chain_id().0.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::Signer as _;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn consensus_key_is_the_ledger_key() {
        for seed in 0..8 {
            let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed));
            let pk = consensus_key(&kp).public_key();
            assert_eq!(node_id(&pk), kp.node_id());
            assert_eq!(public_key(&kp.node_id()).unwrap(), pk);
        }
    }

    #[test]
    fn payload_round_trips() {
        let h = Digest::of(b"block");
        assert_eq!(block_hash(&payload(&h)), h);
    }

    #[test]
    fn invalid_node_id_is_an_error() {
        assert!(matches!(public_key(&NodeId([0xff; 32])), Err(ConsensusError::InvalidKey { .. })));
    }
}
