//! A simulation's run folder, from its first byte to its last: what a run may write into, what
//! its `report.json` says while it runs, and in what order its results land.
//!
//! The folder holds `report.json` (settings, seed, versions, label counts per client,
//! per-round metrics and timings, and the run's `status`), the final `model.safetensors`, the
//! charts the driver draws, `checkpoints/` with `--checkpoint-every` or after an interrupt,
//! `ledger/` (the recorded ledger) and, with `--keep-updates`, `clients/NAME/` (each trainer's
//! own store). Guarantees:
//! - `report.json` says `running` from the start, then `interrupted`, `failed` (with the
//!   error) or `finished`; it says `finished` only once the model and everything else is written;
//! - a folder holding another run's results is refused, unless the run overwrites them (they
//!   are removed first) or resumes that same run (same settings' fingerprint);
//! - the ledger folder is marked finished last, so a run killed at any point leaves a ledger
//!   that `dainet ledger verify` reports as unfinished;
//! - an interrupt (see [`SimulationProgress::stop_requested`]) ends the current round, writes a
//!   checkpoint, the ledger up to that round and an `interrupted` report; resuming it gives
//!   the uninterrupted run's model and metrics, and continues its ledger ([`LedgerPlan`]).

use crate::checkpoint::{model_meta, resume_point, save_checkpoint, History, ResumePoint};
use crate::error::EngineError;
use crate::plan::Plan;
use crate::record::{
    check_replaceable, continues, execute_recorded, finish_folder, KeptUpdates, LedgerStart, LedgerTotals, VALIDATORS,
};
use crate::run::{LedgerEntry, RoundRecord, Start};
use dainet_ledger::folder::mark_unfinished;
use dainet_ml::model_file::save_model;
use dainet_protocol::RoundOutcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, EngineError>;

/// What drives a simulation sees of it, and what it adds to the folder.
pub trait SimulationProgress {
    /// A round closed (its record is already in the history).
    fn round(&mut self, _record: &RoundRecord, _outcome: &RoundOutcome) {}

    /// Whether the run should stop after the round that just closed (Ctrl-C): it then writes
    /// a checkpoint and ends with [`EngineError::Interrupted`].
    fn stop_requested(&self) -> bool {
        false
    }

    /// Writes the driver's own results (charts) into `out`, before the model: a failure here
    /// leaves no model that would pass for a finished run's.
    fn write_results(&mut self, _out: &Path, _history: &History) -> Result<()> {
        Ok(())
    }
}

/// A planned simulation whose folder is ready: checked, cleared if asked, `report.json` saying
/// `running`.
pub struct Simulation {
    plan: Plan,
    /// Taken when the rounds run.
    start: Option<Start>,
    history: History,
    resumed_from: Option<PathBuf>,
    ledger: LedgerPlan,
    started: Instant,
}

/// Whether and how a simulation records its ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerPlan {
    /// Not asked for (`--no-ledger`).
    Off,
    /// Recorded: a fresh ledger in the run folder, or the interrupted run's continued after the
    /// checkpoint's round.
    Record(LedgerStart),
    /// A resumed run whose folder holds no ledger it can continue (a run killed before it
    /// wrote its blocks, or one that went past the checkpoint): nothing is recorded, and the
    /// ledger there stays marked unfinished. Says why.
    NotContinued(String),
}

/// What a finished simulation wrote.
pub struct Finished {
    /// Every round's metrics, with where each landed in the ledger.
    pub history: History,
    /// What the ledger cost, if one was recorded.
    pub ledger: Option<LedgerSummary>,
}

/// What `report.json` says the run is doing.
enum RunStatus {
    Running,
    Interrupted,
    Failed(String),
    Finished,
}

/// The files a run writes into its folder.
const RUN_FILES: [&str; 7] =
    ["report.json", "model.safetensors", "accuracy.png", "loss.png", "checkpoints", "ledger", "clients"];

