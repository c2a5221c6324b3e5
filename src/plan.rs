//! Planning a simulated federation: a [`RunConfig`] becomes data, a model, a partition, a
//! strategy and faults, with every check that depends on the data made before anything runs.

use crate::config::{AttackKind, DatasetKind, DpNoise, ModelKind, PartitionKind, RunConfig};
use anyhow::{bail, Context, Result};
use dainet_agg::dp::{Clipping, DpConfig, NoisePlacement};
use dainet_agg::strategy::{RobustParams, Strategy, StrategyConfig};
use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::csv::{load_csv, ColumnRef, CsvOptions};
use dainet_ml::data::idx::{idx_dataset, load_idx_dataset, read_idx_bytes};
use dainet_ml::data::partition::{natural_client_ids, partition, Partition, PartitionScheme};
use dainet_ml::data::poison::{triggered_test_set, Trigger};
use dainet_ml::data::synthetic::{generate, SyntheticConfig};
use dainet_ml::{evaluate, Dataset, Evaluation, Model, ModelSpec};
use dainet_protocol::{PrivacyConfig, RoundConfig, SecureConfig};
use dainet_sim::faults::{Attack, Faults};
use std::path::Path;

const MNIST_IMAGES: &[u8] = include_bytes!("../data/mnist/mnist10k-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../data/mnist/mnist10k-labels-idx1-ubyte.gz");

/// A run ready to execute.
pub struct Plan {
    pub config: RunConfig,
    pub train: Dataset,
    pub test: Dataset,
    pub model: Box<dyn Model>,
    pub partition: Partition,
    /// Client names for natural partitions (client k is `client_names[k]`).
    pub client_names: Option<Vec<String>>,
    /// How updates are aggregated.
    pub strategy: StrategyConfig,
    /// Byzantine clients, stragglers, dropouts.
    pub faults: Faults,
    /// The test set with the backdoor trigger (backdoor attack only).
    pub triggered_test: Option<Dataset>,
    /// The round protocol's settings, checked by [`RoundConfig::validate`].
    pub rounds: RoundConfig,
}

/// Loads the configured dataset and splits off the test set (the last `test_fraction`).
fn load_data(config: &RunConfig) -> Result<(Dataset, Dataset, Option<Vec<String>>)> {
    let (task_seed, test_fraction) = (config.seed, config.test_fraction);
    let (all, ids) = match config.dataset {
        DatasetKind::Mnist => {
            let images = read_idx_bytes(Path::new("<bundled MNIST images>"), MNIST_IMAGES)?;
            let labels = read_idx_bytes(Path::new("<bundled MNIST labels>"), MNIST_LABELS)?;
            let all = idx_dataset(
                (Path::new("<bundled MNIST images>"), images),
                (Path::new("<bundled MNIST labels>"), labels),
            )?;
            (all, None)
        }
        DatasetKind::Idx => {
            let (Some(images), Some(labels)) = (config.images.as_deref(), config.labels.as_deref()) else {
                bail!("dataset = idx needs both images and labels (--images FILE --labels FILE)");
            };
            (load_idx_dataset(images, labels)?, None)
        }
        DatasetKind::Synthetic => {
            let config = SyntheticConfig {
                alpha: config.synthetic_alpha,
                beta: config.synthetic_beta,
                ..SyntheticConfig::default()
            };
            let mut rng = SplitMix64::stream(task_seed, Purpose::SyntheticData, 0, 0);
            let data = generate(&config, &mut rng)?;
            // FedProx's split: the last share of every device's examples is its test data.
            let (train, test) = data.split_per_device(test_fraction)?;
            let ids = train.device_of_row.iter().map(|d| format!("device-{d:02}")).collect();
            return Ok((train.dataset, test.dataset, Some(ids)));
        }
        DatasetKind::Csv => {
            let column = |c: &str| match c.parse::<ColumnRef>() {
                Ok(column) => column,
                Err(never) => match never {},
            };
            let opts = CsvOptions {
                label_column: config.label_column.as_deref().map(column),
                client_column: config.client_column.as_deref().map(column),
                ..CsvOptions::default()
            };
            let Some(csv) = config.csv.as_deref() else { bail!("dataset = csv needs a file (--csv FILE)") };
            let data = load_csv(csv, &opts)?;
            (data.dataset, data.client_ids)
        }
    };
    let n = all.len();
    let n_test = ((n as f64 * config.test_fraction).round() as usize).max(1);
    if n_test >= n {
        bail!(
            "the dataset has {n} examples: too few to hold out test_fraction = {} and still train",
            config.test_fraction
        );
    }
    let n_train = n - n_test;
    let train_ids = ids.map(|v| v[..n_train].to_vec());
    Ok((all.slice(0..n_train), all.slice(n_train..n), train_ids))
}

