//! The settings of a simulated federation, split by who owns them:
//! - [`TaskConfig`]: what every party of the federation agrees on — the model, local training,
//!   the rounds, the aggregation strategy, differential privacy and secure aggregation. A
//!   networked node runs the same task.
//! - [`SimulationConfig`]: what only the simulator has — where the virtual clients' data comes
//!   from and how it is cut among them, the faults it injects, the network it models.
//! - [`OutputConfig`]: where a simulation writes its run folder, and what it records there.
//!
//! [`Settings::validate`] checks each part and the rules that span them, without I/O; the
//! checks that need the data come when the run is planned ([`crate::plan::plan`], which calls
//! `validate` itself, so no caller can skip it). Every numeric setting has a range (the
//! constants of [`limits`]) checked there before anything is sized from it, and an error names
//! the setting, its range and the value: a mini-batch of 4,294,967,295 examples is refused as a
//! setting, not discovered as a 13 TB allocation. The names of the fields are the keys of the
//! binary's TOML file and its flags, and a [`Settings`] serialises to those flat keys.

use crate::error::EngineError;
use dainet_sim::NetworkModel;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which dataset to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// The 10,000 MNIST digits bundled in the binary.
    Mnist,
    /// Synthetic(α, β) of the FedProx paper: 30 devices, 60 features, 10 classes, one client
    /// per device (`synthetic_alpha`, `synthetic_beta`).
    Synthetic,
    /// An IDX images file and an IDX labels file (`--images`, `--labels`).
    Idx,
    /// A CSV file (`--csv`, `--label-column`, `--client-column`).
    Csv,
}

/// How the training examples are cut among clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum PartitionKind {
    /// Uniformly at random, equal sizes.
    Iid,
    /// McMahan's pathological non-IID: sort by label, cut shards, `shards_per_client` each.
    Shards,
    /// Label proportions per client drawn from Dirichlet(`dirichlet_alpha`).
    Dirichlet,
    /// One client per distinct value of the CSV's client column.
    Natural,
}

impl std::fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionKind::Iid => "iid",
            PartitionKind::Shards => "shards",
            PartitionKind::Dirichlet => "dirichlet",
            PartitionKind::Natural => "natural",
        })
    }
}

/// A Byzantine behaviour for evaluation (`--byzantine FRACTION --attack NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Send the change flipped and scaled: −s·Δ (`sign_flip_scale`).
    SignFlip,
    /// Send Gaussian noise N(0, σ²) as the change (`noise_sigma`).
    Gaussian,
    /// Train on flipped labels y ↦ C − 1 − y.
    LabelFlip,
    /// "A Little Is Enough" (Baruch et al. 2019): μ − z·σ of the attackers' changes.
    Alie,
    /// Inner-product manipulation (Xie et al. 2020): −ε · the honest mean (`ipm_epsilon`).
    Ipm,
    /// Model-replacement backdoor (Bagdasaryan et al. 2020): a 4x4 pixel trigger.
    Backdoor,
}

/// Who adds the differential-privacy noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DpNoise {
    /// The server adds it to the sum.
    Central,
    /// Each client adds its share (composes with secure aggregation).
    Distributed,
}

/// Which built-in model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multi-layer perceptron with ReLU hidden layers of sizes `hidden`.
    Mlp,
    /// Multinomial logistic regression.
    Lr,
    /// McMahan's CNN (images whose sides are multiples of 4).
    Cnn,
}

