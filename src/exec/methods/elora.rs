//! ELoRA's per-edit work: the perturbed variants of the edit case (Appendix C.2) and the
//! knowledge space built from them (Alg. 1 lines 11-23).
//!
//! - `mask_vision(window)`: zero `window` consecutive image tokens starting at a uniform
//!   `s ∈ [0, N_v − window]` (ELoRA C.2). `mask_vision(share)`: the window is
//!   `max(1, round(share × N_v))` of the case's `N_v` image tokens.
//! - `noise_text(sigma)`: add `N(0, σ²)` to every prompt text-token embedding.
//!   `noise_text(relative)`: `σ = relative × rms`, `rms` over every entry of the clean case's
//!   prompt text-token embeddings ([`text_rms`]).
//!
//! The knowledge space of a stream: run the clean sequence and every variant through the model in
//! one batch (in chunks), read the stream's rows of each, `C_b = K_bᵀK_b`; the top-`top`
//! eigenvector projector `P_b` of each; similarity `s_b = tr(P_b P_0) / top` to the clean one's
//! (or its chance-corrected form, [`chance_corrected`]); the mean of the `C_b` with
//! `s_b > keep_above`; its top-`rank` eigenvectors. Several knowledge
//! spaces over the same variants (ELoRA's up and down projections) share the forward passes.

use candle_core::{DType, Device, Tensor};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::input::EditInput;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::taps::Reading;
use crate::exec::values::Variants;
use crate::linalg::{basis_similarity, principal_bases, principal_subspace, Subspace};
use crate::sema::ops;
use std::collections::HashMap;

use crate::eval::{FilterCase, PerturbCase};
use crate::exec::executor::Executor;
use crate::exec::rng::{self, Rng};
use crate::exec::sites::stream_taps;
use crate::exec::values::{PerLayer, Value, Values};
use crate::model::batch::TokenKind;
use crate::model::site::Site;
use crate::model::{Hooks, Latents};
use crate::plan::{Step, StepId};
use crate::sema::{share_window, Apply, Op, Perturbation, Similarity, Symbol};

/// Tokens per forward pass of the knowledge-space construction: the clean sequence and its
/// variants go through in chunks of `VARIANT_TOKENS / T` rows (511 variants of a 55-token
/// sequence in seven passes of 74 rows; of a 600-token LLaVA-7B prompt, 6 rows at a time).
/// At 16,384 tokens a pass's FFN activations (16,384 × 344 f32, 22 MB each) outgrew the
/// machine's 32 MiB L3 cache between the products and the elementwise ops that read them; at
/// 4,096 the pass took 0.92 of the time and the peak memory halved (README, "Speed"), and its
/// products are still large enough to be split over threads (`gemm::PARALLEL_MIN_WORK`).
pub const VARIANT_TOKENS: usize = 4_096;

/// One knowledge space to build: a stream read at one layer.
#[derive(Debug, Clone)]
pub struct Request {
    pub reading: Reading,
    pub top: usize,
    pub keep_above: f64,
    pub rank: usize,
    pub similarity: Similarity,
}

/// The literal similarity a uniformly random `k`-dimensional subspace of an `r`-dimensional
/// space scores against a fixed one in expectation: `E‖U_bᵀU_0‖²_F / k = (k · k/r) / k = k/r`
/// (each of the `k` fixed directions keeps `k/r` of its energy in a random `k`-subspace).
pub fn chance_level(k: usize, r: usize) -> f64 {
    k as f64 / r.max(1) as f64
}

