//! Client-level differential privacy for mean-based strategies (DP-FedAvg).
//!
//! McMahan, Ramage, Talwar and Zhang 2018 (<https://arxiv.org/abs/1710.06963>), with the
//! adaptive clipping of Andrew, Thakkar, McMahan and Ramaswamy 2021
//! (<https://arxiv.org/abs/1905.03871>). Each round:
//!
//! 1. every client's change Δ_k is clipped to L2 norm C;
//! 2. the clipped changes are **summed without weights** (each client has sensitivity C,
//!    whatever its example count), Gaussian noise N(0, (z_Δ·C)²) is added to every coordinate
//!    of the sum, and the sum is divided by m, the number of clients sampled per round (not
//!    the number that answered, which would leak);
//! 3. with adaptive clipping, C moves toward the `target_quantile` of the update norms:
//!    `C ← C · exp(−η · (b̄ − γ))`, where b̄ = (#{‖Δ_k‖ ≤ C} + N(0, σ_b²)) / m is the noised
//!    share of unclipped clients. To keep the total noise multiplier at z, the updates get
//!    z_Δ = (z^−2 − (2σ_b)^−2)^−1/2 (Andrew et al., section 3); σ_b defaults to m/20.
//!
//! With [`NoisePlacement::Distributed`] the same total noise is split across the clients
//! (each adds N(0, (z_Δ·C)²/m)), so it composes with secure aggregation: the server never
//! sees a noiseless sum. The privacy guarantee assumes all m sampled clients add their share.
//!
//! The noise is drawn from ChaCha20 seeded with the task seed and the round, which makes a
//! simulation reproducible. A deployment must seed it from the operating system instead:
//! whoever knows the seed can subtract the noise.
//!
//! The accountant (in `dainet-privacy`) turns (q = m/K, z, rounds) into (ε, δ).

use crate::error::AggregationError;
use crate::robust::{clip_to_norm, l2_norm};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// How the clipping norm is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Clipping {
    /// A fixed norm C.
    Fixed {
        /// C.
        norm: f64,
    },
    /// Quantile-based adaptive clipping (Andrew et al. 2021).
    Adaptive {
        /// The first round's C.
        initial_norm: f64,
        /// γ, the share of clients whose change should stay unclipped. Default 0.5.
        target_quantile: f64,
        /// η_C, the geometric learning rate of C. Default 0.2.
        learning_rate: f64,
        /// σ_b, the noise on the count of unclipped clients; `None`: m/20.
        count_stddev: Option<f64>,
    },
}

/// Who adds the noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoisePlacement {
    /// The server adds N(0, (z_Δ·C)²) to the sum.
    Central,
    /// Each client adds N(0, (z_Δ·C)²/m) to its clipped change (composes with SecAgg).
    Distributed,
}

/// Differential-privacy settings of a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct DpConfig {
    /// z, the noise multiplier (standard deviation of the sum's noise over C).
    pub noise_multiplier: f64,
    /// How C is chosen.
    pub clipping: Clipping,
    /// Who adds the noise.
    pub placement: NoisePlacement,
    /// m, the clients sampled per round.
    pub clients_per_round: usize,
}