/// What every party of a federation agrees on: the model, local training, the rounds, the
/// strategy, differential privacy and secure aggregation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub model: ModelKind,
    pub hidden: Vec<usize>,
    pub fraction: f64,
    pub rounds: u32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub prox_mu: f64,
    pub carry_momentum: bool,
    pub seed: u64,
    pub round_timeout_ms: Option<u64>,
    pub min_updates: u32,
    pub strategy: String,
    pub robust_f: Option<usize>,
    pub multi_krum_m: Option<usize>,
    pub trim_beta: f64,
    pub cc_tau: f64,
    pub cc_iterations: usize,
    pub server_lr: f64,
    pub server_momentum: f64,
    pub clip_norm: Option<f64>,
    pub bucket_size: Option<usize>,
    pub max_update_norm: Option<f64>,
    pub dp_noise_multiplier: Option<f64>,
    pub dp_clip_norm: f64,
    pub dp_adaptive_clip: bool,
    pub dp_target_quantile: f64,
    pub dp_clip_lr: f64,
    pub dp_count_stddev: Option<f64>,
    pub dp_noise: DpNoise,
    pub dp_delta: f64,
    pub dp_epsilon: Option<f64>,
    pub secagg: bool,
    pub secagg_num_shares: Option<u32>,
    pub secagg_threshold: Option<u32>,
    pub secagg_clipping_range: f32,
    pub secagg_quantization_range: u32,
}

impl Default for TaskConfig {
    /// MLP 784-200-200-10, C = 0.1, E = 1, B = 10, lr 0.05, 50 rounds, seed 1, FedAvg:
    /// fedtask-v1's IID 2NN task (with [`SimulationConfig::default`]).
    fn default() -> Self {
        Self {
            model: ModelKind::Mlp,
            hidden: vec![200, 200],
            fraction: 0.1,
            rounds: 50,
            epochs: 1,
            batch_size: 10,
            lr: 0.05,
            momentum: 0.0,
            weight_decay: 0.0,
            prox_mu: 0.0,
            carry_momentum: false,
            seed: 1,
            round_timeout_ms: Some(10_000),
            min_updates: 1,
            strategy: "fedavg".into(),
            robust_f: None,
            multi_krum_m: None,
            trim_beta: 0.2,
            cc_tau: 1.0,
            cc_iterations: 3,
            server_lr: 1.0,
            server_momentum: 0.0,
            clip_norm: None,
            bucket_size: None,
            max_update_norm: None,
            dp_noise_multiplier: None,
            dp_clip_norm: 1.0,
            dp_adaptive_clip: false,
            dp_target_quantile: 0.5,
            dp_clip_lr: 0.2,
            dp_count_stddev: None,
            dp_noise: DpNoise::Central,
            dp_delta: 1e-5,
            dp_epsilon: None,
            secagg: false,
            secagg_num_shares: None,
            secagg_threshold: None,
            secagg_clipping_range: 1.0,
            secagg_quantization_range: 1 << 16,
        }
    }
}

/// What only the simulator has: the virtual clients' data and its partition, the faults it
/// injects, and the network it models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationConfig {
    pub dataset: DatasetKind,
    pub images: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    pub label_column: Option<String>,
    pub client_column: Option<String>,
    pub test_fraction: f64,
    pub synthetic_alpha: f64,
    pub synthetic_beta: f64,
    pub clients: usize,
    pub partition: PartitionKind,
    pub shards_per_client: usize,
    pub dirichlet_alpha: f64,
    pub min_partition_size: usize,
    pub byzantine: f64,
    pub attack: Option<AttackKind>,
    pub sign_flip_scale: f64,
    pub noise_sigma: f64,
    pub ipm_epsilon: f64,
    pub alie_z: Option<f64>,
    pub backdoor_target: u32,
    pub backdoor_fraction: f64,
    pub backdoor_boost: Option<f64>,
    pub stragglers: f64,
    pub dropouts: f64,
    pub dropout_after_masking: f64,
    /// The `[network]` section: latency, bandwidth, loss, slow devices, compute speed,
    /// crashes (see `dainet_sim::network`).
    #[serde(default)]
    pub network: NetworkModel,
}

impl Default for SimulationConfig {
    /// The bundled MNIST digits, 100 IID clients, no faults, 50 ms links of unlimited
    /// bandwidth that lose nothing, training that takes no virtual time.
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            images: None,
            labels: None,
            csv: None,
            label_column: None,
            client_column: None,
            test_fraction: 0.2,
            synthetic_alpha: 1.0,
            synthetic_beta: 1.0,
            clients: 100,
            partition: PartitionKind::Iid,
            shards_per_client: 2,
            dirichlet_alpha: 0.5,
            min_partition_size: 10,
            byzantine: 0.0,
            attack: None,
            sign_flip_scale: 10.0,
            noise_sigma: 10.0,
            ipm_epsilon: 0.1,
            alie_z: None,
            backdoor_target: 0,
            backdoor_fraction: 0.5,
            backdoor_boost: None,
            stragglers: 0.0,
            dropouts: 0.0,
            dropout_after_masking: 0.0,
            network: NetworkModel::default(),
        }
    }
}

