//! Recording a simulation's rounds in the ledger: every accepted update, every aggregate, the
//! metrics and the privacy spent, finalized by [`VALIDATORS`] simulated validators and written
//! to the run's `ledger/` folder with the blobs the commitments name (what each round writes:
//! [`round`]).
//!
//! The recording runs beside training, not inside it. [`LedgerRecorder::record`] hands a closed
//! round to a recording thread and returns; that thread stores the blobs, signs the round's
//! transactions and waits for the validators to finalize them while the next round trains.
//! The next round does not need the ledger: it trains on θ_r, which the coordinator already has,
//! and the ledger only commits to it. This module guarantees:
//! - **bounded lag**: at most [`LedgerRecorder::IN_FLIGHT`] rounds wait for the recording thread;
//!   a training loop that outruns the ledger waits (that time is reported as blocking);
//! - **the same bytes**: rounds reach the ledger one submission each, in round order, and the
//!   simulated ledger's virtual time stands still between submissions, so the ledger does not
//!   depend on how the threads interleave;
//! - **no silent loss**: an error on the recording thread (a refused transaction, a full disk)
//!   stops it, and the next [`LedgerRecorder::record`] or [`LedgerRecorder::finish`] returns it.

mod blobs;
mod round;

use crate::plan::Plan;
use crate::run::{execute_tapped, LedgerEntry, RoundRecord, Start};
use anyhow::{bail, Context, Result};
use dainet_core::Params;
use dainet_ledger::folder::LedgerDir;
use dainet_ml::ModelSpec;
use dainet_protocol::{RoundOutcome, Update};
use dainet_protocol::ClientId;
use round::RoundLedger;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// How many validators a simulation's ledger runs.
pub const VALIDATORS: usize = 4;

/// What a finished ledger recording amounted to.
#[derive(Clone, Copy, Debug)]
pub struct LedgerTotals {
    /// The last block's height.
    pub height: u64,
    /// Wall seconds the recording thread worked: blobs, signing, consensus, the store.
    pub seconds: f64,
    /// Of which encoding, hashing, writing and syncing the blobs.
    pub blob_seconds: f64,
    /// Wall seconds the training loop waited for the ledger: handing rounds over when the
    /// recording thread was [`LedgerRecorder::IN_FLIGHT`] rounds behind, and the end (the last
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
    /// θ_0.
    initial: Arc<Params>,
}

/// One closed round, as the recording thread needs it.
struct RoundInput {
    round: u32,
    contributors: Vec<ClientId>,
    missing: Vec<ClientId>,
    aggregated: bool,
    /// θ_r.
    params: Arc<Params>,
    /// The updates received, by client: parameters and example count.
    updates: BTreeMap<ClientId, (Vec<f32>, u64)>,
    metrics: Vec<(String, f64)>,
    /// (ε, δ) spent so far, under differential privacy.
    privacy: Option<(f64, f64)>,
}

/// What the recording thread hands back when it ends.
struct Recorded {
    entries: BTreeMap<u32, LedgerEntry>,
    totals: LedgerTotals,
}

/// The updates the coordinator accepted in the open rounds, as the simulator's tap saw them.
#[derive(Default)]
pub struct ReceivedUpdates {
    /// By (round, client): the parameters and example count of the update the coordinator
    /// accepted.
    updates: BTreeMap<(u32, ClientId), (Vec<f32>, u64)>,
}

/// Records each round of a simulation beside it, on a thread of its own. See the module docs.
pub struct LedgerRecorder {
    queue: Option<SyncSender<RoundInput>>,
    thread: Option<JoinHandle<Result<Recorded>>>,
    received: Rc<RefCell<ReceivedUpdates>>,
    /// Wall seconds the training loop has waited for the ledger so far.
    blocking_s: f64,
    /// Set when the recorder is dropped unfinished (the run failed): the recording thread then
    /// stops without writing blocks for a run that did not end.
    abandoned: Arc<AtomicBool>,
    /// The ledger folder this recorder created (removed again if the run fails).
    dir: PathBuf,
}

impl LedgerRecorder {
    /// Rounds handed over and not yet recorded, at most.
    pub const IN_FLIGHT: usize = 2;

