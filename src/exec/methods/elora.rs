//! ELoRA's per-edit work: the perturbed variants of the edit case (Appendix C.2) and the
//! knowledge space built from them (Alg. 1 lines 11-23).
//!
//! - `mask_vision(window)`: zero `window` consecutive image tokens starting at a uniform
//!   `s ∈ [0, N_v − window]` (ELoRA C.2).
//! - `noise_text(sigma)`: add `N(0, σ²)` to every prompt text-token embedding.
//!
//! The knowledge space of a stream: run the clean sequence and every variant through the model in
//! one batch (in chunks), read the stream's rows of each, `C_b = K_bᵀK_b`; the top-`top`
//! eigenvector projector `P_b` of each; similarity `s_b = tr(P_b P_0) / top` to the clean one's;
//! the mean of the `C_b` with `s_b > keep_above`; its top-`rank` eigenvectors. Several knowledge
//! spaces over the same variants (ELoRA's up and down projections) share the forward passes.

use candle_core::{DType, Device, Tensor};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::input::EditInput;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::taps::{deepest, Reading};
use crate::exec::values::Variants;
use crate::linalg::{principal_subspace, projector_similarity, Subspace};
use crate::sema::ops;
use std::collections::HashMap;

use crate::exec::executor::Executor;
use crate::exec::rng::{self, Rng};
use crate::exec::sites::stream_taps;
use crate::exec::values::{PerLayer, Value, Values};
use crate::model::batch::TokenKind;
use crate::model::site::Site;
use crate::model::{Hooks, Latents};
use crate::plan::{Step, StepId};
use crate::sema::{Apply, Op, Perturbation};

/// Tokens per forward pass of the knowledge-space construction: the clean sequence and its
/// variants go through in chunks of `VARIANT_TOKENS / T` rows (511 variants of a 55-token
/// sequence in two passes; of a 600-token LLaVA-7B prompt, 27 rows at a time).
pub const VARIANT_TOKENS: usize = 16_384;

/// One knowledge space to build: a stream read at one layer.
#[derive(Debug, Clone)]
pub struct Request {
    pub reading: Reading,
    pub top: usize,
    pub keep_above: f64,
    pub rank: usize,
}

/// What the filter did, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FilterStats {
    pub variants: usize,
    pub kept: usize,
    pub similarity_sum: f64,
    /// No variant passed the filter, so the clean covariance alone was used.
    pub fell_back: bool,
}

/// Per-row `KᵀK` of every request, row 0 the clean sequence: `out[request][row]` `(w, w)` f64.
pub fn row_covariances(
    state: &EditState,
    edit: &EditInput,
    variants: &Variants,
    readings: &[Reading],
) -> Result<Vec<Vec<Tensor>>> {
    let rows = 1 + variants.count;
    let mut out: Vec<Vec<Tensor>> = vec![Vec::with_capacity(rows); readings.len()];
    let mut sites: Vec<Site> = readings.iter().map(Reading::site).collect();
    sites.sort();
    sites.dedup();
    let chunk = (VARIANT_TOKENS / edit.len().max(1)).max(1);
    let mut start = 0;
    while start < rows {
        let end = (start + chunk).min(rows);
        let mut parts = Vec::new();
        if start == 0 {
            parts.push(edit.latents.embeds.clone());
        }
        let (from, to) = (start.max(1) - 1, end - 1);
        if to > from {
            parts.push(variants.latents.narrow(0, from, to - from)?);
        }
        let embeds = Tensor::cat(&parts, 0)?;
        let latents = Latents {
            embeds,
            layout: edit.layout(end - start),
        };
        let mut hooks = Hooks::new();
        for s in &sites {
            hooks.capture(*s);
        }
        state.model.model.forward_through(
            &latents,
            &mut hooks,
            &state.adapters,
            deepest(readings),
        )?;
        let captured = hooks.take_captured();
        for (reading, slot) in readings.iter().zip(out.iter_mut()) {
            let (_, value) = captured
                .iter()
                .find(|(s, _)| *s == reading.site())
                .ok_or_else(|| {
                    ExecError::internal(format!("nothing captured at {}", reading.site()))
                })?;
            // Every row has the same layout and no padding: (B, T, w) → (B, w, w). An embedding
            // site holds its rows flattened, the same number per row.
            let value = match reading.site() {
                Site::Layer(..) => value.detach(),
                Site::EmbedVision | Site::EmbedText => {
                    let (n, w) = value.dims2()?;
                    let b = end - start;
                    value.detach().reshape((b, n / b.max(1), w))?
                }
            };
            let k = reading.apply(&value)?.to_dtype(DType::F64)?;
            let c = k.transpose(1, 2)?.contiguous()?.matmul(&k)?;
            let c = c.to_device(&Device::Cpu)?;
            for b in 0..c.dim(0)? {
                slot.push(c.get(b)?);
            }
        }
        start = end;
    }
    Ok(out)
}

