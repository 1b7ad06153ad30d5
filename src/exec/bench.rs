//! `mkedsl bench`: recipes side by side in one process, on the same model, data and cases —
//! seconds per edit split into the method's phases, and peak memory.
//!
//! Phases: prepare (once; statistics, spaces, adapter initialisation — the cache is off unless
//! asked for, so this is the real cost), per-edit space construction (variants, knowledge
//! spaces), optimisation (the `train` steps), evaluation (the evaluator's pre-edit and post-edit
//! observations, per case). Peak memory is the process's peak resident set (`VmHWM` of
//! `/proc/self/status`), reset before each recipe through `/proc/self/clear_refs` where Linux
//! allows it; elsewhere the column says it is not available.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::eval::SetupRequest;
use crate::exec::run::{run, CacheChoice, RunRequest};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub recipes: Vec<PathBuf>,
    pub setup: SetupRequest,
    /// `--set NAME=VALUE` for every recipe.
    pub overrides: crate::sema::Overrides,
    pub cache: CacheChoice,
    /// Print progress on stderr.
    pub verbose: bool,
}

/// One recipe's measurements.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    pub recipe: String,
    pub cases: usize,
    pub prepare_s: f64,
    /// Per edit.
    pub spaces_s: f64,
    pub optimise_s: f64,
    pub evaluate_s: f64,
    /// Whole run, wall clock.
    pub total_s: f64,
    /// Peak resident memory in MiB, when the platform reports it.
    pub peak_mib: Option<f64>,
    pub rel: f64,
}

impl BenchRow {
    /// Seconds one edit costs: its spaces and optimisation (prepare amortised over the cases).
    pub fn edit_s(&self) -> f64 {
        self.spaces_s + self.optimise_s + self.prepare_s / self.cases.max(1) as f64
    }
}

/// Resets the peak-RSS counter (Linux); false where unsupported.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set since the last reset, in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs every recipe on the same cases, one after the other.
pub fn bench(req: &BenchRequest) -> miette::Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for recipe in &req.recipes {
        if req.verbose {
            eprintln!("bench: {}", recipe.display());
        }
        let resettable = reset_peak();
        let outcome = run(&RunRequest {
            setup: req.setup.clone(),
            overrides: req.overrides.clone(),
            cache: req.cache.clone(),
            verbose: req.verbose,
            ..RunRequest::new(recipe.clone())
        })?;
        let t = &outcome.report.timing;
        let p = &outcome.phases;
        let n = p.edits.max(1) as f64;
        rows.push(BenchRow {
            recipe: format!("{} ({})", outcome.plan.recipe.name, recipe.display()),
            cases: outcome.report.cases,
            prepare_s: p.prepare_s,
            spaces_s: p.spaces_s / n,
            optimise_s: p.optimise_s / n,
            evaluate_s: (t.pre_edit_s + t.score_s) / n,
            total_s: t.total_s,
            peak_mib: if resettable { peak_mib() } else { None },
            rel: outcome.report.metrics.rel,
        });
    }
    Ok(rows)
}

/// The benchmark table: absolute seconds, and each recipe's cost per edit relative to the first.
pub fn table(rows: &[BenchRow], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}{:>10}",
        "recipe", "prepare", "spaces", "optimise", "evaluate", "edit", "× first", "peak", "Rel"
    );
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}{:>10}",
        "", "s once", "s/edit", "s/edit", "s/case", "s/edit", "", "MiB", "%"
    );
    let base = rows.first().map(BenchRow::edit_s).unwrap_or(1.0).max(1e-9);
    for r in rows {
        let name: String = r.recipe.chars().take(33).collect();
        let _ = writeln!(
            out,
            "{name:<34}{:>9.2}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.2}{:>9}{:>10.1}",
            r.prepare_s,
            r.spaces_s,
            r.optimise_s,
            r.evaluate_s,
            r.edit_s(),
            r.edit_s() / base,
            r.peak_mib.map_or("n/a".to_string(), |m| format!("{m:.0}")),
            100.0 * r.rel
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "edit = spaces + optimisation + prepare / cases; × first = edit time relative to the first recipe;"
    );
    let _ = writeln!(
        out,
        "peak = the process's peak resident memory during that recipe (VmHWM, reset between recipes)."
    );
    out
}
