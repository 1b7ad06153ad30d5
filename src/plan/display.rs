//! The human-readable plan: DataFusion-style numbered lines, `--` per nesting level.
//!
//! ```text
//! 01)prepare
//! 02)--#0 covariance layer(1).mlp.down_proj.input over preserve(text: 2048) → [344×344] · cache 1f0e…
//! 03)per_edit
//! 04)--#5 train [#2.B] for 70 steps with sgd(lr: 0.01)
//! 05)----loss nll(target)
//! ```

use std::fmt::Write;

use super::types::{Plan, Stage, Step};
use crate::model::ResidualPoint;
use crate::sema::ops::shape_text;

impl Plan {
    /// The plan as numbered, indented lines, after a short header.
    pub fn display(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan for recipe \"{}\" ({})",
            self.recipe.name, self.source
        );
        let mode = match self.recipe.mode {
            crate::sema::Mode::Single => "single".to_string(),
            crate::sema::Mode::Sequential { k } => format!("sequential (k = {k})"),
        };
        let _ = writeln!(
            out,
            "  mode {mode} · seed {} · device {}",
            self.recipe.seed,
            self.device.name()
        );
        match &self.model {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "  model {}: {} layers, hidden {}, intermediate {}, {} heads ({} kv), {} vision tokens",
                    m.family, m.num_layers, m.hidden, m.intermediate, m.heads, m.kv_heads, m.vision_tokens
                );
            }
            None => {
                let _ = writeln!(out, "  no model bound: layers unresolved, shapes unknown");
            }
        }
        for d in &self.depths {
            let model = d.model.as_deref().unwrap_or("unresolved (no model bound)");
            let _ = writeln!(out, "  depth {}: {} → {model}", d.written, d.paper);
        }
        let mut lines: Vec<(usize, String)> = Vec::new();
        for stage in [Stage::Prepare, Stage::PerEdit] {
            let steps: Vec<&Step> = self.stage(stage).collect();
            if steps.is_empty() {
                continue;
            }
            lines.push((0, stage.name().to_string()));
            for step in steps {
                lines.push((1, self.line(step)));
                for inner in self.body(step.id) {
                    lines.push((2, self.line(inner)));
                }
                lines.extend(step.op.spec().detail_lines().into_iter().map(|l| (2, l)));
            }
        }
        let metrics: Vec<&str> = self.metrics.iter().map(|m| m.name()).collect();
        lines.push((0, format!("evaluate {}", metrics.join(", "))));
        let width = lines.len().to_string().len().max(2);
        for (i, (depth, text)) in lines.iter().enumerate() {
            let _ = writeln!(out, "{:0width$}){}{text}", i + 1, "--".repeat(*depth));
        }
        out
    }

    fn line(&self, step: &Step) -> String {
        let mut text = format!("{} {}", step.id, step.op.spec().describe());
        if let Some(shape) = step.output.as_ref().and_then(|o| o.shape.as_ref()) {
            let _ = write!(text, " → {}", shape_text(shape));
        }
        if step.device != self.device {
            let _ = write!(text, " · on {}", step.device.name());
        }
        if step.hoisted {
            text.push_str(" · hoisted");
        }
        if !step.shares_pass.is_empty() {
            let ids: Vec<String> = (step.shares_pass.iter())
                .filter(|id| **id != step.id)
                .map(|id| id.to_string())
                .collect();
            let _ = write!(text, " · one pass with {}", ids.join(", "));
        }
        if let Some(point) = step.frozen_prefix {
            let _ = write!(text, " · {} once per edit", frozen_part(point));
        }
        if let Some(cache) = &step.cache {
            let _ = write!(text, " · cache {}", cache.digest);
        }
        text
    }
}

/// What a frozen prefix ending at `point` computes: "layers 0–4", "layer 0", "layers 0–4 and
/// layer 5's attention", "layer 0's attention".
fn frozen_part(point: ResidualPoint) -> String {
    let whole = match point.layer {
        0 => None,
        1 => Some("layer 0".to_string()),
        l => Some(format!("layers 0–{}", l - 1)),
    };
    let attention = point
        .past_attention
        .then(|| format!("layer {}'s attention", point.layer));
    match (whole, attention) {
        (Some(w), Some(a)) => format!("{w} and {a}"),
        (Some(w), None) => w,
        (None, Some(a)) => a,
        (None, None) => "nothing".to_string(),
    }
}
