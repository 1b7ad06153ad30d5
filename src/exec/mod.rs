//! Stage 4: execution. A checked plan runs on the model runtime, case by case, inside the
//! evaluator's schedule.
//!
//! ```text
//! run(RunRequest)                        mkedsl run: compile with the model's dims → validate
//!   │                                    (every op executable, preserve data available) → load
//!   └─ evaluate(state, PlanEditor, cases)
//!        PlanEditor::prepare → Executor::prepare     once: kl references, covariances over the
//!        │                                           preserve set (one hooked pass), null/top
//!        │                                           spaces, LoRA init (ELoRA Eq. 8), freeze;
//!        │                                           cached on disk (cache.rs)
//!        PlanEditor::edit    → Executor::edit        per case: perturb/adversarial variants
//!                                                    (batched), knowledge spaces, train (loss,
//!                                                    backward, project grad, optimiser, project
//!                                                    update, apply); --out artefacts
//! bench / compare                        recipes side by side: phase timings, metric tables
//! ```
//!
//! Step results live in [`values::Values`] by step id; adapters' tensors live in the evaluator's
//! [`crate::eval::EditState`], so its snapshot/restore undoes every edit (single editing) and
//! sequential edits build on each other. Files: `preserve` (where preserved samples come from),
//! `input` (the edit case as tensors), `taps` (reading streams, also inside adapters),
//! `variants` (ELoRA's perturbations, ASAM's adversarial latents), `spaces` (null, top and
//! knowledge spaces), `losses`, `optim`, `train`, `unike` + `unike_ops` (UniKE's triplet states,
//! encoders, ζ, extra neurons and `remember`; the latent ICL read itself is `model::memory`), `cache`, `output` (`--out`), `validate` (what is refused
//! before any tensor exists), `bench`, `compare`, `shard` (`--shard I/N` and `mkedsl merge`).

pub mod bench;
pub mod cache;
pub mod compare;
pub mod editor;
pub mod error;
pub mod executor;
pub mod input;
pub mod losses;
pub mod optim;
pub mod output;
pub mod prepare;
pub mod preserve;
pub mod rng;
pub mod run;
pub mod shard;
pub mod sites;
pub mod spaces;
pub mod taps;
pub mod train;
pub mod unike;
pub mod unike_ops;
pub mod validate;
pub mod values;
pub mod variants;

pub use editor::PlanEditor;
pub use error::ExecError;
pub use executor::{Executor, Phases};
pub use run::{run, CacheChoice, RunOutcome, RunRequest};