/// The model the config asks for, sized to the data.
fn model_spec(config: &RunConfig, data: &Dataset) -> Result<ModelSpec> {
    let (input, classes) = (data.dim(), data.num_classes());
    let spec = match config.model {
        ModelKind::Mlp => ModelSpec::Mlp { input, hidden: config.hidden.clone(), classes },
        ModelKind::Lr => ModelSpec::Mlp { input, hidden: vec![], classes },
        ModelKind::Cnn => match data.image_shape() {
            Some(shape) if shape[1] % 4 == 0 && shape[2] % 4 == 0 => ModelSpec::Cnn { input: shape, classes },
            Some(shape) => bail!("model = cnn needs image sides that are multiples of 4; the images are {shape:?}"),
            None => bail!("model = cnn needs image data (--dataset mnist or idx); use --model mlp for tabular data"),
        },
    };
    spec.validate()?;
    Ok(spec)
}

/// Loads the data and cuts it among the clients.
pub fn plan(config: RunConfig) -> Result<Plan> {
    let (train, test, ids) = load_data(&config)?;
    let model = model_spec(&config, &train)?.build();
    let scheme = match config.partition {
        PartitionKind::Iid => PartitionScheme::Iid,
        PartitionKind::Shards => PartitionScheme::Shards { shards_per_client: config.shards_per_client },
        PartitionKind::Dirichlet => {
            PartitionScheme::Dirichlet { alpha: config.dirichlet_alpha, min_size: config.min_partition_size }
        }
        PartitionKind::Natural => PartitionScheme::Natural,
    };
    if config.partition == PartitionKind::Natural && ids.is_none() {
        bail!("partition = natural needs a CSV client column (--dataset csv --client-column NAME)");
    }
    let partition =
        partition(&scheme, train.labels(), train.num_classes(), config.clients, config.seed, ids.as_deref())
            .context("cannot partition the training set")?;
    let client_names = ids.as_deref().map(natural_client_ids);
    let per_round = config.clients_per_round(partition.num_clients()) as usize;
    let strategy = strategy_config(&config, per_round)?;
    let (faults, triggered_test) = faults(&config, &train, &test, partition.num_clients(), per_round)?;
    let rounds = round_config(&config, &partition, per_round as u32);
    // Every check the protocol makes, before any output: round sizes, the strategy's minimum,
    // secure aggregation, a privacy budget that cannot cover even the first round.
    rounds.validate(&strategy, 1)?;
    Ok(Plan { config, train, test, model, partition, client_names, strategy, faults, triggered_test, rounds })
}

/// The round protocol's settings for `config` over `partition`.
fn round_config(c: &RunConfig, partition: &Partition, per_round: u32) -> RoundConfig {
    // The largest weight an input to secure aggregation carries: the largest client's
    // example count (what the simulator knows; a deployment states it in the task).
    let max_weight = (0..partition.num_clients()).map(|k| partition.client(k).len()).max().unwrap_or(1);
    let secure = c.secagg.then(|| {
        SecureConfig::new(
            per_round,
            c.secagg_num_shares,
            c.secagg_threshold,
            c.secagg_clipping_range,
            c.secagg_quantization_range,
            u32::try_from(max_weight).unwrap_or(u32::MAX),
        )
    });
    RoundConfig {
        task_seed: c.seed,
        num_clients: partition.num_clients() as u32,
        clients_per_round: per_round,
        rounds: c.rounds,
        round_timeout_ms: c.round_timeout_ms,
        min_updates: c.min_updates,
        secure,
        privacy: c.dp_noise_multiplier.map(|_| PrivacyConfig { delta: c.dp_delta, budget: c.dp_epsilon }),
    }
}

/// The strategy the config names, with the defaults that depend on the round size.
fn strategy_config(c: &RunConfig, per_round: usize) -> Result<StrategyConfig> {
    let expected_byzantine = (c.byzantine * per_round as f64).floor() as usize;
    let f = c.robust_f.unwrap_or(expected_byzantine);
    let params = RobustParams {
        f,
        m: c.multi_krum_m.unwrap_or(per_round.saturating_sub(f).max(1)),
        beta: c.trim_beta,
        tau: c.cc_tau,
        iterations: c.cc_iterations,
        server_lr: c.server_lr,
        server_momentum: c.server_momentum,
    };
    let mut strategy = StrategyConfig::named(&c.strategy, &params)?;
    strategy.clip_norm = c.clip_norm;
    strategy.bucket_size = c.bucket_size;
    strategy.max_update_norm = c.max_update_norm;
    strategy.dp = c.dp_noise_multiplier.map(|z| DpConfig {
        noise_multiplier: z,
        clipping: if c.dp_adaptive_clip {
            Clipping::Adaptive {
                initial_norm: c.dp_clip_norm,
                target_quantile: c.dp_target_quantile,
                learning_rate: c.dp_clip_lr,
                count_stddev: c.dp_count_stddev,
            }
        } else {
            Clipping::Fixed { norm: c.dp_clip_norm }
        },
        placement: match c.dp_noise {
            DpNoise::Central => NoisePlacement::Central,
            DpNoise::Distributed => NoisePlacement::Distributed,
        },
        clients_per_round: per_round,
    });
    // Build it once to check every setting before any data moves.
    Strategy::new(strategy.clone(), c.seed)?;
    Ok(strategy)
}

