//! Combine model updates into one.
//!
//! - [`strategy`]: a [`Strategy`](strategy::Strategy) composes an aggregation rule (any
//!   [`AggregationRule`](strategy::AggregationRule): the built-in ones or your own), a server
//!   optimiser and two wrappers (update-norm clipping, bucketing); every strategy Flower users
//!   know is one [`StrategyConfig::named`](strategy::StrategyConfig::named) call away, with
//!   Flower's defaults.
//! - [`mean`]: [`FedAvg`], the example-weighted mean, folded in as updates arrive (one f64
//!   accumulator resident, never the updates).
//! - [`robust`]: coordinate-wise median and trimmed mean (selection, parallel over
//!   coordinates), Krum, Multi-Krum, Bulyan, centered clipping.
//! - [`server_opt`]: FedAvgM, FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021).
//! - [`dp`]: client-level differential privacy for mean-based strategies (DP-FedAvg, fixed or
//!   adaptive clipping, central or distributed Gaussian noise).
//! - [`attack`]: model-update attacks, for evaluation only.
//!
//! The one hard decision: the mean is accumulated in `f64`. fedtask-v1 lets the FedAvg sum
//! run in any order; an `f32` sum would make the result depend on that order in its last bits,
//! while `f64` keeps those order effects 2^29 times smaller, and the fixed delivery order of
//! the drivers makes the bits reproducible.
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod attack;
pub mod dp;
pub mod error;
pub mod mean;
pub mod robust;
pub mod server_opt;
pub mod strategy;

pub use error::{check_update, AggregationError, Checked};
pub use mean::FedAvg;
