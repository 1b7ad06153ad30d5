//! Finding and checking a checkpoint's weight files before anything is built.
//!
//! Every tensor `config.json` implies is checked (presence, shape, dtype, data inside the file)
//! from the safetensors headers alone, so a wrong checkpoint fails in milliseconds with the file
//! and tensor named, instead of deep inside model construction or with a bus error from a
//! memory map over a truncated file.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::model::config::LlavaConfig;
use crate::model::error::{ModelError, Result};
use crate::model::tensors::expected_tensors;

/// Name of a single-file checkpoint's weights.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The tensors of one safetensors file, read from its header.
#[derive(Debug, Clone)]
pub struct Header {
    pub tensors: HashMap<String, HeaderEntry>,
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Reads and validates a safetensors header: JSON well-formed, every tensor's data inside the
/// file and of the size its dtype and shape imply.
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |reason: String| ModelError::Safetensors {
        path: show(path),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|cause| ModelError::Io {
        path: show(path),
        cause,
    })?;
    let file_len = file
        .metadata()
        .map_err(|cause| ModelError::Io {
            path: show(path),
            cause,
        })?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        bad(format!(
            "the file is {file_len} bytes long, too short for a header"
        ))
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(format!(
            "the header claims {header_len} bytes but the file is only {file_len} bytes long (truncated?)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not valid JSON: {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad("the header is not a JSON object".into()))?;
    let data_len = file_len - 8 - header_len;
    let mut tensors = HashMap::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            entry
                .get(key)
                .ok_or_else(|| bad(format!("tensor `{name}` has no `{key}`")))
        };
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad(format!("tensor `{name}`: dtype is not a string")))?;
        let as_usizes = |key: &str| -> Result<Vec<usize>> {
            field(key)?
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_u64().map(|n| n as usize))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad(format!("tensor `{name}`: `{key}` is not a list of sizes")))
        };
        let shape = as_usizes("shape")?;
        let offsets = as_usizes("data_offsets")?;
        let [start, end] = offsets[..] else {
            return Err(bad(format!(
                "tensor `{name}`: data_offsets must hold two numbers"
            )));
        };
        if end as u64 > data_len || start > end {
            return Err(bad(format!(
                "tensor `{name}` lies at data bytes {start}..{end} but the file holds only {data_len} data bytes (truncated?)"
            )));
        }
        if let Some(size) = dtype_size(dtype) {
            let expected = shape
                .iter()
                .try_fold(size, |a, &n| a.checked_mul(n))
                .unwrap_or(usize::MAX);
            if end - start != expected {
                return Err(bad(format!(
                    "tensor `{name}` ({dtype} {shape:?}) needs {expected} bytes but occupies {}",
                    end - start
                )));
            }
        }
        tensors.insert(
            name.clone(),
            HeaderEntry {
                dtype: dtype.to_string(),
                shape,
            },
        );
    }
    Ok(Header { tensors })
}

/// The weight files of a checkpoint folder: the shards an index names, or `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|cause| ModelError::Io {
            path: show(&index),
            cause,
        })?;
        let bad = |reason: String| ModelError::Index {
            path: show(&index),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("it has no `weight_map` object".into()))?;
        let mut files = BTreeSet::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("the shard of `{tensor}` is not a file name")))?;
            if file.contains('/') || file.contains('\\') || file == ".." {
                return Err(bad(format!(
                    "shard `{file}` is not a plain file name in the checkpoint folder"
                )));
            }
            files.insert(file.to_string());
        }
        if files.is_empty() {
            return Err(bad("`weight_map` is empty".into()));
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(ModelError::MissingFile {
                path: show(missing),
                what: "weight shard",
                help: format!(
                    "{} names this shard; copy every shard into the folder",
                    show(&index)
                ),
            });
        }
        return Ok(paths);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(ModelError::MissingFile {
        path: show(&single),
        what: "weight file",
        help: format!(
            "a checkpoint folder holds `{SINGLE_FILE}` or `{INDEX_FILE}` with its shards"
        ),
    })
}

/// Checks every tensor the config implies against the headers of `files`; returns nothing on
/// success. Tensors the config does not know (e.g. `image_newline` of llava-1.6) are ignored.
pub fn check_tensors(cfg: &LlavaConfig, files: &[PathBuf]) -> Result<()> {
    let mut found: HashMap<String, (PathBuf, HeaderEntry)> = HashMap::new();
    for file in files {
        for (name, entry) in read_header(file)?.tensors {
            found.insert(name, (file.clone(), entry));
        }
    }
    let searched = match files {
        [one] => format!("`{}`", show(one)),
        _ => format!(
            "the {} shards of `{}`",
            files.len(),
            files
                .first()
                .and_then(|f| f.parent())
                .map(show)
                .unwrap_or_default()
        ),
    };
    // The layer counts of config.json are compared with the file before the full list of
    // expected tensors is built from them: that list grows with the counts.
    let t = &cfg.text_config;
    let v = &cfg.vision_config;
    for name in [
        format!(
            "language_model.model.layers.{}.input_layernorm.weight",
            t.num_hidden_layers.saturating_sub(1)
        ),
        format!(
            "vision_tower.vision_model.encoder.layers.{}.layer_norm1.weight",
            v.num_hidden_layers.saturating_sub(1)
        ),
    ] {
        if !found.contains_key(&name) {
            return Err(ModelError::MissingTensor {
                path: searched,
                tensor: name,
            });
        }
    }
    for spec in expected_tensors(cfg) {
        let Some((file, entry)) = found.get(&spec.name) else {
            return Err(ModelError::MissingTensor {
                path: searched,
                tensor: spec.name,
            });
        };
        if entry.shape != spec.shape {
            return Err(ModelError::ShapeMismatch {
                path: show(file),
                tensor: spec.name,
                expected: spec.shape,
                found: entry.shape.clone(),
            });
        }
        if !matches!(entry.dtype.as_str(), "F32" | "F16" | "BF16" | "F64") {
            return Err(ModelError::UnsupportedDType {
                path: show(file),
                tensor: spec.name,
                dtype: entry.dtype.clone(),
            });
        }
    }
    Ok(())
}

/// A var builder over the (already checked) weight files, converting to `dtype` on `device`.
pub fn var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    // SAFETY: the files are memory-mapped read-only; `check_tensors` has verified that every
    // header fits the file. Mutating a checkpoint while a model is loaded from it is undefined
    // behaviour for every memory-mapping loader (Hugging Face's included).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) };
    vb.map_err(|e| ModelError::Safetensors {
        path: files.first().map(|f| show(f)).unwrap_or_default(),
        reason: e.to_string(),
    })
}
