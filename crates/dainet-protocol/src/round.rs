//! The federated round, coordinator side, as a sans-IO state machine.
//!
//! # Protocol
//! For each round r = first_round ..= rounds:
//! 1. Sample `S_r` with [`sample_clients`] and emit one [`Action::Train`] per client, in
//!    ascending client order, carrying the global model θ_{r−1}.
//! 2. Accept at most one [`Update`] from each client of `S_r` for round r. An update of the
//!    wrong length, with NaN or Inf, with no examples, from a client not sampled, for another
//!    round, a duplicate, or a change longer than the strategy's norm bound is refused with
//!    a [`Rejection`] (counted; the round goes on).
//! 3. Close the round when every sampled client has answered, or at the deadline
//!    (`now + round_timeout`) if one is set. If at least `min_updates` arrived, θ_r is what
//!    the [`Strategy`] makes of them (FedAvg, a robust rule, a server optimiser); otherwise,
//!    or if the strategy cannot combine them (Bulyan with too few), θ_r = θ_{r−1} and the
//!    outcome says why the round was not aggregated.
//! 4. Emit [`Action::RoundClosed`], then start round r + 1 at the same logical time, or emit
//!    [`Action::Finished`] after the last round.
//!
//! # Driving it
//! Call [`Coordinator::handle_start`] once, then loop: drain [`Coordinator::poll_action`]
//! until it returns `None`, carry the actions out, and feed back what happens with
//! [`Coordinator::handle_update`] and, when [`Coordinator::poll_timeout`] is due,
//! [`Coordinator::handle_timeout`].
//!
//! Updates are folded in the order they are handed in; a driver that wants identical bits on
//! every run hands them in a deterministic order (the simulator orders by arrival time, then
//! by client id).

use crate::sampling::sample_clients;
use crate::{ClientId, Time};
use dainet_agg::strategy::{RoundAggregation, Strategy};
use dainet_agg::AggregationError;
use dainet_core::Params;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Settings of a federated training run.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundConfig {
    /// The task seed naming every random stream.
    pub task_seed: u64,
    /// Clients in the federation (K).
    pub num_clients: u32,
    /// Clients sampled per round (`max(1, round(C·K))`).
    pub clients_per_round: u32,
    /// The last round to run (rounds are numbered from 1).
    pub rounds: u32,
    /// Milliseconds a round waits for updates; `None` waits for every sampled client.
    pub round_timeout_ms: Option<u64>,
    /// Updates needed to aggregate a round that closes at its deadline.
    pub min_updates: u32,
}

/// A configuration the coordinator cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No clients, or none per round.
    #[error("clients_per_round ({per_round}) must be between 1 and num_clients ({num_clients})")]
    ClientsPerRound {
        /// Sampled per round.
        per_round: u32,
        /// In the federation.
        num_clients: u32,
    },
    /// `min_updates` outside `1..=clients_per_round`.
    #[error("min_updates ({min}) must be between 1 and clients_per_round ({per_round})")]
    MinUpdates {
        /// The minimum.
        min: u32,
        /// Sampled per round.
        per_round: u32,
    },
    /// The first round is past the last.
    #[error("first round {first} is past the last round {last}")]
    FirstRound {
        /// The first round.
        first: u32,
        /// The last.
        last: u32,
    },
}

/// A client's answer to a [`TrainRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The client's trained parameters θ_k.
    pub params: Vec<f32>,
    /// Examples it trained on (n_k), its weight in FedAvg.
    pub num_examples: u64,
    /// Its mean training loss (reported, not trusted for anything).
    pub train_loss: f64,
}

