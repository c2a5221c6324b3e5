//! The settings' command-line flags and TOML file: defaults, a TOML file (`--config`), then
//! flags.
//!
//! Every knob is written once here, in [`ConfigPatch`] (its flag, its TOML key, its doc), and
//! once in `dainet_engine::config` with its default and its owner (the task, the simulation or
//! the output). A TOML file and the flags are both patches applied over the defaults in that
//! order, so a flag beats the file. Unknown TOML keys are errors. The engine checks the
//! result when it plans the run.

use anyhow::{Context, Result};
use dainet_core::text::{excerpt, shorten, EXCERPT_CHARS};
use dainet_engine::config::{AttackKind, DatasetKind, DpNoise, ModelKind, PartitionKind, Settings};
use dainet_sim::Crash;
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    /// SecAgg+ shares per secret, k neighbours + 1 [default: m (the complete graph) up to 16
    /// clients per round, else k ≈ log2 m, even].
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
    /// The simulated network (the `[network]` section of the file).
    #[command(flatten)]
    #[serde(default)]
    pub network: NetworkPatch,
    /// Output folder [default: runs/simulate].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a checkpoint every N rounds (0: none) [default: 0].
    #[arg(long)]
    pub checkpoint_every: Option<u32>,
}

/// The simulated network's flags, and the keys of the file's `[network]` section.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NetworkPatch {
    /// One-way latency of every message, in milliseconds [default: 50].
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// Each trainer's link speed in Mbit/s, both ways; a message takes its encoded size over
    /// it [default: unlimited].
    #[arg(long)]
    pub bandwidth_mbit: Option<f64>,
    /// Probability that a message is lost, in [0, 1); needs a round deadline [default: 0].
    #[arg(long)]
    pub loss: Option<f64>,
    /// Share of the clients that are slow devices, in [0, 1] [default: 0].
    #[arg(long)]
    pub slow_clients: Option<f64>,
    /// How many times slower a slow device is at everything: latency, transfers, training
    /// [default: 10].
    #[arg(long)]
    pub slowdown: Option<f64>,
    /// Training speed of a client in GFLOP/s (6 operations a parameter an example an epoch);
    /// unset, training takes no virtual time [default: unset].
    #[arg(long)]
    pub compute_gflops: Option<f64>,
    /// Clients that crash (`[[network.crashes]]` with `client`, `at_ms`, `down_ms`; file only).
    #[arg(skip)]
    pub crashes: Option<Vec<Crash>>,
}

/// Applies every setting `patch` has to `settings`.
pub fn apply(settings: &mut Settings, patch: ConfigPatch) {
    let Settings { task, simulation, output } = settings;
    // `set!(from => to: fields)`: each field `from` has replaces `to`'s.
    macro_rules! set {
        ($from:ident => $part:ident: $($field:ident),*) => { $(if let Some(v) = $from.$field { $part.$field = v; })* };
    }
    macro_rules! set_opt {
        ($from:ident => $part:ident: $($field:ident),*) => { $(if $from.$field.is_some() { $part.$field = $from.$field; })* };
    }
    set!(patch => task: model, hidden, fraction, rounds, epochs, batch_size, lr, momentum, weight_decay, prox_mu, seed);
    set!(patch => task: min_updates, strategy, trim_beta, cc_tau, cc_iterations, server_lr, server_momentum, carry_momentum);
    set!(patch => task: dp_clip_norm, dp_adaptive_clip, dp_target_quantile, dp_clip_lr, dp_noise, dp_delta);
    set!(patch => task: secagg, secagg_clipping_range, secagg_quantization_range);
    set_opt!(patch => task: dp_noise_multiplier, dp_count_stddev, dp_epsilon, secagg_num_shares, secagg_threshold);
    set_opt!(patch => task: round_timeout_ms, robust_f, multi_krum_m, clip_norm, bucket_size, max_update_norm);
    set!(patch => simulation: dataset, test_fraction, clients, partition, shards_per_client, dirichlet_alpha);
    set!(patch => simulation: min_partition_size, byzantine, sign_flip_scale, noise_sigma, ipm_epsilon);
    set!(patch => simulation: backdoor_target, backdoor_fraction, stragglers, dropouts, synthetic_alpha, synthetic_beta);
    set!(patch => simulation: dropout_after_masking);
    set_opt!(patch => simulation: images, labels, csv, label_column, client_column, attack, alie_z, backdoor_boost);
    set!(patch => output: out, checkpoint_every, ledger, keep_updates);
    let (network, net) = (&mut simulation.network, patch.network);
    set!(net => network: latency_ms, loss, slow_clients, slowdown, crashes);
    set_opt!(net => network: bandwidth_mbit, compute_gflops);
    if patch.no_ledger {
        output.ledger = false;
    }
}

