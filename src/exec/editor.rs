//! The plan as an [`Editor`]: the evaluator drives the schedule (pre-edit outputs, prepare,
//! edit, score, restore), the executor runs the recipe's steps inside it.

use std::path::PathBuf;
use std::time::Instant;

use crate::eval::{EditMode, EditState, Editor, EvalCase, PreparedCase};
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::Executor;
use crate::exec::input::EditInput;
use crate::exec::output::{self, Artefact, Provenance};

/// Where `--out` artefacts go.
#[derive(Debug, Clone)]
pub struct OutputSink {
    pub dir: PathBuf,
    /// Provenance shared by every artefact (its `cases` are filled per artefact).
    pub provenance: Provenance,
}

/// A recipe's plan, editing case by case.
pub struct PlanEditor {
    pub exec: Executor,
    name: String,
    mode: EditMode,
    out: Option<OutputSink>,
    original: Option<EditState>,
    /// The artefact of the sequential group in progress, with its cases.
    pending: Option<(Artefact, Vec<usize>)>,
    edits: usize,
    /// The run's number of this editor's first group (a shard's first group; 0 unsharded).
    group_offset: usize,
    written: Vec<PathBuf>,
    /// The first `--out` write that failed: the run goes on (its scores are not lost), no
    /// further artefact is attempted, and the error is reported after the table.
    failed: Option<ExecError>,
}

impl PlanEditor {
    pub fn new(exec: Executor, mode: EditMode, out: Option<OutputSink>) -> Self {
        Self {
            name: exec.plan.recipe.name.clone(),
            exec,
            mode,
            out,
            original: None,
            pending: None,
            edits: 0,
            group_offset: 0,
            written: Vec::new(),
            failed: None,
        }
    }

    /// Numbers `--out` groups from `offset` (a shard's first group of the run), so the shards of
    /// a run write the folders the unsharded run would.
    pub fn with_group_offset(mut self, offset: usize) -> Self {
        self.group_offset = offset;
        self
    }

    /// Writes the artefact of an unfinished sequential group; returns every artefact written.
    pub fn finish(&mut self) -> Result<Vec<PathBuf>> {
        if let Some((artefact, cases)) = self.pending.take() {
            let group =
                self.edits.saturating_sub(1) / self.mode.group_size().max(1) + self.group_offset;
            self.write(&artefact, cases, format!("group-{group:04}"))?;
        }
        Ok(std::mem::take(&mut self.written))
    }

    /// The first artefact write that failed, if any (taken).
    pub fn take_write_failure(&mut self) -> Option<ExecError> {
        self.failed.take()
    }

    fn write(&mut self, artefact: &Artefact, cases: Vec<usize>, name: String) -> Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        if let Some(sink) = &self.out {
            let provenance = Provenance {
                cases,
                ..sink.provenance.clone()
            };
            match output::write(&sink.dir.join(name), artefact, &provenance) {
                Ok(path) => self.written.push(path),
                Err(e) => self.failed = Some(e),
            }
        }
        Ok(())
    }

    /// Records the artefact of the edit just made.
    fn record(&mut self, state: &EditState, case: usize) -> Result<()> {
        let Some(original) = &self.original else {
            return Ok(());
        };
        if self.out.is_none() {
            return Ok(());
        }
        let artefact = output::capture(state, original)?;
        match self.mode {
            EditMode::Single => self.write(&artefact, vec![case], format!("case-{case:05}")),
            EditMode::Sequential { k } => {
                let mut cases = self.pending.take().map(|(_, c)| c).unwrap_or_default();
                cases.push(case);
                if self.edits.is_multiple_of(k.max(1)) {
                    let group = (self.edits - 1) / k.max(1) + self.group_offset;
                    self.write(&artefact, cases, format!("group-{group:04}"))
                } else {
                    self.pending = Some((artefact, cases));
                    Ok(())
                }
            }
        }
    }
}

impl Editor for PlanEditor {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, state: &mut EditState, _cases: &[EvalCase]) -> miette::Result<()> {
        self.original = Some(state.clone());
        let started = Instant::now();
        let flops = crate::model::flops::count();
        self.exec.prepare(state)?;
        self.exec.phases.prepare_s += started.elapsed().as_secs_f64();
        self.exec.phases.prepare_flops += crate::model::flops::count() - flops;
        Ok(())
    }

    fn edit(&mut self, state: &mut EditState, case: &PreparedCase) -> miette::Result<()> {
        let started = Instant::now();
        let flops = crate::model::flops::count();
        let input = EditInput::new(state, case)?;
        self.exec.phases.spaces_s += started.elapsed().as_secs_f64();
        self.exec.phases.spaces_flops += crate::model::flops::count() - flops;
        self.exec.edit(state, &input)?;
        self.edits += 1;
        self.record(state, case.case.index)?;
        Ok(())
    }
}
