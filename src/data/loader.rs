//! Reads MMEdit-format datasets: ours and the user's real E-VQA / E-IC files.
//!
//! As in EasyEdit, `image` and `m_loc` are resolved against one image root and `image_rephrase`
//! against a separate rephrase-image root (MMEdit ships its generated rephrase images apart from
//! COCO). EasyEdit skips records whose `alt` is empty; we skip records with *any* empty field
//! (which includes those), because every field feeds a metric, and report how many were dropped.
//! Everything else that is wrong — bad JSON, a missing key, a non-string value, a missing image —
//! is an error naming the file and the record index, before any model work starts.

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

/// A record skipped because some fields are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedRecord {
    pub index: usize,
    pub empty_fields: Vec<&'static str>,
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    pub path: PathBuf,
    pub roots: ImageRoots,
    pub cases: Vec<LoadedCase>,
    pub dropped: Vec<DroppedRecord>,
}

impl Dataset {
    /// A one-line account for the user: "300 cases from data/evqa.json (2 dropped: empty field)".
    pub fn summary(&self) -> String {
        let mut s = format!("{} cases from {}", self.cases.len(), self.path.display());
        if !self.dropped.is_empty() {
            s.push_str(&format!(
                " ({} dropped for an empty field)",
                self.dropped.len()
            ));
        }
        s
    }
}

/// Longest field a record may hold. Fields are questions, short answers and image paths; a
/// longer one cannot fit any model's context, and tokenising megabytes would only cost memory.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Loads the MMEdit JSON array at `path`, resolving images against `roots`; image paths must
/// stay inside their root ([`load_dataset_with`] can allow them anywhere).
pub fn load_dataset(path: &Path, roots: &ImageRoots) -> Result<Dataset, DataError> {
    load_dataset_with(path, roots, false)
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

/// [`load_dataset`], with `anywhere` allowing image paths outside the roots (`--images-anywhere`).
pub fn load_dataset_with(
    path: &Path,
    roots: &ImageRoots,
    anywhere: bool,
) -> Result<Dataset, DataError> {
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
    let mut cases = Vec::new();
    let mut dropped = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
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
        let empty_fields = record.empty_fields();
        if !empty_fields.is_empty() {
            dropped.push(DroppedRecord {
                index,
                empty_fields,
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
                Ok(image)
            } else {
                Err(DataError::MissingImage {
                    path: path.to_path_buf(),
                    index,
                    field,
                    image,
                })
            }
        };
        let image = resolve("image", &roots.image, &record.image)?;
        let image_rephrase = resolve("image_rephrase", &roots.rephrase, &record.image_rephrase)?;
        let m_loc = resolve("m_loc", &roots.image, &record.m_loc)?;
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
        cases,
        dropped,
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
