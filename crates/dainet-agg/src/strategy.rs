//! Strategies: one value that says how a round's updates become the next global model.
//!
//! A [`Strategy`] is composed, not inherited: an aggregation [`Rule`] (the mean of FedAvg or
//! a robust rule), a [`ServerOpt`] (FedAvgM, FedAdam, FedYogi, FedAdagrad), and two wrappers
//! that work with any rule: update-norm clipping and bucketing. [`StrategyConfig::named`]
//! builds every strategy Flower users know, with Flower's defaults.
//!
//! Each round runs in two steps, so that the sans-IO coordinator can fold updates in as they
//! arrive: [`Strategy::begin_round`] returns a [`RoundAggregation`] that validates and takes
//! updates one by one; [`Strategy::finish_round`] combines them and applies the server
//! optimiser. Rules work on *changes* `Δ_k = θ_k − θ` from the global model θ, so clipping
//! and the norm bound are about how far a client moved the model.
//!
//! Mean-based strategies without bucketing stream: one f64 accumulator is resident, never the
//! updates. Robust rules and bucketing need every update of the round and keep them.

use crate::dp::{privatize_change, DpConfig, DpRound};
use crate::error::{check_update, AggregationError};
use crate::mean::FedAvg;
use crate::robust;
use crate::server_opt::{ServerOpt, ServerOptimizer};
use dainet_core::text::excerpt;
use dainet_core::{Purpose, SplitMix64};

/// A way to combine one round's changes into one change: the seam for rules of your own.
///
/// Implement [`AggregationRule::combine`] (and [`AggregationRule::min_updates`] if the rule
/// needs more than one change), wrap it in [`Rule::Custom`], and it works with every server
/// optimiser and both wrappers. Implementations must be deterministic: the same changes in
/// the same order give the same bits.
pub trait AggregationRule: Send + Sync + std::fmt::Debug {
    /// A short name with its parameters, e.g. `krum(f=2)`.
    fn name(&self) -> String;

    /// The fewest changes the rule can combine (e.g. 2f + 3 for Krum). Default: 1.
    fn min_updates(&self) -> usize {
        1
    }

    /// Combines `changes` (client model minus global model); `weights` are the clients'
    /// example counts, in the same order.
    fn combine(&self, changes: &[&[f32]], weights: &[f64]) -> Result<Vec<f32>, AggregationError>;
}

/// How the changes of a round are combined.
#[derive(Clone, Debug)]
pub enum Rule {
    /// The example-weighted mean (FedAvg, McMahan et al. 2017).
    Mean,
    /// Coordinate-wise median (Yin et al. 2018).
    Median,
    /// Coordinate-wise trimmed mean dropping a `beta` share at each end (Yin et al. 2018).
    TrimmedMean {
        /// Share trimmed at each end, in [0, 0.5).
        beta: f64,
    },
    /// Krum (Blanchard et al. 2017) tolerating `f` Byzantine updates.
    Krum {
        /// Byzantine updates tolerated.
        f: usize,
    },
    /// Multi-Krum: the mean of the `m` best-scoring updates.
    MultiKrum {
        /// Byzantine updates tolerated.
        f: usize,
        /// Updates averaged.
        m: usize,
    },
    /// Bulyan (El Mhamdi et al. 2018); needs n ≥ 4f + 3.
    Bulyan {
        /// Byzantine updates tolerated.
        f: usize,
    },
    /// Centered clipping (Karimireddy et al. 2021) around the previous model.
    CenteredClipping {
        /// Clipping radius τ.
        tau: f64,
        /// Iterations L.
        iterations: usize,
    },
    /// A rule of your own.
    Custom(std::sync::Arc<dyn AggregationRule>),
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Rule::Custom(a), Rule::Custom(b)) => std::sync::Arc::ptr_eq(a, b),
            (Rule::Custom(_), _) | (_, Rule::Custom(_)) => false,
            _ => self.name() == other.name(),
        }
    }
}

impl Rule {
    fn streams(&self) -> bool {
        matches!(self, Rule::Mean)
    }
}

impl AggregationRule for Rule {
    fn min_updates(&self) -> usize {
        match *self {
            Rule::Krum { f } | Rule::MultiKrum { f, .. } => 2 * f + 3,
            Rule::Bulyan { f } => 4 * f + 3,
            Rule::Custom(ref rule) => rule.min_updates(),
            _ => 1,
        }
    }

