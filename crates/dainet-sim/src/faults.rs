//! What goes wrong in a simulated federation: Byzantine clients and their attack, stragglers
//! and dropouts.
//!
//! Every choice is drawn from a named stream, so a faulty run is as reproducible as a clean one:
//! - the Byzantine clients are fixed for the whole run: the first `round(fraction·K)` of the
//!   clients shuffled with `stream(seed, ByzantineSelection, 0, 0)`;
//! - client k straggles in round r with probability `straggler_fraction`, drawn from
//!   `stream(seed, Straggler, r, k)`, and then runs a uniform number of epochs in `[1, E]`
//!   (FedProx's semantics: partial work is still sent);
//! - client k drops out of round r (never answers) with probability `dropout_fraction`, from
//!   `stream(seed, Dropout, r, k)`.
//!
//! Attacks (evaluation only; every Byzantine client of a round attacks):
//! - data attacks train on poisoned data: label flip (`y ↦ C − 1 − y`), backdoor (a pixel
//!   trigger relabelled to a target class, then the change boosted by γ, Bagdasaryan et al.
//!   2020's model replacement);
//! - update attacks replace the honest change Δ: sign flip (`−s·Δ`), Gaussian noise
//!   (`N(0, σ²)` per coordinate), ALIE (`μ − z·σ` of the Byzantine clients' own honest
//!   changes, z from n and f as in Baruch et al. 2019), IPM (`−ε ·` the mean of the honest
//!   clients' changes, an omniscient attacker as in Xie et al. 2020).

use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::poison::Trigger;
use std::collections::BTreeSet;

/// A Byzantine behaviour.
#[derive(Clone, Debug, PartialEq)]
pub enum Attack {
    /// Send `−scale · Δ`.
    SignFlip {
        /// The scale s.
        scale: f32,
    },
    /// Send `N(0, σ²)` noise as the change.
    GaussianNoise {
        /// The standard deviation σ.
        sigma: f64,
    },
    /// Train on labels `C − 1 − y`.
    LabelFlip,
    /// "A Little Is Enough": `μ − z·σ` of the attackers' honest changes.
    Alie {
        /// z; `None` takes z_max from n and f (Baruch et al.).
        z: Option<f64>,
    },
    /// Inner-product manipulation: `−ε · mean` of the honest changes.
    Ipm {
        /// ε.
        epsilon: f64,
    },
    /// Model-replacement backdoor.
    Backdoor {
        /// The pixel pattern.
        trigger: Trigger,
        /// The label triggered inputs should get.
        target: u32,
        /// Share of the attacker's examples that carry the trigger.
        poison_fraction: f64,
        /// γ: the change is multiplied by it (n/η in the paper; n clients per round, η = 1).
        boost: f32,
    },
}

impl Attack {
    /// Checks the attack's parameters.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match self {
            Attack::SignFlip { scale } => scale.is_finite(),
            Attack::GaussianNoise { sigma } => sigma.is_finite() && *sigma >= 0.0,
            Attack::LabelFlip => true,
            Attack::Alie { z } => z.is_none_or(f64::is_finite),
            Attack::Ipm { epsilon } => epsilon.is_finite(),
            Attack::Backdoor { poison_fraction, boost, .. } => {
                *poison_fraction > 0.0 && *poison_fraction <= 1.0 && boost.is_finite()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("attack {}: parameters out of range ({self:?})", self.name()))
        }
    }

    /// The attack's short name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::SignFlip { .. } => "sign-flip",
            Attack::GaussianNoise { .. } => "gaussian",
            Attack::LabelFlip => "label-flip",
            Attack::Alie { .. } => "alie",
            Attack::Ipm { .. } => "ipm",
            Attack::Backdoor { .. } => "backdoor",
        }
    }
}

