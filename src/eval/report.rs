//! The evaluation's report: what was run (model, data, recipe, seed, device, mode, cases), the
//! scores, per-case rows; rendered as a table for the terminal and as JSON for files.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::data::files::write_atomic;
use crate::eval::error::{EvalError, Result};
use crate::eval::metrics::MetricSet;
use crate::eval::runner::{EditMode, Evaluation, Timing};
use crate::eval::score::{CaseRow, LocalityScores, PreEditScores};
use crate::eval::template::ResolvedTemplate;

/// Where a run's inputs came from: the provenance lines of the table and the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    /// The recipe (its path or name); `mkedsl eval` reports the unedited model.
    pub recipe: String,
    pub model: String,
    pub data: String,
    /// The seed of everything random in the run; `None` when nothing is random.
    pub seed: Option<u64>,
    pub device: String,
    pub template: ResolvedTemplate,
    /// Records the loader skipped for an empty field.
    pub dropped: usize,
}

/// How each score is computed, spelled out in every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scoring {
    pub metrics: &'static str,
    pub generation: &'static str,
    pub locality_all_positions: &'static str,
    pub averaging: &'static str,
}

/// The scoring descriptions (the same for every report).
pub const SCORING: Scoring = Scoring {
    metrics: "Rel/T-Gen/M-Gen: teacher-forced accuracy of the target (alt) tokens after `prompt + \" \"`, as EasyEdit; T-Loc/M-Loc: top-1 agreement of the edited with the pre-edit model at the positions predicting loc_ans / m_loc_a",
    generation: "Rel/T-Gen/M-Gen: greedy generation equals alt; T-Loc/M-Loc: greedy generation equals the pre-edit model's (normalised: cut at </s>, trimmed, lowercased, spaces collapsed)",
    locality_all_positions: "EasyEdit's locality: agreement at every position of `prompt + \" \" + answer`, image and prompt tokens included, top-1 for T-Loc and top-10 for M-Loc",
    averaging: "each score is the mean over cases of the case's fraction",
};

/// The full result of a run, serialised as the `--json` file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub recipe: String,
    pub editor: String,
    pub model: String,
    pub data: String,
    pub seed: Option<u64>,
    pub device: String,
    /// `single` or `sequential`.
    pub mode: &'static str,
    /// Edits per group in sequential mode.
    pub k: Option<usize>,
    pub groups: usize,
    /// Number of cases scored.
    pub cases: usize,
    pub dropped: usize,
    pub template: ResolvedTemplate,
    pub scoring: Scoring,
    /// Token-level scores, fractions in [0, 1].
    pub metrics: MetricSet,
    /// Exact-match scores, fractions in [0, 1].
    pub generation: MetricSet,
    pub locality_all_positions: LocalityScores,
    /// The unedited model's Rel / T-Gen / M-Gen.
    pub pre_edit: PreEditScores,
    pub timing: Timing,
    pub per_case: Vec<CaseRow>,
}

impl EvalReport {
    pub fn new(info: RunInfo, evaluation: Evaluation) -> Self {
        let s = evaluation.summary;
        Self {
            recipe: info.recipe,
            editor: evaluation.editor,
            model: info.model,
            data: info.data,
            seed: info.seed,
            device: info.device,
            mode: evaluation.mode.name(),
            k: match evaluation.mode {
                EditMode::Single => None,
                EditMode::Sequential { k } => Some(k),
            },
            groups: evaluation.groups,
            cases: evaluation.cases.len(),
            dropped: info.dropped,
            template: info.template,
            scoring: SCORING,
            metrics: s.metrics,
            generation: s.generation,
            locality_all_positions: s.locality_all_positions,
            pre_edit: s.pre_edit,
            timing: evaluation.timing,
            per_case: evaluation.cases,
        }
    }