/// ELoRA's filter and average over per-row covariances (row 0 clean), then the top-`rank` space.
pub fn knowledge_space(
    covariances: &[Tensor],
    request: &Request,
) -> Result<(Subspace, FilterStats)> {
    let (clean, variants) = covariances
        .split_first()
        .ok_or_else(|| ExecError::internal("no covariance for the knowledge space"))?;
    let p0 = principal_subspace(clean, request.top)?;
    let mut stats = FilterStats {
        variants: variants.len(),
        ..FilterStats::default()
    };
    let mut sum: Option<Tensor> = None;
    for c in variants {
        let pb = principal_subspace(c, request.top)?;
        let s = projector_similarity(&pb, &p0)?;
        stats.similarity_sum += s;
        if s > request.keep_above {
            stats.kept += 1;
            sum = Some(match sum {
                Some(acc) => (acc + c)?,
                None => c.clone(),
            });
        }
    }
    let average = match sum {
        Some(sum) => (sum / stats.kept as f64)?,
        None => {
            stats.fell_back = true;
            clean.clone()
        }
    };
    Ok((principal_subspace(&average, request.rank)?, stats))
}

/// What ELoRA's similarity filter did for one knowledge-space step over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KnowledgeSummary {
    pub cases: usize,
    pub stats: FilterStats,
    pub fallbacks: usize,
}

/// `count` perturbed copies of the edit case's input.
pub fn perturb(
    edit: &EditInput,
    kinds: &[Perturbation],
    count: usize,
    apply: Apply,
    rng: &mut Rng,
) -> Result<Variants> {
    let (_, t, d) = edit.latents.embeds.dims3()?;
    let input = edit.input_columns();
    let kinds_of = edit.kinds();
    let visual: Vec<usize> = input
        .clone()
        .filter(|&c| kinds_of.get(c) == Some(&TokenKind::Visual))
        .collect();
    let text: Vec<usize> = input
        .filter(|&c| kinds_of.get(c) == Some(&TokenKind::Text))
        .collect();
    let mut keep = vec![1f32; count * t];
    let mut noise = vec![0f32; count * t * d];
    for row in 0..count {
        let chosen: Vec<Perturbation> = match apply {
            Apply::All => kinds.to_vec(),
            Apply::Each => kinds
                .get(row % kinds.len().max(1))
                .copied()
                .into_iter()
                .collect(),
        };
        for kind in chosen {
            match kind {
                Perturbation::MaskVision { window } => {
                    if window > visual.len() {
                        return Err(ExecError::Numeric {
                            reason: format!(
                                "mask_vision(window: {window}) needs {window} image tokens but the edit case has {}",
                                visual.len()
                            ),
                            help: "choose a window no larger than the image's token count".into(),
                        });
                    }
                    let start = rng.below(visual.len() - window + 1);
                    for &c in &visual[start..start + window] {
                        keep[row * t + c] = 0.0;
                    }
                }
                Perturbation::NoiseText { sigma } => {
                    for &c in &text {
                        let at = (row * t + c) * d;
                        for x in &mut noise[at..at + d] {
                            *x += (sigma * rng.normal()) as f32;
                        }
                    }
                }
            }
        }
    }
    let device = edit.latents.embeds.device();
    let dtype = edit.latents.embeds.dtype();
    let keep = Tensor::from_vec(keep, (count, t, 1), device)?.to_dtype(dtype)?;
    let noise = Tensor::from_vec(noise, (count, t, d), device)?.to_dtype(dtype)?;
    let latents = (edit.repeated(count)?.broadcast_mul(&keep)? + noise)?;
    Ok(Variants {
        latents,
        layout: edit.layout(count),
        count,
    })
}

