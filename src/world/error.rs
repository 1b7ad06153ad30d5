//! Errors of the world generator and its exporters.

use std::path::PathBuf;

/// What can go wrong generating or writing the world.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WorldError {
    #[error("asked for {requested} {kind} edit cases but the world has only {available}")]
    #[diagnostic(
        code(mkedsl::world::too_many_cases),
        help("ask for at most {available} cases")
    )]
    TooManyCases {
        kind: &'static str,
        requested: usize,
        available: usize,
    },
    #[error("cannot train the world tokenizer: {reason}")]
    #[diagnostic(
        code(mkedsl::world::tokenizer),
        help("this is a bug in the world's corpus text; please report it")
    )]
    Tokenizer { reason: String },
    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::world::write),
        help("check that the output folder is writable and the disk is not full")
    )]
    Write { path: PathBuf, reason: String },
}