/// Where a simulation writes its run folder and what it records there. Nothing here changes
/// what the run computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputConfig {
    pub out: PathBuf,
    pub checkpoint_every: u32,
    pub ledger: bool,
    /// Each trainer keeps what it sent (its updates, or its masked inputs under secure
    /// aggregation) in its own store, OUT/clients/NAME/.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_updates: bool,
}

impl Default for OutputConfig {
    /// `runs/simulate`, no checkpoints, a ledger, no kept updates.
    fn default() -> Self {
        Self { out: PathBuf::from("runs/simulate"), checkpoint_every: 0, ledger: true, keep_updates: false }
    }
}

/// Every setting of a simulation: the task, the simulator's knobs, the output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub task: TaskConfig,
    #[serde(flatten)]
    pub simulation: SimulationConfig,
    #[serde(flatten)]
    pub output: OutputConfig,
}

/// The ranges of the numeric settings, wide enough for any real run and narrow enough that
/// nothing sized from them overflows or asks for an absurd allocation.
pub mod limits {
    /// Most rounds a run may ask for.
    pub const MAX_ROUNDS: u32 = 1_000_000;
    /// Most local epochs.
    pub const MAX_EPOCHS: usize = 10_000;
    /// Largest mini-batch: 2^20 examples (a batch is allocated as batch × features floats).
    pub const MAX_BATCH_SIZE: usize = 1 << 20;
    /// Most hidden layers of an MLP.
    pub const MAX_HIDDEN_LAYERS: usize = 64;
    /// Widest hidden layer: 2^20 units (the model's total size is bounded again when built).
    pub const MAX_HIDDEN_WIDTH: usize = 1 << 20;
    /// Most (virtual) clients, and the bound of every count of clients or updates.
    pub const MAX_CLIENTS: usize = 10_000_000;
    /// Longest virtual time span, in milliseconds (round deadline, link latency): one week.
    pub const MAX_MILLIS: u64 = 7 * 24 * 3_600_000;
    /// Largest learning rate, decay, proximal term, scale or noise: beyond it a run only
    /// overflows to infinities.
    pub const MAX_FACTOR: f64 = 1e6;
    /// Most iterations of centered clipping.
    pub const MAX_CC_ITERATIONS: usize = 1_000;
    /// Most SecAgg+ quantisation levels: 2^24, the precision of an `f32`.
    pub const MAX_QUANTIZATION_RANGE: u32 = 1 << 24;
    /// Largest label a backdoor may target (the CSV reader's class bound).
    pub const MAX_LABEL: u32 = 1 << 20;
    /// Most examples a partition may require of a client, and most shards per client.
    pub const MAX_PER_CLIENT: usize = 1 << 30;
}

use limits::*;

/// Checks `lo <= value <= hi` (a NaN fails), naming the setting, the range and the value.
///
/// Values print with `{:?}`, which writes a float in its shortest exact form (`1e300`, not 301
/// digits) and an integer as it is.
fn within<T: PartialOrd + std::fmt::Debug>(name: &str, value: T, lo: T, hi: T, what: &str) -> Result<(), EngineError> {
    if lo <= value && value <= hi {
        Ok(())
    } else {
        invalid(format!("{name} = {value:?} is outside [{lo:?}, {hi:?}]: {what}"))
    }
}

/// [`within`] for an optional setting: nothing to check when it is off.
fn within_opt<T: PartialOrd + std::fmt::Debug>(
    name: &str,
    value: Option<T>,
    lo: T,
    hi: T,
    what: &str,
) -> Result<(), EngineError> {
    value.map_or(Ok(()), |v| within(name, v, lo, hi, what))
}

