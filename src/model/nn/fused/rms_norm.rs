//! RMSNorm `x / sqrt(mean(x²) + eps) · w` over the last dimension in one pass, with its backward
//! in one pass.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};

use super::simd::{sum_of, vectorised, Kernel};
use super::{applies, gradient, values, with_values};

/// RMSNorm of `x` `(…, n)` with weight `w` `(n)`: fused on contiguous CPU f32, composed elsewhere.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if applies(&[x, w]) && w.dims() == [n] && n > 0 {
        x.apply_op2(w, RmsNorm { eps })
    } else {
        let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(w)
    }
}

struct RmsNorm {
    eps: f64,
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
#[inline(always)]
fn inverse_rms(row: &[f32], eps: f64) -> f32 {
    let mean = f64::from(sum_of(row, row, |a, b| a * b)) / row.len() as f64;
    (1.0 / (mean + eps).sqrt()) as f32
}

/// Each row: `out = x · r · w` with `r = 1/rms(x)`.
struct Forward<'a> {
    x: &'a [f32],
    w: &'a [f32],
    eps: f64,
    out: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { x, w, eps, out } = self;
        let n = w.len();
        for (row, out) in x.chunks(n).zip(out.chunks_mut(n)) {
            let r = inverse_rms(row, eps);
            for ((o, &v), &w) in out.iter_mut().zip(row).zip(w) {
                *o = v * r * w;
            }
        }
    }
}

/// Each row, with `r = 1/rms(x)` and `g = dy · w`: `dx = r·g − x · r³ · mean(g · x)`; and
/// `dw = Σ_rows dy · x · r` when `dw` is not empty (a trained weight).
struct Backward<'a> {
    x: &'a [f32],
    w: &'a [f32],
    dy: &'a [f32],
    eps: f64,
    dx: &'a mut [f32],
    dw: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            w,
            dy,
            eps,
            dx,
            dw,
        } = self;
        let n = w.len();
        for ((row, dy), dx) in x.chunks(n).zip(dy.chunks(n)).zip(dx.chunks_mut(n)) {
            let r = inverse_rms(row, eps);
            for ((g, &d), &w) in dx.iter_mut().zip(dy).zip(w) {
                *g = d * w;
            }
            let c = sum_of(dx, row, |g, x| g * x) / n as f32 * r * r * r;
            for (dx, &x) in dx.iter_mut().zip(row) {
                *dx = r * *dx - x * c;
            }
            for ((dw, &x), &d) in dw.iter_mut().zip(row).zip(dy) {
                *dw += d * x * r;
            }
        }
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (values(self.name(), x, lx)?, values(self.name(), w, lw)?);
        let mut out = vec![0f32; x.len()];
        vectorised(Forward {
            x,
            w,
            eps: self.eps,
            out: &mut out,
        });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let weight_trained = w.track_op();
        let (dx, dw) = with_values(self.name(), [x, w, grad], |[x, w, dy]| {
            let mut dx = vec![0f32; x.len()];
            let mut dw = vec![0f32; if weight_trained { w.len() } else { 0 }];
            vectorised(Backward {
                x,
                w,
                dy,
                eps: self.eps,
                dx: &mut dx,
                dw: &mut dw,
            });
            (dx, dw)
        })?;
        let dx = x.track_op().then(|| gradient(dx, x)).transpose()?;
        let dw = weight_trained.then(|| gradient(dw, w)).transpose()?;
        Ok((dx, dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nn::gemm::tests::{max_diff, random};
    use candle_core::{DType, Var};

    /// The fused op's value and both gradients against the composed ops in f64.
    #[test]
    fn fused_equals_the_composed_ops_and_their_gradients() {
        let x0 = random(&[2, 3, 6], 11, DType::F64);
        let w0 = (random(&[6], 12, DType::F64) + 1.0).unwrap();
        let weights = random(&[2, 3, 6], 13, DType::F64);
        let run = |dtype: DType| {
            let x = Var::from_tensor(&x0.to_dtype(dtype).unwrap()).unwrap();
            let w = Var::from_tensor(&w0.to_dtype(dtype).unwrap()).unwrap();
            // f64 is not fused: it is the composed reference.
            let y = rms_norm(&x, &w, 1e-5).unwrap();
            let loss = (y.clone() * weights.to_dtype(dtype).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            (
                y,
                grads.get(&x).unwrap().clone(),
                grads.get(&w).unwrap().clone(),
            )
        };
        let (fused, composed) = (run(DType::F32), run(DType::F64));
        assert!(fused.0.track_op());
        for (a, b) in [
            (fused.0, composed.0),
            (fused.1, composed.1),
            (fused.2, composed.2),
        ] {
            assert!(max_diff(&a, &b) < 1e-5, "{}", max_diff(&a, &b));
        }
    }

    /// A frozen weight gets no gradient buffer; a strided input takes the composed path.
    #[test]
    fn a_frozen_weight_gets_no_gradient_and_views_fall_back() {
        let x = Var::from_tensor(&random(&[4, 5], 14, DType::F32)).unwrap();
        let w = random(&[5], 15, DType::F32);
        let grads = rms_norm(&x, &w, 1e-6)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&w).is_none());
        assert!(grads.get(&x).is_some());
        let xt = random(&[5, 5], 16, DType::F32).t().unwrap();
        let want = {
            let inv = (xt.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                .unwrap()
                .sqrt()
                .unwrap()
                .recip()
                .unwrap();
            xt.broadcast_mul(&inv).unwrap().broadcast_mul(&w).unwrap()
        };
        assert_eq!(max_diff(&rms_norm(&xt, &w, 1e-6).unwrap(), &want), 0.0);
    }
}
