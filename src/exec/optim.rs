//! The optimisers of `train`, written out so that `project update` can act on the step an
//! optimiser proposes before it is applied (LPEdit's `Δw = U₂U₂ᵀ g / (1 + λ)` projects the
//! optimiser's update, not the raw gradient).
//!
//! [`Optimizer::update`] returns the update `u` with `p ← p + u`:
//! - SGD: `u = −lr·g`;
//! - Adam (Kingma & Ba, with bias correction, ε = 1e-8): `m ← β₁m + (1−β₁)g`,
//!   `v ← β₂v + (1−β₂)g²`, `u = −lr·m̂ / (√v̂ + ε)`; with weight decay, AdamW's decoupled
//!   `−lr·λ·p` is added (Loshchilov & Hutter).

use candle_core::Tensor;

use crate::exec::error::{ExecError, Result};
use crate::sema::Optimizer as Spec;

/// Adam's ε.
pub const ADAM_EPS: f64 = 1e-8;

/// An optimiser over a fixed list of parameters, indexed `0..n`.
#[derive(Debug)]
pub struct Optimizer {
    spec: Spec,
    /// Steps taken (Adam's bias correction).
    t: i32,
    moments: Vec<Option<(Tensor, Tensor)>>,
}

impl Optimizer {
    pub fn new(spec: Spec, params: usize) -> Self {
        Self {
            spec,
            t: 0,
            moments: vec![None; params],
        }
    }

    /// Starts an optimisation step (before the first `update` of that step).
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// The update of parameter `i` (value `p`, gradient `g`).
    pub fn update(&mut self, i: usize, p: &Tensor, g: &Tensor) -> Result<Tensor> {
        match self.spec {
            Spec::Sgd { lr } => Ok((g * -lr)?),
            Spec::Adam {
                lr,
                beta1,
                beta2,
                weight_decay,
            } => {
                let t = self.t.max(1);
                let slot = self.moments.get_mut(i).ok_or_else(|| {
                    ExecError::internal(format!("optimiser has no parameter {i}"))
                })?;
                let (mut m, mut v) = ((g * (1.0 - beta1))?, (g.sqr()? * (1.0 - beta2))?);
                if let Some((m0, v0)) = slot.take() {
                    m = ((m0 * beta1)? + m)?;
                    v = ((v0 * beta2)? + v)?;
                }
                let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                let mut u = ((m_hat / (v_hat.sqrt()? + ADAM_EPS)?)? * -lr)?;
                if weight_decay > 0.0 {
                    u = (u - (p * (lr * weight_decay))?)?;
                }
                *slot = Some((m, v));
                Ok(u)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn close(a: &Tensor, b: &[f64]) {
        let a = a.to_vec1::<f64>().unwrap();
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sgd_steps_against_the_gradient() {
        let mut o = Optimizer::new(Spec::Sgd { lr: 0.1 }, 1);
        o.begin_step();
        close(
            &o.update(0, &t(&[1.0, 2.0]), &t(&[0.5, -3.0])).unwrap(),
            &[-0.05, 0.3],
        );
    }

    #[test]
    fn adam_matches_hand_computed_steps() {
        let (lr, b1, b2, wd) = (0.01, 0.9, 0.999, 0.1);
        let mut o = Optimizer::new(
            Spec::Adam {
                lr,
                beta1: b1,
                beta2: b2,
                weight_decay: wd,
            },
            1,
        );
        let p = [1.0, -2.0];
        let g1 = [0.5, -1.0];
        let g2 = [0.1, 0.3];
        // Step 1: m̂ = g, v̂ = g², so u = −lr·sign(g)·|g|/(|g| + ε) − lr·wd·p.
        o.begin_step();
        let u1 = o.update(0, &t(&p), &t(&g1)).unwrap();
        let want1: Vec<f64> = g1
            .iter()
            .zip(p)
            .map(|(g, p)| -lr * g / (g.abs() + ADAM_EPS) - lr * wd * p)
            .collect();
        close(&u1, &want1);
        // Step 2, by hand.
        o.begin_step();
        let u2 = o.update(0, &t(&p), &t(&g2)).unwrap();
        let want2: Vec<f64> = (0..2)
            .map(|i| {
                let m = b1 * (1.0 - b1) * g1[i] + (1.0 - b1) * g2[i];
                let v = b2 * (1.0 - b2) * g1[i] * g1[i] + (1.0 - b2) * g2[i] * g2[i];
                let m_hat = m / (1.0 - b1 * b1);
                let v_hat = v / (1.0 - b2 * b2);
                -lr * m_hat / (v_hat.sqrt() + ADAM_EPS) - lr * wd * p[i]
            })
            .collect();
        close(&u2, &want2);
    }
}
