//! The optimisation step: what it trains, its loss and its projections, as one operation.

use serde::Serialize;

use super::text::{optimizer_text, params_text};
use super::{param_refs, stream_refs, OpSpec};
use crate::sema::program::{LossKind, LossTerm, NodeId, Optimizer, Param, Projection};
use crate::sema::Symbol;

/// Runs `steps` optimisation steps: the `body` (per-step variants), the forward passes of
/// `loss` (the weighted sum of its terms), backward, the `grad` projections, the optimiser's
/// update, the `update` projections, apply. A projection right-multiplies a gradient (or
/// update) by its space's projector, times its scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Train {
    pub params: Vec<Param>,
    pub steps: usize,
    pub optimizer: Optimizer,
    pub body: Vec<NodeId>,
    pub loss: Vec<LossTerm>,
    pub projections: Vec<Projection>,
}

impl OpSpec for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        let mut out: Vec<&mut NodeId> = self.params.iter_mut().flat_map(param_refs).collect();
        out.extend(self.body.iter_mut());
        out.extend(self.loss.iter_mut().flat_map(|t| match &mut t.kind {
            LossKind::Nll { on } => on.iter_mut().collect::<Vec<_>>(),
            LossKind::KlToOriginal { .. } => Vec::new(),
            LossKind::RankAlign { hidden, over, .. } => {
                let mut out = stream_refs(&mut hidden.stream);
                out.push(over);
                out
            }
        }));
        out.extend(self.projections.iter_mut().map(|p| &mut p.space));
        out
    }
    fn not_inputs(&self) -> Vec<NodeId> {
        self.body.clone()
    }
    fn reads_edit(&self) -> bool {
        true
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!(
            "train {} for {} steps with {}",
            params_text(&self.params),
            self.steps,
            optimizer_text(&self.optimizer)
        )
    }
    fn detail_lines(&self) -> Vec<String> {
        let terms: Vec<String> = self.loss.iter().map(term_text).collect();
        let mut lines = vec![format!("loss {}", terms.join(" + "))];
        lines.extend(self.projections.iter().map(projection_text));
        lines
    }
}

fn term_text(t: &LossTerm) -> String {
    let body = match &t.kind {
        LossKind::Nll { on: None } => "nll(target)".to_string(),
        LossKind::Nll { on: Some(v) } => format!("nll(target, on: {v})"),
        LossKind::KlToOriginal { over } => format!("kl_to_original(over: {over})"),
        LossKind::RankAlign {
            hidden,
            over,
            tau,
            anchor,
        } => {
            let at = hidden.at.name();
            let anchor = anchor.name();
            format!(
                "rank_align(hidden({}, at: {at}), over: {over}, tau: {tau}, anchor: {anchor})",
                hidden.stream
            )
        }
    };
    if t.weight == 1.0 {
        body
    } else {
        format!("{} * {body}", t.weight)
    }
}

fn projection_text(p: &Projection) -> String {
    let kind: &str = p.kind.into();
    let scale = if p.scale == 1.0 {
        String::new()
    } else {
        format!(" scale {}", p.scale)
    };
    format!("project {kind} {} onto {}{scale}", p.path, p.space)
}
