//! Transactions: what a member asks the ledger to record, signed and nonce-protected.
//!
//! This module owns the transaction format and its signature rule:
//! - a [`Transaction`] is `(signer, nonce, body, signature)`; the signature is the signer's strict
//!   ed25519 signature over [`Domain::TxSigning`]'s context, then postcard of
//!   `(chain id, signer, nonce, body)`. The chain id keeps a transaction for one ledger from
//!   being replayed on another; the nonce keeps it from being replayed on the same one
//!   ([`crate::state`] accepts nonce `n + 1` after `n`, starting at 1);
//! - the wire and disk form is [`Transaction::encode`]: version byte [`TX_VERSION`], then postcard,
//!   at most [`MAX_TX_BYTES`]; [`Transaction::decode`] refuses anything else with a
//!   [`CodecError`] that says what was wrong;
//! - a transaction's identity is [`Transaction::hash`], over its whole encoding, signature
//!   included.
//!
//! Tensors never appear here: an update or a model is referred to by the blake3 of its blob
//! ([`Digest::of`]). Real numbers are carried as the bits of an `f64` (`f64::to_bits`) so every
//! type stays `Eq` and every encoding stays exact; [`crate::state`] refuses NaN and infinities.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::{Digest, Domain, TxHash};
use crate::identity::{IdentityError, Keypair, NodeId, Signature};

/// The version byte of the transaction encoding this build writes and reads. Version 1 (before
/// `RemoveMember` and before `Evidence` carried a proof the ledger checks) is no longer read.
pub const TX_VERSION: u8 = 2;
/// The most bytes one encoded transaction may take (64 KiB).
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Which ledger a transaction is for; part of every signed message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ChainId(pub Digest);

impl ChainId {
    /// An id from a name alone, for transactions built outside any ledger (wire-format tests and
    /// examples). A ledger's id is [`Genesis::chain_id`](crate::genesis::Genesis::chain_id), the
    /// hash of its whole genesis; a name alone never identifies a chain.
    pub fn from_name(name: &str) -> ChainId {
        ChainId(Domain::ChainName.hash(name.as_bytes()))
    }
}

/// A named metric of an aggregate, its value as `f64` bits.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Metric {
    /// The metric's name, e.g. `"accuracy"`.
    pub name: String,
    /// `f64::to_bits` of the value.
    pub value_bits: u64,
}

impl Metric {
    /// A metric from a float.
    pub fn new(name: impl Into<String>, value: f64) -> Metric {
        Metric { name: name.into(), value_bits: value.to_bits() }
    }

    /// The value as a float.
    pub fn value(&self) -> f64 {
        f64::from_bits(self.value_bits)
    }
}

/// A proof of misbehaviour that the ledger checks itself ([`crate::state`] refuses evidence whose
/// proof does not hold).
///
/// The proofs carry *encoded* transactions ([`Transaction::encode`]) rather than transactions, so
/// the type is not recursive: decoding a body never descends more than one level, whatever the
/// bytes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EvidenceProof {
    /// The accused signed two different transactions with the same nonce for this chain: two
    /// histories for one slot, of which the ledger can take at most one.
    DoubleSign {
        /// One of the two, encoded.
        first: Vec<u8>,
        /// The other, encoded.
        second: Vec<u8>,
    },
}

impl EvidenceProof {
    /// The proof that `first` and `second`'s signer signed both.
    pub fn double_sign(first: &Transaction, second: &Transaction) -> EvidenceProof {
        EvidenceProof::DoubleSign { first: first.encode(), second: second.encode() }
    }
}

