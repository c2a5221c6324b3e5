//! The settings of a run: defaults, a TOML file (`--config`), then command-line flags.
//!
//! Every knob is written once, in [`ConfigPatch`] (its flag, its TOML key, its doc) and once
//! in [`RunConfig`] with its default. A TOML file and the flags are both patches applied over
//! the defaults in that order, so a flag beats the file. Unknown TOML keys are errors.
//!
//! Parsing checks only what it can see without I/O ([`RunConfig::validate`]); the data-
//! dependent checks (more clients than examples, a CNN on non-image data) come when the run
//! is planned.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which dataset to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
        let name = clap::ValueEnum::to_possible_value(self).expect("no variant is skipped");
        f.write_str(name.get_name())
    }
}

/// A Byzantine behaviour for evaluation (`--byzantine FRACTION --attack NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DpNoise {
    /// The server adds it to the sum.
    Central,
    /// Each client adds its share (composes with secure aggregation).
    Distributed,
}

/// Which built-in model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multi-layer perceptron with ReLU hidden layers of sizes `hidden`.
    Mlp,
    /// Multinomial logistic regression.
    Lr,
    /// McMahan's CNN (images whose sides are multiples of 4).
    Cnn,
}

/// Every setting of a simulation, with its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub dataset: DatasetKind,
    pub images: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    pub label_column: Option<String>,
    pub client_column: Option<String>,
    pub test_fraction: f64,
    pub clients: usize,
    pub partition: PartitionKind,
    pub shards_per_client: usize,
    pub dirichlet_alpha: f64,
    pub min_partition_size: usize,
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
    pub seed: u64,
    pub round_timeout_ms: Option<u64>,
    pub latency_ms: u64,
    pub out: PathBuf,
    pub checkpoint_every: u32,
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
    pub synthetic_alpha: f64,
    pub synthetic_beta: f64,
    pub carry_momentum: bool,
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
    pub dropout_after_masking: f64,
    pub secagg_num_shares: Option<u32>,
    pub secagg_threshold: Option<u32>,
    pub secagg_clipping_range: f32,
    pub secagg_quantization_range: u32,
    pub ledger: bool,
    /// Each trainer keeps what it sent (its updates, or its masked inputs under secure
    /// aggregation) in its own store, OUT/clients/NAME/.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_updates: bool,
}

impl Default for RunConfig {
    /// MNIST (bundled), 100 clients, IID, MLP 784-200-200-10, C = 0.1, E = 1, B = 10,
    /// lr 0.05, 50 rounds, seed 1: fedtask-v1's IID 2NN task.
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Mnist,
            images: None,
            labels: None,
            csv: None,
            label_column: None,
            client_column: None,
            test_fraction: 0.2,
            clients: 100,
            partition: PartitionKind::Iid,
            shards_per_client: 2,
            dirichlet_alpha: 0.5,
            min_partition_size: 10,
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
            seed: 1,
            round_timeout_ms: Some(10_000),
            latency_ms: 50,
            out: PathBuf::from("runs/simulate"),
            checkpoint_every: 0,
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
            synthetic_alpha: 1.0,
            synthetic_beta: 1.0,
            carry_momentum: false,
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
            dropout_after_masking: 0.0,
            secagg_num_shares: None,
            secagg_threshold: None,
            secagg_clipping_range: 1.0,
            secagg_quantization_range: 1 << 16,
            ledger: true,
            keep_updates: false,
        }
    }
}

