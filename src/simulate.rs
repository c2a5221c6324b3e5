//! `dainet simulate`: train a federation in one process and write the run's folder.
//!
//! The folder holds `report.json` (config, seed, versions, label counts per client,
//! per-round metrics and timings), `accuracy.png` and `loss.png`, `model.safetensors` (the
//! final global model) and, with `--checkpoint-every N`, `checkpoints/round-NNNN.safetensors`.
//! A checkpoint carries the round, the config fingerprint and the metrics so far, so
//! `--resume` continues to exactly the model and report an uninterrupted run produces.

use crate::config::{ConfigPatch, RunConfig};
use crate::plan::{plan, Plan};
use crate::plot::{line_chart, Series};
use crate::record::{execute_recorded, finish_folder, KeptUpdates, LedgerTotals, VALIDATORS};
use crate::run::{LedgerEntry, RoundRecord, Start};
use anyhow::{bail, Context, Result};
use dainet_ledger::folder::{is_unfinished, mark_unfinished, LedgerDir};
use dainet_ml::model_file::{load_model, load_tensors, save_model, save_tensors};
use dainet_ml::Evaluation;
use dainet_protocol::RoundOutcome;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `dainet simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// TOML file of settings (keys as the flags below, with underscores); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue from a checkpoint written by --checkpoint-every or by an interrupted run (same
    /// settings required).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Replace the results of another run in the output folder (they are removed first).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub flags: ConfigPatch,
}

/// What a checkpoint remembers besides the model.
#[derive(Serialize, Deserialize)]
struct History {
    initial: Evaluation,
    rounds: Vec<RoundRecord>,
}

const ROUND_KEY: &str = "dainet.round";
const FINGERPRINT_KEY: &str = "dainet.config_fingerprint";
const HISTORY_KEY: &str = "dainet.history";
const DP_CLIP_KEY: &str = "dainet.dp_clip_norm";

/// Runs `dainet simulate`.
pub fn simulate(args: SimulateArgs) -> Result<()> {
    let started = Instant::now();
    let config = RunConfig::resolve(args.config.as_deref(), args.flags)?;
    let plan = plan(config)?;
    let c = &plan.config;
    let (start, mut history) = match &args.resume {
        Some(path) => resume_point(&plan, path)?,
        None => {
            let params = plan.model.init(c.seed);
            let initial = plan.evaluate(params.values());
            (Start::fresh(params), History { initial, rounds: Vec::new() })
        }
    };
    // Once the checkpoint is known good, and before anything is printed or written.
    prepare_folder(&c.out, args.overwrite, args.resume.is_some(), &c.fingerprint())?;
    let first_round = start.first_round;
    eprintln!("{}", plan.summary());
    if first_round == 1 {
        eprintln!("round   0/{}  acc {:.4}  loss {:.4}", c.rounds, history.initial.accuracy, history.initial.loss);
    } else {
        eprintln!("resuming after round {} of {}", first_round - 1, c.rounds);
    }
    std::fs::create_dir_all(&c.out).with_context(|| format!("{}: cannot create the output folder", c.out.display()))?;
    let resumed_from = args.resume.as_deref();
    // From here on the folder says what the run is doing, whatever happens to it.
    write_report(&plan, &history, resumed_from, &started, RunStatus::Running)?;
    crate::interrupt::install();

    let record_ledger = match (c.ledger, &args.resume) {
        (false, _) => false,
        (true, Some(_)) => {
            eprintln!(
                "ledger: not recorded for a resumed run (continuing the interrupted run's ledger is not supported yet); \
                 pass --no-ledger to silence this"
            );
            false
        }
        (true, None) => {
            eprintln!("ledger: {VALIDATORS} simulated validators, recording to {}", c.out.join("ledger").display());
            true
        }
    };
    let kept = c.keep_updates.then(|| {
        let k = plan.partition.num_clients();
        let names = match &plan.client_names {
            Some(names) => names.clone(),
            None => {
                (0..k).map(|i| format!("client-{i:0width$}", width = k.saturating_sub(1).to_string().len())).collect()
            }
        };
        KeptUpdates::new(c.out.join("clients"), plan.model.spec().clone(), plan.model.layout().clone(), names)
    });
    let bar = ProgressBar::new(u64::from(c.rounds)).with_position(u64::from(first_round - 1));
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} rounds, eta {eta}").expect("valid template"));
    let on_round = |record: &RoundRecord, outcome: &RoundOutcome| -> Result<()> {
        bar.suspend(|| eprintln!("{}", round_line(record, c.rounds)));
        bar.inc(1);
        history.rounds.push(record.clone());
        let due = c.checkpoint_every > 0 && record.round.is_multiple_of(c.checkpoint_every);
        // A round that ends the run anyway finishes it: its checkpoint could not be resumed.
        let interrupted = crate::interrupt::requested() && outcome.finish.is_none();
        if due || interrupted {
            let checkpoint = save_checkpoint(&plan, &history, outcome)?;
            if interrupted {
                return Err(Interrupted { round: record.round, checkpoint }.into());
            }
        }
        Ok(())
    };
    let ledger_dir = c.out.join("ledger");
    let run = execute_recorded(&plan, start, record_ledger.then_some(ledger_dir.as_path()), kept, on_round);
    bar.finish_and_clear();
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            let status = match e.downcast_ref::<Interrupted>() {
                Some(_) => RunStatus::Interrupted,
                None => RunStatus::Failed(format!("{e:#}")),
            };
            // Best effort: the run's own error is the one to report.
            let _ = write_report(&plan, &history, resumed_from, &started, status);
            return Err(e);
        }
    };
    let finished = (|| -> Result<()> {
        let ledger = run.ledger.map(|(entries, totals)| ledger_summary(entries, totals, &mut history));
        let model_path = c.out.join("model.safetensors");
        // The round the model is from (earlier than --rounds when a privacy budget stopped the run).
        let last_round = history.rounds.last().map_or(0, |r| r.round);
        let meta = BTreeMap::from([
            (ROUND_KEY.to_string(), last_round.to_string()),
            (FINGERPRINT_KEY.to_string(), c.fingerprint()),
        ]);
        write_plots(&c.out, &history)?;
        save_model(&model_path, plan.model.spec(), &run.last, &meta)?;
        let mut report = report_json(&plan, &history, resumed_from, started.elapsed().as_secs_f64());
        report["ledger"] = serde_json::to_value(&ledger)?;
        report["status"] = "finished".into();
        write_json(&c.out.join("report.json"), &report)?;
        if record_ledger {
            // Last: a run killed before this point leaves a ledger that says it is unfinished.
            finish_folder(&ledger_dir)?;
        }
        Ok(())
    })();
    if let Err(e) = finished {
        let _ = write_report(&plan, &history, resumed_from, &started, RunStatus::Failed(format!("{e:#}")));
        return Err(e);
    }
    let last = history.rounds.last().map(|r| r.accuracy).unwrap_or(history.initial.accuracy);
    eprintln!("final accuracy {last:.4}; wrote {}", c.out.display());
    Ok(())
}

/// A run stopped by Ctrl-C (or SIGTERM) after `round`, with a checkpoint to resume from.
#[derive(Debug)]
pub struct Interrupted {
    /// The last round that closed.
    pub round: u32,
    /// The checkpoint written after it.
    pub checkpoint: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted after round {}; continue with --resume {}", self.round, self.checkpoint.display())
    }
}

impl std::error::Error for Interrupted {}

/// What `report.json` says the run is doing.
enum RunStatus {
    Running,
    Interrupted,
    Failed(String),
}

/// The files a run writes into its folder.
const RUN_FILES: [&str; 7] =
    ["report.json", "model.safetensors", "accuracy.png", "loss.png", "checkpoints", "ledger", "clients"];

/// Makes sure a run may write into `out`: a folder holding another run's results is refused,
/// unless `overwrite` (those results are removed first) or `resume` (the run continues there).
fn prepare_folder(out: &Path, overwrite: bool, resume: bool, fingerprint: &str) -> Result<()> {
    let present: Vec<&str> = RUN_FILES.iter().copied().filter(|f| out.join(f).exists()).collect();
    if present.is_empty() {
        return Ok(());
    }
    let ledger = out.join("ledger");
    if resume {
        // Continue only the run the checkpoint belongs to, not another one that shares the folder.
        if let Ok(text) = std::fs::read(out.join("report.json")) {
            let report: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            if report["config_fingerprint"].as_str().is_some_and(|f| f != fingerprint) {
                bail!(
                    "{}: holds the results of a run with other settings; resume into the folder of the run that \
                     wrote the checkpoint, or choose another --out",
                    out.display()
                );
            }
        }
        // A resumed run does not continue the ledger yet: the one there no longer holds the
        // whole run, and says so.
        if ledger.is_dir() {
            mark_unfinished(&ledger).with_context(|| format!("{}: cannot mark unfinished", ledger.display()))?;
        }
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{}: holds another run's results ({}); pass --overwrite to replace them, --resume CHECKPOINT to \
             continue that run, or choose another --out",
            out.display(),
            present.join(", ")
        );
    }
    // A ledger folder, or what a killed run left of one (only its mark), may go; nothing else.
    if ledger.exists() && !is_unfinished(&ledger) && LedgerDir::open_read_only(&ledger).is_err() {
        bail!("{}: exists and is not a ledger folder; move it away or pass --no-ledger", ledger.display());
    }
    for name in present {
        let path = out.join(name);
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.with_context(|| format!("{}: cannot remove the previous run's results", path.display()))?;
    }
    Ok(())
}

/// Writes `report.json` for a run that has not finished (yet).
fn write_report(
    plan: &Plan,
    history: &History,
    resumed_from: Option<&Path>,
    started: &Instant,
    status: RunStatus,
) -> Result<()> {
    let mut report = report_json(plan, history, resumed_from, started.elapsed().as_secs_f64());
    let (name, error) = match status {
        RunStatus::Running => ("running", None),
        RunStatus::Interrupted => ("interrupted", None),
        RunStatus::Failed(error) => ("failed", Some(error)),
    };
    report["status"] = name.into();
    if let Some(error) = error {
        report["error"] = error.into();
    }
    write_json(&plan.config.out.join("report.json"), &report)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    dainet_core::file::write_whole(path, text.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes the checkpoint of the round `outcome` closed; returns its path.
fn save_checkpoint(plan: &Plan, history: &History, outcome: &RoundOutcome) -> Result<PathBuf> {
    let dir = plan.config.out.join("checkpoints");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut meta = BTreeMap::from([
        (ROUND_KEY.to_string(), outcome.round.to_string()),
        (FINGERPRINT_KEY.to_string(), plan.config.fingerprint()),
        (HISTORY_KEY.to_string(), serde_json::to_string(history)?),
    ]);
    if let Some(norm) = outcome.dp_clip_norm {
        // Written exactly (shortest round-trip form), so a resume continues the same run.
        meta.insert(DP_CLIP_KEY.to_string(), format!("{norm:?}"));
    }
    let path = dir.join(format!("round-{:04}.safetensors", outcome.round));
    save_model(&path, plan.model.spec(), &outcome.params, &meta)?;
    if let Some(state) = &outcome.server_state {
        save_tensors(&server_state_path(&path), &[("m", &state.0), ("v", &state.1)], &BTreeMap::new())?;
    }
    Ok(path)
}

/// One progress line: round, accuracy, loss, seconds, and what went wrong if anything did.
fn round_line(r: &RoundRecord, rounds: u32) -> String {
    // Under secure aggregation the clients' training losses are not revealed.
    let train_loss = if r.train_loss.is_finite() { format!("{:.4}", r.train_loss) } else { "-".into() };
    let mut line = format!(
        "round {:>3}/{rounds}  acc {:.4}  loss {:.4}  train_loss {train_loss}  {:.3} s",
        r.round, r.accuracy, r.loss, r.wall_s
    );
    if let Some(b) = r.backdoor_success {
        line += &format!("  backdoor {b:.4}");
    }
    if let Some(e) = r.epsilon {
        line += &format!("  ε {e:.3}");
    }
    let f = &r.faults;
    if f.byzantine + f.stragglers + f.dropouts > 0 {
        line += &format!("  [byzantine {} stragglers {} dropouts {}]", f.byzantine, f.stragglers, f.dropouts);
    }
    let refused: u32 = r.rejected.values().sum();
    if refused > 0 {
        line += &format!("  refused {refused}");
    }
    if let Some(why) = &r.not_aggregated_because {
        line += &format!("  NOT AGGREGATED: {why}");
    }
    line
}

/// What `report.json` says of the run's ledger.
#[derive(Serialize)]
struct LedgerSummary {
    /// The folder, relative to the run's folder.
    dir: &'static str,
    validators: usize,
    /// The last block's height.
    height: u64,
    /// Wall seconds the recording thread worked beside training (blobs, signing, consensus,
    /// writing the store).
    seconds: f64,
    /// Of which storing the update and model blobs (encoding, hashing, writing, syncing).
    blob_seconds: f64,
    /// Wall seconds the training loop waited for the ledger (start, hand-overs, the end).
    blocking_seconds: f64,
    /// `blocking_seconds` over the rounds' time plus `blocking_seconds`: what the ledger added
    /// to the run's critical path. The CPU the recording thread takes from training shows in the
    /// rounds' own time; `dainet bench ledger-share` measures the whole cost against
    /// `--no-ledger`.
    share_of_round_time: f64,
}

/// Puts each round's ledger entry into `history` and summarises what the ledger cost.
fn ledger_summary(
    mut entries: BTreeMap<u32, LedgerEntry>,
    totals: LedgerTotals,
    history: &mut History,
) -> LedgerSummary {
    for record in &mut history.rounds {
        record.ledger = entries.remove(&record.round);
    }
    let rounds_s: f64 = history.rounds.iter().map(|r| r.wall_s).sum();
    let blocking = totals.blocking_seconds;
    let summary = LedgerSummary {
        dir: "ledger",
        validators: VALIDATORS,
        height: totals.height,
        seconds: totals.seconds,
        blob_seconds: totals.blob_seconds,
        blocking_seconds: blocking,
        share_of_round_time: if blocking + rounds_s > 0.0 { blocking / (blocking + rounds_s) } else { 0.0 },
    };
    eprintln!(
        "ledger: {} blocks; {:.3} s of recording beside training, of which {:.3} s made training wait \
         ({:.1}% of the round time)",
        summary.height,
        summary.seconds,
        summary.blocking_seconds,
        100.0 * summary.share_of_round_time,
    );
    summary
}

/// The server-optimiser state file beside a checkpoint.
fn server_state_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("server.safetensors")
}

/// Loads a checkpoint and checks it belongs to this run.
fn resume_point(plan: &Plan, path: &Path) -> Result<(Start, History)> {
    let file = load_model(path)?;
    let get = |key: &str| {
        file.metadata.get(key).with_context(|| format!("{}: not a checkpoint (no {key:?} metadata)", path.display()))
    };
    let round: u32 = get(ROUND_KEY)?.parse().with_context(|| format!("{}: bad {ROUND_KEY:?}", path.display()))?;
    if get(FINGERPRINT_KEY)? != &plan.config.fingerprint() {
        bail!(
            "{}: this checkpoint was written with other settings; resume with the settings of the run that wrote it \
             (only --rounds, --out and --checkpoint-every may change)",
            path.display()
        );
    }
    if &file.spec != plan.model.spec() {
        bail!("{}: the checkpoint holds a {} model, this run trains {}", path.display(), file.spec, plan.model.spec());
    }
    if round >= plan.config.rounds {
        bail!("{}: the checkpoint is already at round {round}; raise --rounds above it to continue", path.display());
    }
    let history: History = serde_json::from_str(get(HISTORY_KEY)?)
        .with_context(|| format!("{}: corrupt {HISTORY_KEY:?} metadata", path.display()))?;
    let state_path = server_state_path(path);
    let server_state = if state_path.exists() {
        let (mut tensors, _) = load_tensors(&state_path)?;
        let (Some(m), Some(v)) = (tensors.remove("m"), tensors.remove("v")) else {
            bail!("{}: no server state tensors m and v", state_path.display());
        };
        Some((m, v))
    } else if plan.strategy.server.has_state() {
        bail!(
            "{}: the server optimiser's state ({}) is missing beside this checkpoint; \
             without it the run would not continue as the original",
            path.display(),
            state_path.display()
        );
    } else {
        None
    };
    let dp_clip_norm = match file.metadata.get(DP_CLIP_KEY) {
        Some(text) => Some(text.parse::<f64>().with_context(|| format!("{}: bad {DP_CLIP_KEY:?}", path.display()))?),
        None => None,
    };
    Ok((Start { params: file.params, first_round: round + 1, server_state, dp_clip_norm }, history))
}

fn write_plots(out: &Path, h: &History) -> Result<()> {
    let points = |f: fn(&RoundRecord) -> f64, initial: f64| -> Vec<(f64, f64)> {
        std::iter::once((0.0, initial)).chain(h.rounds.iter().map(|r| (f64::from(r.round), f(r)))).collect()
    };
    let acc = Series { label: "test accuracy".into(), points: points(|r| r.accuracy, h.initial.accuracy) };
    line_chart(&out.join("accuracy.png"), "Test accuracy per round", "round", "accuracy", &[acc])?;
    let test_loss = Series { label: "test loss".into(), points: points(|r| r.loss, h.initial.loss) };
    let train_loss = Series {
        label: "train loss (clients)".into(),
        points: h.rounds.iter().map(|r| (f64::from(r.round), r.train_loss)).collect(),
    };
    line_chart(&out.join("loss.png"), "Loss per round", "round", "cross-entropy", &[test_loss, train_loss])
}

/// The first round whose accuracy reaches `target`.
pub fn rounds_to(rounds: &[RoundRecord], target: f64) -> Option<u32> {
    rounds.iter().find(|r| r.accuracy >= target).map(|r| r.round)
}

fn report_json(plan: &Plan, h: &History, resumed_from: Option<&Path>, wall_s: f64) -> serde_json::Value {
    let last = h.rounds.last();
    serde_json::json!({
        "command": "simulate",
        "versions": crate::versions(),
        "seed": plan.config.seed,
        "config": plan.config,
        "config_fingerprint": plan.config.fingerprint(),
        "model": plan.model.spec().to_string(),
        "parameters": plan.model.layout().len(),
        "threads": rayon::current_num_threads(),
        "train_examples": plan.train.len(),
        "test_examples": plan.test.len(),
        "clients": plan.partition.num_clients(),
        "client_names": plan.client_names,
        "label_counts": plan.label_counts(),
        "initial": h.initial,
        "rounds": h.rounds,
        "final_accuracy": last.map(|r| r.accuracy),
        "final_loss": last.map(|r| r.loss),
        "rounds_to_90": rounds_to(&h.rounds, 0.90),
        "rounds_to_95": rounds_to(&h.rounds, 0.95),
        "final_epsilon": last.and_then(|r| r.epsilon),
        "dp_delta": plan.strategy.dp.as_ref().map(|_| plan.config.dp_delta),
        "resumed_from": resumed_from,
        "wall_s": wall_s,
        "peak_rss_bytes": crate::peak_rss_bytes(),
    })
}
