//! Everything that can stop an evaluation, as miette diagnostics naming the case, file or editor.

use std::path::PathBuf;

use crate::data::DataError;
use crate::eval::metrics::MetricError;
use crate::model::ModelError;

/// Errors of the evaluator, the prompt-template resolution and `mkedsl eval`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    /// Loading or running the model failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Model(#[from] ModelError),

    /// Reading the dataset failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),

    /// A model folder declares a prompt template the evaluator cannot use.
    #[error("prompt template `{}`: {reason}", path.display())]
    #[diagnostic(code(mkedsl::eval::template))]
    Template {
        path: PathBuf,
        reason: String,
        #[help]
        help: String,
    },

    /// A default input (the embedded model or dataset) is not where it should be.
    #[error("{what} not found: looked for {}", tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "))]
    #[diagnostic(code(mkedsl::eval::missing_default))]
    MissingDefault {
        what: &'static str,
        tried: Vec<PathBuf>,
        #[help]
        help: String,
    },

    /// The dataset (after `--limit`) holds no case.
    #[error("no case to evaluate in {data}")]
    #[diagnostic(
        code(mkedsl::eval::no_cases),
        help("check the file, the records skipped for an empty alt or a missing image, the image roots, and --limit (it counts records before skipping, as EasyEdit's size)")
    )]
    NoCases { data: String },

    /// An answer to score tokenises to nothing (or leaves no room for a prompt).
    #[error("case {case}: `{field}` ({text:?}) {reason}")]
    #[diagnostic(
        code(mkedsl::eval::target),
        help("every scored answer (alt, loc_ans, m_loc_a) must hold at least one token after the prompt")
    )]
    Target {
        case: usize,
        field: &'static str,
        text: String,
        reason: String,
    },

    /// A metric primitive rejected what the model produced.
    #[error("case {case}: cannot score {probe}")]
    #[diagnostic(code(mkedsl::eval::metric))]
    Metric {
        case: usize,
        probe: &'static str,
        #[source]
        #[diagnostic_source]
        source: MetricError,
    },

    /// The model produced NaN or infinite logits: never scored (NaN would match NaN).
    #[error("case {case}: the model's logits on the {probe} prompt are not finite ({value})")]
    #[diagnostic(
        code(mkedsl::eval::non_finite),
        help("weights are checked finite at load, so an edit made them overflow: lower the learning rate, the steps or the loss weights of the recipe's `train` statement")
    )]
    NonFinite {
        case: usize,
        probe: &'static str,
        value: f32,
    },

    /// An option that cannot take effect was given (rejected rather than silently ignored).
    #[error("{reason}")]
    #[diagnostic(code(mkedsl::eval::option))]
    Option {
        reason: String,
        #[help]
        help: String,
    },

    /// The editor failed while preparing or editing.
    #[error("editor `{editor}` failed {stage}")]
    #[diagnostic(code(mkedsl::eval::editor))]
    Editor {
        editor: String,
        /// "while preparing" or "on case N".
        stage: String,
        #[diagnostic_source]
        cause: miette::Report,
    },

    /// A broken invariant of the evaluator itself.
    #[error("internal error of the evaluator: {reason}")]
    #[diagnostic(
        code(mkedsl::eval::internal),
        help("this is a bug in mkedsl; please report it with the command that caused it")
    )]
    Internal { reason: String },

    /// Writing the JSON report failed after the run; the report was kept elsewhere.
    #[error("cannot write the report to `{}`: {reason}; {}", path.display(), match kept { Some(k) => format!("it was saved to `{}` instead (the table above holds the scores)", k.display()), None => "the table above holds the scores".to_string() })]
    #[diagnostic(
        code(mkedsl::eval::report_kept),
        help("give --json a file path in a writable folder with free space")
    )]
    ReportKept {
        path: PathBuf,
        reason: String,
        kept: Option<PathBuf>,
    },

    /// Writing the JSON report failed.
    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::eval::write),
        help("check that the folder exists and is writable")
    )]
    Write { path: PathBuf, reason: String },
}

/// Shorthand used throughout `src/eval`.
pub type Result<T> = std::result::Result<T, EvalError>;
