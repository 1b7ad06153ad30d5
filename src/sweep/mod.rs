//! `mkedsl sweep`: one recipe over a grid of its `param` values × seeds, one JSON and one
//! Markdown table with the mean over seeds and a 95 % bootstrap interval per metric.
//!
//! ```text
//! --set lr=1e-3,3e-3 --set rank=8,16 --seeds 3 ──grid──▶ 12 runs ──exec::run (each as `mkedsl run
//!   RECIPE --set … --seed …` would)──▶ SweepFile { points, summary } ──▶ sweep.json, sweep.md
//! ```
//!
//! Every point is compiled against the model before the first run, so a bad value anywhere in the
//! grid is refused (with its `--set` diagnostic) before any time is spent. Runs share the prepare
//! cache, so points that differ only in per-edit values prepare once. On a cluster each run can
//! be its own job (`--task I`, one Slurm array task each) and `--merge` joins the parts into the
//! file one process would have written (examples/slurm/sweep.sh).

pub mod grid;
pub mod output;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::eval::{default_path, DEFAULT_DATA, DEFAULT_MODEL};
use crate::exec::run::{run, RunRequest};
use crate::model::LlavaConfig;
use crate::plan::PlanOptions;
pub use grid::{Axis, Grid, Run};
pub use stats::Estimate;

/// The `format` of a sweep file.
pub const FORMAT: &str = "mkedsl-sweep/1";

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SweepError {
    #[error("cannot read `--set {text}`: {reason}")]
    #[diagnostic(
        code(mkedsl::sweep::set),
        help("write `--set NAME=V1,V2,…`, e.g. `--set lr=1e-3,3e-3`; repeat the flag for another parameter")
    )]
    Set { text: String, reason: String },

    #[error("--seeds must be at least 1")]
    #[diagnostic(
        code(mkedsl::sweep::seeds),
        help("--seeds 3 runs every point with seeds S, S+1, S+2 (S: --seed, else the recipe's `seed`)")
    )]
    Seeds,

    #[error("--task {task} is not a run of this sweep: it has {runs} runs (0–{last})", last = runs.saturating_sub(1))]
    #[diagnostic(
        code(mkedsl::sweep::task),
        help("`mkedsl sweep … --count` prints the number of runs; Slurm: `--array=0-<count − 1>`")
    )]
    Task { task: usize, runs: usize },

    #[error("`{}` is not a part of this sweep: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::sweep::merge),
        help("merge only the `--task` files of one sweep command (same recipe, grid, seeds, model and data)")
    )]
    Merge { path: PathBuf, reason: String },

    #[error("the parts lack run(s) {missing} of the sweep's {runs}")]
    #[diagnostic(
        code(mkedsl::sweep::missing),
        help("rerun the missing array tasks (`mkedsl sweep … --task I`), then merge again")
    )]
    Missing { missing: String, runs: usize },

    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(code(mkedsl::sweep::write), help("check that the folder is writable"))]
    Write { path: PathBuf, reason: String },
}

/// One run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// The run's number ([`grid`]'s numbering).
    pub task: usize,
    /// The grid point (parameter combination) it belongs to.
    pub point: usize,
    /// The parameter values, as JSON numbers where they are numbers.
    pub set: serde_json::Map<String, Value>,
    pub seed: u64,
    /// Wall-clock seconds of the run (load, prepare, edits, evaluation).
    pub time_s: f64,
    /// The run's report, as `mkedsl run --json` writes it.
    pub report: Value,
}

/// The five token-level metrics of one grid point over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEstimates {
    pub rel: Estimate,
    pub t_gen: Estimate,
    pub m_gen: Estimate,
    pub t_loc: Estimate,
    pub m_loc: Estimate,
}

/// One grid point, summarised over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub point: usize,
    pub set: serde_json::Map<String, Value>,
    pub seeds: Vec<u64>,
    pub metrics: MetricEstimates,
    /// Mean wall-clock seconds of one run.
    pub time_s: f64,
}

/// What `mkedsl sweep` writes as JSON (also what `--task` writes, with one point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    pub format: String,
    pub recipe: String,
    pub recipe_file: String,
    pub recipe_sha256: String,
    pub model: String,
    pub data: String,
    /// Cases per run (`--limit`); `None`: every case.
    pub limit: Option<usize>,
    /// `single` or `sequential`, as the runs reported it (empty in files from before sweeps
    /// recorded it).
    #[serde(default)]
    pub mode: String,
    /// Edits per group in sequential mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    pub parameters: Vec<String>,
    pub grid: Grid,
    pub runs: usize,
    /// With `--task`: the one run this part holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<usize>,
    pub points: Vec<PointResult>,
    pub summary: Vec<Summary>,
    pub mkedsl: String,
}

