//! `mkedsl report`: results files in, one self-contained HTML page out — tables with confidence
//! intervals where present, plots (inline SVG from plotters), and the provenance of every input.
//!
//! ```text
//! RESULTS.json… ──read::content──▶ Content (runs, bench rows, sweep) ──html::page──▶ report.html
//!                                                    (plots::* draws each figure)
//! ```
//!
//! The inputs are what `run --json`, `compare --json` and `bench --json` write, and sweep files
//! (layout in the README, section "Reports"); [`read`] accepts missing and extra fields, so files
//! from other mkedsl versions still report. `run`, `compare` and `bench` take `--report FILE` to
//! write the page directly ([`from_json`]).

pub mod html;
pub mod plots;
pub mod read;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use html::Input;

/// Why no report was written.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReportError {
    /// An input could not be read.
    #[error("cannot read `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::report::read),
        help("name a results file written by `mkedsl run/compare/bench --json`")
    )]
    Read { path: PathBuf, reason: String },

    /// An input is not JSON, or not a results file.
    #[error("`{}` is not a results file: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::report::shape),
        help("reports read the JSON of `run --json`, `compare --json`, `bench --json` and sweep files (README, \"Reports\")")
    )]
    Shape { path: PathBuf, reason: String },

    /// No input was named.
    #[error("no results file named")]
    #[diagnostic(
        code(mkedsl::report::no_input),
        help("give one or more RESULTS.json files")
    )]
    NoInput,

    /// Drawing a plot failed.
    #[error("cannot draw a plot: {0}")]
    #[diagnostic(
        code(mkedsl::report::plot),
        help("this is a bug in `mkedsl report`; please report it with the inputs")
    )]
    Plot(String),

    /// The page could not be written.
    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(code(mkedsl::report::write), help("check that the folder is writable"))]
    Write { path: PathBuf, reason: String },
}

/// Reads one results file.
pub fn load(path: &Path) -> Result<Input, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ReportError::Shape {
            path: path.to_path_buf(),
            reason: format!("not JSON ({e})"),
        })?;
    input(path.display().to_string(), &bytes, &value, 0)
}

/// An input from its name, its bytes (for the digest) and their JSON value.
fn input(
    name: String,
    bytes: &[u8],
    value: &serde_json::Value,
    index: usize,
) -> Result<Input, ReportError> {
    let content = read::content(value, index).map_err(|reason| ReportError::Shape {
        path: PathBuf::from(&name),
        reason,
    })?;
    Ok(Input {
        name,
        sha256: hex(&Sha256::digest(bytes)),
        bytes: bytes.len(),
        content,
        extra: Vec::new(),
    })
}

/// The page for inputs already read (their indices are set here, in order).
pub fn render(mut inputs: Vec<Input>) -> Result<String, ReportError> {
    if inputs.is_empty() {
        return Err(ReportError::NoInput);
    }
    for (i, input) in inputs.iter_mut().enumerate() {
        if let read::Content::Runs(runs) = &mut input.content {
            runs.iter_mut().for_each(|r| r.input = i);
        }
    }
    html::page(&inputs, env!("CARGO_PKG_VERSION")).map_err(ReportError::Plot)
}

/// `mkedsl report FILES… --out PAGE`: reads, renders, writes atomically.
pub fn report_files(files: &[PathBuf], out: &Path) -> Result<(), ReportError> {
    let inputs = files
        .iter()
        .map(|f| load(f))
        .collect::<Result<Vec<_>, _>>()?;
    write(out, &render(inputs)?)
}

/// For `--report` on a command that has just made `json` (the bytes its `--json` writes): the
/// page for that one result. `name` is how the page names it (the `--json` path, or a
/// description); `extra` is provenance the JSON does not hold.
pub fn from_json(
    name: &str,
    json: &[u8],
    extra: Vec<(String, String)>,
    out: &Path,
) -> Result<(), ReportError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| ReportError::Shape {
            path: PathBuf::from(name),
            reason: format!("not JSON ({e})"),
        })?;
    let mut input = input(name.to_string(), json, &value, 0)?;
    input.extra = extra;
    write(out, &render(vec![input])?)
}

fn write(path: &Path, page: &str) -> Result<(), ReportError> {
    crate::data::files::write_atomic(path, page.as_bytes()).map_err(|e| ReportError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
