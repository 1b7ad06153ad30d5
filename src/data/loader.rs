//! Reads MMEdit-format datasets: ours and the user's real E-VQA / E-IC files.
//!
//! As in EasyEdit, `image` and `m_loc` are resolved against one image root and `image_rephrase`
//! against a separate rephrase-image root (MMEdit ships its generated rephrase images apart from
//! COCO).
//!
//! Which records are kept follows EasyEdit's `VQADataset` (`easyeditor/dataset/vqa.py`) and
//! `CaptionDataset` (`coco_caption.py`), which apply the same two rules to E-VQA and E-IC:
//!
//! 1. `size` (our `--limit`) cuts the *raw* record list first: `annotation[:size]`, so a limit of
//!    N considers the first N records of the file, kept or not.
//! 2. A record whose `alt` is empty is skipped (EasyEdit tests `alt == ""`; we also skip an
//!    `alt` of only spaces, which no edit can target). Every other field may be empty and the
//!    record is kept, as EasyEdit keeps it (E-IC files have such records).
//!
//! EasyEdit stops at the first image that does not open; real E-IC files name images the
//! archives lack, so here a record with a missing image is skipped and counted
//! ([`Dataset::missing`]), and [`LoadRules::strict`] (`--strict`) makes it an error instead.
//! Everything else that is wrong — bad JSON, a missing key, a non-string value, an image path
//! leaving its root — is an error naming the file and the record index, before any model work
//! starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;
use serde::Serialize;

use super::error::DataError;
use super::record::{MmeditRecord, FIELDS};

/// Where a dataset's relative image paths point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRoots {
    /// Root of `image` and `m_loc` (EasyEdit's `coco_image`).
    pub image: PathBuf,
    /// Root of `image_rephrase` (EasyEdit's `rephrase_image`).
    pub rephrase: PathBuf,
}

impl ImageRoots {
    /// Both roots at the folder holding `data_file`: the layout of the files this project writes.
    pub fn beside(data_file: &Path) -> ImageRoots {
        let dir = data_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        ImageRoots {
            image: dir.clone(),
            rephrase: dir,
        }
    }
}

/// A kept record with its image paths resolved and checked to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedCase {
    /// The record's index in the file (0-based), for messages and per-case rows.
    pub index: usize,
    pub record: MmeditRecord,
    pub image: PathBuf,
    pub image_rephrase: PathBuf,
    pub m_loc: PathBuf,
}

/// A record skipped because the field EasyEdit requires (`alt`) is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedRecord {
    pub index: usize,
    pub empty_fields: Vec<&'static str>,
}

/// A record skipped because one of its images is not there (see [`LoadRules::strict`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingImage {
    pub index: usize,
    pub field: &'static str,
    pub image: PathBuf,
}

/// How records are chosen: EasyEdit's `size`, whether a missing image is an error, and whether
/// image paths may leave their roots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadRules {
    /// Consider only the first `size` records of the file, before any is skipped (EasyEdit's
    /// `size`, our `--limit`).
    pub size: Option<usize>,
    /// A missing image is an error (`--strict`) instead of skipping its record.
    pub strict: bool,
    /// Allow image paths outside the roots (`--images-anywhere`).
    pub anywhere: bool,
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    pub path: PathBuf,
    pub roots: ImageRoots,
    /// Records in the file.
    pub records: usize,
    /// Records considered: the first `size` of them, or all.
    pub considered: usize,
    pub cases: Vec<LoadedCase>,
    pub dropped: Vec<DroppedRecord>,
    pub missing: Vec<MissingImage>,
}

impl Dataset {
    /// A one-line account for the user:
    /// "300 cases from data/evqa.json (of the first 310 of 400 records: 2 with an empty alt, 8 with a missing image)".
    pub fn summary(&self) -> String {
        let mut s = format!("{} cases from {}", self.cases.len(), self.path.display());
        let mut skipped = Vec::new();
        if !self.dropped.is_empty() {
            skipped.push(format!("{} with an empty alt", self.dropped.len()));
        }
        if !self.missing.is_empty() {
            skipped.push(format!("{} with a missing image", self.missing.len()));
        }
        let of = if self.considered < self.records {
            format!("the first {} of {} records", self.considered, self.records)
        } else {
            format!("{} records", self.records)
        };
        if !skipped.is_empty() || self.considered < self.records {
            s.push_str(&format!(" (of {of}"));
            if !skipped.is_empty() {
                s.push_str(&format!("; skipped {}", skipped.join(", ")));
            }
            s.push(')');
        }
        s
    }
}

/// Longest field a record may hold. Fields are questions, short answers and image paths; a
/// longer one cannot fit any model's context, and tokenising megabytes would only cost memory.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Loads the MMEdit JSON array at `path`, resolving images against `roots`; image paths must
/// stay inside their root and a missing image is an error ([`load_dataset_with`] takes other
/// [`LoadRules`]).
pub fn load_dataset(path: &Path, roots: &ImageRoots) -> Result<Dataset, DataError> {
    load_dataset_with(
        path,
        roots,
        &LoadRules {
            strict: true,
            ..LoadRules::default()
        },
    )
}

