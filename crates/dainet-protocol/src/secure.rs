//! The seeds of a SecAgg+ session's parties.
//!
//! A party's randomness (its key pairs, self-mask seed and stochastic rounding; the server's
//! graph shuffle) comes from a 32-byte seed. Here it derives from the task seed, the round and
//! the party, so a simulation replays exactly. That makes the masks known to anyone who knows
//! the task seed: a deployment must give every trainer a secret seed of its own instead
//! ([`crate::Trainer::with_secret_seed`]).

/// The seed of party `party` (a client id, or `u64::MAX` for the server) in `round`.
pub fn party_seed(task_seed: u64, round: u32, party: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&task_seed.to_le_bytes());
    seed[8..12].copy_from_slice(&round.to_le_bytes());
    seed[12..20].copy_from_slice(&party.to_le_bytes());
    seed[20..].copy_from_slice(b"dainetsecagg");
    seed
}