/// Everything `mkedsl sweep` can be told.
#[derive(Debug, Clone)]
pub struct SweepRequest {
    pub recipe: PathBuf,
    /// `--set NAME=V1,V2,…` texts.
    pub sets: Vec<String>,
    /// Seeds per point.
    pub seeds: usize,
    /// The first seed [default: the recipe's `seed`].
    pub first_seed: Option<u64>,
    /// Run only this run of the grid (a Slurm array task).
    pub task: Option<usize>,
    /// Model, data, limit, device, cache, threads… of every run (its recipe, `seed` and
    /// `overrides` are set per run).
    pub template: RunRequest,
    pub verbose: bool,
}

/// The grid with its seeds, after every point has been checked against the model; also the
/// recipe's name.
pub fn prepare(req: &SweepRequest) -> miette::Result<(Grid, String)> {
    if req.seeds == 0 {
        return Err(SweepError::Seeds.into());
    }
    let probe = Grid::new(&req.sets, vec![0])?;
    let model = model_dir(&req.template)?;
    let dims = LlavaConfig::from_path(&model)?.dims();
    let mut name = String::new();
    let mut recipe_seed = 0;
    for point in probe.all() {
        let compiled = crate::compile_with(
            &req.recipe,
            Some(&dims),
            PlanOptions::default(),
            &point.overrides(),
        )
        .map_err(|f| {
            let what = point.overrides().describe();
            f.into_report().wrap_err(if what.is_empty() {
                "the recipe does not check".to_string()
            } else {
                format!("grid point {what} does not check")
            })
        })?;
        name = compiled.program.recipe.name.clone();
        recipe_seed = compiled.program.recipe.seed;
    }
    let first = req.first_seed.unwrap_or(recipe_seed);
    let seeds = (0..req.seeds as u64).map(|i| first + i).collect();
    Ok((Grid::new(&req.sets, seeds)?, name))
}

fn model_dir(template: &RunRequest) -> miette::Result<PathBuf> {
    Ok(match &template.setup.model {
        Some(p) => p.clone(),
        None => default_path(DEFAULT_MODEL, "the embedded model")?,
    })
}

/// Runs the sweep (every run, or the one `--task`).
pub fn sweep(req: &SweepRequest) -> miette::Result<SweepFile> {
    let (grid, name) = prepare(req)?;
    let runs: Vec<Run> = match req.task {
        Some(task) => vec![grid.run(task).ok_or(SweepError::Task {
            task,
            runs: grid.runs(),
        })?],
        None => grid.all().collect(),
    };
    let mut points = Vec::new();
    let (mut mode, mut k) = (String::new(), None);
    for r in &runs {
        if req.verbose {
            eprintln!(
                "sweep: run {} of {}: {}",
                r.task + 1,
                grid.runs(),
                r.describe()
            );
        }
        let started = Instant::now();
        let outcome = run(&RunRequest {
            recipe: req.recipe.clone(),
            seed: Some(r.seed),
            overrides: r.overrides(),
            ..req.template.clone()
        })
        .map_err(|e| e.wrap_err(format!("sweep run {}: {}", r.task, r.describe())))?;
        let time_s = started.elapsed().as_secs_f64();
        mode = outcome.report.mode.to_string();
        k = outcome.report.k;
        let report = serde_json::to_value(&outcome.report)
            .map_err(|e| miette::miette!("cannot serialise a run's report: {e}"))?;
        points.push(PointResult {
            task: r.task,
            point: r.point,
            set: typed_set(&r.set),
            seed: r.seed,
            time_s,
            report,
        });
    }
    let model = model_dir(&req.template)?;
    let data = match &req.template.setup.data {
        Some(p) => p.clone(),
        None => default_path(DEFAULT_DATA, "the embedded dataset")?,
    };
    let mut file = SweepFile {
        format: FORMAT.into(),
        recipe: name,
        recipe_file: req.recipe.display().to_string(),
        recipe_sha256: crate::exec::shard::file_hash(&req.recipe)?,
        model: model.display().to_string(),
        data: data.display().to_string(),
        limit: req.template.setup.limit,
        mode,
        k,
        parameters: grid.axes.iter().map(|a| a.name.clone()).collect(),
        runs: grid.runs(),
        grid,
        task: req.task,
        points,
        summary: Vec::new(),
        mkedsl: env!("CARGO_PKG_VERSION").into(),
    };
    file.summary = summarize(&file.points);
    Ok(file)
}

