//! The Markdown of an ablation: what ran (model, data, seeds, rule), each arm's scores with
//! their intervals, and each arm's paired difference from the control.

use std::fmt::Write as _;

use super::{number, AblationFile, Cell, METRICS};
use crate::exec::compare::file_name;
use crate::sweep::stats::Estimate;

/// A score in percent with its interval: `93.3 [86.7, 98.3]`.
fn percent(e: &Estimate) -> String {
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => format!(
            "{:.1} [{:.1}, {:.1}]",
            100.0 * e.mean,
            100.0 * lo,
            100.0 * hi
        ),
        _ => format!("{:.1}", 100.0 * e.mean),
    }
}

/// A difference in points with its interval, marked `✱` when the interval excludes 0.
fn difference(e: &Estimate) -> String {
    // Only an exact 0 prints unsigned: a bound that rounds to 0 keeps its sign, so an interval
    // marked ✱ never reads as if it touched 0 (`[-1.8, -0.0] ✱`).
    let signed = |v: f64| {
        if v == 0.0 {
            "0.0".to_string()
        } else {
            format!("{:+.1}", 100.0 * v)
        }
    };
    match (e.lo, e.hi) {
        (Some(lo), Some(hi)) => {
            let excludes_zero = lo > 0.0 || hi < 0.0;
            format!(
                "{} [{}, {}]{}",
                signed(e.mean),
                signed(lo),
                signed(hi),
                if excludes_zero { " ✱" } else { "" }
            )
        }
        _ => signed(e.mean),
    }
}

/// The largest spread (max − min) of a cell's seed means over its metrics, in points.
fn seed_spread(cell: &Cell) -> f64 {
    (0..METRICS.len())
        .map(|m| {
            let values = cell.per_seed.iter().map(|s| s.means[m]);
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            if lo.is_finite() {
                hi - lo
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
        * 100.0
}

/// A cell's data by file names: `evqa.json`, or `evqa.json + eic.json` for a cross-task
/// sequence.
pub(super) fn data_name(data: &str) -> String {
    data.split(" + ")
        .map(file_name)
        .collect::<Vec<_>>()
        .join(" + ")
}

pub fn markdown(file: &AblationFile) -> String {
    let mut out = String::new();
    let seeds: Vec<String> = file.seeds.iter().map(u64::to_string).collect();
    let cases = match file.limit {
        Some(n) => format!("the first {n} cases of each file"),
        None => "every case of each file".into(),
    };
    let _ = writeln!(
        out,
        "Model `{}` · device {} · {} · seeds {} · {} editing{}{}.",
        file.model,
        file.device,
        cases,
        seeds.join(", "),
        file.mode,
        file.k.map(|k| format!(", K = {k}")).unwrap_or_default(),
        if file.interleaved {
            " · the files interleaved in one cross-task sequence"
        } else {
            ""
        }
    );
    for set in &file.sets {
        let arms: Vec<&str> = file
            .arms
            .iter()
            .filter(|a| a.sets.contains(set))
            .map(|a| a.name.as_str())
            .collect();
        let _ = writeln!(out, "`--set {set}` on {}.", arms.join(", "));
    }
    match &file.tuning {
        Some(t) => {
            let _ = writeln!(
                out,
                "Each arm's `{}`: {} (target Rel {:.0} %; tuning cases: {}{}, seed {}).",
                t.param,
                t.rule,
                100.0 * t.target,
                t.datasets
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                t.limit
                    .map(|n| format!(", first {n} of each"))
                    .unwrap_or_default(),
                file.seeds.first().copied().unwrap_or(0)
            );
        }
        None => {
            let _ = writeln!(out, "Every arm at its declared values (no tuning).");
        }
    }
    let _ = writeln!(out, "Intervals: {}.", file.interval);
    let _ = writeln!(out);
    let headers: Vec<&str> = METRICS.iter().map(|(_, h)| *h).collect();
    let tuned = file
        .tuning
        .as_ref()
        .map_or("value".into(), |t| format!("{} (tuning Rel)", t.param));
    let _ = writeln!(
        out,
        "| data | arm | {tuned} | {} | seed spread |",
        headers.join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|{}---:|", "---:|".repeat(METRICS.len()));
    for cell in &file.cells {
        let arm = &file.arms[cell.arm];
        let value = match &arm.choice {
            Some(c) => {
                let rel = c
                    .trials
                    .iter()
                    .find(|t| t.value == c.value)
                    .map_or(f64::NAN, |t| t.rel);
                format!(
                    "{} ({:.0} %{})",
                    number(c.value),
                    100.0 * rel,
                    if c.matched { "" } else { ", below target" }
                )
            }
            None => "declared".into(),
        };
        let scores: Vec<String> = METRICS
            .iter()
            .map(|(k, _)| cell.scores.get(k).map_or(String::new(), percent))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {}{} | {value} | {} | {:.1} |",
            data_name(&cell.data),
            arm.name,
            if cell.arm == file.control {
                " (control)"
            } else {
                ""
            },
            scores.join(" | "),
            seed_spread(cell)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Arm − control, in points, paired by {} (✱: the interval excludes 0):",
        if file.sequence().is_some() {
            "sequence"
        } else {
            "case"
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| data | arm | {} |",
        headers
            .iter()
            .map(|h| format!("Δ{h}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(out, "|---|---|{}", "---:|".repeat(METRICS.len()));
    for cell in &file.cells {
        let Some(delta) = &cell.delta else { continue };
        let diffs: Vec<String> = METRICS
            .iter()
            .map(|(k, _)| delta.get(k).map_or(String::new(), difference))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            data_name(&cell.data),
            file.arms[cell.arm].name,
            diffs.join(" | ")
        );
    }
    let _ = writeln!(out);
    let times: Vec<String> = file
        .arms
        .iter()
        .map(|a| {
            format!(
                "{} {:.0} s tuning + {:.0} s runs",
                a.name, a.tune_s, a.run_s
            )
        })
        .collect();
    let _ = writeln!(out, "Time: {}.", times.join("; "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_is_marked_only_when_its_interval_excludes_zero() {
        let e = |mean, lo, hi| Estimate {
            mean,
            lo: Some(lo),
            hi: Some(hi),
        };
        assert_eq!(difference(&e(0.05, 0.01, 0.1)), "+5.0 [+1.0, +10.0] ✱");
        assert_eq!(difference(&e(0.05, -0.01, 0.1)), "+5.0 [-1.0, +10.0]");
        assert_eq!(difference(&e(-0.2, -0.3, -0.1)), "-20.0 [-30.0, -10.0] ✱");
        assert_eq!(difference(&e(0.0, 0.0, 0.0)), "0.0 [0.0, 0.0]");
        assert_eq!(
            difference(&e(-0.008, -0.018, -0.0001)),
            "-0.8 [-1.8, -0.0] ✱"
        );
        assert_eq!(percent(&e(0.5, 0.25, 0.75)), "50.0 [25.0, 75.0]");
    }
}
