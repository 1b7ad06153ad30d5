//! `mkedsl ablate`: a paper's own ablation run the way the paper ran it — the arms (recipes that
//! differ in one component) at matched reliability, over several seeds, with 95 % bootstrap
//! intervals on every mean and on every arm's difference from the control (the first arm).
//!
//! ```text
//! ARMS + tuning cases ──tune::choose (one rule, each arm)──▶ each arm's learning rate
//!      + data × seeds ──exec::run (as `mkedsl run ARM --set lr=… --seed …`)──▶ per-case scores
//!      ──seeds averaged per case, cases resampled──▶ AblationFile ──▶ ablation.json, ablation.md
//! ```
//!
//! Intervals resample **cases** (each case's score averaged over the seeds first), because the
//! cases are the larger source of spread and the claims are about them; the differences are
//! paired (the same case under two arms), which is what makes a small effect visible at all.

pub mod table;
pub mod tune;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::eval::{default_path, CaseRow, DEFAULT_MODEL};
use crate::exec::run::{run, RunRequest};
use crate::model::LlavaConfig;
use crate::plan::PlanOptions;
use crate::sema::Overrides;
use crate::sweep::stats::{estimate_clustered, Estimate};
pub use tune::{Choice, Outcome, Trial};

/// The `format` of an ablation file.
pub const FORMAT: &str = "mkedsl-ablation/1";

/// How each arm's tuned parameter is chosen.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// The `param` the rule sets (a `Float`; its declared default anchors the grid).
    pub param: String,
    /// Rel every tuning file must reach.
    pub target: f64,
    /// Tuning cases: a draw other than the evaluation's (examples/data/tuning).
    pub datasets: Vec<PathBuf>,
    /// Cases per tuning file; `None`: all.
    pub limit: Option<usize>,
}

/// Everything `mkedsl ablate` can be told.
#[derive(Debug, Clone)]
pub struct AblateRequest {
    /// The arms; the first is the control every difference is taken against.
    pub arms: Vec<PathBuf>,
    /// Evaluation files, each scored on its own (or, under `interleave`, all in one sequence).
    pub datasets: Vec<PathBuf>,
    /// Run the files as one cross-task sequence, their cases taken in turn (UniKE §4.4).
    pub interleave: bool,
    /// `NAME=VALUE` settings, each applied to every arm that declares `param NAME` (an ablation
    /// at other settings than the arms' defaults, such as a calibrated budget).
    pub sets: Vec<String>,
    /// `None`: every arm at its declared values.
    pub tuning: Option<Tuning>,
    pub seeds: Vec<u64>,
    /// Model, case limit, device, mode, cache… of every run (recipe, data, seed and overrides
    /// are set per run).
    pub template: RunRequest,
    pub verbose: bool,
}

/// The six scores of a cell, each a mean with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub rel: Estimate,
    pub t_gen: Estimate,
    pub m_gen: Estimate,
    pub t_loc: Estimate,
    pub m_loc: Estimate,
    /// EasyEdit's all-positions M-Loc (top-10 overlap at every position, image tokens too).
    pub m_loc_all: Estimate,
}

/// The names of [`Scores`]' fields, in order, with their column headers.
pub const METRICS: [(&str, &str); 6] = [
    ("rel", "Rel"),
    ("t_gen", "T-Gen"),
    ("m_gen", "M-Gen"),
    ("t_loc", "T-Loc"),
    ("m_loc", "M-Loc"),
    ("m_loc_all", "M-Loc all-pos"),
];

impl Scores {
    pub fn get(&self, metric: &str) -> Option<&Estimate> {
        Some(match metric {
            "rel" => &self.rel,
            "t_gen" => &self.t_gen,
            "m_gen" => &self.m_gen,
            "t_loc" => &self.t_loc,
            "m_loc" => &self.m_loc,
            "m_loc_all" => &self.m_loc_all,
            _ => return None,
        })
    }
}

