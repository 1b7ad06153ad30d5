//! A shard's partial results: the run's ordinary JSON report over the shard's cases, plus a
//! `shard` object saying which shard of which run it is.
//!
//! ```text
//! { "recipe": …, "seed": 0, "mode": "single", …, "per_case": [ … ],
//!   "shard": { "format": "mkedsl-part/1", "index": 1, "count": 3, "cases": [8, 9, 10, 11],
//!              "run_cases": 12, "run_groups": 12, "recipe_hash": "…", "model_hash": "…",
//!              "data_hash": "…", "max_new_tokens": 16, "mkedsl": "0.1.0" } }
//! ```
//!
//! The hashes identify what changes the numbers: the recipe file's bytes, the checkpoint folder
//! ([`crate::exec::cache::model_hash`]) and the data file's bytes (images are not hashed: they are
//! named by the data file). Seed, mode, K and device are the report's own fields.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::files::write_atomic;
use crate::eval::{CaseRow, EvalReport, ResolvedTemplate, Timing};
use crate::exec::preserve::hex;
use crate::exec::shard::error::ShardError;
use crate::exec::shard::spec::Shard;

/// The part format's name and version.
pub const PART_FORMAT: &str = "mkedsl-part/1";

/// Which shard of which run a part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub format: String,
    pub index: usize,
    pub count: usize,
    /// Data-file indices of the shard's cases, in order.
    pub cases: Vec<usize>,
    /// Cases and groups of the whole (unsharded) run.
    pub run_cases: usize,
    pub run_groups: usize,
    /// SHA-256 of the recipe file.
    pub recipe_hash: String,
    /// [`crate::exec::cache::model_hash`] of the checkpoint folder.
    pub model_hash: String,
    /// SHA-256 of the data file.
    pub data_hash: String,
    /// The longest greedy generation scored (`--max-new-tokens`): it changes exact-match scores.
    pub max_new_tokens: usize,
    /// The mkedsl version that wrote the part.
    pub mkedsl: String,
    /// The precision of the frozen weights (`--dtype`): it moves scores slightly. Parts written
    /// before the flag existed ran in f32.
    #[serde(default = "f32_name")]
    pub dtype: String,
}

fn f32_name() -> String {
    crate::model::Precision::F32.to_string()
}

impl PartInfo {
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }
}

/// SHA-256 of a file's bytes, hex.
pub fn file_hash(path: &Path) -> Result<String, ShardError> {
    let bytes = std::fs::read(path).map_err(|e| ShardError::Identity {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(hex(&Sha256::digest(bytes)))
}

/// The report with its `shard` object, as written.
#[derive(Serialize)]
struct PartReport<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    shard: &'a PartInfo,
}

/// Writes a shard's report as pretty JSON, atomically.
pub fn write_part(path: &Path, report: &EvalReport, info: &PartInfo) -> Result<(), ShardError> {
    let fail = |reason: String| ShardError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut text = serde_json::to_string_pretty(&PartReport {
        report,
        shard: info,
    })
    .map_err(|e| fail(e.to_string()))?;
    text.push('\n');
    write_atomic(path, text.as_bytes()).map_err(|e| fail(e.to_string()))
}

/// What `mkedsl merge` reads back from a part: the report's provenance and rows (its means are
/// recomputed from the rows) and the shard object.
#[derive(Debug, Clone, Deserialize)]
pub struct PartFile {
    pub recipe: String,
    pub editor: String,
    pub model: String,
    pub data: String,
    pub seed: Option<u64>,
    pub device: String,
    pub mode: String,
    pub k: Option<usize>,
    pub groups: usize,
    pub dropped: usize,
    #[serde(default)]
    pub data_files: Vec<crate::eval::DataFileInfo>,
    pub template: ResolvedTemplate,
    #[serde(default)]
    pub field_templates: crate::data::FieldTemplates,
    pub timing: Timing,
    pub per_case: Vec<CaseRow>,
    /// The null spaces' dimensions and leaks: the same in every part (they come from the
    /// shared prepare stage), so the merged report takes the first part's.
    #[serde(default)]
    pub null_spaces: Vec<crate::exec::leak::NullSpaceReport>,
    pub shard: Option<PartInfo>,
}

/// A part read from disk.
#[derive(Debug, Clone)]
pub struct Part {
    pub path: PathBuf,
    pub file: PartFile,
    pub info: PartInfo,
}

impl Part {
    /// Reads a part; a file that is not JSON, not a report or has no `shard` object is refused.
    pub fn read(path: &Path) -> Result<Part, ShardError> {
        let bad = |reason: String| ShardError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: PartFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let info = file.shard.clone().ok_or_else(|| {
            bad("it has no `shard` object: it is the report of an unsharded run".into())
        })?;
        if info.format != PART_FORMAT {
            return Err(bad(format!(
                "its format is `{}`, not {PART_FORMAT}",
                info.format
            )));
        }
        if info.count == 0 || info.index >= info.count {
            return Err(bad(format!(
                "its shard {}/{} is not I/N with I < N",
                info.index, info.count
            )));
        }
        Ok(Part {
            path: path.to_path_buf(),
            file,
            info,
        })
    }
}