/// Checks `0 < value <= hi` (`hi` infinite: any finite positive value), naming the setting.
fn positive(name: &str, value: f64, hi: f64, what: &str) -> Result<(), EngineError> {
    match (value > 0.0 && value.is_finite() && value <= hi, hi.is_finite()) {
        (true, _) => Ok(()),
        (false, true) => invalid(format!("{name} = {value:?} is outside (0, {hi:?}]: {what}")),
        (false, false) => invalid(format!("{name} = {value:?} must be a finite number above 0: {what}")),
    }
}

/// [`positive`] for an optional setting.
fn positive_opt(name: &str, value: Option<f64>, hi: f64, what: &str) -> Result<(), EngineError> {
    value.map_or(Ok(()), |v| positive(name, v, hi, what))
}

/// Checks `0 <= value < 1` (a momentum, a trimmed share), naming the setting.
fn below_one(name: &str, value: f64, what: &str) -> Result<(), EngineError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        invalid(format!("{name} = {value:?} is outside [0, 1): {what}"))
    }
}

fn invalid(message: String) -> Result<(), EngineError> {
    Err(EngineError::Setting(message))
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return invalid(format!($($fmt)*));
        }
    };
}

impl TaskConfig {
    /// Checks what can be checked of the task alone, without data.
    pub fn validate(&self) -> Result<(), EngineError> {
        ensure!(
            self.fraction > 0.0 && self.fraction <= 1.0,
            "fraction = {} is outside (0, 1]: it is the share of clients sampled each round",
            self.fraction
        );
        ensure!(self.batch_size > 0, "batch_size = 0: a mini-batch needs at least one example");
        ensure!(self.epochs > 0, "epochs = 0: clients must train at least one epoch");
        ensure!(self.rounds > 0, "rounds = 0: run at least one round");
        for (name, v) in [("lr", self.lr), ("momentum", self.momentum), ("weight_decay", self.weight_decay)] {
            ensure!(v.is_finite() && v >= 0.0, "{name} = {v} must be a finite, non-negative number");
        }
        ensure!(
            self.prox_mu.is_finite() && self.prox_mu >= 0.0,
            "prox_mu = {} must be a finite, non-negative number",
            self.prox_mu
        );
        ensure!(self.lr != 0.0, "lr = 0: the model would never change");
        ensure!(
            self.model != ModelKind::Mlp || !self.hidden.contains(&0),
            "hidden = {:?}: every hidden layer needs at least one unit",
            self.hidden
        );
        ensure!(self.dp_delta > 0.0 && self.dp_delta < 1.0, "dp_delta = {} is outside (0, 1)", self.dp_delta);
        ensure!(
            self.dp_epsilon.is_none() || self.dp_noise_multiplier.is_some(),
            "dp_epsilon (a privacy budget) needs differential privacy on (--dp-noise-multiplier Z)"
        );
        if let Some(budget) = self.dp_epsilon {
            ensure!(budget.is_finite() && budget > 0.0, "dp_epsilon = {budget} must be a positive number");
        }
        ensure!(
            !self.carry_momentum || self.momentum != 0.0,
            "carry_momentum needs client momentum (--momentum, e.g. 0.9)"
        );
        ensure!(
            self.strategy != "fedprox" || self.prox_mu != 0.0,
            "strategy = fedprox needs a proximal term (--prox-mu, e.g. 0.01); with 0 it is fedavg"
        );
        self.validate_ranges()
    }