/// `(s − k/r) / (1 − k/r)`: 0 at chance, 1 for the same subspace. Sema refuses `k = r`, where
/// every subspace is the whole space and the score is 1 by construction; here that case
/// returns `s` unchanged rather than dividing by zero.
pub fn chance_corrected(s: f64, k: usize, r: usize) -> f64 {
    let chance = chance_level(k, r);
    if chance >= 1.0 {
        s
    } else {
        (s - chance) / (1.0 - chance)
    }
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

/// Per-row `KᵀK` of every request, row 0 the clean sequence: `out[request]` `(rows, w, w)` f64.
pub fn row_covariances(
    state: &EditState,
    edit: &EditInput,
    variants: &Variants,
    readings: &[Reading],
) -> Result<Vec<Tensor>> {
    let rows = 1 + variants.count;
    let mut chunks: Vec<Vec<Tensor>> = vec![Vec::new(); readings.len()];
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
        state
            .model
            .model
            .capture(&latents, &mut hooks, &state.adapters)?;
        let captured = hooks.take_captured();
        for (reading, slot) in readings.iter().zip(chunks.iter_mut()) {
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
            slot.push(c.to_device(&Device::Cpu)?);
        }
        start = end;
    }
    Ok(chunks
        .iter()
        .map(|parts| Tensor::cat(parts, 0))
        .collect::<candle_core::Result<_>>()?)
}

/// ELoRA's filter and average over per-row covariances `(rows, w, w)` f64 (row 0 clean), then
/// the top-`rank` space. The rows' top-`top` eigenvectors come from one call on the raw values
/// ([`principal_bases`]): 512 small decompositions per space, each a tensor round trip before.
pub fn knowledge_space(covariances: &Tensor, request: &Request) -> Result<(Subspace, FilterStats)> {
    let (rows, width, _) = covariances.dims3()?;
    if rows == 0 {
        return Err(ExecError::internal("no covariance for the knowledge space"));
    }
    let values: Vec<f64> = covariances.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let bases = principal_bases(&values, width, request.top)?;
    let size = width * request.top;
    let (p0, variant_bases) = bases.split_at(size);
    let (clean, variant_covs) = values.split_at(width * width);
    let mut stats = FilterStats {
        variants: rows - 1,
        ..FilterStats::default()
    };
    let mut sum: Option<Vec<f64>> = None;
    for (pb, c) in variant_bases
        .chunks_exact(size)
        .zip(variant_covs.chunks_exact(width * width))
    {
        let s = basis_similarity(pb, p0, request.top);
        let s = match request.similarity {
            Similarity::Literal => s,
            Similarity::ChanceCorrected => chance_corrected(s, request.top, width),
        };
        stats.similarity_sum += s;
        if s > request.keep_above {
            stats.kept += 1;
            match sum.as_mut() {
                Some(acc) => acc.iter_mut().zip(c).for_each(|(a, x)| *a += x),
                None => sum = Some(c.to_vec()),
            }
        }
    }
    let average = match sum {
        // Scaled by the reciprocal, as a tensor's `/ n` is.
        Some(sum) => {
            let inverse = 1.0 / stats.kept as f64;
            sum.into_iter().map(|x| x * inverse).collect()
        }
        None => {
            stats.fell_back = true;
            clean.to_vec()
        }
    };
    let average = Tensor::from_vec(average, (width, width), covariances.device())?;
    Ok((principal_subspace(&average, request.rank)?, stats))
}

/// The root mean square over every entry of the clean case's text-token embeddings at
/// `columns` (the prompt's text tokens, the ones `noise_text` perturbs): `sqrt(Σ e² / (n·d))`,
/// so that `σ = rms` gives noise as large per coordinate as the embeddings themselves.
pub fn text_rms(edit: &EditInput, columns: &[usize]) -> Result<f64> {
    if columns.is_empty() {
        return Ok(0.0);
    }
    let rows = edit.latents.embeds.get(0)?.to_dtype(DType::F64)?;
    let index = Tensor::from_vec(
        columns.iter().map(|&c| c as u32).collect::<Vec<_>>(),
        columns.len(),
        rows.device(),
    )?;
    let text = rows.index_select(&index, 0)?;
    let mean_square = text.sqr()?.mean_all()?.to_scalar::<f64>()?;
    Ok(mean_square.sqrt())
}

/// A perturbation with its scale resolved against the edit case: the window in tokens, σ in
/// embedding units.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resolved {
    Mask { window: usize },
    Noise { sigma: f64 },
}