impl Simulation {
    /// Prepares `plan`'s folder: from the checkpoint at `resume` if given (checked before the
    /// folder is touched), replacing another run's results only if `overwrite`. Writes a
    /// `running` report.
    pub fn prepare(plan: Plan, resume: Option<&Path>, overwrite: bool) -> Result<Self> {
        let started = crate::wall_clock();
        // A checkpoint is checked before the folder is touched; a fresh run's initial model is
        // evaluated only once the folder may be written.
        let resumed = resume.map(|path| resume_point(&plan, path)).transpose()?;
        let out = &plan.settings.output.out;
        prepare_folder(out, overwrite, resume.is_some(), &plan.fingerprint)?;
        let ResumePoint { start, history } = match resumed {
            Some(point) => point,
            None => {
                let params = plan.model.init(plan.settings.task.seed);
                let initial = plan.evaluate(params.values());
                ResumePoint { start: Start::fresh(params), history: History { initial, rounds: Vec::new() } }
            }
        };
        std::fs::create_dir_all(out).map_err(EngineError::io(out, "cannot create the output folder"))?;
        let ledger_dir = out.join("ledger");
        let ledger = match (plan.settings.output.ledger, start.first_round) {
            (false, _) => LedgerPlan::Off,
            (true, 1) => LedgerPlan::Record(LedgerStart::Fresh),
            (true, first) => match continues(&ledger_dir, plan.settings.task.seed, first - 1) {
                Ok(()) => LedgerPlan::Record(LedgerStart::After(first - 1)),
                Err(why) => LedgerPlan::NotContinued(format!("{}: {why}", ledger_dir.display())),
            },
        };
        let resumed_from = resume.map(Path::to_path_buf);
        let simulation = Self { plan, start: Some(start), history, resumed_from, ledger, started };
        // From here on the folder says what the run is doing, whatever happens to it.
        simulation.write_report(RunStatus::Running, None)?;
        Ok(simulation)
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The first round this run will train (after the checkpoint's, when resuming).
    pub fn first_round(&self) -> u32 {
        self.start.as_ref().map_or(0, |s| s.first_round)
    }

    /// The metrics so far: the initial model's, and the checkpoint's rounds when resuming.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Whether and how the run records its ledger.
    pub fn ledger(&self) -> &LedgerPlan {
        &self.ledger
    }

    /// Runs the rounds, recording the ledger and the kept updates as the settings ask, and
    /// writes the results: the driver's (`progress.write_results`), the model, the report, and
    /// last the ledger's finished mark. On any error the report says `failed` (or
    /// `interrupted`) and the error is returned.
    pub fn run(mut self, progress: &mut impl SimulationProgress) -> Result<Finished> {
        match self.run_rounds(progress) {
            Ok(ledger) => Ok(Finished { history: self.history, ledger }),
            Err(e) => {
                let status = match &e {
                    EngineError::Interrupted { .. } => RunStatus::Interrupted,
                    e => RunStatus::Failed(e.to_string()),
                };
                // Best effort: the run's own error is the one to report.
                let _ = self.write_report(status, None);
                Err(e)
            }
        }
    }

    fn run_rounds(&mut self, progress: &mut impl SimulationProgress) -> Result<Option<LedgerSummary>> {
        let plan = &self.plan;
        let output = &plan.settings.output;
        let ledger_dir = output.out.join("ledger");
        let record_ledger = match self.ledger {
            LedgerPlan::Record(from) => Some(from),
            LedgerPlan::Off | LedgerPlan::NotContinued(_) => None,
        };
        let kept = output.keep_updates.then(|| KeptUpdates::new(output.out.join("clients"), plan));
        let start = self.start.take().ok_or_else(|| EngineError::Run("the simulation already ran".into()))?;
        let history = &mut self.history;
        let on_round = |record: &RoundRecord, outcome: &RoundOutcome| -> Result<()> {
            history.rounds.push(record.clone());
            progress.round(record, outcome);
            let every = output.checkpoint_every;
            let due = every > 0 && record.round.is_multiple_of(every);
            // A round that ends the run anyway finishes it: its checkpoint could not be resumed.
            let interrupted = progress.stop_requested() && outcome.finish.is_none();
            if due || interrupted {
                let checkpoint = save_checkpoint(plan, history, outcome)?;
                if interrupted {
                    return Err(EngineError::Interrupted { round: record.round, checkpoint });
                }
            }
            Ok(())
        };
        let run =
            execute_recorded(plan, start, record_ledger.map(|from| (ledger_dir.as_path(), from)), kept, on_round)?;
        let ledger = run.ledger.map(|(entries, totals)| ledger_summary(entries, totals, history));
        // The round the model is from (earlier than --rounds when a privacy budget stopped the run).
        let last_round = history.rounds.last().map_or(0, |r| r.round);
        let meta = model_meta(last_round, &plan.fingerprint);
        progress.write_results(&output.out, history)?;
        save_model(&output.out.join("model.safetensors"), plan.model.spec(), &run.last, &meta)?;
        self.write_report(RunStatus::Finished, ledger.as_ref())?;
        if record_ledger.is_some() {
            // Last: a run killed before this point leaves a ledger that says it is unfinished.
            finish_folder(&ledger_dir)?;
        }
        Ok(ledger)
    }

    /// Writes `report.json` with `status`.
    fn write_report(&self, status: RunStatus, ledger: Option<&LedgerSummary>) -> Result<()> {
        let mut report = self.report_json();
        let (name, error) = match status {
            RunStatus::Running => ("running", None),
            RunStatus::Interrupted => ("interrupted", None),
            RunStatus::Failed(error) => ("failed", Some(error)),
            RunStatus::Finished => ("finished", None),
        };
        if let Some(ledger) = ledger {
            report["ledger"] = serde_json::to_value(ledger).unwrap_or_default();
        }
        report["status"] = name.into();
        if let Some(error) = error {
            report["error"] = error.into();
        }
        let path = self.plan.settings.output.out.join("report.json");
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        dainet_core::file::write_whole(&path, text.as_bytes()).map_err(EngineError::io(&path, "cannot write"))
    }

    fn report_json(&self) -> serde_json::Value {
        let (plan, h) = (&self.plan, &self.history);
        let last = h.rounds.last();
        serde_json::json!({
            "command": "simulate",
            "versions": crate::versions(),
            "seed": plan.settings.task.seed,
            "config": plan.settings,
            "config_fingerprint": plan.fingerprint,
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
            "rounds_to_90": crate::run::rounds_to(&h.rounds, 0.90),
            "rounds_to_95": crate::run::rounds_to(&h.rounds, 0.95),
            "final_epsilon": last.and_then(|r| r.epsilon),
            "dp_delta": plan.strategy.dp.as_ref().map(|_| plan.settings.task.dp_delta),
            "resumed_from": self.resumed_from,
            "wall_s": self.started.elapsed().as_secs_f64(),
            "peak_rss_bytes": crate::peak_rss_bytes(),
        })
    }
}

/// Makes sure a run may write into `out`: a folder holding another run's results is refused,
/// unless `overwrite` (those results are removed first) or `resume` (the run continues there).
fn prepare_folder(out: &Path, overwrite: bool, resume: bool, fingerprint: &str) -> Result<()> {
    let present: Vec<&str> = RUN_FILES.iter().copied().filter(|f| out.join(f).exists()).collect();
    if present.is_empty() {
        return Ok(());
    }
    let refuse = |reason: String| Err(EngineError::Folder { path: out.to_path_buf(), reason });
    let ledger = out.join("ledger");
    if resume {
        // Continue only the run the checkpoint belongs to, not another one that shares the folder.
        if let Ok(text) = std::fs::read(out.join("report.json")) {
            let report: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            if report["config_fingerprint"].as_str().is_some_and(|f| f != fingerprint) {
                return refuse(
                    "holds the results of a run with other settings; resume into the folder of the run that \
                     wrote the checkpoint, or choose another --out"
                        .into(),
                );
            }
        }
        // The ledger there is unfinished until the resumed run finishes it (if it can continue
        // it at all: see `LedgerPlan`).
        if ledger.is_dir() {
            mark_unfinished(&ledger).map_err(EngineError::io(&ledger, "cannot mark unfinished"))?;
        }
        return Ok(());
    }
    if !overwrite {
        return refuse(format!(
            "holds another run's results ({}); pass --overwrite to replace them, --resume CHECKPOINT to \
             continue that run, or choose another --out",
            present.join(", ")
        ));
    }
    check_replaceable(&ledger)?;
    for name in present {
        let path = out.join(name);
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(EngineError::io(&path, "cannot remove the previous run's results"))?;
    }
    Ok(())
}

/// What `report.json` says of the run's ledger.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerSummary {
    /// The folder, relative to the run's folder.
    pub dir: &'static str,
    pub validators: usize,
    /// The height, the recording thread's seconds (of which blobs) and the seconds training
    /// waited for the ledger (start, hand-overs, the end).
    #[serde(flatten)]
    pub totals: LedgerTotals,
    /// `blocking_seconds` over the rounds' time plus `blocking_seconds`: what the ledger added
    /// to the run's critical path. The CPU the recording thread takes from training shows in the
    /// rounds' own time; `dainet bench ledger-share` measures the whole cost against
    /// `--no-ledger`.
    pub share_of_round_time: f64,
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
    LedgerSummary {
        dir: "ledger",
        validators: VALIDATORS,
        totals,
        share_of_round_time: if blocking + rounds_s > 0.0 { blocking / (blocking + rounds_s) } else { 0.0 },
    }
}
