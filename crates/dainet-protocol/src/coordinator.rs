//! The federated round, coordinator side, as a sans-IO state machine.
//!
//! # Protocol
//! For each round r = first_round ..= rounds:
//! 1. Sample `S_r` with [`sample_clients`] and send each client, in ascending order, a
//!    [`TrainRequest`] carrying the global model θ_{r−1} ([`Action::Send`]).
//! 2. *Plain rounds.* Accept at most one [`Update`] from each client of `S_r` for round r
//!    ([`Action::Accepted`]). An update of the wrong length, with NaN or Inf, with no examples,
//!    from a client not sampled, for another round, a duplicate, or a change longer than the
//!    strategy's norm bound is refused with a [`Rejection`] ([`Action::Rejected`], counted;
//!    the round goes on). The round closes when every sampled client has answered, or at
//!    the deadline (`now + round_timeout`) if one is set.
//!
//!    *Secure rounds* ([`RoundConfig::secure`]). Clients answer [`ToCoordinator::Ready`]
//!    once trained. When every sampled client is ready, or at the deadline, the coordinator
//!    opens a SecAgg+ session among the ready ones ([`ToTrainer::SecureSession`]) and runs
//!    its server: the four stages' messages are [`Action::Send`]s, their deadlines are in
//!    [`Coordinator::poll_timeout`], and the round closes with the unmasked sum (or, if the
//!    session fails, unaggregated with the reason). The coordinator never holds a single
//!    client's update. The session's parameters follow [`SecureConfig::session`].
//! 3. If at least `min_updates` contributed, θ_r is what the [`Strategy`] makes of them
//!    (FedAvg, a robust rule, a server optimiser); otherwise, or if the strategy cannot
//!    combine them (Bulyan with too few), θ_r = θ_{r−1} and the outcome says why
//!    ([`NotAggregated`]).
//! 4. Under differential privacy with accounting, compose the round's privacy loss
//!    ([`PrivacySpent`] in the outcome).
//! 5. Emit [`Action::RoundClosed`]. Then emit [`Action::Finished`] after the last round, or
//!    if the next round would exceed the privacy budget (the outcome says which); otherwise
//!    start round r + 1 at the same logical time.
//!
//! # Driving it
//! Call [`Coordinator::handle_start`] once, then loop: drain [`Coordinator::poll_action`]
//! until it returns `None` and carry the actions out **in order** — a round's
//! [`Action::RoundClosed`] (checkpoint it, record it) comes before the next round's requests,
//! and a driver that persists must finish persisting it before it sends them. Feed back what
//! arrives with [`Coordinator::handle_message`] and, when [`Coordinator::poll_timeout`] is
//! due, [`Coordinator::handle_timeout`].
//!
//! Updates are folded in the order they are handed in; a driver that wants identical bits on
//! every run hands them in a deterministic order (the simulator orders by arrival time, then
//! by sending order).

