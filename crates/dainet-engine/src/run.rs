//! Running a planned federation: [`execute`] drives the sans-IO coordinator and trainers with
//! the simulator and evaluates the global model centrally after every round. Shared by
//! `simulate` and the benchmarks. Every protocol decision (privacy accounting and the budget
//! stop included) is the coordinator's; this module only turns its outcomes into records.

use crate::error::EngineError;
use crate::plan::Plan;
use dainet_agg::strategy::Strategy;
use dainet_core::Params;
use dainet_ml::{evaluate, SgdConfig};
use dainet_protocol::{ClientId, Coordinator, Finish, LedgerRecord, RoundOutcome, ToCoordinator};
use dainet_sim::faults::RoundFaults;
use dainet_sim::{Federation, RoundTraffic, SimEnd, SimEvent, Simulator};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

type Result<T> = std::result::Result<T, EngineError>;

/// The metrics of one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u32,
    pub accuracy: f64,
    pub loss: f64,
    /// Example-weighted mean of the contributors' local training losses.
    pub train_loss: f64,
    pub aggregated: bool,
    /// Why the round was not aggregated, if it was not.
    pub not_aggregated_because: Option<String>,
    pub contributors: usize,
    pub missing: usize,
    /// Σ n_k over the contributors; `None` under secure aggregation with differential privacy
    /// (the coordinator cannot know it).
    pub examples: Option<u64>,
    /// Messages refused, by reason.
    pub rejected: std::collections::BTreeMap<String, u32>,
    /// Input values clipped to secure aggregation's range (used, not refused).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clipped_values: u64,
    /// Wall seconds from the end of the previous round's evaluation to the end of this one's.
    pub wall_s: f64,
    /// Virtual (simulated) time when the round closed, in milliseconds.
    pub virtual_ms: u64,
    /// Byzantine clients, stragglers and dropouts among the round's sampled clients.
    pub faults: RoundFaults,
    /// What the round cost the simulated network: its virtual duration, bytes and messages
    /// each way, messages lost, updates its deadline cut.
    #[serde(default)]
    pub network: RoundTraffic,
    /// Share of triggered test images classified as the backdoor target (backdoor only).
    pub backdoor_success: Option<f64>,
    /// The (ε, δ = dp_delta) spent so far, classic RDP conversion (differential privacy only).
    pub epsilon: Option<f64>,
    /// What this round added to `epsilon` (the rounds' values sum to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon_round: Option<f64>,
    /// The same with the tighter conversion of Balle et al. 2020.
    pub epsilon_tight: Option<f64>,
    /// The clipping norm the next round uses (differential privacy only).
    pub dp_clip_norm: Option<f64>,
    /// Where the round landed in the ledger (when one is recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerEntry>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a round's transactions landed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The height of the block holding the round's aggregate (or its last transaction).
    pub block: u64,
    /// The lowest height holding one of the round's transactions.
    pub first_block: u64,
    /// Transactions recorded for the round.
    pub txs: usize,
    /// blake3 of the aggregate model file, if the round aggregated.
    pub aggregate_hash: Option<String>,
    /// Wall seconds the recording thread spent on this round (blobs, signing, consensus),
    /// beside the next round's training.
    pub ledger_s: f64,
    /// Virtual milliseconds from handing the round's transactions to the simulated validators
    /// (10 ms links) to their finality: how long the round takes to be on the ledger.
    #[serde(default)]
    pub finality_ms: u64,
}

/// Where a run starts: θ_{first_round − 1} and, when resuming, the strategy's state.
pub struct Start {
    pub params: Params,
    pub first_round: u32,
    pub server_state: Option<(Vec<f32>, Vec<f32>)>,
    pub dp_clip_norm: Option<f64>,
}

impl Start {
    /// A new run from `params`.
    pub fn fresh(params: Params) -> Self {
        Self { params, first_round: 1, server_state: None, dp_clip_norm: None }
    }
}

/// What watches a run: every closed round, and if it asks, the ledger records the coordinator
/// emits and the messages the trainers send. Any closure over a round is one.
pub trait RunObserver {
    /// A round closed: `record` is its metrics, `outcome` the coordinator's. An error stops
    /// the run and is returned.
    fn round(&mut self, record: &RoundRecord, outcome: &RoundOutcome) -> Result<()>;

    /// Whether the coordinator should emit ledger records ([`RunObserver::record`]).
    fn wants_records(&self) -> bool {
        false
    }

    /// A ledger record, in the coordinator's order (see `dainet_protocol::record`).
    fn record(&mut self, _record: LedgerRecord) -> Result<()> {
        Ok(())
    }

    /// Whether to see what the trainers send ([`RunObserver::trainer_sent`]).
    fn wants_trainer_messages(&self) -> bool {
        false
    }

