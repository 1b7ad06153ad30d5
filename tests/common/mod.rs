//! Helpers shared by the runtime test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Tensor};
use mkedsl::model::preprocess::load_image;
use mkedsl::model::{Llava, LoadOptions};

/// The committed tiny checkpoint (regenerate with `cargo run --example make_tiny_llava`).
pub fn tiny() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-llava"
    ))
}

/// A committed test image (37 × 23 RGB).
pub fn image_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/wide.png"
    ))
}

pub fn image() -> image::DynamicImage {
    load_image(&image_path()).expect("test image")
}

/// A second, different image (60 × 90 RGB).
pub fn other_image() -> image::DynamicImage {
    load_image(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/tall.png"
    )))
    .expect("test image")
}

pub const PROMPT: &str = "USER: <image>\nWhat color is the circle? ASSISTANT:";

pub fn load(dtype: DType) -> Llava {
    Llava::load(
        &tiny(),
        &LoadOptions {
            dtype,
            ..LoadOptions::default()
        },
    )
    .expect("tiny checkpoint loads")
}

/// Copies the tiny checkpoint into `dir` so a test can damage it.
pub fn copy_tiny(dir: &Path) {
    for entry in std::fs::read_dir(tiny()).expect("fixture folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
}

/// max |a − b| over all elements.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Runs the built `mkedsl` binary without colour: `(exit code, stdout, stderr)`.
pub fn mkedsl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