/// The scales `perturb` used on one case, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scales {
    pub mask_window: Option<usize>,
    pub image_tokens: Option<usize>,
    pub noise_sigma: Option<f64>,
}

fn resolve(
    kind: Perturbation,
    edit: &EditInput,
    visual: &[usize],
    text: &[usize],
) -> Result<Resolved> {
    Ok(match kind {
        Perturbation::MaskVision { window } => Resolved::Mask { window },
        Perturbation::MaskVisionShare { share, .. } => Resolved::Mask {
            window: share_window(share, visual.len()),
        },
        Perturbation::NoiseText { sigma } => Resolved::Noise { sigma },
        Perturbation::NoiseTextRelative { relative } => Resolved::Noise {
            sigma: relative * text_rms(edit, text)?,
        },
    })
}

/// `count` perturbed copies of the edit case's input, and the scales they used.
pub fn perturb(
    edit: &EditInput,
    kinds: &[Perturbation],
    count: usize,
    apply: Apply,
    rng: &mut Rng,
) -> Result<(Variants, Scales)> {
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
    let resolved: Vec<Resolved> = (kinds.iter())
        .map(|k| resolve(*k, edit, &visual, &text))
        .collect::<Result<_>>()?;
    let mut scales = Scales::default();
    for r in &resolved {
        match *r {
            Resolved::Mask { window } => {
                scales.mask_window = Some(window);
                scales.image_tokens = Some(visual.len());
            }
            Resolved::Noise { sigma } => scales.noise_sigma = Some(sigma),
        }
    }
    let mut keep = vec![1f32; count * t];
    let mut noise = vec![0f32; count * t * d];
    for row in 0..count {
        let chosen: Vec<Resolved> = match apply {
            Apply::All => resolved.clone(),
            Apply::Each => resolved
                .get(row % resolved.len().max(1))
                .copied()
                .into_iter()
                .collect(),
        };
        for kind in chosen {
            match kind {
                Resolved::Mask { window } => {
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
                Resolved::Noise { sigma } => {
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
    // `clean · keep + noise`, added into the noise buffer row by row in f32: one pass, where the
    // tensor ops took three over the variants (repeat, mask, add), each allocating.
    let clean: Vec<f32> = (edit.latents.embeds.get(0)?)
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    for (row, values) in noise.chunks_exact_mut(t * d).enumerate() {
        for ((token, values), clean) in values
            .chunks_exact_mut(d)
            .enumerate()
            .zip(clean.chunks_exact(d))
        {
            let keep = keep[row * t + token];
            for (v, &c) in values.iter_mut().zip(clean) {
                *v += c * keep;
            }
        }
    }
    let latents = Tensor::from_vec(noise, (count, t, d), edit.latents.embeds.device())?
        .to_dtype(edit.latents.embeds.dtype())?;
    let variants = Variants {
        latents,
        layout: edit.layout(count),
        count,
    };
    Ok((variants, scales))
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
        let (v, scales) = perturb(edit, kinds, *count, *apply, &mut r)?;
        if scales != Scales::default() {
            self.calibration
                .entry(edit.case)
                .or_default()
                .perturbations
                .push(PerturbCase {
                    variants: step.origin.label(),
                    mask_window: scales.mask_window,
                    image_tokens: scales.image_tokens,
                    noise_sigma: scales.noise_sigma,
                });
        }
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
        let mut requests: Vec<(StepId, Option<usize>, String, Request)> = Vec::new();
        let mut variants_id = None;
        for s in group {
            let Op::KnowledgeSpace(ops::KnowledgeSpace {
                stream,
                variants,
                top,
                keep_above,
                rank,
                similarity,
            }) = &s.op
            else {
                continue;
            };
            variants_id = Some(*variants);
            let taps = stream_taps(stream)?;
            let several = taps.len() > 1;
            for (layer, tap) in taps {
                let label = match layer {
                    Some(l) if several => format!("{} (layer {l})", s.origin.label()),
                    _ => s.origin.label(),
                };
                requests.push((
                    s.id,
                    layer,
                    label,
                    Request {
                        reading: Reading::resolve(tap, values, state)?,
                        top: *top,
                        keep_above: *keep_above,
                        rank: *rank,
                        similarity: *similarity,
                    },
                ));
            }
        }
        let Some(variants_id) = variants_id else {
            return Ok(());
        };
        let variants = values.variants(variants_id)?.clone();
        let readings: Vec<Reading> = (requests.iter())
            .map(|(_, _, _, r)| r.reading.clone())
            .collect();
        let covariances = row_covariances(state, edit, &variants, &readings)?;
        let mut by_step: HashMap<StepId, Vec<(Option<usize>, crate::linalg::Subspace)>> =
            HashMap::new();
        for ((id, layer, label, request), covs) in requests.into_iter().zip(&covariances) {
            let (space, stats) = knowledge_space(covs, &request)?;
            self.calibration
                .entry(edit.case)
                .or_default()
                .knowledge
                .push(FilterCase::new(
                    label,
                    request.similarity.name(),
                    request.keep_above,
                    stats.variants,
                    stats.kept,
                    stats.similarity_sum,
                    stats.fell_back,
                ));
            by_step.entry(id).or_default().push((layer, space));
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

    fn stack(covs: &[Tensor]) -> Tensor {
        Tensor::stack(covs, 0).unwrap()
    }

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
            similarity: Similarity::Literal,
        };
        let (space, stats) =
            knowledge_space(&stack(&[clean.clone(), agree.clone(), away]), &request).unwrap();
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
        let (space, stats) = knowledge_space(&stack(&[clean, agree]), &strict).unwrap();
        assert!(stats.fell_back);
        assert!((space.basis().to_vec2::<f64>().unwrap()[0][0].abs() - 1.0).abs() < 1e-9);
    }

    // ---- chance level of the similarity

    /// `k` orthonormal vectors in `r` dimensions: Gram-Schmidt of Gaussian draws, a uniformly
    /// random `k`-subspace (the Gaussian is rotation invariant).
    fn random_basis(k: usize, r: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
        let mut basis: Vec<Vec<f64>> = Vec::new();
        while basis.len() < k {
            let mut v: Vec<f64> = (0..r).map(|_| rng.normal()).collect();
            for u in &basis {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-9 {
                basis.push(v.into_iter().map(|x| x / norm).collect());
            }
        }
        basis
    }

    #[test]
    fn a_random_subspace_scores_k_over_r_and_chance_corrected_zero() {
        use crate::linalg::projector_similarity;
        let mut rng = rng::stream(7, "chance", 0);
        for (k, r) in [(1, 4), (2, 3), (8, 32), (4, 128)] {
            let fixed = random_basis(k, r, &mut rng);
            let draws = 4000;
            let mut sum = 0.0;
            for _ in 0..draws {
                let other = random_basis(k, r, &mut rng);
                // ‖U_aᵀU_b‖²_F / k, computed here without the library's code.
                let overlap: f64 = (fixed.iter())
                    .flat_map(|a| {
                        other
                            .iter()
                            .map(move |b| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>())
                    })
                    .map(|dot| dot * dot)
                    .sum();
                sum += overlap / k as f64;
            }
            let mean = sum / draws as f64;
            // The literal score's mean is k/r within Monte Carlo error (its sd is below 0.5).
            let tolerance = 4.0 * 0.5 / (draws as f64).sqrt();
            assert!(
                (mean - chance_level(k, r)).abs() < tolerance,
                "k {k} r {r}: {mean}"
            );
            assert!(chance_corrected(mean, k, r).abs() < tolerance / (1.0 - chance_level(k, r)));
            assert!((chance_corrected(1.0, k, r) - 1.0).abs() < 1e-12);
        }
        // The library's similarity of two subspaces agrees with the direct computation.
        let a = random_basis(2, 5, &mut rng);
        let b = random_basis(2, 5, &mut rng);
        let to_space = |u: &[Vec<f64>]| {
            let flat: Vec<f64> = (0..5)
                .flat_map(|i| u.iter().map(move |col| col[i]))
                .collect();
            Subspace::from_orthonormal_columns(
                Tensor::from_vec(flat, (5, 2), &Device::Cpu).unwrap(),
            )
            .unwrap()
        };
        let direct: f64 = (a.iter())
            .flat_map(|x| {
                b.iter()
                    .map(move |y| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
            })
            .map(|d| d * d)
            .sum::<f64>()
            / 2.0;
        let library = projector_similarity(&to_space(&a), &to_space(&b)).unwrap();
        assert!((direct - library).abs() < 1e-9);
        let row_major = |u: &[Vec<f64>]| -> Vec<f64> {
            (0..5)
                .flat_map(|i| u.iter().map(move |col| col[i]))
                .collect()
        };
        let raw = crate::linalg::basis_similarity(&row_major(&a), &row_major(&b), 2);
        assert!((direct - raw).abs() < 1e-9);
    }

    #[test]
    fn chance_corrected_filter_drops_what_only_chance_kept() {
        // In 3 dimensions with top = 1, chance is 1/3: a variant at literal 0.3 passes a 0.05
        // threshold literally but is below chance, so the corrected filter drops it.
        let clean = cov(&[[1.0, 0.0, 0.0]]);
        let c = 0.3f64.sqrt();
        let weak = cov(&[[c, (1.0 - 0.3f64).sqrt(), 0.0]]);
        let request = Request {
            reading: Reading::Site(Site::EmbedText),
            top: 1,
            keep_above: 0.05,
            rank: 1,
            similarity: Similarity::Literal,
        };
        let covs = stack(&[clean, weak]);
        let (_, literal) = knowledge_space(&covs, &request).unwrap();
        assert_eq!(literal.kept, 1);
        assert!((literal.similarity_sum - 0.3).abs() < 1e-9);
        let corrected = Request {
            similarity: Similarity::ChanceCorrected,
            ..request
        };
        let (_, stats) = knowledge_space(&covs, &corrected).unwrap();
        assert_eq!((stats.kept, stats.fell_back), (0, true));
        assert!((stats.similarity_sum - (0.3 - 1.0 / 3.0) / (2.0 / 3.0)).abs() < 1e-9);
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
        let (v, scales) = perturb(&e, &kinds, 4, Apply::Each, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(
            (scales.mask_window, scales.image_tokens, scales.noise_sigma),
            (Some(2), Some(4), Some(0.5))
        );
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
        let (all, _) = perturb(&e, &kinds, 2, Apply::All, &mut rng::stream(0, "t", 0)).unwrap();
        let rows = all.latents.to_vec3::<f32>().unwrap();
        for row in rows {
            assert_eq!((2..6).filter(|&c| row[c][0] == 0.0).count(), 2);
            assert!(row[0].iter().any(|x| *x != 1.0));
        }
        // A share resolves against the case's 4 image tokens; a relative σ against the text
        // embeddings' RMS (all ones here, so RMS 1).
        let shares = [
            Perturbation::MaskVisionShare {
                share: 0.6,
                tokens: None,
            },
            Perturbation::NoiseTextRelative { relative: 0.25 },
        ];
        let (_, scales) =
            perturb(&e, &shares, 2, Apply::Each, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(scales.mask_window, Some(2)); // round(0.6 × 4) = 2
        assert!((scales.noise_sigma.unwrap() - 0.25).abs() < 1e-9);
        let tiny = [Perturbation::MaskVisionShare {
            share: 0.01,
            tokens: None,
        }];
        let (_, scales) = perturb(&e, &tiny, 1, Apply::Each, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(scales.mask_window, Some(1), "never less than one token");
        let too_wide = [Perturbation::MaskVision { window: 5 }];
        assert!(perturb(&e, &too_wide, 1, Apply::All, &mut rng::stream(0, "t", 0)).is_err());
    }
}
