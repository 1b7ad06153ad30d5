//! The attention softmax `softmax(x·scale + bias)` over the last dimension in one pass, with its
//! backward in one pass.
//!
//! Composed, the scaling, the mask's broadcast add and the softmax were three passes over the
//! `(B, heads, T, S)` scores, each allocating, and three backward nodes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

use super::simd::{exp, max, sum, sum_of, vectorised, Kernel};
use super::{applies, gradient, values, with_values};

/// `softmax(x·scale + bias)` over the last dimension, `bias` `(B, 1, T, S)` shared by the heads of
/// `x` `(B, heads, T, S)`; `None` where the kernel does not apply (not contiguous CPU f32, other
/// shapes), for the caller's composed path.
pub fn scaled_softmax(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Option<Tensor>> {
    let rows = Rows {
        n: x.dim(D::Minus1)?,
        scale: scale as f32,
        per_bias_row: 1,
        per_batch: 1,
    };
    if !applies(&[x]) || rows.n == 0 {
        return Ok(None);
    }
    match bias {
        None => Ok(Some(x.apply_op1(Softmax(rows))?)),
        Some(bias) => match (x.dims(), bias.dims()) {
            (&[b, h, t, s], &[bb, 1, bt, bs]) if applies(&[bias]) && (bb, bt, bs) == (b, t, s) => {
                let rows = Rows {
                    per_bias_row: t,
                    per_batch: h * t,
                    ..rows
                };
                Ok(Some(x.apply_op2(bias, Softmax(rows))?))
            }
            _ => Ok(None),
        },
    }
}

/// Row geometry: rows of `n`, scaled by `scale`; score row `r` reads bias row
/// `(r / per_batch) · per_bias_row + r % per_bias_row` (the heads of a batch row share its mask).
#[derive(Debug, Clone, Copy)]
struct Rows {
    n: usize,
    scale: f32,
    per_bias_row: usize,
    per_batch: usize,
}

struct Softmax(Rows);

/// Each row of `n`: `z = x·scale + bias`, `out = e^(z − max) / Σ e^(z − max)`. `x·scale + bias`
/// rounds as candle's `affine` then broadcast add did, so the result is the composed one's.
struct Forward<'a> {
    x: &'a [f32],
    bias: Option<&'a [f32]>,
    rows: Rows,
    out: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { x, bias, rows, out } = self;
        let n = rows.n;
        for (r, (row, out)) in x.chunks(n).zip(out.chunks_mut(n)).enumerate() {
            match bias {
                Some(bias) => {
                    let at = (r / rows.per_batch) * rows.per_bias_row + r % rows.per_bias_row;
                    let bias = &bias[at * n..][..n];
                    for ((o, &v), &b) in out.iter_mut().zip(row).zip(bias) {
                        *o = v * rows.scale + b;
                    }
                }
                None => {
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = v * rows.scale;
                    }
                }
            }
            let max = max(out);
            for o in out.iter_mut() {
                *o = exp(*o - max);
            }
            let inverse = 1.0 / sum(out);
            out.iter_mut().for_each(|v| *v *= inverse);
        }
    }
}

/// With `y` the result, each row: `dx = y · (dy − Σ dy·y) · scale`.
struct Backward<'a> {
    y: &'a [f32],
    dy: &'a [f32],
    rows: Rows,
    dx: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { y, dy, rows, dx } = self;
        let n = rows.n;
        for ((y, dy), dx) in y.chunks(n).zip(dy.chunks(n)).zip(dx.chunks_mut(n)) {
            let dot = sum_of(y, dy, |y, d| y * d);
            for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
                *dx = y * (d - dot) * rows.scale;
            }
        }
    }
}

impl Softmax {
    fn forward(&self, x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        vectorised(Forward {
            x,
            bias,
            rows: self.0,
            out: &mut out,
        });
        out
    }