    fn name(&self) -> String {
        match self {
            Rule::Mean => "mean".into(),
            Rule::Median => "median".into(),
            Rule::TrimmedMean { beta } => format!("trimmed-mean(beta={beta})"),
            Rule::Krum { f } => format!("krum(f={f})"),
            Rule::MultiKrum { f, m } => format!("multi-krum(f={f},m={m})"),
            Rule::Bulyan { f } => format!("bulyan(f={f})"),
            Rule::CenteredClipping { tau, iterations } => format!("centered-clipping(tau={tau},L={iterations})"),
            Rule::Custom(rule) => rule.name(),
        }
    }

    /// Combines `changes` (with example counts `weights`, used by the mean only).
    fn combine(&self, changes: &[&[f32]], weights: &[f64]) -> Result<Vec<f32>, AggregationError> {
        match *self {
            Rule::Custom(ref rule) => rule.combine(changes, weights),
            Rule::Mean => {
                let len = changes.first().map_or(0, |c| c.len());
                let mut mean = FedAvg::new(len);
                for (c, &w) in changes.iter().zip(weights) {
                    mean.add(c, w)?;
                }
                mean.finish()
            }
            Rule::Median => robust::median(changes),
            Rule::TrimmedMean { beta } => robust::trimmed_mean(changes, beta),
            Rule::Krum { f } => robust::multi_krum(changes, f, 1).map(|(v, _)| v),
            Rule::MultiKrum { f, m } => robust::multi_krum(changes, f, m).map(|(v, _)| v),
            Rule::Bulyan { f } => robust::bulyan(changes, f),
            Rule::CenteredClipping { tau, iterations } => {
                let len = changes.first().map_or(0, |c| c.len());
                robust::centered_clipping(changes, &vec![0.0; len], tau, iterations)
            }
        }
    }
}

/// Everything that defines a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyConfig {
    /// The display name (e.g. `fedadam`, `median+bucketing(2)`).
    pub name: String,
    /// How changes are combined.
    pub rule: Rule,
    /// How the combined change moves the global model.
    pub server: ServerOpt,
    /// Clip every change to this L2 norm before combining (wrapper). Off by default.
    pub clip_norm: Option<f64>,
    /// Average random buckets of this many changes before a robust rule (Karimireddy, He and
    /// Jaggi 2022, <https://arxiv.org/abs/2006.09365>). Off by default.
    pub bucket_size: Option<usize>,
    /// Refuse changes longer than this L2 norm (counted as `norm_too_large`). Off by default.
    pub max_update_norm: Option<f64>,
    /// Client-level differential privacy (mean-based rules only). Off by default.
    pub dp: Option<DpConfig>,
}

/// The names [`StrategyConfig::named`] knows.
pub const STRATEGY_NAMES: &[&str] = &[
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "bulyan",
    "centered-clipping",
];

/// Parameters of the named strategies that have no universal default.
#[derive(Clone, Debug, PartialEq)]
pub struct RobustParams {
    /// Byzantine updates tolerated per round (Krum, Multi-Krum, Bulyan).
    pub f: usize,
    /// Updates averaged by Multi-Krum.
    pub m: usize,
    /// Trimmed share at each end (trimmed mean). Default 0.2.
    pub beta: f64,
    /// Centered clipping radius τ. Default 1.0.
    pub tau: f64,
    /// Centered clipping iterations. Default 3.
    pub iterations: usize,
    /// FedAvgM server learning rate. Default 1.0 (Flower).
    pub server_lr: f64,
    /// FedAvgM server momentum. Default 0.0 (Flower).
    pub server_momentum: f64,
}

impl Default for RobustParams {
    fn default() -> Self {
        Self { f: 0, m: 1, beta: 0.2, tau: 1.0, iterations: 3, server_lr: 1.0, server_momentum: 0.0 }
    }
}

