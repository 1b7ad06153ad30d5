//! Frozen prefixes: the decoder layers a train step's forward passes need not rerun.
//!
//! During a `train` step, only what its trained tensors touch changes. Below the lowest layer
//! any of them sits in, the clean edit input and the preserved samples of a `kl_to_original`
//! term produce the same residual stream at every optimisation step, so the executor computes
//! it once per edit case and each step runs the layers from there on: FT-L of the last of six
//! layers runs one layer per step instead of six. Rows that change between steps (variants
//! drawn in the body, latents perturbed at the input) and passes that read hidden states need
//! the whole pass; the executor runs those whole and starts the fixed rows from the prefix, so
//! ASAM's clean target row and its preserved samples run one layer per step while its
//! adversarial variants run all six.

use super::types::{Step, StepId};
use crate::sema::{Op, ParamOwner};

/// Sets each train step's `frozen_prefix`. Layers are known only when a model is bound.
pub(super) fn frozen_prefixes(steps: &mut [Step]) {
    let first_layers: Vec<(StepId, Option<usize>)> = (steps.iter())
        .filter_map(|s| match &s.op {
            Op::Train(t) => Some((s.id, first_trained_layer(t, steps))),
            _ => None,
        })
        .collect();
    for (id, first) in first_layers {
        if let Some(step) = steps.iter_mut().find(|s| s.id == id) {
            step.frozen_prefix = first.filter(|l| *l > 0);
        }
    }
}

/// The lowest decoder layer whose computation a train step changes; `None` when unknown.
fn first_trained_layer(train: &crate::sema::ops::Train, steps: &[Step]) -> Option<usize> {
    let mut first: Option<usize> = None;
    for p in &train.params {
        let layers = match &p.owner {
            ParamOwner::Weight { site } => site.layers.resolved.clone(),
            ParamOwner::Adapter { adapter, .. } => {
                let step = steps.iter().find(|s| s.id == *adapter)?;
                match &step.op {
                    Op::Lora(l) => l.site.layers.resolved.clone(),
                    Op::ExtraNeurons(n) => n.site.layers.resolved.clone(),
                    _ => None,
                }
            }
        };
        let lowest = layers?.into_iter().min()?;
        first = Some(first.map_or(lowest, |f| f.min(lowest)));
    }
    first
}
