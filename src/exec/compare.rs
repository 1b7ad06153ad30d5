//! `mkedsl compare`: several recipes on several datasets, one metric table (Markdown) — the
//! README's results table, reproducible from one command.
//!
//! Every recipe runs through [`run`] exactly as `mkedsl run` would, on the same model, cases and
//! device; the pre-edit row is the unedited model's scores on each dataset.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::eval::{EvalReport, SetupRequest};
use crate::exec::run::{run, CacheChoice, RunRequest};

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub recipes: Vec<PathBuf>,
    pub datasets: Vec<PathBuf>,
    /// Model, limit, device (its `data` is replaced by each dataset).
    pub setup: SetupRequest,
    pub seed: Option<u64>,
    /// `--set NAME=VALUE` for every recipe.
    pub overrides: crate::sema::Overrides,
    pub cache: CacheChoice,
    pub verbose: bool,
}

/// One recipe on one dataset.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    pub recipe: String,
    pub recipe_file: String,
    pub data: String,
    pub report: EvalReport,
}

/// Runs every recipe on every dataset.
pub fn compare(req: &CompareRequest) -> miette::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for data in &req.datasets {
        for recipe in &req.recipes {
            if req.verbose {
                eprintln!("compare: {} on {}", recipe.display(), data.display());
            }
            let outcome = run(&RunRequest {
                setup: SetupRequest {
                    data: Some(data.clone()),
                    ..req.setup.clone()
                },
                seed: req.seed,
                overrides: req.overrides.clone(),
                cache: req.cache.clone(),
                verbose: req.verbose,
                ..RunRequest::new(recipe.clone())
            })?;
            cells.push(Cell {
                recipe: outcome.plan.recipe.name.clone(),
                recipe_file: recipe.display().to_string(),
                data: data.display().to_string(),
                report: outcome.report,
            });
        }
    }
    Ok(cells)
}

/// The file name of a path, for table headers.
pub fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or(path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The Markdown table: per dataset, the pre-edit row then one row per recipe; token-level scores
/// then exact match, in percent.
pub fn markdown(cells: &[Cell]) -> String {
    let mut out = String::new();
    let pct = |v: f64| format!("{:.1}", 100.0 * v);
    let _ = writeln!(
        out,
        "| data | recipe | Rel | T-Gen | M-Gen | T-Loc | M-Loc | Rel EM | T-Gen EM | M-Gen EM | T-Loc EM | M-Loc EM |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut seen: Vec<&str> = Vec::new();
    for cell in cells {
        let r = &cell.report;
        let data = file_name(&cell.data);
        if !seen.contains(&cell.data.as_str()) {
            seen.push(&cell.data);
            let p = &r.pre_edit;
            let _ = writeln!(
                out,
                "| {data} | pre-edit | {} | {} | {} | – | – | {} | {} | {} | – | – |",
                pct(p.metrics.rel),
                pct(p.metrics.t_gen),
                pct(p.metrics.m_gen),
                pct(p.generation.rel),
                pct(p.generation.t_gen),
                pct(p.generation.m_gen)
            );
        }
        let (m, g) = (&r.metrics, &r.generation);
        let _ = writeln!(
            out,
            "| {data} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell.recipe,
            pct(m.rel),
            pct(m.t_gen),
            pct(m.m_gen),
            pct(m.t_loc),
            pct(m.m_loc),
            pct(g.rel),
            pct(g.t_gen),
            pct(g.m_gen),
            pct(g.t_loc),
            pct(g.m_loc)
        );
    }
    out
}
