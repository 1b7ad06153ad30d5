//! The evaluation schedule: cache the unedited model's outputs, let the editor prepare, then edit
//! and score case by case (single) or K cases at a time (sequential), restoring the prepared
//! state after every case or group.

use std::fmt;
use std::time::Instant;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::eval::case::{EvalCase, PreparedCase};
use crate::eval::editor::{EditState, Editor};
use crate::eval::error::{EvalError, Result};
use crate::eval::probe::{observe_with, CaseOutputs, Path, ProbeOptions};
use crate::eval::score::{score_case, summarize, CaseRow, Summary};
use crate::model::{FeatureCache, VisionLanguageModel};

/// How edits are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditMode {
    /// Each case is edited into the prepared model, scored, and undone (MMEdit's one-step editing).
    Single,
    /// `k` consecutive cases are edited one after another into the same model, then all `k` are
    /// scored on the model after the k-th edit, then the group is undone (UniKE's K-step
    /// sequential editing). The last group holds the remaining cases if `k` does not divide them.
    Sequential { k: usize },
}

impl EditMode {
    /// `single` or `sequential`.
    pub fn name(self) -> &'static str {
        match self {
            EditMode::Single => "single",
            EditMode::Sequential { .. } => "sequential",
        }
    }

    /// Cases per group.
    pub fn group_size(self) -> usize {
        match self {
            EditMode::Single => 1,
            EditMode::Sequential { k } => k,
        }
    }

    /// The mode from command-line flags; `k` is only meaningful (and only accepted) in sequential
    /// mode, where it defaults to [`DEFAULT_K`].
    pub fn from_flags(sequential: bool, k: Option<usize>) -> Result<EditMode> {
        match (sequential, k) {
            (false, None) => Ok(EditMode::Single),
            (false, Some(_)) => Err(EvalError::Option {
                reason: "--k applies to sequential editing only".into(),
                help: "add --mode sequential, or drop --k".into(),
            }),
            (true, Some(0)) => Err(EvalError::Option {
                reason: "--k must be at least 1".into(),
                help: "K is the number of edits that accumulate before scoring".into(),
            }),
            (true, k) => Ok(EditMode::Sequential {
                k: k.unwrap_or(DEFAULT_K),
            }),
        }
    }
}

/// K of sequential editing when none is given (UniKE reports K = 10 and 20).
pub const DEFAULT_K: usize = 10;

impl fmt::Display for EditMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditMode::Single => f.write_str("single"),
            EditMode::Sequential { k } => write!(f, "sequential, K = {k}"),
        }
    }
}

/// Everything the schedule can be told.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub mode: EditMode,
    pub probe: ProbeOptions,
    /// Advanced once per case scored before the edits and once per case edited; its length is
    /// set to twice the case count. Hidden by default.
    pub progress: ProgressBar,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            mode: EditMode::Single,
            probe: ProbeOptions {
                batch_size: 16,
                max_new_tokens: 16,
            },
            progress: ProgressBar::hidden(),
        }
    }
}

/// Wall-clock seconds per phase (for benchmarks; never asserted in tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Timing {
    /// Observing the unedited model on every case.
    pub pre_edit_s: f64,
    /// `Editor::prepare`.
    pub prepare_s: f64,
    /// All `Editor::edit` calls.
    pub edit_s: f64,
    /// Observing the edited models (and decoding images).
    pub score_s: f64,
    pub total_s: f64,
}

/// What an evaluation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub editor: String,
    #[serde(skip)]
    pub mode: EditMode,
    pub groups: usize,
    pub summary: Summary,
    pub cases: Vec<CaseRow>,
    pub timing: Timing,
}

/// Edits and scores `cases` with `editor`, starting from `state`.
///
/// The unedited outputs are those of `state` as given, computed before `prepare`; every score
/// that compares with "pre-edit" compares with them (also in sequential mode, EasyEdit #643).
/// On return — success or error — `state` is as `prepare` left it: every edit is undone after its
/// case or group (EasyEdit #659).
pub fn evaluate<M, E>(
    state: &mut EditState<M>,
    editor: &mut E,
    cases: &[EvalCase],
    opts: &EvalOptions,
) -> Result<Evaluation>
where
    M: VisionLanguageModel + Clone,
    E: Editor<M> + ?Sized,
{
    evaluate_with(state, editor, cases, opts, Path::Fast)
}

