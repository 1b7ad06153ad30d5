//! Finite-difference checks of the singular-value op's backward pass, in f64, through the loss it
//! exists for: ASAM's RCSL, `-log softmax(σ(Ĥ)/τ)₁` over the singular values of the row-normalised
//! hidden states (Eq. 10), including the asymmetric flow where the anchor row is detached (Eq. 11).

use candle_core::{DType, Device, Tensor, Var, D};
use mkedsl::linalg::differentiable_singular_values;
use rand::{Rng, SeedableRng};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Central-difference step; the loss is smooth here (distinct singular values), so the
/// truncation error is ~STEP² and the rounding error ~1e-16/STEP.
const STEP: f64 = 1e-6;

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Result<Tensor, candle_core::Error> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data: Vec<f64> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu)
}

/// ASAM Eq. 10 on hidden states `h` ((n+1) × d): rows are ℓ2-normalised, singular values are the
/// logits, row 0 of `h` is the original sample whose direction should dominate.
fn rcsl_loss(h: &Tensor, tau: f64) -> Result<Tensor, Box<dyn std::error::Error>> {
    let norms = h.sqr()?.sum_keepdim(1)?.sqrt()?;
    let normalised = h.broadcast_div(&norms)?;
    let sigma = differentiable_singular_values(&normalised)?;
    let log_p = candle_nn::ops::log_softmax(&(sigma / tau)?, D::Minus1)?;
    Ok(log_p.get(0)?.neg()?)
}

/// Compares the autograd gradient of `loss` at `x` with central differences, entry by entry.
fn check_gradient(
    x: &Var,
    loss: impl Fn(&Tensor) -> Result<Tensor, Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let grads = loss(x.as_tensor())?.backward()?;
    let analytic = grads
        .get(x.as_tensor())
        .ok_or("no gradient reached the input")?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let shape = x.as_tensor().shape().clone();
    let base = x.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    let mut worst = 0.0f64;
    for (i, &a) in analytic.iter().enumerate() {
        let at = |delta: f64| -> Result<f64, Box<dyn std::error::Error>> {
            let mut moved = base.clone();
            moved[i] += delta;
            let t = Tensor::from_vec(moved, shape.clone(), &Device::Cpu)?;
            Ok(loss(&t)?.to_scalar::<f64>()?)
        };
        let numeric = (at(STEP)? - at(-STEP)?) / (2.0 * STEP);
        let error = (a - numeric).abs() / numeric.abs().max(1.0);
        assert!(
            error < 1e-8,
            "entry {i}: autograd {a} vs finite difference {numeric}"
        );
        worst = worst.max(error);
    }
    Ok(worst)
}

#[test]
fn weighted_sum_of_singular_values_matches_finite_differences() -> TestResult {
    let x = Var::from_tensor(&random_matrix(4, 6, 1)?)?;
    let weights = Tensor::new(&[1.0f64, -2.0, 0.5, 3.0], &Device::Cpu)?;
    check_gradient(&x, |h| {
        Ok((differentiable_singular_values(h)? * &weights)?.sum_all()?)
    })?;
    // A tall matrix exercises the other side of the thin SVD (k = number of columns).
    let tall = Var::from_tensor(&random_matrix(7, 3, 2)?)?;
    check_gradient(&tall, |h| {
        Ok(differentiable_singular_values(h)?.sqr()?.sum_all()?)
    })?;
    Ok(())
}

#[test]
fn rcsl_loss_gradient_matches_finite_differences() -> TestResult {
    // n = 3 adversarial variants of one edit, d = 8, τ small enough to make σ₂..σ₄ matter.
    let h = Var::from_tensor(&random_matrix(4, 8, 3)?)?;
    let worst = check_gradient(&h, |h| rcsl_loss(h, 0.5))?;
    assert!(worst < 1e-8);
    Ok(())
}

#[test]
fn rcsl_with_a_detached_anchor_trains_only_the_variants() -> TestResult {
    // The anchor is trainable elsewhere (reliability loss), so it is a Var; RCSL must not move it.
    let anchor = Var::from_tensor(&random_matrix(1, 8, 4)?)?;
    let variants = Var::from_tensor(&random_matrix(3, 8, 5)?)?;
    let loss = |v: &Tensor| rcsl_loss(&Tensor::cat(&[&anchor.as_tensor().detach(), v], 0)?, 0.5);
    check_gradient(&variants, loss)?;
    let grads = loss(variants.as_tensor())?.backward()?;
    assert!(
        grads.get(anchor.as_tensor()).is_none(),
        "the anchor must get no gradient"
    );
    Ok(())
}

#[test]
fn rcsl_gradient_in_f32_agrees_with_f64() -> TestResult {
    let h64 = random_matrix(4, 8, 6)?;
    let v64 = Var::from_tensor(&h64)?;
    let v32 = Var::from_tensor(&h64.to_dtype(DType::F32)?)?;
    let g64 = rcsl_loss(v64.as_tensor(), 0.5)?.backward()?;
    let g32 = rcsl_loss(v32.as_tensor(), 0.5)?.backward()?;
    let a = g64
        .get(v64.as_tensor())
        .ok_or("no f64 gradient")?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let b = g32
        .get(v32.as_tensor())
        .ok_or("no f32 gradient")?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "f64 {x} vs f32 {y}");
    }
    Ok(())
}