    /// The range of every numeric setting of the task (the seed takes any `u64`).
    fn validate_ranges(&self) -> Result<(), EngineError> {
        let clients = MAX_CLIENTS;
        within("rounds", self.rounds, 1, MAX_ROUNDS, "the number of rounds to run")?;
        within("epochs", self.epochs, 1, MAX_EPOCHS, "local epochs per round")?;
        within("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, "examples per local mini-batch")?;
        ensure!(
            self.hidden.len() <= MAX_HIDDEN_LAYERS,
            "hidden has {} layers, at most {MAX_HIDDEN_LAYERS} are allowed",
            self.hidden.len()
        );
        for &width in &self.hidden {
            within("hidden", width, 1, MAX_HIDDEN_WIDTH, "units of a hidden layer")?;
        }
        positive("lr", self.lr, MAX_FACTOR, "the local learning rate")?;
        below_one("momentum", self.momentum, "local SGD momentum")?;
        within("weight_decay", self.weight_decay, 0.0, MAX_FACTOR, "local L2 weight decay")?;
        within("prox_mu", self.prox_mu, 0.0, MAX_FACTOR, "FedProx's proximal term")?;
        within_opt("round_timeout_ms", self.round_timeout_ms, 1, MAX_MILLIS, "virtual milliseconds, at most a week")?;
        within("min_updates", self.min_updates as usize, 1, clients, "updates a round needs")?;
        within_opt("robust_f", self.robust_f, 0, clients, "Byzantine updates tolerated per round")?;
        within_opt("multi_krum_m", self.multi_krum_m, 1, clients, "updates multi-krum averages")?;
        ensure!(
            (0.0..0.5).contains(&self.trim_beta),
            "trim_beta = {:?} is outside [0, 0.5): the share trimmed at each end",
            self.trim_beta
        );
        positive("cc_tau", self.cc_tau, MAX_FACTOR, "centered clipping's radius")?;
        within("cc_iterations", self.cc_iterations, 1, MAX_CC_ITERATIONS, "centered clipping's iterations")?;
        positive("server_lr", self.server_lr, MAX_FACTOR, "the server learning rate")?;
        below_one("server_momentum", self.server_momentum, "server momentum")?;
        positive_opt("clip_norm", self.clip_norm, f64::INFINITY, "an L2 norm")?;
        within_opt("bucket_size", self.bucket_size, 1, clients, "changes averaged per bucket")?;
        positive_opt("max_update_norm", self.max_update_norm, f64::INFINITY, "an L2 norm")?;
        within_opt("dp_noise_multiplier", self.dp_noise_multiplier, 0.0, MAX_FACTOR, "noise std over the clip norm")?;
        positive("dp_clip_norm", self.dp_clip_norm, f64::INFINITY, "an L2 norm")?;
        within("dp_target_quantile", self.dp_target_quantile, 0.0, 1.0, "a quantile")?;
        within("dp_clip_lr", self.dp_clip_lr, 0.0, MAX_FACTOR, "adaptive clipping's learning rate")?;
        within_opt("dp_count_stddev", self.dp_count_stddev, 0.0, MAX_FACTOR, "a standard deviation")?;
        positive_opt("dp_epsilon", self.dp_epsilon, f64::INFINITY, "a privacy budget")?;
        within_opt("secagg_num_shares", self.secagg_num_shares.map(|v| v as usize), 1, clients, "shares per secret")?;
        within_opt("secagg_threshold", self.secagg_threshold.map(|v| v as usize), 1, clients, "shares to reconstruct")?;
        positive(
            "secagg_clipping_range",
            f64::from(self.secagg_clipping_range),
            MAX_FACTOR,
            "the SecAgg+ clipping bound",
        )?;
        within(
            "secagg_quantization_range",
            self.secagg_quantization_range,
            2,
            MAX_QUANTIZATION_RANGE,
            "SecAgg+ quantisation levels",
        )
    }

    /// Clients sampled per round of `num_clients`: `max(1, round(C·K))`, as in McMahan et al.
    pub fn clients_per_round(&self, num_clients: usize) -> u32 {
        ((self.fraction * num_clients as f64).round() as u32).clamp(1, num_clients.max(1) as u32)
    }
}

impl SimulationConfig {
    /// Checks what can be checked of the simulator's knobs alone, without data.
    pub fn validate(&self) -> Result<(), EngineError> {
        ensure!(
            self.test_fraction > 0.0 && self.test_fraction < 1.0,
            "test_fraction = {} is outside (0, 1)",
            self.test_fraction
        );
        ensure!(
            self.clients > 0 || self.partition == PartitionKind::Natural,
            "clients = 0: a federation needs at least one client"
        );
        match self.dataset {
            DatasetKind::Idx if self.images.is_none() || self.labels.is_none() => {
                return invalid("dataset = idx needs both images and labels (--images FILE --labels FILE)".into())
            }
            DatasetKind::Csv if self.csv.is_none() => return invalid("dataset = csv needs a file (--csv FILE)".into()),
            _ => {}
        }
        for (name, v) in [
            ("byzantine", self.byzantine),
            ("stragglers", self.stragglers),
            ("dropouts", self.dropouts),
            ("dropout_after_masking", self.dropout_after_masking),
        ] {
            ensure!((0.0..=1.0).contains(&v), "{name} = {v} is outside [0, 1]: it is a fraction of the clients");
        }
        ensure!(
            self.byzantine == 0.0 || self.attack.is_some(),
            "byzantine = {} needs an attack (--attack sign-flip|gaussian|label-flip|alie|ipm|backdoor)",
            self.byzantine
        );
        ensure!(
            self.attack.is_none() || self.byzantine > 0.0,
            "attack needs Byzantine clients (--byzantine FRACTION, e.g. 0.2)"
        );
        ensure!(
            self.backdoor_fraction > 0.0 && self.backdoor_fraction <= 1.0,
            "backdoor_fraction = {} is outside (0, 1]",
            self.backdoor_fraction
        );
        ensure!(
            self.partition != PartitionKind::Natural
                || self.client_column.is_some()
                || self.dataset == DatasetKind::Synthetic,
            "partition = natural needs a CSV client column (--dataset csv --client-column NAME)"
        );
        // Crashing clients are checked against the federation's size when the run is planned.
        self.network.validate(u32::MAX).map_err(EngineError::Setting)?;
        self.validate_ranges()
    }