    fn backward(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let dx = with_values(self.name(), [res, grad], |[y, dy]| {
            let mut dx = vec![0f32; y.len()];
            vectorised(Backward {
                y,
                dy,
                rows: self.0,
                dx: &mut dx,
            });
            dx
        })?;
        gradient(dx, x)
    }

    fn name(&self) -> &'static str {
        "attention-softmax"
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        Softmax::name(self)
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(Softmax::name(self), x, layout)?;
        Ok((
            CpuStorage::F32(self.forward(x, None)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(x, res, grad)?))
    }
}

/// The mask is a constant: it gets no gradient.
impl CustomOp2 for Softmax {
    fn name(&self) -> &'static str {
        Softmax::name(self)
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        bias: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = Softmax::name(self);
        let (x, bias) = (values(name, x, lx)?, values(name, bias, lb)?);
        Ok((
            CpuStorage::F32(self.forward(x, Some(bias))),
            lx.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.backward(x, res, grad)?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nn::gemm::tests::{max_diff, random};
    use candle_core::{DType, Device, Var};

    /// The composed reference: candle's affine, broadcast add and softmax.
    fn composed(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Tensor {
        let mut z = x.affine(scale, 0.0).unwrap();
        if let Some(b) = bias {
            z = z.broadcast_add(b).unwrap();
        }
        candle_nn::ops::softmax(&z, D::Minus1).unwrap()
    }

    /// The fused op's value and gradient against the composed ops in f64: scaled scores of two
    /// batch rows and three heads under a causal mask that differs between the batch rows
    /// (−1e9 where a query may not look), and without a mask.
    #[test]
    fn fused_equals_the_composed_softmax_and_its_gradient() {
        let (b, h, t) = (2, 3, 4);
        let mut mask = vec![0f64; b * t * t];
        for r in 0..b {
            for q in 0..t {
                for k in 0..t {
                    // Row 1 also hides key 0 from later queries. No row is fully masked:
                    // there f32 rounds every score to −1e9 and f64 does not.
                    if k > q || (r == 1 && k == 0 && q > 0) {
                        mask[(r * t + q) * t + k] = -1e9;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu).unwrap();
        let x0 = (random(&[b, h, t, t], 21, DType::F64) * 6.0).unwrap();
        let weights = random(&[b, h, t, t], 22, DType::F64);
        let scale = 1.0 / 8f64.sqrt();
        for bias in [Some(&mask), None] {
            let run = |dtype: DType, fused: bool| {
                let x = Var::from_tensor(&x0.to_dtype(dtype).unwrap()).unwrap();
                let bias = bias.map(|m| m.to_dtype(dtype).unwrap());
                let y = if fused {
                    scaled_softmax(&x, scale, bias.as_ref()).unwrap().unwrap()
                } else {
                    composed(&x, scale, bias.as_ref())
                };
                let loss = (y.clone() * weights.to_dtype(dtype).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap();
                (y, loss.backward().unwrap().get(&x).unwrap().clone())
            };
            let (fused, composed) = (run(DType::F32, true), run(DType::F64, false));
            assert!(fused.0.track_op());
            assert!(max_diff(&fused.0, &composed.0) < 1e-6);
            assert!(max_diff(&fused.1, &composed.1) < 1e-6);
        }
    }

    /// The mask gets no gradient, and shapes the kernel does not know take the composed path.
    #[test]
    fn the_mask_gets_no_gradient_and_other_shapes_fall_back() {
        let x = Var::from_tensor(&random(&[1, 2, 3, 3], 23, DType::F32)).unwrap();
        let mask =
            Var::from_tensor(&Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap())
                .unwrap();
        let y = scaled_softmax(&x, 0.5, Some(&mask)).unwrap().unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_some() && grads.get(&mask).is_none());
        let per_head = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(scaled_softmax(&x, 0.5, Some(&per_head)).unwrap().is_none());
        let strided = x.transpose(2, 3).unwrap();
        assert!(scaled_softmax(&strided, 0.5, None).unwrap().is_none());
    }
}
