//! Recording a simulation in the ledger: the coordinator's ledger records (each round's
//! opening, every accepted update's commitment, the aggregate with the round's metrics, the
//! privacy spent), finalized by [`VALIDATORS`] simulated validators and written to the run's
//! `ledger/` folder with the aggregates the commitments name (the mapping: `record/round.rs`).
//!
//! The recording runs beside training, not inside it. The recorder collects records as the
//! coordinator emits them and hands them to a recording thread in batches, each cut just after
//! a round's `OpenRound`: a batch holds one round's commitments and the next round's opening,
//! so every `OpenRound` lands in a block before its round's first commitment. The thread
//! stores the aggregates, signs the transactions and waits for the validators to finalize them
//! while the next round trains. The simulator does not wait for a round's `OpenRound` to be
//! final before training (no policy gates a round yet); a networked coordinator will. This
//! module guarantees:
//! - **bounded lag**: at most [`LedgerRecorder::IN_FLIGHT`] batches wait for the recording
//!   thread; a training loop that outruns the ledger waits (that time is reported as blocking);
//! - **the same bytes**: batches reach the ledger one submission each, in order, and the
//!   simulated ledger's virtual time stands still between submissions, so the ledger does not
//!   depend on how the threads interleave;
//! - **no silent loss**: an error on the recording thread (a refused transaction, a full disk)
//!   stops it, and the next hand-over or [`LedgerRecorder::finish`] returns it.
//! - **continuation**: a run interrupted after a round writes the ledger up to that round
//!   ([`execute_recorded`]); the run resumed from that round's checkpoint continues the same
//!   chain ([`LedgerStart::After`]), and any other ledger it is refused ([`continues`]).

mod blobs;
mod kept;
mod round;

pub use kept::{kept_commitments, KeptUpdates};

use crate::error::EngineError;
use crate::plan::Plan;
use crate::run::{execute_observed, LedgerEntry, RoundRecord, RunObserver, Start};
use dainet_core::Params;
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::{is_unfinished, mark_finished, mark_unfinished, LedgerDir};
use dainet_ml::ModelSpec;
use dainet_protocol::{ClientId, LedgerRecord, RoundOutcome, ToCoordinator};
use round::RoundLedger;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

type Result<T> = std::result::Result<T, EngineError>;

/// Says what the ledger was doing when an error of its own (the store's, consensus', a
/// thread's) stopped the recording.
trait LedgerContext<T> {
    fn ledger(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> LedgerContext<T> for std::result::Result<T, E> {
    fn ledger(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| EngineError::ledger(context(), e))
    }
}

/// How many validators a simulation's ledger runs.
pub const VALIDATORS: usize = 4;

/// What a finished ledger recording amounted to.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LedgerTotals {
    /// The last block's height.
    pub height: u64,
    /// Wall seconds the recording thread worked: blobs, signing, consensus, the store.
    pub seconds: f64,
    /// Of which encoding, hashing, writing and syncing the blobs.
    pub blob_seconds: f64,
    /// Wall seconds the training loop waited for the ledger: handing batches over when the
    /// recording thread was [`LedgerRecorder::IN_FLIGHT`] behind, and the end (the last
    /// rounds, syncing the blobs, writing the blocks).
    pub blocking_seconds: f64,
}

/// What the recording thread needs of the run (a [`Plan`] holds more and stays behind).
struct RecorderSettings {
    seed: u64,
    clients: usize,
    spec: ModelSpec,
    /// The run's config fingerprint, in every aggregate's metadata as in `model.safetensors`.
    fingerprint: String,
    task: String,
    strategy: String,
    /// The coordinator's round timeout, for the `OpenRound` deadline.
    round_timeout_ms: Option<u64>,
}

/// Where each round landed, by round, and the totals of a finished recording.
pub type Recorded = (BTreeMap<u32, LedgerEntry>, LedgerTotals);

/// Records for one submission, with the metrics of the rounds they close.
#[derive(Default)]
struct Batch {
    records: Vec<LedgerRecord>,
    metrics: BTreeMap<u32, Vec<(String, f64)>>,
}