use crate::config::{ConfigError, RoundConfig, SecureConfig};
use crate::message::{SecureUpload, ToCoordinator, ToTrainer, TrainRequest, Update, Upload};
use crate::privacy::{PrivacyAccount, PrivacySpent};
use crate::record::{masked_input_digest, update_digest, LedgerRecord};
use crate::sampling::sample_clients;
use crate::secure::party_seed;
use crate::wire::{self, WireError, WireLimits};
use crate::{ClientId, Time};
use dainet_agg::robust::squared_distance;
use dainet_agg::strategy::{RoundAggregation, Strategy};
use dainet_agg::AggregationError;
use dainet_core::Params;
use dainet_privacy::secagg::{ClientMessage, ParticipantId, SecAggError, SecAggServer, UnmaskedSum};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Why a message was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Rejection {
    /// The message is for another round than the open one.
    #[error("message for round {got} while round {open} is open")]
    WrongRound {
        /// The open round, or 0 when none is open (before the start, after the end).
        open: u32,
        /// The message's round.
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
    /// A message this round does not expect now (a plain update in a secure round, a
    /// session message before the session).
    #[error("{client}: unexpected {what}")]
    Unexpected {
        /// The sender.
        client: ClientId,
        /// What it sent.
        what: &'static str,
    },
    /// The secure-aggregation session refused the message.
    #[error("{client}: secure aggregation: {reason}")]
    SecAgg {
        /// The sender.
        client: ClientId,
        /// Why.
        reason: SecAggError,
    },
    /// The bytes that arrived are not a message ([`Coordinator::handle_frame`]): an unknown
    /// version, a frame cut short or over the size limit, a length field that runs past the
    /// end, a value out of range.
    #[error("{client}: undecodable message: {reason}")]
    Frame {
        /// The sender.
        client: ClientId,
        /// Why.
        reason: WireError,
    },
}

impl Rejection {
    /// A short stable name for counting (`wrong_round`, `not_sampled`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            // A message for a round that already closed: late, not malformed.
            Rejection::WrongRound { open, got } if *open > 0 && got < open => "late",
            Rejection::WrongRound { .. } => "wrong_round",
            Rejection::NotSampled(_) => "not_sampled",
            Rejection::Duplicate(_) => "duplicate",
            Rejection::NoExamples(_) => "no_examples",
            Rejection::Invalid { reason: AggregationError::WrongLength { .. }, .. } => "wrong_length",
            Rejection::Invalid { reason: AggregationError::NonFinite { .. }, .. } => "non_finite",
            Rejection::Invalid { reason: AggregationError::NormTooLarge { .. }, .. } => "norm_too_large",
            Rejection::Invalid { .. } => "invalid",
            Rejection::Unexpected { .. } => "unexpected",
            Rejection::SecAgg { .. } => "secagg",
            Rejection::Frame { reason, .. } => reason.kind(),
        }
    }
}

/// Why a round kept the previous model.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAggregated {
    /// Fewer contributions than `min_updates`.
    #[error("{arrived} updates arrived, min_updates is {min}")]
    TooFewUpdates {
        /// Contributions.
        arrived: usize,
        /// The minimum.
        min: u32,
    },
    /// The strategy could not combine them.
    #[error("{0}")]
    Strategy(AggregationError),
    /// Secure aggregation did not produce a sum.
    #[error("secure aggregation failed: {0}")]
    SecureAggregation(String),
}

/// An update the coordinator accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The round.
    pub round: u32,
    /// The sender.
    pub client: ClientId,
    /// Examples it reports (its weight).
    pub examples: u64,
}

/// How a round ended.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    /// The round.
    pub round: u32,
    /// The global model after the round.
    pub params: Arc<Params>,
    /// Why θ_r = θ_{r−1}, if the round did not aggregate.
    pub not_aggregated: Option<NotAggregated>,
    /// Clients whose updates were folded in, ascending.
    pub contributors: Vec<ClientId>,
    /// Sampled clients that sent no accepted update, ascending.
    pub missing: Vec<ClientId>,
    /// Σ n_k over the contributors; `None` when the coordinator cannot know it (secure
    /// aggregation with differential privacy: every weight is 1 and no count is revealed).
    pub examples: Option<u64>,
    /// The example-weighted mean of the contributors' training losses (NaN under secure
    /// aggregation: the losses are not revealed).
    pub train_loss: f64,
    /// Messages refused during the round, by kind.
    pub rejected: Vec<(&'static str, u32)>,
    /// Input values the clients clipped to the secure aggregation's range (counted, not
    /// refused: the inputs were used).
    pub clipped_values: u64,
    /// When the round closed.
    pub closed_at: Time,
    /// The strategy's server-optimiser state `(m, v)` after the round, for checkpoints;
    /// `None` for strategies without state (FedAvg and the robust rules).
    pub server_state: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    /// The clipping norm the next round will use (differential privacy only; it adapts).
    pub dp_clip_norm: Option<f64>,
    /// The privacy spent so far and in this round (with privacy accounting).
    pub privacy: Option<PrivacySpent>,
    /// Why the run ends with this round, if it does (an [`Action::Finished`] follows).
    pub finish: Option<Finish>,
}

impl RoundOutcome {
    /// Whether θ_r is a new aggregate.
    pub fn aggregated(&self) -> bool {
        self.not_aggregated.is_none()
    }
}

