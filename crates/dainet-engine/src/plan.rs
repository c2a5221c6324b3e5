//! Planning a simulated federation: [`Settings`] become data, a model, a partition, a
//! strategy, the round protocol's settings and faults, with every check (the settings' own,
//! the protocol's, and those that depend on the data) made before anything runs or is written.

use crate::config::{
    AttackKind, DatasetKind, DpNoise, ModelKind, PartitionKind, Settings, SimulationConfig, TaskConfig,
};
use crate::error::EngineError;
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

const MNIST_IMAGES: &[u8] = include_bytes!("../../../data/mnist/mnist10k-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../../../data/mnist/mnist10k-labels-idx1-ubyte.gz");

/// A run ready to execute.
pub struct Plan {
    pub settings: Settings,
    /// [`Settings::fingerprint`], computed once: in checkpoints, the report and the model's and
    /// aggregates' metadata.
    pub fingerprint: String,
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

/// Settings an error of the data, the model or the partition is reported under.
type Result<T> = std::result::Result<T, EngineError>;

fn setting<T>(message: impl Into<String>) -> Result<T> {
    Err(EngineError::Setting(message.into()))
}

/// Loads the configured dataset and splits off the test set (the last `test_fraction`).
fn load_data(sim: &SimulationConfig, task_seed: u64) -> Result<(Dataset, Dataset, Option<Vec<String>>)> {
    let test_fraction = sim.test_fraction;
    let (all, ids) = match sim.dataset {
        DatasetKind::Mnist => {
            let name = |what: &'static str| Path::new(what);
            let images = read_idx_bytes(name("<bundled MNIST images>"), MNIST_IMAGES).map_err(EngineError::data)?;
            let labels = read_idx_bytes(name("<bundled MNIST labels>"), MNIST_LABELS).map_err(EngineError::data)?;
            let all = idx_dataset((name("<bundled MNIST images>"), images), (name("<bundled MNIST labels>"), labels))
                .map_err(EngineError::data)?;
            (all, None)
        }
        DatasetKind::Idx => {
            let (Some(images), Some(labels)) = (sim.images.as_deref(), sim.labels.as_deref()) else {
                return setting("dataset = idx needs both images and labels (--images FILE --labels FILE)");
            };
            (load_idx_dataset(images, labels).map_err(EngineError::data)?, None)
        }
        DatasetKind::Synthetic => {
            let config =
                SyntheticConfig { alpha: sim.synthetic_alpha, beta: sim.synthetic_beta, ..SyntheticConfig::default() };
            let mut rng = SplitMix64::stream(task_seed, Purpose::SyntheticData, 0, 0);
            let data = generate(&config, &mut rng).map_err(EngineError::data)?;
            // FedProx's split: the last share of every device's examples is its test data.
            let (train, test) = data.split_per_device(test_fraction).map_err(EngineError::data)?;
            let ids = train.device_of_row.iter().map(|d| format!("device-{d:02}")).collect();
            return Ok((train.dataset, test.dataset, Some(ids)));
        }
        DatasetKind::Csv => {
            let column = |c: &str| match c.parse::<ColumnRef>() {
                Ok(column) => column,
                Err(never) => match never {},
            };
            let opts = CsvOptions {
                label_column: sim.label_column.as_deref().map(column),
                client_column: sim.client_column.as_deref().map(column),
                ..CsvOptions::default()
            };
            let Some(csv) = sim.csv.as_deref() else { return setting("dataset = csv needs a file (--csv FILE)") };
            let data = load_csv(csv, &opts).map_err(EngineError::data)?;
            (data.dataset, data.client_ids)
        }
    };
    let n = all.len();
    let n_test = ((n as f64 * test_fraction).round() as usize).max(1);
    if n_test >= n {
        return Err(EngineError::Data(format!(
            "the dataset has {n} examples: too few to hold out test_fraction = {test_fraction} and still train"
        )));
    }
    let n_train = n - n_test;
    let train_ids = ids.map(|v| v[..n_train].to_vec());
    Ok((all.slice(0..n_train), all.slice(n_train..n), train_ids))
}

/// The model the task asks for, sized to the data.
fn model_spec(task: &TaskConfig, data: &Dataset) -> Result<ModelSpec> {
    let (input, classes) = (data.dim(), data.num_classes());
    let spec = match task.model {
        ModelKind::Mlp => ModelSpec::Mlp { input, hidden: task.hidden.clone(), classes },
        ModelKind::Lr => ModelSpec::Mlp { input, hidden: vec![], classes },
        ModelKind::Cnn => match data.image_shape() {
            Some(shape) if shape[1] % 4 == 0 && shape[2] % 4 == 0 => ModelSpec::Cnn { input: shape, classes },
            Some(shape) => {
                return setting(format!(
                    "model = cnn needs image sides that are multiples of 4; the images are {shape:?}"
                ))
            }
            None => {
                return setting(
                    "model = cnn needs image data (--dataset mnist or idx); use --model mlp for tabular data",
                )
            }
        },
    };
    spec.validate().map_err(|e| EngineError::Setting(e.to_string()))?;
    Ok(spec)
}

/// Checks `settings`, loads the data and cuts it among the clients.
pub fn plan(settings: Settings) -> Result<Plan> {
    settings.validate()?;
    let (task, sim) = (&settings.task, &settings.simulation);
    let (train, test, ids) = load_data(sim, task.seed)?;
    let model = model_spec(task, &train)?.build();
    let scheme = match sim.partition {
        PartitionKind::Iid => PartitionScheme::Iid,
        PartitionKind::Shards => PartitionScheme::Shards { shards_per_client: sim.shards_per_client },
        PartitionKind::Dirichlet => {
            PartitionScheme::Dirichlet { alpha: sim.dirichlet_alpha, min_size: sim.min_partition_size }
        }
        PartitionKind::Natural => PartitionScheme::Natural,
    };
    if sim.partition == PartitionKind::Natural && ids.is_none() {
        return setting("partition = natural needs a CSV client column (--dataset csv --client-column NAME)");
    }
    let partition = partition(&scheme, train.labels(), train.num_classes(), sim.clients, task.seed, ids.as_deref())
        .map_err(|e| EngineError::Data(format!("cannot partition the training set: {e}")))?;
    let client_names = ids.as_deref().map(natural_client_ids);
    let per_round = task.clients_per_round(partition.num_clients()) as usize;
    let strategy = strategy_config(task, sim, per_round)?;
    let (faults, triggered_test) = faults(task.seed, sim, &train, &test, partition.num_clients(), per_round)?;
    let rounds = round_config(task, &partition, per_round as u32);
    // Every check the protocol makes, before any output: round sizes, the strategy's minimum,
    // secure aggregation, a privacy budget that cannot cover even the first round.
    rounds.validate(&strategy, 1)?;
    let fingerprint = settings.fingerprint();
    Ok(Plan {
        settings,
        fingerprint,
        train,
        test,
        model,
        partition,
        client_names,
        strategy,
        faults,
        triggered_test,
        rounds,
    })
}

/// The round protocol's settings for `task` over `partition`.
fn round_config(task: &TaskConfig, partition: &Partition, per_round: u32) -> RoundConfig {
    // The largest weight an input to secure aggregation carries: the largest client's
    // example count (what the simulator knows; a deployment states it in the task).
    let max_weight = (0..partition.num_clients()).map(|k| partition.client(k).len()).max().unwrap_or(1);
    let secure = task.secagg.then(|| {
        SecureConfig::new(
            per_round,
            task.secagg_num_shares,
            task.secagg_threshold,
            task.secagg_clipping_range,
            task.secagg_quantization_range,
            u32::try_from(max_weight).unwrap_or(u32::MAX),
        )
    });
    RoundConfig {
        task_seed: task.seed,
        num_clients: partition.num_clients() as u32,
        clients_per_round: per_round,
        rounds: task.rounds,
        round_timeout_ms: task.round_timeout_ms,
        min_updates: task.min_updates,
        secure,
        privacy: task.dp_noise_multiplier.map(|_| PrivacyConfig { delta: task.dp_delta, budget: task.dp_epsilon }),
    }
}

/// The strategy the task names, with the defaults that depend on the round size (and, for
/// the robust rules' f, on the simulated Byzantine share).
fn strategy_config(c: &TaskConfig, sim: &SimulationConfig, per_round: usize) -> Result<StrategyConfig> {
    let expected_byzantine = (sim.byzantine * per_round as f64).floor() as usize;
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

/// The faults the simulation injects, and the triggered test set of a backdoor attack.
fn faults(
    task_seed: u64,
    c: &SimulationConfig,
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
                return setting("attack = backdoor needs image data (a pixel trigger); use --dataset mnist or idx");
            };
            if c.backdoor_target as usize >= train.num_classes() {
                return setting(format!(
                    "backdoor_target = {} is not a class (0..{})",
                    c.backdoor_target,
                    train.num_classes()
                ));
            }
            let trigger = Trigger { image_shape: shape, size: 4, value: 1.0 };
            triggered = Some(triggered_test_set(test, &trigger, c.backdoor_target).map_err(EngineError::data)?);
            Some(Attack::Backdoor {
                trigger,
                target: c.backdoor_target,
                poison_fraction: c.backdoor_fraction,
                boost: c.backdoor_boost.unwrap_or(per_round as f64) as f32,
            })
        }
    };
    let byzantine = if attack.is_some() {
        Faults::choose_byzantine(task_seed, num_clients as u32, c.byzantine)
    } else {
        Default::default()
    };
    if let Some(a) = &attack {
        a.validate().map_err(EngineError::Setting)?;
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

    /// Client `k`'s name: its natural name (a CSV's client column, a synthetic device), else
    /// `client-K` zero-padded to the number of clients.
    pub fn client_name(&self, k: usize) -> String {
        match &self.client_names {
            Some(names) => names[k].clone(),
            None => {
                let width = self.partition.num_clients().saturating_sub(1).to_string().len();
                format!("client-{k:0width$}")
            }
        }
    }

    /// Evaluates `params` on the test set.
    pub fn evaluate(&self, params: &[f32]) -> Evaluation {
        evaluate(self.model.as_ref(), params, &self.test)
    }

    /// A few lines describing the run, printed at its start.
    pub fn summary(&self) -> String {
        let (c, task) = (&self.settings.simulation, &self.settings.task);
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
            task.clients_per_round(k),
            task.rounds,
            task.epochs,
            task.batch_size,
            task.lr,
            task.seed,
            rayon::current_num_threads(),
            self.strategy.describe(),
            self.fault_summary(),
        )
    }

    fn fault_summary(&self) -> String {
        let c = &self.settings.simulation;
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
        parts.extend(c.network.describe());
        if parts.is_empty() {
            String::new()
        } else {
            format!("; {}", parts.join(", "))
        }
    }
}
