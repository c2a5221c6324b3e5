//! The one error type of the engine: what went wrong, with the file or setting it concerns, in
//! words a user can act on.

use std::path::PathBuf;

/// Why a federation could not be planned, run, recorded, checkpointed or written.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is out of range or conflicts with another; the message names the key.
    #[error("{0}")]
    Setting(String),
    /// The data cannot be read or does not fit the settings.
    #[error("{0}")]
    Data(String),
    /// The round protocol refuses the settings (round sizes, secure aggregation, privacy).
    #[error(transparent)]
    Round(#[from] dainet_protocol::ConfigError),
    /// The strategy refuses its settings or the updates.
    #[error(transparent)]
    Aggregation(#[from] dainet_agg::AggregationError),
    /// A model file (a checkpoint, the model) cannot be read or written.
    #[error(transparent)]
    ModelFile(#[from] dainet_ml::model_file::ModelFileError),
    /// A file of the run folder cannot be read or written.
    #[error("{}: {action}: {cause}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "cannot create".
        action: &'static str,
        /// The cause (in the message, not repeated as a source: a chain would print it twice).
        cause: std::io::Error,
    },
    /// A checkpoint cannot be resumed by this run.
    #[error("{}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// The run folder holds something this run may not replace or continue.
    #[error("{}: {reason}", path.display())]
    Folder { path: PathBuf, reason: String },
    /// Recording the ledger failed: the context, then the cause.
    #[error("{context}: {reason}")]
    Ledger { context: String, reason: String },
    /// The run ended without finishing its rounds.
    #[error("{0}")]
    Run(String),
    /// The run was interrupted (Ctrl-C) after `round`, with a checkpoint to resume from.
    #[error("interrupted after round {round}; continue with --resume {}", checkpoint.display())]
    Interrupted {
        /// The last round that closed.
        round: u32,
        /// The checkpoint written after it.
        checkpoint: PathBuf,
    },
    /// An observer of the run stopped it with an error of its own.
    #[error(transparent)]
    Observer(Box<dyn std::error::Error + Send + Sync>),
}

impl EngineError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |cause| EngineError::Io { path, action, cause }
    }

    /// A ledger error: `context` says what was being recorded.
    pub fn ledger(context: impl Into<String>, reason: impl std::fmt::Display) -> EngineError {
        EngineError::Ledger { context: context.into(), reason: reason.to_string() }
    }

    /// An error of the data, as its loader said it.
    pub fn data(error: impl std::fmt::Display) -> EngineError {
        EngineError::Data(error.to_string())
    }
}
