//! Softmax over the last dimension in one pass, with its backward in one pass.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};

use super::simd::{exp, max, sum, sum_of, vectorised, Kernel};
use super::{applies, gradient, values, with_values};

/// Softmax over the last dimension: fused on contiguous CPU f32, candle's composed (and
/// differentiable) `ops::softmax` elsewhere.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if applies(&[x]) && x.dim(D::Minus1)? > 0 {
        x.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

struct Softmax;

/// Each row of `n`: `out = e^(x − max) / Σ e^(x − max)`.
struct Forward<'a> {
    x: &'a [f32],
    n: usize,
    out: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { x, n, out } = self;
        for (row, out) in x.chunks(n).zip(out.chunks_mut(n)) {
            let max = max(row);
            for (o, &v) in out.iter_mut().zip(row) {
                *o = exp(v - max);
            }
            let inverse = 1.0 / sum(out);
            out.iter_mut().for_each(|v| *v *= inverse);
        }
    }
}

/// With `y` the result, each row: `dx = y · (dy − Σ dy·y)`.
struct Backward<'a> {
    y: &'a [f32],
    dy: &'a [f32],
    n: usize,
    dx: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { y, dy, n, dx } = self;
        for ((y, dy), dx) in y.chunks(n).zip(dy.chunks(n)).zip(dx.chunks_mut(n)) {
            let dot = sum_of(y, dy, |y, d| y * d);
            for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
                *dx = y * (d - dot);
            }
        }
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(self.name(), x, layout)?;
        let n = layout.dims()[layout.dims().len() - 1];
        let mut out = vec![0f32; x.len()];
        vectorised(Forward {
            x,
            n,
            out: &mut out,
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = x.dim(D::Minus1)?;
        let dx = with_values(self.name(), [res, grad], |[y, dy]| {
            let mut dx = vec![0f32; y.len()];
            vectorised(Backward {
                y,
                dy,
                n,
                dx: &mut dx,
            });
            dx
        })?;
        Ok(Some(gradient(dx, x)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nn::gemm::tests::{max_diff, random};
    use candle_core::{DType, Var};

    /// The fused op's value and gradient against candle's composed softmax in f64, with a row
    /// masked as attention masks it (−1e9).
    #[test]
    fn fused_equals_the_composed_softmax_and_its_gradient() {
        let mask = Tensor::new(&[0.0f64, -1e9, 0.0, -1e9, 0.0], &candle_core::Device::Cpu).unwrap();
        let x0 = (random(&[3, 4, 5], 21, DType::F64) * 6.0)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let weights = random(&[3, 4, 5], 22, DType::F64);
        let run = |dtype: DType| {
            let x = Var::from_tensor(&x0.to_dtype(dtype).unwrap()).unwrap();
            let y = softmax_last_dim(&x).unwrap();
            let loss = (y.clone() * weights.to_dtype(dtype).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            (y, loss.backward().unwrap().get(&x).unwrap().clone())
        };
        let (fused, composed) = (run(DType::F32), run(DType::F64));
        assert!(fused.0.track_op());
        assert!(max_diff(&fused.0, &composed.0) < 1e-6);
        assert!(max_diff(&fused.1, &composed.1) < 1e-6);
    }
}