/// One case's six scores (one seed).
fn case_scores(row: &CaseRow) -> [f64; 6] {
    let m = &row.metrics;
    [
        m.rel,
        m.t_gen,
        m.m_gen,
        m.t_loc,
        m.m_loc,
        row.locality_all_positions.m_loc,
    ]
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    pub file: String,
    pub sha256: String,
    /// The tuned parameter's value and how it was found (absent with `--no-tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Choice>,
    /// The `--set NAME=VALUE` settings this arm declares and received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    /// Seconds spent tuning this arm and running it.
    pub tune_s: f64,
    pub run_s: f64,
}

/// One arm on one evaluation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub arm: usize,
    pub data: String,
    pub cases: usize,
    pub scores: Scores,
    /// The arm minus the control, paired by case (absent for the control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Scores>,
    /// Each seed's mean scores, to show the spread across seeds.
    pub per_seed: Vec<SeedScores>,
    /// Per case (in data order), each seed's six scores: what the intervals resample.
    pub per_case: Vec<Vec<[f64; 6]>>,
}

/// One seed's means over the cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedScores {
    pub seed: u64,
    pub means: [f64; 6],
}

/// What `mkedsl ablate` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationFile {
    pub format: String,
    pub model: String,
    pub device: String,
    /// `single` or `sequential` (as the runs reported it).
    pub mode: String,
    /// Edits per group in sequential mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Cases per evaluation file (`--limit`); `None`: all.
    pub limit: Option<usize>,
    pub seeds: Vec<u64>,
    pub datasets: Vec<String>,
    /// Whether the files ran as one sequence, their cases taken in turn.
    #[serde(default)]
    pub interleaved: bool,
    /// The `--set` settings as given (each arm lists those it received).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    /// The tuning rule as applied (absent with `--no-tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningInfo>,
    pub arms: Vec<Arm>,
    /// The arm every other is compared with: the first, unless re-read with another
    /// ([`with_control`]).
    #[serde(default)]
    pub control: usize,
    pub cells: Vec<Cell>,
    pub interval: String,
    pub mkedsl: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningInfo {
    pub param: String,
    pub target: f64,
    pub datasets: Vec<String>,
    pub limit: Option<usize>,
    pub rule: String,
}

/// How the intervals are made, stated in every file and table: over cases for single edits,
/// over whole sequences when edits accumulate (the cases of one sequence are scored after the
/// same edits, so they are not independent draws).
fn interval(sequence: Option<usize>, cells: &[Cell]) -> String {
    let Some(k) = sequence else {
        return "95 % percentile bootstrap over cases (10,000 resamples; each case's score \
            averaged over the seeds first; differences paired by case)"
            .into();
    };
    let controls = cells.iter().filter(|c| c.arm == 0);
    let counts: Vec<String> = controls
        .map(|c| {
            let name = table::data_name(&c.data);
            format!("{} in {name}", c.cases.div_ceil(k.max(1)))
        })
        .collect();
    format!(
        "95 % percentile bootstrap over sequences of up to {k} edits ({}; 10,000 resamples of \
         whole sequences; each case's score averaged over the seeds first; differences paired \
         by sequence; no interval from a single sequence)",
        counts.join(", ")
    )
}

const RULE: &str = "the smallest value on a ×3 grid (…, 0.3, 1, 3, 10, … × the arm's declared \
    default) at which Rel reaches the target on every tuning file";