/// Why the coordinator finished.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Finish {
    /// The last round closed.
    LastRound,
    /// The next round would take ε past the budget, so it was not opened.
    PrivacyBudget {
        /// The budget.
        budget: f64,
        /// ε after the next round.
        would_reach: f64,
    },
    /// Privacy accounting failed (the run stops rather than run unaccounted).
    Accounting(String),
}

/// What the driver must do next.
#[derive(Clone, Debug)]
#[must_use]
pub enum Action {
    /// Deliver `message` to trainer `to`.
    Send {
        /// The recipient.
        to: ClientId,
        /// The message.
        message: ToTrainer,
    },
    /// Submit this to the ledger, before carrying out the actions that follow (only from a
    /// [`Coordinator::recording`] coordinator; see [`crate::record`]).
    Record(LedgerRecord),
    /// An update was accepted into the open round.
    Accepted(Accepted),
    /// A message was refused (also returned by [`Coordinator::handle_message`]).
    Rejected {
        /// The sender.
        from: ClientId,
        /// Why.
        reason: Rejection,
    },
    /// A round closed: evaluate, checkpoint, record it — before the actions that follow.
    RoundClosed(RoundOutcome),
    /// Nothing more will happen.
    Finished(Finish),
}

/// The secure-aggregation side of an open round.
enum SecurePhase {
    /// Trainers are training; these said they are ready to mask.
    Training { ready: BTreeSet<ClientId> },
    /// The SecAgg+ session runs among the ready trainers.
    Session { server: Box<SecAggServer>, participants: BTreeSet<ClientId> },
}

/// The state of the open round.
struct OpenRound {
    round: u32,
    sampled: BTreeSet<ClientId>,
    answered: BTreeSet<ClientId>,
    /// Plain rounds: the updates folded in so far.
    aggregation: Option<RoundAggregation>,
    secure: Option<SecurePhase>,
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
    privacy: Option<PrivacyAccount>,
    recording: bool,
}

impl Coordinator {
    /// A coordinator that will run rounds `first_round ..= config.rounds` from `initial`
    /// (θ_{first_round − 1}), aggregating with `strategy`. Use `first_round = 1` for a new
    /// run; a resumed run starts after its checkpoint's round (with the strategy's restored
    /// server state) and reproduces the uninterrupted run, privacy accounting included.
    /// Refuses any configuration [`RoundConfig::validate`] refuses.
    pub fn new(
        config: RoundConfig,
        strategy: Strategy,
        initial: Params,
        first_round: u32,
    ) -> Result<Self, ConfigError> {
        config.validate(strategy.config(), first_round)?;
        let first_round = first_round.max(1);
        let privacy = match (&config.privacy, &strategy.config().dp) {
            (Some(privacy), Some(dp)) => Some(PrivacyAccount::new(privacy, dp, config.num_clients, first_round)?),
            _ => None,
        };
        Ok(Self {
            config,
            strategy,
            global: Arc::new(initial),
            next_round: first_round,
            open: None,
            actions: VecDeque::new(),
            finished: false,
            privacy,
            recording: false,
        })
    }

    /// Emits the [`Action::Record`]s that put the run on the ledger (see [`crate::record`]).
    /// Off by default: committing costs a hash and a norm per update.
    pub fn recording(mut self) -> Self {
        self.recording = true;
        self
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

    /// Hands in a message from trainer `from`. A refused message changes nothing but the
    /// round's count of refusals (and an [`Action::Rejected`]); the round goes on.
    pub fn handle_message(&mut self, now: Time, from: ClientId, message: ToCoordinator) -> Result<(), Rejection> {
        let result = self.dispatch(now, from, message);
        if let Err(rejection) = &result {
            self.count_rejection(from, rejection);
        }
        result
    }

    /// Counts `rejection` in the open round (if any) and reports it.
    fn count_rejection(&mut self, from: ClientId, rejection: &Rejection) {
        if let Some(open) = self.open.as_mut() {
            let kind = rejection.kind();
            match open.rejected.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => open.rejected.push((kind, 1)),
            }
        }
        self.actions.push_back(Action::Rejected { from, reason: rejection.clone() });
    }

