//! What the coordinator commits to the shared ledger, and when.
//!
//! A coordinator built [`Coordinator::recording`](crate::Coordinator::recording) emits an
//! [`Action::Record`](crate::Action::Record) for each of these, in the order a driver must
//! submit them:
//! 1. [`LedgerRecord::OpenRound`], the first action of a round: before any train request of the
//!    round is sent, so the round is on the ledger (and, once policies gate rounds, allowed)
//!    before anyone trains for it;
//! 2. [`LedgerRecord::Update`] for each update accepted into the round — the blake3 of its
//!    values ([`update_digest`]) — or, under secure aggregation, for each masked input the
//!    session received ([`masked_input_digest`]): what the coordinator actually got, never
//!    more;
//! 3. [`LedgerRecord::Aggregate`] if the round aggregated, naming the contributors (each has an
//!    `Update` record);
//! 4. [`LedgerRecord::PrivacySpend`] with the ε *this round* spent, under privacy accounting:
//!    the ledger's total is the sum of its rounds'.
//!
//! Then comes the round's [`Action::RoundClosed`](crate::Action::RoundClosed). Turning records
//! into signed transactions (who signs, node ids, the aggregate's blob and metrics) is the
//! ledger binding's job; the update values themselves never reach the ledger: a trainer keeps
//! its own if it wants to prove what it sent.

use crate::ClientId;
use dainet_core::Params;
use std::sync::Arc;

/// A fact the coordinator commits to the ledger. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum LedgerRecord {
    /// A round opened with these sampled participants, ascending.
    OpenRound {
        /// The round.
        round: u32,
        /// Every sampled client.
        participants: Vec<ClientId>,
    },
    /// An update (or a masked input) the coordinator accepted.
    Update {
        /// The round.
        round: u32,
        /// The sender.
        client: ClientId,
        /// [`update_digest`] of a plain update, [`masked_input_digest`] of a masked input.
        hash: [u8; 32],
        /// Examples it reports (0 for a masked input, which the coordinator cannot know, and
        /// under differential privacy, where one client's count is not published).
        examples: u64,
        /// The L2 norm of its change to the global model (0 for a masked input and under
        /// differential privacy, likewise).
        norm: f64,
    },
    /// The round's new global model.
    Aggregate {
        /// The round.
        round: u32,
        /// θ_r.
        params: Arc<Params>,
        /// The clients whose updates it folds in, ascending.
        contributors: Vec<ClientId>,
    },
    /// Privacy spent by the round.
    PrivacySpend {
        /// The round.
        round: u32,
        /// ε this round added (classic conversion).
        epsilon: f64,
        /// δ.
        delta: f64,
    },
}

impl LedgerRecord {
    /// The round it belongs to.
    pub fn round(&self) -> u32 {
        match self {
            LedgerRecord::OpenRound { round, .. }
            | LedgerRecord::Update { round, .. }
            | LedgerRecord::Aggregate { round, .. }
            | LedgerRecord::PrivacySpend { round, .. } => *round,
        }
    }
}

/// The commitment to an update's parameters: blake3 of the values as little-endian `f32`s,
/// under a domain key, so a model file's other bytes (names, metadata) do not matter.
pub fn update_digest(values: &[f32]) -> [u8; 32] {
    digest("dainet update values v1", values.iter().map(|v| v.to_le_bytes()))
}

/// The commitment to a SecAgg+ masked input: blake3 of its words as little-endian `u32`s.
pub fn masked_input_digest(words: &[u32]) -> [u8; 32] {
    digest("dainet masked input v1", words.iter().map(|w| w.to_le_bytes()))
}

/// blake3 in key-derivation mode for `context` over `words`, hashed in chunks (no copy of the
/// whole input).
fn digest(context: &str, words: impl Iterator<Item = [u8; 4]>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    let mut chunk = Vec::with_capacity(16 * 1024);
    for word in words {
        chunk.extend_from_slice(&word);
        if chunk.len() == chunk.capacity() {
            hasher.update(&chunk);
            chunk.clear();
        }
    }
    hasher.update(&chunk);
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_commit_to_every_value_and_differ_by_kind() {
        let a = update_digest(&[1.0, 2.0, 3.0]);
        assert_eq!(a, update_digest(&[1.0, 2.0, 3.0]));
        assert_ne!(a, update_digest(&[1.0, 2.0, 3.5]));
        assert_ne!(a, update_digest(&[1.0, 2.0]));
        // Across the chunk boundary too.
        let long: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let mut changed = long.clone();
        changed[9_999] = 0.5;
        assert_ne!(update_digest(&long), update_digest(&changed));
        let bits: Vec<u32> = [1.0f32, 2.0, 3.0].iter().map(|v| v.to_bits()).collect();
        assert_ne!(masked_input_digest(&bits), a, "a masked input never passes for an update");
    }
}
