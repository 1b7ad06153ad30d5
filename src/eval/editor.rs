//! The editing contract between the evaluator and whatever edits a model (a recipe's executor,
//! a baseline, a test double).
//!
//! An [`Editor`] changes an [`EditState`] — the model and its adapters — and nothing else. The
//! evaluator owns the schedule:
//!
//! ```text
//! pre-edit outputs of every case   (the state as given: the ORIGINAL model, cached once)
//! editor.prepare(state, cases)     (case-independent work: covariances, null spaces, W ← W − BA)
//! snapshot = state.snapshot()
//! for each group (1 case in single mode, K in sequential mode):
//!     editor.edit(state, case) for each case of the group      (edits accumulate in the group)
//!     score the group's cases on state, against the cached pre-edit outputs
//!     state.restore(&snapshot)                                   (EasyEdit issues #659, #643)
//! ```
//!
//! Snapshots are cheap: models and adapters hold reference-counted tensors, so a snapshot is a
//! clone of handles, and `replace_linear_weight` or adding adapters never touches the snapshot.
//! The one thing a snapshot cannot undo is an IN-PLACE write into a tensor it shares
//! (`Var::set`, an optimiser step on a `Var` that was in the state when the snapshot was taken).
//! An editor therefore trains fresh `Var`s per edit (`Var::from_tensor` copies), or copies a
//! prepared `Var` before updating it; the evaluator's tests check that scores after a restore
//! equal the original model's.

use crate::eval::case::{EvalCase, PreparedCase};
use crate::model::{Adapters, Llava, VisionLanguageModel};

/// What an edit may change: the model (weights replaced through
/// [`VisionLanguageModel::replace_linear_weight`]) and the adapters every forward pass uses.
#[derive(Debug, Clone)]
pub struct EditState<M = Llava> {
    pub model: M,
    pub adapters: Adapters,
}

/// A saved [`EditState`], restored after every case (single editing) or group (sequential).
#[derive(Debug, Clone)]
pub struct Snapshot<M = Llava>(EditState<M>);

impl<M: Clone> EditState<M> {
    /// An unedited model with no adapters.
    pub fn new(model: M) -> Self {
        Self {
            model,
            adapters: Adapters::new(),
        }
    }

    /// Saves the current state (a clone of tensor handles, not of tensor data).
    pub fn snapshot(&self) -> Snapshot<M> {
        Snapshot(self.clone())
    }

    /// Returns to a saved state: every weight replacement and adapter added since is dropped.
    pub fn restore(&mut self, snapshot: &Snapshot<M>) {
        *self = snapshot.0.clone();
    }
}

/// A knowledge-editing method, driven case by case by the evaluator.
///
/// Errors are any miette diagnostic (`?` converts them); the evaluator wraps them with the
/// editor's name and the case.
pub trait Editor<M: VisionLanguageModel = Llava> {
    /// A short name for tables and messages (the recipe's name).
    fn name(&self) -> &str;

    /// Case-independent work, once, after the pre-edit outputs are cached and before the first
    /// edit. What it leaves in `state` is what every restore returns to. `cases` are all the
    /// cases that will be edited (never to be used as preserved knowledge).
    fn prepare(&mut self, state: &mut EditState<M>, cases: &[EvalCase]) -> miette::Result<()> {
        let _ = (state, cases);
        Ok(())
    }

    /// Edits `state` so that the model answers `case.target()` to `case.prompt()` with
    /// `case.image`. In sequential mode this is called K times before scoring.
    fn edit(&mut self, state: &mut EditState<M>, case: &PreparedCase) -> miette::Result<()>;
}

/// The editor that changes nothing: `mkedsl eval` scores the unedited model through the same
/// schedule, so its post-edit locality is 1 by construction (a check of the evaluator itself)
/// and its Rel/T-Gen/M-Gen are the papers' pre-edit baseline row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<M: VisionLanguageModel> Editor<M> for Identity {
    fn name(&self) -> &str {
        "identity"
    }

    fn edit(&mut self, _state: &mut EditState<M>, _case: &PreparedCase) -> miette::Result<()> {
        Ok(())
    }
}
