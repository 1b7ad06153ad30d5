//! The executor's state and its step dispatcher: one function runs any step of the plan, in any
//! stage, against the evaluator's [`EditState`].
//!
//! Stage-specific work lives beside it: the prepare stage's cache and grouped statistics in
//! [`super::prepare`], the optimisation loop in [`super::train`]. Every failure is wrapped with
//! the step that failed (op, recipe line) and, during an edit, the case.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;

use crate::data::PromptTemplate;
use crate::eval::EditState;
use crate::exec::cache::Cache;
use crate::exec::error::{ExecError, Result};
use crate::exec::input::EditInput;
use crate::exec::ops::{executable, StepContext};
use crate::exec::preserve::{PreserveSource, Sample};
use crate::exec::values::Values;
use crate::plan::{Plan, Stage, Step, StepId};
use crate::sema::{DataSpec, Op, ParamOwner};

/// Seconds (and matmul operations) spent per phase of the method (the evaluator times pre-edit
/// and scoring itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Phases {
    /// The prepare stage (statistics, spaces, adapter initialisation), once.
    pub prepare_s: f64,
    /// Per-edit work outside training: variants and knowledge spaces.
    pub spaces_s: f64,
    /// Training (`train` steps, their bodies included).
    pub optimise_s: f64,
    /// Edits performed.
    pub edits: usize,
    /// Matmul operations of each phase, counted as they run ([`crate::model::flops`]).
    pub prepare_flops: u64,
    pub spaces_flops: u64,
    pub optimise_flops: u64,
}

/// One preserve batch of a [`KlReference`]: the input latents, the `(row, column)` positions
/// read, and the original model's `log p` there, `(N, vocab)`.
pub type KlBatch = (
    crate::model::Latents,
    Vec<(usize, usize)>,
    candle_core::Tensor,
);

/// Original next-token log-probabilities of a preserve set, for `kl_to_original`.
#[derive(Debug, Clone)]
pub struct KlReference {
    pub batches: Vec<KlBatch>,
}

/// Messages for the user: collected for the caller, and printed on stderr when `verbose`.
#[derive(Debug, Clone)]
pub struct Log {
    pub notes: Vec<String>,
    pub verbose: bool,
    pub bar: ProgressBar,
}

impl Log {
    /// Collects notes without printing them.
    pub fn quiet() -> Self {
        Self {
            notes: Vec::new(),
            verbose: false,
            bar: ProgressBar::hidden(),
        }
    }

    pub fn note(&mut self, message: String) {
        if self.verbose {
            self.bar.suspend(|| eprintln!("{message}"));
        }
        self.notes.push(message);
    }
}

/// What the data-dependent knobs of the methods resolved to on one case
/// ([`crate::eval::calibration`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseCalibration {
    pub knowledge: Vec<crate::eval::FilterCase>,
    pub perturbations: Vec<crate::eval::PerturbCase>,
}

/// A plan being run.
pub struct Executor {
    pub plan: Plan,
    /// The recipe's seed (or `--seed`).
    pub(crate) seed: u64,
    pub(crate) template: PromptTemplate,
    pub(crate) preserve: PreserveSource,
    pub(crate) cache: Cache,
    /// Results of the prepare stage, kept for every case.
    pub prepared: Values,
    /// Tensors frozen so far: `(adapter, tensor)` or model weights.
    pub(crate) frozen: Vec<ParamOwner>,
    pub(crate) kl: HashMap<DataSpec, Arc<KlReference>>,
    pub(crate) samples: HashMap<DataSpec, Arc<Vec<Sample>>>,
    pub log: Log,
    /// Per case (by record index): what the knowledge filters kept and the perturbation
    /// scales resolved to, moved into the case's report row after the run.
    pub calibration: HashMap<usize, CaseCalibration>,
    /// The ascending eigenvalues each null-space step was cut from, per layer
    /// ([`crate::exec::leak`]).
    pub(crate) spectra: HashMap<StepId, crate::exec::values::PerLayer<Vec<f64>>>,
    pub phases: Phases,
    /// Adversarial variant sets drawn in the current edit (each its own random stream).
    pub(crate) adversarial_draws: u64,
    /// When the prepare step being run started (for the "computed … in N s" notes).
    pub(crate) step_clock: Option<Instant>,
}

