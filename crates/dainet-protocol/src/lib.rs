//! Run dainet's protocols as state machines that do no I/O.
//!
//! A protocol here takes events (a message received, a timer fired, local training done) at
//! a logical time the caller passes in, and returns actions for the caller to carry out. It
//! reads no clock, opens no socket, spawns nothing and draws randomness only from seeded
//! streams, so the simulator and the network node drive the very same code (the design of
//! quinn-proto and raft-rs).
//!
//! The federated round is two machines and the messages between them:
//! - [`Coordinator`] ([`coordinator`]): samples clients, hands out the global model, validates
//!   and folds in their updates — or runs the SecAgg+ server and learns only their sum —,
//!   accounts for the privacy spent, closes the round on the last update or at its deadline.
//! - [`Trainer`] ([`trainer`]): has its host train on local data, then returns its update in
//!   the clear or, under secure aggregation, clipped, noised (differential privacy) and
//!   masked.
//! - [`message`]: what they say to each other; [`config`]: the settings every party agrees
//!   on, and [`RoundConfig::validate`], the one place they are checked; [`record`]: what the
//!   coordinator commits to the ledger, and when; [`wire`]: the versioned byte form of every
//!   message, for drivers that carry them between processes (or count their bytes).
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod config;
pub mod coordinator;
pub mod message;
pub mod privacy;
pub mod record;
pub mod sampling;
pub mod secure;
pub mod trainer;
pub mod wire;

pub use config::{ConfigError, PrivacyConfig, RoundConfig, SecureConfig};
pub use coordinator::{Accepted, Action, Coordinator, Finish, NotAggregated, Rejection, RoundOutcome};
pub use dainet_core::Time;
pub use message::{SecureUpload, ToCoordinator, ToTrainer, TrainRequest, Update, Upload};
pub use privacy::PrivacySpent;
pub use record::LedgerRecord;
pub use trainer::{Trainer, TrainerAction, TrainerError};

/// A client (trainer) of a federation: its index among the federation's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {}", self.0)
    }
}
