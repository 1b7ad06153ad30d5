//! The evaluation's report: what was run (model, data, recipe, seed, device, mode, cases), the
//! scores, per-case rows; rendered as a table for the terminal and as JSON for files.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::data::files::write_atomic;
use crate::data::{Dataset, FieldTemplates, MissingImage};
use crate::eval::calibration::{FilterMean, PerturbMean};
use crate::eval::easyedit::{EasyEditKeys, EasyEditScores, KEYS};
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
    /// Records the loader skipped for an empty `alt`, over every data file.
    pub dropped: usize,
    /// What each data file gave.
    pub data_files: Vec<DataFileInfo>,
    /// The template style of each formatted field.
    pub field_templates: FieldTemplates,
}

/// What one data file gave: records, those considered (`--limit`, EasyEdit's `size`), the cases
/// kept, and those skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DataFileInfo {
    pub path: String,
    pub records: usize,
    pub considered: usize,
    pub cases: usize,
    /// Records skipped for an empty `alt` (EasyEdit's rule).
    pub empty_alt: usize,
    /// Records skipped because an image is missing: record index, field, path.
    pub missing_images: Vec<(usize, String, String)>,
}

impl DataFileInfo {
    pub fn of(d: &Dataset) -> Self {
        let missing =
            |m: &MissingImage| (m.index, m.field.to_string(), m.image.display().to_string());
        DataFileInfo {
            path: d.path.display().to_string(),
            records: d.records,
            considered: d.considered,
            cases: d.cases.len(),
            empty_alt: d.dropped.len(),
            missing_images: d.missing.iter().map(missing).collect(),
        }
    }
}

/// Where a result came from, for someone reproducing it: the program, the exact inputs (by
/// hash), the numeric settings, and where the time went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// mkedsl's version (`CARGO_PKG_VERSION`).
    pub mkedsl_version: String,
    /// SHA-256 of the recipe file's bytes; `None` for `mkedsl eval`.
    pub recipe_sha256: Option<String>,
    /// SHA-256 of the checkpoint (config, tokenizer, processor, template, weights; see
    /// `mkedsl::exec::cache::model_hash`).
    pub model_sha256: String,
    /// SHA-256 of each data file's bytes, in order.
    pub data_sha256: Vec<String>,
    /// The dtype the frozen weights were held and multiplied in.
    pub dtype: String,
    pub device: String,
    /// CPU threads of the tensor kernels; `None` when not set.
    pub threads: Option<usize>,
    pub seed: Option<u64>,
    pub phases: PhaseTimes,
}

/// Wall-clock seconds per phase of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PhaseTimes {
    /// Scoring the unedited model on every case.
    pub pre_edit_s: f64,
    /// The editor's one-time preparation (statistics, caches).
    pub prepare_s: f64,
    /// All edits (for recipes: knowledge spaces + optimisation).
    pub edit_s: f64,
    /// Of `edit_s`: building subspaces / covariances per edit (recipes only).
    pub spaces_s: Option<f64>,
    /// Of `edit_s`: the optimisation steps (recipes only).
    pub optimise_s: Option<f64>,
    /// Scoring the edited models.
    pub score_s: f64,
    pub total_s: f64,
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
    /// What each data file gave (records, considered, kept, skipped).
    pub data_files: Vec<DataFileInfo>,
    pub template: ResolvedTemplate,
    /// The template style of each formatted field (`--field-template`).
    pub field_templates: FieldTemplates,
    pub scoring: Scoring,
    /// Token-level scores, fractions in [0, 1].
    pub metrics: MetricSet,
    /// Exact-match scores, fractions in [0, 1].
    pub generation: MetricSet,
    pub locality_all_positions: LocalityScores,
    /// The unedited model's Rel / T-Gen / M-Gen.
    pub pre_edit: PreEditScores,
    /// The means under EasyEdit's names (`pre` and `post`).
    pub easyedit: EasyEditScores,
    /// Which of our scores each EasyEdit name equals.
    pub easyedit_keys: EasyEditKeys,
    pub timing: Timing,
    /// Set by the command that ran (version, hashes, dtype, threads, phases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Each knowledge space's filter, means over cases (from `per_case`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub knowledge: Vec<FilterMean>,
    /// Each `perturb`'s resolved scales, means over cases (from `per_case`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub perturbations: Vec<PerturbMean>,
    /// Each null space's dimension and the share of preserved energy inside it, per layer
    /// (recipes with null spaces only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub null_spaces: Vec<crate::exec::leak::NullSpaceReport>,
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
            data_files: info.data_files,
            template: info.template,
            field_templates: info.field_templates,
            scoring: SCORING,
            metrics: s.metrics,
            generation: s.generation,
            locality_all_positions: s.locality_all_positions,
            pre_edit: s.pre_edit,
            easyedit: EasyEditScores::of(
                &s.metrics,
                &s.locality_all_positions,
                &s.pre_edit.metrics,
            ),
            easyedit_keys: KEYS,
            timing: evaluation.timing,
            provenance: None,
            knowledge: FilterMean::of(evaluation.cases.iter().map(|c| c.knowledge.as_slice())),
            perturbations: PerturbMean::of(
                evaluation.cases.iter().map(|c| c.perturbations.as_slice()),
            ),
            null_spaces: Vec::new(),
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
        let mut dropped = match self.dropped {
            0 => String::new(),
            1 => "; 1 record skipped for an empty alt".into(),
            n => format!("; {n} records skipped for an empty alt"),
        };
        let missing: usize = self.data_files.iter().map(|d| d.missing_images.len()).sum();
        match missing {
            0 => {}
            1 => dropped.push_str("; 1 record skipped for a missing image"),
            n => dropped.push_str(&format!("; {n} records skipped for a missing image")),
        }
        let limited: Vec<String> = self
            .data_files
            .iter()
            .filter(|d| d.considered < d.records)
            .map(|d| format!("{} of {}", d.considered, d.records))
            .collect();
        if !limited.is_empty() {
            dropped.push_str(&format!(
                "; first {} records considered",
                limited.join(", ")
            ));
        }
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
        if !self.field_templates.is_default() {
            let _ = writeln!(out, "fields    {}", self.field_templates);
        }
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
