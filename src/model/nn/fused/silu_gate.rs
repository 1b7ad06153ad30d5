//! Llama's gated activation `silu(gate) · up` in one pass, with its backward in one pass.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::simd::{sigmoid, vectorised, Kernel};
use super::{applies, gradient, values, with_values};

/// `silu(gate) · up` for tensors of one shape: fused on contiguous CPU f32, composed elsewhere.
pub fn silu_gate(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if applies(&[gate, up]) && gate.shape() == up.shape() {
        gate.apply_op2(up, SiluGate)
    } else {
        gate.silu()? * up
    }
}

struct SiluGate;

/// `out = g · σ(g) · u`.
struct Forward<'a> {
    g: &'a [f32],
    u: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { g, u, out } = self;
        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
            *o = g * sigmoid(g) * u;
        }
    }
}

/// With `s = σ(g)`: `du = dy · g·s` and `dg = dy · u · s·(1 + g·(1 − s))`.
struct Backward<'a> {
    g: &'a [f32],
    u: &'a [f32],
    dy: &'a [f32],
    dg: &'a mut [f32],
    du: &'a mut [f32],
}

impl Kernel for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { g, u, dy, dg, du } = self;
        for ((dg, du), ((&g, &u), &dy)) in dg.iter_mut().zip(du).zip(g.iter().zip(u).zip(dy)) {
            let s = sigmoid(g);
            *du = dy * g * s;
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
        }
    }
}

impl CustomOp2 for SiluGate {
    fn name(&self) -> &'static str {
        "silu-gate"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        lg: &Layout,
        up: &CpuStorage,
        lu: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (values(self.name(), gate, lg)?, values(self.name(), up, lu)?);
        let mut out = vec![0f32; g.len()];
        vectorised(Forward {
            g,
            u,
            out: &mut out,
        });
        Ok((CpuStorage::F32(out), lg.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dg, du) = with_values(self.name(), [gate, up, grad], |[g, u, dy]| {
            let (mut dg, mut du) = (vec![0f32; g.len()], vec![0f32; g.len()]);
            vectorised(Backward {
                g,
                u,
                dy,
                dg: &mut dg,
                du: &mut du,
            });
            (dg, du)
        })?;
        let dg = gate.track_op().then(|| gradient(dg, gate)).transpose()?;
        let du = up.track_op().then(|| gradient(du, up)).transpose()?;
        Ok((dg, du))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nn::gemm::tests::{max_diff, random};
    use candle_core::{DType, Var};

    /// The fused op's value and both gradients against candle's composed ops in f64.
    #[test]
    fn fused_equals_the_composed_ops_and_their_gradients() {
        let scale = |t: Tensor| (t * 8.0).unwrap(); // gates over [−4, 4): both tails of σ
        let g0 = scale(random(&[2, 5, 7], 1, DType::F64));
        let u0 = random(&[2, 5, 7], 2, DType::F64);
        let w = random(&[2, 5, 7], 3, DType::F64);
        let run = |dtype: DType, fused: bool| {
            let g = Var::from_tensor(&g0.to_dtype(dtype).unwrap()).unwrap();
            let u = Var::from_tensor(&u0.to_dtype(dtype).unwrap()).unwrap();
            let y = if fused {
                silu_gate(&g, &u).unwrap()
            } else {
                (g.silu().unwrap() * u.as_tensor()).unwrap()
            };
            let loss = (y.clone() * w.to_dtype(dtype).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            (
                y,
                grads.get(&g).unwrap().clone(),
                grads.get(&u).unwrap().clone(),
            )
        };
        let fused = run(DType::F32, true);
        let composed = run(DType::F64, false);
        assert_eq!(fused.0.dtype(), DType::F32);
        assert!(fused.0.track_op(), "the fused result is in the graph");
        for (a, b) in [
            (fused.0, composed.0),
            (fused.1, composed.1),
            (fused.2, composed.2),
        ] {
            assert!(max_diff(&a, &b) < 1e-6, "{}", max_diff(&a, &b));
        }
    }

    /// Only an operand in autograd gets a gradient; a strided view takes the composed path.
    #[test]
    fn frozen_operands_get_no_gradient_and_views_fall_back() {
        let g = Var::from_tensor(&random(&[3, 4], 4, DType::F32)).unwrap();
        let u = random(&[3, 4], 5, DType::F32);
        let grads = silu_gate(&g, &u)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&u).is_none());
        assert!(grads.get(&g).is_some());
        let (gt, ut) = (g.t().unwrap(), u.t().unwrap());
        let strided = silu_gate(&gt, &ut).unwrap();
        let want = (gt.silu().unwrap() * &ut).unwrap();
        assert_eq!(max_diff(&strided, &want), 0.0);
    }
}