    /// A fresh ledger in `dir` (replacing one a previous run left there, and nothing else) for
    /// the clients of `plan`, with `initial` as θ_0. If the recorder is dropped without
    /// [`LedgerRecorder::finish`] (the run failed), the folder is removed again. The validators start, and the clients'
    /// devices are registered, on the recording thread.
    pub fn start(dir: &Path, plan: &Plan, initial: &Params) -> Result<Self> {
        let started = Instant::now();
        if plan.rounds.secure.is_some() {
            bail!(
                "the ledger does not record secure-aggregation runs: the coordinator never sees the individual \
                 updates it commits to"
            );
        }
        if dir.exists() {
            // Replace only what a previous run wrote: a ledger folder, never anything else.
            if LedgerDir::open(dir).is_err() {
                bail!("{}: exists and is not a ledger folder; move it away or pass --no-ledger", dir.display());
            }
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("{}: cannot replace the previous run's ledger", dir.display()))?;
        }
        let (store, blobs) = LedgerDir::create(dir)?.into_parts();
        let c = &plan.config;
        let settings = RecorderSettings {
            seed: c.seed,
            clients: plan.partition.num_clients(),
            spec: plan.model.spec().clone(),
            fingerprint: c.fingerprint(),
            task: format!("{:?} {}", c.dataset, plan.model.spec()).to_lowercase(),
            strategy: c.strategy.clone(),
            round_timeout_ms: c.round_timeout_ms,
            initial: Arc::new(initial.clone()),
        };
        let (queue, rounds) = sync_channel::<RoundInput>(Self::IN_FLIGHT);
        let dir_name = dir.display().to_string();
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&abandoned);
        let thread = std::thread::Builder::new()
            .name("dainet-ledger-recorder".into())
            .spawn(move || -> Result<Recorded> {
                let mut ledger = RoundLedger::start(settings, store, blobs)?;
                let mut entries = BTreeMap::new();
                for input in rounds {
                    let round = input.round;
                    entries.insert(round, ledger.record(input)?);
                }
                if stop.load(Ordering::SeqCst) {
                    bail!("{dir_name}: the run stopped before its end; no blocks written");
                }
                let totals = ledger.finish().with_context(|| format!("{dir_name}: finishing the ledger"))?;
                Ok(Recorded { entries, totals })
            })
            .context("cannot start the ledger's recording thread")?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            received: Rc::default(),
            blocking_s: started.elapsed().as_secs_f64(),
            abandoned,
            dir: dir.to_path_buf(),
        })
    }

    /// The buffer the simulator's update tap fills (see [`dainet_sim::Simulator::with_update_tap`]).
    pub fn received(&self) -> Rc<RefCell<ReceivedUpdates>> {
        self.received.clone()
    }

    /// Hands round `outcome` (with `epsilon` spent so far at `delta`, under DP) to the recording
    /// thread; waits only if [`Self::IN_FLIGHT`] rounds are already waiting. Fails with the
    /// recording thread's error if it stopped.
    pub fn record(
        &mut self,
        outcome: &RoundOutcome,
        metrics: &[(&str, f64)],
        privacy: Option<(f64, f64)>,
    ) -> Result<()> {
        let updates = self.received.borrow_mut().take_round(outcome.round);
        let input = RoundInput {
            round: outcome.round,
            contributors: outcome.contributors.clone(),
            missing: outcome.missing.clone(),
            aggregated: outcome.aggregated(),
            params: Arc::clone(&outcome.params),
            updates,
            metrics: metrics.iter().map(|(name, value)| (name.to_string(), *value)).collect(),
            privacy,
        };
        let started = Instant::now();
        let sent = self.queue.as_ref().is_some_and(|queue| queue.send(input).is_ok());
        self.blocking_s += started.elapsed().as_secs_f64();
        if !sent {
            // The recording thread ended early: say why.
            self.join()?;
            bail!("the ledger's recording thread stopped");
        }
        Ok(())
    }

    /// Waits for the rounds still in flight, stops the validators, syncs the blobs and writes
    /// the blocks. Returns where each round landed, by round, and the totals.
    pub fn finish(mut self) -> Result<(BTreeMap<u32, LedgerEntry>, LedgerTotals)> {
        let started = Instant::now();
        let Recorded { entries, mut totals } = self.join()?;
        totals.blocking_seconds = self.blocking_s + started.elapsed().as_secs_f64();
        Ok((entries, totals))
    }

    fn join(&mut self) -> Result<Recorded> {
        drop(self.queue.take());
        let thread = self.thread.take().context("the ledger's recording thread already ended")?;
        thread.join().map_err(|_| anyhow::anyhow!("the ledger's recording thread panicked"))?
    }
}

