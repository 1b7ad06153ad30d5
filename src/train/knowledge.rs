//! How much of the world a model knows: greedy exact match on held-out questions, per family.
//!
//! Held-out questions use phrasings never seen in training and pictures rendered from a render
//! space training never draws from, so a model passes only if it learned the facts, not the
//! strings. The trainer runs this periodically; `mkedsl knowledge` runs it on a checkpoint.

use std::fmt::Write as _;

use serde::Serialize;

use crate::data::prompt::PromptTemplate;
use crate::eval::metrics::generation_matches;
use crate::model::Llava;
use crate::world::{Example, Family, World};

use super::answer::{greedy_answers, Question};
use super::error::Result;

/// Misses kept per family for diagnosis.
const MISSES_KEPT: usize = 5;

/// A question the model got wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    pub question: String,
    pub expected: String,
    pub got: String,
}

/// One family's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyScore {
    pub family: Family,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    /// The first few misses.
    pub misses: Vec<Miss>,
}

/// Scores of every family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeReport {
    pub world_seed: u64,
    /// Seed of the held-out sample.
    pub seed: u64,
    pub per_family: usize,
    pub families: Vec<FamilyScore>,
}

impl KnowledgeReport {
    /// The weakest family's accuracy (1 for an empty report).
    pub fn min_accuracy(&self) -> f64 {
        self.families.iter().map(|f| f.accuracy).fold(1.0, f64::min)
    }

    /// Accuracy over every question.
    pub fn overall(&self) -> f64 {
        let (c, t) = self
            .families
            .iter()
            .fold((0, 0), |(c, t), f| (c + f.correct, t + f.total));
        ratio(c, t)
    }

    /// The score of one family.
    pub fn family(&self, family: Family) -> Option<&FamilyScore> {
        self.families.iter().find(|f| f.family == family)
    }

    /// A table with one row per family and a total row.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>6} {:>9}",
            "family", "correct", "total", "accuracy"
        );
        for f in &self.families {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>6} {:>8.1}%",
                f.family.name(),
                f.correct,
                f.total,
                100.0 * f.accuracy
            );
        }
        let (c, t) = self
            .families
            .iter()
            .fold((0, 0), |(c, t), f| (c + f.correct, t + f.total));
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>6} {:>8.1}%",
            "all",
            c,
            t,
            100.0 * self.overall()
        );
        out
    }

    /// One line for training logs: `colour 1.00 shape 0.97 …`.
    pub fn line(&self) -> String {
        self.families
            .iter()
            .map(|f| format!("{} {:.2}", f.family.name(), f.accuracy))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Asks `llava` `per_family` held-out questions of every family of `world` (sample `seed`) and
/// scores greedy exact match (trimmed, case-folded, up to `</s>`).
pub fn measure_knowledge(
    llava: &Llava,
    world: &World,
    per_family: usize,
    seed: u64,
) -> Result<KnowledgeReport> {
    let template = PromptTemplate::llava15();
    let mut families = Vec::with_capacity(Family::ALL.len());
    for family in Family::ALL {
        let examples = world.held_out(family, per_family, seed);
        families.push(score_family(llava, &template, family, &examples)?);
    }
    Ok(KnowledgeReport {
        world_seed: world.seed,
        seed,
        per_family,
        families,
    })
}

/// Scores one family's examples.
pub fn score_family(
    llava: &Llava,
    template: &PromptTemplate,
    family: Family,
    examples: &[Example],
) -> Result<FamilyScore> {
    let images: Vec<Option<image::RgbImage>> = examples
        .iter()
        .map(|e| e.image.map(|v| v.render()))
        .collect();
    let questions: Vec<Question> = examples
        .iter()
        .zip(&images)
        .map(|(e, image)| Question {
            text: &e.question,
            image: image.as_ref(),
        })
        .collect();
    let answers = greedy_answers(llava, template, &questions, 32)?;
    let mut correct = 0;
    let mut misses = Vec::new();
    for (e, got) in examples.iter().zip(answers) {
        if generation_matches(&got, &e.answer) {
            correct += 1;
        } else if misses.len() < MISSES_KEPT {
            misses.push(Miss {
                question: e.question.clone(),
                expected: e.answer.clone(),
                got,
            });
        }
    }
    Ok(FamilyScore {
        family,
        correct,
        total: examples.len(),
        accuracy: ratio(correct, examples.len()),
        misses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(family: Family, correct: usize, total: usize) -> FamilyScore {
        FamilyScore {
            family,
            correct,
            total,
            accuracy: ratio(correct, total),
            misses: vec![],
        }
    }

    #[test]
    fn the_table_has_a_row_per_family_and_a_total() {
        let report = KnowledgeReport {
            world_seed: 0,
            seed: 1,
            per_family: 200,
            families: vec![
                score(Family::Colour, 200, 200),
                score(Family::TextFact, 191, 200),
                score(Family::Caption, 197, 200),
            ],
        };
        assert!((report.min_accuracy() - 0.955).abs() < 1e-12);
        assert!((report.overall() - 588.0 / 600.0).abs() < 1e-12);
        insta::assert_snapshot!(report.table(), @r"
        family        correct  total  accuracy
        colour            200    200    100.0%
        text_fact         191    200     95.5%
        caption           197    200     98.5%
        all               588    600     98.0%
        ");
        assert_eq!(report.line(), "colour 1.00  text_fact 0.95  caption 0.98");
    }
}
