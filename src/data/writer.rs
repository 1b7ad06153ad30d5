//! Writes the world's MMEdit-format datasets: `{out}/evqa.json` or `{out}/eic.json` with their
//! images under `{out}/images/{evqa,eic}/`, image paths relative to `{out}`.
//!
//! `pred` must be the embedded model's real pre-edit answer, so the writer takes the answer
//! function from its caller (the trainer or the evaluator: question and image in, greedy answer
//! out). `alt` is the first planned counterfactual that differs from `pred`; if the model's answer
//! already is the only counterfactual (a binary question it gets wrong), the target becomes the
//! true answer — the edit then corrects the model — and the summary counts such cases.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;

use super::error::{AnswerError, DataError};
use super::files::{png_bytes, write_atomic};
use super::record::MmeditRecord;
use crate::eval::metrics::normalize_generation;
use crate::world::{CaseKind, EditCase, Visual};

/// What a dataset write produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenDataset {
    /// The JSON file.
    pub json: PathBuf,
    pub cases: usize,
    pub images: usize,
    /// Total size of the JSON file and the images, in bytes.
    pub bytes: u64,
    /// Cases where `pred` differs from the world's true answer.
    pub wrong_pred: usize,
    /// Cases whose target is the true answer because `pred` took the only counterfactual.
    pub corrective: usize,
}

/// Renders every case's images, asks `answer(src, image)` for `pred`, and writes the dataset of
/// `kind` into `out_dir`. Files are written atomically; the JSON last, so it never names a
/// missing image.
pub fn write_dataset<F>(
    kind: CaseKind,
    cases: &[EditCase],
    out_dir: &Path,
    mut answer: F,
) -> Result<WrittenDataset, DataError>
where
    F: FnMut(&str, &RgbImage) -> Result<String, AnswerError>,
{
    let mut records = Vec::with_capacity(cases.len());
    let mut bytes = 0u64;
    let mut wrong_pred = 0;
    let mut corrective = 0;
    for (i, case) in cases.iter().enumerate() {
        let stem = format!("images/{}/{i:04}", kind.name());
        let image_rel = format!("{stem}.png");
        let rephrase_rel = format!("{stem}_rephrase.png");
        let m_loc_rel = format!("{stem}_mloc.png");
        let image = case.image.render();
        bytes += write_png(out_dir, &image_rel, &image)?;
        bytes += write_visual(out_dir, &rephrase_rel, &case.image_rephrase)?;
        bytes += write_visual(out_dir, &m_loc_rel, &case.m_loc)?;

        let pred = answer(&case.src, &image)
            .map_err(|source| DataError::Answer {
                case: i,
                question: case.src.clone(),
                source,
            })?
            .trim()
            .to_string();
        if pred.is_empty() {
            return Err(DataError::EmptyAnswer {
                case: i,
                question: case.src.clone(),
            });
        }
        let pred_norm = normalize_generation(&pred);
        if pred_norm != normalize_generation(&case.truth) {
            wrong_pred += 1;
        }
        let alt = match case
            .alternatives
            .iter()
            .find(|a| normalize_generation(a) != pred_norm)
        {
            Some(a) => a.clone(),
            None if normalize_generation(&case.truth) != pred_norm => {
                corrective += 1;
                case.truth.clone()
            }
            None => return Err(DataError::NoTarget { case: i, pred }),
        };
        records.push(MmeditRecord {
            src: case.src.clone(),
            pred,
            rephrase: case.rephrase.clone(),
            alt,
            image: image_rel,
            image_rephrase: rephrase_rel,
            loc: case.loc.clone(),
            loc_ans: case.loc_ans.clone(),
            m_loc: m_loc_rel,
            m_loc_q: case.m_loc_q.clone(),
            m_loc_a: case.m_loc_a.clone(),
            family: Some(case.family.name().to_string()),
        });
    }
    let json = out_dir.join(format!("{}.json", kind.name()));
    let mut text = serde_json::to_string_pretty(&records).map_err(|e| DataError::Write {
        path: json.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(&json, text.as_bytes()).map_err(|e| DataError::Write {
        path: json.clone(),
        reason: e.to_string(),
    })?;
    bytes += text.len() as u64;
    Ok(WrittenDataset {
        json,
        cases: records.len(),
        images: 3 * records.len(),
        bytes,
        wrong_pred,
        corrective,
    })
}

fn write_visual(out_dir: &Path, rel: &str, visual: &Visual) -> Result<u64, DataError> {
    write_png(out_dir, rel, &visual.render())
}

fn write_png(out_dir: &Path, rel: &str, image: &RgbImage) -> Result<u64, DataError> {
    let path = out_dir.join(rel);
    let png = png_bytes(image).map_err(|e| DataError::Write {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &png).map_err(|e| DataError::Write {
        path,
        reason: e.to_string(),
    })?;
    Ok(png.len() as u64)
}
