//! The embedded MMEdit datasets: the world's planned edit cases, with the trained model's real
//! greedy answer as `pred`.
//!
//! Each `pred` is generated one question at a time (no padding, no batch), the way an evaluator
//! asking a single case would, through the same template and stop token.

use std::path::Path;

use serde::Serialize;

use crate::data::prompt::PromptTemplate;
use crate::data::{write_dataset, AnswerError, WrittenDataset};
use crate::model::Llava;
use crate::world::{CaseKind, World};

use super::answer::{greedy_answer, Question};
use super::error::Result;

/// How many cases of each dataset to write, and the seed of their planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DatasetPlan {
    pub evqa: usize,
    pub eic: usize,
    pub seed: u64,
}

impl Default for DatasetPlan {
    fn default() -> Self {
        Self {
            evqa: 300,
            eic: 150,
            seed: 0,
        }
    }
}

/// Writes `evqa.json` and `eic.json` (and their images) into `out` with `llava`'s answers.
pub fn write_world_datasets(
    llava: &Llava,
    world: &World,
    out: &Path,
    plan: &DatasetPlan,
) -> Result<Vec<WrittenDataset>> {
    let template = PromptTemplate::llava15();
    let mut written = Vec::new();
    for (kind, n) in [(CaseKind::Evqa, plan.evqa), (CaseKind::Eic, plan.eic)] {
        if n == 0 {
            continue;
        }
        let cases = world.edit_cases(kind, n, plan.seed)?;
        let answer = |question: &str, image: &image::RgbImage| {
            greedy_answer(
                llava,
                &template,
                Question {
                    text: question,
                    image: Some(image),
                },
            )
            .map_err(|e| Box::new(e) as AnswerError)
        };
        written.push(write_dataset(kind, &cases, out, answer)?);
    }
    Ok(written)
}
