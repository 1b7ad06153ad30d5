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
use crate::sema::{
    Alpha, Cut, LoraInit, LossKind, LossTerm, Op, Optimizer, Param, Perturbation, Projection,
    Symbol,
};

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
        let mut lines: Vec<(usize, String)> = Vec::new();
        for stage in [Stage::Prepare, Stage::PerEdit] {
            let steps: Vec<&Step> = self.stage(stage).collect();
            if steps.is_empty() {
                continue;
            }
            lines.push((0, stage.name().to_string()));
            for step in steps {
                lines.push((1, self.line(step)));
                if let Op::Train {
                    loss, projections, ..
                } = &step.op
                {
                    for inner in self.body(step.id) {
                        lines.push((2, self.line(inner)));
                    }
                    lines.push((2, loss_text(loss)));
                    lines.extend(projections.iter().map(|p| (2, projection_text(p))));
                }
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
        let mut text = format!("{} {}", step.id, describe(&step.op));
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
        if let Some(cache) = &step.cache {
            let _ = write!(text, " · cache {}", cache.digest);
        }
        text
    }
}

fn shape_text(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×")
    )
}

fn params_text(params: &[Param]) -> String {
    let names: Vec<String> = params.iter().map(|p| p.path.clone()).collect();
    format!("[{}]", names.join(", "))
}

fn shapes_text(params: &[Param]) -> String {
    params
        .iter()
        .filter_map(|p| {
            let short = p.path.rsplit('.').next().unwrap_or(&p.path);
            p.shape
                .as_ref()
                .map(|s| format!("{short} {}", shape_text(s)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn optimizer_text(o: &Optimizer) -> String {
    match o {
        Optimizer::Sgd { lr } => format!("sgd(lr: {lr})"),
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            weight_decay,
        } => {
            format!("adam(lr: {lr}, beta1: {beta1}, beta2: {beta2}, weight_decay: {weight_decay})")
        }
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

/// One operation with its arguments, as a line of the plan.
pub(super) fn describe(op: &Op) -> String {
    match op {
        Op::Covariance { stream, over } => format!("covariance {stream} over {over}"),
        Op::NullSpace {
            covariance, cut, ..
        } => match cut {
            Cut::Below(x) => format!("null_space of {covariance} below {x}"),
            Cut::Rank(r) => format!("null_space of {covariance} rank {r}"),
        },
        Op::TopSpace { covariance, rank } => format!("top_space of {covariance} rank {rank}"),
        Op::KnowledgeSpace {
            stream,
            variants,
            top,
            keep_above,
            rank,
        } => {
            format!("knowledge_space {stream} from {variants} top {top} keep_above {keep_above} rank {rank}")
        }
        Op::Lora {
            site,
            rank,
            alpha,
            init,
            params,
        } => {
            let init = match init {
                LoraInit::Kaiming => "kaiming".to_string(),
                LoraInit::NullSpaceSvd { space } => {
                    format!("null_space_svd({space}), W ← W − (alpha/rank)·BA")
                }
            };
            let shapes = shapes_text(params);
            let shapes = if shapes.is_empty() {
                String::new()
            } else {
                format!(" · {shapes}")
            };
            format!("lora {site} rank {rank} alpha {alpha} init {init}{shapes}")
        }
        Op::ExtraNeurons {
            site,
            count,
            regulate,
            params,
        } => {
            let reg = match regulate {
                Some(r) => format!(" regulate {} beta {}", r.direction, r.beta),
                None => String::new(),
            };
            let shapes = shapes_text(params);
            let shapes = if shapes.is_empty() {
                String::new()
            } else {
                format!(" · {shapes}")
            };
            format!("extra_neurons {site} count {count}{reg}{shapes}")
        }
        Op::LatentIcl {
            site,
            memory,
            top_k,
            alpha,
        } => {
            let alpha = match alpha {
                Alpha::Fixed { value } => value.to_string(),
                Alpha::SemanticGate { encoders } => format!("semantic_gate({encoders})"),
            };
            format!("latent_icl {site} memory {memory} top_k {top_k} alpha {alpha}")
        }
        Op::Freeze { params } => format!("freeze {}", params_text(params)),
        Op::Perturb {
            kinds,
            count,
            apply,
        } => {
            let kinds: Vec<String> = kinds
                .iter()
                .map(|k| match k {
                    Perturbation::MaskVision { window } => format!("mask_vision(window: {window})"),
                    Perturbation::NoiseText { sigma } => format!("noise_text(sigma: {sigma})"),
                })
                .collect();
            let apply = apply.name();
            format!("perturb [{}] count {count} apply {apply}", kinds.join(", "))
        }
        Op::Adversarial {
            latents,
            budget,
            count,
            steps,
            init,
            norm,
        } => {
            let latents: Vec<String> = latents.iter().map(|l| l.path.clone()).collect();
            let (init, norm) = (init.name(), norm.name());
            format!("adversarial [{}] budget {budget} count {count} steps {steps} init {init} norm {norm}", latents.join(", "))
        }
        Op::IncontextMemory { triplets, at } => format!("incontext_memory {at} of {triplets}"),
        Op::ContrastiveEncoders {
            memory,
            hidden,
            depth,
            lr,
            steps,
            batch,
        } => {
            format!("contrastive_encoders on {memory} hidden {hidden} depth {depth} lr {lr} steps {steps} batch {batch}")
        }
        Op::TruthDirection { encoders } => format!("truth_direction of {encoders}"),
        Op::Remember { memory } => format!("remember edit case into {memory}"),
        Op::Train {
            params,
            steps,
            optimizer,
            ..
        } => {
            format!(
                "train {} for {steps} steps with {}",
                params_text(params),
                optimizer_text(optimizer)
            )
        }
    }
}

fn loss_text(terms: &[LossTerm]) -> String {
    format!(
        "loss {}",
        terms.iter().map(term_text).collect::<Vec<_>>().join(" + ")
    )
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
