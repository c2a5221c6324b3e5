//! Datasets: loading them from files and cutting them among clients.
//!
//! - [`Dataset`]: examples as rows of `f32` features with a class label each.
//! - [`idx`]: IDX files (MNIST's format), gzip-compressed or plain.
//! - [`csv`]: CSV files of numeric feature columns, a label column and optionally a client
//!   id column.
//! - [`partition`]: seeded IID, shard, Dirichlet and natural-id partitions.

pub mod csv;
pub mod idx;
pub mod partition;
pub mod poison;
pub mod synthetic;

mod dataset;

pub use dataset::{Dataset, DatasetError};
pub use partition::{Partition, PartitionError, PartitionScheme};
