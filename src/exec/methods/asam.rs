//! ASAM's adversarial latents (LAR, Eq. 4-5). Like ELoRA's perturbations they change the input
//! latents of the edit sequence and keep its layout, so every variant runs in one batched forward
//! pass with the clean sequence.
//!
//! Variants perturb the *input* of the edit case — the image tokens and the prompt's text tokens
//! — never the teacher-forced target tokens that follow the prompt: the target is what the model
//! must produce, not part of the question it is asked.
//!
//! - `adversarial`: `count` variants `z + δ` of the joint latent of the listed streams, `δ` from
//!   `steps` steps of projected gradient ascent on the target's NLL from a random (or zero) start
//!   in the `budget`-ball, step `budget/steps` along the gradient normalised in the chosen norm.
//!
//! The ball ([`Ball`]) depends on `scale`: `absolute` is one ball of radius ε over every
//! coordinate of a variant's δ (ASAM's literal reading); `per_token` gives every token's δ its
//! own ball of radius ε (start, step and projection are all per token); `relative` is the
//! absolute ball with radius ε·‖z‖ of the clean joint latent (the masked columns, in the same
//! norm).

use std::ops::Range;

use candle_core::{DType, Tensor, Var};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::Executor;
use crate::exec::input::EditInput;
use crate::exec::losses::per_row_nll;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::rng::{self, Rng};
use crate::exec::values::{Value, Values, Variants};
use crate::model::batch::TokenKind;
use crate::model::{Hooks, Latents, Readout, VisionLanguageModel};
use crate::plan::Step;
use crate::sema::ops;
use crate::sema::site::{Stream, StreamPoint};
use crate::sema::{AdvInit, BudgetScale, Norm, Op};

impl Executor {
    /// `adversarial`: LAR's variants against the current weights, each set of an edit from its
    /// own random stream.
    pub(crate) fn adversarial_step(
        &mut self,
        step: &Step,
        state: &EditState,
        edit: &EditInput,
        values: &mut Values,
    ) -> Result<()> {
        let Op::Adversarial(ops::Adversarial {
            latents,
            budget,
            count,
            steps,
            init,
            norm,
            scale,
        }) = &step.op
        else {
            return Err(ExecError::internal("adversarial on another op"));
        };
        let draw = self.adversarial_draws;
        self.adversarial_draws += 1;
        let mut r = rng::stream(self.seed, "adversarial", (edit.case as u64) << 32 | draw);
        let search = Search {
            budget: *budget,
            count: *count,
            steps: *steps,
            init: *init,
            norm: *norm,
            scale: *scale,
        };
        let v = adversarial(edit, latents, search, state, &mut r)?;
        values.insert(step.id, Value::Variants(v));
        Ok(())
    }
}

/// How ASAM's LAR searches.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    pub budget: f64,
    pub count: usize,
    pub steps: usize,
    pub init: AdvInit,
    pub norm: Norm,
    pub scale: BudgetScale,
}

/// The set δ is kept in: radius `radius` in `norm`, over all of a variant's coordinates or over
/// each token's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    pub radius: f64,
    pub norm: Norm,
    pub per_token: bool,
}

impl Ball {
    /// The ball of `search` for a clean joint latent of norm `z_norm` (in `search.norm`).
    pub fn of(search: &Search, z_norm: f64) -> Ball {
        let radius = match search.scale {
            BudgetScale::Relative => search.budget * z_norm,
            BudgetScale::Absolute | BudgetScale::PerToken => search.budget,
        };
        Ball {
            radius,
            norm: search.norm,
            per_token: search.scale == BudgetScale::PerToken,
        }
    }

