//! Combine model updates into one.
//!
//! [`FedAvg`] is the example-weighted mean of client models (McMahan et al. 2017,
//! <https://arxiv.org/abs/1602.05629>), folded in as updates arrive: one accumulator is
//! resident, never the updates themselves.
//!
//! The one hard decision: the accumulator is `f64`. fedtask-v1 lets the FedAvg sum run in any
//! order; an `f32` sum would make the result depend on that order in its last bits, while
//! `f64` keeps those order effects 2^29 times smaller and the fixed delivery order of the
//! drivers makes the bits reproducible.
//!
//! Stability: ALPHA (the robust strategies of the next milestone will add a `Strategy` trait).
#![deny(missing_docs)]

pub mod error;
pub mod mean;

pub use error::{check_update, AggregationError};
pub use mean::FedAvg;