/// Whether a record's relative image path stays inside its root, judged on the path's words:
/// not absolute, and no `..` climbing above the root. (A symbolic link inside the root is the
/// user's own choice and is followed.)
fn stays_inside(rel: &str) -> bool {
    use std::path::Component;
    let mut depth: usize = 0;
    for part in Path::new(rel).components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// [`load_dataset`] under `rules` (EasyEdit's `size`, `--strict`, `--images-anywhere`).
pub fn load_dataset_with(
    path: &Path,
    roots: &ImageRoots,
    rules: &LoadRules,
) -> Result<Dataset, DataError> {
    let anywhere = rules.anywhere;
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| json_error(path, &text, &e))?;
    let serde_json::Value::Array(items) = value else {
        return Err(DataError::NotAnArray {
            path: path.to_path_buf(),
        });
    };
    let records = items.len();
    let considered = rules.size.map_or(records, |n| n.min(records));
    let mut cases = Vec::new();
    let mut dropped = Vec::new();
    let mut missing = Vec::new();
    for (index, item) in items.into_iter().take(considered).enumerate() {
        let record = parse_record(path, index, item)?;
        for field in FIELDS {
            let len = record.field(field).map_or(0, str::len);
            if len > MAX_FIELD_BYTES {
                return Err(DataError::FieldTooLong {
                    path: path.to_path_buf(),
                    index,
                    field,
                    len,
                    max: MAX_FIELD_BYTES,
                });
            }
        }
        if record.alt.trim().is_empty() {
            dropped.push(DroppedRecord {
                index,
                empty_fields: record.empty_fields(),
            });
            continue;
        }
        let resolve = |field: &'static str, root: &Path, rel: &str| {
            if !anywhere && !stays_inside(rel) {
                return Err(DataError::OutsideRoot {
                    path: path.to_path_buf(),
                    index,
                    field,
                    image: rel.to_string(),
                    root: root.to_path_buf(),
                });
            }
            let image = root.join(rel);
            if image.is_file() {
                Ok(Ok(image))
            } else if rules.strict {
                Err(DataError::MissingImage {
                    path: path.to_path_buf(),
                    index,
                    field,
                    image,
                })
            } else {
                Ok(Err(MissingImage {
                    index,
                    field,
                    image,
                }))
            }
        };
        let resolved = (
            resolve("image", &roots.image, &record.image)?,
            resolve("image_rephrase", &roots.rephrase, &record.image_rephrase)?,
            resolve("m_loc", &roots.image, &record.m_loc)?,
        );
        let (image, image_rephrase, m_loc) = match resolved {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => {
                missing.push(m);
                continue;
            }
        };
        cases.push(LoadedCase {
            index,
            record,
            image,
            image_rephrase,
            m_loc,
        });
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        roots: roots.clone(),
        records,
        considered,
        cases,
        dropped,
        missing,
    })
}

/// Checks one record's shape field by field, so the message names the offending field.
fn parse_record(
    path: &Path,
    index: usize,
    item: serde_json::Value,
) -> Result<MmeditRecord, DataError> {
    let malformed = |reason: String| DataError::Record {
        path: path.to_path_buf(),
        index,
        reason,
    };
    let serde_json::Value::Object(map) = &item else {
        return Err(malformed(format!(
            "expected an object, found {}",
            kind_of(&item)
        )));
    };
    for field in FIELDS {
        match map.get(field) {
            None => return Err(malformed(format!("missing field `{field}`"))),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => {
                return Err(malformed(format!(
                    "field `{field}` should be a string, found {}",
                    kind_of(other)
                )))
            }
        }
    }
    if let Some(family) = map.get("family") {
        if !family.is_string() && !family.is_null() {
            return Err(malformed(format!(
                "field `family` should be a string, found {}",
                kind_of(family)
            )));
        }
    }
    serde_json::from_value(item).map_err(|e| malformed(e.to_string()))
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A JSON syntax error with the offending position underlined.
fn json_error(path: &Path, text: &str, error: &serde_json::Error) -> DataError {
    let offset = byte_offset(text, error.line(), error.column());
    DataError::Json {
        path: path.to_path_buf(),
        message: error.to_string(),
        src: Arc::new(NamedSource::new(
            path.display().to_string(),
            text.to_string(),
        )),
        span: (offset, 0).into(),
    }
}

/// The byte offset of a 1-based (line, column) position, clamped to the text.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_stay_inside_their_root_by_their_words() {
        for ok in ["a.png", "images/a.png", "./a.png", "x/../a.png"] {
            assert!(stays_inside(ok), "{ok}");
        }
        for bad in ["../a.png", "/etc/passwd", "x/../../a.png", "./../a.png"] {
            assert!(!stays_inside(bad), "{bad}");
        }
    }

    #[test]
    fn byte_offset_counts_lines_and_columns() {
        let text = "ab\ncde\nf";
        assert_eq!(byte_offset(text, 1, 1), 0);
        assert_eq!(byte_offset(text, 2, 2), 4);
        assert_eq!(byte_offset(text, 3, 1), 7);
        assert_eq!(byte_offset(text, 9, 9), text.len());
    }
}
