//! Server optimisers: how the aggregated change of a round moves the global model.
//!
//! The round's aggregate change is `Δ = aggregate − θ` (the "pseudo-gradient" of Reddi et
//! al. 2021, <https://arxiv.org/abs/2003.00295>, with the sign of a step). Formulas and
//! defaults follow Flower's strategies so that results compare:
//!
//! - [`ServerOpt::Sgd`] (FedAvg, FedAvgM; Hsu et al. 2019, <https://arxiv.org/abs/1909.06335>):
//!   `g = −Δ`; with momentum β > 0, `m ← g` in the first round, then `m ← β·m + g`;
//!   `θ ← θ − η·m` (PyTorch's SGD convention). η = 1, β = 0 is plain FedAvg.
//! - [`ServerOpt::Adam`]: `m ← β1·m + (1−β1)·Δ`, `v ← β2·v + (1−β2)·Δ²`,
//!   `θ ← θ + η_t·m/(√v + τ)` with Flower's bias correction
//!   `η_t = η·√(1 − β2^(r+1)) / (1 − β1^(r+1))` at round r.
//! - [`ServerOpt::Yogi`]: as Adam but `v ← v − (1−β2)·Δ²·sign(v − Δ²)` and no bias correction.
//! - [`ServerOpt::Adagrad`]: `m ← Δ`, `v ← v + Δ²`, `θ ← θ + η·m/(√v + τ)`.
//!
//! State (`m`, `v`) is kept in `f32`, one value per parameter, and can be saved and restored
//! so a resumed run continues exactly.

use crate::error::AggregationError;

/// A server optimiser and its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerOpt {
    /// SGD with optional momentum (FedAvg: lr 1, momentum 0; FedAvgM: Flower's defaults are
    /// the same, lr 1.0 and momentum 0.0).
    Sgd {
        /// Server learning rate η.
        lr: f64,
        /// Server momentum β.
        momentum: f64,
    },
    /// FedAdam (Flower defaults: η 0.1, β1 0.9, β2 0.99, τ 1e-3).
    Adam {
        /// Server learning rate η.
        eta: f64,
        /// First-moment decay β1.
        beta1: f64,
        /// Second-moment decay β2.
        beta2: f64,
        /// Adaptivity τ.
        tau: f64,
    },
    /// FedYogi (Flower defaults: η 0.01, β1 0.9, β2 0.99, τ 1e-3).
    Yogi {
        /// Server learning rate η.
        eta: f64,
        /// First-moment decay β1.
        beta1: f64,
        /// Second-moment decay β2.
        beta2: f64,
        /// Adaptivity τ.
        tau: f64,
    },
    /// FedAdagrad (Flower defaults: η 0.1, τ 1e-3).
    Adagrad {
        /// Server learning rate η.
        eta: f64,
        /// Adaptivity τ.
        tau: f64,
    },
}

