//! The plan: what the executor walks.

use serde::Serialize;

use crate::model::config::ModelDims;
use crate::model::ResidualPoint;
use crate::sema::{Metric, NodeId, Op, Origin, Recipe};

/// A step's id. Steps are numbered from 0 in execution order; ops refer to each other by it.
pub type StepId = NodeId;

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// How often a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Once per run, before the first edit.
    Prepare,
    /// Once per edit case.
    PerEdit,
    /// Once per optimisation step of its `parent` train step.
    PerStep,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::PerEdit => "per_edit",
            Stage::PerStep => "per_step",
        }
    }
}

/// What a step produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// `covariance`, `space`, `adapter`, `variants`, `memory`, `encoders` or `direction`.
    pub kind: &'static str,
    /// When the model is bound: covariance and space `[d, d]`, variants `[count]`, memory
    /// `[entries, width]`, encoders `[width, hidden]`, direction `[hidden]`.
    pub shape: Option<Vec<usize>>,
}

/// How a prepare step's result is cached on disk. Every key is made by the planner
/// (`plan/cache.rs`); the executor only loads and stores under it.
///
/// `recipe` describes the computation completely — operation, resolved site, data set, seed and
/// the recipes of its inputs — except the model, which is not hashed at plan time. The executor
/// stores the result under `sha256(model_hash + "\n" + recipe)`. `digest` is `sha256(recipe)`'s
/// first 16 hex digits, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// What the entry holds, and the folder it is stored in: `covariance`, `space`, `memory`,
    /// `encoders` or `lora_init`.
    pub kind: &'static str,
    pub recipe: String,
    pub digest: String,
}

/// One scheduled operation with everything it needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    pub stage: Stage,
    /// For `PerStep` steps: the `train` step whose body this is.
    pub parent: Option<StepId>,
    pub op: Op,
    /// Steps whose results this one consumes (a train step's body excluded).
    pub inputs: Vec<StepId>,
    pub output: Option<Output>,
    pub device: Device,
    pub cache: Option<CacheKey>,
    /// Written inside `per edit` but independent of the edit case, so moved to `prepare`.
    pub hoisted: bool,
    /// The steps (this one included) whose results one set of forward passes computes
    /// (covariances over the same preserve set; knowledge spaces over the same variants); empty
    /// when the step runs alone. The first of them the executor reaches computes them all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares_pass: Vec<StepId>,
    /// For a train step: where each optimisation step starts, the input of a decoder layer or
    /// the point past its attention; the residual stream there is computed once per edit case
    /// (`plan/prefix.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_prefix: Option<ResidualPoint>,
    pub origin: Origin,
}

/// A recipe ready to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub recipe: Recipe,
    pub source: String,
    pub device: Device,
    pub model: Option<ModelDims>,
    pub metrics: Vec<Metric>,
    pub steps: Vec<Step>,
    /// The recipe's `of:` layer selections, the paper's reading and this model's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depths: Vec<crate::sema::Depth>,
}

impl Plan {
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.get(id.0 as usize).filter(|s| s.id == id)
    }

    /// Steps of a stage, in execution order (a train body's steps excluded from `PerEdit`).
    pub fn stage(&self, stage: Stage) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.stage == stage)
    }

    /// The body of a train step, in order.
    pub fn body(&self, train: StepId) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.parent == Some(train))
    }
}
