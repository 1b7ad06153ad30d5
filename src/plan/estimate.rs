//! Up-front bounds: the memory a plan needs at its peak and the work it does, estimated from the
//! model's dimensions before any tensor exists.
//!
//! The estimate is an order-of-magnitude account, not a measurement: every tensor a step
//! materialises at once is counted at its full size, with an assumed sequence of the image's
//! tokens plus [`TEXT_TOKENS`] text tokens. What it is for is refusing, with the recipe line and
//! the number, a run that cannot fit (`perturb(count: 1000000)` on a 7B model asks for terabytes
//! of variant latents), before the model is loaded; `mkedsl plan --model` prints it and
//! `mkedsl run --max-memory` overrides the machine's limit.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::config::ModelDims;
use crate::plan::{Plan, Step, StepId};
use crate::sema::ops;
use crate::sema::program::{Optimizer, Param};
use crate::sema::site::Stream;
use crate::sema::{DataSpec, Op};

/// Text tokens assumed per sequence (question and answer), besides the image's tokens.
pub const TEXT_TOKENS: usize = 64;
/// Sequences per evaluation forward pass assumed (the `--batch-size` default).
pub const EVAL_BATCH: usize = 16;
/// Logit rows the evaluator materialises at most per forward pass (see `eval::probe`).
const EVAL_LOGIT_ROWS: usize = 2048;

/// What a plan is estimated to need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Tokens per sequence assumed.
    pub seq: usize,
    /// Bytes of the loaded weights.
    pub weights: u64,
    /// The precision they are loaded in (`--dtype`: f32, bf16, f16).
    pub weights_dtype: String,
    /// The step with the largest working memory: its id, bytes and what they hold.
    pub peak_step: Option<(StepId, u64, String)>,
    /// The train step that holds the most: its activations and its optimiser state.
    pub training: Option<TrainingMemory>,
    /// Working memory of scoring one evaluation batch.
    pub evaluation: u64,
    /// Weights plus the larger of the peak step's and the evaluation's working memory.
    pub total: u64,
    /// Forward (and backward) passes over the edit sequence per edit case.
    pub passes_per_edit: u64,
    /// Preserved samples and memory triplets read once, before the first edit.
    pub prepare_samples: u64,
}

fn mul(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

/// Bytes of the activations one sequence of `seq` tokens keeps for a backward pass through the
/// decoder: per layer the residual stream and its normalisations, the attention's queries, keys,
/// values and scores, and the MLP's three intermediate-wide tensors (f32).
fn activations(dims: &ModelDims, seq: usize) -> u64 {
    let per_token = mul(&[8, dims.hidden as u64])
        .saturating_add(mul(&[3, dims.intermediate as u64]))
        .saturating_add(mul(&[dims.heads as u64, seq as u64]));
    mul(&[dims.num_layers as u64, seq as u64, per_token, 4])
}

/// Bytes of the activations for a backward pass through the layers from `first` on only: the
/// layers below a train step's frozen prefix run forward once per edit and keep only their
/// output (`plan/prefix.rs`).
fn activations_from(dims: &ModelDims, seq: usize, first: usize) -> u64 {
    let layers = dims.num_layers.saturating_sub(first).max(1) as u64;
    activations(dims, seq) / (dims.num_layers.max(1) as u64) * layers
}

/// Elements of the tensors a train step updates: each parameter's per-layer shape times its
/// layers (one layer where unknown).
fn trained_elements(params: &[Param]) -> u64 {
    params
        .iter()
        .map(|p| {
            let per_layer = p
                .shape
                .as_ref()
                .map_or(0, |s| mul(&s.iter().map(|&d| d as u64).collect::<Vec<_>>()));
            let layers = p
                .input
                .as_ref()
                .and_then(|s| s.layers.as_ref())
                .and_then(|l| l.count())
                .unwrap_or(1) as u64;
            mul(&[per_layer, layers.max(1)])
        })
        .fold(0u64, u64::saturating_add)
}

/// f32 copies an optimiser keeps per trained value besides the value itself: the gradient, and
/// Adam's two moments.
fn optimiser_copies(optimizer: &Optimizer) -> (u64, &'static str) {
    match optimizer {
        Optimizer::Sgd { .. } => (1, "a gradient"),
        Optimizer::Adam { .. } => (3, "a gradient and Adam's two moments"),
    }
}

/// What a train step holds at once: the activations of its sequences through the layers above
/// its frozen prefix, and its trained values with their gradients and optimiser state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingMemory {
    pub step: StepId,
    /// Sequences per optimisation step (the clean input and any adversarial variants).
    pub sequences: u64,
    /// The first layer a step runs (0 without a frozen prefix).
    pub first_layer: usize,
    pub activations: u64,
    /// Values trained.
    pub trained: u64,
    /// Bytes of the values, gradients and optimiser moments (f32).
    pub optimiser: u64,
    /// What the optimiser keeps per value besides the value: `a gradient`, or a gradient and
    /// Adam's two moments.
    pub optimiser_holds: String,
}