    /// The range of every numeric setting of the simulator.
    fn validate_ranges(&self) -> Result<(), EngineError> {
        within("clients", self.clients, 0, MAX_CLIENTS, "the number of virtual clients")?;
        within("synthetic_alpha", self.synthetic_alpha, 0.0, MAX_FACTOR, "a variance of the synthetic data")?;
        within("synthetic_beta", self.synthetic_beta, 0.0, MAX_FACTOR, "a variance of the synthetic data")?;
        within("shards_per_client", self.shards_per_client, 1, MAX_PER_CLIENT, "shards each client gets")?;
        positive("dirichlet_alpha", self.dirichlet_alpha, MAX_FACTOR, "a Dirichlet concentration")?;
        within("min_partition_size", self.min_partition_size, 0, MAX_PER_CLIENT, "examples per client")?;
        within("sign_flip_scale", self.sign_flip_scale, 0.0, MAX_FACTOR, "the attack's scale")?;
        within("noise_sigma", self.noise_sigma, 0.0, MAX_FACTOR, "the attack's standard deviation")?;
        within("ipm_epsilon", self.ipm_epsilon, 0.0, MAX_FACTOR, "the attack's scale")?;
        within_opt("alie_z", self.alie_z, -MAX_FACTOR, MAX_FACTOR, "the attack's z")?;
        within("backdoor_target", self.backdoor_target, 0, MAX_LABEL, "a class label")?;
        positive_opt("backdoor_boost", self.backdoor_boost, MAX_FACTOR, "the attack's boost")
    }
}

impl OutputConfig {
    /// Checks the output settings' numbers.
    pub fn validate(&self) -> Result<(), EngineError> {
        within("checkpoint_every", self.checkpoint_every, 0, MAX_ROUNDS, "rounds between checkpoints (0: none)")
    }
}

impl Settings {
    /// Checks each part and the rules that span them: what can be checked without data.
    pub fn validate(&self) -> Result<(), EngineError> {
        self.task.validate()?;
        self.simulation.validate()?;
        self.output.validate()?;
        ensure!(
            self.simulation.dropouts == 0.0 || self.task.round_timeout_ms.is_some(),
            "dropouts need a round deadline (--round-timeout-ms), or rounds would wait forever"
        );
        ensure!(
            !self.simulation.network.loses_messages() || self.task.round_timeout_ms.is_some(),
            "a network that loses messages or crashes trainers needs a round deadline (--round-timeout-ms), or \
             rounds would wait forever"
        );
        ensure!(
            self.simulation.dropout_after_masking == 0.0 || self.task.secagg,
            "dropout_after_masking needs secure aggregation (--secagg true)"
        );
        Ok(())
    }

