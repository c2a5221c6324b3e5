//! Merkle trees over a block's transaction hashes, and inclusion proofs.
//!
//! This module owns the tree shape and its hashing, which are part of the ledger format:
//! - a leaf is `H_leaf(tx_hash)` and an interior node is `H_node(left ‖ right)`, each in its own
//!   blake3 domain ([`Domain::MerkleLeaf`], [`Domain::MerkleNode`]), so a leaf can never be
//!   presented as a node or the other way round (second-preimage attacks on the tree);
//! - levels are built left to right; **an odd node at the end of a level is promoted unchanged**
//!   to the next level, not duplicated. Duplication (Bitcoin's rule) lets `[a, b, c]` and
//!   `[a, b, c, c]` share a root (CVE-2012-2459); promotion does not;
//! - the root of no transactions is the hash of the empty input in [`Domain::MerkleEmpty`]; the
//!   root of one transaction is its leaf hash.
//!
//! A [`MerkleProof`] carries the leaf's index, the number of leaves and the sibling hashes from
//! the bottom up; [`MerkleProof::verify`] recomputes the root from them and compares. A proof
//! that verifies shows the transaction is *in* the tree; `index` and `leaves` only steer the
//! path, so a verifier that also needs the exact position must know the block's transaction
//! count from elsewhere (e.g. the block itself).

use serde::{Deserialize, Serialize};

use crate::hash::{Digest, Domain, TxHash};

/// Errors from building or checking an inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not below the number of leaves.
    #[error("leaf index out of range: index={index} leaves={leaves}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// How many leaves there are.
        leaves: u64,
    },
    /// The proof has more or fewer sibling hashes than a tree of its size needs.
    #[error("wrong proof length: expected={expected} found={found}")]
    ProofLength {
        /// Siblings the tree shape needs.
        expected: usize,
        /// Siblings in the proof.
        found: usize,
    },
    /// The recomputed root differs from the expected one.
    #[error("root mismatch: expected={expected} computed={computed}")]
    RootMismatch {
        /// The root the caller trusts.
        expected: Digest,
        /// The root the proof leads to.
        computed: Digest,
    },
}

/// The leaf hash of a transaction hash.
pub fn leaf(tx_hash: &TxHash) -> Digest {
    Domain::MerkleLeaf.hash(&tx_hash.0)
}

/// The interior node over two children.
pub fn node(left: &Digest, right: &Digest) -> Digest {
    let mut h = Domain::MerkleNode.hasher();
    h.update(&left.0);
    h.update(&right.0);
    Digest(*h.finalize().as_bytes())
}

/// The root of no transactions.
pub fn empty_root() -> Digest {
    Domain::MerkleEmpty.hash(&[])
}

/// The Merkle root over `tx_hashes`, in order.
pub fn root(tx_hashes: &[TxHash]) -> Digest {
    if tx_hashes.is_empty() {
        return empty_root();
    }
    let mut level: Vec<Digest> = tx_hashes.iter().map(leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Digest]) -> Vec<Digest> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            _ => pair[0], // the odd node at the end: promoted
        })
        .collect()
}

/// A proof that a transaction hash is the `index`-th leaf of a tree of `leaves` leaves.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MerkleProof {
    /// The leaf's position, from 0.
    pub index: u64,
    /// How many leaves the tree has.
    pub leaves: u64,
    /// The sibling hashes from the bottom level up; levels where the path node is promoted have
    /// none.
    pub siblings: Vec<Digest>,
}

/// The proof that `tx_hashes[index]` is in the tree over `tx_hashes`.
pub fn prove(tx_hashes: &[TxHash], index: usize) -> Result<MerkleProof, MerkleError> {
    let leaves = tx_hashes.len() as u64;
    if index >= tx_hashes.len() {
        return Err(MerkleError::IndexOutOfRange { index: index as u64, leaves });
    }
    let mut level: Vec<Digest> = tx_hashes.iter().map(leaf).collect();
    let mut at = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        let sibling = at ^ 1;
        if sibling < level.len() {
            siblings.push(level[sibling]);
        }
        level = next_level(&level);
        at /= 2;
    }
    Ok(MerkleProof { index: index as u64, leaves, siblings })
}