/// Why an ablation cannot run.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AblateError {
    #[error("an ablation needs at least two arms; {0} given")]
    #[diagnostic(
        code(mkedsl::ablate::arms),
        help("name the control first, then each arm: `mkedsl ablate CONTROL.edit ARM.edit …`")
    )]
    TooFewArms(usize),

    #[error("`{file}` declares no `param {param}` for the tuning rule to set")]
    #[diagnostic(
        code(mkedsl::ablate::param),
        help("declare it (e.g. `param lr = 1e-3` and `adam(lr: lr)`), name another with --tune, or pass --no-tune")
    )]
    NoParam { file: String, param: String },

    #[error("`param {param}` of `{file}` is `{value}`, not a number the tuning grid can scale")]
    #[diagnostic(
        code(mkedsl::ablate::param_type),
        help("tune a positive Float parameter such as a learning rate")
    )]
    NotANumber {
        file: String,
        param: String,
        value: String,
    },

    #[error("--seeds must be at least 1")]
    #[diagnostic(
        code(mkedsl::ablate::seeds),
        help("--seeds 3 runs every arm with seeds S, S+1, S+2")
    )]
    Seeds,

    #[error("--set `{0}` is not NAME=VALUE")]
    #[diagnostic(
        code(mkedsl::ablate::set),
        help("write it as the recipe's parameter name, `=`, and a value: --set budget=0.05")
    )]
    SetSyntax(String),

    #[error("--set `{name}`: no arm declares `param {name}`")]
    #[diagnostic(
        code(mkedsl::ablate::set_unused),
        help("set a parameter at least one arm declares; `mkedsl plan ARM.edit` lists them")
    )]
    SetUnused { name: String },

    #[error("--set `{name}` fixes the parameter the tuning rule chooses")]
    #[diagnostic(
        code(mkedsl::ablate::set_tuned),
        help("drop the --set, or pass --no-tune to run every arm at the value set")
    )]
    SetTuned { name: String },

    #[error("no data file at `{0}`")]
    #[diagnostic(
        code(mkedsl::ablate::data),
        help("--data and --tuning-data name MMEdit JSON files (E-VQA / E-IC schema)")
    )]
    Missing(String),

    #[error("the arms scored different cases of `{data}` ({reason})")]
    #[diagnostic(
        code(mkedsl::ablate::cases),
        help(
            "every arm must run on the same cases; do not mix recipes whose data handling differs"
        )
    )]
    Cases { data: String, reason: String },
}

/// What [`check`] found: every arm compiled with its settings, before any run.
pub struct Checked {
    model: PathBuf,
    /// Per arm: the recipe's name, the tuning rule's anchor, the `--set` settings it declares.
    names: Vec<String>,
    anchors: Vec<Option<f64>>,
    arm_sets: Vec<Vec<String>>,
}

impl Checked {
    /// The evaluation runs the ablation will make: arms × cells × seeds (tuning runs aside).
    pub fn runs(&self, req: &AblateRequest) -> usize {
        self.names.len() * units(req).len() * req.seeds.len()
    }
}

/// Everything an ablation can be refused for before its first run: the arms' count, the seeds,
/// every arm compiled against the model with the settings it receives (and declaring the tuned
/// parameter), every `--set` used by some arm, every data and tuning file present.
pub fn check(req: &AblateRequest) -> miette::Result<Checked> {
    if req.arms.len() < 2 {
        return Err(AblateError::TooFewArms(req.arms.len()).into());
    }
    if req.seeds.is_empty() {
        return Err(AblateError::Seeds.into());
    }
    let model = match &req.template.setup.model {
        Some(p) => p.clone(),
        None => default_path(DEFAULT_MODEL, "the embedded model")?,
    };
    let dims = LlavaConfig::from_path(&model)?.dims();
    let sets = parse_sets(req)?;
    let mut anchors = Vec::new();
    let mut names = Vec::new();
    let mut arm_sets = Vec::new();
    for arm in &req.arms {
        let compile = |overrides: &Overrides| {
            crate::compile_with(arm, Some(&dims), PlanOptions::default(), overrides)
                .map_err(|f| f.into_report())
        };
        let mut compiled = compile(&Overrides::default())?;
        let mine: Vec<String> = sets
            .iter()
            .filter(|(name, _)| compiled.params.iter().any(|p| &p.name == name))
            .map(|(_, set)| set.clone())
            .collect();
        // Checked again with the settings it receives.
        if !mine.is_empty() {
            compiled = compile(&Overrides::new(mine.clone()))?;
        }
        arm_sets.push(mine);
        names.push(compiled.program.recipe.name.clone());
        anchors.push(match &req.tuning {
            None => None,
            Some(t) => Some(anchor(arm, &t.param, &compiled.params)?),
        });
    }
    if let Some((name, _)) = sets
        .iter()
        .find(|(_, set)| !arm_sets.iter().flatten().any(|s| s == set))
    {
        return Err(AblateError::SetUnused { name: name.clone() }.into());
    }
    let tuning_files = req.tuning.iter().flat_map(|t| &t.datasets);
    if let Some(missing) = req
        .datasets
        .iter()
        .chain(tuning_files)
        .find(|d| !d.is_file())
    {
        return Err(AblateError::Missing(missing.display().to_string()).into());
    }
    Ok(Checked {
        model,
        names,
        anchors,
        arm_sets,
    })
}

