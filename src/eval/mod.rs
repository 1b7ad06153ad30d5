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

pub use case::{scored_text, CasePrompts, EvalCase, PreparedCase};
pub use editor::{EditState, Editor, Identity, Snapshot};
pub use error::EvalError;