/// The faults of a simulation. The default has none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// The Byzantine clients (see [`Faults::choose_byzantine`]).
    pub byzantine: BTreeSet<u32>,
    /// What the Byzantine clients do; `None`: they behave.
    pub attack: Option<Attack>,
    /// Probability that a client straggles in a round.
    pub straggler_fraction: f64,
    /// Probability that a client drops out of a round.
    pub dropout_fraction: f64,
    /// Probability that a client falls silent after sending its masked input (secure
    /// aggregation only).
    pub dropout_after_masking: f64,
}

impl Faults {
    /// The `round(fraction · num_clients)` Byzantine clients of a run with `task_seed`.
    pub fn choose_byzantine(task_seed: u64, num_clients: u32, fraction: f64) -> BTreeSet<u32> {
        let mut ids: Vec<u32> = (0..num_clients).collect();
        SplitMix64::stream(task_seed, Purpose::ByzantineSelection, 0, 0).shuffle(&mut ids);
        let n = ((fraction * f64::from(num_clients)).round() as usize).min(ids.len());
        ids[..n].iter().copied().collect()
    }

    /// Whether `client` drops out of `round`.
    pub fn drops_out(&self, task_seed: u64, round: u32, client: u32) -> bool {
        self.dropout_fraction > 0.0
            && SplitMix64::stream(task_seed, Purpose::Dropout, u64::from(round), u64::from(client)).next_f64()
                < self.dropout_fraction
    }

    /// Whether `client` falls silent in `round` once it has sent its masked input.
    pub fn silent_after_masking(&self, task_seed: u64, round: u32, client: u32) -> bool {
        self.dropout_after_masking > 0.0
            && SplitMix64::stream(task_seed, Purpose::DropoutAfterMasking, u64::from(round), u64::from(client))
                .next_f64()
                < self.dropout_after_masking
    }

    /// The epochs `client` runs in `round`: `epochs`, or a uniform number in `[1, epochs]` if it
    /// straggles.
    pub fn epochs(&self, task_seed: u64, round: u32, client: u32, epochs: usize) -> usize {
        if self.straggler_fraction <= 0.0 {
            return epochs;
        }
        let mut g = SplitMix64::stream(task_seed, Purpose::Straggler, u64::from(round), u64::from(client));
        if g.next_f64() < self.straggler_fraction {
            1 + (g.next_u64() % epochs.max(1) as u64) as usize
        } else {
            epochs
        }
    }

    /// Whether `client` attacks.
    pub fn attacks(&self, client: u32) -> bool {
        self.attack.is_some() && self.byzantine.contains(&client)
    }
}

/// What happened to the sampled clients of one round.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundFaults {
    /// Byzantine clients among those that answered.
    pub byzantine: usize,
    /// Clients that ran fewer epochs.
    pub stragglers: usize,
    /// Clients that never answered.
    pub dropouts: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byzantine_choice_is_seeded_and_sized() {
        let a = Faults::choose_byzantine(1, 100, 0.2);
        assert_eq!(a.len(), 20);
        assert_eq!(a, Faults::choose_byzantine(1, 100, 0.2));
        assert_ne!(a, Faults::choose_byzantine(2, 100, 0.2));
        assert!(Faults::choose_byzantine(1, 100, 0.0).is_empty());
    }

    #[test]
    fn stragglers_and_dropouts_follow_their_rates() {
        let f = Faults { straggler_fraction: 0.3, dropout_fraction: 0.1, ..Faults::default() };
        let (mut short, mut dropped) = (0, 0);
        for k in 0..10_000 {
            let e = f.epochs(1, 3, k, 5);
            assert!((1..=5).contains(&e));
            short += usize::from(e < 5);
            dropped += usize::from(f.drops_out(1, 3, k));
        }
        // Stragglers run fewer than 5 epochs 4 times in 5.
        assert!((2200..2600).contains(&short), "{short}");
        assert!((850..1150).contains(&dropped), "{dropped}");
        let none = Faults::default();
        assert_eq!(none.epochs(1, 1, 1, 5), 5);
        assert!(!none.drops_out(1, 1, 1));
    }
}
