//! Stage 4: execution. A checked plan runs on the model runtime, case by case, inside the
//! evaluator's schedule.
//!
//! ```text
//! run(RunRequest)                        mkedsl run: compile with the model's dims (sema refuses
//!   │                                    what cannot run), memory estimate → load
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
//! sequential edits build on each other. The executor decides nothing the plan could: cache keys
//! and kinds, shared forward passes and the projections of each trained tensor come with the
//! steps. Files: `executor` (state, dispatch), `ops` (the `Execute` trait and its registry),
//! `prepare` (the prepare stage, the one cache read/write), `cache` (the on-disk store),
//! `preserve` (where preserved samples come from), `input` (the edit case as tensors), `taps` and
//! `sites` (reading streams, also inside adapters), `spaces` (null and top spaces), `losses`,
//! `optim`, `train`, `methods/` (ELoRA's variants and knowledge spaces, ASAM's adversarial
//! latents, UniKE's memory, encoders and neurons), `output` (`--out`), `origin` (run-time
//! refusals at a recipe line), `bench`, `compare`, `shard` (`--shard I/N` and `mkedsl merge`).

pub mod bench;
pub mod cache;
pub mod compare;
pub mod editor;
pub mod error;
pub mod executor;
pub mod input;
pub mod leak;
pub mod losses;
pub mod methods;
pub(crate) mod ops;
pub(crate) mod optim;
pub(crate) mod origin;
pub mod output;
pub(crate) mod prepare;
pub mod preserve;
pub mod rng;
pub mod run;
pub mod shard;
pub(crate) mod sites;
pub(crate) mod spaces;
pub mod sums;
pub(crate) mod taps;
pub mod train;
pub mod values;

pub use editor::PlanEditor;
pub use error::ExecError;
pub use executor::{Executor, Phases};
pub use run::{run, CacheChoice, RunOutcome, RunRequest};