impl MerkleProof {
    /// The root this proof leads to from `tx_hash`, or an error if the proof's shape is wrong.
    pub fn compute_root(&self, tx_hash: &TxHash) -> Result<Digest, MerkleError> {
        if self.index >= self.leaves {
            return Err(MerkleError::IndexOutOfRange { index: self.index, leaves: self.leaves });
        }
        let expected = path_length(self.index, self.leaves);
        if self.siblings.len() != expected {
            return Err(MerkleError::ProofLength { expected, found: self.siblings.len() });
        }
        let mut acc = leaf(tx_hash);
        let (mut at, mut len) = (self.index, self.leaves);
        let mut siblings = self.siblings.iter();
        while len > 1 {
            if at % 2 == 1 {
                acc = node(siblings.next().unwrap_or(&Digest::ZERO), &acc);
            } else if at + 1 < len {
                acc = node(&acc, siblings.next().unwrap_or(&Digest::ZERO));
            } // else: the last, odd node of its level, promoted.
            at /= 2;
            len = len.div_ceil(2);
        }
        Ok(acc)
    }

    /// Check that `tx_hash` is the proven leaf of the tree whose root is `root`.
    pub fn verify(&self, tx_hash: &TxHash, root: &Digest) -> Result<(), MerkleError> {
        let computed = self.compute_root(tx_hash)?;
        if computed != *root {
            return Err(MerkleError::RootMismatch { expected: *root, computed });
        }
        Ok(())
    }
}

/// How many siblings the path from leaf `index` of `leaves` leaves consumes.
fn path_length(mut at: u64, mut len: u64) -> usize {
    let mut n = 0;
    while len > 1 {
        if at % 2 == 1 || at + 1 < len {
            n += 1;
        }
        at /= 2;
        len = len.div_ceil(2);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: usize) -> Vec<TxHash> {
        (0..n).map(|i| Digest::of(&(i as u64).to_le_bytes())).collect()
    }

    #[test]
    fn small_trees_match_hand_computation() {
        let h = hashes(3);
        assert_eq!(root(&[]), empty_root());
        assert_eq!(root(&h[..1]), leaf(&h[0]));
        assert_eq!(root(&h[..2]), node(&leaf(&h[0]), &leaf(&h[1])));
        // Odd node promoted: [a, b, c] -> node(node(a, b), c).
        assert_eq!(root(&h), node(&node(&leaf(&h[0]), &leaf(&h[1])), &leaf(&h[2])));
    }

    #[test]
    fn promotion_not_duplication_cve_2012_2459() {
        let h = hashes(3);
        let mut dup = h.clone();
        dup.push(h[2]);
        assert_ne!(root(&h), root(&dup));
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        let h = hashes(2);
        // A one-leaf tree whose leaf equals an interior node's input must not collide.
        assert_ne!(leaf(&h[0]), Domain::MerkleNode.hash(&h[0].0));
        assert_ne!(root(&h), Digest::of(&[h[0].0, h[1].0].concat()));
    }

    #[test]
    fn every_proof_verifies_for_sizes_1_to_33() {
        for n in 1..=33 {
            let h = hashes(n);
            let r = root(&h);
            for (i, tx) in h.iter().enumerate() {
                let proof = prove(&h, i).unwrap();
                proof.verify(tx, &r).unwrap_or_else(|e| panic!("n={n} i={i}: {e}"));
            }
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let h = hashes(11);
        let r = root(&h);
        let proof = prove(&h, 6).unwrap();
        // Wrong leaf.
        assert!(matches!(proof.verify(&h[5], &r), Err(MerkleError::RootMismatch { .. })));
        // A flipped bit in each sibling.
        for s in 0..proof.siblings.len() {
            let mut p = proof.clone();
            p.siblings[s].0[0] ^= 1;
            assert!(p.verify(&h[6], &r).is_err(), "sibling {s}");
        }
        // Wrong index (the orientation changes), a sibling too many or too few.
        let mut p = proof.clone();
        p.index = 7;
        assert!(p.verify(&h[6], &r).is_err());
        let mut p = proof.clone();
        p.siblings.push(Digest::ZERO);
        assert!(matches!(p.verify(&h[6], &r), Err(MerkleError::ProofLength { .. })));
        let mut p = proof.clone();
        p.siblings.pop();
        assert!(matches!(p.verify(&h[6], &r), Err(MerkleError::ProofLength { .. })));
        let mut p = proof;
        p.index = 11;
        assert!(matches!(p.verify(&h[6], &r), Err(MerkleError::IndexOutOfRange { .. })));
        assert!(matches!(prove(&h, 11), Err(MerkleError::IndexOutOfRange { .. })));
    }

    #[test]
    fn root_changes_when_any_tx_changes_or_moves() {
        let h = hashes(9);
        let r = root(&h);
        for i in 0..h.len() {
            let mut t = h.clone();
            t[i].0[31] ^= 0x80;
            assert_ne!(root(&t), r, "changed tx {i}");
        }
        let mut swapped = h.clone();
        swapped.swap(0, 1);
        assert_ne!(root(&swapped), r);
        assert_ne!(root(&h[..8]), r);
    }
}
