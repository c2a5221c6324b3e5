//! The federated round, trainer side, as a sans-IO state machine.
//!
//! A trainer holds local data the coordinator never sees. Per round:
//! 1. It receives a [`TrainRequest`] and emits [`TrainerAction::Train`]: its host trains on
//!    the local data (in `dainet-ml`, or any framework) and hands the result back with
//!    [`Trainer::handle_trained`].
//! 2. *Plain upload*: it sends the [`Update`] ([`ToCoordinator::Update`]).
//!
//!    *Secure upload*: it computes its change Δ = θ_k − θ, and under differential privacy
//!    clips Δ — and with distributed noise adds its share of it; with central noise the
//!    coordinator adds the noise to the sum — (its weight is then 1, otherwise its example
//!    count, clamped to the session's maximum). It says
//!    [`ToCoordinator::Ready`], and when the coordinator opens the session
//!    ([`ToTrainer::SecureSession`]) runs the SecAgg+ client stages: it sends its masked
//!    input and the shares that unmask the sum, never Δ itself.
//!
//! A request for a later round replaces whatever the trainer was doing for an earlier one; a
//! request for an earlier round than the one under way (a late, reordered message) is refused.
//! Messages for another round or stage are refused with a [`TrainerError`] and change nothing.
//!
//! Faults for evaluation: [`Trainer::set_silent_after_masking`] makes the trainer stop
//! answering once it has sent its masked input (the dropout SecAgg+ must survive).

use crate::message::{ToCoordinator, ToTrainer, TrainRequest, Update, Upload};
use crate::secure::party_seed;
use crate::{ClientId, Time};
use dainet_agg::dp::privatize_change;
use dainet_privacy::secagg::{ClientMessage, ParticipantId, SecAggClient, SecAggError};
use std::collections::VecDeque;

/// What the trainer's host must do next.
#[derive(Clone, Debug)]
#[must_use]
pub enum TrainerAction {
    /// Train on the local data from `request.params`, then call [`Trainer::handle_trained`].
    Train(TrainRequest),
    /// Send this to the coordinator.
    Send(ToCoordinator),
}

/// Why the trainer refused a message or a result.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum TrainerError {
    /// A request addressed to another trainer.
    #[error("a request for {to} reached {me}")]
    NotMine {
        /// The addressee.
        to: ClientId,
        /// This trainer.
        me: ClientId,
    },
    /// A request for an earlier round than the one under way.
    #[error("a request for round {got} while round {current} is under way")]
    Stale {
        /// The request's round.
        got: u32,
        /// The round under way.
        current: u32,
    },
    /// Nothing of this round is under way here.
    #[error("nothing of round {0} is under way")]
    NoSuchRound(u32),
    /// The message does not fit what the trainer is doing.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// The secure-aggregation client refused it.
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] SecAggError),
}

/// What the trainer is doing.
enum Phase {
    Idle,
    /// The host is training for `request`.
    Training(TrainRequest),
    /// Trained; waiting for the secure session to open.
    Ready {
        round: u32,
        change: Vec<f32>,
        weight: u32,
    },
    /// In the round's SecAgg+ session.
    Masking {
        round: u32,
        session: Box<SecAggClient>,
        masked: bool,
    },
}

/// One trainer of a federation. See the module docs.
pub struct Trainer {
    client: ClientId,
    task_seed: u64,
    secret_seed: Option<[u8; 32]>,
    silent_after_masking: bool,
    phase: Phase,
    actions: VecDeque<TrainerAction>,
}

impl Trainer {
    /// Trainer `client` of a federation with `task_seed`. Its secure-aggregation and noise
    /// randomness derive from the task seed (reproducible, for simulation); see
    /// [`Trainer::with_secret_seed`].
    pub fn new(client: ClientId, task_seed: u64) -> Self {
        Self {
            client,
            task_seed,
            secret_seed: None,
            silent_after_masking: false,
            phase: Phase::Idle,
            actions: VecDeque::new(),
        }
    }

    /// Draws the SecAgg+ randomness and its differential-privacy noise from `seed`, which
    /// only this trainer knows, instead of the task seed: what a deployment must do, since
    /// whoever knows a trainer's seed can remove its masks and subtract its noise.
    pub fn with_secret_seed(mut self, seed: [u8; 32]) -> Self {
        self.secret_seed = Some(seed);
        self
    }

    /// Whether to fall silent once the masked input is sent (a fault, for evaluation).
    pub fn set_silent_after_masking(&mut self, silent: bool) {
        self.silent_after_masking = silent;
    }