    /// A fingerprint of every setting that changes the trained model (the task but its number
    /// of rounds, and the simulation), so a checkpoint is only resumed under the run that
    /// wrote it. The output settings change nothing the run computes.
    pub fn fingerprint(&self) -> String {
        let task = TaskConfig { rounds: 0, ..self.task.clone() };
        let text = serde_json::to_string(&(task, &self.simulation)).unwrap_or_default();
        // FNV-1a, 64 bits: stable across platforms and Rust versions.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_errors_naming_the_key() {
        type Change = fn(&mut Settings);
        let cases: [(Change, &str); 6] = [
            (|s| s.task.batch_size = 0, "batch_size"),
            (|s| s.task.fraction = 0.0, "fraction"),
            (|s| s.task.fraction = 1.5, "fraction"),
            (|s| s.task.lr = f64::NAN, "lr"),
            (|s| s.simulation.dataset = DatasetKind::Csv, "csv"),
            (|s| s.simulation.dropout_after_masking = 0.5, "dropout_after_masking"),
        ];
        for (change, key) in cases {
            let mut settings = Settings::default();
            change(&mut settings);
            let e = settings.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        Settings::default().validate().unwrap();
    }

    #[test]
    fn every_numeric_setting_is_bounded_before_use() {
        type Change = fn(&mut Settings);
        // issue 11: `--batch-size 4294967295` aborted on a 13 TB allocation.
        let cases: [(Change, &str); 14] = [
            (|s| s.task.batch_size = u32::MAX as usize, "batch_size = 4294967295 is outside [1, 1048576]"),
            (|s| s.task.batch_size = usize::MAX, "batch_size = 18446744073709551615 is outside [1, 1048576]"),
            (|s| s.task.rounds = u32::MAX, "rounds = 4294967295 is outside [1, 1000000]"),
            (|s| s.task.epochs = usize::MAX, "epochs"),
            (|s| s.task.hidden = vec![usize::MAX], "hidden = 18446744073709551615"),
            (|s| s.task.momentum = 1.0, "momentum = 1.0 is outside [0, 1)"),
            (|s| s.task.lr = 1e300, "lr = 1e300 is outside (0, 1000000.0]"),
            (|s| s.task.cc_iterations = usize::MAX, "cc_iterations"),
            (|s| s.task.secagg_quantization_range = u32::MAX, "secagg_quantization_range"),
            (|s| s.task.round_timeout_ms = Some(u64::MAX), "round_timeout_ms"),
            (|s| s.simulation.clients = usize::MAX, "clients = 18446744073709551615"),
            (|s| s.simulation.dirichlet_alpha = f64::INFINITY, "dirichlet_alpha = inf"),
            (|s| s.simulation.network.latency_ms = u64::MAX, "network.latency_ms"),
            (|s| s.output.checkpoint_every = u32::MAX, "checkpoint_every"),
        ];
        for (change, message) in cases {
            let mut settings = Settings::default();
            change(&mut settings);
            let e = settings.validate().unwrap_err().to_string();
            assert!(e.contains(message), "{e}");
        }
        let mut edge = Settings::default();
        edge.task.batch_size = limits::MAX_BATCH_SIZE;
        edge.task.rounds = limits::MAX_ROUNDS;
        edge.validate().unwrap();
    }

    #[test]
    fn fingerprint_ignores_rounds_and_output_only() {
        let a = Settings::default();
        let mut b = a.clone();
        b.task.rounds = 3;
        b.output = OutputConfig { out: "x".into(), checkpoint_every: 2, ledger: false, keep_updates: true };
        let mut c = a.clone();
        c.task.lr = 0.1;
        let mut d = a.clone();
        d.simulation.network.latency_ms = 10;
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_ne!(a.fingerprint(), d.fingerprint());
    }

    #[test]
    fn settings_serialise_to_the_flat_keys_of_the_config_file() {
        let json = serde_json::to_value(Settings::default()).unwrap();
        for key in ["rounds", "dataset", "out", "network", "secagg"] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        let back: Settings = serde_json::from_value(json).unwrap();
        assert_eq!(back, Settings::default());
    }
}