/// [`crate::run::execute`] with every round recorded into a fresh ledger in `dir` (see
/// [`LedgerRecorder::start`]): `on_round` sees each round as it closes, before the ledger has
/// finalized it. Returns the final model, where each round landed (by round) and the totals.
pub fn execute_recorded(
    plan: &Plan,
    start: Start,
    dir: &Path,
    mut on_round: impl FnMut(&RoundRecord, &RoundOutcome) -> Result<()>,
) -> Result<(Arc<Params>, BTreeMap<u32, LedgerEntry>, LedgerTotals)> {
    let mut recorder = LedgerRecorder::start(dir, plan, &start.params)?;
    let received = recorder.received();
    let tap = Box::new(move |round, client, update: Update| received.borrow_mut().keep(round, client, update));
    let delta = plan.config.dp_delta;
    let last = execute_tapped(plan, start, Some(tap), |record, outcome| {
        let metrics = [
            ("accuracy", record.accuracy),
            ("loss", record.loss),
            ("train_loss", record.train_loss),
            ("examples", record.examples.map_or(f64::NAN, |n| n as f64)),
        ];
        recorder.record(outcome, &metrics, record.epsilon.map(|e| (e, delta)))?;
        on_round(record, outcome)
    })?;
    let (entries, totals) = recorder.finish()?;
    Ok((last, entries, totals))
}

impl Drop for LedgerRecorder {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abandoned.store(true, Ordering::SeqCst);
            // Whatever it says, the run's own error is the one to report.
            let _ = self.join();
            // The folder holds no block of a run that did not end (the thread wrote none): a
            // half-made ledger that fails verification would only mislead.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl ReceivedUpdates {
    /// Keeps `update` of `client` for `round`, one the coordinator accepted (it accepts one per
    /// client and round).
    pub fn keep(&mut self, round: u32, client: ClientId, update: Update) {
        self.updates.insert((round, client), (update.params, update.num_examples));
    }

    /// The updates received for `round`, by client; forgets those of `round` and earlier.
    fn take_round(&mut self, round: u32) -> BTreeMap<ClientId, (Vec<f32>, u64)> {
        let later = self.updates.split_off(&(round + 1, ClientId(0)));
        let upto = std::mem::replace(&mut self.updates, later);
        upto.into_iter().filter(|((r, _), _)| *r == round).map(|((_, k), v)| (k, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::plan::plan;
    use dainet_protocol::Time;

    fn small_plan() -> Plan {
        plan(RunConfig { rounds: 3, ..RunConfig::default() }).unwrap()
    }

    #[test]
    fn a_run_that_fails_leaves_no_blocks_for_rounds_it_did_not_finish() {
        let plan = small_plan();
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger");
        let start = Start::fresh(plan.model.init(plan.config.seed));
        let result = execute_recorded(&plan, start, &ledger, |record, _| {
            if record.round == 2 {
                bail!("stopped by the test at round 2");
            }
            Ok(())
        });
        let err = result.expect_err("the run's error comes back");
        assert!(format!("{err:#}").contains("stopped by the test at round 2"), "{err:#}");
        // Round 1 was recorded by the validators, but the run did not end: nothing half-recorded
        // is left to pass for a ledger of the run.
        assert!(!ledger.exists(), "a failed run left {}", ledger.display());
    }

    #[test]
    fn an_error_on_the_recording_thread_reaches_the_training_loop() {
        let plan = small_plan();
        let dir = tempfile::tempdir().unwrap();
        let initial = plan.model.init(plan.config.seed);
        let mut recorder = LedgerRecorder::start(&dir.path().join("ledger"), &plan, &initial).unwrap();
        // Client 3 contributed, but the tap never saw its update: the recording thread must
        // refuse to commit to an update it cannot store.
        let outcome = RoundOutcome {
            round: 1,
            params: Arc::new(initial.clone()),
            not_aggregated: None,
            contributors: vec![ClientId(3)],
            missing: Vec::new(),
            examples: Some(80),
            train_loss: 1.0,
            rejected: Vec::new(),
            clipped_values: 0,
            closed_at: Time(100),
            server_state: None,
            dp_clip_norm: None,
            privacy: None,
        };
        let mut error = None;
        // The hand-over that finds the thread stopped, or else `finish`, says why.
        for _ in 0..=LedgerRecorder::IN_FLIGHT + 1 {
            if let Err(err) = recorder.record(&outcome, &[], None) {
                error = Some(err);
                break;
            }
        }
        let error = match error {
            Some(err) => err,
            None => recorder.finish().expect_err("finish reports the recording thread's error"),
        };
        assert!(
            format!("{error:#}").contains("client 3 contributed an update the ledger recorder never saw"),
            "{error:#}"
        );
    }
}
