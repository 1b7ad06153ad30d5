//! Training conversations as teacher-forced token sequences, and the loss on their answers.
//!
//! A sequence is LLaVA-1.5's conversation format: the templated first question
//! (`USER: <image>\n{question} ASSISTANT:`) and its answer (` {answer}</s>`), optionally
//! followed by more turns about the same picture (`USER: {question} ASSISTANT: {answer}</s>`), as
//! LLaVA-1.5's own instruction data is. Only answer tokens and their `</s>` are predicted: the
//! model must not spend capacity learning to reproduce questions, and it must learn to stop.
//! Logits are read out only at the positions that predict those tokens, so the vocabulary
//! matmul and the softmax run on a handful of rows per sequence instead of ~60.

use std::ops::Range;

use candle_core::{Tensor, D};
use image::{DynamicImage, RgbImage};

use crate::data::prompt::{answer_continuation, PromptTemplate};
use crate::model::{Adapters, Encoded, Hooks, Llava, LlavaModel, PadSide, Readout};

use super::error::Result;

/// One question and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    pub question: &'a str,
    pub answer: &'a str,
}

/// A conversation with its answers' token spans.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// All tokens, image tokens expanded; the image's pixels if any.
    pub encoded: Encoded,
    /// Each turn's answer tokens (answer words and `</s>`), as index ranges into `encoded`.
    pub answers: Vec<Range<usize>>,
}

impl Sequence {
    /// One question (with `image` if given) and its answer.
    pub fn new(
        llava: &Llava,
        template: &PromptTemplate,
        question: &str,
        image: Option<&RgbImage>,
        answer: &str,
    ) -> Result<Sequence> {
        Sequence::conversation(llava, template, image, &[Turn { question, answer }])
    }

    /// A conversation about `image` (the image goes with the first question).
    pub fn conversation(
        llava: &Llava,
        template: &PromptTemplate,
        image: Option<&RgbImage>,
        turns: &[Turn],
    ) -> Result<Sequence> {
        let images: Vec<DynamicImage> = image
            .map(|i| DynamicImage::ImageRgb8(i.clone()))
            .into_iter()
            .collect();
        let mut encoded: Option<Encoded> = None;
        let mut answers = Vec::with_capacity(turns.len());
        for turn in turns {
            let enc = match encoded.as_mut() {
                None => encoded.insert(
                    llava
                        .processor
                        .encode(&template.prompt(turn.question, image.is_some()), &images)?,
                ),
                Some(enc) => {
                    let prompt = template.prompt(turn.question, false);
                    enc.extend(&llava.processor.tokenize(&prompt, false)?);
                    enc
                }
            };
            let answer = llava
                .processor
                .tokenize(&answer_continuation(turn.answer), false)?;
            let start = enc.len();
            enc.extend(&answer);
            answers.push(start..enc.len());
        }
        let encoded = match encoded {
            Some(e) => e,
            None => llava.processor.encode("", &images)?,
        };
        Ok(Sequence { encoded, answers })
    }

    /// Length of the first prompt (where the first answer starts).
    pub fn prompt_len(&self) -> usize {
        self.answers.first().map_or(self.encoded.len(), |a| a.start)
    }

    /// `(column predicting, token predicted, turn)` for every answer token.
    fn targets(&self) -> impl Iterator<Item = (usize, u32, usize)> + '_ {
        self.answers
            .iter()
            .enumerate()
            .flat_map(move |(turn, span)| {
                span.clone().filter_map(move |col| {
                    let id = *self.encoded.input_ids.get(col)?;
                    Some((col.checked_sub(1)?, id, turn))
                })
            })
    }
}

/// Negative log-likelihood of every answer token of a batch of sequences.
#[derive(Debug, Clone)]
pub struct AnswerLoss {
    /// `(N,)`, one entry per answer token (and `</s>`), sequence by sequence.
    pub nll: Tensor,
    /// `(sequence, turn)` each entry of `nll` belongs to.
    pub owners: Vec<(usize, usize)>,
}

