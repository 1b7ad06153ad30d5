//! Examples as teacher-forced sequences, and the loss on their answers.
//!
//! A sequence is the templated prompt (`USER: <image>\n{question} ASSISTANT:`) followed by the
//! answer continuation (` {answer}</s>`). Only the answer tokens and `</s>` are predicted: the
//! model must not spend capacity learning to reproduce the questions, and it must learn to stop.
//! Logits are read out only at the positions that predict those tokens, so the vocabulary matmul
//! and the softmax run on a handful of rows per sequence instead of ~60.

use candle_core::{Tensor, D};
use image::{DynamicImage, RgbImage};

use crate::data::prompt::{answer_continuation, PromptTemplate};
use crate::model::{Adapters, Encoded, Hooks, Llava, LlavaModel, PadSide, Readout};
use crate::world::Example;

use super::error::Result;

/// One prompt with its answer appended.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Prompt and answer tokens, image tokens expanded; the image's pixels if any.
    pub encoded: Encoded,
    /// Number of prompt tokens; the answer starts at this index.
    pub prompt_len: usize,
}

impl Sequence {
    /// Encodes `question` (and `image`) with `template`, then appends `answer` and `</s>`.
    pub fn new(
        llava: &Llava,
        template: &PromptTemplate,
        question: &str,
        image: Option<&RgbImage>,
        answer: &str,
    ) -> Result<Sequence> {
        let prompt = template.prompt(question, image.is_some());
        let images: Vec<DynamicImage> = image
            .map(|i| DynamicImage::ImageRgb8(i.clone()))
            .into_iter()
            .collect();
        let mut encoded = llava.processor.encode(&prompt, &images)?;
        let prompt_len = encoded.len();
        let answer_ids = llava
            .processor
            .tokenize(&answer_continuation(answer), false)?;
        encoded.extend(&answer_ids);
        Ok(Sequence {
            encoded,
            prompt_len,
        })
    }

    /// A world example, its picture rendered.
    pub fn from_example(
        llava: &Llava,
        template: &PromptTemplate,
        example: &Example,
    ) -> Result<Sequence> {
        let image = example.image.map(|v| v.render());
        Sequence::new(
            llava,
            template,
            &example.question,
            image.as_ref(),
            &example.answer,
        )
    }

    /// `(column predicting, token predicted)` for every answer token.
    fn targets(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        (self.prompt_len..self.encoded.len())
            .filter_map(|col| Some((col - 1, *self.encoded.input_ids.get(col)?)))
    }
}

/// Negative log-likelihood of every answer token of a batch of sequences.
#[derive(Debug, Clone)]
pub struct AnswerLoss {
    /// `(N,)`, one entry per answer token (and `</s>`), sequence by sequence.
    pub nll: Tensor,
    /// The sequence each entry of `nll` belongs to.
    pub rows: Vec<usize>,
}

impl AnswerLoss {
    /// Number of answer tokens scored.
    pub fn tokens(&self) -> usize {
        self.rows.len()
    }

    /// The summed loss, to back-propagate.
    pub fn sum(&self) -> Result<Tensor> {
        Ok(self.nll.sum_all()?)
    }

    /// `(summed loss, tokens)` per sequence, detached (for logging).
    pub fn per_sequence(&self, sequences: usize) -> Result<Vec<(f64, usize)>> {
        let values = self
            .nll
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let mut out = vec![(0.0, 0); sequences];
        for (&row, v) in self.rows.iter().zip(values) {
            if let Some(entry) = out.get_mut(row) {
                entry.0 += v;
                entry.1 += 1;
            }
        }
        Ok(out)
    }
}

/// The loss of the answer tokens of `sequences`, run as one right-padded batch; pass sequences
/// of similar length together (e.g. image and text-only prompts apart) to waste little on
/// padding.
pub fn answer_loss(model: &LlavaModel, sequences: &[Sequence]) -> Result<AnswerLoss> {
    let prompts: Vec<Encoded> = sequences.iter().map(|s| s.encoded.clone()).collect();
    let batch = model.batch(&prompts, PadSide::Right)?;
    let latents = model.embed(&batch)?;
    let mut positions = Vec::new();
    let mut labels = Vec::new();
    let mut rows = Vec::new();
    for (row, seq) in sequences.iter().enumerate() {
        for (col, label) in seq.targets() {
            positions.push((row, col));
            labels.push(label);
            rows.push(row);
        }
    }
    let n = labels.len();
    let logits = model.forward(
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::Positions(positions),
    )?;
    let labels = Tensor::from_vec(labels, (n, 1), logits.device())?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let nll = log_probs.gather(&labels, 1)?.squeeze(1)?.neg()?;
    Ok(AnswerLoss { nll, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::spec::ModelSpec;
    use crate::world::{train_tokenizer, Family, World};

    #[test]
    fn the_loss_covers_exactly_the_answer_and_eos() {
        let world = World::new(0);
        let (llava, _) = ModelSpec::tiny()
            .fresh(train_tokenizer(&world).unwrap(), 1)
            .unwrap();
        let template = PromptTemplate::llava15();
        let caption = &world.held_out(Family::Caption, 1, 0)[0];
        let text = &world.held_out(Family::TextFact, 1, 0)[0];
        let seq = Sequence::from_example(&llava, &template, caption).unwrap();
        // "two large red circles</s>": four words and the stop token.
        assert_eq!(seq.encoded.len() - seq.prompt_len, 5);
        assert_eq!(seq.encoded.input_ids.last(), Some(&1));
        let targets: Vec<(usize, u32)> = seq.targets().collect();
        assert_eq!(targets.first().map(|t| t.0), Some(seq.prompt_len - 1));

        let text_seq = Sequence::from_example(&llava, &template, text).unwrap();
        let both = answer_loss(&llava.model, &[seq.clone(), text_seq.clone()]).unwrap();
        let (loss, n) = (both.sum().unwrap(), both.tokens());
        assert_eq!(n, 5 + 2);
        let per = both.per_sequence(2).unwrap();
        assert_eq!((per[0].1, per[1].1), (5, 2));
        assert!((per[0].0 + per[1].0 - f64::from(loss.to_scalar::<f32>().unwrap())).abs() < 1e-3);
        // A fresh model is close to uniform over the vocabulary: loss ≈ n · ln(vocab).
        let vocab = llava.config().text_config.vocab_size as f32;
        let per_token = loss.to_scalar::<f32>().unwrap() / n as f32;
        assert!((per_token - vocab.ln()).abs() < 0.5, "{per_token}");
        // Batching does not change a sequence's loss.
        let alone = answer_loss(&llava.model, &[text_seq])
            .unwrap()
            .sum()
            .unwrap();
        let first = answer_loss(&llava.model, &[seq]).unwrap().sum().unwrap();
        let sum = alone.to_scalar::<f32>().unwrap() + first.to_scalar::<f32>().unwrap();
        assert!((sum - loss.to_scalar::<f32>().unwrap()).abs() < 1e-3);
    }
}
