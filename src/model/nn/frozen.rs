//! `x · Wᵀ` for a frozen weight W, as a custom op whose backward returns only dL/dx.
//!
//! candle's own matmul backward always computes (and stores) the gradient of both operands, even
//! when the weight is a constant nobody asked about: on a 7B model that is a model-sized gradient
//! buffer per backward pass, and the notes measured ~2× slower backward. Editing methods
//! back-propagate through a frozen model into adapters and input latents all the time, so every
//! base weight goes through this op unless it is itself being trained.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape, Storage, Tensor};

/// The op: holds the (contiguous) weight of shape `(out, in)`; its single argument is `x`.
struct FrozenMatmul {
    weight: Tensor,
}

impl FrozenMatmul {
    /// Output shape: `x`'s shape with the last dim replaced by `out`.
    fn shapes(&self, x: &Layout) -> candle_core::Result<(usize, usize, usize, Shape)> {
        let (out, inp) = self.weight.dims2()?;
        let dims = x.dims();
        match dims.last() {
            Some(&d) if d == inp => {}
            _ => candle_core::bail!("frozen matmul: input shape {dims:?} does not end in {inp}"),
        }
        if !x.is_contiguous() {
            candle_core::bail!("frozen matmul: input must be contiguous");
        }
        let rows = dims.iter().rev().skip(1).product::<usize>();
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = out;
        }
        Ok((rows, inp, out, Shape::from(out_dims)))
    }

    /// The same gemm on any backend: `x` viewed as `(rows, in)`, the weight viewed transposed.
    fn run<S: BackendStorage>(
        &self,
        x: &S,
        x_layout: &Layout,
        w: &S,
        w_layout: &Layout,
    ) -> candle_core::Result<(S, Shape)> {
        let (rows, inp, out, shape) = self.shapes(x_layout)?;
        if !w_layout.is_contiguous() {
            candle_core::bail!("frozen matmul: weight must be contiguous");
        }
        let lhs = Layout::contiguous_with_offset((rows, inp), x_layout.start_offset());
        let rhs = Layout::new(
            Shape::from((inp, out)),
            vec![1, inp],
            w_layout.start_offset(),
        );
        let y = x.matmul(w, (1, rows, out, inp), &lhs, &rhs)?;
        Ok((y, shape))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (storage, w_layout) = self.weight.storage_and_layout();
        match &*storage {
            Storage::Cpu(w) => self.run(x, layout, w, w_layout),
            _ => candle_core::bail!("frozen matmul: weight and input are on different devices"),
        }
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (storage, w_layout) = self.weight.storage_and_layout();
        match &*storage {
            Storage::Cuda(w) => self.run(x, layout, w, w_layout),
            _ => candle_core::bail!("frozen matmul: weight and input are on different devices"),
        }
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (out, _) = self.weight.dims2()?;
        let rows = grad.elem_count() / out.max(1);
        let dx = grad.reshape((rows, out))?.matmul(&self.weight)?;
        Ok(Some(dx.reshape(arg.shape())?))
    }
}

/// `x · Wᵀ` with `x` of shape `(…, in)` and `w` of shape `(out, in)`.
///
/// When `w` takes part in autograd (a `Var`, or computed from one) the ordinary matmul runs so
/// that `w` gets its gradient; otherwise the frozen op runs and only `x` gets one.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let lead = &x.dims()[..x.rank().saturating_sub(1)];
    let rows = lead.iter().product::<usize>();
    crate::model::flops::linear(rows, inp, out, x.track_op(), w.track_op());
    if w.track_op() {
        let y = x.reshape((rows, inp))?.matmul(&w.t()?)?;
        let mut dims = lead.to_vec();
        dims.push(out);
        return y.reshape(dims);
    }
    let w = w.contiguous()?;
    x.contiguous()?.apply_op1(FrozenMatmul { weight: w })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        // A small deterministic generator keeps the test independent of candle's RNG.
        let n: usize = shape.iter().product();
        let mut s = seed;
        let data: Vec<f64> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
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