/// Records each round of a simulation beside it, on a thread of its own. See the module docs.
pub struct LedgerRecorder {
    queue: Option<SyncSender<Batch>>,
    thread: Option<JoinHandle<Result<Recorded>>>,
    /// Records not yet handed over.
    pending: Batch,
    /// Wall seconds the training loop has waited for the ledger so far.
    blocking_s: f64,
    /// Set when the recorder is dropped unfinished (the run failed): the recording thread then
    /// stops without writing blocks for a run that did not end.
    abandoned: Arc<AtomicBool>,
    /// The ledger folder.
    dir: PathBuf,
    /// Where the recording started: a fresh folder is removed again if the run fails, a
    /// continued one is left as the interrupted run left it.
    from: LedgerStart,
}

/// Where a recording starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerStart {
    /// A fresh ledger, replacing one a previous run left in the folder (and nothing else).
    Fresh,
    /// The ledger of the interrupted run that a run resumed after this round continues (see
    /// [`continues`]).
    After(u32),
}

/// Whether a run resumed after `round` can continue the ledger in `dir`: it is the ledger of a
/// simulation with task seed `seed`, recorded up to `round` and no further. Says why not.
pub fn continues(dir: &Path, seed: u64, round: u32) -> std::result::Result<(), String> {
    let (store, _) = LedgerDir::open_read_only(dir).map_err(|e| e.to_string())?.into_parts();
    let chain = Chain::open(store).map_err(|e| e.to_string())?;
    round::check_continues(&chain, seed, round)
}

/// Refuses to let a run replace `dir` unless it is a ledger folder or what a killed run left of
/// one (only its unfinished mark): a run replaces what a previous run wrote, never anything else.
pub fn check_replaceable(dir: &Path) -> Result<()> {
    if dir.exists() && !is_unfinished(dir) && LedgerDir::open_read_only(dir).is_err() {
        return Err(EngineError::Folder {
            path: dir.to_path_buf(),
            reason: "exists and is not a ledger folder; move it away or pass --no-ledger".into(),
        });
    }
    Ok(())
}

impl LedgerRecorder {
    /// Batches handed over and not yet recorded, at most.
    pub const IN_FLIGHT: usize = 2;

    /// A ledger in `dir` for the clients of `plan`: a fresh one, or the interrupted run's to
    /// continue (`from`). If a fresh recorder is dropped without [`LedgerRecorder::finish`]
    /// (the run failed), the folder is removed again. The validators start, and a fresh
    /// ledger's devices are registered, on the recording thread.
    pub fn start(dir: &Path, plan: &Plan, from: LedgerStart) -> Result<Self> {
        let started = crate::wall_clock();
        if from == LedgerStart::Fresh && dir.exists() {
            check_replaceable(dir)?;
            std::fs::remove_dir_all(dir).map_err(EngineError::io(dir, "cannot replace the previous run's ledger"))?;
        }
        // Marked first, so a folder this run left at any point says the run did not finish
        // (until `finish_folder`).
        std::fs::create_dir_all(dir).map_err(EngineError::io(dir, "cannot create"))?;
        mark_unfinished(dir).map_err(EngineError::io(dir, "cannot mark the ledger unfinished"))?;
        let (store, blobs) = match from {
            LedgerStart::Fresh => LedgerDir::create(dir).ledger(|| "creating the ledger folder".into())?,
            LedgerStart::After(_) => LedgerDir::open(dir).ledger(|| "opening the interrupted run's ledger".into())?,
        }
        .into_parts();
        let c = &plan.settings.task;
        let settings = RecorderSettings {
            seed: c.seed,
            clients: plan.partition.num_clients(),
            spec: plan.model.spec().clone(),
            fingerprint: plan.fingerprint.clone(),
            task: format!("{:?} {}", plan.settings.simulation.dataset, plan.model.spec()).to_lowercase(),
            strategy: c.strategy.clone(),
            round_timeout_ms: c.round_timeout_ms,
        };
        let (queue, batches) = sync_channel::<Batch>(Self::IN_FLIGHT);
        let dir_name = dir.display().to_string();
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&abandoned);
        let thread = std::thread::Builder::new()
            .name("dainet-ledger-recorder".into())
            .spawn(move || {
                let mut ledger = RoundLedger::start(settings, store, blobs, from)?;
                for batch in batches {
                    ledger.record(batch)?;
                }
                if stop.load(Ordering::SeqCst) {
                    return Err(EngineError::ledger(dir_name, "the run stopped before its end; no blocks written"));
                }
                ledger.finish().map_err(|e| EngineError::ledger(format!("{dir_name}: finishing the ledger"), e))
            })
            .ledger(|| "cannot start the ledger's recording thread".into())?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            pending: Batch::default(),
            blocking_s: started.elapsed().as_secs_f64(),
            abandoned,
            dir: dir.to_path_buf(),
            from,
        })
    }

    /// Takes the coordinator's next record; an `OpenRound` closes the batch and hands it to
    /// the recording thread (waiting only if [`Self::IN_FLIGHT`] batches already wait). Fails
    /// with the recording thread's error if it stopped.
    pub fn record(&mut self, record: LedgerRecord) -> Result<()> {
        let opens = matches!(record, LedgerRecord::OpenRound { .. });
        self.pending.records.push(record);
        if opens {
            self.hand_over()?;
        }
        Ok(())
    }

    /// The evaluation of `round`, for its aggregate's record.
    pub fn metrics(&mut self, round: u32, metrics: &[(&str, f64)]) {
        let metrics = metrics.iter().map(|(name, value)| (name.to_string(), *value)).collect();
        self.pending.metrics.insert(round, metrics);
    }

    fn hand_over(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let started = crate::wall_clock();
        let sent = self.queue.as_ref().is_some_and(|queue| queue.send(batch).is_ok());
        self.blocking_s += started.elapsed().as_secs_f64();
        if !sent {
            // The recording thread ended early: say why.
            self.join()?;
            return Err(EngineError::ledger("recording", "the ledger's recording thread stopped"));
        }
        Ok(())
    }

    /// Hands over what is pending, waits for the batches still in flight, stops the
    /// validators, syncs the blobs and writes the blocks. Returns where each round landed, by
    /// round, and the totals.
    pub fn finish(mut self) -> Result<Recorded> {
        let started = crate::wall_clock();
        if !self.pending.records.is_empty() {
            self.hand_over()?;
        }
        let (entries, mut totals) = self.join()?;
        totals.blocking_seconds = self.blocking_s + started.elapsed().as_secs_f64();
        Ok((entries, totals))
    }

    fn join(&mut self) -> Result<Recorded> {
        drop(self.queue.take());
        let thread =
            self.thread.take().ok_or_else(|| EngineError::ledger("recording", "the recording thread already ended"))?;
        thread.join().map_err(|_| EngineError::ledger("recording", "the ledger's recording thread panicked"))?
    }
}

