//! The edit case as the model sees it: the teacher-forced sequence `prompt + " " + target` with
//! its image, embedded once per edit, and where the target tokens sit.
//!
//! The target is tokenised alone and read at the end of the sequence, exactly as the evaluator
//! scores Rel, so the loss an editor minimises is the score it is judged by. Variants of the case
//! (perturbed or adversarial latents) keep this layout row for row.

use std::ops::Range;

use candle_core::Tensor;

use crate::eval::{EditState, PreparedCase};
use crate::exec::error::{ExecError, Result};
use crate::model::batch::{TokenKind, TokenLayout};
use crate::model::{Encoded, Latents, PadSide, VisionLanguageModel};

/// One edit case, encoded and embedded.
#[derive(Debug, Clone)]
pub struct EditInput {
    /// The record's index in the data file.
    pub case: usize,
    pub encoded: Encoded,
    /// `(1, T, hidden)`, no autograd history.
    pub latents: Latents,
    /// Token ids of the target, as the evaluator tokenises it.
    pub target: Vec<u32>,
}

impl EditInput {
    /// Encodes and embeds `case` with the model of `state`.
    pub fn new(state: &EditState, case: &PreparedCase) -> Result<EditInput> {
        let model = &state.model;
        let encoded = model.encode(&case.edit_text(), std::slice::from_ref(&case.image))?;
        let target = model.tokenize(case.target())?;
        if target.is_empty() || target.len() >= encoded.len() {
            return Err(ExecError::Numeric {
                reason: format!(
                    "case {}: the target {:?} has {} tokens in a sequence of {}",
                    case.case.index,
                    case.target(),
                    target.len(),
                    encoded.len()
                ),
                help: "every edit target must hold at least one token after the prompt".into(),
            });
        }
        let batch = model.batch(std::slice::from_ref(&encoded), PadSide::Right)?;
        let latents = model.embed(&batch)?;
        let latents = latents.with_embeds(latents.embeds.detach());
        Ok(EditInput {
            case: case.case.index,
            encoded,
            latents,
            target,
        })
    }

    /// Tokens in the sequence.
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Columns whose logits predict the target tokens.
    pub fn target_positions(&self) -> Range<usize> {
        let len = self.len();
        len - self.target.len() - 1..len - 1
    }

    /// Column of the last prompt token (the state that summarises the question).
    pub fn last_prompt(&self) -> usize {
        self.len() - self.target.len() - 1
    }

    /// Columns of the input — image and prompt tokens — as opposed to the teacher-forced target.
    pub fn input_columns(&self) -> Range<usize> {
        0..self.len() - self.target.len()
    }

    /// The kind of every column of the sequence.
    pub fn kinds(&self) -> &[TokenKind] {
        self.latents.layout.kinds()
    }

    /// The layout of `rows` copies of the sequence.
    pub fn layout(&self, rows: usize) -> TokenLayout {
        TokenLayout::new(&vec![self.kinds().to_vec(); rows], PadSide::Right)
    }

    /// The clean latents repeated `rows` times, `(rows, T, hidden)`.
    pub fn repeated(&self, rows: usize) -> Result<Tensor> {
        let (_, t, d) = self.latents.embeds.dims3()?;
        Ok(self
            .latents
            .embeds
            .broadcast_as((rows, t, d))?
            .contiguous()?)
    }

    /// `(row, column)` of every target-predicting position of `rows` stacked copies.
    pub fn target_readout(&self, rows: usize) -> Vec<(usize, usize)> {
        (0..rows)
            .flat_map(|r| self.target_positions().map(move |c| (r, c)))
            .collect()
    }
}