/// A value as JSON: a number where it reads as one, `true`/`false`, a string's contents, else
/// the text (a symbol).
fn typed_value(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Some(x) = text
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return Value::Number(x);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => Value::String(inner.replace("\\\"", "\"")),
            None => Value::String(text.to_string()),
        },
    }
}

fn typed_set(set: &[(String, String)]) -> serde_json::Map<String, Value> {
    set.iter()
        .map(|(n, v)| (n.clone(), typed_value(v)))
        .collect()
}

/// A token-level metric of a run's report.
fn metric(report: &Value, key: &str) -> f64 {
    report
        .get("metrics")
        .and_then(|m| m.get(key))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// One [`Summary`] per grid point present in `points`, in point order.
pub fn summarize(points: &[PointResult]) -> Vec<Summary> {
    let mut ids: Vec<usize> = points.iter().map(|p| p.point).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mut runs: Vec<&PointResult> = points.iter().filter(|p| p.point == id).collect();
            runs.sort_by_key(|p| p.seed);
            let est = |k: usize, key: &str| {
                let values: Vec<f64> = runs.iter().map(|p| metric(&p.report, key)).collect();
                // Stream key: point and metric, so every interval of a table draws independently.
                stats::estimate(&values, (id * 8 + k) as u64)
            };
            Summary {
                point: id,
                set: runs.first().map(|p| p.set.clone()).unwrap_or_default(),
                seeds: runs.iter().map(|p| p.seed).collect(),
                metrics: MetricEstimates {
                    rel: est(0, "rel"),
                    t_gen: est(1, "t_gen"),
                    m_gen: est(2, "m_gen"),
                    t_loc: est(3, "t_loc"),
                    m_loc: est(4, "m_loc"),
                },
                time_s: stats::mean(&runs.iter().map(|p| p.time_s).collect::<Vec<_>>()),
            }
        })
        .collect()
}

/// Joins the `--task` parts of one sweep into the file the whole sweep writes.
pub fn merge(parts: &[PathBuf]) -> Result<SweepFile, SweepError> {
    let mut files: Vec<(PathBuf, SweepFile)> = Vec::new();
    for path in parts {
        let bad = |reason: String| SweepError::Merge {
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file: SweepFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a sweep file ({e})")))?;
        if file.format != FORMAT {
            return Err(bad(format!(
                "its format is `{}`, not `{FORMAT}`",
                file.format
            )));
        }
        if let Some((first_path, first)) = files.first() {
            let differs = [
                ("recipe", first.recipe_sha256 != file.recipe_sha256),
                ("grid and seeds", first.grid != file.grid),
                ("model", first.model != file.model),
                ("data", first.data != file.data),
                ("case limit", first.limit != file.limit),
                (
                    "editing mode",
                    (&first.mode, first.k) != (&file.mode, file.k),
                ),
            ];
            if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
                return Err(bad(format!(
                    "its {what} differs from that of `{}`",
                    first_path.display()
                )));
            }
        }
        files.push((path.clone(), file));
    }
    let Some((_, first)) = files.first() else {
        return Err(SweepError::Merge {
            path: PathBuf::from("(none)"),
            reason: "no part was named".into(),
        });
    };
    let mut merged = SweepFile {
        task: None,
        points: Vec::new(),
        summary: Vec::new(),
        ..first.clone()
    };
    let mut owner: Vec<Option<&Path>> = vec![None; merged.runs];
    for (path, file) in &files {
        for p in &file.points {
            match owner.get_mut(p.task) {
                None => {
                    return Err(SweepError::Merge {
                        path: path.clone(),
                        reason: format!(
                            "it holds run {}, beyond the sweep's {}",
                            p.task, merged.runs
                        ),
                    })
                }
                Some(Some(other)) => {
                    return Err(SweepError::Merge {
                        path: path.clone(),
                        reason: format!("run {} is also in `{}`", p.task, other.display()),
                    })
                }
                Some(slot) => *slot = Some(path.as_path()),
            }
            merged.points.push(p.clone());
        }
    }
    let missing: Vec<String> = owner
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_none())
        .map(|(i, _)| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(SweepError::Missing {
            missing: missing.join(", "),
            runs: merged.runs,
        });
    }
    merged.points.sort_by_key(|p| p.task);
    merged.summary = summarize(&merged.points);
    Ok(merged)
}