/// Runs the ablation.
pub fn ablate(req: &AblateRequest) -> miette::Result<AblationFile> {
    let Checked {
        model,
        names,
        anchors,
        arm_sets,
    } = check(req)?;
    let units = units(req);
    let mut arms = Vec::new();
    let mut runs: Vec<Vec<Vec<Vec<CaseRow>>>> = Vec::new(); // arm → unit → seed → rows
    let (mut device, mut mode, mut k) = (String::new(), String::new(), None);
    for (i, arm_file) in req.arms.iter().enumerate() {
        let started = Instant::now();
        let choice = match (&req.tuning, anchors[i]) {
            (Some(t), Some(a)) => Some(tune_arm(req, arm_file, &arm_sets[i], t, a)?),
            _ => None,
        };
        let tune_s = started.elapsed().as_secs_f64();
        let mut settings = arm_sets[i].clone();
        if let (Some(t), Some(c)) = (&req.tuning, &choice) {
            settings.push(format!("{}={}", t.param, number(c.value)));
        }
        let overrides = Overrides::new(settings);
        let started = Instant::now();
        let mut per_data = Vec::new();
        for unit in &units {
            let mut per_seed = Vec::new();
            for &seed in &req.seeds {
                if req.verbose {
                    eprintln!(
                        "ablate: {} on {} seed {seed} {}",
                        arm_file.display(),
                        label(unit),
                        overrides.describe()
                    );
                }
                let outcome = run(&one_run(req, arm_file, unit, seed, &overrides, false))?;
                device = outcome.report.device.clone();
                mode = outcome.report.mode.to_string();
                k = outcome.report.k;
                per_seed.push(outcome.report.per_case);
            }
            per_data.push(per_seed);
        }
        runs.push(per_data);
        arms.push(Arm {
            name: names[i].clone(),
            file: arm_file.display().to_string(),
            sha256: crate::exec::shard::file_hash(arm_file)?,
            choice,
            sets: arm_sets[i].clone(),
            tune_s,
            run_s: started.elapsed().as_secs_f64(),
        });
    }
    let sequence = sequence(&mode, k);
    let mut cells = Vec::new();
    for (d, unit) in units.iter().enumerate() {
        let data = label(unit);
        // Every seed of one arm scored the same cases (`case_matrix` checks); the control's
        // first seed gives the count every arm must match.
        let control_cases = runs[0][d][0].len();
        for (a, arm_runs) in runs.iter().enumerate() {
            let matrix = case_matrix(&arm_runs[d], &data)?;
            if matrix.len() != control_cases {
                return Err(AblateError::Cases {
                    data: data.clone(),
                    reason: format!(
                        "{} cases against the control's {control_cases}",
                        matrix.len()
                    ),
                }
                .into());
            }
            cells.push(Cell {
                arm: a,
                data: data.clone(),
                cases: matrix.len(),
                scores: summarise(&matrix, None, sequence, stream_key(d, a)),
                delta: None,
                per_seed: seed_means(&matrix, &req.seeds),
                per_case: matrix,
            });
        }
    }
    compare(&mut cells, 0, sequence);
    Ok(AblationFile {
        format: FORMAT.into(),
        model: model.display().to_string(),
        device,
        mode,
        k,
        limit: req.template.setup.limit,
        seeds: req.seeds.clone(),
        datasets: req
            .datasets
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
        interleaved: req.interleave,
        sets: req.sets.clone(),
        tuning: req.tuning.as_ref().map(|t| TuningInfo {
            param: t.param.clone(),
            target: t.target,
            datasets: t.datasets.iter().map(|d| d.display().to_string()).collect(),
            limit: t.limit,
            rule: RULE.into(),
        }),
        arms,
        control: 0,
        interval: interval(sequence, &cells),
        cells,
        mkedsl: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Each cell's paired difference from the `control` arm's cell of the same data (none for the
/// control's own). The bootstrap streams are keyed by data and arm, so a difference is the same
/// whichever run or re-reading computes it.
fn compare(cells: &mut [Cell], control: usize, sequence: Option<usize>) {
    let mut labels: Vec<&str> = Vec::new();
    for cell in cells.iter() {
        if !labels.contains(&cell.data.as_str()) {
            labels.push(&cell.data);
        }
    }
    let deltas: Vec<Option<Scores>> = cells
        .iter()
        .map(|cell| {
            let twin = cells
                .iter()
                .find(|t| t.arm == control && t.data == cell.data)?;
            let d = labels.iter().position(|l| *l == cell.data)?;
            (cell.arm != control).then(|| {
                let key = stream_key(d, cell.arm) + 8;
                summarise(&cell.per_case, Some(&twin.per_case), sequence, key)
            })
        })
        .collect();
    for (cell, delta) in cells.iter_mut().zip(deltas) {
        cell.delta = delta;
    }
}

/// The bootstrap stream of the cell of data `d` and `arm`: its scores draw from this key, its
/// difference from the control from key + 8, each metric from key + m.
fn stream_key(d: usize, arm: usize) -> u64 {
    ((d * 64 + arm) * 16) as u64
}

/// The number of cases per resampled unit: the group size K in sequential editing (the cases
/// of one sequence are scored after the same edits), none (single cases) otherwise.
fn sequence(mode: &str, k: Option<usize>) -> Option<usize> {
    if mode == "sequential" {
        k
    } else {
        None
    }
}

impl AblationFile {
    /// Edits per sequence when the runs edited sequentially: the intervals' unit.
    pub fn sequence(&self) -> Option<usize> {
        sequence(&self.mode, self.k)
    }
}

/// The ablation re-read with another arm as the control: the same runs and scores, every other
/// arm's paired difference from `control` (ELoRA's M5 against M2 from the one Table 2 run).
pub fn with_control(file: &AblationFile, control: usize) -> AblationFile {
    let mut file = file.clone();
    let sequence = file.sequence();
    compare(&mut file.cells, control, sequence);
    file.control = control;
    file
}

/// The tuned parameter's declared default: the grid's anchor.
fn anchor(
    arm: &std::path::Path,
    param: &str,
    params: &[crate::sema::BoundParam],
) -> miette::Result<f64> {
    let file = arm.display().to_string();
    let bound = params
        .iter()
        .find(|p| p.name == param)
        .ok_or_else(|| AblateError::NoParam {
            file: file.clone(),
            param: param.into(),
        })?;
    match bound.default.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(AblateError::NotANumber {
            file,
            param: param.into(),
            value: bound.default.clone(),
        }
        .into()),
    }
}

/// The tuning rule on one arm: the first seed, every tuning file, the lowest Rel counts.
fn tune_arm(
    req: &AblateRequest,
    arm: &std::path::Path,
    sets: &[String],
    tuning: &Tuning,
    anchor: f64,
) -> miette::Result<Choice> {
    let seed = req.seeds[0];
    tune::choose(anchor, tuning.target, |value| {
        let mut settings = sets.to_vec();
        settings.push(format!("{}={}", tuning.param, number(value)));
        let overrides = Overrides::new(settings);
        let mut lowest = f64::INFINITY;
        for data in &tuning.datasets {
            let mut request = one_run(req, arm, std::slice::from_ref(data), seed, &overrides, true);
            request.setup.limit = tuning.limit;
            match run(&request) {
                Ok(outcome) => lowest = lowest.min(outcome.report.metrics.rel),
                Err(e) if diverged(&e) => {
                    if req.verbose {
                        eprintln!(
                            "ablate: tuning {} {}: diverged",
                            arm.display(),
                            overrides.describe()
                        );
                    }
                    return Ok(Outcome::Diverged);
                }
                Err(e) => return Err(e),
            }
        }
        if req.verbose {
            eprintln!(
                "ablate: tuning {} {}: Rel {:.1} %",
                arm.display(),
                overrides.describe(),
                100.0 * lowest
            );
        }
        Ok::<Outcome, miette::Report>(Outcome::Rel(lowest))
    })
}

/// Whether a run stopped because its optimisation ran away
/// ([`ExecError::Diverged`](crate::exec::ExecError::Diverged), found by
/// its code along the diagnostic sources: the editor and the step wrap it): for the tuning rule
/// a failing value, not a failed ablation.
fn diverged(error: &miette::Report) -> bool {
    let mut next: Option<&dyn miette::Diagnostic> = Some(error.as_ref());
    while let Some(d) = next {
        if d.code().is_some_and(|c| c.to_string() == DIVERGED) {
            return true;
        }
        next = d.diagnostic_source();
    }
    false
}

/// The code of [`ExecError::Diverged`](crate::exec::ExecError::Diverged).
const DIVERGED: &str = "mkedsl::exec::diverged";

/// `--set` parsed into (name, setting); refused when malformed or when it fixes the tuned
/// parameter.
fn parse_sets(req: &AblateRequest) -> miette::Result<Vec<(String, String)>> {
    req.sets
        .iter()
        .map(|set| {
            let name = match set.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                    name.trim().to_string()
                }
                _ => return Err(AblateError::SetSyntax(set.clone()).into()),
            };
            if req.tuning.as_ref().is_some_and(|t| t.param == name) {
                return Err(AblateError::SetTuned { name }.into());
            }
            Ok((name, set.clone()))
        })
        .collect()
}

/// What one cell runs: each file alone, or all files as one interleaved sequence.
fn units(req: &AblateRequest) -> Vec<Vec<PathBuf>> {
    if req.interleave {
        vec![req.datasets.clone()]
    } else {
        req.datasets.iter().map(|d| vec![d.clone()]).collect()
    }
}

/// A unit's name in cells and messages: its files joined by ` + `.
fn label(unit: &[PathBuf]) -> String {
    unit.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The request of one run of `arm` on `unit` (one file, or files interleaved in one sequence).
fn one_run(
    req: &AblateRequest,
    arm: &std::path::Path,
    unit: &[PathBuf],
    seed: u64,
    overrides: &Overrides,
    quiet: bool,
) -> RunRequest {
    let mut setup = req.template.setup.clone();
    setup.data = unit.first().cloned();
    setup.extra_data = unit[1..].to_vec();
    setup.interleave = unit.len() > 1;
    RunRequest {
        recipe: arm.to_path_buf(),
        setup,
        seed: Some(seed),
        overrides: overrides.clone(),
        verbose: req.verbose && !quiet,
        json: None,
        out: None,
        ..req.template.clone()
    }
}

/// A value as `--set` and tables write it: four significant digits, no trailing zeros
/// (`1.5e-3`, `1e1`).
pub fn number(value: f64) -> String {
    let text = format!("{value:.3e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exp}")
        }
        None => text,
    }
}