fn training_memory(
    plan: &Plan,
    dims: &ModelDims,
    seq: usize,
    step: &Step,
) -> Option<TrainingMemory> {
    let Op::Train(ops::Train {
        body,
        params,
        optimizer,
        ..
    }) = &step.op
    else {
        return None;
    };
    let sequences = 1 + body
        .iter()
        .filter_map(|id| match plan.step(*id).map(|s| &s.op) {
            Some(Op::Adversarial(ops::Adversarial { count, .. })) => Some(*count as u64),
            _ => None,
        })
        .sum::<u64>();
    // A prefix past a layer's attention still counts that layer's activations (an upper bound).
    let first_layer = step.frozen_prefix.map_or(0, |p| p.layer);
    let trained = trained_elements(params);
    let (copies, holds) = optimiser_copies(optimizer);
    Some(TrainingMemory {
        step: step.id,
        sequences,
        first_layer,
        activations: mul(&[sequences, activations_from(dims, seq, first_layer)]),
        trained,
        optimiser: mul(&[trained, copies + 1, 4]),
        optimiser_holds: holds.to_string(),
    })
}

/// The width and layer count of a stream (the model's hidden size when unknown).
fn stream_size(dims: &ModelDims, stream: &Stream) -> (u64, u64) {
    let width = stream.width.unwrap_or(dims.hidden) as u64;
    let layers = stream.layers.as_ref().and_then(|l| l.count()).unwrap_or(1) as u64;
    (width, layers.max(1))
}

fn step_memory(plan: &Plan, dims: &ModelDims, seq: usize, step: &Step) -> Option<(u64, String)> {
    let t = seq as u64;
    let d = dims.hidden as u64;
    match &step.op {
        Op::Perturb(ops::Perturb { count, .. }) => Some((
            mul(&[*count as u64, t, d, 4]),
            format!("{count} variants × {seq} tokens × {d} wide"),
        )),
        Op::Adversarial(ops::Adversarial { count, .. }) => Some((
            mul(&[*count as u64, activations(dims, seq)]),
            format!("{count} adversarial sequences of {seq} tokens through forward and backward"),
        )),
        Op::Covariance(ops::Covariance { stream, .. }) => {
            let (w, l) = stream_size(dims, stream);
            Some((
                mul(&[l, w, w, 8]),
                format!("{l} covariance(s) of {w} × {w}"),
            ))
        }
        Op::NullSpace(ops::NullSpace { covariance, .. })
        | Op::TopSpace(ops::TopSpace { covariance, .. }) => {
            let Some(Op::Covariance(ops::Covariance { stream, .. })) =
                plan.step(*covariance).map(|s| &s.op)
            else {
                return None;
            };
            let (w, l) = stream_size(dims, stream);
            Some((
                mul(&[l, w, w, 8, 3]),
                format!("eigendecompositions of {l} matrix(es) of {w} × {w}"),
            ))
        }
        Op::KnowledgeSpace(ops::KnowledgeSpace {
            stream, variants, ..
        }) => {
            let count = match plan.step(*variants).map(|s| &s.op) {
                Some(Op::Perturb(ops::Perturb { count, .. }))
                | Some(Op::Adversarial(ops::Adversarial { count, .. })) => *count as u64,
                _ => 1,
            };
            let (w, l) = stream_size(dims, stream);
            Some((
                mul(&[count, t, w, 4]).saturating_add(mul(&[l, w, w, 8, 2])),
                format!("{count} variants' rows × {w} wide and {l} covariance(s)"),
            ))
        }
        Op::IncontextMemory(ops::IncontextMemory { triplets, at }) => {
            let DataSpec::Hallucinations { count } = triplets else {
                return None;
            };
            let (w, l) = stream_size(dims, at);
            Some((
                mul(&[*count as u64, l, w, 4, 3]),
                format!("{count} memory triplets × {l} layer(s) × {w} wide"),
            ))
        }
        Op::Train(ops::Train { steps, .. }) => {
            let t = training_memory(plan, dims, seq, step)?;
            let layers = match t.first_layer {
                0 => "every layer".to_string(),
                f if f + 1 >= dims.num_layers => format!("layer {f}"),
                f => format!("layers {f}–{}", dims.num_layers - 1),
            };
            Some((
                t.activations.saturating_add(t.optimiser),
                format!(
                    "{} sequence(s) of {seq} tokens through {layers} forward and backward, {steps} steps; {} trained values, each with {}",
                    t.sequences, t.trained, t.optimiser_holds
                ),
            ))
        }
        _ => None,
    }
}