    /// Hands in the bytes of a message from `from` ([`crate::wire`]): decoded within the
    /// limits of this federation's model and clients, then handled as
    /// [`Coordinator::handle_message`] handles it. Bytes that are no message are refused with
    /// [`Rejection::Frame`] and counted in the open round like any refusal; the round goes on.
    pub fn handle_frame(&mut self, now: Time, from: ClientId, bytes: &[u8]) -> Result<(), Rejection> {
        let limits = self.wire_limits();
        match wire::decode_to_coordinator(bytes, limits) {
            Ok(message) => self.handle_message(now, from, message),
            Err(reason) => {
                let rejection = Rejection::Frame { client: from, reason };
                self.count_rejection(from, &rejection);
                Err(rejection)
            }
        }
    }

    /// The frame sizes this coordinator's messages and its trainers' answers stay within.
    pub fn wire_limits(&self) -> WireLimits {
        WireLimits::for_round(self.global.values().len(), self.config.num_clients as usize)
    }

    /// Hands in `client`'s plain update for `round` ([`ToCoordinator::Update`]).
    pub fn handle_update(&mut self, now: Time, client: ClientId, round: u32, update: Update) -> Result<(), Rejection> {
        self.handle_message(now, client, ToCoordinator::Update { round, update })
    }

    fn dispatch(&mut self, now: Time, from: ClientId, message: ToCoordinator) -> Result<(), Rejection> {
        let Some(open) = self.open.as_mut() else {
            return Err(Rejection::WrongRound { open: 0, got: message.round() });
        };
        if message.round() != open.round {
            return Err(Rejection::WrongRound { open: open.round, got: message.round() });
        }
        if !open.sampled.contains(&from) {
            return Err(Rejection::NotSampled(from));
        }
        match message {
            ToCoordinator::Update { update, .. } => {
                let Some(aggregation) = open.aggregation.as_mut() else {
                    return Err(Rejection::Unexpected { client: from, what: "plain update in a secure round" });
                };
                if open.answered.contains(&from) {
                    return Err(Rejection::Duplicate(from));
                }
                if update.num_examples == 0 {
                    return Err(Rejection::NoExamples(from));
                }
                let weight = update.num_examples as f64;
                // Under differential privacy neither the raw norm nor the example count of one
                // client goes on the shared record (0: not recorded).
                let dp = self.strategy.config().dp.is_some();
                let commitment = self.recording.then(|| {
                    let norm = if dp { 0.0 } else { squared_distance(&update.params, self.global.values()).sqrt() };
                    (update_digest(&update.params), norm, if dp { 0 } else { update.num_examples })
                });
                aggregation.add(update.params, weight).map_err(|reason| Rejection::Invalid { client: from, reason })?;
                if let Some((hash, norm, examples)) = commitment {
                    let round = open.round;
                    let record = LedgerRecord::Update { round, client: from, hash, examples, norm };
                    self.actions.push_back(Action::Record(record));
                }
                open.answered.insert(from);
                open.examples += weight;
                if update.train_loss.is_finite() {
                    open.loss_sum += weight * update.train_loss;
                }
                let accepted = Accepted { round: open.round, client: from, examples: update.num_examples };
                self.actions.push_back(Action::Accepted(accepted));
                if open.answered.len() == open.sampled.len() {
                    self.close_round(now);
                }
                Ok(())
            }
            ToCoordinator::Ready { .. } => match &mut open.secure {
                Some(SecurePhase::Training { ready }) => {
                    if !ready.insert(from) {
                        return Err(Rejection::Duplicate(from));
                    }
                    if ready.len() == open.sampled.len() {
                        self.open_session(now);
                    }
                    Ok(())
                }
                Some(SecurePhase::Session { .. }) => {
                    Err(Rejection::Unexpected { client: from, what: "readiness after the session opened" })
                }
                None => Err(Rejection::Unexpected { client: from, what: "readiness in a plain round" }),
            },
            ToCoordinator::SecAgg { message, .. } => match &mut open.secure {
                Some(SecurePhase::Session { server, participants }) => {
                    if !participants.contains(&from) {
                        return Err(Rejection::Unexpected { client: from, what: "session message from outside it" });
                    }
                    let commitment = match &message {
                        ClientMessage::MaskedInput { input, .. } if self.recording => {
                            Some(masked_input_digest(input.words()))
                        }
                        _ => None,
                    };
                    server
                        .handle_message(now, ParticipantId(from.0), message)
                        .map_err(|reason| Rejection::SecAgg { client: from, reason })?;
                    if let Some(hash) = commitment {
                        // The coordinator knows neither the input's examples nor its norm.
                        let record =
                            LedgerRecord::Update { round: open.round, client: from, hash, examples: 0, norm: 0.0 };
                        self.actions.push_back(Action::Record(record));
                    }
                    self.pump_session(now);
                    Ok(())
                }
                _ => Err(Rejection::Unexpected { client: from, what: "session message before the session" }),
            },
        }
    }

