//! Planning and running a simulated federation: shared by `simulate` and `bench fedtask`.
//!
//! [`plan`] turns a [`RunConfig`] into data, a model and a partition, checking everything that
//! depends on the data. [`execute`] drives the sans-IO coordinator with the simulator and
//! evaluates the global model centrally after every round.

use crate::config::{DatasetKind, ModelKind, PartitionKind, RunConfig};
use anyhow::{bail, Context, Result};
use dainet_core::Params;
use dainet_ml::data::csv::{load_csv, ColumnRef, CsvOptions};
use dainet_ml::data::idx::{idx_dataset, load_idx_dataset, read_idx_bytes};
use dainet_ml::data::partition::{natural_client_ids, partition, Partition, PartitionScheme};
use dainet_ml::{evaluate, Dataset, Evaluation, Model, ModelSpec, SgdConfig};
use dainet_protocol::round::{Coordinator, RoundConfig, RoundOutcome};
use dainet_sim::{Federation, NetworkModel, SimEnd, Simulator};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

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
}

/// The metrics of one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u32,
    pub accuracy: f64,
    pub loss: f64,
    /// Example-weighted mean of the contributors' local training losses.
    pub train_loss: f64,
    pub aggregated: bool,
    pub contributors: usize,
    pub missing: usize,
    pub examples: u64,
    /// Updates refused, by reason.
    pub rejected: std::collections::BTreeMap<String, u32>,
    /// Wall seconds from the end of the previous round's evaluation to the end of this one's.
    pub wall_s: f64,
    /// Virtual (simulated) time when the round closed, in milliseconds.
    pub virtual_ms: u64,
}

/// Loads the configured dataset and splits off the test set (the last `test_fraction`).
fn load_data(config: &RunConfig) -> Result<(Dataset, Dataset, Option<Vec<String>>)> {
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
            let (images, labels) = (config.images.as_deref(), config.labels.as_deref());
            (load_idx_dataset(images.expect("validated"), labels.expect("validated"))?, None)
        }
        DatasetKind::Csv => {
            let opts = CsvOptions {
                label_column: config.label_column.as_deref().map(|c| c.parse::<ColumnRef>().expect("infallible")),
                client_column: config.client_column.as_deref().map(|c| c.parse::<ColumnRef>().expect("infallible")),
                ..CsvOptions::default()
            };
            let data = load_csv(config.csv.as_deref().expect("validated"), &opts)?;
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
    Ok(Plan { config, train, test, model, partition, client_names })
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
             {} clients, partition {}, {} sampled per round, {} rounds, E={} B={} lr={} seed={}, {} threads",
            env!("CARGO_PKG_VERSION"),
            match c.dataset {
                DatasetKind::Mnist => "bundled MNIST".to_string(),
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
        )
    }
}

/// Runs rounds `first_round ..= config.rounds` from `start` (θ_{first_round − 1}), calling
/// `on_round` with each round's record and global model. An error from `on_round` stops the
/// run and is returned. Returns the final global model.
pub fn execute(
    plan: &Plan,
    start: Params,
    first_round: u32,
    mut on_round: impl FnMut(&RoundRecord, &Arc<Params>) -> Result<()>,
) -> Result<Arc<Params>> {
    let c = &plan.config;
    let num_clients = plan.partition.num_clients();
    let per_round = c.clients_per_round(num_clients);
    let round_config = RoundConfig {
        task_seed: c.seed,
        num_clients: num_clients as u32,
        clients_per_round: per_round,
        rounds: c.rounds,
        round_timeout_ms: c.round_timeout_ms,
        min_updates: 1,
    };
    let coordinator = Coordinator::new(round_config, start.clone(), first_round)?;
    let sgd = SgdConfig {
        learning_rate: c.lr as f32,
        momentum: c.momentum as f32,
        weight_decay: c.weight_decay as f32,
        prox_mu: c.prox_mu as f32,
        batch_size: c.batch_size,
        epochs: c.epochs,
    };
    let federation = Federation {
        model: plan.model.as_ref(),
        train: &plan.train,
        partition: &plan.partition,
        sgd,
        task_seed: c.seed,
    };
    let mut sim = Simulator::new(federation, coordinator, NetworkModel { latency_ms: c.latency_ms });
    let mut last = Arc::new(start);
    let mut error = None;
    let mut round_start = Instant::now();
    let end = sim.run(|outcome: &RoundOutcome| {
        let eval = plan.evaluate(outcome.params.values());
        let record = RoundRecord {
            round: outcome.round,
            accuracy: eval.accuracy,
            loss: eval.loss,
            train_loss: outcome.train_loss,
            aggregated: outcome.aggregated,
            contributors: outcome.contributors.len(),
            missing: outcome.missing.len(),
            examples: outcome.examples,
            rejected: outcome.rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            wall_s: round_start.elapsed().as_secs_f64(),
            virtual_ms: outcome.closed_at.0,
        };
        last = outcome.params.clone();
        let result = on_round(&record, &outcome.params);
        round_start = Instant::now();
        match result {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                error = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    match end {
        SimEnd::Finished => Ok(last),
        SimEnd::Stopped => bail!("the run was stopped"),
        SimEnd::Stalled => {
            bail!("the simulation stalled: no update in flight and no deadline set (a bug; please report it)")
        }
    }
}
