//! Subspaces a recipe builds: null and top spaces of covariances (once per run), and ELoRA's
//! knowledge space of the edit case (Alg. 1 lines 11-23, once per edit).
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
use crate::exec::taps::{deepest, Reading};
use crate::exec::values::Variants;
use crate::linalg::{
    null_space, principal_subspace, projector_similarity, NullSpaceRule, Subspace,
};
use crate::model::site::Site;
use crate::model::{Hooks, Latents};
use crate::sema::Cut;

/// Tokens per forward pass of the knowledge-space construction: the clean sequence and its
/// variants go through in chunks of `VARIANT_TOKENS / T` rows (511 variants of a 55-token
/// sequence in two passes; of a 600-token LLaVA-7B prompt, 27 rows at a time).
pub const VARIANT_TOKENS: usize = 16_384;

/// The null space of a covariance.
pub fn null(covariance: &Tensor, cut: Cut) -> Result<Subspace> {
    let rule = match cut {
        Cut::Below(x) => NullSpaceRule::Below(x),
        Cut::Rank(k) => NullSpaceRule::Count(k),
    };
    Ok(null_space(covariance, rule)?)
}

/// The principal subspace of a covariance.
pub fn top(covariance: &Tensor, rank: usize) -> Result<Subspace> {
    Ok(principal_subspace(covariance, rank)?)
}

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
}