    /// Tells the coordinator that `now` has come: a SecAgg+ stage or the round's deadline
    /// may have passed.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some(open) = self.open.as_mut() else { return };
        if let Some(SecurePhase::Session { server, .. }) = &mut open.secure {
            server.handle_timeout(now);
            self.pump_session(now);
            return;
        }
        if open.deadline.is_some_and(|deadline| now >= deadline) {
            match open.secure {
                Some(SecurePhase::Training { .. }) => self.open_session(now),
                _ => self.close_round(now),
            }
        }
    }

    /// The next action for the driver, in the order they must be carried out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Coordinator::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        let open = self.open.as_ref()?;
        match &open.secure {
            Some(SecurePhase::Session { server, .. }) => server.poll_timeout(),
            _ => open.deadline,
        }
    }

    fn start_round(&mut self, now: Time) {
        let c = &self.config;
        let round = self.next_round;
        let sampled: BTreeSet<ClientId> =
            sample_clients(c.task_seed, round, c.num_clients, c.clients_per_round).into_iter().collect();
        let upload = match &c.secure {
            None => Upload::Plain,
            Some(secure) => Upload::Secure(Arc::new(SecureUpload {
                dp: self.strategy.config().dp.clone().map(|dp| {
                    let norm = dp.initial_norm();
                    (dp, norm)
                }),
                max_weight: secure.max_weight,
            })),
        };
        if self.recording {
            let participants = sampled.iter().copied().collect();
            self.actions.push_back(Action::Record(LedgerRecord::OpenRound { round, participants }));
        }
        for &client in &sampled {
            let request = TrainRequest { round, client, params: self.global.clone(), upload: upload.clone() };
            self.actions.push_back(Action::Send { to: client, message: ToTrainer::Train(request) });
        }
        let secure = c.secure.is_some();
        self.open = Some(OpenRound {
            round,
            sampled,
            answered: BTreeSet::new(),
            aggregation: (!secure).then(|| self.strategy.begin_round(round, self.global.values())),
            secure: secure.then(|| SecurePhase::Training { ready: BTreeSet::new() }),
            examples: 0.0,
            loss_sum: 0.0,
            deadline: c.round_timeout_ms.map(|ms| now.plus_ms(ms)),
            rejected: Vec::new(),
        });
    }

    /// Opens the open round's SecAgg+ session among the trainers that are ready.
    fn open_session(&mut self, now: Time) {
        let Some(open) = self.open.as_mut() else { return };
        let Some(SecurePhase::Training { ready }) = &mut open.secure else { return };
        let participants = std::mem::take(ready);
        let secure: &SecureConfig = self.config.secure.as_ref().expect("secure rounds have secure settings");
        let round = open.round;
        if participants.len() < 2 {
            let why =
                format!("{} of the sampled clients were ready to mask; a session needs at least 2", participants.len());
            return self.close_unaggregated(now, NotAggregated::SecureAggregation(why));
        }
        let config = secure.session(participants.len(), self.global.len(), self.strategy.config().dp.is_some());
        let ids = participants.iter().map(|c| ParticipantId(c.0)).collect();
        let seed = party_seed(self.config.task_seed, round, u64::MAX);
        let mut server = match SecAggServer::new(config.clone(), ids, round, seed) {
            Ok(server) => Box::new(server),
            Err(e) => return self.close_unaggregated(now, NotAggregated::SecureAggregation(e.to_string())),
        };
        let config = Arc::new(config);
        for &to in &participants {
            self.actions
                .push_back(Action::Send { to, message: ToTrainer::SecureSession { round, config: config.clone() } });
        }
        server.handle_start(now);
        open.secure = Some(SecurePhase::Session { server, participants });
        self.pump_session(now);
    }

    /// Sends what the session's server has to send, and closes the round on its result.
    fn pump_session(&mut self, now: Time) {
        let Some(open) = self.open.as_mut() else { return };
        let round = open.round;
        let Some(SecurePhase::Session { server, .. }) = &mut open.secure else { return };
        while let Some((to, message)) = server.poll_message() {
            self.actions.push_back(Action::Send { to: ClientId(to.0), message: ToTrainer::SecAgg { round, message } });
        }
        match server.poll_result() {
            None => {}
            Some(Ok(sum)) => self.close_secure_round(now, sum),
            Some(Err(e)) => self.close_unaggregated(now, NotAggregated::SecureAggregation(e.to_string())),
        }
    }

    fn close_secure_round(&mut self, now: Time, sum: UnmaskedSum) {
        let Some(open) = self.open.take() else { return };
        let contributors: BTreeSet<ClientId> = sum.contributors().iter().map(|p| ClientId(p.0)).collect();
        let total_weight = sum.total_weight() as f64;
        let answered = contributors.len();
        let dp = self.strategy.config().dp.is_some();
        let global = self.global.clone();
        let not_aggregated = match sum.weighted_mean_f64() {
            Some(mean) => {
                let sum: Vec<f64> = mean.iter().map(|m| m * total_weight).collect();
                self.conclude(answered, |strategy| {
                    strategy.finish_secure_round(open.round, global.values(), &sum, total_weight, answered)
                })
            }
            None => Some(NotAggregated::SecureAggregation("no weight in the sum".into())),
        };
        let outcome = Closed {
            sampled: open.sampled,
            answered: contributors,
            // With DP the weights are 1: the sum reveals no example count.
            examples: (!dp).then_some(sum.total_weight()),
            train_loss: f64::NAN,
            not_aggregated,
            rejected: open.rejected,
            clipped_values: sum.clipped(),
        };
        self.push_outcome(now, open.round, outcome);
    }

    fn close_unaggregated(&mut self, now: Time, why: NotAggregated) {
        let Some(open) = self.open.take() else { return };
        let outcome = Closed {
            sampled: open.sampled,
            answered: BTreeSet::new(),
            examples: Some(0),
            train_loss: f64::NAN,
            not_aggregated: Some(why),
            rejected: open.rejected,
            clipped_values: 0,
        };
        self.push_outcome(now, open.round, outcome);
    }

    fn close_round(&mut self, now: Time) {
        let Some(open) = self.open.take() else { return };
        let Some(aggregation) = open.aggregation else {
            // A secure round closes through its session.
            self.open = Some(open);
            return;
        };
        let examples = open.examples as u64;
        let round = open.round;
        let not_aggregated = self.conclude(open.answered.len(), |strategy| strategy.finish_round(round, aggregation));
        let train_loss = if examples > 0 { open.loss_sum / examples as f64 } else { f64::NAN };
        let outcome = Closed {
            sampled: open.sampled,
            answered: open.answered,
            examples: Some(examples),
            train_loss,
            not_aggregated,
            rejected: open.rejected,
            clipped_values: 0,
        };
        self.push_outcome(now, round, outcome);
    }

    /// Makes θ_r from `answered` updates with `finish` if there are enough; returns why not
    /// otherwise (θ_r then stays θ_{r−1}).
    fn conclude(
        &mut self,
        answered: usize,
        finish: impl FnOnce(&mut Strategy) -> Result<Vec<f32>, AggregationError>,
    ) -> Option<NotAggregated> {
        if answered < self.config.min_updates as usize {
            return Some(NotAggregated::TooFewUpdates { arrived: answered, min: self.config.min_updates });
        }
        let layout = self.global.layout().clone();
        let expected = layout.len();
        let made = finish(&mut self.strategy).and_then(|values| {
            let got = values.len();
            Params::new(layout, values).map_err(|_| AggregationError::WrongLength { expected, got })
        });
        match made {
            Ok(params) => {
                self.global = Arc::new(params);
                None
            }
            Err(e) => Some(NotAggregated::Strategy(e)),
        }
    }

    /// Records a closed round and starts the next one (or finishes).
    fn push_outcome(&mut self, now: Time, round: u32, closed: Closed) {
        let (m, v) = self.strategy.server_state();
        let server_state = (!m.is_empty()).then(|| Arc::new((m.to_vec(), v.to_vec())));
        let mut finish = None;
        // Only a round that moved the model released anything; its noise is what the trainers
        // whose inputs it holds added (distributed) or the coordinator's (central).
        let released = closed.not_aggregated.is_none();
        let privacy = match self.privacy.as_mut().map(|account| account.compose_round(released, closed.answered.len()))
        {
            Some(Ok(spent)) => Some(spent),
            Some(Err(e)) => {
                finish = Some(Finish::Accounting(e.to_string()));
                None
            }
            None => None,
        };
        if finish.is_none() && round >= self.config.rounds {
            finish = Some(Finish::LastRound);
        }
        if finish.is_none() {
            if let Some(account) = &self.privacy {
                finish = match account.next_round_exceeds_budget() {
                    Ok(Some(would_reach)) => {
                        Some(Finish::PrivacyBudget { budget: account.budget().unwrap_or(f64::INFINITY), would_reach })
                    }
                    Ok(None) => None,
                    Err(e) => Some(Finish::Accounting(e.to_string())),
                };
            }
        }
        let contributors: Vec<ClientId> = closed.answered.iter().copied().collect();
        if self.recording {
            if closed.not_aggregated.is_none() && !contributors.is_empty() {
                let params = self.global.clone();
                let record = LedgerRecord::Aggregate { round, params, contributors: contributors.clone() };
                self.actions.push_back(Action::Record(record));
            }
            if let Some(spent) = &privacy {
                let record = LedgerRecord::PrivacySpend { round, epsilon: spent.epsilon_round, delta: spent.delta };
                self.actions.push_back(Action::Record(record));
            }
        }
        self.actions.push_back(Action::RoundClosed(RoundOutcome {
            round,
            params: self.global.clone(),
            not_aggregated: closed.not_aggregated,
            contributors,
            missing: closed.sampled.difference(&closed.answered).copied().collect(),
            examples: closed.examples,
            train_loss: closed.train_loss,
            rejected: closed.rejected,
            clipped_values: closed.clipped_values,
            closed_at: now,
            server_state,
            dp_clip_norm: self.strategy.dp_clip_norm(),
            privacy,
            finish: finish.clone(),
        }));
        match finish {
            Some(finish) => {
                self.finished = true;
                self.actions.push_back(Action::Finished(finish));
            }
            None => {
                self.next_round = round + 1;
                self.start_round(now);
            }
        }
    }
}