impl StrategyConfig {
    /// The strategy called `name` (one of [`STRATEGY_NAMES`]) with Flower's defaults and
    /// `params` for the settings that have none. FedProx is FedAvg on the server; its
    /// proximal term μ is a client setting.
    pub fn named(name: &str, params: &RobustParams) -> Result<Self, AggregationError> {
        let p = params;
        let (rule, server) = match name {
            "fedavg" | "fedprox" => (Rule::Mean, ServerOpt::FEDAVG),
            "fedavgm" => (Rule::Mean, ServerOpt::Sgd { lr: p.server_lr, momentum: p.server_momentum }),
            "fedadam" => (Rule::Mean, ServerOpt::FEDADAM),
            "fedyogi" => (Rule::Mean, ServerOpt::FEDYOGI),
            "fedadagrad" => (Rule::Mean, ServerOpt::FEDADAGRAD),
            "median" => (Rule::Median, ServerOpt::FEDAVG),
            "trimmed-mean" => (Rule::TrimmedMean { beta: p.beta }, ServerOpt::FEDAVG),
            "krum" => (Rule::Krum { f: p.f }, ServerOpt::FEDAVG),
            "multi-krum" => (Rule::MultiKrum { f: p.f, m: p.m }, ServerOpt::FEDAVG),
            "bulyan" => (Rule::Bulyan { f: p.f }, ServerOpt::FEDAVG),
            "centered-clipping" => (Rule::CenteredClipping { tau: p.tau, iterations: p.iterations }, ServerOpt::FEDAVG),
            other => {
                return Err(AggregationError::InvalidSetting(format!(
                    "unknown strategy {}; known: {}",
                    excerpt(other),
                    STRATEGY_NAMES.join(", ")
                )))
            }
        };
        Ok(Self {
            name: name.into(),
            rule,
            server,
            clip_norm: None,
            bucket_size: None,
            max_update_norm: None,
            dp: None,
        })
    }

    /// Minimum updates a round needs for the rule to be defined (e.g. 4f + 3 for Bulyan),
    /// counted after bucketing.
    pub fn min_updates(&self) -> usize {
        self.rule.min_updates() * self.bucket_size.unwrap_or(1)
    }

    /// A one-line description, e.g. `bulyan(f=2) + clip(5) + bucketing(2)`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} [{}", self.name, self.rule.name());
        if !self.server.is_identity() {
            text += &format!(", server {:?}", self.server);
        }
        text += "]";
        if let Some(c) = self.clip_norm {
            text += &format!(" + clip({c})");
        }
        if let Some(s) = self.bucket_size {
            text += &format!(" + bucketing({s})");
        }
        if let Some(dp) = &self.dp {
            text += &format!(" + dp(z={}, C={}, {:?})", dp.noise_multiplier, dp.initial_norm(), dp.placement);
        }
        text
    }
}

/// A strategy with its server-optimiser state.
#[derive(Clone, Debug)]
pub struct Strategy {
    config: StrategyConfig,
    server: ServerOptimizer,
    task_seed: u64,
    /// The mean's accumulator, kept between rounds so a large model's is not allocated anew.
    spare: Vec<f64>,
    /// The clipping norm of the next round (differential privacy only).
    dp_clip_norm: f64,
}