/// Marks the ledger folder `dir` finished: the run that recorded it wrote everything it had
/// to, report included. Until then `dainet ledger verify` says the ledger is unfinished.
pub fn finish_folder(dir: &Path) -> Result<()> {
    mark_finished(dir).map_err(EngineError::io(dir, "cannot mark the ledger finished"))
}

/// What a simulation records beside its rounds: the ledger, and the updates each trainer
/// keeps of its own.
pub struct Recorders<F> {
    /// The ledger, if recorded.
    pub ledger: Option<LedgerRecorder>,
    /// The trainers' own stores, with `--keep-updates`.
    pub kept: Option<KeptUpdates>,
    /// What else watches each round.
    pub on_round: F,
}

impl<F: FnMut(&RoundRecord, &RoundOutcome) -> Result<()>> RunObserver for Recorders<F> {
    fn round(&mut self, record: &RoundRecord, outcome: &RoundOutcome) -> Result<()> {
        if let Some(ledger) = &mut self.ledger {
            let metrics = [
                ("accuracy", record.accuracy),
                ("loss", record.loss),
                ("train_loss", record.train_loss),
                ("examples", record.examples.map_or(f64::NAN, |n| n as f64)),
            ];
            ledger.metrics(record.round, &metrics);
        }
        (self.on_round)(record, outcome)
    }

    fn wants_records(&self) -> bool {
        self.ledger.is_some()
    }

    fn record(&mut self, record: LedgerRecord) -> Result<()> {
        match &mut self.ledger {
            Some(ledger) => ledger.record(record),
            None => Ok(()),
        }
    }

    fn wants_trainer_messages(&self) -> bool {
        self.kept.is_some()
    }

    fn trainer_sent(&mut self, client: ClientId, message: &ToCoordinator) -> Result<()> {
        match &mut self.kept {
            Some(kept) => kept.keep(client, message),
            None => Ok(()),
        }
    }
}