/// A closed round's facts, before the coordinator adds its own.
struct Closed {
    sampled: BTreeSet<ClientId>,
    answered: BTreeSet<ClientId>,
    examples: Option<u64>,
    train_loss: f64,
    not_aggregated: Option<NotAggregated>,
    rejected: Vec<(&'static str, u32)>,
    clipped_values: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrivacyConfig;
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
            secure: None,
            privacy: None,
        }
    }

    impl Coordinator {
        fn new_for_test(config: RoundConfig, initial: Params, first: u32) -> Result<Self, ConfigError> {
            Coordinator::new(config, fedavg(), initial, first)
        }
    }

    /// The actions, without the accept and reject events.
    fn drain(c: &mut Coordinator) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action())
            .filter(|a| !matches!(a, Action::Accepted(_) | Action::Rejected { .. }))
            .collect()
    }

    fn update(v: &[f32], n: u64) -> Update {
        Update { params: v.to_vec(), num_examples: n, train_loss: 1.0 }
    }

    fn train_targets(actions: &[Action]) -> Vec<ClientId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { message: ToTrainer::Train(t), .. } => Some(t.client),
                _ => None,
            })
            .collect()
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
        assert_eq!(out.examples, Some(4));
        assert_eq!(out.closed_at, Time(7));
        assert!(matches!(actions[1], Action::Finished(Finish::LastRound)));
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
        assert_eq!(r(&mut c, clients[0], 0, update(&[1.0, 1.0], 1)), "late", "for a round already closed");
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
        assert_eq!(total, 7);
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
        assert!(!out.aggregated());
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
        assert!(out.aggregated());
        assert_eq!(out.params.values(), &[2.0]);
        assert!(matches!(actions[1], Action::Finished(Finish::LastRound)));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn a_round_the_strategy_cannot_combine_keeps_the_model_and_says_why() {
        // Krum with f = 1 needs 2f + 3 = 5 updates; 5 are sampled, 3 answer by the deadline.
        let krum = StrategyConfig::named("krum", &RobustParams { f: 1, ..RobustParams::default() }).unwrap();
        let cfg = RoundConfig { clients_per_round: 5, ..config(1, Some(100), 1) };
        let mut c = Coordinator::new(cfg, Strategy::new(krum, 1).unwrap(), params(&[7.0]), 1).unwrap();
        c.handle_start(Time(0));
        for k in train_targets(&drain(&mut c)).into_iter().take(3) {
            c.handle_update(Time(1), k, 1, update(&[1.0], 1)).unwrap();
        }
        c.handle_timeout(Time(100));
        let actions = drain(&mut c);
        let Action::RoundClosed(out) = &actions[0] else { panic!() };
        assert!(!out.aggregated());
        assert_eq!(out.params.values(), &[7.0]);
        let why = out.not_aggregated.as_ref().unwrap().to_string();
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
        assert_eq!(bad(config(3, None, 0), 1), Some(ConfigError::NoMinUpdates));
        assert_eq!(bad(config(3, None, 1), 4), Some(ConfigError::FirstRound { first: 4, last: 3 }));
        let krum = StrategyConfig::named("krum", &RobustParams { f: 1, ..RobustParams::default() }).unwrap();
        let krum = Coordinator::new(config(3, None, 1), Strategy::new(krum, 1).unwrap(), params(&[0.0]), 1);
        assert!(matches!(krum.err(), Some(ConfigError::StrategyMinimum { needs: 5, per_round: 3, .. })));
        let mut secure = config(3, Some(100), 1);
        secure.secure = Some(SecureConfig::new(3, None, None, 1.0, 1 << 16, 100));
        let median = StrategyConfig::named("median", &RobustParams::default()).unwrap();
        let refused = Coordinator::new(secure.clone(), Strategy::new(median, 1).unwrap(), params(&[0.0]), 1);
        assert!(matches!(refused.err(), Some(ConfigError::SecureNeedsMean(_))));
        secure.secure = Some(SecureConfig::new(3, None, None, 1.0, 1 << 16, 1 << 20));
        assert!(matches!(bad(secure, 1), Some(ConfigError::Secure(_))), "n · max_weight · (q − 1) overflows");
        let mut no_deadline = config(3, None, 1);
        no_deadline.secure = Some(SecureConfig::new(3, None, None, 1.0, 1 << 16, 100));
        assert_eq!(bad(no_deadline.clone(), 1), Some(ConfigError::SecureNeedsDeadline));
        no_deadline.round_timeout_ms = Some(100);
        no_deadline.secure = Some(SecureConfig::new(3, Some(3), Some(4), 1.0, 1 << 16, 100));
        assert!(matches!(bad(no_deadline, 1), Some(ConfigError::Secure(why)) if why.contains("threshold 4")));
        let mut no_dp = config(3, None, 1);
        no_dp.privacy = Some(PrivacyConfig { delta: 1e-5, budget: None });
        assert_eq!(bad(no_dp, 1), Some(ConfigError::PrivacyWithoutDp));
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
