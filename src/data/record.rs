//! One MMEdit record, the JSON object EasyEdit's `VQADataset` and `CaptionDataset` read.

use serde::{Deserialize, Serialize};

/// The eleven fields of an E-VQA / E-IC record, in the order MMEdit's files list them, plus our
/// optional `family` (EasyEdit ignores unknown keys, so files we write stay readable there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmeditRecord {
    /// The edit question (E-IC: the caption prompt, e.g. "a photo of").
    pub src: String,
    /// The unedited model's answer.
    pub pred: String,
    /// A paraphrase of `src` (T-Generality).
    pub rephrase: String,
    /// The edit target.
    pub alt: String,
    /// The edit image, relative to the image root.
    pub image: String,
    /// Another image of the same content (M-Generality), relative to the rephrase-image root.
    pub image_rephrase: String,
    /// A text-only locality question (T-Locality).
    pub loc: String,
    /// Its answer (reference only: locality compares post- with pre-edit outputs).
    pub loc_ans: String,
    /// An unrelated image (M-Locality), relative to the image root.
    pub m_loc: String,
    /// The question asked about `m_loc`.
    pub m_loc_q: String,
    /// Its answer (reference only).
    pub m_loc_a: String,
    /// The question family, in files this project writes; absent in MMEdit's own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

/// The required fields, in file order.
pub const FIELDS: [&str; 11] = [
    "src",
    "pred",
    "rephrase",
    "alt",
    "image",
    "image_rephrase",
    "loc",
    "loc_ans",
    "m_loc",
    "m_loc_q",
    "m_loc_a",
];

impl MmeditRecord {
    /// The value of a required field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            "src" => &self.src,
            "pred" => &self.pred,
            "rephrase" => &self.rephrase,
            "alt" => &self.alt,
            "image" => &self.image,
            "image_rephrase" => &self.image_rephrase,
            "loc" => &self.loc,
            "loc_ans" => &self.loc_ans,
            "m_loc" => &self.m_loc,
            "m_loc_q" => &self.m_loc_q,
            "m_loc_a" => &self.m_loc_a,
            _ => return None,
        })
    }

    /// The required fields that are empty or whitespace only.
    pub fn empty_fields(&self) -> Vec<&'static str> {
        FIELDS
            .iter()
            .copied()
            .filter(|f| self.field(f).is_none_or(|v| v.trim().is_empty()))
            .collect()
    }
}