/// Wraps an error with the step it happened in.
pub fn in_step(step: &Step, case: Option<usize>, e: ExecError) -> ExecError {
    if matches!(e, ExecError::Step { .. }) {
        return e;
    }
    ExecError::Step {
        step: step.id.to_string(),
        op: step.op.name(),
        at: step.origin.at.clone(),
        case: case.map_or_else(String::new, |c| format!(" on case {c}")),
        cause: miette::Report::new(e),
    }
}

impl Executor {
    /// An executor for `plan` (its recipe's seed), drawing preserved samples from `preserve`
    /// formatted with `template`, caching in `cache`.
    pub fn new(
        plan: Plan,
        template: PromptTemplate,
        preserve: PreserveSource,
        cache: Cache,
        log: Log,
    ) -> Self {
        Self {
            seed: plan.recipe.seed,
            plan,
            template,
            preserve,
            cache,
            prepared: Values::default(),
            frozen: Vec::new(),
            kl: HashMap::new(),
            samples: HashMap::new(),
            log,
            calibration: HashMap::new(),
            spectra: HashMap::new(),
            phases: Phases::default(),
            adversarial_draws: 0,
            step_clock: None,
        }
    }

    /// A step of the plan by id.
    pub(crate) fn step(&self, id: StepId) -> Result<&Step> {
        self.plan
            .step(id)
            .ok_or_else(|| ExecError::internal(format!("the plan has no step {id}")))
    }

    /// The preserve samples of a data set (drawn once per run).
    pub(crate) fn samples(&mut self, spec: &DataSpec) -> Result<Arc<Vec<Sample>>> {
        if let Some(s) = self.samples.get(spec) {
            return Ok(s.clone());
        }
        let DataSpec::Preserve { text, vqa, caption } = spec else {
            return Err(ExecError::internal(format!("{spec} is not a preserve set")));
        };
        let counts = crate::exec::preserve::Counts {
            text: *text,
            vqa: *vqa,
            caption: *caption,
        };
        let samples = Arc::new(self.preserve.samples(counts, self.seed, &self.template)?);
        self.samples.insert(spec.clone(), samples.clone());
        Ok(samples)
    }

    /// Runs the per-edit steps of the plan on one case; returns every step result of the case
    /// (prepare results included).
    pub fn edit(&mut self, state: &mut EditState, edit: &EditInput) -> Result<Values> {
        let mut values = self.prepared.clone();
        self.adversarial_draws = 0;
        let steps: Vec<Step> = self.plan.stage(Stage::PerEdit).cloned().collect();
        for step in &steps {
            if values.contains(step.id) {
                continue; // computed together with an earlier step (grouped knowledge spaces)
            }
            let started = Instant::now();
            let flops = crate::model::flops::count();
            let is_train = matches!(step.op, Op::Train(_));
            self.run_step(step, &steps, state, Some(edit), &mut values)
                .map_err(|e| in_step(step, Some(edit.case), e))?;
            let secs = started.elapsed().as_secs_f64();
            let flops = crate::model::flops::count() - flops;
            if is_train {
                self.phases.optimise_s += secs;
                self.phases.optimise_flops += flops;
            } else {
                self.phases.spaces_s += secs;
                self.phases.spaces_flops += flops;
            }
        }
        self.phases.edits += 1;
        Ok(values)
    }

    /// Runs one step; `stage_steps` are the steps of its stage (to group knowledge spaces).
    pub(crate) fn run_step(
        &mut self,
        step: &Step,
        stage_steps: &[Step],
        state: &mut EditState,
        edit: Option<&EditInput>,
        values: &mut Values,
    ) -> Result<()> {
        let mut cx = StepContext {
            step,
            stage_steps,
            state,
            edit,
            values,
        };
        executable(&step.op).execute(self, &mut cx)
    }
}

impl Executor {
    /// The dimension and leak of every null space of the prepare stage, per layer, in plan order.
    /// (A null space cut inside `per edit` changes with each case and is not reported.)
    pub fn null_space_reports(&self) -> Vec<crate::exec::leak::NullSpaceReport> {
        let mut out = Vec::new();
        for step in self.plan.stage(Stage::Prepare) {
            let (Some(spectra), Ok(crate::exec::values::Value::Space(spaces))) =
                (self.spectra.get(&step.id), self.prepared.get(step.id))
            else {
                continue;
            };
            let layers: Vec<(Option<usize>, Vec<f64>, usize)> = spectra
                .iter()
                .filter_map(|(l, v)| spaces.get(*l).map(|s| (*l, v.clone(), s.rank())))
                .collect();
            out.extend(crate::exec::leak::NullSpaceReport::of_step(
                step, &self.plan, &layers,
            ));
        }
        out
    }
}