impl ServerOpt {
    /// Plain FedAvg: θ ← aggregate.
    pub const FEDAVG: ServerOpt = ServerOpt::Sgd { lr: 1.0, momentum: 0.0 };
    /// FedAdam with Flower's defaults.
    pub const FEDADAM: ServerOpt = ServerOpt::Adam { eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    /// FedYogi with Flower's defaults.
    pub const FEDYOGI: ServerOpt = ServerOpt::Yogi { eta: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    /// FedAdagrad with Flower's defaults.
    pub const FEDADAGRAD: ServerOpt = ServerOpt::Adagrad { eta: 0.1, tau: 1e-3 };

    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<(), AggregationError> {
        let bad = |what: &str| Err(AggregationError::InvalidSetting(format!("server optimiser: {what}")));
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        let unit = |v: f64| (0.0..1.0).contains(&v);
        match *self {
            ServerOpt::Sgd { lr, momentum } => {
                if !finite_pos(lr) || !unit(momentum) {
                    return bad("lr must be positive and momentum in [0, 1)");
                }
            }
            ServerOpt::Adam { eta, beta1, beta2, tau } | ServerOpt::Yogi { eta, beta1, beta2, tau } => {
                if !finite_pos(eta) || !finite_pos(tau) || !unit(beta1) || !unit(beta2) {
                    return bad("eta and tau must be positive, beta1 and beta2 in [0, 1)");
                }
            }
            ServerOpt::Adagrad { eta, tau } => {
                if !finite_pos(eta) || !finite_pos(tau) {
                    return bad("eta and tau must be positive");
                }
            }
        }
        Ok(())
    }

    /// Whether the optimiser keeps state between rounds (momentum or moments), which a
    /// checkpoint must then carry.
    pub fn has_state(&self) -> bool {
        !matches!(*self, ServerOpt::Sgd { momentum, .. } if momentum == 0.0)
    }

    /// Whether this is plain FedAvg (the aggregate becomes the model, no state).
    pub fn is_identity(&self) -> bool {
        matches!(*self, ServerOpt::Sgd { lr, momentum } if lr == 1.0 && momentum == 0.0)
    }
}

/// A server optimiser with its state.
#[derive(Clone, Debug)]
pub struct ServerOptimizer {
    opt: ServerOpt,
    /// Momentum / first moment (empty until the first step).
    m: Vec<f32>,
    /// Second moment (empty until the first step).
    v: Vec<f32>,
}

impl ServerOptimizer {
    /// A fresh optimiser.
    pub fn new(opt: ServerOpt) -> Result<Self, AggregationError> {
        opt.validate()?;
        Ok(Self { opt, m: Vec::new(), v: Vec::new() })
    }

    /// The hyper-parameters.
    pub fn opt(&self) -> &ServerOpt {
        &self.opt
    }

    /// Moves `theta` (the global model θ_{r−1}) by the aggregated change `delta` of round `round`.
    pub fn step(&mut self, round: u32, theta: &mut [f32], delta: &[f32]) -> Result<(), AggregationError> {
        if delta.len() != theta.len() {
            return Err(AggregationError::WrongLength { expected: theta.len(), got: delta.len() });
        }
        let first = self.m.is_empty();
        // Plain SGD keeps no state; momentum keeps m; the adaptive optimisers keep m and v.
        let needs_m = self.opt.has_state();
        let needs_v = !matches!(self.opt, ServerOpt::Sgd { .. });
        if first && needs_m {
            self.m = vec![0.0; theta.len()];
        }
        if self.v.is_empty() && needs_v {
            self.v = vec![0.0; theta.len()];
        }
        match self.opt {
            ServerOpt::Sgd { lr, momentum } => {
                let lr = lr as f32;
                if momentum > 0.0 {
                    let b = momentum as f32;
                    for ((t, m), &d) in theta.iter_mut().zip(&mut self.m).zip(delta) {
                        let g = -d;
                        *m = if first { g } else { b * *m + g };
                        *t -= lr * *m;
                    }
                } else {
                    for (t, &d) in theta.iter_mut().zip(delta) {
                        *t -= lr * -d;
                    }
                }
            }
            ServerOpt::Adam { eta, beta1, beta2, tau } => {
                let r = f64::from(round) + 1.0;
                let eta_t = (eta * (1.0 - beta2.powf(r)).sqrt() / (1.0 - beta1.powf(r))) as f32;
                self.adaptive(theta, delta, beta1 as f32, eta_t, tau as f32, |v, d2| {
                    (beta2 as f32) * v + (1.0 - beta2 as f32) * d2
                });
            }
            ServerOpt::Yogi { eta, beta1, beta2, tau } => {
                self.adaptive(theta, delta, beta1 as f32, eta as f32, tau as f32, |v, d2| {
                    v - (1.0 - beta2 as f32) * d2 * sign(v - d2)
                });
            }
            ServerOpt::Adagrad { eta, tau } => {
                self.adaptive(theta, delta, 0.0, eta as f32, tau as f32, |v, d2| v + d2);
            }
        }
        Ok(())
    }

    /// The FedOpt step shared by Adam, Yogi and Adagrad, with `second` updating `v`.
    fn adaptive(
        &mut self,
        theta: &mut [f32],
        delta: &[f32],
        beta1: f32,
        eta: f32,
        tau: f32,
        second: impl Fn(f32, f32) -> f32,
    ) {
        for (((t, m), v), &d) in theta.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(delta) {
            *m = beta1 * *m + (1.0 - beta1) * d;
            *v = second(*v, d * d);
            *t += eta * *m / (v.sqrt() + tau);
        }
    }

    /// The state to checkpoint: `(m, v)`, empty before the first step.
    pub fn state(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// Restores state saved by [`ServerOptimizer::state`].
    pub fn restore(&mut self, m: Vec<f32>, v: Vec<f32>) -> Result<(), AggregationError> {
        if m.len() != v.len() {
            return Err(AggregationError::WrongLength { expected: m.len(), got: v.len() });
        }
        self.m = m;
        self.v = v;
        Ok(())
    }
}

/// numpy's sign: −1, 0 or 1.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(opt: ServerOpt, rounds: &[(u32, [f32; 2])]) -> Vec<f32> {
        let mut o = ServerOptimizer::new(opt).unwrap();
        let mut theta = vec![1.0f32, -1.0];
        for (round, delta) in rounds {
            o.step(*round, &mut theta, delta).unwrap();
        }
        theta
    }

    #[test]
    fn fedavg_takes_the_aggregate() {
        assert_eq!(step(ServerOpt::FEDAVG, &[(1, [0.5, 0.25])]), vec![1.5, -0.75]);
    }

    #[test]
    fn fedavgm_accumulates_momentum() {
        // g1 = -Δ1 = [-1, 0]; m = g1; θ = [1, -1] - 0.5·[-1, 0] = [1.5, -1].
        // g2 = [-1, -2]; m = 0.9·[-1, 0] + [-1, -2] = [-1.9, -2]; θ = [1.5 + 0.95, -1 + 1].
        let opt = ServerOpt::Sgd { lr: 0.5, momentum: 0.9 };
        let theta = step(opt, &[(1, [1.0, 0.0]), (2, [1.0, 2.0])]);
        assert!((theta[0] - 2.45).abs() < 1e-6 && theta[1].abs() < 1e-6, "{theta:?}");
    }

    #[test]
    fn one_fedadam_step_matches_a_hand_computation() {
        // Round 1, Δ = [0.2, -0.4], Flower defaults.
        // m = 0.1·Δ = [0.02, -0.04]; v = 0.01·Δ² = [0.0004, 0.0016];
        // η_t = 0.1·√(1 − 0.99²)/(1 − 0.9²) = 0.1·0.141067/0.19 = 0.0742458;
        // θ = [1, -1] + η_t·[0.02/(0.02 + 0.001), -0.04/(0.04 + 0.001)]
        //   = [1 + 0.0742458·0.952381, -1 - 0.0742458·0.975610] = [1.0707103, -1.0724350].
        let theta = step(ServerOpt::FEDADAM, &[(1, [0.2, -0.4])]);
        assert!((f64::from(theta[0]) - 1.070_710_3).abs() < 1e-6, "{theta:?}");
        assert!((f64::from(theta[1]) + 1.072_435_0).abs() < 1e-6, "{theta:?}");
    }

    #[test]
    fn one_fedyogi_step_matches_a_hand_computation() {
        // m = [0.02, -0.04]; v = 0 − 0.01·Δ²·sign(0 − Δ²) = 0.01·Δ² = [0.0004, 0.0016];
        // θ = [1 + 0.01·0.952381, -1 − 0.01·0.975610] = [1.0095238, -1.0097561].
        let theta = step(ServerOpt::FEDYOGI, &[(1, [0.2, -0.4])]);
        assert!((f64::from(theta[0]) - 1.009_523_8).abs() < 1e-6, "{theta:?}");
        assert!((f64::from(theta[1]) + 1.009_756_1).abs() < 1e-6, "{theta:?}");
    }

    #[test]
    fn one_fedadagrad_step_matches_a_hand_computation() {
        // m = Δ; v = Δ²; θ = θ + 0.1·Δ/(|Δ| + 0.001) = [1 + 0.1·0.2/0.201, -1 − 0.1·0.4/0.401].
        let theta = step(ServerOpt::FEDADAGRAD, &[(1, [0.2, -0.4])]);
        assert!((theta[0] - (1.0 + 0.1 * 0.2 / 0.201)).abs() < 1e-6, "{theta:?}");
        assert!((theta[1] + (1.0 + 0.1 * 0.4 / 0.401)).abs() < 1e-6, "{theta:?}");
    }

    #[test]
    fn restored_state_continues_identically() {
        let mut a = ServerOptimizer::new(ServerOpt::FEDADAM).unwrap();
        let mut ta = vec![0.5f32; 3];
        a.step(1, &mut ta, &[0.1, -0.2, 0.3]).unwrap();
        let (m, v) = a.state();
        let mut b = ServerOptimizer::new(ServerOpt::FEDADAM).unwrap();
        b.restore(m.to_vec(), v.to_vec()).unwrap();
        let mut tb = ta.clone();
        a.step(2, &mut ta, &[0.3, 0.1, -0.1]).unwrap();
        b.step(2, &mut tb, &[0.3, 0.1, -0.1]).unwrap();
        assert_eq!(ta, tb);
    }

    #[test]
    fn bad_hyper_parameters_are_refused() {
        assert!(ServerOptimizer::new(ServerOpt::Sgd { lr: 0.0, momentum: 0.0 }).is_err());
        assert!(ServerOptimizer::new(ServerOpt::Sgd { lr: 1.0, momentum: 1.0 }).is_err());
        assert!(ServerOptimizer::new(ServerOpt::Adam { eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.0 }).is_err());
        assert!(ServerOptimizer::new(ServerOpt::Adagrad { eta: f64::NAN, tau: 1e-3 }).is_err());
    }
}
