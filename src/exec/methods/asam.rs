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
use crate::sema::{AdvInit, Norm, Op};

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
    let elements = columns.len() * d;
    let eps = search.budget;
    // δ starts at zero or uniformly inside the ball.
    let mut delta = vec![0f32; n * t * d];
    if search.init == AdvInit::Random {
        for row in 0..n {
            let cells: Vec<usize> = columns
                .iter()
                .flat_map(|&c| (0..d).map(move |j| (row * t + c) * d + j))
                .collect();
            match search.norm {
                Norm::Linf => {
                    for &i in &cells {
                        delta[i] = (eps * (2.0 * rng.uniform() - 1.0)) as f32;
                    }
                }
                Norm::L2 => {
                    let z: Vec<f64> = cells.iter().map(|_| rng.normal()).collect();
                    let norm = z.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                    let radius = eps * rng.uniform().powf(1.0 / elements as f64);
                    for (&i, zi) in cells.iter().zip(&z) {
                        delta[i] = (radius * zi / norm) as f32;
                    }
                }
            }
        }
    }
    let mut delta = Tensor::from_vec(delta, (n, t, d), &device)?;
    let clean = edit.repeated(n)?.to_dtype(DType::F32)?;
    let layout = edit.layout(n);
    let step_size = eps / search.steps.max(1) as f64;
    for _ in 0..search.steps {
        let var = Var::from_tensor(&delta)?;
        let z = (&clean + var.as_tensor().broadcast_mul(&mask)?)?.to_dtype(dtype)?;
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
        let direction = match search.norm {
            Norm::Linf => g.sign()?,
            Norm::L2 => {
                let norms = (g.sqr()?.sum_keepdim((1, 2))?.sqrt()? + 1e-12)?;
                g.broadcast_div(&norms)?
            }
        };
        let stepped = (var.as_tensor().detach() + (direction * step_size)?)?;
        delta = match search.norm {
            Norm::Linf => stepped.clamp(-eps, eps)?,
            Norm::L2 => {
                let norms = stepped.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
                let factor = (norms.clamp(eps, f64::INFINITY)?.recip()? * eps)?;
                stepped.broadcast_mul(&factor)?
            }
        };
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