/// Per case (in data order), each seed's six scores; the seeds must have scored the same cases.
fn case_matrix(seeds: &[Vec<CaseRow>], data: &str) -> miette::Result<Vec<Vec<[f64; 6]>>> {
    let first = &seeds[0];
    for other in &seeds[1..] {
        let same =
            other.len() == first.len() && other.iter().zip(first).all(|(a, b)| a.index == b.index);
        if !same {
            return Err(AblateError::Cases {
                data: data.to_string(),
                reason: "two seeds kept different records".into(),
            }
            .into());
        }
    }
    Ok((0..first.len())
        .map(|c| seeds.iter().map(|rows| case_scores(&rows[c])).collect())
        .collect())
}

/// Each case's seed-mean of metric `m`.
fn case_means(matrix: &[Vec<[f64; 6]>], m: usize) -> Vec<f64> {
    matrix
        .iter()
        .map(|seeds| seeds.iter().map(|s| s[m]).sum::<f64>() / seeds.len() as f64)
        .collect()
}

/// The six estimates of a cell, or of its paired difference from `control`; with `sequence`,
/// the intervals resample whole sequences of that many consecutive cases.
fn summarise(
    matrix: &[Vec<[f64; 6]>],
    control: Option<&[Vec<[f64; 6]>]>,
    sequence: Option<usize>,
    key: u64,
) -> Scores {
    let est = |m: usize| {
        let mut values = case_means(matrix, m);
        if let Some(control) = control {
            for (v, c) in values.iter_mut().zip(case_means(control, m)) {
                *v -= c;
            }
        }
        estimate_clustered(&values, sequence.unwrap_or(1), key + m as u64)
    };
    Scores {
        rel: est(0),
        t_gen: est(1),
        m_gen: est(2),
        t_loc: est(3),
        m_loc: est(4),
        m_loc_all: est(5),
    }
}

