//! Prompts on their way into the decoder: encoded prompts, padded batches, input latents.
//!
//! The decoder never looks at token ids: it sees latents `(B, T, hidden)` plus a [`TokenLayout`]
//! saying which positions are padding, text or image tokens, and which rotary position each
//! token has. That is what lets a recipe perturb or replace the latents (ELoRA's masked visual
//! windows, ASAM's adversarial latents) and still run the same forward pass.

use candle_core::{Device, Tensor};

use crate::model::error::{ModelError, Result};

/// What occupies one position of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Pad,
    Text,
    /// A position filled by an image feature (an expanded `<image>` token).
    Visual,
}

/// Which side of a shorter prompt receives the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// Teacher-forced scoring: every row starts at column 0.
    Right,
    /// Generation: every row ends in the last column, so new tokens line up.
    Left,
}

/// One prompt after tokenisation and `<image>` expansion.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Token ids, BOS included, each `<image>` repeated once per image feature.
    pub input_ids: Vec<u32>,
    /// Indices into `input_ids` that hold image tokens, ascending.
    pub image_positions: Vec<usize>,
    /// Preprocessed images `(n_images, 3, H, W)` (f32, CPU), in prompt order.
    pub pixel_values: Option<Tensor>,
}

impl Encoded {
    /// Appends text tokens (an answer to score, a generated continuation).
    pub fn extend(&mut self, ids: &[u32]) {
        self.input_ids.extend_from_slice(ids);
    }

    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// Kinds and rotary positions of every `(row, column)` of a batch, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLayout {
    batch: usize,
    seq: usize,
    kinds: Vec<TokenKind>,
    positions: Vec<u32>,
}

impl TokenLayout {
    /// Builds the layout of rows of possibly different lengths, padded on `side`. A token's
    /// position is the number of real tokens before it in its row (Hugging Face's
    /// `attention_mask.cumsum(-1) - 1`); padding gets position 0.
    pub fn new(rows: &[Vec<TokenKind>], side: PadSide) -> Self {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut kinds = Vec::with_capacity(rows.len() * seq);
        for row in rows {
            let pad = std::iter::repeat_n(TokenKind::Pad, seq - row.len());
            match side {
                PadSide::Right => kinds.extend(row.iter().copied().chain(pad)),
                PadSide::Left => kinds.extend(pad.chain(row.iter().copied())),
            }
        }
        Self::from_kinds(rows.len(), seq, kinds, &vec![0; rows.len()])
    }

    /// `start[b]` is the position of row `b`'s first real token (non-zero when continuing).
    fn from_kinds(batch: usize, seq: usize, kinds: Vec<TokenKind>, start: &[u32]) -> Self {
        let mut positions = Vec::with_capacity(kinds.len());
        for b in 0..batch {
            let mut next = start.get(b).copied().unwrap_or(0);
            for kind in &kinds[b * seq..(b + 1) * seq] {
                if *kind == TokenKind::Pad {
                    positions.push(0);
                } else {
                    positions.push(next);
                    next += 1;
                }
            }
        }
        Self {
            batch,
            seq,
            kinds,
            positions,
        }
    }