/// What a transaction asks the ledger to record.
///
/// Who may sign which body, and when, is [`crate::state`]'s rule; this type only carries data.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TxBody {
    /// Admit a new member organisation. Takes effect once a majority of the members signed this
    /// same body (see [`crate::state`]).
    RegisterMember {
        /// The new member's node id.
        member: NodeId,
        /// A human-readable name.
        name: String,
        /// Whether the member validates (takes part in consensus).
        validator: bool,
    },
    /// Remove a member, and the devices it registered. Takes effect once a majority of the
    /// members signed this same body.
    RemoveMember {
        /// The member to remove.
        member: NodeId,
    },
    /// Attach a device (a tier-2 trainer) to the member that signs this transaction.
    RegisterDevice {
        /// The device's node id.
        device: NodeId,
        /// The member it belongs to; must be the signer.
        member: NodeId,
    },
    /// Make the policy contract whose code hashes to `code_hash` the active one. Takes effect once
    /// a majority of the members signed this same body.
    DeployPolicy {
        /// blake3 of the contract's source.
        code_hash: Digest,
    },
    /// Open a training round; the signer becomes its coordinator.
    OpenRound {
        /// The round number; each number opens once.
        round: u64,
        /// The task, e.g. `"mnist-2nn"`.
        task: String,
        /// The nodes (members or devices) invited to send updates.
        participants: Vec<NodeId>,
        /// The aggregation strategy, e.g. `"fedavg"`.
        strategy: String,
        /// The last block time (ms) at which an update may be committed.
        deadline_ms: u64,
    },
    /// Commit to one participant's update for an open round.
    CommitUpdate {
        /// The round.
        round: u64,
        /// The participant whose update this is.
        node: NodeId,
        /// blake3 of the update blob.
        update_hash: Digest,
        /// How many local examples the update was trained on.
        examples: u64,
        /// `f64::to_bits` of the update's L2 norm.
        norm_bits: u64,
    },
    /// Commit to a round's aggregate; closes the round.
    CommitAggregate {
        /// The round.
        round: u64,
        /// blake3 of the aggregated global model blob.
        aggregate_hash: Digest,
        /// The participants whose updates went into it; each must have committed one.
        participants: Vec<NodeId>,
        /// Evaluation metrics of the new model.
        metrics: Vec<Metric>,
    },
    /// Record a participant's contribution score for a closed round.
    Contribution {
        /// The round.
        round: u64,
        /// The participant.
        node: NodeId,
        /// The score, in units the scoring policy defines (e.g. parts per million).
        score: i64,
    },
    /// Credit `amount` to `node`'s balance. Only the genesis's treasury signs these.
    Reward {
        /// Who is paid.
        node: NodeId,
        /// How much, in the ledger's smallest unit.
        amount: u64,
    },
    /// Record that a dataset was used, for what, under which consent.
    DataUse {
        /// The dataset's identifier.
        dataset_id: String,
        /// The purpose, e.g. `"training round 12"`.
        purpose: String,
        /// A reference to the consent or legal basis.
        consent_ref: String,
    },
    /// Record differential-privacy budget spent in a round.
    PrivacySpend {
        /// The round.
        round: u64,
        /// `f64::to_bits` of ε.
        epsilon_bits: u64,
        /// `f64::to_bits` of δ.
        delta_bits: u64,
    },
    /// Record evidence of misbehaviour, with a proof the ledger checks.
    Evidence {
        /// The accused member.
        node: NodeId,
        /// What it did, in a form the ledger can check.
        proof: EvidenceProof,
    },
}

impl TxBody {
    /// The blob this body commits to and that a full ledger must hold: an update or aggregate
    /// hash. ([`crate::verify`] checks it exists and matches.)
    pub fn referenced_blob(&self) -> Option<Digest> {
        match self {
            TxBody::CommitUpdate { update_hash, .. } => Some(*update_hash),
            TxBody::CommitAggregate { aggregate_hash, .. } => Some(*aggregate_hash),
            _ => None,
        }
    }

    /// A short lowercase name of the variant, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::RegisterMember { .. } => "register_member",
            TxBody::RemoveMember { .. } => "remove_member",
            TxBody::RegisterDevice { .. } => "register_device",
            TxBody::DeployPolicy { .. } => "deploy_policy",
            TxBody::OpenRound { .. } => "open_round",
            TxBody::CommitUpdate { .. } => "commit_update",
            TxBody::CommitAggregate { .. } => "commit_aggregate",
            TxBody::Contribution { .. } => "contribution",
            TxBody::Reward { .. } => "reward",
            TxBody::DataUse { .. } => "data_use",
            TxBody::PrivacySpend { .. } => "privacy_spend",
            TxBody::Evidence { .. } => "evidence",
        }
    }
}

/// A signed, nonce-protected transaction.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Transaction {
    /// Who signed it.
    pub signer: NodeId,
    /// The signer's sequence number: one more than its last accepted transaction's, from 1.
    pub nonce: u64,
    /// What it records.
    pub body: TxBody,
    /// The signer's signature over [`Transaction::signing_message`].
    pub signature: Signature,
}

/// The signed tuple, borrowed, so signing and verifying encode it the same way.
#[derive(Serialize)]
struct SigningPayload<'a> {
    chain_id: &'a ChainId,
    signer: &'a NodeId,
    nonce: u64,
    body: &'a TxBody,
}