fn seed_means(matrix: &[Vec<[f64; 6]>], seeds: &[u64]) -> Vec<SeedScores> {
    seeds
        .iter()
        .enumerate()
        .map(|(s, &seed)| {
            let mut means = [0.0; 6];
            for case in matrix {
                for (m, v) in means.iter_mut().enumerate() {
                    *v += case[s][m] / matrix.len().max(1) as f64;
                }
            }
            SeedScores { seed, means }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short_and_parse_back() {
        for (v, text) in [
            (1.5e-3, "1.5e-3"),
            (10.0, "1e1"),
            (5e-4 * 3.0, "1.5e-3"),
            (0.3, "3e-1"),
        ] {
            assert_eq!(number(v), text);
            assert!((text.parse::<f64>().unwrap() - v).abs() < 1e-9 * v);
        }
    }

    #[test]
    fn a_divergence_is_found_under_the_editor_and_the_step() {
        use crate::eval::EvalError;
        use crate::exec::ExecError;
        let diverged_step = ExecError::Diverged {
            what: "w".into(),
            moved: 1e3,
            reference: 1.0,
            train_step: 3,
            steps: 50,
        };
        let wrap = |cause: miette::Report| -> miette::Report {
            EvalError::Editor {
                editor: "E".into(),
                stage: "on case 0".into(),
                cause: ExecError::Step {
                    step: "#2".into(),
                    op: "train",
                    at: "x.edit:1:1".into(),
                    case: " on case 0".into(),
                    cause,
                }
                .into(),
            }
            .into()
        };
        assert!(diverged(&wrap(diverged_step.into())));
        assert!(!diverged(&wrap(miette::miette!("something else"))));
    }

    #[test]
    fn in_sequences_the_interval_resamples_whole_sequences() {
        // Four cases, one seed. As single edits they are four draws; as one sequence of four
        // there is nothing to resample; as two sequences of two the draws are their means.
        let arm: Vec<Vec<[f64; 6]>> = [1.0, 1.0, 0.0, 1.0].iter().map(|&x| vec![[x; 6]]).collect();
        let single = summarise(&arm, None, None, 3);
        assert!(single.rel.lo.is_some());
        let one = summarise(&arm, None, Some(4), 3);
        assert_eq!((one.rel.mean, one.rel.lo, one.rel.hi), (0.75, None, None));
        let two = summarise(&arm, None, Some(2), 3);
        let (lo, hi) = (two.rel.lo.unwrap(), two.rel.hi.unwrap());
        // Resampling the sequence means {1, 0.5}: the means lie in {0.5, 0.75, 1}.
        assert!([0.5, 0.75, 1.0].contains(&lo) && [0.5, 0.75, 1.0].contains(&hi));
        assert_eq!((lo, hi), (0.5, 1.0));
    }

    #[test]
    fn a_difference_is_paired_by_case() {
        // Two cases, two seeds. Arm: case 0 scores 1 and 1, case 1 scores 0 and 1; control: 1
        // and 0 everywhere, so the per-case differences are 0 and 0.5 − 0 = 0.5, mean 0.25.
        let row = |x: f64| [x; 6];
        let arm = vec![vec![row(1.0), row(1.0)], vec![row(0.0), row(1.0)]];
        let control = vec![vec![row(1.0), row(1.0)], vec![row(0.0), row(0.0)]];
        let d = summarise(&arm, Some(&control), None, 0);
        assert!((d.rel.mean - 0.25).abs() < 1e-12);
        let (lo, hi) = (d.rel.lo.unwrap(), d.rel.hi.unwrap());
        // Resampling two values {0, 0.5}: the means lie in {0, 0.25, 0.5}.
        assert!(lo >= 0.0 && hi <= 0.5, "{lo} {hi}");
        let s = seed_means(&arm, &[3, 4]);
        assert_eq!(s[0].means[0], 0.5);
        assert_eq!(s[1].means[0], 1.0);
    }
}