/// Estimates `plan` on a model of `dims` whose weights take `weights` bytes in `precision`.
/// Working memory is counted in f32 whatever the weights' precision: activations through
/// half-precision layers are half that size, but trained tensors, their gradients, logits and
/// statistics are f32, and an estimate that errs should err high.
pub fn estimate(
    plan: &Plan,
    dims: &ModelDims,
    weights: u64,
    precision: crate::model::Precision,
) -> Estimate {
    let seq = dims.vision_tokens + TEXT_TOKENS;
    let mut peak: Option<(StepId, u64, String)> = None;
    for step in &plan.steps {
        if let Some((bytes, what)) = step_memory(plan, dims, seq, step) {
            if peak.as_ref().is_none_or(|(_, b, _)| bytes > *b) {
                peak = Some((step.id, bytes, what));
            }
        }
    }
    let training = plan
        .steps
        .iter()
        .filter_map(|s| training_memory(plan, dims, seq, s))
        .max_by_key(|t| t.activations.saturating_add(t.optimiser));
    let evaluation = mul(&[EVAL_BATCH as u64, activations(dims, seq)]) / 2
        + mul(&[EVAL_LOGIT_ROWS as u64, dims.vocab as u64, 4]);
    let working = peak.as_ref().map_or(0, |(_, b, _)| *b).max(evaluation);

    let mut passes: u64 = 0;
    let mut prepare_samples: u64 = 0;
    let mut sets: Vec<&DataSpec> = Vec::new();
    for step in &plan.steps {
        match &step.op {
            Op::Train(ops::Train { steps, body, .. }) => {
                let mut per_step: u64 = 1;
                for id in body {
                    if let Some(Op::Adversarial(ops::Adversarial {
                        count, steps: s, ..
                    })) = plan.step(*id).map(|b| &b.op)
                    {
                        per_step = per_step.saturating_add(mul(&[*count as u64, *s as u64 + 1]));
                    }
                }
                passes = passes.saturating_add(mul(&[*steps as u64, per_step]));
            }
            Op::Perturb(ops::Perturb { count, .. }) if step.parent.is_none() => {
                passes = passes.saturating_add(*count as u64);
            }
            Op::Covariance(ops::Covariance { over, .. }) if !sets.contains(&over) => {
                sets.push(over)
            }
            Op::IncontextMemory(ops::IncontextMemory {
                triplets: DataSpec::Hallucinations { count },
                ..
            }) => prepare_samples = prepare_samples.saturating_add(*count as u64),
            _ => {}
        }
    }
    for set in sets {
        if let DataSpec::Preserve { text, vqa, caption } = set {
            prepare_samples = prepare_samples.saturating_add((text + vqa + caption) as u64);
        }
    }
    Estimate {
        seq,
        weights,
        weights_dtype: precision.to_string(),
        total: weights.saturating_add(working),
        peak_step: peak,
        training,
        evaluation,
        passes_per_edit: passes,
        prepare_samples,
    }
}

/// Bytes as a short human number (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a size such as `64G`, `512MiB`, `1.5T` or a plain byte count.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = value * scale;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), where the system says.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

impl Estimate {
    /// The lines `mkedsl plan --model` prints under the plan.
    pub fn display(&self, plan: &Plan, limit: Option<u64>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "estimate (sequences of {} tokens assumed: the image's plus {TEXT_TOKENS} text)",
            self.seq
        );
        let _ = writeln!(
            out,
            "  weights      {} ({})",
            human_bytes(self.weights),
            self.weights_dtype
        );
        if let Some((id, bytes, what)) = &self.peak_step {
            let op = plan.step(*id).map_or("?", |s| s.op.name());
            let _ = writeln!(
                out,
                "  peak step    {} at step {id} `{op}` ({what})",
                human_bytes(*bytes)
            );
        }
        if let Some(t) = &self.training {
            let _ = writeln!(
                out,
                "  training     {} activations ({} sequence(s), from layer {}) + {} for {} trained values, each with {} (f32), at step {}",
                human_bytes(t.activations),
                t.sequences,
                t.first_layer,
                human_bytes(t.optimiser),
                t.trained,
                t.optimiser_holds,
                t.step
            );
        }
        let _ = writeln!(out, "  evaluation   {}", human_bytes(self.evaluation));
        let _ = writeln!(
            out,
            "  total        {}{}",
            human_bytes(self.total),
            limit.map_or(String::new(), |l| format!(
                " of {} available{}",
                human_bytes(l),
                if self.total > l {
                    " — does not fit"
                } else {
                    ""
                }
            ))
        );
        let _ = writeln!(
            out,
            "  work         {} forward/backward passes per edit; {} preserved samples or triplets before the first edit",
            self.passes_per_edit, self.prepare_samples
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("1.5G"), Some(3 << 29));
        assert_eq!(parse_bytes("64GiB"), Some(64 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
