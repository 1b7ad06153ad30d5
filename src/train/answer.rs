//! The model's greedy answer to a question, formatted exactly as the evaluator formats it.
//!
//! The knowledge check and the dataset writer (which records `pred`) both ask through here:
//! the prompt template, `</s>` as the stop token, special tokens dropped when decoding, the
//! text trimmed. Questions are batched (left-padded, KV-cached generation), text-only and
//! image questions apart so short prompts are not padded to the length of image prompts.

use image::{DynamicImage, RgbImage};

use crate::data::prompt::PromptTemplate;
use crate::model::{Adapters, Encoded, GenerateOptions, Hooks, Llava};

use super::error::Result;

/// Longest answer generated: captions are four words, every other answer one.
pub const MAX_ANSWER_TOKENS: usize = 8;

/// One question, with its picture when it has one.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub text: &'a str,
    pub image: Option<&'a RgbImage>,
}

/// Greedy answers to `questions`, in order, generated `batch` at a time.
pub fn greedy_answers(
    llava: &Llava,
    template: &PromptTemplate,
    questions: &[Question],
    batch: usize,
) -> Result<Vec<String>> {
    let opts = GenerateOptions::new(
        MAX_ANSWER_TOKENS,
        llava.processor.eos_token_id().into_iter().collect(),
    );
    let mut answers = vec![String::new(); questions.len()];
    for with_image in [true, false] {
        let indices: Vec<usize> = (0..questions.len())
            .filter(|&i| questions[i].image.is_some() == with_image)
            .collect();
        for chunk in indices.chunks(batch.max(1)) {
            let encoded = chunk
                .iter()
                .map(|&i| encode(llava, template, &questions[i]))
                .collect::<Result<Vec<Encoded>>>()?;
            let generated =
                llava
                    .model
                    .generate(&encoded, &mut Hooks::new(), &Adapters::new(), &opts)?;
            for (&i, tokens) in chunk.iter().zip(&generated.tokens) {
                answers[i] = llava.processor.decode(tokens)?.trim().to_string();
            }
        }
    }
    Ok(answers)
}

/// The greedy answer to one question (no batching, so no padding at all).
pub fn greedy_answer(
    llava: &Llava,
    template: &PromptTemplate,
    question: Question,
) -> Result<String> {
    let answers = greedy_answers(llava, template, &[question], 1)?;
    Ok(answers.into_iter().next().unwrap_or_default())
}

fn encode(llava: &Llava, template: &PromptTemplate, q: &Question) -> Result<Encoded> {
    let prompt = template.prompt(q.text, q.image.is_some());
    let images: Vec<DynamicImage> = q
        .image
        .map(|i| DynamicImage::ImageRgb8(i.clone()))
        .into_iter()
        .collect();
    Ok(llava.processor.encode(&prompt, &images)?)
}
