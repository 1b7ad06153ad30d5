//! Scoring edits: the editing contract, the evaluator, its report, and `mkedsl eval`.
//!
//! ```text
//! Setup::load(model dir, data file)      model + resolve_template(dir) + load_dataset
//!   └─ EvalCase::from_dataset(template)  every question formatted once, as the model sees it
//! evaluate(&mut EditState{model, adapters}, &mut impl Editor, &cases, &EvalOptions) -> Evaluation
//!   1. observe the state as given on every case        → pre-edit outputs, cached (#643)
//!   2. editor.prepare(state, cases); snapshot
//!   3. per group (1 case single, K sequential): editor.edit × group, observe, restore (#659)
//!   4. score_case(pre, post) per case; summarize (mean over cases)
//! EvalReport::new(RunInfo, Evaluation)   .table() for stdout, .write_json(path) (atomic)
//! ```
//!
//! What is scored ([`score`] and [`report::SCORING`] spell it out in every report):
//! - **Rel / T-Gen / M-Gen** (`metrics`): teacher-forced accuracy of the `alt` tokens after
//!   `prompt + " "`, on (image, src), (image, rephrase), (image_rephrase, src) — EasyEdit's scorer.
//!   `generation`: the greedy generation equals `alt` (normalised).
//! - **T-Loc / M-Loc** (`metrics`, the headline): top-1 agreement of the edited model with the
//!   unedited one at the positions that predict the `loc_ans` / `m_loc_a` tokens of
//!   `loc` (text only) / `m_loc_q` on the `m_loc` image. `generation`: the greedy generations of
//!   both models are equal. `locality_all_positions`: EasyEdit's variant, every position (image
//!   and prompt tokens included), top-1 for text and top-10 for image locality.
//! - **pre_edit**: the unedited model's Rel / T-Gen / M-Gen under both scorers.
//!
//! Every evaluation prompt of a case — and of all cases sharing a model (the pre-edit pass, a
//! sequential group) — goes through padded batches ([`probe`]). Work that cannot change is done
//! once: pre-edit outputs per case, image features per distinct image (a [`FeatureCache`] per
//! evaluation). Greedy generation stops at EOS or after the answer's length + 1 tokens; its
//! tokens are read off the teacher-forced pass while they follow the answer, and only the rest
//! is decoded, batched, with the KV cache. `evaluate_with(.., ObservePath::Plain)` is the
//! reference path the fast one is tested against (`tests/eval_fast.rs`).
//!
//! [`FeatureCache`]: crate::model::FeatureCache Prompts follow the model folder's template ([`template`]);
//! `mkedsl infer --question` formats with the same one. [`metrics`] holds the pure primitives.

pub mod calibration;
pub mod case;
pub mod easyedit;
pub mod editor;
pub mod error;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod runner;
pub mod score;
pub mod setup;
pub mod template;

pub use calibration::{FilterCase, FilterMean, PerturbCase, PerturbMean};
pub use case::{scored_text, CasePrompts, EvalCase, PreparedCase};
pub use easyedit::{EasyEditScores, KEYS as EASYEDIT_KEYS};
pub use editor::{EditState, Editor, Identity, Snapshot};
pub use error::EvalError;
pub use probe::{
    observe, observe_plain, CaseOutputs, Generations, Path as ObservePath, ProbeOptions,
};
pub use report::{DataFileInfo, EvalReport, PhaseTimes, Provenance, RunInfo, Scoring, SCORING};
pub use runner::{evaluate, evaluate_with, EditMode, EvalOptions, Evaluation, Timing, DEFAULT_K};
pub use score::{CaseRow, EditScores, LocalityScores, PreEditScores, Summary};
pub use setup::{
    default_path, progress_bar, run_eval, EvalRequest, Setup, SetupRequest, BASELINE_RECIPE,
    DEFAULT_DATA, DEFAULT_MODEL,
};
pub use template::{resolve_template, ResolvedTemplate, TemplateSource, TEMPLATE_FILE};