impl Transaction {
    /// Sign `body` as `keypair` with `nonce` for the chain `chain_id`.
    pub fn sign(keypair: &Keypair, chain_id: &ChainId, nonce: u64, body: TxBody) -> Transaction {
        let signer = keypair.node_id();
        let signature = keypair.sign(&signing_message(chain_id, &signer, nonce, &body));
        Transaction { signer, nonce, body, signature }
    }

    /// The exact bytes the signature covers: the domain context, then postcard of
    /// `(chain_id, signer, nonce, body)`.
    pub fn signing_message(&self, chain_id: &ChainId) -> Vec<u8> {
        signing_message(chain_id, &self.signer, self.nonce, &self.body)
    }

    /// Check the signature for chain `chain_id`.
    pub fn verify(&self, chain_id: &ChainId) -> Result<(), IdentityError> {
        self.signer.verify(&self.signing_message(chain_id), &self.signature)
    }

    /// The transaction's hash: blake3 in [`Domain::Tx`] over [`Transaction::encode`].
    pub fn hash(&self) -> TxHash {
        Domain::Tx.hash(&self.encode())
    }

    /// The wire and disk form: [`TX_VERSION`], then postcard.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(TX_VERSION, self)
    }

    /// Parse [`Transaction::encode`]'s output; never panics, whatever the bytes.
    ///
    /// Decoding checks form only; the signature and the nonce are checked by
    /// [`Transaction::verify`] and [`crate::state::State::apply`].
    pub fn decode(bytes: &[u8]) -> Result<Transaction, CodecError> {
        codec::decode_canonical("transaction", TX_VERSION, MAX_TX_BYTES, bytes)
    }
}

