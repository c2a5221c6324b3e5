//! Load data, partition it among clients, and train and evaluate models on it.
#![deny(missing_docs)]

pub mod data;