    /// The dimensions one ball spans in an `(n, t, d)` tensor.
    fn dims(&self) -> &'static [usize] {
        if self.per_token {
            &[2]
        } else {
            &[1, 2]
        }
    }

    /// `x` scaled to unit norm per ball (ℓ2), or its sign (ℓ∞): the steepest-ascent direction.
    pub fn direction(&self, g: &Tensor) -> Result<Tensor> {
        Ok(match self.norm {
            Norm::Linf => g.sign()?,
            Norm::L2 => {
                let norms = (g.sqr()?.sum_keepdim(self.dims())?.sqrt()? + 1e-12)?;
                g.broadcast_div(&norms)?
            }
        })
    }

    /// The nearest point of the ball: clamp (ℓ∞), or shrink each ball's part whose norm
    /// exceeds the radius onto the sphere (ℓ2).
    pub fn project(&self, delta: &Tensor) -> Result<Tensor> {
        let eps = self.radius;
        Ok(match self.norm {
            Norm::Linf => delta.clamp(-eps, eps)?,
            Norm::L2 => {
                let norms = delta.sqr()?.sum_keepdim(self.dims())?.sqrt()?;
                let factor = (norms.clamp(eps.max(1e-30), f64::INFINITY)?.recip()? * eps)?;
                delta.broadcast_mul(&factor)?
            }
        })
    }

    /// A uniform draw inside the ball for every variant: `delta` is `(rows, t, d)` row-major,
    /// and each row's perturbed coordinates are the `d` of each token in `columns`.
    fn random_start(
        &self,
        columns: &[usize],
        t: usize,
        d: usize,
        delta: &mut [f32],
        rng: &mut Rng,
    ) {
        let eps = self.radius;
        for row in delta.chunks_mut(t * d) {
            let tokens = columns.iter().map(|&c| c * d..(c + 1) * d);
            match self.norm {
                Norm::Linf => {
                    for i in tokens.flatten() {
                        row[i] = (eps * (2.0 * rng.uniform() - 1.0)) as f32;
                    }
                }
                Norm::L2 if self.per_token => {
                    for token in tokens {
                        uniform_in_l2_ball(&[token], eps, row, rng);
                    }
                }
                Norm::L2 => uniform_in_l2_ball(&tokens.collect::<Vec<_>>(), eps, row, rng),
            }
        }
    }
}

/// Writes a point drawn uniformly from the ℓ2 ball of radius `eps` into `delta` at the
/// coordinates of `spans`, in order (the draws' order is the coordinates' order).
fn uniform_in_l2_ball(spans: &[Range<usize>], eps: f64, delta: &mut [f32], rng: &mut Rng) {
    let coordinates = || spans.iter().flat_map(|s| s.clone());
    let z: Vec<f64> = coordinates().map(|_| rng.normal()).collect();
    let norm = z.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    let radius = eps * rng.uniform().powf(1.0 / z.len().max(1) as f64);
    for (i, zi) in coordinates().zip(&z) {
        delta[i] = (radius * zi / norm) as f32;
    }
}

/// ‖z‖ of the clean joint latent (`clean` masked to the perturbed columns) in `norm`.
fn latent_norm(clean: &Tensor, mask: &Tensor, norm: Norm) -> Result<f64> {
    let z = clean.get(0)?.unsqueeze(0)?.broadcast_mul(mask)?;
    let z = z.to_dtype(DType::F64)?;
    Ok(match norm {
        Norm::L2 => z.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?,
        Norm::Linf => z.abs()?.max_all()?.to_scalar::<f64>()?,
    })
}

