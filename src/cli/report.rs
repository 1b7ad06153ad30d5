//! `mkedsl report RESULTS.json… --out report.html`: one self-contained HTML page of tables and
//! plots from results files ([`crate::report`]); and the `--report FILE` flag that `run`,
//! `compare` and `bench` share.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files: the JSON of `run --json`, `compare --json`, `bench --json`, or a sweep file.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
}

pub fn run(args: ReportArgs) -> miette::Result<()> {
    crate::report::report_files(&args.inputs, &args.out)?;
    println!(
        "report    {} ({} input(s))",
        args.out.display(),
        args.inputs.len()
    );
    Ok(())
}

/// Writes the report of a command's results to `out`: `json` is where the command wrote the
/// same results as JSON, if it did (the page names that file); `extra` is provenance the JSON
/// does not hold. The command line and this mkedsl's version are always recorded (the results
/// were made by this binary).
pub fn write_for<T: Serialize>(
    results: &T,
    json: Option<&Path>,
    mut extra: Vec<(String, String)>,
    out: &Path,
) -> miette::Result<()> {
    // The same bytes `--json` writes (pretty, fields in declaration order, a final newline), so
    // the page's digest is that of the JSON file.
    let mut text = serde_json::to_string_pretty(results)
        .map_err(|e| miette::miette!("cannot serialise the results: {e}"))?;
    text.push('\n');
    let name = json.map_or_else(
        || "(results of this command; not written as JSON)".to_string(),
        |p| p.display().to_string(),
    );
    let command: Vec<String> = std::env::args().collect();
    extra.push(("command".into(), command.join(" ")));
    extra.push(("version".into(), env!("CARGO_PKG_VERSION").to_string()));
    crate::report::from_json(&name, text.as_bytes(), extra, out)?;
    println!("report    {}", out.display());
    Ok(())
}