/// A round's updates summed by secure aggregation: all the coordinator learns of them.
#[derive(Clone, Debug, PartialEq)]
pub struct SecureAggregate {
    /// Σ_k w_k·(θ_k − θ) over the contributors (θ the round's global model).
    pub sum: Vec<f64>,
    /// Σ_k w_k.
    pub total_weight: f64,
    /// The clients whose inputs are in the sum, ascending.
    pub contributors: Vec<ClientId>,
    /// Σ n_k over the contributors (what the clients report; not verified).
    pub examples: u64,
    /// Values the clients clipped to the secure aggregation's range (counted, not hidden).
    pub clipped_values: u64,
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Rejection {
    /// The update is for another round than the open one.
    #[error("update for round {got} while round {open} is open")]
    WrongRound {
        /// The open round, or 0 when none is open (before the start, after the end).
        open: u32,
        /// The update's round.
        got: u32,
    },
    /// The sender was not sampled this round.
    #[error("{0} was not sampled this round")]
    NotSampled(ClientId),
    /// The sender already answered this round.
    #[error("{0} already sent an update this round")]
    Duplicate(ClientId),
    /// The update claims no examples.
    #[error("{0} reports 0 examples")]
    NoExamples(ClientId),
    /// The parameters are malformed.
    #[error("{client}: {reason}")]
    Invalid {
        /// The sender.
        client: ClientId,
        /// What is wrong.
        reason: AggregationError,
    },
}

impl Rejection {
    /// A short stable name for counting (`wrong_round`, `not_sampled`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::WrongRound { .. } => "wrong_round",
            Rejection::NotSampled(_) => "not_sampled",
            Rejection::Duplicate(_) => "duplicate",
            Rejection::NoExamples(_) => "no_examples",
            Rejection::Invalid { reason: AggregationError::WrongLength { .. }, .. } => "wrong_length",
            Rejection::Invalid { reason: AggregationError::NonFinite { .. }, .. } => "non_finite",
            Rejection::Invalid { reason: AggregationError::NormTooLarge { .. }, .. } => "norm_too_large",
            Rejection::Invalid { .. } => "invalid",
        }
    }
}

/// Ask `client` to train from `params` in `round`.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The round.
    pub round: u32,
    /// The client.
    pub client: ClientId,
    /// The global model to start from.
    pub params: Arc<Params>,
}

/// How a round ended.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    /// The round.
    pub round: u32,
    /// The global model after the round.
    pub params: Arc<Params>,
    /// Whether θ_r is a new aggregate (false: θ_r = θ_{r−1}, see `not_aggregated_because`).
    pub aggregated: bool,
    /// Why the round was not aggregated, if it was not.
    pub not_aggregated_because: Option<String>,
    /// Clients whose updates were folded in, ascending.
    pub contributors: Vec<ClientId>,
    /// Sampled clients that sent no accepted update, ascending.
    pub missing: Vec<ClientId>,
    /// Σ n_k over the contributors.
    pub examples: u64,
    /// The example-weighted mean of the contributors' training losses.
    pub train_loss: f64,
    /// Updates refused during the round, by kind.
    pub rejected: Vec<(&'static str, u32)>,
    /// When the round closed.
    pub closed_at: Time,
    /// The strategy's server-optimiser state `(m, v)` after the round, for checkpoints;
    /// `None` for strategies without state (FedAvg and the robust rules).
    pub server_state: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    /// The clipping norm the next round will use (differential privacy only; it adapts).
    pub dp_clip_norm: Option<f64>,
}

/// What the driver must do next.
#[derive(Clone, Debug)]
#[must_use]
pub enum Action {
    /// Have a client train (send it the model).
    Train(TrainRequest),
    /// A round closed: evaluate, checkpoint, record it.
    RoundClosed(RoundOutcome),
    /// The last round closed; nothing more will happen.
    Finished,
}

/// The state of the open round.
struct OpenRound {
    round: u32,
    sampled: BTreeSet<ClientId>,
    answered: BTreeSet<ClientId>,
    aggregation: RoundAggregation,
    examples: f64,
    loss_sum: f64,
    deadline: Option<Time>,
    rejected: Vec<(&'static str, u32)>,
}

/// The coordinator of federated rounds (FedAvg server loop of McMahan et al. 2017, Alg. 1).
pub struct Coordinator {
    config: RoundConfig,
    strategy: Strategy,
    global: Arc<Params>,
    next_round: u32,
    open: Option<OpenRound>,
    actions: VecDeque<Action>,
    finished: bool,
}

impl Coordinator {
    /// A coordinator that will run rounds `first_round ..= config.rounds` from `initial`
    /// (θ_{first_round − 1}), aggregating with `strategy`. Use `first_round = 1` for a new
    /// run; a resumed run starts after its checkpoint's round (with the strategy's restored
    /// server state) and reproduces the uninterrupted run.
    pub fn new(
        config: RoundConfig,
        strategy: Strategy,
        initial: Params,
        first_round: u32,
    ) -> Result<Self, ConfigError> {
        let (per_round, num_clients) = (config.clients_per_round, config.num_clients);
        if per_round == 0 || per_round > num_clients {
            return Err(ConfigError::ClientsPerRound { per_round, num_clients });
        }
        if config.min_updates == 0 || config.min_updates > per_round {
            return Err(ConfigError::MinUpdates { min: config.min_updates, per_round });
        }
        let first_round = first_round.max(1);
        if first_round > config.rounds {
            return Err(ConfigError::FirstRound { first: first_round, last: config.rounds });
        }
        Ok(Self {
            config,
            strategy,
            global: Arc::new(initial),
            next_round: first_round,
            open: None,
            actions: VecDeque::new(),
            finished: false,
        })
    }