    /// The trainer's client id.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The next action for the host, in order.
    pub fn poll_action(&mut self) -> Option<TrainerAction> {
        self.actions.pop_front()
    }

    /// Hands in a message from the coordinator.
    pub fn handle_message(&mut self, now: Time, message: ToTrainer) -> Result<(), TrainerError> {
        match message {
            ToTrainer::Train(request) => {
                if request.client != self.client {
                    return Err(TrainerError::NotMine { to: request.client, me: self.client });
                }
                if self.round().is_some_and(|current| request.round < current) {
                    return Err(TrainerError::Stale { got: request.round, current: self.round().unwrap_or(0) });
                }
                self.phase = Phase::Training(request.clone());
                self.actions.push_back(TrainerAction::Train(request));
                Ok(())
            }
            ToTrainer::SecureSession { round, config } => {
                let Phase::Ready { round: ready, change, weight } = &self.phase else {
                    return Err(self.refusal(round, "session before being ready"));
                };
                if *ready != round {
                    return Err(TrainerError::NoSuchRound(round));
                }
                let seed = self.seed(round);
                let session =
                    SecAggClient::new((*config).clone(), ParticipantId(self.client.0), round, change, *weight, seed)?;
                self.phase = Phase::Masking { round, session: Box::new(session), masked: false };
                Ok(())
            }
            ToTrainer::SecAgg { round, message } => {
                let silent = self.silent_after_masking;
                let Phase::Masking { round: session_round, session, masked } = &mut self.phase else {
                    return Err(self.refusal(round, "session message outside a session"));
                };
                if *session_round != round {
                    return Err(TrainerError::NoSuchRound(round));
                }
                if *masked && silent {
                    return Ok(());
                }
                if let Some(reply) = session.handle_message(now, message)? {
                    *masked |= matches!(reply, ClientMessage::MaskedInput { .. });
                    self.actions.push_back(TrainerAction::Send(ToCoordinator::SecAgg { round, message: reply }));
                }
                Ok(())
            }
        }
    }

    /// Hands in the result of [`TrainerAction::Train`] for `round`.
    pub fn handle_trained(&mut self, _now: Time, round: u32, update: Update) -> Result<(), TrainerError> {
        let Phase::Training(request) = &self.phase else {
            return Err(self.refusal(round, "a training result while not training"));
        };
        if request.round != round {
            return Err(TrainerError::NoSuchRound(round));
        }
        match &request.upload {
            Upload::Plain => {
                self.phase = Phase::Idle;
                self.actions.push_back(TrainerAction::Send(ToCoordinator::Update { round, update }));
            }
            Upload::Secure(settings) => {
                let global = request.params.values();
                if update.params.len() != global.len() {
                    return Err(TrainerError::Unexpected("a trained model of another length than the global one"));
                }
                let mut change: Vec<f32> =
                    update.params.iter().zip(global).map(|(&u, &g)| (f64::from(u) - f64::from(g)) as f32).collect();
                let weight = match &settings.dp {
                    Some((dp, clip_norm)) => {
                        let noise_seed = self.noise_seed();
                        privatize_change(dp, *clip_norm, &mut change, noise_seed, round, u64::from(self.client.0));
                        1
                    }
                    None => update.num_examples.clamp(1, u64::from(settings.max_weight.max(1))) as u32,
                };
                self.phase = Phase::Ready { round, change, weight };
                self.actions.push_back(TrainerAction::Send(ToCoordinator::Ready { round }));
            }
        }
        Ok(())
    }

    /// The round under way, if any.
    fn round(&self) -> Option<u32> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Training(request) => Some(request.round),
            Phase::Ready { round, .. } | Phase::Masking { round, .. } => Some(*round),
        }
    }

    fn refusal(&self, round: u32, what: &'static str) -> TrainerError {
        match self.round() {
            Some(r) if r == round => TrainerError::Unexpected(what),
            _ => TrainerError::NoSuchRound(round),
        }
    }

    /// The seed of the DP noise streams: the task seed, or one derived from the secret seed.
    fn noise_seed(&self) -> u64 {
        match &self.secret_seed {
            Some(secret) => {
                let hash = blake3::keyed_hash(secret, b"dainet dp noise");
                let mut first = [0u8; 8];
                first.copy_from_slice(&hash.as_bytes()[..8]);
                u64::from_le_bytes(first)
            }
            None => self.task_seed,
        }
    }

    fn seed(&self, round: u32) -> [u8; 32] {
        match &self.secret_seed {
            Some(secret) => *blake3::keyed_hash(secret, &round.to_le_bytes()).as_bytes(),
            None => party_seed(self.task_seed, round, u64::from(self.client.0)),
        }
    }
}
