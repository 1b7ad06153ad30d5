//! Frozen prefixes: the decoder layers a train step's forward passes need not rerun.
//!
//! During a `train` step, only what its trained tensors touch changes. Below the lowest layer
//! any of them sits in, the clean edit input and the preserved samples of a `kl_to_original`
//! term produce the same residual stream at every optimisation step, so the executor computes
//! it once per edit case and each step runs the layers from there on: FT-L of the last of six
//! layers runs one layer per step instead of six. Rows that change between steps (variants
//! drawn in the body, latents perturbed at the input) and passes that read hidden states need
//! the whole pass; the executor runs those whole and starts the fixed rows from the prefix, so
//! ASAM's clean target row, its preserved samples and its alignment's clean anchor run one
//! layer per step while its adversarial variants run all six.
//!
//! The prefix may end inside a layer. When everything trained in the lowest layer belongs to
//! its feed-forward half, that layer's attention (UniKE's memory read included) sees the same
//! input at every step too, so the prefix runs it as well and the steps start at the FFN:
//! FT-L and ASAM's fixed rows then run one FFN and no attention per step, and UniKE's steps
//! skip the first memory layer's retrieval.

use super::types::{Step, StepId};
use crate::model::ResidualPoint;
use crate::sema::site::{ComponentKind, LinearSite};
use crate::sema::{Op, ParamOwner};

/// Sets each train step's `frozen_prefix`. Layers are known only when a model is bound.
pub(super) fn frozen_prefixes(steps: &mut [Step]) {
    let points: Vec<(StepId, Option<ResidualPoint>)> = (steps.iter())
        .filter_map(|s| match &s.op {
            Op::Train(t) => Some((s.id, first_changed_point(s.id, t, steps))),
            _ => None,
        })
        .collect();
    for (id, point) in points {
        if let Some(step) = steps.iter_mut().find(|s| s.id == id) {
            step.frozen_prefix = point.filter(|p| *p != ResidualPoint::EMBEDDINGS);
        }
    }
}

/// The earliest point of the residual stream a train step changes; `None` when unknown. It is
/// the input of the lowest layer holding a trained tensor, or past that layer's attention when
/// every trained tensor there belongs to its feed-forward half (a projection's weight or LoRA
/// there, or extra FFN neurons): the attention, and UniKE's memory read in it, then sees the
/// same input at every step. A body that writes to a memory (`remember`) changes what every
/// memory layer reads, so it gets no prefix.
fn first_changed_point(
    train_id: StepId,
    train: &crate::sema::ops::Train,
    steps: &[Step],
) -> Option<ResidualPoint> {
    let writes_memory =
        (steps.iter()).any(|s| s.parent == Some(train_id) && matches!(s.op, Op::Remember(_)));
    if writes_memory {
        return None;
    }
    let mut first: Option<ResidualPoint> = None;
    for p in &train.params {
        let (layers, feed_forward) = match &p.owner {
            ParamOwner::Weight { site } => (site.layers.resolved.clone(), is_feed_forward(site)),
            ParamOwner::Adapter { adapter, .. } => {
                let step = steps.iter().find(|s| s.id == *adapter)?;
                match &step.op {
                    Op::Lora(l) => (l.site.layers.resolved.clone(), is_feed_forward(&l.site)),
                    // Extra neurons add to the FFN output (`model::llama`), whatever the site.
                    Op::ExtraNeurons(n) => (n.site.layers.resolved.clone(), true),
                    _ => return None,
                }
            }
        };
        let layer = layers?.into_iter().min()?;
        let point = ResidualPoint {
            layer,
            past_attention: feed_forward,
        };
        first = Some(first.map_or(point, |f| f.min(point)));
    }
    first
}

fn is_feed_forward(site: &LinearSite) -> bool {
    ComponentKind::of(site.proj) == ComponentKind::Mlp
}
