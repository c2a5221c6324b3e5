//! Run dainet's protocols as state machines that do no I/O.
//!
//! A protocol here takes events (a message received, a timer fired) at a logical time the
//! caller passes in, and returns actions for the caller to carry out. It reads no clock,
//! opens no socket, spawns nothing and draws randomness only from seeded streams, so the
//! simulator and the network node drive the very same code (the design of quinn-proto and
//! raft-rs).
//!
//! - [`round`]: the federated round [`Coordinator`](round::Coordinator): samples clients,
//!   hands out the global model, validates and folds in their updates, closes the round on
//!   the last update or at its deadline.
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod round;
pub mod sampling;

pub use dainet_core::Time;

/// A client (trainer) of a federation: its index among the federation's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {}", self.0)
    }
}