/// The faults the config asks for, and the triggered test set of a backdoor attack.
fn faults(
    c: &RunConfig,
    train: &Dataset,
    test: &Dataset,
    num_clients: usize,
    per_round: usize,
) -> Result<(Faults, Option<Dataset>)> {
    let mut triggered = None;
    let attack = match c.attack {
        None => None,
        Some(AttackKind::SignFlip) => Some(Attack::SignFlip { scale: c.sign_flip_scale as f32 }),
        Some(AttackKind::Gaussian) => Some(Attack::GaussianNoise { sigma: c.noise_sigma }),
        Some(AttackKind::LabelFlip) => Some(Attack::LabelFlip),
        Some(AttackKind::Alie) => Some(Attack::Alie { z: c.alie_z }),
        Some(AttackKind::Ipm) => Some(Attack::Ipm { epsilon: c.ipm_epsilon }),
        Some(AttackKind::Backdoor) => {
            let Some(shape) = train.image_shape() else {
                bail!("attack = backdoor needs image data (a pixel trigger); use --dataset mnist or idx");
            };
            if c.backdoor_target as usize >= train.num_classes() {
                bail!("backdoor_target = {} is not a class (0..{})", c.backdoor_target, train.num_classes());
            }
            let trigger = Trigger { image_shape: shape, size: 4, value: 1.0 };
            triggered = Some(triggered_test_set(test, &trigger, c.backdoor_target)?);
            Some(Attack::Backdoor {
                trigger,
                target: c.backdoor_target,
                poison_fraction: c.backdoor_fraction,
                boost: c.backdoor_boost.unwrap_or(per_round as f64) as f32,
            })
        }
    };
    let byzantine = if attack.is_some() {
        Faults::choose_byzantine(c.seed, num_clients as u32, c.byzantine)
    } else {
        Default::default()
    };
    if let Some(a) = &attack {
        a.validate().map_err(anyhow::Error::msg)?;
    }
    let faults = Faults {
        byzantine,
        attack,
        straggler_fraction: c.stragglers,
        dropout_fraction: c.dropouts,
        dropout_after_masking: c.dropout_after_masking,
    };
    Ok((faults, triggered))
}

impl Plan {
    /// Examples per class held by each client.
    pub fn label_counts(&self) -> Vec<Vec<usize>> {
        self.partition.label_counts(self.train.labels(), self.train.num_classes())
    }

    /// Evaluates `params` on the test set.
    pub fn evaluate(&self, params: &[f32]) -> Evaluation {
        evaluate(self.model.as_ref(), params, &self.test)
    }

    /// A few lines describing the run, printed at its start.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let k = self.partition.num_clients();
        format!(
            "dainet {}: {} ({} train / {} test examples, {} classes), model {} ({} parameters)\n\
             {} clients, partition {}, {} sampled per round, {} rounds, E={} B={} lr={} seed={}, {} threads\n\
             strategy {}{}",
            env!("CARGO_PKG_VERSION"),
            match c.dataset {
                DatasetKind::Mnist => "bundled MNIST".to_string(),
                DatasetKind::Synthetic => {
                    format!("Synthetic({}, {})", c.synthetic_alpha, c.synthetic_beta)
                }
                DatasetKind::Idx => format!("IDX {}", c.images.as_deref().unwrap_or(Path::new("")).display()),
                DatasetKind::Csv => format!("CSV {}", c.csv.as_deref().unwrap_or(Path::new("")).display()),
            },
            self.train.len(),
            self.test.len(),
            self.train.num_classes(),
            self.model.spec(),
            self.model.layout().len(),
            k,
            c.partition,
            c.clients_per_round(k),
            c.rounds,
            c.epochs,
            c.batch_size,
            c.lr,
            c.seed,
            rayon::current_num_threads(),
            self.strategy.describe(),
            self.fault_summary(),
        )
    }

    fn fault_summary(&self) -> String {
        let c = &self.config;
        let mut parts = Vec::new();
        if let Some(a) = &self.faults.attack {
            parts.push(format!(
                "{} Byzantine clients ({}) attacking with {}",
                self.faults.byzantine.len(),
                c.byzantine,
                a.name()
            ));
        }
        if c.stragglers > 0.0 {
            parts.push(format!("stragglers {}", c.stragglers));
        }
        if c.dropouts > 0.0 {
            parts.push(format!("dropouts {}", c.dropouts));
        }
        if let Some(sa) = &self.rounds.secure {
            parts.push(format!(
                "SecAgg+ (shares {}, threshold {}, dropout after masking {})",
                sa.num_shares, sa.reconstruction_threshold, c.dropout_after_masking
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("; {}", parts.join(", "))
        }
    }
}
