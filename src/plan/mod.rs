//! Stage 3: checked program → plan.
//!
//! [`plan`] decides how often each operation runs (hoisting per-edit work that does not depend on
//! the edit case out of the loop), which prepare steps are cached on disk and under what key, and
//! on which device each step runs. The [`Plan`] is flat, serialisable data: the executor walks
//! `steps` in order, runs `prepare` once, then for every edit case the `per_edit` steps, looping
//! over each train step's body. [`Plan::display`] prints it as numbered, indented lines.

mod cache;
mod display;
pub mod estimate;
mod passes;
mod prefix;
mod schedule;
mod types;

pub use estimate::{estimate, Estimate};
pub use types::*;

use crate::sema::ops;
use crate::sema::{AdapterParam, Op, Param, ParamOwner, Program};

/// Choices that are not part of the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    pub device: Device,
    /// Compute the layers below a train step's trained tensors once per edit case
    /// (`plan/prefix.rs`); off only to check that it changes nothing.
    pub reuse_frozen_prefix: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            device: Device::Cpu,
            reuse_frozen_prefix: true,
        }
    }
}

/// Schedules a checked program.
pub fn plan(program: &Program, options: &PlanOptions) -> Plan {
    let scheduled = schedule::schedule(&program.nodes);
    let keys = cache::cache_keys(&scheduled, program.recipe.seed);
    let steps = scheduled
        .into_iter()
        .map(|s| {
            let mut op = s.node.op;
            respell_params(&mut op);
            let output = op.spec().output().map(|kind| Output {
                kind,
                shape: s.node.shape.clone(),
            });
            let device = match op.spec().host_only() {
                true => Device::Cpu,
                false => options.device,
            };
            Step {
                id: s.node.id,
                stage: s.stage,
                parent: s.parent,
                inputs: op.inputs(),
                output,
                device,
                cache: keys.get(&s.node.id).cloned(),
                hoisted: s.hoisted,
                shares_pass: Vec::new(),
                frozen_prefix: None,
                origin: s.node.origin,
                op,
            }
        })
        .collect::<Vec<Step>>();
    let mut steps = steps;
    passes::share_passes(&mut steps);
    if options.reuse_frozen_prefix {
        prefix::frozen_prefixes(&mut steps);
    }
    Plan {
        recipe: program.recipe.clone(),
        source: program.source.clone(),
        device: options.device,
        model: program.model.clone(),
        metrics: program.metrics.clone(),
        steps,
        depths: program.depths.clone(),
    }
}

/// Adapter tensors are spelled by their adapter's id (`#4.B`); ids changed when steps were
/// renumbered, so the spellings are rebuilt.
fn respell_params(op: &mut Op) {
    fn respell(p: &mut Param) {
        if let ParamOwner::Adapter { adapter, name } = &p.owner {
            let name: AdapterParam = *name;
            p.path = format!("{adapter}.{}", name.name());
        }
    }
    match op {
        Op::Lora(ops::Lora { params, .. })
        | Op::ExtraNeurons(ops::ExtraNeurons { params, .. })
        | Op::Freeze(ops::Freeze { params }) => params.iter_mut().for_each(respell),
        Op::Train(ops::Train {
            params,
            projections,
            ..
        }) => {
            params.iter_mut().for_each(respell);
            for pr in projections.iter_mut().filter(|pr| pr.layers.is_none()) {
                if let Some(p) = params.get(pr.param) {
                    pr.path = p.path.clone();
                }
            }
        }
        _ => {}
    }
}
