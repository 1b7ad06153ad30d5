//! What can go wrong training, measuring or answering with the embedded model.

use std::path::PathBuf;

use crate::data::DataError;
use crate::model::ModelError;
use crate::world::WorldError;

/// Errors of the trainer, the knowledge check and the dataset writer.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TrainError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    World(#[from] WorldError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),

    /// An option makes no sense (zero steps, a negative learning rate, …).
    #[error("invalid training option: {reason}")]
    #[diagnostic(code(mkedsl::train::option))]
    Option {
        reason: String,
        #[help]
        help: String,
    },

    /// The tokenizer lacks a token the model layout needs.
    #[error("the tokenizer has no `{token}` token")]
    #[diagnostic(
        code(mkedsl::train::tokenizer),
        help("train the tokenizer with crate::world::train_tokenizer, which adds every special token")
    )]
    MissingToken { token: String },

    /// A checkpoint or an output file could not be written or read back.
    #[error("checkpoint `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::train::checkpoint),
        help("check that the output folder is writable; delete a damaged checkpoint folder to start over")
    )]
    Checkpoint { path: PathBuf, reason: String },

    /// Arithmetic failed after the model was built (a bug, not bad input).
    #[error("tensor computation failed during training: {0}")]
    #[diagnostic(
        code(mkedsl::train::tensor),
        help("this is an internal error; please report it with the command you ran")
    )]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