impl Executor {
    /// `perturb`: the edit case's variants, from the step's own random stream.
    pub(crate) fn perturb_step(
        &mut self,
        step: &Step,
        edit: &EditInput,
        values: &mut Values,
    ) -> Result<()> {
        let Op::Perturb(ops::Perturb {
            kinds,
            count,
            apply,
        }) = &step.op
        else {
            return Err(ExecError::internal("perturb on another op"));
        };
        let mut r = rng::stream(
            self.seed,
            "perturb",
            (edit.case as u64) << 20 | u64::from(step.id.0),
        );
        let v = perturb(edit, kinds, *count, *apply, &mut r)?;
        values.insert(step.id, Value::Variants(v));
        Ok(())
    }

    /// `knowledge_space`: this step and the plan's group sharing its forward passes.
    pub(crate) fn knowledge_space_step(
        &mut self,
        step: &Step,
        stage_steps: &[Step],
        state: &EditState,
        edit: &EditInput,
        values: &mut Values,
    ) -> Result<()> {
        let group: Vec<Step> = stage_steps
            .iter()
            .filter(|s| s.id == step.id || step.shares_pass.contains(&s.id))
            .filter(|s| !values.contains(s.id))
            .cloned()
            .collect();
        self.knowledge_spaces(&group, state, edit, values)
    }

    /// ELoRA's knowledge spaces of `group` (all over the same variants), sharing the forwards.
    fn knowledge_spaces(
        &mut self,
        group: &[Step],
        state: &EditState,
        edit: &EditInput,
        values: &mut Values,
    ) -> Result<()> {
        let mut requests: Vec<(StepId, Option<usize>, Request)> = Vec::new();
        let mut variants_id = None;
        for s in group {
            let Op::KnowledgeSpace(ops::KnowledgeSpace {
                stream,
                variants,
                top,
                keep_above,
                rank,
            }) = &s.op
            else {
                continue;
            };
            variants_id = Some(*variants);
            for (layer, tap) in stream_taps(stream)? {
                requests.push((
                    s.id,
                    layer,
                    Request {
                        reading: Reading::resolve(tap, values, state)?,
                        top: *top,
                        keep_above: *keep_above,
                        rank: *rank,
                    },
                ));
            }
        }
        let Some(variants_id) = variants_id else {
            return Ok(());
        };
        let variants = values.variants(variants_id)?.clone();
        let readings: Vec<Reading> = requests.iter().map(|(_, _, r)| r.reading.clone()).collect();
        let covariances = row_covariances(state, edit, &variants, &readings)?;
        let mut by_step: HashMap<StepId, Vec<(Option<usize>, crate::linalg::Subspace)>> =
            HashMap::new();
        for ((id, layer, request), covs) in requests.iter().zip(&covariances) {
            let (space, stats) = knowledge_space(covs, request)?;
            let summary = self.knowledge.entry(*id).or_default();
            summary.cases += 1;
            summary.stats.variants += stats.variants;
            summary.stats.kept += stats.kept;
            summary.stats.similarity_sum += stats.similarity_sum;
            summary.fallbacks += usize::from(stats.fell_back);
            by_step.entry(*id).or_default().push((*layer, space));
        }
        for (id, spaces) in by_step {
            values.insert(id, Value::Space(PerLayer(spaces)));
        }
        Ok(())
    }
}

impl Execute for ops::Perturb {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.perturb_step(cx.step, cx.edit()?, cx.values)
    }
}

