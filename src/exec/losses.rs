//! The loss terms, as differentiable functions of what a forward pass produced.
//!
//! - `nll(target)`: mean negative log-likelihood of the target tokens, teacher-forced (the
//!   logits at the positions that predict them), averaged over the clean row and any variants;
//! - `kl_to_original(over:)`: `KL(p_original ‖ p_current)` of the next-token distributions at
//!   every position of preserved samples, averaged over positions (MEND's `L_loc`);
//! - `rank_align(...)`: ASAM Eq. 10, `−log softmax(σ/τ)₁` over the singular values of the
//!   ℓ2-normalised hidden states of the clean input and its variants, the clean one detached
//!   (Eq. 11) unless the recipe says `attached`.

use candle_core::{DType, Tensor, D};

use crate::exec::error::Result;
use crate::linalg::differentiable_singular_values;

/// NLL of `target` read from `logits` `(rows · n, vocab)`: row `r`'s `n` target-predicting
/// positions are rows `r·n .. (r+1)·n`. Returns the mean over rows of each row's mean, `()`.
pub fn target_nll(logits: &Tensor, target: &[u32], rows: usize) -> Result<Tensor> {
    Ok(per_row_nll(logits, target, rows)?.mean_all()?)
}

/// Each row's mean NLL of `target`, `(rows,)`.
pub fn per_row_nll(logits: &Tensor, target: &[u32], rows: usize) -> Result<Tensor> {
    let n = target.len();
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let ids: Vec<u32> = (0..rows).flat_map(|_| target.iter().copied()).collect();
    let ids = Tensor::from_vec(ids, (rows * n, 1), logits.device())?;
    let picked = logp.gather(&ids, 1)?.reshape((rows, n))?;
    Ok((picked.mean(1)? * -1.0)?)
}

/// `Σ p_orig (log p_orig − log p_cur)` averaged over the rows of `(N, vocab)` log-probabilities
/// `log_p_original` and logits `current`.
pub fn kl_to_original(log_p_original: &Tensor, current: &Tensor) -> Result<Tensor> {
    let log_q = candle_nn::ops::log_softmax(&current.to_dtype(DType::F32)?, D::Minus1)?;
    let log_p = log_p_original.to_dtype(DType::F32)?;
    let p = log_p.exp()?;
    let rows = (p * (log_p - log_q)?)?.sum(1)?;
    Ok(rows.mean_all()?)
}

/// ASAM Eq. 10 on the features `h` `(n + 1, d)`, row 0 the clean input: rows ℓ2-normalised,
/// `σ` their singular values, loss `−log softmax(σ / τ)₁`. With `detach_anchor`, row 0 carries no
/// gradient (Eq. 11).
pub fn rank_align(h: &Tensor, tau: f64, detach_anchor: bool) -> Result<Tensor> {
    let h = h.to_dtype(DType::F32)?;
    let norms = (h.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-12)?;
    let unit = h.broadcast_div(&norms)?;
    let unit = if detach_anchor {
        let rows = unit.dim(0)?;
        let anchor = unit.narrow(0, 0, 1)?.detach();
        let rest = unit.narrow(0, 1, rows - 1)?;
        Tensor::cat(&[&anchor, &rest], 0)?
    } else {
        unit
    };
    let sigma = differentiable_singular_values(&unit)?;
    let logits = (sigma / tau)?;
    let top = logits.narrow(0, 0, 1)?.squeeze(0)?;
    let shift = logits.max(0)?.detach();
    let lse = (logits.broadcast_sub(&shift)?.exp()?.sum(0)?.log()? + &shift)?;
    Ok((lse - top)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn nll_is_the_mean_negative_log_probability_of_the_target() {
        // Two rows, two target tokens each; vocabulary of 3.
        let logits = Tensor::new(
            &[
                [0f32, 0.0, 0.0],
                [1.0, 2.0, 3.0],
                [0.0, 0.0, 5.0],
                [2.0, 0.0, 0.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let target = [1u32, 2];
        let lse = |xs: [f64; 3]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
        let row0 = ((lse([0.0, 0.0, 0.0]) - 0.0) + (lse([1.0, 2.0, 3.0]) - 3.0)) / 2.0;
        let row1 = ((lse([0.0, 0.0, 5.0]) - 0.0) + (lse([2.0, 0.0, 0.0]) - 0.0)) / 2.0;
        let rows = per_row_nll(&logits, &target, 2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((f64::from(rows[0]) - row0).abs() < 1e-5);
        assert!((f64::from(rows[1]) - row1).abs() < 1e-5);
        let mean = scalar(&target_nll(&logits, &target, 2).unwrap());
        assert!((mean - (row0 + row1) / 2.0).abs() < 1e-5);
    }

    #[test]
    fn kl_is_zero_on_equal_distributions_and_matches_the_formula() {
        let a = Tensor::new(&[[0.5f32, 1.0, -1.0]], &Device::Cpu).unwrap();
        let log_p = candle_nn::ops::log_softmax(&a, D::Minus1).unwrap();
        assert!(scalar(&kl_to_original(&log_p, &a).unwrap()).abs() < 1e-6);
        let b = Tensor::new(&[[2.0f32, 0.0, 0.0]], &Device::Cpu).unwrap();
        let p: Vec<f64> = log_p
            .exp()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let z = (2f64.exp() + 2.0).ln();
        let log_q = [2.0 - z, -z, -z];
        let expected: f64 = p
            .iter()
            .zip(log_q)
            .map(|(pi, lq)| pi * (pi.ln() - lq))
            .sum();
        assert!((scalar(&kl_to_original(&log_p, &b).unwrap()) - expected).abs() < 1e-5);
    }

    #[test]
    fn rank_align_rewards_aligned_states_and_detaches_the_anchor() {
        let aligned = Tensor::new(&[[1f32, 0.0, 0.0], [2.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let spread = Tensor::new(&[[1f32, 0.0, 0.0], [0.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let tau = 0.5;
        // Aligned: σ = (√2, 0); spread: σ = (1, 1).
        let want_aligned = ((2f64.sqrt() / tau).exp() + 1.0).ln() - 2f64.sqrt() / tau;
        let want_spread = 2f64.ln();
        let got_aligned = scalar(&rank_align(&aligned, tau, true).unwrap());
        let got_spread = scalar(&rank_align(&spread, tau, true).unwrap());
        assert!((got_aligned - want_aligned).abs() < 1e-5, "{got_aligned}");
        assert!((got_spread - want_spread).abs() < 1e-5, "{got_spread}");

        let h = Var::new(&[[1f32, 0.2, 0.0], [0.3, 1.0, 0.1]], &Device::Cpu).unwrap();
        let grads = rank_align(h.as_tensor(), tau, true)
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(h.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!(g[0].iter().all(|x| *x == 0.0), "anchor row got {:?}", g[0]);
        assert!(g[1].iter().any(|x| *x != 0.0));
        let grads = rank_align(h.as_tensor(), tau, false)
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(h.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!(g[0].iter().any(|x| *x != 0.0));
    }
}
