//! Local training: mini-batch SGD on one client's examples (McMahan et al.'s ClientUpdate).
//!
//! The batch order comes from the caller's generator (fedtask-v1: `seed(5, r, k)`), one
//! shuffle per epoch with the same generator carrying on, so a client's update depends only
//! on the global parameters, its data and that stream: never on which thread ran it.

use crate::data::Dataset;
use crate::model::{Model, Scratch};
use dainet_core::SplitMix64;

/// Local optimiser settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    /// Learning rate η.
    pub learning_rate: f32,
    /// Heavy-ball momentum (PyTorch's convention: `v ← m·v + g`, `θ ← θ − η·v`); 0 is off.
    pub momentum: f32,
    /// L2 weight decay added to the gradient (`g + wd·θ`); 0 is off.
    pub weight_decay: f32,
    /// FedProx proximal term μ (Li et al. 2020): adds `μ·(θ − θ_global)` to the gradient; 0
    /// is plain FedAvg.
    pub prox_mu: f32,
    /// Examples per mini-batch B; the last batch of an epoch may be shorter.
    pub batch_size: usize,
    /// Local epochs E.
    pub epochs: usize,
}

impl Default for SgdConfig {
    /// fedtask-v1's optimiser: η = 0.05, B = 10, E = 1, no momentum, decay or proximal term.
    fn default() -> Self {
        Self { learning_rate: 0.05, momentum: 0.0, weight_decay: 0.0, prox_mu: 0.0, batch_size: 10, epochs: 1 }
    }
}

impl SgdConfig {
    pub(crate) fn is_plain(&self) -> bool {
        self.momentum == 0.0 && self.weight_decay == 0.0 && self.prox_mu == 0.0
    }
}

/// The outcome of one client's local training.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalUpdate {
    /// The trained parameters θ_k.
    pub params: Vec<f32>,
    /// Examples the client holds (n_k), the weight of its update in FedAvg.
    pub num_examples: usize,
    /// The mean over steps of the batch-mean training loss.
    pub mean_loss: f64,
    /// SGD steps taken.
    pub steps: usize,
}

/// Trains `model` from `global` on the examples `indices` of `data` with `cfg`, drawing the
/// batch order from `batch_rng`. The momentum buffer starts at zero.
///
/// `indices` must be in range and `cfg.batch_size` positive: both are validated when the
/// run is planned, before any training starts.
pub fn train_local(
    model: &dyn Model,
    global: &[f32],
    data: &Dataset,
    indices: &[usize],
    cfg: &SgdConfig,
    batch_rng: &mut SplitMix64,
    scratch: &mut Scratch,
) -> LocalUpdate {
    train_local_with_momentum(model, global, data, indices, cfg, batch_rng, scratch, &mut Vec::new())
}

/// As [`train_local`], starting from the momentum buffer `velocity` and leaving the final one
/// in it, so a client can carry its momentum from one round to the next (worker momentum, as
/// in Karimireddy, He and Jaggi 2021, <https://arxiv.org/abs/2012.10333>). An empty
/// `velocity` starts at zero.
#[allow(clippy::too_many_arguments)]
pub fn train_local_with_momentum(
    model: &dyn Model,
    global: &[f32],
    data: &Dataset,
    indices: &[usize],
    cfg: &SgdConfig,
    batch_rng: &mut SplitMix64,
    scratch: &mut Scratch,
    velocity: &mut Vec<f32>,
) -> LocalUpdate {
    assert!(cfg.batch_size > 0, "batch size is validated before training");
    let dim = data.dim();
    let mut params = global.to_vec();
    if cfg.momentum != 0.0 && velocity.len() != params.len() {
        *velocity = vec![0.0; params.len()];
    }
    let mut grad = Vec::new();
    // A batch never holds more than the client's examples, whatever the setting says.
    let batch = cfg.batch_size.min(indices.len());
    let mut x = Vec::with_capacity(batch.saturating_mul(dim));
    let mut y = Vec::with_capacity(batch);
    let mut perm: Vec<usize> = Vec::with_capacity(indices.len());
    let (mut loss_sum, mut steps) = (0.0, 0);
    for _ in 0..cfg.epochs {
        perm.clear();
        perm.extend(0..indices.len());
        batch_rng.shuffle(&mut perm);
        for chunk in perm.chunks(cfg.batch_size) {
            x.clear();
            y.clear();
            for &p in chunk {
                x.extend_from_slice(data.row(indices[p]));
                y.push(data.labels()[indices[p]]);
            }
            loss_sum += if cfg.is_plain() {
                model.sgd_step(&mut params, &x, &y, cfg.learning_rate, scratch)
            } else {
                grad.resize(params.len(), 0.0);
                let loss = model.loss_grad(&params, &x, &y, &mut grad, scratch);
                apply_step(&mut params, &mut grad, velocity, global, cfg);
                loss
            };
            steps += 1;
        }
    }
    let mean_loss = if steps > 0 { loss_sum / steps as f64 } else { 0.0 };
    LocalUpdate { params, num_examples: indices.len(), mean_loss, steps }
}

/// One step of SGD with weight decay, the FedProx term and momentum.
fn apply_step(params: &mut [f32], grad: &mut [f32], velocity: &mut [f32], global: &[f32], cfg: &SgdConfig) {
    let (wd, mu, m, lr) = (cfg.weight_decay, cfg.prox_mu, cfg.momentum, cfg.learning_rate);
    for (i, g) in grad.iter_mut().enumerate() {
        *g += wd * params[i] + mu * (params[i] - global[i]);
    }
    if m != 0.0 {
        for (v, g) in velocity.iter_mut().zip(grad.iter()) {
            *v = m * *v + g;
        }
        for (p, v) in params.iter_mut().zip(velocity.iter()) {
            *p -= lr * v;
        }
    } else {
        for (p, g) in params.iter_mut().zip(grad.iter()) {
            *p -= lr * g;
        }
    }
}