    /// The layout of `new` further text tokens per row after this one (decoding steps).
    pub fn continuation(&self, new: usize) -> Self {
        let start: Vec<u32> = (0..self.batch)
            .map(|b| {
                let row = b * self.seq..(b + 1) * self.seq;
                let real = self.positions[row.clone()].iter().zip(&self.kinds[row]);
                real.filter(|(_, k)| **k != TokenKind::Pad)
                    .map(|(p, _)| p + 1)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        Self::from_kinds(
            self.batch,
            new,
            vec![TokenKind::Text; self.batch * new],
            &start,
        )
    }

    /// The layout of the first `n` columns of every row (`n` at most `seq`). Positions are
    /// kept: a causal model's stream at a column depends on no later column, so a pass over
    /// the first `n` columns gives the whole pass's values there.
    pub fn first_columns(&self, n: usize) -> Self {
        let n = n.min(self.seq);
        fn cut<T: Copy>(rows: &[T], seq: usize, n: usize) -> Vec<T> {
            (rows.chunks(seq.max(1)))
                .flat_map(|row| row[..n].iter().copied())
                .collect()
        }
        Self {
            batch: self.batch,
            seq: n,
            kinds: cut(&self.kinds, self.seq, n),
            positions: cut(&self.positions, self.seq, n),
        }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// All kinds, row-major.
    pub fn kinds(&self) -> &[TokenKind] {
        &self.kinds
    }

    /// Rotary positions, row-major.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Whether `(row, column)` holds a real token.
    pub fn is_valid(&self, row: usize, col: usize) -> bool {
        row < self.batch && col < self.seq && self.kinds[row * self.seq + col] != TokenKind::Pad
    }

    /// Number of real tokens in a row.
    pub fn row_len(&self, row: usize) -> usize {
        (0..self.seq).filter(|&c| self.is_valid(row, c)).count()
    }

    fn flat_where(&self, keep: impl Fn(TokenKind) -> bool) -> Vec<u32> {
        (0..self.kinds.len())
            .filter(|&i| keep(self.kinds[i]))
            .map(|i| i as u32)
            .collect()
    }

    /// Flat indices `row * seq + col` of the real tokens.
    pub fn valid_index(&self) -> Vec<u32> {
        self.flat_where(|k| k != TokenKind::Pad)
    }

    /// Flat indices of the image-token positions (the rows of the `embed.vision` site).
    pub fn visual_index(&self) -> Vec<u32> {
        self.flat_where(|k| k == TokenKind::Visual)
    }

    /// Flat indices of the text positions (the rows of the `embed.text` site).
    pub fn text_index(&self) -> Vec<u32> {
        self.flat_where(|k| k == TokenKind::Text)
    }

    /// Flat index of each row's last real token (`None` for an all-padding row).
    pub fn last_index(&self) -> Vec<Option<u32>> {
        (0..self.batch)
            .map(|b| {
                (0..self.seq)
                    .rev()
                    .find(|&c| self.is_valid(b, c))
                    .map(|c| (b * self.seq + c) as u32)
            })
            .collect()
    }

    /// Rows of `x` (`(B, T, W)`) at the real tokens, as `(N, W)`: the form covariances want.
    pub fn valid_rows(&self, x: &Tensor) -> Result<Tensor> {
        gather_rows(x, &self.valid_index())
    }
}

/// `x` `(B, T, W)` flattened to `(B·T, W)` and restricted to the given flat indices.
pub(crate) fn gather_rows(x: &Tensor, index: &[u32]) -> Result<Tensor> {
    let (b, t, w) = x.dims3()?;
    let idx = Tensor::from_slice(index, index.len(), x.device())?;
    Ok(x.reshape((b * t, w))?.index_select(&idx, 0)?)
}

/// Padded token ids, their layout and the batch's images, on the model's device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(B, T)` u32; padding holds the pad id (any id in the vocabulary works: it is masked).
    pub input_ids: Tensor,
    pub layout: TokenLayout,
    /// Every image of the batch, `(N, 3, H, W)`, in row-then-prompt order; `None` if text-only.
    pub pixel_values: Option<Tensor>,
}

impl Batch {
    /// Pads `prompts` to a common length and moves ids and images to `device`.
    pub fn new(prompts: &[Encoded], side: PadSide, pad_id: u32, device: &Device) -> Result<Self> {
        if prompts.is_empty() {
            return Err(ModelError::Prompt {
                reason: "a batch needs at least one prompt".into(),
                help: "pass one or more encoded prompts".into(),
            });
        }
        let rows: Vec<Vec<TokenKind>> = prompts
            .iter()
            .map(|p| {
                let mut kinds = vec![TokenKind::Text; p.input_ids.len()];
                for &i in &p.image_positions {
                    if let Some(k) = kinds.get_mut(i) {
                        *k = TokenKind::Visual;
                    }
                }
                kinds
            })
            .collect();
        let layout = TokenLayout::new(&rows, side);
        let seq = layout.seq();
        let mut ids = Vec::with_capacity(prompts.len() * seq);
        for p in prompts {
            let pad = std::iter::repeat_n(pad_id, seq - p.input_ids.len());
            match side {
                PadSide::Right => ids.extend(p.input_ids.iter().copied().chain(pad)),
                PadSide::Left => ids.extend(pad.chain(p.input_ids.iter().copied())),
            }
        }
        let input_ids = Tensor::from_vec(ids, (prompts.len(), seq), device)?;
        let images: Vec<&Tensor> = prompts
            .iter()
            .filter_map(|p| p.pixel_values.as_ref())
            .collect();
        let pixel_values = if images.is_empty() {
            None
        } else {
            Some(Tensor::cat(&images, 0)?.to_device(device)?)
        };
        Ok(Self {
            input_ids,
            layout,
            pixel_values,
        })
    }
}

/// Input latents of the decoder and the layout they follow.
#[derive(Debug, Clone)]
pub struct Latents {
    /// `(B, T, hidden)`. Replace it by a `Var` (or `Var + δ`) to differentiate with respect to it.
    pub embeds: Tensor,
    pub layout: TokenLayout,
}

impl Latents {
    /// The same layout with other latents (e.g. a `Var` made from these, or perturbed ones).
    pub fn with_embeds(&self, embeds: Tensor) -> Self {
        Self {
            embeds,
            layout: self.layout.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind::{Pad, Text, Visual};

    #[test]
    fn right_and_left_padding_keep_positions_counting_real_tokens() {
        let rows = vec![vec![Text, Visual, Visual, Text], vec![Text, Text]];
        let right = TokenLayout::new(&rows, PadSide::Right);
        assert_eq!(
            right.kinds(),
            &[Text, Visual, Visual, Text, Text, Text, Pad, Pad]
        );
        assert_eq!(right.positions(), &[0, 1, 2, 3, 0, 1, 0, 0]);
        assert_eq!(right.visual_index(), vec![1, 2]);
        assert_eq!(right.text_index(), vec![0, 3, 4, 5]);
        assert_eq!(right.last_index(), vec![Some(3), Some(5)]);
        assert!(
            right.is_valid(1, 1)
                && !right.is_valid(1, 2)
                && !right.is_valid(0, 4)
                && !right.is_valid(2, 0)
        );

        let left = TokenLayout::new(&rows, PadSide::Left);
        assert_eq!(
            left.kinds(),
            &[Text, Visual, Visual, Text, Pad, Pad, Text, Text]
        );
        assert_eq!(left.positions(), &[0, 1, 2, 3, 0, 0, 0, 1]);
        assert_eq!(left.last_index(), vec![Some(3), Some(7)]);

        let next = left.continuation(1);
        assert_eq!(next.kinds(), &[Text, Text]);
        assert_eq!(next.positions(), &[4, 2]);
        assert_eq!(next.continuation(1).positions(), &[5, 3]);

        // The first columns keep each row's kinds and positions.
        let first = left.first_columns(3);
        assert_eq!((first.batch(), first.seq()), (2, 3));
        assert_eq!(first.kinds(), &[Text, Visual, Visual, Pad, Pad, Text]);
        assert_eq!(first.positions(), &[0, 1, 2, 0, 0, 0]);
        assert_eq!(left.first_columns(9), left);
    }

    #[test]
    fn batch_pads_ids_and_rejects_an_empty_batch() {
        let a = Encoded {
            input_ids: vec![1, 5, 6],
            image_positions: vec![],
            pixel_values: None,
        };
        let b = Encoded {
            input_ids: vec![1, 7],
            image_positions: vec![],
            pixel_values: None,
        };
        let batch = Batch::new(&[a.clone(), b.clone()], PadSide::Left, 0, &Device::Cpu).unwrap();
        assert_eq!(
            batch.input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![1, 5, 6], vec![0, 1, 7]]
        );
        assert!(batch.pixel_values.is_none());
        assert!(Batch::new(&[], PadSide::Right, 0, &Device::Cpu).is_err());
    }
}