/// [`evaluate`] with its observations computed on `path`: [`Path::Plain`] is the reference the
/// fast path is tested against. One [`FeatureCache`] serves the whole evaluation, so an image's
/// features are computed once, for the pre-edit and every post-edit observation.
pub fn evaluate_with<M, E>(
    state: &mut EditState<M>,
    editor: &mut E,
    cases: &[EvalCase],
    opts: &EvalOptions,
    path: Path,
) -> Result<Evaluation>
where
    M: VisionLanguageModel + Clone,
    E: Editor<M> + ?Sized,
{
    let mut features = FeatureCache::new();
    let total = Instant::now();
    let mut timing = Timing::default();
    if cases.is_empty() {
        return Err(EvalError::NoCases {
            data: "the list of cases given to the evaluator".into(),
        });
    }
    let k = opts.mode.group_size();
    if k == 0 {
        return Err(EvalError::Option {
            reason: "sequential editing needs K ≥ 1".into(),
            help: "K is the number of edits that accumulate before scoring".into(),
        });
    }
    let progress = &opts.progress;
    progress.set_length(2 * cases.len() as u64);
    progress.set_message("pre-edit");

    let started = Instant::now();
    let mut pre = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(opts.probe.batch_size.max(1)) {
        let prepared = load_all(chunk)?;
        pre.extend(observe_with(
            &state.model,
            &state.adapters,
            &prepared,
            &opts.probe,
            path,
            &mut features,
        )?);
        progress.inc(chunk.len() as u64);
    }
    timing.pre_edit_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    editor
        .prepare(state, cases)
        .map_err(|cause| EvalError::Editor {
            editor: editor.name().to_string(),
            stage: "while preparing".into(),
            cause,
        })?;
    timing.prepare_s = started.elapsed().as_secs_f64();

    progress.set_message(format!("editing ({})", opts.mode));
    let snapshot = state.snapshot();
    let mut rows = Vec::with_capacity(cases.len());
    let mut groups = 0;
    for (group, (chunk, pre)) in cases.chunks(k).zip(pre.chunks(k)).enumerate() {
        let result = edit_and_observe(
            state,
            editor,
            chunk,
            opts,
            (path, &mut features),
            &mut timing,
        );
        state.restore(&snapshot);
        let post = result?;
        for ((case, pre), post) in chunk.iter().zip(pre).zip(&post) {
            rows.push(score_case(case, group, pre, post)?);
        }
        progress.inc(chunk.len() as u64);
        groups += 1;
    }
    progress.finish_and_clear();
    let summary = summarize(&rows)?;
    timing.total_s = total.elapsed().as_secs_f64();
    Ok(Evaluation {
        editor: editor.name().to_string(),
        mode: opts.mode,
        groups,
        summary,
        cases: rows,
        timing,
    })
}

/// Applies the group's edits in order and observes the edited model on all of them.
fn edit_and_observe<M, E>(
    state: &mut EditState<M>,
    editor: &mut E,
    chunk: &[EvalCase],
    opts: &EvalOptions,
    (path, features): (Path, &mut FeatureCache),
    timing: &mut Timing,
) -> Result<Vec<CaseOutputs>>
where
    M: VisionLanguageModel + Clone,
    E: Editor<M> + ?Sized,
{
    let started = Instant::now();
    let prepared = load_all(chunk)?;
    timing.score_s += started.elapsed().as_secs_f64();
    let started = Instant::now();
    for case in &prepared {
        editor
            .edit(state, case)
            .map_err(|cause| EvalError::Editor {
                editor: editor.name().to_string(),
                stage: format!("on case {}", case.case.index),
                cause,
            })?;
    }
    timing.edit_s += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let post = observe_with(
        &state.model,
        &state.adapters,
        &prepared,
        &opts.probe,
        path,
        features,
    )?;
    timing.score_s += started.elapsed().as_secs_f64();
    Ok(post)
}

fn load_all(cases: &[EvalCase]) -> Result<Vec<PreparedCase<'_>>> {
    cases.iter().map(PreparedCase::load).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_flags_reject_what_would_be_ignored() {
        assert_eq!(EditMode::from_flags(false, None).unwrap(), EditMode::Single);
        assert_eq!(
            EditMode::from_flags(true, None).unwrap(),
            EditMode::Sequential { k: DEFAULT_K }
        );
        assert_eq!(
            EditMode::from_flags(true, Some(3)).unwrap(),
            EditMode::Sequential { k: 3 }
        );
        assert!(EditMode::from_flags(false, Some(3)).is_err());
        assert!(EditMode::from_flags(true, Some(0)).is_err());
        assert_eq!(
            EditMode::Sequential { k: 4 }.to_string(),
            "sequential, K = 4"
        );
        assert_eq!(EditMode::Single.group_size(), 1);
    }
}
