//! Everything that can stop a run after the recipe compiled, as miette diagnostics.
//!
//! A failure inside a step names the step (its op and the recipe line it came from, via
//! [`ExecError::Step`]) and, during an edit, the case; the evaluator adds the editor's name. A
//! numeric blow-up during training is never a panic: [`ExecError::NonFinite`] says which value
//! went bad at which optimisation step.

use std::path::PathBuf;

use crate::linalg;
use crate::model::ModelError;

/// Errors of the executor.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExecError {
    /// The model runtime failed (loading, a forward pass, an adapter that does not fit).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Model(#[from] ModelError),

    /// A linear-algebra primitive refused its input.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Linalg(#[from] linalg::Error),

    /// A step of the plan failed; `cause` says why.
    #[error("step {step} `{op}` (written at {at}) failed{case}")]
    #[diagnostic(code(mkedsl::exec::step))]
    Step {
        step: String,
        op: &'static str,
        at: String,
        /// `" on case N"` during an edit, empty in the prepare stage.
        case: String,
        #[diagnostic_source]
        cause: miette::Report,
    },

    /// A loss, gradient or update stopped being a finite number.
    #[error("{what} is {value} at optimisation step {train_step} of {steps}")]
    #[diagnostic(
        code(mkedsl::exec::non_finite),
        help("the optimisation diverged: lower the learning rate (or the loss weights) in the recipe's `train` statement")
    )]
    NonFinite {
        what: String,
        value: f64,
        /// 1-based.
        train_step: usize,
        steps: usize,
    },

    /// The edit moved what it trains far beyond the size of the weight it edits.
    #[error("the edit moved {what} by {moved:.3e}, {:.1e}× the size of the weight it edits (norm {reference:.3e}), at optimisation step {train_step} of {steps}", moved / reference)]
    #[diagnostic(
        code(mkedsl::exec::diverged),
        help("the optimisation diverged (the loss can stay finite while weights run away): lower the learning rate, the steps or the loss weights of this `train` statement; an edit may move a weight by at most 100× its norm")
    )]
    Diverged {
        what: String,
        moved: f64,
        reference: f64,
        /// 1-based.
        train_step: usize,
        steps: usize,
    },

    /// Preserved-knowledge samples were asked for but cannot be drawn.
    #[error("{reason}")]
    #[diagnostic(code(mkedsl::exec::preserve))]
    Preserve {
        reason: String,
        #[help]
        help: String,
    },

    /// A command-line option that cannot take effect (rejected, never ignored).
    #[error("{reason}")]
    #[diagnostic(code(mkedsl::exec::option))]
    Option {
        reason: String,
        #[help]
        help: String,
    },

    /// A numeric result the method cannot go on from (an empty space, a rank that does not fit).
    #[error("{reason}")]
    #[diagnostic(code(mkedsl::exec::numeric))]
    Numeric {
        reason: String,
        #[help]
        help: String,
    },

    /// Writing an output (the `--out` artefact) failed.
    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::exec::write),
        help("check that the folder is writable and the disk is not full")
    )]
    Write { path: PathBuf, reason: String },

    /// Reading an edit artefact back failed.
    #[error("cannot read the edit artefact `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::exec::artefact),
        help("pass a folder written by `mkedsl run --out`, for the same model")
    )]
    Artefact { path: PathBuf, reason: String },

    /// A broken invariant of the executor itself (the checker should have made it impossible).
    #[error("internal error of the executor: {reason}")]
    #[diagnostic(
        code(mkedsl::exec::internal),
        help("this is a bug in mkedsl; please report it with the recipe that caused it")
    )]
    Internal { reason: String },
}

impl From<candle_core::Error> for ExecError {
    fn from(e: candle_core::Error) -> Self {
        ExecError::Model(ModelError::from(e))
    }
}

impl ExecError {
    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        ExecError::Internal {
            reason: reason.into(),
        }
    }
}

/// Shorthand used throughout `src/exec`.
pub type Result<T> = std::result::Result<T, ExecError>;