impl DpConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), AggregationError> {
        let bad = |what: String| Err(AggregationError::InvalidSetting(format!("dp: {what}")));
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return bad(format!("noise multiplier must be finite and non-negative, got {}", self.noise_multiplier));
        }
        if self.clients_per_round == 0 {
            return bad("clients per round must be positive".into());
        }
        match self.clipping {
            Clipping::Fixed { norm } if !(norm.is_finite() && norm > 0.0) => {
                return bad(format!("clipping norm must be positive, got {norm}"))
            }
            Clipping::Adaptive { initial_norm, target_quantile, learning_rate, count_stddev } => {
                if !(initial_norm.is_finite() && initial_norm > 0.0) {
                    return bad(format!("initial clipping norm must be positive, got {initial_norm}"));
                }
                if !(0.0..=1.0).contains(&target_quantile) {
                    return bad(format!("target quantile must be in [0, 1], got {target_quantile}"));
                }
                if !(learning_rate.is_finite() && learning_rate >= 0.0) {
                    return bad(format!("clipping learning rate must be non-negative, got {learning_rate}"));
                }
                let sb = self.count_stddev(count_stddev);
                if self.noise_multiplier > 0.0 && !(sb > self.noise_multiplier / 2.0 && sb.is_finite()) {
                    return bad(format!(
                        "the count noise σ_b = {sb} must exceed z/2 = {} so that the update noise \
                         z_Δ = (z^-2 - (2σ_b)^-2)^(-1/2) is defined; raise σ_b or lower z",
                        self.noise_multiplier / 2.0
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn count_stddev(&self, given: Option<f64>) -> f64 {
        given.unwrap_or(self.clients_per_round as f64 / 20.0)
    }

    /// z_Δ, the noise multiplier of the updates (z itself with fixed clipping).
    pub fn update_noise_multiplier(&self) -> f64 {
        let z = self.noise_multiplier;
        match self.clipping {
            Clipping::Adaptive { count_stddev, .. } if z > 0.0 => {
                let sb = self.count_stddev(count_stddev);
                (z.powi(-2) - (2.0 * sb).powi(-2)).powf(-0.5)
            }
            _ => z,
        }
    }

    /// The first round's clipping norm.
    pub fn initial_norm(&self) -> f64 {
        match self.clipping {
            Clipping::Fixed { norm } => norm,
            Clipping::Adaptive { initial_norm, .. } => initial_norm,
        }
    }
}

/// A Gaussian draw (Box–Muller) from 53-bit uniforms of `rng`.
fn gaussian(rng: &mut ChaCha20Rng) -> f64 {
    let u = |r: &mut ChaCha20Rng| (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let u1 = 1.0 - u(rng);
    let u2 = u(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The noise stream of `round` (and of `client` for distributed noise; `u64::MAX` is the
/// server's).
fn noise_rng(task_seed: u64, round: u32, client: u64) -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&task_seed.to_le_bytes());
    seed[8..12].copy_from_slice(&round.to_le_bytes());
    seed[12..20].copy_from_slice(&client.to_le_bytes());
    seed[20..].copy_from_slice(b"dainet-dp-nz");
    ChaCha20Rng::from_seed(seed)
}

/// Clips a client's change and, with distributed noise, adds that client's share of it.
/// This is the client side of DP-FedAvg; returns whether the change was within the norm
/// (the bit adaptive clipping counts).
pub fn privatize_change(
    config: &DpConfig,
    clip_norm: f64,
    change: &mut [f32],
    task_seed: u64,
    round: u32,
    client: u64,
) -> bool {
    let norm = l2_norm(change);
    clip_to_norm(change, clip_norm);
    if config.placement == NoisePlacement::Distributed && config.noise_multiplier > 0.0 {
        let std = config.update_noise_multiplier() * clip_norm / (config.clients_per_round as f64).sqrt();
        let mut rng = noise_rng(task_seed, round, client);
        for v in change.iter_mut() {
            *v += (std * gaussian(&mut rng)) as f32;
        }
    }
    norm <= clip_norm
}

/// One round of DP aggregation: the unweighted sum of clipped changes.
#[derive(Debug)]
pub struct DpRound {
    sum: Vec<f64>,
    unclipped: usize,
    count: usize,
}

impl DpRound {
    /// An empty round over `len` parameters.
    pub fn new(len: usize) -> Self {
        Self { sum: vec![0.0; len], unclipped: 0, count: 0 }
    }

    /// Adds a clipped change; `unclipped` says whether it was within the norm.
    pub fn add(&mut self, change: &[f32], unclipped: bool) {
        for (s, &v) in self.sum.iter_mut().zip(change) {
            *s += f64::from(v);
        }
        self.unclipped += usize::from(unclipped);
        self.count += 1;
    }

    /// Replaces the sum with one computed elsewhere (secure aggregation) over `count` clients.
    /// The unclipped count is unknown then, so adaptive clipping cannot be used with it.
    pub fn set_sum(&mut self, sum: Vec<f64>, count: usize) {
        self.sum = sum;
        self.count = count;
        self.unclipped = count;
    }

    /// Changes added.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The noised mean change `(Σ Δ_k + N(0, (z_Δ·C)²)) / m` (central noise is added here;
    /// distributed noise was added by the clients), and the next round's clipping norm.
    pub fn finish(self, config: &DpConfig, clip_norm: f64, task_seed: u64, round: u32) -> (Vec<f32>, f64) {
        let m = config.clients_per_round as f64;
        let mut rng = noise_rng(task_seed, round, u64::MAX);
        let std = config.update_noise_multiplier() * clip_norm;
        let central = config.placement == NoisePlacement::Central && config.noise_multiplier > 0.0;
        let mean = self
            .sum
            .iter()
            .map(|&s| {
                let noise = if central { std * gaussian(&mut rng) } else { 0.0 };
                ((s + noise) / m) as f32
            })
            .collect();
        let next = match config.clipping {
            Clipping::Fixed { norm } => norm,
            Clipping::Adaptive { target_quantile, learning_rate, count_stddev, .. } => {
                let sb = if config.noise_multiplier > 0.0 { config.count_stddev(count_stddev) } else { 0.0 };
                let noised = (self.unclipped as f64 + sb * gaussian(&mut rng)) / m;
                clip_norm * (-learning_rate * (noised - target_quantile)).exp()
            }
        };
        (mean, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(z: f64, clipping: Clipping, placement: NoisePlacement) -> DpConfig {
        DpConfig { noise_multiplier: z, clipping, placement, clients_per_round: 10 }
    }

    #[test]
    fn without_noise_the_mean_is_the_clipped_sum_over_m() {
        let c = config(0.0, Clipping::Fixed { norm: 1.0 }, NoisePlacement::Central);
        let mut round = DpRound::new(2);
        for change in [[3.0f32, 4.0], [0.3, 0.4]] {
            let mut ch = change;
            let unclipped = privatize_change(&c, 1.0, &mut ch, 1, 1, 0);
            round.add(&ch, unclipped);
        }
        let (mean, next) = round.finish(&c, 1.0, 1, 1);
        // ([0.6, 0.8] + [0.3, 0.4]) / 10 (m, not the 2 that answered).
        assert!((mean[0] - 0.09).abs() < 1e-6 && (mean[1] - 0.12).abs() < 1e-6, "{mean:?}");
        assert_eq!(next, 1.0);
    }

    #[test]
    fn central_noise_has_the_promised_standard_deviation() {
        let c = config(2.0, Clipping::Fixed { norm: 0.5 }, NoisePlacement::Central);
        let n = 200_000;
        let (mean, _) = DpRound::new(n).finish(&c, 0.5, 7, 3);
        // Each coordinate: N(0, (2·0.5)²) / 10 → std 0.1.
        let var = mean.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.002, "std {}", var.sqrt());
        // Reproducible per (seed, round), different across rounds.
        assert_eq!(mean, DpRound::new(n).finish(&c, 0.5, 7, 3).0);
        assert_ne!(mean, DpRound::new(n).finish(&c, 0.5, 7, 4).0);
    }

    #[test]
    fn distributed_noise_sums_to_the_central_amount() {
        let c = config(2.0, Clipping::Fixed { norm: 0.5 }, NoisePlacement::Distributed);
        let n = 50_000;
        let mut round = DpRound::new(n);
        for k in 0..10 {
            let mut zero = vec![0.0f32; n];
            privatize_change(&c, 0.5, &mut zero, 7, 3, k);
            round.add(&zero, true);
        }
        let (mean, _) = round.finish(&c, 0.5, 7, 3);
        let var = mean.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.003, "std {}", var.sqrt());
    }

    #[test]
    fn adaptive_clipping_moves_toward_the_target_quantile() {
        let adaptive = |z| {
            config(
                z,
                Clipping::Adaptive { initial_norm: 1.0, target_quantile: 0.5, learning_rate: 0.2, count_stddev: None },
                NoisePlacement::Central,
            )
        };
        let c = adaptive(0.0);
        // All 10 clients unclipped: b̄ = 1 > 0.5, so C shrinks by exp(−0.2·0.5).
        let mut round = DpRound::new(1);
        for _ in 0..10 {
            round.add(&[0.1], true);
        }
        let (_, next) = round.finish(&c, 1.0, 1, 1);
        assert!((next - (-0.1f64).exp()).abs() < 1e-12);
        // None unclipped: C grows by exp(0.1).
        let mut round = DpRound::new(1);
        round.add(&[1.0], false);
        assert!((round.finish(&c, 1.0, 1, 1).1 - 0.1f64.exp()).abs() < 1e-12);
        // z_Δ > z with count noise σ_b = m/20 = 0.5: z_Δ = (1 − 1)^… needs σ_b > z/2.
        assert!(adaptive(1.0).validate().is_err(), "σ_b = 0.5 is not above z/2 = 0.5");
        let ok = adaptive(0.5);
        assert!(ok.validate().is_ok());
        assert!(ok.update_noise_multiplier() > 0.5);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(config(-1.0, Clipping::Fixed { norm: 1.0 }, NoisePlacement::Central).validate().is_err());
        assert!(config(1.0, Clipping::Fixed { norm: 0.0 }, NoisePlacement::Central).validate().is_err());
        let q = Clipping::Adaptive { initial_norm: 1.0, target_quantile: 1.5, learning_rate: 0.2, count_stddev: None };
        assert!(config(0.1, q, NoisePlacement::Central).validate().is_err());
    }
}