    /// The global model as of the last closed round.
    pub fn global(&self) -> &Arc<Params> {
        &self.global
    }

    /// The strategy (with its server-optimiser state, to checkpoint).
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// The open round, if any.
    pub fn open_round(&self) -> Option<u32> {
        self.open.as_ref().map(|o| o.round)
    }

    /// Starts the first round. Calling it again does nothing.
    pub fn handle_start(&mut self, now: Time) {
        if self.open.is_none() && !self.finished {
            self.start_round(now);
        }
    }

    /// Hands in `client`'s update for `round`.
    pub fn handle_update(&mut self, now: Time, client: ClientId, round: u32, update: Update) -> Result<(), Rejection> {
        let Some(open) = self.open.as_mut() else {
            return Err(Rejection::WrongRound { open: 0, got: round });
        };
        let result = Self::accept(open, client, round, update);
        if let Err(rejection) = &result {
            let kind = rejection.kind();
            match open.rejected.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => open.rejected.push((kind, 1)),
            }
        } else if open.answered.len() == open.sampled.len() {
            self.close_round(now);
        }
        result
    }

    fn accept(open: &mut OpenRound, client: ClientId, round: u32, update: Update) -> Result<(), Rejection> {
        if round != open.round {
            return Err(Rejection::WrongRound { open: open.round, got: round });
        }
        if !open.sampled.contains(&client) {
            return Err(Rejection::NotSampled(client));
        }
        if open.answered.contains(&client) {
            return Err(Rejection::Duplicate(client));
        }
        if update.num_examples == 0 {
            return Err(Rejection::NoExamples(client));
        }
        let weight = update.num_examples as f64;
        open.aggregation.add(update.params, weight).map_err(|reason| Rejection::Invalid { client, reason })?;
        open.answered.insert(client);
        open.examples += weight;
        if update.train_loss.is_finite() {
            open.loss_sum += weight * update.train_loss;
        }
        Ok(())
    }

    /// Hands in the open round's updates as one securely aggregated sum, instead of one by one.
    /// The round closes with it: the coordinator never sees an individual update.
    pub fn handle_secure_aggregate(
        &mut self,
        now: Time,
        round: u32,
        aggregate: SecureAggregate,
    ) -> Result<(), Rejection> {
        let Some(open) = self.open.as_mut() else {
            return Err(Rejection::WrongRound { open: 0, got: round });
        };
        if round != open.round {
            return Err(Rejection::WrongRound { open: open.round, got: round });
        }
        if let Some(&outsider) = aggregate.contributors.iter().find(|c| !open.sampled.contains(c)) {
            return Err(Rejection::NotSampled(outsider));
        }
        let open = self.open.take().expect("checked above");
        let answered = aggregate.contributors.len();
        let global = self.global.clone();
        let not_aggregated_because = self.conclude(answered, |strategy| {
            strategy.finish_secure_round(open.round, global.values(), &aggregate.sum, aggregate.total_weight, answered)
        });
        let contributors: BTreeSet<ClientId> = aggregate.contributors.iter().copied().collect();
        let mut rejected = open.rejected;
        if aggregate.clipped_values > 0 {
            rejected.push(("secagg_clipped_values", aggregate.clipped_values.min(u64::from(u32::MAX)) as u32));
        }
        self.push_outcome(
            now,
            open.round,
            open.sampled,
            contributors,
            aggregate.examples,
            f64::NAN,
            not_aggregated_because,
            rejected,
        );
        Ok(())
    }