impl AnswerLoss {
    /// Number of answer tokens scored.
    pub fn tokens(&self) -> usize {
        self.owners.len()
    }

    /// The summed loss, to back-propagate.
    pub fn sum(&self) -> Result<Tensor> {
        Ok(self.nll.sum_all()?)
    }

    /// The detached loss of each token, in `owners` order (for logging).
    pub fn values(&self) -> Result<Vec<f64>> {
        Ok(self
            .nll
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?)
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
    let mut owners = Vec::new();
    for (row, seq) in sequences.iter().enumerate() {
        for (col, label, turn) in seq.targets() {
            positions.push((row, col));
            labels.push(label);
            owners.push((row, turn));
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
    Ok(AnswerLoss { nll, owners })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::spec::ModelSpec;
    use crate::world::{train_tokenizer, Family, World};

    fn tiny() -> (World, Llava) {
        let world = World::new(0);
        let (llava, _) = ModelSpec::tiny()
            .fresh(train_tokenizer(&world).unwrap(), 1)
            .unwrap();
        (world, llava)
    }

    fn single(llava: &Llava, e: &crate::world::Example) -> Sequence {
        let image = e.image.map(|v| v.render());
        Sequence::new(
            llava,
            &PromptTemplate::llava15(),
            &e.question,
            image.as_ref(),
            &e.answer,
        )
        .unwrap()
    }

    #[test]
    fn the_loss_covers_exactly_the_answer_and_eos() {
        let (world, llava) = tiny();
        let caption = &world.held_out(Family::Caption, 1, 0)[0];
        let text = &world.held_out(Family::TextFact, 1, 0)[0];
        let seq = single(&llava, caption);
        // "two large red circles</s>": four words and the stop token.
        assert_eq!(seq.encoded.len() - seq.prompt_len(), 5);
        assert_eq!(seq.encoded.input_ids.last(), Some(&1));
        let targets: Vec<(usize, u32, usize)> = seq.targets().collect();
        assert_eq!(targets.first().map(|t| t.0), Some(seq.prompt_len() - 1));

        let text_seq = single(&llava, text);
        let both = answer_loss(&llava.model, &[seq.clone(), text_seq.clone()]).unwrap();
        let (loss, n) = (both.sum().unwrap(), both.tokens());
        assert_eq!(n, 5 + 2);
        assert_eq!(
            both.owners,
            [(0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (1, 0), (1, 0)]
        );
        let values: f64 = both.values().unwrap().iter().sum();
        assert!((values - f64::from(loss.to_scalar::<f32>().unwrap())).abs() < 1e-3);
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

    #[test]
    fn a_conversation_tokenizes_like_its_text_and_scores_every_answer() {
        let (_, llava) = tiny();
        let template = PromptTemplate::llava15();
        let turns = [
            Turn {
                question: "what colour are the objects?",
                answer: "red",
            },
            Turn {
                question: "how many objects are there?",
                answer: "two",
            },
        ];
        let image = image::RgbImage::new(48, 48);
        let seq = Sequence::conversation(&llava, &template, Some(&image), &turns).unwrap();
        // The same text tokenized in one piece (image tokens expanded the same way).
        let text = "USER: <image>\nwhat colour are the objects? ASSISTANT: red</s>USER: how many objects are there? ASSISTANT: two</s>";
        let whole = llava
            .processor
            .encode(text, &[DynamicImage::ImageRgb8(image)])
            .unwrap();
        assert_eq!(seq.encoded.input_ids, whole.input_ids);
        assert_eq!(seq.answers.len(), 2);
        let words: Vec<String> = seq
            .answers
            .iter()
            .map(|span| {
                llava
                    .processor
                    .tokenizer()
                    .decode(&seq.encoded.input_ids[span.clone()], false)
                    .unwrap()
            })
            .collect();
        assert_eq!(words, ["red </s>", "two </s>"]);
        let loss = answer_loss(&llava.model, &[seq]).unwrap();
        assert_eq!(loss.owners, [(0, 0), (0, 0), (0, 1), (0, 1)]);
    }
}