/// [`crate::run::execute`] with every round recorded into the ledger in `ledger.0` (see
/// [`LedgerRecorder::start`]) if one is given, and each trainer keeping what it sent in
/// `kept` if given: `on_round` sees each round as it closes, before the ledger has finalized
/// it. Returns the final model and, with a ledger, where each round landed (by round) and the
/// totals. A run interrupted after a round ([`EngineError::Interrupted`]) records the ledger up
/// to that round, so the resumed run continues it.
pub fn execute_recorded(
    plan: &Plan,
    start: Start,
    ledger: Option<(&Path, LedgerStart)>,
    kept: Option<KeptUpdates>,
    on_round: impl FnMut(&RoundRecord, &RoundOutcome) -> Result<()>,
) -> Result<RecordedRun> {
    let ledger = ledger.map(|(dir, from)| LedgerRecorder::start(dir, plan, from)).transpose()?;
    let mut recorders = Recorders { ledger, kept, on_round };
    let last = match execute_observed(plan, start, &mut recorders) {
        Ok(last) => last,
        Err(interrupted @ EngineError::Interrupted { .. }) => {
            // The round the checkpoint holds closed and its records are pending: write them
            // (the folder stays marked unfinished).
            recorders.ledger.take().map(LedgerRecorder::finish).transpose()?;
            return Err(interrupted);
        }
        Err(e) => return Err(e),
    };
    let ledger = recorders.ledger.take().map(LedgerRecorder::finish).transpose()?;
    Ok(RecordedRun { last, ledger })
}

/// What [`execute_recorded`] returns.
pub struct RecordedRun {
    /// The final global model.
    pub last: Arc<Params>,
    /// Where each round landed, by round, and the totals, if a ledger was recorded.
    pub ledger: Option<Recorded>,
}

impl Drop for LedgerRecorder {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abandoned.store(true, Ordering::SeqCst);
            // Whatever it says, the run's own error is the one to report.
            let _ = self.join();
            // The folder holds no block of a run that did not end (the thread wrote none): a
            // half-made ledger that fails verification would only mislead. A continued ledger
            // stays as the interrupted run left it (still marked unfinished).
            if self.from == LedgerStart::Fresh {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::plan::plan;

    fn small_plan() -> Plan {
        let mut settings = Settings::default();
        settings.task.rounds = 3;
        plan(settings).unwrap()
    }

    #[test]
    fn a_run_that_fails_leaves_no_blocks_for_rounds_it_did_not_finish() {
        let plan = small_plan();
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger");
        let start = Start::fresh(plan.model.init(plan.settings.task.seed));
        let result = execute_recorded(&plan, start, Some((&ledger, LedgerStart::Fresh)), None, |record, _| {
            if record.round == 2 {
                return Err(EngineError::Run("stopped by the test at round 2".into()));
            }
            Ok(())
        });
        let err = result.err().expect("the run's error comes back");
        assert!(format!("{err:#}").contains("stopped by the test at round 2"), "{err:#}");
        // Round 1 was recorded by the validators, but the run did not end: nothing half-recorded
        // is left to pass for a ledger of the run.
        assert!(!ledger.exists(), "a failed run left {}", ledger.display());
    }

    #[test]
    fn an_error_on_the_recording_thread_reaches_the_training_loop() {
        let plan = small_plan();
        let dir = tempfile::tempdir().unwrap();
        let initial = Arc::new(plan.model.init(plan.settings.task.seed));
        let mut recorder = LedgerRecorder::start(&dir.path().join("ledger"), &plan, LedgerStart::Fresh).unwrap();
        // An aggregate of client 3's update, which was never committed: the ledger refuses it,
        // and the recording thread must say so rather than write a round that does not add up.
        let records = |round: u32| {
            [
                LedgerRecord::OpenRound { round, participants: vec![ClientId(3)] },
                LedgerRecord::Aggregate { round, params: initial.clone(), contributors: vec![ClientId(3)] },
            ]
        };
        let mut error = None;
        // The hand-over that finds the thread stopped, or else `finish`, says why.
        'feed: for round in 1..=LedgerRecorder::IN_FLIGHT as u32 + 3 {
            for record in records(round) {
                if let Err(err) = recorder.record(record) {
                    error = Some(err);
                    break 'feed;
                }
            }
        }
        let error = match error {
            Some(err) => err,
            None => recorder.finish().expect_err("finish reports the recording thread's error"),
        };
        assert!(format!("{error:#}").contains("the ledger refused transaction"), "{error:#}");
        assert!(format!("{error:#}").contains("MissingUpdate"), "{error:#}");
    }
}