    /// Tells the coordinator that `now` has come; closes the round if its deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(deadline) = self.open.as_ref().and_then(|o| o.deadline) {
            if now >= deadline {
                self.close_round(now);
            }
        }
    }

    /// The next action for the driver, in the order they must be carried out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Coordinator::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.open.as_ref().and_then(|o| o.deadline)
    }

    fn start_round(&mut self, now: Time) {
        let c = &self.config;
        let round = self.next_round;
        let sampled: BTreeSet<ClientId> =
            sample_clients(c.task_seed, round, c.num_clients, c.clients_per_round).into_iter().collect();
        for &client in &sampled {
            self.actions.push_back(Action::Train(TrainRequest { round, client, params: self.global.clone() }));
        }
        self.open = Some(OpenRound {
            round,
            sampled,
            answered: BTreeSet::new(),
            aggregation: self.strategy.begin_round(round, self.global.values()),
            examples: 0.0,
            loss_sum: 0.0,
            deadline: c.round_timeout_ms.map(|ms| now.plus_ms(ms)),
            rejected: Vec::new(),
        });
    }

    fn close_round(&mut self, now: Time) {
        let Some(open) = self.open.take() else { return };
        let examples = open.examples as u64;
        let (round, aggregation) = (open.round, open.aggregation);
        let not_aggregated_because =
            self.conclude(open.answered.len(), |strategy| strategy.finish_round(round, aggregation));
        let train_loss = if examples > 0 { open.loss_sum / examples as f64 } else { f64::NAN };
        self.push_outcome(
            now,
            open.round,
            open.sampled,
            open.answered,
            examples,
            train_loss,
            not_aggregated_because,
            open.rejected,
        );
    }

    /// Makes θ_r from `answered` updates with `finish` if there are enough; returns why not
    /// otherwise (θ_r then stays θ_{r−1}).
    fn conclude(
        &mut self,
        answered: usize,
        finish: impl FnOnce(&mut Strategy) -> Result<Vec<f32>, AggregationError>,
    ) -> Option<String> {
        if answered < self.config.min_updates as usize {
            return Some(format!("{answered} updates arrived, min_updates is {}", self.config.min_updates));
        }
        match finish(&mut self.strategy) {
            Ok(values) => {
                let layout = self.global.layout().clone();
                self.global = Arc::new(Params::new(layout, values).expect("strategies keep the length"));
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Records a closed round and starts the next one (or finishes).
    #[allow(clippy::too_many_arguments)]
    fn push_outcome(
        &mut self,
        now: Time,
        round: u32,
        sampled: BTreeSet<ClientId>,
        answered: BTreeSet<ClientId>,
        examples: u64,
        train_loss: f64,
        not_aggregated_because: Option<String>,
        rejected: Vec<(&'static str, u32)>,
    ) {
        let aggregated = not_aggregated_because.is_none();
        let (m, v) = self.strategy.server_state();
        let server_state = (!m.is_empty()).then(|| Arc::new((m.to_vec(), v.to_vec())));
        self.actions.push_back(Action::RoundClosed(RoundOutcome {
            round,
            params: self.global.clone(),
            aggregated,
            not_aggregated_because,
            contributors: answered.iter().copied().collect(),
            missing: sampled.difference(&answered).copied().collect(),
            examples,
            train_loss,
            rejected,
            closed_at: now,
            server_state,
            dp_clip_norm: self.strategy.dp_clip_norm(),
        }));
        if round >= self.config.rounds {
            self.finished = true;
            self.actions.push_back(Action::Finished);
        } else {
            self.next_round = round + 1;
            self.start_round(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_agg::strategy::{RobustParams, StrategyConfig};
    use dainet_core::{Layout, TensorSpec};

    fn fedavg() -> Strategy {
        Strategy::new(StrategyConfig::named("fedavg", &RobustParams::default()).unwrap(), 1).unwrap()
    }

    fn params(v: &[f32]) -> Params {
        let layout = Layout::new(vec![TensorSpec { name: "w".into(), shape: vec![v.len()] }]).unwrap();
        Params::new(Arc::new(layout), v.to_vec()).unwrap()
    }

    fn config(rounds: u32, timeout: Option<u64>, min_updates: u32) -> RoundConfig {
        RoundConfig {
            task_seed: 1,
            num_clients: 10,
            clients_per_round: 3,
            rounds,
            round_timeout_ms: timeout,
            min_updates,
        }
    }

    impl Coordinator {
        fn new_for_test(config: RoundConfig, initial: Params, first: u32) -> Result<Self, ConfigError> {
            Coordinator::new(config, fedavg(), initial, first)
        }
    }

    fn drain(c: &mut Coordinator) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn update(v: &[f32], n: u64) -> Update {
        Update { params: v.to_vec(), num_examples: n, train_loss: 1.0 }
    }

    fn train_targets(actions: &[Action]) -> Vec<ClientId> {
        actions.iter().filter_map(|a| if let Action::Train(t) = a { Some(t.client) } else { None }).collect()
    }

    #[test]
    fn a_round_closes_on_the_last_update_with_the_weighted_mean() {
        let mut c = Coordinator::new_for_test(config(1, None, 1), params(&[0.0, 0.0]), 1).unwrap();
        c.handle_start(Time(0));
        let clients = train_targets(&drain(&mut c));
        assert_eq!(clients, sample_clients(1, 1, 10, 3));
        c.handle_update(Time(5), clients[0], 1, update(&[1.0, 2.0], 1)).unwrap();
        c.handle_update(Time(6), clients[1], 1, update(&[3.0, 2.0], 1)).unwrap();
        assert!(drain(&mut c).is_empty(), "the round waits for the third client");
        c.handle_update(Time(7), clients[2], 1, update(&[5.0, 8.0], 2)).unwrap();
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!("expected RoundClosed, got {actions:?}") };
        // (1 + 3 + 2·5) / 4 = 3.5; (2 + 2 + 16) / 4 = 5
        assert_eq!(out.params.values(), &[3.5, 5.0]);
        assert_eq!(out.examples, 4);
        assert_eq!(out.closed_at, Time(7));
        assert!(matches!(actions[1], Action::Finished));
    }

    #[test]
    fn bad_updates_are_refused_counted_and_the_round_goes_on() {
        let mut c = Coordinator::new_for_test(config(2, None, 1), params(&[0.0, 0.0]), 1).unwrap();
        c.handle_start(Time(0));
        let clients = train_targets(&drain(&mut c));
        let outsider = (0..10).map(ClientId).find(|k| !clients.contains(k)).unwrap();
        let r = |c: &mut Coordinator, k, round, u| c.handle_update(Time(1), k, round, u).unwrap_err().kind();
        assert_eq!(r(&mut c, clients[0], 1, update(&[f32::NAN, 0.0], 1)), "non_finite");
        assert_eq!(r(&mut c, clients[0], 1, update(&[1.0], 1)), "wrong_length");
        assert_eq!(r(&mut c, clients[0], 2, update(&[1.0, 1.0], 1)), "wrong_round");
        assert_eq!(r(&mut c, outsider, 1, update(&[1.0, 1.0], 1)), "not_sampled");
        assert_eq!(r(&mut c, clients[0], 1, update(&[1.0, 1.0], 0)), "no_examples");
        c.handle_update(Time(1), clients[0], 1, update(&[1.0, 1.0], 1)).unwrap();
        assert_eq!(r(&mut c, clients[0], 1, update(&[1.0, 1.0], 1)), "duplicate");
        for &k in &clients[1..] {
            c.handle_update(Time(2), k, 1, update(&[1.0, 1.0], 1)).unwrap();
        }
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert_eq!(out.contributors.len(), 3);
        assert_eq!(out.params.values(), &[1.0, 1.0]);
        let total: u32 = out.rejected.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 6);
        // Round 2 started at once.
        assert_eq!(train_targets(&actions).len(), 3);
    }

    #[test]
    fn the_deadline_closes_a_round_and_too_few_updates_keep_the_model() {
        let mut c = Coordinator::new_for_test(config(2, Some(100), 2), params(&[7.0]), 1).unwrap();
        c.handle_start(Time(0));
        let clients = train_targets(&drain(&mut c));
        assert_eq!(c.poll_timeout(), Some(Time(100)));
        c.handle_update(Time(10), clients[0], 1, update(&[1.0], 1)).unwrap();
        c.handle_timeout(Time(99));
        assert!(drain(&mut c).is_empty(), "not yet due");
        c.handle_timeout(Time(100));
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert!(!out.aggregated);
        assert_eq!(out.params.values(), &[7.0]);
        assert_eq!(out.missing.len(), 2);
        // Round 2: two of three answer by the deadline, which is enough.
        let clients = train_targets(&actions);
        assert_eq!(c.poll_timeout(), Some(Time(200)));
        c.handle_update(Time(150), clients[0], 2, update(&[1.0], 1)).unwrap();
        c.handle_update(Time(160), clients[1], 2, update(&[3.0], 1)).unwrap();
        c.handle_timeout(Time(200));
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert!(out.aggregated);
        assert_eq!(out.params.values(), &[2.0]);
        assert!(matches!(actions[1], Action::Finished));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn a_round_the_strategy_cannot_combine_keeps_the_model_and_says_why() {
        // Krum with f = 1 needs 2f + 3 = 5 updates; 3 are sampled and all answer.
        let krum = StrategyConfig::named("krum", &RobustParams { f: 1, ..RobustParams::default() }).unwrap();
        let mut c = Coordinator::new(config(1, None, 1), Strategy::new(krum, 1).unwrap(), params(&[7.0]), 1).unwrap();
        c.handle_start(Time(0));
        for k in train_targets(&drain(&mut c)) {
            c.handle_update(Time(1), k, 1, update(&[1.0], 1)).unwrap();
        }
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert!(!out.aggregated);
        assert_eq!(out.params.values(), &[7.0]);
        let why = out.not_aggregated_because.as_deref().unwrap();
        assert!(why.contains("2f + 3") && why.contains("got 3"), "{why}");
    }

    #[test]
    fn changes_beyond_the_norm_bound_are_refused_and_counted() {
        let mut bounded = StrategyConfig::named("fedavg", &RobustParams::default()).unwrap();
        bounded.max_update_norm = Some(1.0);
        let strategy = Strategy::new(bounded, 1).unwrap();
        let mut c = Coordinator::new(config(1, Some(100), 1), strategy, params(&[0.0, 0.0]), 1).unwrap();
        c.handle_start(Time(0));
        let clients = train_targets(&drain(&mut c));
        let e = c.handle_update(Time(1), clients[0], 1, update(&[3.0, 4.0], 1)).unwrap_err();
        assert_eq!(e.kind(), "norm_too_large");
        for &k in &clients[1..] {
            c.handle_update(Time(1), k, 1, update(&[0.5, 0.0], 1)).unwrap();
        }
        // A refused update is no answer: the round waits for a valid one until its deadline.
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(Time(100));
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert_eq!(out.params.values(), &[0.5, 0.0]);
        assert_eq!(out.contributors.len(), 2);
        assert_eq!(out.rejected, vec![("norm_too_large", 1)]);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = |cfg: RoundConfig, first| Coordinator::new(cfg, fedavg(), params(&[0.0]), first).err();
        let mut cfg = config(3, None, 1);
        cfg.clients_per_round = 11;
        assert_eq!(bad(cfg, 1), Some(ConfigError::ClientsPerRound { per_round: 11, num_clients: 10 }));
        assert_eq!(bad(config(3, None, 4), 1), Some(ConfigError::MinUpdates { min: 4, per_round: 3 }));
        assert_eq!(bad(config(3, None, 1), 4), Some(ConfigError::FirstRound { first: 4, last: 3 }));
    }

    #[test]
    fn a_resumed_coordinator_samples_what_the_original_would_have() {
        let mut full = Coordinator::new_for_test(config(3, None, 1), params(&[0.0]), 1).unwrap();
        full.handle_start(Time(0));
        for round in 1..=2 {
            for k in train_targets(&drain(&mut full)) {
                full.handle_update(Time(0), k, round, update(&[1.0], 1)).unwrap();
            }
        }
        let want = train_targets(&drain(&mut full));
        let mut resumed = Coordinator::new_for_test(config(3, None, 1), params(&[1.0]), 3).unwrap();
        resumed.handle_start(Time(0));
        assert_eq!(train_targets(&drain(&mut resumed)), want);
    }
}
