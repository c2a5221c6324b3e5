//! What the coordinator and its trainers say to each other in a federated round.
//!
//! Both directions are plain Rust values: a driver carries them (in memory in the simulator,
//! over the network in a node) and hands each to the other side's state machine. A trainer
//! never needs more than these messages and its own data; the coordinator never receives a
//! trainer's data, and under secure aggregation never an individual update either.

use crate::ClientId;
use dainet_agg::dp::DpConfig;
use dainet_core::Params;
use dainet_privacy::secagg::{ClientMessage, SecAggConfig, ServerMessage};
use std::sync::Arc;

/// Ask `client` to train from `params` in `round`.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The round.
    pub round: u32,
    /// The client.
    pub client: ClientId,
    /// The global model to start from.
    pub params: Arc<Params>,
    /// How the update must come back.
    pub upload: Upload,
}

/// How a trainer returns its update.
#[derive(Clone, Debug, PartialEq)]
pub enum Upload {
    /// In the clear ([`ToCoordinator::Update`]): the coordinator validates it, and under
    /// differential privacy clips it and adds the noise itself (a trusted aggregator).
    Plain,
    /// Masked with SecAgg+: the trainer says [`ToCoordinator::Ready`], then takes part in the
    /// session the coordinator opens; the coordinator learns only the sum.
    Secure(Arc<SecureUpload>),
}

/// What a trainer needs to prepare its input to a secure round.
#[derive(Clone, Debug, PartialEq)]
pub struct SecureUpload {
    /// Client-side differential privacy: the trainer clips its change to `clip_norm` and, with
    /// distributed noise, adds its share of it (with central noise the coordinator adds the
    /// noise to the sum); its weight is then 1.
    pub dp: Option<(DpConfig, f64)>,
    /// The largest weight (example count) an input may carry; a larger count is clamped.
    pub max_weight: u32,
}

/// A trainer's answer to a plain [`TrainRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The trainer's trained parameters θ_k.
    pub params: Vec<f32>,
    /// Examples it trained on (n_k), its weight in FedAvg.
    pub num_examples: u64,
    /// Its mean training loss (reported, not trusted for anything).
    pub train_loss: f64,
}

/// A message from the coordinator to one trainer.
#[derive(Clone, Debug)]
pub enum ToTrainer {
    /// Train in a round.
    Train(TrainRequest),
    /// The round's secure aggregation opens among the ready trainers with `config`; the
    /// session's messages follow.
    SecureSession {
        /// The round.
        round: u32,
        /// The session's settings, the same for every participant.
        config: Arc<SecAggConfig>,
    },
    /// A SecAgg+ server message of the round's session.
    SecAgg {
        /// The round.
        round: u32,
        /// The message.
        message: ServerMessage,
    },
}

impl ToTrainer {
    /// The round the message belongs to.
    pub fn round(&self) -> u32 {
        match self {
            ToTrainer::Train(request) => request.round,
            ToTrainer::SecureSession { round, .. } | ToTrainer::SecAgg { round, .. } => *round,
        }
    }
}

/// A message from a trainer to the coordinator.
#[derive(Clone, Debug)]
pub enum ToCoordinator {
    /// A plain round's update.
    Update {
        /// The round.
        round: u32,
        /// The update.
        update: Update,
    },
    /// A secure round: trained and ready to mask.
    Ready {
        /// The round.
        round: u32,
    },
    /// A SecAgg+ client message of the round's session.
    SecAgg {
        /// The round.
        round: u32,
        /// The message.
        message: ClientMessage,
    },
}

impl ToCoordinator {
    /// The round the message belongs to.
    pub fn round(&self) -> u32 {
        match self {
            ToCoordinator::Update { round, .. }
            | ToCoordinator::Ready { round }
            | ToCoordinator::SecAgg { round, .. } => *round,
        }
    }
}