    /// Writes the report as pretty JSON, atomically (temporary file + rename).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let fail = |reason: String| EvalError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| fail(e.to_string()))?;
        text.push('\n');
        write_atomic(path, text.as_bytes()).map_err(|e| fail(e.to_string()))
    }

    /// [`Self::write_json`], keeping the report when that fails: it is then written under the
    /// system's temporary folder (`mkedsl-report-PID.json`) and the error names both places, so
    /// a wrong `--json` never costs the results of a finished run.
    pub fn write_json_or_keep(&self, path: &Path) -> Result<()> {
        let Err(EvalError::Write { reason, .. }) = self.write_json(path) else {
            return Ok(());
        };
        let kept = std::env::temp_dir().join(format!("mkedsl-report-{}.json", std::process::id()));
        let saved = self.write_json(&kept).is_ok();
        Err(EvalError::ReportKept {
            path: path.to_path_buf(),
            reason,
            kept: saved.then_some(kept),
        })
    }

    /// The metric table for the terminal: provenance, then pre- and post-edit rows in percent.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = match self.k {
            Some(k) => {
                let last = self.cases - k * (self.groups.saturating_sub(1));
                if self.groups > 1 && last != k {
                    format!(
                        "sequential, K = {k} ({} groups, the last of {last})",
                        self.groups
                    )
                } else {
                    format!(
                        "sequential, K = {k} ({} group{})",
                        self.groups,
                        if self.groups == 1 { "" } else { "s" }
                    )
                }
            }
            None => "single".to_string(),
        };
        let seed = self
            .seed
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        let dropped = match self.dropped {
            0 => String::new(),
            1 => "; 1 record dropped for an empty field".into(),
            n => format!("; {n} records dropped for an empty field"),
        };
        let _ = writeln!(out, "recipe    {} · editor {}", self.recipe, self.editor);
        let _ = writeln!(out, "model     {}", self.model);
        let _ = writeln!(
            out,
            "data      {} ({} cases{dropped})",
            self.data, self.cases
        );
        let _ = writeln!(
            out,
            "run       mode {mode} · seed {seed} · device {}",
            self.device
        );
        let _ = writeln!(
            out,
            "template  {:?} ({})",
            self.template.template.as_str(),
            self.template.source
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<22}{:>7}{:>8}{:>8}{:>8}{:>8}",
            "%", "Rel", "T-Gen", "M-Gen", "T-Loc", "M-Loc"
        );
        let pct = |v: f64| format!("{:.1}", 100.0 * v);
        let dash = "–".to_string();
        let mut row = |label: &str, cells: [String; 5]| {
            let _ = write!(out, "{label:<22}");
            for (i, c) in cells.iter().enumerate() {
                let width = if i == 0 { 7 } else { 8 };
                let _ = write!(out, "{c:>width$}");
            }
            let _ = writeln!(out);
        };
        let pre = &self.pre_edit;
        row(
            "pre-edit   token",
            [
                pct(pre.metrics.rel),
                pct(pre.metrics.t_gen),
                pct(pre.metrics.m_gen),
                dash.clone(),
                dash.clone(),
            ],
        );
        row(
            "           exact match",
            [
                pct(pre.generation.rel),
                pct(pre.generation.t_gen),
                pct(pre.generation.m_gen),
                dash.clone(),
                dash.clone(),
            ],
        );
        let all = |m: &MetricSet| {
            [
                pct(m.rel),
                pct(m.t_gen),
                pct(m.m_gen),
                pct(m.t_loc),
                pct(m.m_loc),
            ]
        };
        row("post-edit  token", all(&self.metrics));
        row("           exact match", all(&self.generation));
        row(
            "           EasyEdit loc",
            [
                String::new(),
                String::new(),
                String::new(),
                pct(self.locality_all_positions.t_loc),
                pct(self.locality_all_positions.m_loc),
            ],
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Means over cases. token: Rel/Gen = teacher-forced accuracy of the target tokens (EasyEdit);"
        );
        let _ = writeln!(
            out,
            "Loc = top-1 agreement with the pre-edit model at the answer positions of loc_ans / m_loc_a."
        );
        let _ = writeln!(
            out,
            "exact match: greedy generation = target (Loc: = pre-edit generation). EasyEdit loc: every"
        );
        let _ = writeln!(
            out,
            "position incl. image tokens, top-1 (T-Loc) / top-10 (M-Loc)."
        );
        out
    }
}