impl Strategy {
    /// Builds the strategy; `task_seed` names the bucketing stream.
    pub fn new(config: StrategyConfig, task_seed: u64) -> Result<Self, AggregationError> {
        let positive = |v: Option<f64>, what: &str| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(AggregationError::InvalidSetting(format!("{what} must be positive, got {x}")))
            }
            _ => Ok(()),
        };
        positive(config.clip_norm, "clip_norm")?;
        positive(config.max_update_norm, "max_update_norm")?;
        if config.bucket_size == Some(0) {
            return Err(AggregationError::InvalidSetting("bucket_size must be at least 1".into()));
        }
        match config.rule {
            Rule::TrimmedMean { beta } if !(0.0..0.5).contains(&beta) => {
                return Err(AggregationError::InvalidSetting(format!(
                    "trimmed-mean beta must be in [0, 0.5), got {beta}"
                )))
            }
            Rule::MultiKrum { m: 0, .. } => {
                return Err(AggregationError::InvalidSetting("multi-krum m must be at least 1".into()))
            }
            Rule::CenteredClipping { tau, iterations } if !(tau.is_finite() && tau > 0.0) || iterations == 0 => {
                return Err(AggregationError::InvalidSetting(
                    "centered-clipping needs tau > 0 and at least one iteration".into(),
                ))
            }
            _ => {}
        }
        if let Some(dp) = &config.dp {
            dp.validate()?;
            if config.rule != Rule::Mean || config.bucket_size.is_some() || config.clip_norm.is_some() {
                return Err(AggregationError::InvalidSetting(
                    "differential privacy works with mean-based strategies (fedavg, fedavgm, fedprox, fedadam, \
                     fedyogi, fedadagrad) without bucketing or --clip-norm: it clips to its own norm"
                        .into(),
                ));
            }
        }
        let server = ServerOptimizer::new(config.server.clone())?;
        let dp_clip_norm = config.dp.as_ref().map_or(0.0, DpConfig::initial_norm);
        Ok(Self { config, server, task_seed, spare: Vec::new(), dp_clip_norm })
    }

    /// The configuration.
    pub fn config(&self) -> &StrategyConfig {
        &self.config
    }

    /// Minimum updates a round needs for the rule to be defined (e.g. 4f + 3 for Bulyan),
    /// counted after bucketing.
    pub fn min_updates(&self) -> usize {
        self.config.min_updates()
    }

    /// The clipping norm the next round uses (differential privacy only).
    pub fn dp_clip_norm(&self) -> Option<f64> {
        self.config.dp.as_ref().map(|_| self.dp_clip_norm)
    }

    /// Restores a checkpointed clipping norm (adaptive clipping).
    pub fn restore_dp_clip_norm(&mut self, norm: f64) {
        self.dp_clip_norm = norm;
    }

    /// Starts aggregating a round whose global model is `global`.
    pub fn begin_round(&mut self, round: u32, global: &[f32]) -> RoundAggregation {
        if let Some(dp) = &self.config.dp {
            return RoundAggregation {
                global: global.to_vec(),
                clip_norm: None,
                max_norm: self.config.max_update_norm,
                mean: None,
                kept: Vec::new(),
                dp: Some((dp.clone(), self.dp_clip_norm, DpRound::new(global.len()), self.task_seed, round)),
                count: 0,
            };
        }
        let streaming = self.config.rule.streams() && self.config.bucket_size.is_none();
        let (clip_norm, max_norm) = (self.config.clip_norm, self.config.max_update_norm);
        // Without clipping or a bound, the mean takes client models as they are and subtracts
        // the global model as it folds; otherwise it takes the changes computed here.
        let spare = if streaming { std::mem::take(&mut self.spare) } else { Vec::new() };
        let mean = match (clip_norm, max_norm) {
            (None, None) => FedAvg::of_changes_in(spare, global.to_vec()),
            _ => FedAvg::new_in(spare, global.len()),
        };
        RoundAggregation {
            global: global.to_vec(),
            clip_norm,
            max_norm,
            mean: streaming.then_some(mean),
            kept: Vec::new(),
            dp: None,
            count: 0,
        }
    }

    /// Combines the round's changes and moves the global model: returns θ_r.
    pub fn finish_round(&mut self, round: u32, agg: RoundAggregation) -> Result<Vec<f32>, AggregationError> {
        if agg.count == 0 {
            return Err(AggregationError::Empty);
        }
        let mut next_clip = None;
        let delta = match (agg.dp, agg.mean) {
            (Some((dp, clip, sum, seed, _)), _) => {
                let (mean, next) = sum.finish(&dp, clip, seed, round);
                next_clip = Some(next);
                mean
            }
            (None, mean) => match mean {
                Some(mean) => {
                    let (delta, spare) = mean.finish_keeping_buffer()?;
                    self.spare = spare;
                    delta
                }
                None => {
                    let (changes, weights) = self.bucketed(round, agg.kept);
                    let refs: Vec<&[f32]> = changes.iter().map(Vec::as_slice).collect();
                    self.config.rule.combine(&refs, &weights)?
                }
            },
        };
        let mut theta = agg.global;
        let mut server = self.server.clone();
        server.step(round, &mut theta, &delta)?;
        // Finite updates can still sum past f32's range (a boosted attack): never publish a
        // model that is not finite; the round keeps the previous one and says why.
        if let Some(index) = theta.iter().position(|v| !v.is_finite()) {
            return Err(AggregationError::NonFinite { index, value: theta[index] });
        }
        self.server = server;
        if let Some(next) = next_clip {
            self.dp_clip_norm = next;
        }
        Ok(theta)
    }

    /// Moves the global model by a round's change that arrives already summed, from secure
    /// aggregation: `sum` is Σ_k w_k·Δ_k over the `count` contributors, `total_weight` is Σ_k w_k.
    /// Only mean-based strategies can use it. With differential privacy the weights must be 1:
    /// the central noise (if any) is added to the sum and the sum is divided by m, as in
    /// [`crate::dp`]; clipping and distributed noise were the clients' job.
    pub fn finish_secure_round(
        &mut self,
        round: u32,
        global: &[f32],
        sum: &[f64],
        total_weight: f64,
        count: usize,
    ) -> Result<Vec<f32>, AggregationError> {
        if self.config.rule != Rule::Mean || self.config.bucket_size.is_some() {
            return Err(AggregationError::InvalidSetting(
                "secure aggregation only reveals the sum: it works with mean-based strategies without bucketing".into(),
            ));
        }
        if sum.len() != global.len() {
            return Err(AggregationError::WrongLength { expected: global.len(), got: sum.len() });
        }
        if count == 0 || !(total_weight.is_finite() && total_weight > 0.0) {
            return Err(AggregationError::Empty);
        }
        let delta: Vec<f32> = match &self.config.dp {
            Some(dp) => {
                let mut round_sum = DpRound::new(0);
                round_sum.set_sum(sum.to_vec(), count);
                round_sum.finish(dp, self.dp_clip_norm, self.task_seed, round).0
            }
            None => sum.iter().map(|s| (s / total_weight) as f32).collect(),
        };
        let mut theta = global.to_vec();
        let mut server = self.server.clone();
        server.step(round, &mut theta, &delta)?;
        if let Some(index) = theta.iter().position(|v| !v.is_finite()) {
            return Err(AggregationError::NonFinite { index, value: theta[index] });
        }
        self.server = server;
        Ok(theta)
    }

    /// With bucketing: shuffles the changes with the round's bucketing stream and replaces
    /// each bucket of `s` by its weighted mean (weight: the bucket's examples).
    fn bucketed(&self, round: u32, mut kept: Vec<(Vec<f32>, f64)>) -> (Vec<Vec<f32>>, Vec<f64>) {
        let Some(s) = self.config.bucket_size.filter(|&s| s > 1) else {
            return kept.into_iter().unzip();
        };
        SplitMix64::stream(self.task_seed, Purpose::Bucketing, u64::from(round), 0).shuffle(&mut kept);
        kept.chunks(s)
            .map(|bucket| {
                let mut mean = FedAvg::new(bucket[0].0.len());
                for (c, w) in bucket {
                    mean.add(c, *w).expect("changes were validated when added");
                }
                let weight = mean.total_weight();
                (mean.finish().expect("a bucket is not empty"), weight)
            })
            .unzip()
    }

    /// The server optimiser's state, to checkpoint: `(m, v)`.
    pub fn server_state(&self) -> (&[f32], &[f32]) {
        self.server.state()
    }

    /// Restores a checkpointed server-optimiser state.
    pub fn restore_server_state(&mut self, m: Vec<f32>, v: Vec<f32>) -> Result<(), AggregationError> {
        self.server.restore(m, v)
    }
}