fn signing_message(chain_id: &ChainId, signer: &NodeId, nonce: u64, body: &TxBody) -> Vec<u8> {
    let mut message = Domain::TxSigning.context().as_bytes().to_vec();
    message.push(0);
    message.extend(codec::to_bytes(&SigningPayload { chain_id, signer, nonce, body }));
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn keypair(seed: u64) -> Keypair {
        Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn sample() -> (Keypair, ChainId, Transaction) {
        let kp = keypair(1);
        let chain = ChainId::from_name("test");
        let body = TxBody::CommitUpdate {
            round: 3,
            node: kp.node_id(),
            update_hash: Digest::of(b"update blob"),
            examples: 600,
            norm_bits: 1.25f64.to_bits(),
        };
        let tx = Transaction::sign(&kp, &chain, 1, body);
        (kp, chain, tx)
    }

    /// One body of each kind, to exercise the codec across every variant.
    fn every_body(node: NodeId) -> Vec<TxBody> {
        let h = Digest::of(b"h");
        vec![
            TxBody::RegisterMember { member: node, name: "org".into(), validator: true },
            TxBody::RemoveMember { member: node },
            TxBody::RegisterDevice { device: node, member: node },
            TxBody::DeployPolicy { code_hash: h },
            TxBody::OpenRound {
                round: 1,
                task: "mnist".into(),
                participants: vec![node],
                strategy: "fedavg".into(),
                deadline_ms: 10,
            },
            TxBody::CommitUpdate { round: 1, node, update_hash: h, examples: 5, norm_bits: 0 },
            TxBody::CommitAggregate {
                round: 1,
                aggregate_hash: h,
                participants: vec![node],
                metrics: vec![Metric::new("accuracy", 0.9)],
            },
            TxBody::Contribution { round: 1, node, score: -3 },
            TxBody::Reward { node, amount: 7 },
            TxBody::DataUse { dataset_id: "d".into(), purpose: "p".into(), consent_ref: "c".into() },
            TxBody::PrivacySpend { round: 1, epsilon_bits: 1.0f64.to_bits(), delta_bits: 1e-5f64.to_bits() },
            TxBody::Evidence {
                node,
                proof: EvidenceProof::DoubleSign { first: vec![TX_VERSION, 1, 2], second: vec![TX_VERSION, 3] },
            },
        ]
    }

    #[test]
    fn every_body_round_trips_and_verifies() {
        let kp = keypair(2);
        let chain = ChainId::from_name("test");
        for (i, body) in every_body(kp.node_id()).into_iter().enumerate() {
            let tx = Transaction::sign(&kp, &chain, i as u64 + 1, body);
            let bytes = tx.encode();
            assert_eq!(bytes[0], TX_VERSION);
            let back = Transaction::decode(&bytes).unwrap();
            assert_eq!(back, tx);
            back.verify(&chain).unwrap();
        }
    }

    #[test]
    fn signature_binds_chain_nonce_signer_and_body() {
        let (_, chain, tx) = sample();
        tx.verify(&chain).unwrap();
        assert!(tx.verify(&ChainId::from_name("other")).is_err(), "replay on another chain");
        let mut t = tx.clone();
        t.nonce = 2;
        assert!(t.verify(&chain).is_err(), "nonce");
        let mut t = tx.clone();
        t.signer = keypair(3).node_id();
        assert!(t.verify(&chain).is_err(), "signer");
        let mut t = tx.clone();
        if let TxBody::CommitUpdate { examples, .. } = &mut t.body {
            *examples += 1;
        }
        assert!(t.verify(&chain).is_err(), "body");
    }

    #[test]
    fn signing_message_is_domain_separated() {
        let (_, chain, tx) = sample();
        let message = tx.signing_message(&chain);
        assert!(message.starts_with(Domain::TxSigning.context().as_bytes()));
    }

    #[test]
    fn hash_covers_the_signature() {
        let (_, _, tx) = sample();
        let mut t = tx.clone();
        t.signature.0[0] ^= 1;
        assert_ne!(t.hash(), tx.hash());
    }

    #[test]
    fn decode_empty_is_named() {
        assert_eq!(Transaction::decode(&[]), Err(CodecError::Empty { record: "transaction" }));
    }

    #[test]
    fn decode_wrong_version_is_named() {
        let (_, _, tx) = sample();
        let mut bytes = tx.encode();
        bytes[0] = 9;
        assert_eq!(
            Transaction::decode(&bytes),
            Err(CodecError::Version { record: "transaction", found: 9, supported: TX_VERSION })
        );
    }

    #[test]
    fn decode_every_truncation_fails() {
        let (_, _, tx) = sample();
        let bytes = tx.encode();
        for len in 1..bytes.len() {
            let err = Transaction::decode(&bytes[..len]).unwrap_err();
            assert!(matches!(err, CodecError::Truncated { .. } | CodecError::Malformed { .. }), "len={len}: {err}");
        }
        // The signature is the last field, so cutting into it is reported as truncation.
        assert!(matches!(Transaction::decode(&bytes[..bytes.len() - 1]), Err(CodecError::Truncated { .. })));
    }

    #[test]
    fn decode_trailing_bytes_fails() {
        let (_, _, tx) = sample();
        let mut bytes = tx.encode();
        bytes.extend([0, 0]);
        assert_eq!(Transaction::decode(&bytes), Err(CodecError::Trailing { record: "transaction", extra: 2 }));
    }

    #[test]
    fn decode_oversized_fails_before_parsing() {
        let mut bytes = vec![TX_VERSION];
        bytes.resize(MAX_TX_BYTES + 1, 0);
        assert_eq!(
            Transaction::decode(&bytes),
            Err(CodecError::TooLarge { record: "transaction", bytes: MAX_TX_BYTES + 1, max: MAX_TX_BYTES })
        );
    }

    #[test]
    fn decode_bad_enum_tag_is_malformed() {
        let (_, _, tx) = sample();
        let mut bytes = tx.encode();
        // version, 32-byte signer, nonce varint (1 byte), then the body's variant tag.
        bytes[1 + 32 + 1] = 200;
        assert!(matches!(Transaction::decode(&bytes), Err(CodecError::Malformed { .. })));
    }

    #[test]
    fn decode_non_canonical_varint_is_refused() {
        let (_, _, tx) = sample();
        let bytes = tx.encode();
        // Re-write the nonce (1) as the overlong varint 0x81 0x00.
        let mut overlong = bytes[..33].to_vec();
        overlong.extend([0x81, 0x00]);
        overlong.extend(&bytes[34..]);
        assert_eq!(Transaction::decode(&overlong), Err(CodecError::NonCanonical { record: "transaction" }));
    }

    #[test]
    fn decode_garbage_never_panics() {
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let (_, _, tx) = sample();
        let valid = tx.encode();
        for i in 0..20_000 {
            let mut bytes = if i % 2 == 0 {
                let mut b = vec![0u8; (rng.next_u32() % 300) as usize];
                rng.fill_bytes(&mut b);
                b
            } else {
                valid.clone()
            };
            if !bytes.is_empty() {
                bytes[0] = TX_VERSION;
                let at = rng.next_u32() as usize % bytes.len();
                bytes[at] = rng.next_u32() as u8;
            }
            if let Ok(t) = Transaction::decode(&bytes) {
                assert_eq!(t.encode(), bytes, "decoded bytes must be canonical");
            }
        }
    }
}
