//! Scoring edits: the editing contract, the evaluator, its report, and `mkedsl eval`.
//!
//! ```text
//! Dataset ──EvalCase::from_dataset(template)──▶ [EvalCase]
//!                                                  │
//! EditState{model, adapters} + impl Editor ──evaluate(state, editor, cases, opts)──▶ Evaluation
//!                                                  │        (pre-edit cache, prepare, edit,
//!                                                  │         score, restore; batched)
//!                             EvalReport::new(run info, evaluation) ──▶ table on stdout, --json
//! ```
//!
//! `metrics` holds the pure primitives (token accuracy, locality agreement, exact match,
//! aggregation) computed as EasyEdit computes them; everything else builds on them.

pub mod case;
pub mod editor;
pub mod error;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod runner;
pub mod score;
pub mod setup;
pub mod template;

pub use case::{scored_text, CasePrompts, EvalCase, PreparedCase};
pub use editor::{EditState, Editor, Identity, Snapshot};
pub use error::EvalError;
pub use probe::{CaseOutputs, Generations, ProbeOptions};
pub use report::{EvalReport, RunInfo, Scoring, SCORING};
pub use runner::{evaluate, EditMode, EvalOptions, Evaluation, Timing, DEFAULT_K};
pub use score::{CaseRow, EditScores, LocalityScores, PreEditScores, Summary};
pub use setup::{
    default_path, progress_bar, run_eval, EvalRequest, Setup, SetupRequest, BASELINE_RECIPE,
    DEFAULT_DATA, DEFAULT_MODEL,
};
pub use template::{resolve_template, ResolvedTemplate, TemplateSource, TEMPLATE_FILE};