impl Execute for ops::KnowledgeSpace {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        let edit = cx.edit()?;
        ex.knowledge_space_step(cx.step, cx.stage_steps, cx.state, edit, cx.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(vectors: &[[f64; 3]]) -> Tensor {
        let flat: Vec<f64> = vectors.iter().flatten().copied().collect();
        let k = Tensor::from_vec(flat, (vectors.len(), 3), &Device::Cpu).unwrap();
        k.t().unwrap().matmul(&k).unwrap()
    }

    #[test]
    fn the_filter_drops_variants_whose_principal_direction_turned_away() {
        // Clean: energy along e0. Variant 1 agrees (e0 plus a little e1); variant 2 points along
        // e2 only and must be dropped at threshold 0.5 with top = 1.
        let clean = cov(&[[3.0, 0.0, 0.0], [1.0, 0.0, 0.0]]);
        let agree = cov(&[[2.0, 0.5, 0.0]]);
        let away = cov(&[[0.0, 0.0, 4.0]]);
        let request = Request {
            reading: Reading::Site(Site::EmbedText),
            top: 1,
            keep_above: 0.5,
            rank: 1,
        };
        let (space, stats) =
            knowledge_space(&[clean.clone(), agree.clone(), away], &request).unwrap();
        assert_eq!((stats.variants, stats.kept, stats.fell_back), (2, 1, false));
        // The space is the top direction of `agree` alone: (2, 0.5, 0) normalised.
        let u = space.basis().to_vec2::<f64>().unwrap();
        let n = (4.0f64 + 0.25).sqrt();
        let (a, b) = (2.0 / n, 0.5 / n);
        assert!(
            (u[0][0].abs() - a).abs() < 1e-9
                && (u[1][0].abs() - b).abs() < 1e-9
                && u[2][0].abs() < 1e-9
        );
        // Similarity of `away` to the clean direction is 0, of `agree` cos² = 4 / 4.25.
        assert!((stats.similarity_sum - 4.0 / 4.25).abs() < 1e-9);
        // When nothing passes, the clean covariance is used and the fallback is reported.
        let strict = Request {
            keep_above: 0.99,
            ..request
        };
        let (space, stats) = knowledge_space(&[clean, agree], &strict).unwrap();
        assert!(stats.fell_back);
        assert!((space.basis().to_vec2::<f64>().unwrap()[0][0].abs() - 1.0).abs() < 1e-9);
    }

    // ---- perturbations

    use crate::exec::rng;
    use crate::model::batch::TokenLayout;
    use crate::model::{Encoded, PadSide};
    use candle_core::Device;

    /// A sequence of 2 text, 4 image, 2 text (prompt) and 2 target tokens, hidden width 3.
    fn edit() -> EditInput {
        use TokenKind::{Text, Visual};
        let kinds = vec![
            Text, Text, Visual, Visual, Visual, Visual, Text, Text, Text, Text,
        ];
        let layout = TokenLayout::new(&[kinds], PadSide::Right);
        let embeds = Tensor::ones((1, 10, 3), DType::F32, &Device::Cpu).unwrap();
        EditInput {
            case: 0,
            encoded: Encoded {
                input_ids: vec![1; 10],
                image_positions: vec![2, 3, 4, 5],
                pixel_values: None,
            },
            latents: Latents { embeds, layout },
            target: vec![7, 8],
        }
    }

    #[test]
    fn masks_zero_one_window_of_image_tokens_and_noise_touches_only_prompt_text() {
        let e = edit();
        let kinds = [
            Perturbation::MaskVision { window: 2 },
            Perturbation::NoiseText { sigma: 0.5 },
        ];
        let v = perturb(&e, &kinds, 4, Apply::Each, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(v.latents.dims(), &[4, 10, 3]);
        let rows = v.latents.to_vec3::<f32>().unwrap();
        // Rows 0 and 2 are masked: exactly two consecutive image columns are zero, the rest is 1.
        for row in [0, 2] {
            let zero: Vec<usize> = (0..10).filter(|&c| rows[row][c][0] == 0.0).collect();
            assert_eq!(zero.len(), 2, "{zero:?}");
            assert_eq!(zero[1], zero[0] + 1);
            assert!(zero.iter().all(|c| (2..6).contains(c)));
            assert!((0..10)
                .filter(|c| !zero.contains(c))
                .all(|c| rows[row][c].iter().all(|x| *x == 1.0)));
        }
        // Rows 1 and 3 are noisy at the prompt's text columns only (0, 1, 6, 7).
        for row in [1, 3] {
            for (c, column) in rows[row].iter().enumerate().take(10) {
                let moved = column.iter().any(|x| *x != 1.0);
                assert_eq!(moved, [0, 1, 6, 7].contains(&c), "row {row} column {c}");
            }
        }
        let all = perturb(&e, &kinds, 2, Apply::All, &mut rng::stream(0, "t", 0)).unwrap();
        let rows = all.latents.to_vec3::<f32>().unwrap();
        for row in rows {
            assert_eq!((2..6).filter(|&c| row[c][0] == 0.0).count(), 2);
            assert!(row[0].iter().any(|x| *x != 1.0));
        }
        let too_wide = [Perturbation::MaskVision { window: 5 }];
        assert!(perturb(&e, &too_wide, 1, Apply::All, &mut rng::stream(0, "t", 0)).is_err());
    }
}
