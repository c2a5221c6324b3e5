//! Load data, partition it among clients, and train and evaluate models on it.
//!
//! - [`data`]: datasets (IDX, CSV) and seeded partitioners (IID, shards, Dirichlet, natural).
//! - [`model`]: the [`Model`] trait over flat `f32` parameters and the built-in models
//!   (MLP, logistic regression, McMahan's CNN) on `matrixmultiply` sgemm.
//! - [`train`]: local mini-batch SGD with momentum, weight decay and the FedProx term.
//! - [`eval`]: accuracy and loss, in parallel, identical for any thread count.
//! - [`model_file`]: safetensors model files carrying their architecture.
//!
//! Stability: ALPHA (breaking changes expected).
#![deny(missing_docs)]

pub mod data;
pub mod eval;
pub mod model;
pub mod model_file;
pub mod train;

pub use data::Dataset;
pub use eval::{evaluate, Evaluation};
pub use model::{Model, ModelSpec, Scratch};
pub use train::{train_local, train_local_with_momentum, LocalUpdate, SgdConfig};