/// The defaults, then the TOML file at `file` (if any), then `flags`.
pub fn resolve(file: Option<&Path>, flags: ConfigPatch) -> Result<Settings> {
    let mut settings = Settings::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?;
        apply(&mut settings, parse_config(path, &text)?);
    }
    apply(&mut settings, flags);
    Ok(settings)
}

/// Parses the text of a TOML config file (`path` names it in errors): an error names the file
/// and the line, and quotes at most a short excerpt of a bad key or value. Never panics.
pub fn parse_config(path: &Path, text: &str) -> Result<ConfigPatch> {
    toml::from_str(text).map_err(|e| {
        let msg = shorten_quotes(e.message());
        let line = e.span().and_then(|s| text.get(..s.start)).map(|before| before.matches('\n').count() + 1);
        match line {
            Some(line) => anyhow::anyhow!("{}: line {line}: {msg}", path.display()),
            None => anyhow::anyhow!("{}: {msg}", path.display()),
        }
    })
}

/// `message` with every quoted run (between two `"` or two backticks) longer than an excerpt
/// cut to one: toml and serde quote a bad key or string value whole, which may be megabytes.
fn shorten_quotes(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let inner = &rest[open + 1..];
        let Some(close) = inner.find(quote) else { break };
        out.push_str(&rest[..open]);
        let quoted = &inner[..close];
        if quoted.chars().count() > EXCERPT_CHARS {
            out.push_str(&excerpt(quoted).to_string());
        } else {
            out.push(quote);
            out.push_str(quoted);
            out.push(quote);
        }
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    // A message that quotes nothing but is still huge (it should not happen) is cut too.
    shorten(&out, 64 * EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_hammer::{arbitrary_bytes, long_run, mutated};
    use proptest::prelude::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let f = write("rounds = 7\nlr = 0.1\nhidden = [64]\n\n[network]\nlatency_ms = 5\nloss = 0.1\n");
        let flags = ConfigPatch {
            lr: Some(0.2),
            network: NetworkPatch { loss: Some(0.2), ..Default::default() },
            ..Default::default()
        };
        let s = resolve(Some(f.path()), flags).unwrap();
        assert_eq!((s.task.rounds, s.task.lr, s.task.hidden.clone()), (7, 0.2, vec![64]));
        let network = &s.simulation.network;
        assert_eq!((s.simulation.clients, network.latency_ms, network.loss), (100, 5, 0.2));
        assert_eq!(network.bandwidth_mbit, None);
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_line_and_key() {
        let f = write("rounds = 7\nlearning_rate = 0.1\n");
        let e = format!("{:#}", resolve(Some(f.path()), ConfigPatch::default()).unwrap_err());
        assert!(e.contains("line 2") && e.contains("learning_rate"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }

    #[test]
    fn the_network_section_takes_crashes_and_refuses_unknown_keys() {
        let f = write("[network]\nslow_clients = 0.2\n[[network.crashes]]\nclient = 3\nat_ms = 100\ndown_ms = 500\n");
        let s = resolve(Some(f.path()), ConfigPatch::default()).unwrap();
        assert_eq!(s.simulation.network.slow_clients, 0.2);
        assert_eq!(s.simulation.network.crashes, vec![Crash { client: 3, at_ms: 100, down_ms: Some(500) }]);
        let f = write("[network]\nlatency = 5\n");
        let e = format!("{:#}", resolve(Some(f.path()), ConfigPatch::default()).unwrap_err());
        assert!(e.contains("line 2") && e.contains("latency"), "{e}");
        // The old top-level key is now in the section.
        let f = write("latency_ms = 5\n");
        assert!(resolve(Some(f.path()), ConfigPatch::default()).is_err());
    }

    #[test]
    fn every_key_reaches_its_owner() {
        let flags = ConfigPatch {
            no_ledger: true,
            attack: Some(AttackKind::Ipm),
            dp_noise: Some(DpNoise::Distributed),
            dataset: Some(DatasetKind::Synthetic),
            partition: Some(PartitionKind::Natural),
            model: Some(ModelKind::Lr),
            out: Some(PathBuf::from("x")),
            ..Default::default()
        };
        let s = resolve(None, flags).unwrap();
        assert!(!s.output.ledger);
        assert_eq!(s.output.out, PathBuf::from("x"));
        assert_eq!(s.simulation.attack, Some(AttackKind::Ipm));
        assert_eq!((s.simulation.dataset, s.simulation.partition), (DatasetKind::Synthetic, PartitionKind::Natural));
        assert_eq!((s.task.dp_noise, s.task.model), (DpNoise::Distributed, ModelKind::Lr));
    }

    /// The TOML config decoder as `dainet simulate --config` runs it (a file that is not UTF-8
    /// is refused by the read): parse, apply, validate. An error stays a few lines long.
    fn toml_config(bytes: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(bytes) else { return false };
        match parse_config(Path::new("c.toml"), text) {
            Ok(patch) => {
                let mut settings = Settings::default();
                apply(&mut settings, patch);
                settings.validate().map_err(|e| assert!(e.to_string().len() < 1024, "{e}")).is_ok()
            }
            Err(e) => {
                assert!(e.to_string().len() <= 80 * EXCERPT_CHARS, "{} bytes", e.to_string().len());
                false
            }
        }
    }

    fn toml_seeds() -> Vec<Vec<u8>> {
        [
            "rounds = 7\nlr = 0.1\nhidden = [64, 32]\n[network]\nlatency_ms = 5\nloss = 0.1\n[[network.crashes]]\nclient = 3\nat_ms = 100\n",
            "dataset = \"synthetic\"\npartition = \"natural\"\nstrategy = \"krum\"\nrobust_f = 1\nbyzantine = 0.2\nattack = \"ipm\"\n",
            "dp_noise_multiplier = 1.1\ndp_clip_norm = 0.5\ndp_adaptive_clip = true\nsecagg = true\nout = \"runs/x\"\n",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    #[test]
    fn the_toml_seeds_are_valid() {
        assert!(toml_seeds().iter().all(|b| toml_config(b)));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn toml_configs_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(toml_seeds())]) {
            toml_config(&bytes);
        }
    }

    /// issue 11: a 50 MB config value was echoed whole.
    #[test]
    fn a_huge_value_or_key_is_quoted_as_a_short_excerpt() {
        let huge = "x".repeat(50_000_000);
        for text in [format!("rounds = \"{huge}\"\n"), format!("{huge} = 1\n")] {
            let e = format!("{:#}", parse_config(Path::new("c.toml"), &text).unwrap_err());
            assert!(e.len() < 4 * 1024, "{} bytes: {}", e.len(), &e[..400]);
            assert!(e.contains("… (50000000 bytes)"), "{e}");
        }
        let f = write(&format!("dataset = \"synthetic\"\npartition = \"natural\"\nstrategy = \"{huge}\"\n"));
        let settings = resolve(Some(f.path()), ConfigPatch::default()).unwrap();
        let e = dainet_engine::plan(settings).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown strategy") && e.len() < 1024, "{} bytes", e.len());
    }

    #[test]
    #[ignore = "long run: cargo test --release --bin dainet config::tests::long_run -- --ignored --nocapture"]
    fn long_run_toml_config() {
        long_run("cli-toml-config", &toml_seeds(), toml_config);
    }
}
