//! Keep individual updates private: differential privacy with an accountant, and secure
//! aggregation.
//!
//! - [`accountant`]: the RDP accountant for the Poisson-subsampled Gaussian mechanism.
//! - [`secagg`]: SecAgg+ (Bell et al. 2020) as sans-IO client and server state machines.
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod accountant;
pub mod secagg;
