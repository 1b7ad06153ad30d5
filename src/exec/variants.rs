//! Variants of the edit case: ELoRA's perturbations (Appendix C.2) and ASAM's adversarial
//! latents (LAR, Eq. 4-5). Both change the input latents of the edit sequence and keep its
//! layout, so every variant runs in one batched forward pass with the clean sequence.
//!
//! Variants perturb the *input* of the edit case — the image tokens and the prompt's text tokens
//! — never the teacher-forced target tokens that follow the prompt: the target is what the model
//! must produce, not part of the question it is asked.
//!
//! - `mask_vision(window)`: zero `window` consecutive image tokens starting at a uniform
//!   `s ∈ [0, N_v − window]` (ELoRA C.2).
//! - `noise_text(sigma)`: add `N(0, σ²)` to every prompt text-token embedding.
//! - `adversarial`: `count` variants `z + δ` of the joint latent of the listed streams, `δ` from
//!   `steps` steps of projected gradient ascent on the target's NLL from a random (or zero) start
//!   in the `budget`-ball, step `budget/steps` along the gradient normalised in the chosen norm.

use candle_core::{DType, Tensor, Var};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::input::EditInput;
use crate::exec::losses::per_row_nll;
use crate::exec::rng::Rng;
use crate::exec::values::Variants;
use crate::model::batch::TokenKind;
use crate::model::{Hooks, Latents, Readout, VisionLanguageModel};
use crate::sema::site::{Stream, StreamPoint};
use crate::sema::{AdvInit, Apply, Norm, Perturbation};

/// `count` perturbed copies of the edit case's input.
pub fn perturb(
    edit: &EditInput,
    kinds: &[Perturbation],
    count: usize,
    apply: Apply,
    rng: &mut Rng,
) -> Result<Variants> {
    let (_, t, d) = edit.latents.embeds.dims3()?;
    let input = edit.input_columns();
    let kinds_of = edit.kinds();
    let visual: Vec<usize> = input
        .clone()
        .filter(|&c| kinds_of.get(c) == Some(&TokenKind::Visual))
        .collect();
    let text: Vec<usize> = input
        .filter(|&c| kinds_of.get(c) == Some(&TokenKind::Text))
        .collect();
    let mut keep = vec![1f32; count * t];
    let mut noise = vec![0f32; count * t * d];
    for row in 0..count {
        let chosen: Vec<Perturbation> = match apply {
            Apply::All => kinds.to_vec(),
            Apply::Each => kinds
                .get(row % kinds.len().max(1))
                .copied()
                .into_iter()
                .collect(),
        };
        for kind in chosen {
            match kind {
                Perturbation::MaskVision { window } => {
                    if window > visual.len() {
                        return Err(ExecError::Numeric {
                            reason: format!(
                                "mask_vision(window: {window}) needs {window} image tokens but the edit case has {}",
                                visual.len()
                            ),
                            help: "choose a window no larger than the image's token count".into(),
                        });
                    }
                    let start = rng.below(visual.len() - window + 1);
                    for &c in &visual[start..start + window] {
                        keep[row * t + c] = 0.0;
                    }
                }
                Perturbation::NoiseText { sigma } => {
                    for &c in &text {
                        let at = (row * t + c) * d;
                        for x in &mut noise[at..at + d] {
                            *x += (sigma * rng.normal()) as f32;
                        }
                    }
                }
            }
        }
    }
    let device = edit.latents.embeds.device();
    let dtype = edit.latents.embeds.dtype();
    let keep = Tensor::from_vec(keep, (count, t, 1), device)?.to_dtype(dtype)?;
    let noise = Tensor::from_vec(noise, (count, t, d), device)?.to_dtype(dtype)?;
    let latents = (edit.repeated(count)?.broadcast_mul(&keep)? + noise)?;
    Ok(Variants {
        latents,
        layout: edit.layout(count),
        count,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::rng;
    use crate::model::batch::TokenLayout;
    use crate::model::{Encoded, PadSide};
    use candle_core::Device;

    /// A sequence of 2 text, 4 image, 2 text (prompt) and 2 target tokens, hidden width 3.
    fn edit() -> EditInput {
        use TokenKind::{Text, Visual};
        let kinds = vec![
            Text, Text, Visual, Visual, Visual, Visual, Text, Text, Text, Text,
        ];
        let layout = TokenLayout::new(&[kinds], PadSide::Right);
        let embeds = Tensor::ones((1, 10, 3), DType::F32, &Device::Cpu).unwrap();
        EditInput {
            case: 0,
            encoded: Encoded {
                input_ids: vec![1; 10],
                image_positions: vec![2, 3, 4, 5],
                pixel_values: None,
            },
            latents: Latents { embeds, layout },
            target: vec![7, 8],
        }
    }

    #[test]
    fn masks_zero_one_window_of_image_tokens_and_noise_touches_only_prompt_text() {
        let e = edit();
        let kinds = [
            Perturbation::MaskVision { window: 2 },
            Perturbation::NoiseText { sigma: 0.5 },
        ];
        let v = perturb(&e, &kinds, 4, Apply::Each, &mut rng::stream(0, "t", 0)).unwrap();
        assert_eq!(v.latents.dims(), &[4, 10, 3]);
        let rows = v.latents.to_vec3::<f32>().unwrap();
        // Rows 0 and 2 are masked: exactly two consecutive image columns are zero, the rest is 1.
        for row in [0, 2] {
            let zero: Vec<usize> = (0..10).filter(|&c| rows[row][c][0] == 0.0).collect();
            assert_eq!(zero.len(), 2, "{zero:?}");
            assert_eq!(zero[1], zero[0] + 1);
            assert!(zero.iter().all(|c| (2..6).contains(c)));
            assert!((0..10)
                .filter(|c| !zero.contains(c))
                .all(|c| rows[row][c].iter().all(|x| *x == 1.0)));
        }
        // Rows 1 and 3 are noisy at the prompt's text columns only (0, 1, 6, 7).
        for row in [1, 3] {
            for (c, column) in rows[row].iter().enumerate().take(10) {
                let moved = column.iter().any(|x| *x != 1.0);
                assert_eq!(moved, [0, 1, 6, 7].contains(&c), "row {row} column {c}");
            }
        }
        let all = perturb(&e, &kinds, 2, Apply::All, &mut rng::stream(0, "t", 0)).unwrap();
        let rows = all.latents.to_vec3::<f32>().unwrap();
        for row in rows {
            assert_eq!((2..6).filter(|&c| row[c][0] == 0.0).count(), 2);
            assert!(row[0].iter().any(|x| *x != 1.0));
        }
        let too_wide = [Perturbation::MaskVision { window: 5 }];
        assert!(perturb(&e, &too_wide, 1, Apply::All, &mut rng::stream(0, "t", 0)).is_err());
    }
}