/// Settings to change: each flag of `dainet simulate` and each key of its TOML file.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// Dataset [default: mnist, the bundled 10,000 digits].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// IDX images file (with --dataset idx).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// IDX labels file (with --dataset idx).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// CSV file of numeric features and a label column (with --dataset csv).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// CSV label column, by header name or 0-based index [default: the last column].
    #[arg(long)]
    pub label_column: Option<String>,
    /// CSV column naming each row's client (for --partition natural).
    #[arg(long)]
    pub client_column: Option<String>,
    /// Fraction of the examples, taken from the end, held out as the test set [default: 0.2].
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Number of clients K [default: 100].
    #[arg(long)]
    pub clients: Option<usize>,
    /// How examples are cut among clients [default: iid].
    #[arg(long, value_enum)]
    pub partition: Option<PartitionKind>,
    /// Shards per client with --partition shards [default: 2].
    #[arg(long)]
    pub shards_per_client: Option<usize>,
    /// Concentration α of --partition dirichlet; smaller is more skewed [default: 0.5].
    #[arg(long)]
    pub dirichlet_alpha: Option<f64>,
    /// Minimum examples per client with --partition dirichlet [default: 10].
    #[arg(long)]
    pub min_partition_size: Option<usize>,
    /// Model [default: mlp].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Hidden layer sizes of the MLP, comma-separated [default: 200,200].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Fraction C of clients sampled per round, in (0, 1] [default: 0.1].
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Rounds to run [default: 50].
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Local epochs E [default: 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Local mini-batch size B [default: 10].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Local learning rate [default: 0.05].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local SGD momentum [default: 0].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Local L2 weight decay [default: 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// FedProx proximal term μ [default: 0, plain FedAvg].
    #[arg(long)]
    pub prox_mu: Option<f64>,
    /// Task seed naming every random stream [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Milliseconds (virtual) a round waits for updates [default: 10000].
    #[arg(long)]
    pub round_timeout_ms: Option<u64>,
    /// Updates a round needs to be aggregated [default: 1].
    #[arg(long)]
    pub min_updates: Option<u32>,
    /// Aggregation strategy: fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad, median,
    /// trimmed-mean, krum, multi-krum, bulyan, centered-clipping [default: fedavg].
    #[arg(long)]
    pub strategy: Option<String>,
    /// Byzantine updates tolerated per round by krum, multi-krum and bulyan [default: the
    /// expected number of Byzantine clients per round, floor(byzantine · clients per round)].
    #[arg(long)]
    pub robust_f: Option<usize>,
    /// Updates multi-krum averages [default: clients per round − f].
    #[arg(long)]
    pub multi_krum_m: Option<usize>,
    /// Share trimmed at each end by trimmed-mean [default: 0.2].
    #[arg(long)]
    pub trim_beta: Option<f64>,
    /// Clipping radius τ of centered-clipping [default: 1.0].
    #[arg(long)]
    pub cc_tau: Option<f64>,
    /// Iterations of centered-clipping [default: 3].
    #[arg(long)]
    pub cc_iterations: Option<usize>,
    /// Server learning rate of fedavgm [default: 1.0].
    #[arg(long)]
    pub server_lr: Option<f64>,
    /// Server momentum of fedavgm [default: 0.0].
    #[arg(long)]
    pub server_momentum: Option<f64>,
    /// Wrapper: clip every client's change to this L2 norm before aggregating [default: off].
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Wrapper: average random buckets of this many changes before the rule [default: off].
    #[arg(long)]
    pub bucket_size: Option<usize>,
    /// Refuse (and count) changes longer than this L2 norm [default: off].
    #[arg(long)]
    pub max_update_norm: Option<f64>,
    /// Fraction of clients that are Byzantine (with --attack) [default: 0].
    #[arg(long)]
    pub byzantine: Option<f64>,
    /// What the Byzantine clients do [default: none].
    #[arg(long, value_enum)]
    pub attack: Option<AttackKind>,
    /// Scale s of the sign-flip attack, which sends −s·Δ [default: 10].
    #[arg(long)]
    pub sign_flip_scale: Option<f64>,
    /// Standard deviation of the gaussian attack [default: 10].
    #[arg(long)]
    pub noise_sigma: Option<f64>,
    /// ε of the ipm attack [default: 0.1].
    #[arg(long)]
    pub ipm_epsilon: Option<f64>,
    /// z of the alie attack [default: z_max from n and f, Baruch et al.].
    #[arg(long)]
    pub alie_z: Option<f64>,
    /// Label the backdoor trigger maps to [default: 0].
    #[arg(long)]
    pub backdoor_target: Option<u32>,
    /// Share of an attacker's examples carrying the trigger [default: 0.5].
    #[arg(long)]
    pub backdoor_fraction: Option<f64>,
    /// γ, the boost of the attacker's change [default: clients per round, n/η with η = 1].
    #[arg(long)]
    pub backdoor_boost: Option<f64>,
    /// Probability that a client straggles in a round: it then runs a random number of
    /// epochs in [1, E] and sends its partial work (FedProx's semantics) [default: 0].
    #[arg(long)]
    pub stragglers: Option<f64>,
    /// Probability that a client drops out of a round (never answers) [default: 0].
    #[arg(long)]
    pub dropouts: Option<f64>,
    /// α of --dataset synthetic (how much devices' models differ) [default: 1].
    #[arg(long)]
    pub synthetic_alpha: Option<f64>,
    /// β of --dataset synthetic (how much devices' data differ) [default: 1].
    #[arg(long)]
    pub synthetic_beta: Option<f64>,
    /// Clients keep their SGD momentum from one round they take part in to the next (worker
    /// momentum, as centered clipping assumes; needs --momentum) [default: false].
    #[arg(long)]
    pub carry_momentum: Option<bool>,
    /// Differential privacy: the noise multiplier z (noise std over the clipping norm);
    /// giving it turns client-level DP-FedAvg on [default: off].
    #[arg(long)]
    pub dp_noise_multiplier: Option<f64>,
    /// DP clipping norm C of every client's change (the first round's, if adaptive) [default: 1.0].
    #[arg(long)]
    pub dp_clip_norm: Option<f64>,
    /// Adapt C toward a quantile of the update norms (Andrew et al. 2021) [default: false].
    #[arg(long)]
    pub dp_adaptive_clip: Option<bool>,
    /// Target quantile of adaptive clipping [default: 0.5].
    #[arg(long)]
    pub dp_target_quantile: Option<f64>,
    /// Learning rate of adaptive clipping [default: 0.2].
    #[arg(long)]
    pub dp_clip_lr: Option<f64>,
    /// Noise on the unclipped count of adaptive clipping [default: clients per round / 20].
    #[arg(long)]
    pub dp_count_stddev: Option<f64>,
    /// Who adds the DP noise [default: central].
    #[arg(long, value_enum)]
    pub dp_noise: Option<DpNoise>,
    /// δ of the reported (ε, δ) [default: 1e-5].
    #[arg(long)]
    pub dp_delta: Option<f64>,
    /// Privacy budget ε: training stops before a round would exceed it [default: none].
    #[arg(long)]
    pub dp_epsilon: Option<f64>,
    /// Aggregate every round with SecAgg+: the coordinator sees only the sum [default: false].
    #[arg(long)]
    pub secagg: Option<bool>,
    /// Probability that a client drops out after sending its masked input [default: 0].
    #[arg(long)]
    pub dropout_after_masking: Option<f64>,
    /// SecAgg+ shares per secret, k neighbours + 1 [default: k ≈ log2 m, even; capped at m].
    #[arg(long)]
    pub secagg_num_shares: Option<u32>,
    /// SecAgg+ reconstruction threshold t [default: shares / 2 + 1].
    #[arg(long)]
    pub secagg_threshold: Option<u32>,
    /// SecAgg+ clips each value of a client's change to ±this, counting what it clips
    /// [default: 1.0].
    #[arg(long)]
    pub secagg_clipping_range: Option<f32>,
    /// SecAgg+ quantisation levels [default: 65536].
    #[arg(long)]
    pub secagg_quantization_range: Option<u32>,
    /// Record every round in a ledger replicated by 4 simulated validators, written to
    /// OUT/ledger [default: true].
    #[arg(long)]
    pub ledger: Option<bool>,
    /// Do not record a ledger (the same as --ledger false).
    #[arg(long, conflicts_with = "ledger")]
    #[serde(skip)]
    pub no_ledger: bool,
    /// Each trainer keeps what it sent in its own store, OUT/clients/NAME/ (the shared ledger
    /// folder holds only commitments): check them with `dainet ledger verify --updates
    /// OUT/clients` [default: false].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub keep_updates: Option<bool>,
    /// Simulated one-way network latency in milliseconds [default: 50].
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Output folder [default: runs/simulate].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a checkpoint every N rounds (0: none) [default: 0].
    #[arg(long)]
    pub checkpoint_every: Option<u32>,
}

impl RunConfig {
    /// Applies every setting `patch` has.
    pub fn apply(&mut self, patch: ConfigPatch) {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = patch.$field { self.$field = v; })* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $(if patch.$field.is_some() { self.$field = patch.$field; })* };
        }
        set!(dataset, test_fraction, clients, partition, shards_per_client, dirichlet_alpha, min_partition_size);
        set!(model, hidden, fraction, rounds, epochs, batch_size, lr, momentum, weight_decay, prox_mu, seed);
        set!(latency_ms, out, checkpoint_every, min_updates, strategy, trim_beta, cc_tau, cc_iterations, server_lr);
        set!(server_momentum, byzantine, sign_flip_scale, noise_sigma, ipm_epsilon, backdoor_target);
        set!(backdoor_fraction, stragglers, dropouts, synthetic_alpha, synthetic_beta, carry_momentum);
        set!(dp_clip_norm, dp_adaptive_clip, dp_target_quantile, dp_clip_lr, dp_noise, dp_delta);
        set_opt!(dp_noise_multiplier, dp_count_stddev, dp_epsilon, secagg_num_shares, secagg_threshold);
        set!(secagg, dropout_after_masking, secagg_clipping_range, secagg_quantization_range, ledger, keep_updates);
        if patch.no_ledger {
            self.ledger = false;
        }
        set_opt!(images, labels, csv, label_column, client_column, round_timeout_ms, robust_f, multi_krum_m);
        set_opt!(clip_norm, bucket_size, max_update_norm, attack, alie_z, backdoor_boost);
    }

    /// The defaults, then the TOML file at `file` (if any), then `flags`.
    pub fn resolve(file: Option<&Path>, flags: ConfigPatch) -> Result<Self> {
        let mut config = RunConfig::default();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?;
            let patch: ConfigPatch = toml::from_str(&text).map_err(|e| {
                let msg = e.message().to_string();
                let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
                match line {
                    Some(line) => anyhow::anyhow!("{}: line {line}: {msg}", path.display()),
                    None => anyhow::anyhow!("{}: {msg}", path.display()),
                }
            })?;
            config.apply(patch);
        }
        config.apply(flags);
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without reading data.
    pub fn validate(&self) -> Result<()> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            bail!("fraction = {} is outside (0, 1]: it is the share of clients sampled each round", self.fraction);
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            bail!("test_fraction = {} is outside (0, 1)", self.test_fraction);
        }
        if self.batch_size == 0 {
            bail!("batch_size = 0: a mini-batch needs at least one example");
        }
        if self.epochs == 0 {
            bail!("epochs = 0: clients must train at least one epoch");
        }
        if self.rounds == 0 {
            bail!("rounds = 0: run at least one round");
        }
        if self.clients == 0 && self.partition != PartitionKind::Natural {
            bail!("clients = 0: a federation needs at least one client");
        }
        for (name, v) in [("lr", self.lr), ("momentum", self.momentum), ("weight_decay", self.weight_decay)] {
            if !v.is_finite() || v < 0.0 {
                bail!("{name} = {v} must be a finite, non-negative number");
            }
        }
        if !self.prox_mu.is_finite() || self.prox_mu < 0.0 {
            bail!("prox_mu = {} must be a finite, non-negative number", self.prox_mu);
        }
        if self.lr == 0.0 {
            bail!("lr = 0: the model would never change");
        }
        if self.model == ModelKind::Mlp && self.hidden.contains(&0) {
            bail!("hidden = {:?}: every hidden layer needs at least one unit", self.hidden);
        }
        match self.dataset {
            DatasetKind::Idx if self.images.is_none() || self.labels.is_none() => {
                bail!("dataset = idx needs both images and labels (--images FILE --labels FILE)")
            }
            DatasetKind::Csv if self.csv.is_none() => bail!("dataset = csv needs a file (--csv FILE)"),
            _ => {}
        }
        for (name, v) in [("byzantine", self.byzantine), ("stragglers", self.stragglers), ("dropouts", self.dropouts)] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} = {v} is outside [0, 1]: it is a fraction of the clients");
            }
        }
        if self.byzantine > 0.0 && self.attack.is_none() {
            bail!(
                "byzantine = {} needs an attack (--attack sign-flip|gaussian|label-flip|alie|ipm|backdoor)",
                self.byzantine
            );
        }
        if self.attack.is_some() && self.byzantine == 0.0 {
            bail!("attack needs Byzantine clients (--byzantine FRACTION, e.g. 0.2)");
        }
        if self.dropouts > 0.0 && self.round_timeout_ms.is_none() {
            bail!("dropouts need a round deadline (--round-timeout-ms), or rounds would wait forever");
        }
        if !(self.dp_delta > 0.0 && self.dp_delta < 1.0) {
            bail!("dp_delta = {} is outside (0, 1)", self.dp_delta);
        }
        if self.dp_epsilon.is_some() && self.dp_noise_multiplier.is_none() {
            bail!("dp_epsilon (a privacy budget) needs differential privacy on (--dp-noise-multiplier Z)");
        }
        if let Some(budget) = self.dp_epsilon {
            if !(budget.is_finite() && budget > 0.0) {
                bail!("dp_epsilon = {budget} must be a positive number");
            }
        }
        if self.dropout_after_masking > 0.0 && !self.secagg {
            bail!("dropout_after_masking needs secure aggregation (--secagg true)");
        }
        if !(0.0..=1.0).contains(&self.dropout_after_masking) {
            bail!("dropout_after_masking = {} is outside [0, 1]", self.dropout_after_masking);
        }
        if self.carry_momentum && self.momentum == 0.0 {
            bail!("carry_momentum needs client momentum (--momentum, e.g. 0.9)");
        }
        if !(self.backdoor_fraction > 0.0 && self.backdoor_fraction <= 1.0) {
            bail!("backdoor_fraction = {} is outside (0, 1]", self.backdoor_fraction);
        }
        if self.strategy == "fedprox" && self.prox_mu == 0.0 {
            bail!("strategy = fedprox needs a proximal term (--prox-mu, e.g. 0.01); with 0 it is fedavg");
        }
        if self.partition == PartitionKind::Natural
            && self.client_column.is_none()
            && self.dataset != DatasetKind::Synthetic
        {
            bail!("partition = natural needs a CSV client column (--dataset csv --client-column NAME)");
        }
        Ok(())
    }

    /// Clients sampled per round: `max(1, round(C·K))`, as in McMahan et al.
    pub fn clients_per_round(&self, num_clients: usize) -> u32 {
        ((self.fraction * num_clients as f64).round() as u32).clamp(1, num_clients.max(1) as u32)
    }

    /// A fingerprint of every setting that changes the trained model (not `rounds`, `out`
    /// or `checkpoint_every`), so a checkpoint is only resumed under the run that wrote it.
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.rounds = 0;
        c.out = PathBuf::new();
        c.checkpoint_every = 0;
        // Recording the run changes nothing it computes.
        c.ledger = true;
        c.keep_updates = false;
        let text = serde_json::to_string(&c).expect("config serialises");
        // FNV-1a, 64 bits: stable across platforms and Rust versions.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let f = write("rounds = 7\nlr = 0.1\nhidden = [64]\n");
        let flags = ConfigPatch { lr: Some(0.2), ..Default::default() };
        let c = RunConfig::resolve(Some(f.path()), flags).unwrap();
        assert_eq!((c.rounds, c.lr, c.hidden.clone()), (7, 0.2, vec![64]));
        assert_eq!(c.clients, 100);
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_line_and_key() {
        let f = write("rounds = 7\nlearning_rate = 0.1\n");
        let e = format!("{:#}", RunConfig::resolve(Some(f.path()), ConfigPatch::default()).unwrap_err());
        assert!(e.contains("line 2") && e.contains("learning_rate"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }

    #[test]
    fn out_of_range_values_are_errors() {
        for (patch, key) in [
            (ConfigPatch { batch_size: Some(0), ..Default::default() }, "batch_size"),
            (ConfigPatch { fraction: Some(0.0), ..Default::default() }, "fraction"),
            (ConfigPatch { fraction: Some(1.5), ..Default::default() }, "fraction"),
            (ConfigPatch { lr: Some(f64::NAN), ..Default::default() }, "lr"),
            (ConfigPatch { dataset: Some(DatasetKind::Csv), ..Default::default() }, "csv"),
        ] {
            let e = RunConfig::resolve(None, patch).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn fingerprint_ignores_rounds_output_and_ledger_only() {
        let a = RunConfig::default();
        let b = RunConfig { rounds: 3, out: "x".into(), checkpoint_every: 2, ledger: false, ..a.clone() };
        let c = RunConfig { lr: 0.1, ..a.clone() };
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
