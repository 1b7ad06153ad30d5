//! Helpers of the robustness tests: damaging copies of the tiny checkpoint, running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The committed tiny checkpoint.
pub fn tiny() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-llava"
    ))
}

/// A copy of the tiny checkpoint in `dir/name`.
pub fn tiny_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).expect("folder");
    for entry in std::fs::read_dir(tiny()).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
    to
}

/// Runs the built binary.
pub fn mkedsl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MKEDSL_CACHE")
        .output()
        .expect("run mkedsl")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Asserts a clean failure: exit 1 (not a panic's 101 or a signal), a diagnostic on stderr that
/// contains every `needle`, and no panic message. Returns stderr.
pub fn fails_cleanly(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // miette wraps long lines (at any character of a path): compare without the wrapping.
    let squeeze = |t: &str| -> String {
        t.chars()
            .filter(|c| !c.is_whitespace() && *c != '│')
            .collect()
    };
    let flat = squeeze(&stderr);
    for n in needles {
        assert!(flat.contains(&squeeze(n)), "missing `{n}` in:\n{stderr}");
    }
    stderr
}

/// Edits a checkpoint's `config.json` with `edit`.
pub fn edit_config(model: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = model.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("write");
}

/// The header of a safetensors file: its length and the JSON.
pub fn header(bytes: &[u8]) -> (usize, serde_json::Value) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let json = serde_json::from_slice(&bytes[8..8 + n]).expect("header json");
    (n, json)
}

/// Byte offset (in the file) of the first element of `tensor`.
pub fn tensor_offset(bytes: &[u8], tensor: &str) -> usize {
    let (n, json) = header(bytes);
    let start = json[tensor]["data_offsets"][0].as_u64().expect("offsets") as usize;
    8 + n + start
}

/// Writes `value` (f32) over element `index` of `tensor` in `model`'s weights.
pub fn poke_f32(model: &Path, tensor: &str, index: usize, value: f32) {
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("weights");
    let at = tensor_offset(&bytes, tensor) + 4 * index;
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&path, bytes).expect("write");
}

/// Every element of `tensor` set to `value`.
pub fn fill_f32(model: &Path, tensor: &str, value: f32) {
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("weights");
    let (n, json) = header(&bytes);
    let [start, end] = [0, 1].map(|i| json[tensor]["data_offsets"][i].as_u64().unwrap() as usize);
    for at in (8 + n + start..8 + n + end).step_by(4) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, bytes).expect("write");
}

/// A recipe file.
pub fn recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("recipe");
    path
}
