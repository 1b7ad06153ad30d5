//! How each operation runs: the executor's side of the operation registry.
//!
//! Every operation of [`crate::sema::ops`] implements [`Execute`] in the file that holds its
//! tensor work: general operations in `prepare` (covariances, LoRA initialisation), `spaces`
//! (null and top spaces) and `train` (training, freezing); method-specific ones under
//! `methods/` (ELoRA's variants and knowledge space, ASAM's adversarial latents, UniKE's
//! memory, encoders and adapters). [`executable`] is the one list; the dispatcher in
//! `executor` runs any step through it.

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::Executor;
use crate::exec::input::EditInput;
use crate::exec::values::Values;
use crate::plan::Step;
use crate::sema::Op;

/// What a step runs with.
pub(crate) struct StepContext<'a> {
    pub step: &'a Step,
    /// The steps of its stage (or of its train body), for work shared between steps.
    pub stage_steps: &'a [Step],
    pub state: &'a mut EditState,
    /// The edit case, during an edit.
    pub edit: Option<&'a EditInput>,
    /// Every result so far; the step adds its own.
    pub values: &'a mut Values,
}

impl<'a> StepContext<'a> {
    /// The edit case, for operations that read it (the plan schedules them per edit).
    pub fn edit(&self) -> Result<&'a EditInput> {
        self.edit.ok_or_else(|| {
            ExecError::internal(format!("`{}` ran outside an edit", self.step.op.name()))
        })
    }
}

/// Runs an operation's step.
pub(crate) trait Execute {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()>;
}

/// The operation as something the executor runs.
pub(crate) fn executable(op: &Op) -> &dyn Execute {
    match op {
        Op::Covariance(op) => op,
        Op::NullSpace(op) => op,
        Op::TopSpace(op) => op,
        Op::KnowledgeSpace(op) => op,
        Op::Lora(op) => op,
        Op::ExtraNeurons(op) => op,
        Op::LatentIcl(op) => op,
        Op::Freeze(op) => op,
        Op::Perturb(op) => op,
        Op::Adversarial(op) => op,
        Op::IncontextMemory(op) => op,
        Op::ContrastiveEncoders(op) => op,
        Op::TruthDirection(op) => op,
        Op::Remember(op) => op,
        Op::Train(op) => op,
    }
}
