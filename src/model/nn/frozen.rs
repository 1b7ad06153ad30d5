//! `x · Wᵀ` for the model's linears, whose backward returns dL/dW only for a trained W.
//!
//! candle's own matmul backward always computes (and stores) the gradient of both operands, even
//! when the weight is a constant nobody asked about: on a 7B model that is a model-sized gradient
//! buffer per backward pass, and the notes measured ~2× slower backward. Editing methods
//! back-propagate through a frozen model into adapters and input latents all the time, so every
//! base weight goes through [`super::gemm::matmul_t`], which skips the gradient of a frozen one.

use candle_core::Tensor;

/// `x · Wᵀ` with `x` of shape `(…, in)` and `w` of shape `(out, in)`.
///
/// The product is [`super::gemm::matmul_t`], whose backward gives `w` a gradient only when `w`
/// takes part in autograd (a `Var`, or computed from one): a frozen weight costs one product
/// backward (dL/dx), a trained one two.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let lead = &x.dims()[..x.rank().saturating_sub(1)];
    let rows = lead.iter().product::<usize>();
    let y = super::gemm::matmul_t(&x.reshape((rows, inp))?, w)?;
    let mut dims = lead.to_vec();
    dims.push(out);
    y.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        crate::model::nn::gemm::tests::random(shape, seed, DType::F64)
    }

    #[test]
    fn forward_equals_plain_matmul_and_backward_skips_the_weight() {
        let w = random(&[5, 4], 1);
        let x = Var::from_tensor(&random(&[2, 3, 4], 2)).unwrap();
        let y = matmul_t(x.as_tensor(), &w).unwrap();
        let expected = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        let diff = (y.clone() - &expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        assert_eq!(y.dims(), &[2, 3, 5]);

        let g = random(&[2, 3, 5], 3);
        let loss = (y * &g).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let dx = grads.get(x.as_tensor()).unwrap();
        let expected_dx = g.broadcast_matmul(&w).unwrap();
        let diff = (dx - expected_dx)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        assert!(
            grads.get(&w).is_none(),
            "a frozen weight must not receive a gradient"
        );
    }

    #[test]
    fn trainable_weight_gets_its_gradient() {
        let w = Var::from_tensor(&random(&[3, 2], 4)).unwrap();
        let x = random(&[4, 2], 5);
        let y = matmul_t(&x, w.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let dw = grads.get(w.as_tensor()).unwrap();
        // d(sum(x Wᵀ))/dW[o, i] = Σ_rows x[row, i].
        let col_sums = x.sum(0).unwrap().to_vec1::<f64>().unwrap();
        for row in dw.to_vec2::<f64>().unwrap() {
            for (a, b) in row.iter().zip(&col_sums) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn works_on_strided_inputs_and_f32() {
        let w = random(&[3, 4], 6).to_dtype(DType::F32).unwrap();
        let x = random(&[4, 2], 7)
            .to_dtype(DType::F32)
            .unwrap()
            .t()
            .unwrap();
        let y = matmul_t(&x, &w).unwrap();
        let expected = x.contiguous().unwrap().matmul(&w.t().unwrap()).unwrap();
        let diff = (y - expected).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