/// ASAM's adversarial variants against the current weights of `state`.
pub fn adversarial(
    edit: &EditInput,
    latents: &[Stream],
    search: Search,
    state: &EditState,
    rng: &mut Rng,
) -> Result<Variants> {
    let (_, t, d) = edit.latents.embeds.dims3()?;
    let device = edit.latents.embeds.device().clone();
    let dtype = edit.latents.embeds.dtype();
    let n = search.count;
    // Which columns the joint latent z covers: the listed embedding streams, input part only.
    let want = |k: TokenKind| {
        latents.iter().any(|s| {
            matches!(
                (s.point, k),
                (StreamPoint::EmbedVision, TokenKind::Visual)
                    | (StreamPoint::EmbedText, TokenKind::Text)
            )
        })
    };
    let columns: Vec<usize> = edit
        .input_columns()
        .filter(|&c| edit.kinds().get(c).is_some_and(|k| want(*k)))
        .collect();
    if columns.is_empty() {
        return Err(ExecError::Numeric {
            reason: "the edit case has no token in the latents to perturb".into(),
            help: "list `embed.vision` and/or `embed.text`".into(),
        });
    }
    let mut mask = vec![0f32; t];
    for &c in &columns {
        mask[c] = 1.0;
    }
    let mask = Tensor::from_vec(mask, (1, t, 1), &device)?.to_dtype(DType::F32)?;
    let clean = edit.repeated(n)?.to_dtype(DType::F32)?;
    let ball = Ball::of(&search, latent_norm(&clean, &mask, search.norm)?);
    // δ starts at zero or uniformly inside the ball.
    let mut delta = vec![0f32; n * t * d];
    if search.init == AdvInit::Random {
        ball.random_start(&columns, t, d, &mut delta, rng);
    }
    let mut delta = Tensor::from_vec(delta, (n, t, d), &device)?;
    let layout = edit.layout(n);
    let step_size = ball.radius / search.steps.max(1) as f64;
    for _ in 0..search.steps {
        // δ is zero outside the mask (the start, the masked step and the projection keep it
        // so), so `z + δ` equals `z + δ·mask` without the product and its backward.
        let var = Var::from_tensor(&delta)?;
        let z = (&clean + var.as_tensor())?.to_dtype(dtype)?;
        let logits = state.model.forward(
            &Latents {
                embeds: z,
                layout: layout.clone(),
            },
            &mut Hooks::new(),
            &state.adapters,
            &Readout::Positions(edit.target_readout(n)),
        )?;
        let loss = per_row_nll(&logits, &edit.target, n)?.sum_all()?;
        let grads = loss.backward()?;
        let g = grads
            .get(var.as_tensor())
            .ok_or_else(|| ExecError::internal("no gradient reached the adversarial latents"))?
            .broadcast_mul(&mask)?;
        let direction = ball.direction(&g)?;
        let stepped = (var.as_tensor().detach() + (direction * step_size)?)?;
        delta = ball.project(&stepped)?;
    }
    let latents = (clean + delta.broadcast_mul(&mask)?)?
        .to_dtype(dtype)?
        .detach();
    Ok(Variants {
        latents,
        layout,
        count: n,
    })
}