/// One round's updates, validated and folded in (or kept) as they arrive.
#[derive(Debug)]
pub struct RoundAggregation {
    global: Vec<f32>,
    clip_norm: Option<f64>,
    max_norm: Option<f64>,
    mean: Option<FedAvg>,
    kept: Vec<(Vec<f32>, f64)>,
    /// Differential privacy: its settings, this round's clipping norm, the clipped sum, and the
    /// task seed and round naming the noise streams.
    dp: Option<(DpConfig, f64, DpRound, u64, u32)>,
    count: usize,
}

impl RoundAggregation {
    /// Takes a client's model `update` with `weight` (its example count). A malformed update
    /// (wrong length, NaN or Inf, bad weight, change longer than the bound) is refused and
    /// changes nothing.
    pub fn add(&mut self, update: Vec<f32>, weight: f64) -> Result<(), AggregationError> {
        if let (Some(mean), None, None) = (&mut self.mean, self.clip_norm, self.max_norm) {
            // The common case: validate, then fold w·(θ_k − θ) into the mean with the next ones.
            mean.push(update, weight)?;
            self.count += 1;
            return Ok(());
        }
        check_update(&update, self.global.len())?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AggregationError::BadWeight(weight));
        }
        let mut change: Vec<f32> =
            update.iter().zip(&self.global).map(|(&u, &g)| (f64::from(u) - f64::from(g)) as f32).collect();
        if let Some(bound) = self.max_norm {
            let norm = robust::l2_norm(&change);
            if norm > bound {
                return Err(AggregationError::NormTooLarge { norm, bound });
            }
        }
        if let Some((dp, clip, sum, seed, round)) = &mut self.dp {
            // In the simulator the coordinator clips (and, for distributed noise, adds the
            // client's share) on the client's behalf; with secure aggregation the client must.
            let unclipped = privatize_change(dp, *clip, &mut change, *seed, *round, self.count as u64);
            sum.add(&change, unclipped);
            self.count += 1;
            return Ok(());
        }
        if let Some(c) = self.clip_norm {
            robust::clip_to_norm(&mut change, c);
        }
        match &mut self.mean {
            Some(mean) => mean.push(change, weight)?,
            None => self.kept.push((change, weight)),
        }
        self.count += 1;
        Ok(())
    }

    /// Updates taken so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether updates are folded in as they arrive (nothing kept).
    pub fn is_streaming(&self) -> bool {
        self.mean.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: StrategyConfig, global: &[f32], updates: &[(&[f32], f64)]) -> Result<Vec<f32>, AggregationError> {
        let mut s = Strategy::new(config, 1)?;
        let mut agg = s.begin_round(1, global);
        for (u, w) in updates {
            agg.add(u.to_vec(), *w)?;
        }
        s.finish_round(1, agg)
    }

    fn named(name: &str) -> StrategyConfig {
        StrategyConfig::named(name, &RobustParams { f: 1, m: 2, ..RobustParams::default() }).unwrap()
    }

    #[test]
    fn fedavg_streams_and_equals_the_weighted_mean() {
        let mut s = Strategy::new(named("fedavg"), 1).unwrap();
        assert!(s.begin_round(1, &[0.0]).is_streaming());
        let out = run(named("fedavg"), &[1.0, 1.0], &[(&[2.0, 1.0], 1.0), (&[5.0, 3.0], 3.0)]).unwrap();
        assert_eq!(out, vec![4.25, 2.5]);
    }

    #[test]
    fn median_ignores_an_outlier() {
        let out = run(named("median"), &[0.0], &[(&[1.0], 1.0), (&[2.0], 1.0), (&[1000.0], 50.0)]).unwrap();
        assert_eq!(out, vec![2.0]);
    }

    #[test]
    fn clipping_bounds_every_change() {
        // Changes [3, 4] (norm 5) and [0, 1]; clipped to norm 1: [0.6, 0.8] and [0, 1].
        let mut config = named("fedavg");
        config.clip_norm = Some(1.0);
        let out = run(config, &[1.0, 1.0], &[(&[4.0, 5.0], 1.0), (&[1.0, 2.0], 1.0)]).unwrap();
        assert!((out[0] - 1.3).abs() < 1e-6 && (out[1] - 1.9).abs() < 1e-6, "{out:?}");
        assert!(robust::l2_norm(&[out[0] - 1.0, out[1] - 1.0]) <= 1.0 + 1e-6);
    }

    #[test]
    fn the_norm_bound_refuses_long_changes() {
        let mut config = named("fedavg");
        config.max_update_norm = Some(2.0);
        let mut s = Strategy::new(config, 1).unwrap();
        let mut agg = s.begin_round(1, &[0.0, 0.0]);
        assert!(matches!(agg.add(vec![3.0, 4.0], 1.0), Err(AggregationError::NormTooLarge { .. })));
        assert!(matches!(agg.add(vec![f32::NAN, 0.0], 1.0), Err(AggregationError::NonFinite { .. })));
        assert!(matches!(agg.add(vec![1.0], 1.0), Err(AggregationError::WrongLength { .. })));
        agg.add(vec![1.0, 1.0], 1.0).unwrap();
        assert_eq!(agg.count(), 1);
        assert_eq!(s.finish_round(1, agg).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn bucketing_averages_buckets_before_the_rule() {
        // Four changes in buckets of 2 → two bucket means; median of two = their mean, which
        // equals the overall mean here whatever the shuffle.
        let mut config = named("median");
        config.bucket_size = Some(2);
        let out = run(config, &[0.0], &[(&[1.0], 1.0), (&[2.0], 1.0), (&[3.0], 1.0), (&[6.0], 1.0)]).unwrap();
        assert_eq!(out, vec![3.0]);
    }

    #[test]
    fn bulyan_needs_4f_plus_3() {
        let config = StrategyConfig::named("bulyan", &RobustParams { f: 2, ..RobustParams::default() }).unwrap();
        assert_eq!(Strategy::new(config.clone(), 1).unwrap().min_updates(), 11);
        let updates: Vec<Vec<f32>> = (0..9).map(|i| vec![i as f32]).collect();
        let pairs: Vec<(&[f32], f64)> = updates.iter().map(|u| (u.as_slice(), 1.0)).collect();
        let e = run(config, &[0.0], &pairs).unwrap_err().to_string();
        assert!(e.contains("4f + 3") && e.contains("got 9"), "{e}");
    }

    #[test]
    fn every_named_strategy_builds_and_unknown_names_are_refused() {
        for name in STRATEGY_NAMES {
            assert!(Strategy::new(named(name), 1).is_ok(), "{name}");
        }
        let e = StrategyConfig::named("fedsgd", &RobustParams::default()).unwrap_err().to_string();
        assert!(e.contains("fedsgd") && e.contains("fedadam"), "{e}");
    }

    #[test]
    fn an_aggregate_past_f32_range_is_refused() {
        // Changes are taken in f64: 3e38 − (−3e38) does not overflow.
        let out = run(named("fedavg"), &[-3.0e38], &[(&[3.0e38], 1.0), (&[-3.0e38], 1.0)]).unwrap();
        assert_eq!(out, vec![0.0]);
        // A server step that leaves f32's range is refused and keeps the state unchanged.
        let mut config = named("fedavgm");
        config.server = ServerOpt::Sgd { lr: 10.0, momentum: 0.0 };
        let mut s = Strategy::new(config, 1).unwrap();
        let mut agg = s.begin_round(1, &[3.0e38]);
        agg.add(vec![3.3e38], 1.0).unwrap();
        assert!(matches!(s.finish_round(1, agg), Err(AggregationError::NonFinite { .. })));
    }

    /// The coordinate-wise maximum, as a rule from outside the crate would be written.
    #[derive(Debug)]
    struct Max;

    impl AggregationRule for Max {
        fn name(&self) -> String {
            "max".into()
        }

        fn combine(&self, changes: &[&[f32]], _weights: &[f64]) -> Result<Vec<f32>, AggregationError> {
            let first = changes.first().ok_or(AggregationError::Empty)?;
            Ok((0..first.len()).map(|i| changes.iter().map(|c| c[i]).fold(f32::NEG_INFINITY, f32::max)).collect())
        }
    }

    #[test]
    fn a_custom_rule_plugs_into_a_strategy_with_a_wrapper() {
        let mut config = named("fedavg");
        config.rule = Rule::Custom(std::sync::Arc::new(Max));
        config.clip_norm = Some(1.0);
        // Changes [3, 0] and [0, 0.5] from [1, 1]; clipped: [1, 0] and [0, 0.5]; max: [1, 0.5].
        let out = run(config.clone(), &[1.0, 1.0], &[(&[4.0, 1.0], 1.0), (&[1.0, 1.5], 1.0)]).unwrap();
        // Clipping lands a hair inside the bound (clip_to_norm guarantees ‖Δ‖ ≤ bound).
        assert!((out[0] - 2.0).abs() < 1e-6 && out[1] == 1.5, "{out:?}");
        assert!(config.describe().contains("max"));
        assert_eq!(config.rule, config.clone().rule);
    }

    #[test]
    fn an_empty_round_is_an_error() {
        let mut s = Strategy::new(named("fedavg"), 1).unwrap();
        let agg = s.begin_round(1, &[0.0]);
        assert_eq!(s.finish_round(1, agg), Err(AggregationError::Empty));
    }
}