    /// Trainer `client` sent `message`.
    fn trainer_sent(&mut self, _client: ClientId, _message: &ToCoordinator) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&RoundRecord, &RoundOutcome) -> Result<()>> RunObserver for F {
    fn round(&mut self, record: &RoundRecord, outcome: &RoundOutcome) -> Result<()> {
        self(record, outcome)
    }
}

/// Runs rounds `start.first_round ..= config.rounds`, calling `on_round` with each round's
/// record and outcome as it closes. An error from `on_round` stops the run and is returned.
/// Returns the final global model.
pub fn execute(
    plan: &Plan,
    start: Start,
    mut on_round: impl FnMut(&RoundRecord, &RoundOutcome) -> Result<()>,
) -> Result<Arc<Params>> {
    execute_observed(plan, start, &mut on_round)
}

/// [`execute`], telling `observer` of each round as it closes and of whatever else it asks
/// for (ledger records, the trainers' messages).
pub fn execute_observed(plan: &Plan, start: Start, observer: &mut impl RunObserver) -> Result<Arc<Params>> {
    let Start { params: start, first_round, server_state, dp_clip_norm } = start;
    let c = &plan.settings.task;
    let mut strategy = Strategy::new(plan.strategy.clone(), c.seed)?;
    if let Some((m, v)) = server_state {
        strategy.restore_server_state(m, v)?;
    }
    if let Some(norm) = dp_clip_norm {
        strategy.restore_dp_clip_norm(norm);
    }
    let mut coordinator = Coordinator::new(plan.rounds.clone(), strategy, start.clone(), first_round)?;
    if observer.wants_records() {
        coordinator = coordinator.recording();
    }
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
        faults: plan.faults.clone(),
        carry_momentum: c.carry_momentum,
    };
    let network = plan.settings.simulation.network.clone();
    let mut sim = Simulator::new(federation, coordinator, network).map_err(|e| EngineError::Setting(e.to_string()))?;
    if observer.wants_trainer_messages() {
        sim = sim.reporting_trainer_messages();
    }
    let mut last = Arc::new(start);
    let mut error = None;
    let mut round_start = crate::wall_clock();
    let end = sim.run_events(|event| {
        let result = match event {
            SimEvent::Record(record) => observer.record(record),
            SimEvent::TrainerSent { client, message } => observer.trainer_sent(client, message),
            SimEvent::RoundClosed(outcome, faults, traffic) => {
                let record = round_record(plan, outcome, faults, traffic, round_start);
                last = outcome.params.clone();
                let result = observer.round(&record, outcome);
                round_start = crate::wall_clock();
                result
            }
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    match end {
        // The last round's outcome says which, for observers that report it.
        SimEnd::Finished(Finish::LastRound | Finish::PrivacyBudget { .. }) => Ok(last),
        SimEnd::Finished(Finish::Accounting(why)) => Err(EngineError::Run(format!("privacy accounting failed: {why}"))),
        SimEnd::Finished(why) => Err(EngineError::Run(format!("the coordinator finished: {why:?}"))),
        SimEnd::Stopped => Err(EngineError::Run("the run was stopped".into())),
        SimEnd::Stalled => Err(EngineError::Run(
            "the simulation stalled: no update in flight and no deadline set (a bug; please report it)".into(),
        )),
    }
}

/// The metrics of a closed round: the coordinator's outcome, evaluated on the test set.
fn round_record(
    plan: &Plan,
    outcome: &RoundOutcome,
    faults: &RoundFaults,
    traffic: &RoundTraffic,
    round_start: Instant,
) -> RoundRecord {
    let eval = plan.evaluate(outcome.params.values());
    let backdoor_success =
        plan.triggered_test.as_ref().map(|t| evaluate(plan.model.as_ref(), outcome.params.values(), t).accuracy);
    RoundRecord {
        round: outcome.round,
        accuracy: eval.accuracy,
        loss: eval.loss,
        train_loss: outcome.train_loss,
        aggregated: outcome.aggregated(),
        not_aggregated_because: outcome.not_aggregated.as_ref().map(ToString::to_string),
        contributors: outcome.contributors.len(),
        missing: outcome.missing.len(),
        examples: outcome.examples,
        rejected: outcome.rejected.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        clipped_values: outcome.clipped_values,
        wall_s: round_start.elapsed().as_secs_f64(),
        virtual_ms: outcome.closed_at.0,
        faults: faults.clone(),
        network: traffic.clone(),
        backdoor_success,
        epsilon: outcome.privacy.map(|p| p.epsilon),
        epsilon_round: outcome.privacy.map(|p| p.epsilon_round),
        epsilon_tight: outcome.privacy.map(|p| p.epsilon_tight),
        dp_clip_norm: outcome.dp_clip_norm,
        ledger: None,
    }
}

/// The first round whose accuracy reaches `target`.
pub fn rounds_to(rounds: &[RoundRecord], target: f64) -> Option<u32> {
    rounds.iter().find(|r| r.accuracy >= target).map(|r| r.round)
}
