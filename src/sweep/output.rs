//! The sweep's Markdown table and the writing of its files (each to a temporary file renamed
//! into place, [`crate::data::files::write_atomic`]).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::{Estimate, SweepError, SweepFile};

/// `93.3 [86.7, 100.0]` (percent; the interval only where there is one).
fn cell(e: &Estimate) -> String {
    let pct = |v: f64| format!("{:.1}", 100.0 * v);
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!("{} [{}, {}]", pct(e.mean), pct(lo), pct(hi)),
        _ => pct(e.mean),
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or(path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// A line saying what was swept, then one row per grid point: its values, its seeds, each
/// token-level metric's mean over the seeds (with the 95 % bootstrap interval when there are two
/// or more), and the mean seconds of one run.
pub fn markdown(file: &SweepFile) -> String {
    let mut out = String::new();
    let seeds: Vec<String> = file.grid.seeds.iter().map(u64::to_string).collect();
    let cases = file
        .limit
        .map_or("every case".to_string(), |n| format!("{n} cases"));
    let mode = match (file.mode.as_str(), file.k) {
        ("sequential", Some(k)) => format!(" · sequential editing, K = {k}"),
        ("", _) => String::new(),
        (mode, _) => format!(" · {mode} editing"),
    };
    let _ = writeln!(
        out,
        "sweep of recipe \"{}\" ({}) · {} · {cases}{mode} · seeds {} · model {} · {} runs",
        file.recipe,
        file.recipe_file,
        file_name(&file.data),
        seeds.join(", "),
        file.model,
        file.points.len()
    );
    let _ = writeln!(
        out,
        "scores in percent: mean over seeds{}",
        if file.grid.seeds.len() >= 2 {
            " [95 % bootstrap interval]"
        } else {
            " (one seed: no interval)"
        }
    );
    let _ = writeln!(out);
    let mut head = String::from("|");
    let mut rule = String::from("|");
    for p in &file.parameters {
        let _ = write!(head, " {p} |");
        rule.push_str("---|");
    }
    head.push_str(" seeds | Rel | T-Gen | M-Gen | T-Loc | M-Loc | time/run (s) |");
    rule.push_str("---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "{rule}");
    for s in &file.summary {
        // The values as written on the command line (`5e-4`, not `0.0005`).
        let written = file.grid.run(s.point * file.grid.seeds.len().max(1));
        let mut row = String::from("|");
        for p in &file.parameters {
            let text = written
                .as_ref()
                .and_then(|r| r.set.iter().find(|(n, _)| n == p).map(|(_, v)| v.clone()))
                .or_else(|| s.set.get(p).map(shown))
                .unwrap_or_default();
            let _ = write!(row, " {text} |");
        }
        let m = &s.metrics;
        let _ = writeln!(
            out,
            "{row} {} | {} | {} | {} | {} | {} | {:.1} |",
            s.seeds.len(),
            cell(&m.rel),
            cell(&m.t_gen),
            cell(&m.m_gen),
            cell(&m.t_loc),
            cell(&m.m_loc),
            s.time_s
        );
    }
    out
}

/// The JSON text of a sweep file (pretty, with a final newline).
pub fn json(file: &SweepFile) -> Result<String, SweepError> {
    let mut text = serde_json::to_string_pretty(file).map_err(|e| SweepError::Write {
        path: "(sweep JSON)".into(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

/// Writes `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> Result<(), SweepError> {
    crate::data::files::write_atomic(path, text.as_bytes()).map_err(|e| SweepError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{summarize, Grid, PointResult, FORMAT};
    use serde_json::json;

    fn point(task: usize, point: usize, lr: f64, seed: u64, rel: f64) -> PointResult {
        PointResult {
            task,
            point,
            set: json!({ "lr": lr }).as_object().cloned().unwrap(),
            seed,
            time_s: 2.0,
            report: json!({"metrics": {"rel": rel, "t_gen": 1.0, "m_gen": 0.5, "t_loc": 1.0, "m_loc": 0.25}}),
        }
    }

    #[test]
    fn the_table_has_one_row_per_point_with_intervals_over_seeds() {
        let points = vec![
            point(0, 0, 0.001, 0, 0.5),
            point(1, 0, 0.001, 1, 1.0),
            point(2, 1, 0.003, 0, 1.0),
            point(3, 1, 0.003, 1, 1.0),
        ];
        let file = SweepFile {
            format: FORMAT.into(),
            recipe: "FT-L".into(),
            recipe_file: "recipes/ft_l.edit".into(),
            recipe_sha256: "x".into(),
            model: "examples/model".into(),
            data: "examples/data/evqa.json".into(),
            limit: Some(2),
            mode: "single".into(),
            k: None,
            parameters: vec!["lr".into()],
            grid: Grid::new(&["lr=1e-3,3e-3".into()], vec![0, 1]).unwrap(),
            runs: 4,
            task: None,
            summary: summarize(&points),
            points,
            mkedsl: "0".into(),
        };
        insta::assert_snapshot!(markdown(&file));
    }
}
