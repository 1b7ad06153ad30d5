//! An edit case as the evaluator and editors see it: the record, its questions already formatted
//! with the model's prompt template, and (per group of cases) its decoded images.
//!
//! Prompts are formatted once, here, so an editor trains on exactly the text the evaluator scores:
//! the edit prompt is `template(src, image)`, and a scored sequence is `prompt + " " + answer`
//! ([`scored_text`]), as EasyEdit builds it. Images are decoded only for the cases being edited
//! or scored at the moment, because a real E-VQA file holds thousands of full-size COCO photos.

use std::path::PathBuf;

use image::DynamicImage;
use serde::Serialize;

use crate::data::{Dataset, FieldTemplates, MmeditRecord, PromptTemplate, ResolvedFields};
use crate::eval::error::Result;
use crate::model::preprocess::load_image;

/// The four questions of a case, formatted with the prompt template (no answer appended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CasePrompts {
    /// `src` with the edit image: the edit prompt, scored by Rel (and by M-Gen with
    /// `image_rephrase`).
    pub src: String,
    /// `rephrase` with the edit image (T-Gen).
    pub rephrase: String,
    /// `loc`, text only: the template without its image placeholder (T-Loc).
    pub loc: String,
    /// `m_loc_q` with the `m_loc` image (M-Loc).
    pub m_loc: String,
}

/// One case of a dataset, ready to score: text only, cheap to keep for every case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalCase {
    /// The record's index in the data file.
    pub index: usize,
    pub record: MmeditRecord,
    pub prompts: CasePrompts,
    pub image: PathBuf,
    pub image_rephrase: PathBuf,
    pub m_loc: PathBuf,
}

impl EvalCase {
    /// The edit target (`alt`), trimmed.
    pub fn target(&self) -> &str {
        self.record.alt.trim()
    }

    /// Every kept case of `dataset` (the first `limit` if given), every field formatted with
    /// `template`.
    pub fn from_dataset(
        dataset: &Dataset,
        template: &PromptTemplate,
        limit: Option<usize>,
    ) -> Vec<EvalCase> {
        let mut cases =
            EvalCase::from_fields(dataset, &FieldTemplates::default().resolve(template), 0);
        cases.truncate(limit.unwrap_or(usize::MAX));
        cases
    }

    /// Every kept case of `dataset`, each field formatted with its own template; case indices
    /// are the records' indices plus `offset` (several files in one run number their records
    /// one after another).
    pub fn from_fields(dataset: &Dataset, fields: &ResolvedFields, offset: usize) -> Vec<EvalCase> {
        dataset
            .cases
            .iter()
            .map(|c| {
                let r = &c.record;
                EvalCase {
                    index: offset + c.index,
                    prompts: CasePrompts {
                        src: fields.src.prompt(&r.src, true),
                        rephrase: fields.rephrase.prompt(&r.rephrase, true),
                        loc: fields.loc.prompt(&r.loc, false),
                        m_loc: fields.m_loc_q.prompt(&r.m_loc_q, true),
                    },
                    record: r.clone(),
                    image: c.image.clone(),
                    image_rephrase: c.image_rephrase.clone(),
                    m_loc: c.m_loc.clone(),
                }
            })
            .collect()
    }
}

/// A case with its three images decoded: what [`crate::eval::Editor::edit`] receives.
#[derive(Debug, Clone)]
pub struct PreparedCase<'a> {
    pub case: &'a EvalCase,
    /// The edit image (Rel, T-Gen).
    pub image: DynamicImage,
    /// Another rendering of the same content (M-Gen).
    pub image_rephrase: DynamicImage,
    /// An unrelated image (M-Loc).
    pub m_loc: DynamicImage,
}

impl<'a> PreparedCase<'a> {
    /// Decodes the case's images.
    pub fn load(case: &'a EvalCase) -> Result<PreparedCase<'a>> {
        Ok(PreparedCase {
            case,
            image: load_image(&case.image)?,
            image_rephrase: load_image(&case.image_rephrase)?,
            m_loc: load_image(&case.m_loc)?,
        })
    }

    /// The edit prompt (`src` with the edit image), formatted.
    pub fn prompt(&self) -> &str {
        &self.case.prompts.src
    }

    /// The edit target (`alt`).
    pub fn target(&self) -> &str {
        self.case.target()
    }

    /// The teacher-forced edit sequence `prompt + " " + target` (its image is [`Self::image`]).
    pub fn edit_text(&self) -> String {
        scored_text(self.prompt(), self.target())
    }
}

/// The sequence a scored answer is read from: `prompt + " " + answer`, EasyEdit's construction.
pub fn scored_text(prompt: &str, answer: &str) -> String {
    format!("{prompt} {}", answer.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_text_joins_with_one_space() {
        assert_eq!(
            scored_text("USER: q ASSISTANT:", " red  "),
            "USER: q ASSISTANT: red"
        );
    }
}