impl Execute for ops::Adversarial {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.adversarial_step(cx.step, cx.state, cx.edit()?, cx.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A random `(n, t, d)` tensor of large entries: every ball must shrink it.
    fn big(n: usize, t: usize, d: usize) -> Tensor {
        (Tensor::randn(0f32, 1.0, (n, t, d), &Device::Cpu).unwrap() * 10.0).unwrap()
    }

    fn norms(x: &Tensor, dims: &[usize]) -> Vec<f32> {
        x.sqr()
            .unwrap()
            .sum_keepdim(dims)
            .unwrap()
            .sqrt()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn search(scale: BudgetScale, norm: Norm) -> Search {
        Search {
            budget: 0.5,
            count: 3,
            steps: 1,
            init: AdvInit::Random,
            norm,
            scale,
        }
    }

    #[test]
    fn absolute_bounds_each_variants_whole_delta() {
        let ball = Ball::of(&search(BudgetScale::Absolute, Norm::L2), 123.0);
        assert_eq!(ball.radius, 0.5);
        let p = ball.project(&big(3, 5, 4)).unwrap();
        for v in norms(&p, &[1, 2]) {
            assert!(v <= 0.5 * (1.0 + 1e-5), "{v}");
            assert!(
                v >= 0.5 * (1.0 - 1e-5),
                "a large δ lands on the sphere: {v}"
            );
        }
        // A δ already inside is left alone.
        let small = (big(3, 5, 4) * 1e-4).unwrap();
        let kept = ball.project(&small).unwrap();
        let diff = (kept - &small).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-9);
    }

    #[test]
    fn per_token_bounds_every_tokens_delta_alone() {
        let ball = Ball::of(&search(BudgetScale::PerToken, Norm::L2), 123.0);
        let p = ball.project(&big(3, 5, 4)).unwrap();
        let per_token = norms(&p, &[2]);
        assert_eq!(per_token.len(), 15);
        assert!(
            per_token.iter().all(|v| *v <= 0.5 * (1.0 + 1e-5)),
            "{per_token:?}"
        );
        // The whole δ is then larger than one token's budget: √5 tokens' worth.
        let whole = norms(&p, &[1, 2]);
        assert!(whole.iter().all(|v| *v > 0.5 * 2.0), "{whole:?}");
        // The ascent direction has unit norm per token.
        let dir = ball.direction(&big(3, 5, 4)).unwrap();
        assert!(norms(&dir, &[2]).iter().all(|v| (v - 1.0).abs() < 1e-4));
    }

    #[test]
    fn relative_bounds_delta_by_budget_times_the_clean_latents_norm() {
        let clean = big(1, 5, 4);
        let mask = Tensor::ones((1, 5, 1), DType::F32, &Device::Cpu).unwrap();
        let z = latent_norm(&clean, &mask, Norm::L2).unwrap();
        let expected = norms(&clean, &[1, 2])[0] as f64;
        assert!((z - expected).abs() < 1e-4 * expected);
        let ball = Ball::of(&search(BudgetScale::Relative, Norm::L2), z);
        assert!((ball.radius - 0.5 * z).abs() < 1e-12);
        let p = ball.project(&(big(3, 5, 4) * 10.0).unwrap()).unwrap();
        for v in norms(&p, &[1, 2]) {
            assert!(f64::from(v) <= 0.5 * z * (1.0 + 1e-5), "{v} vs {}", 0.5 * z);
        }
        // Under linf the relative radius is ε·max|z| and every coordinate is clamped to it.
        let zinf = latent_norm(&clean, &mask, Norm::Linf).unwrap();
        let ball = Ball::of(&search(BudgetScale::Relative, Norm::Linf), zinf);
        let p = ball.project(&big(3, 5, 4)).unwrap();
        let max = p
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(f64::from(max) <= 0.5 * zinf * (1.0 + 1e-6));
    }

    /// The start is drawn coordinate by coordinate in the documented order: each variant's
    /// perturbed tokens in column order, `d` normals per token, then one uniform for the
    /// radius (per ball). Recomputed here with plain loops over a fresh stream.
    #[test]
    fn random_starts_draw_in_column_order() {
        let (n, t, d) = (2, 6, 3);
        let columns = [1usize, 2, 4];
        for per_token in [false, true] {
            let scale = if per_token {
                BudgetScale::PerToken
            } else {
                BudgetScale::Absolute
            };
            let ball = Ball::of(&search(scale, Norm::L2), 1.0);
            let mut delta = vec![0f32; n * t * d];
            ball.random_start(&columns, t, d, &mut delta, &mut rng::stream(3, "t", 1));
            let mut expected = vec![0f32; n * t * d];
            let mut r = rng::stream(3, "t", 1);
            for row in 0..n {
                let balls: Vec<Vec<usize>> = if per_token {
                    columns
                        .iter()
                        .map(|&c| (0..d).map(|j| (row * t + c) * d + j).collect())
                        .collect()
                } else {
                    vec![(columns.iter())
                        .flat_map(|&c| (0..d).map(move |j| (row * t + c) * d + j))
                        .collect()]
                };
                for cells in balls {
                    let z: Vec<f64> = cells.iter().map(|_| r.normal()).collect();
                    let norm = z.iter().map(|x| x * x).sum::<f64>().sqrt();
                    let radius = 0.5 * r.uniform().powf(1.0 / cells.len() as f64);
                    for (&i, zi) in cells.iter().zip(&z) {
                        expected[i] = (radius * zi / norm) as f32;
                    }
                }
            }
            assert_eq!(delta, expected, "per_token {per_token}");
        }
    }

    #[test]
    fn random_starts_lie_inside_their_balls() {
        let (n, t, d) = (3, 5, 4);
        let columns: Vec<usize> = (0..t).collect();
        for scale in [BudgetScale::Absolute, BudgetScale::PerToken] {
            let ball = Ball::of(&search(scale, Norm::L2), 1.0);
            let mut delta = vec![0f32; n * t * d];
            ball.random_start(&columns, t, d, &mut delta, &mut rng::stream(0, "t", 0));
            let x = Tensor::from_vec(delta, (n, t, d), &Device::Cpu).unwrap();
            let dims: &[usize] = if ball.per_token { &[2] } else { &[1, 2] };
            let ns = norms(&x, dims);
            assert!(
                ns.iter().all(|v| *v <= 0.5 + 1e-6 && *v > 0.0),
                "{scale:?}: {ns:?}"
            );
        }
    }
}
