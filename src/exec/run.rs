//! `mkedsl run`'s library entry point: recipe file in, metric table out.
//!
//! Everything the recipe and the model's `config.json` can tell is checked before a tensor
//! exists: the recipe is compiled with the model's dimensions bound, every plan op is checked to
//! be executable, the preserve data must be available, options that would be ignored are refused.
//! Then the model and data load, and the evaluator runs the plan as an [`Editor`]
//! ([`super::PlanEditor`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use crate::eval::{
    default_path, evaluate, progress_bar, EditMode, EditState, EvalOptions, EvalReport,
    ProbeOptions, Setup, SetupRequest, DEFAULT_DATA, DEFAULT_MODEL,
};
use crate::exec::cache::{default_dir, model_hash, Cache};
use crate::exec::editor::{OutputSink, PlanEditor};
use crate::exec::error::ExecError;
use crate::exec::executor::{Executor, Log, Phases};
use crate::exec::output::Provenance;
use crate::exec::preserve::{Counts, PreserveSource};
use crate::exec::shard::{file_hash, write_part, PartInfo, Shard, ShardError, PART_FORMAT};
use crate::model::{checkpoint, DeviceKind, LlavaConfig};
use crate::plan::{self, Plan, PlanOptions};
use crate::sema::ops;
use crate::sema::{DataSpec, LossKind, Mode, Op};

/// Cases `mkedsl run` edits when neither `--limit` nor `--all` is given: the README's main
/// command (`mkedsl run recipes/elora.edit`) must finish in under three minutes on a 2-core CPU.
pub const DEFAULT_LIMIT: usize = 24;

/// CPU threads candle's kernels use when neither `--threads` nor `RAYON_NUM_THREADS` says.
///
/// One: a second thread helps only phases whose single products are large. The model's
/// products split over the threads from `model::nn::gemm::PARALLEL_MIN_WORK` multiply-adds, so
/// on the embedded model `--threads 2` shortens ELoRA's knowledge space and the
/// preserved-knowledge statistics by 8–20 %, while a step's 55-token products stay on one thread
/// and the idle pools' spinning makes LoRA-Null's and LPEdit's steps 9–24 % slower (README,
/// "Speed", the threads paragraph). Raise it for large checkpoints and for those methods.
pub const DEFAULT_THREADS: usize = 1;

/// Sets the CPU threads of candle's kernels. Call it before the first tensor operation (the
/// thread pools read the setting once); `None` keeps `RAYON_NUM_THREADS` if set, else
/// [`DEFAULT_THREADS`]. `--threads 0` is refused (it used to run as 1 without a word), and so is
/// a count above [`max_cpu_threads`]: each thread is an OS thread spinning in candle's pool, and
/// `--threads 100000` would start them all.
pub fn set_cpu_threads(threads: Option<usize>) -> std::result::Result<(), ExecError> {
    let n = match threads {
        Some(0) => {
            return Err(ExecError::Option {
                reason: "--threads must be at least 1".into(),
                help: format!(
                    "leave it out for the default ({DEFAULT_THREADS}), or give a count up to {}",
                    max_cpu_threads()
                ),
            })
        }
        Some(n) if n > max_cpu_threads() => {
            return Err(ExecError::Option {
                reason: format!(
                    "--threads {n} is more than {} (4 × this machine's {} cores)",
                    max_cpu_threads(),
                    cores()
                ),
                help: "more threads than cores only adds synchronisation; give at most the number of cores".into(),
            })
        }
        Some(n) => n,
        None => match std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) if n > 0 => n.min(max_cpu_threads()),
            _ => DEFAULT_THREADS,
        },
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most CPU threads `--threads` accepts: four per core.
pub fn max_cpu_threads() -> usize {
    4 * cores()
}

/// Where prepare results are cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheChoice {
    /// `$MKEDSL_CACHE`, else `.mkedsl-cache/` beside the model folder.
    #[default]
    Default,
    Dir(PathBuf),
    /// `--no-cache`: neither read nor written.
    Off,
}

impl CacheChoice {
    /// The choice the `--no-cache` and `--cache-dir` flags make (clap refuses both at once).
    pub fn from_flags(no_cache: bool, dir: Option<PathBuf>) -> Self {
        match (no_cache, dir) {
            (true, _) => CacheChoice::Off,
            (false, Some(dir)) => CacheChoice::Dir(dir),
            (false, None) => CacheChoice::Default,
        }
    }
}

/// Everything `mkedsl run` can be told.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub recipe: PathBuf,
    pub setup: SetupRequest,
    /// `Some(true)` / `Some(false)` override the recipe's mode with sequential / single.
    pub sequential: Option<bool>,
    /// Edits per group in sequential mode (default: the recipe's `sequential_k`, else 10).
    pub k: Option<usize>,
    /// Overrides the recipe's `seed`.
    pub seed: Option<u64>,
    /// `--set NAME=VALUE`: values for the recipe's `param`s.
    pub overrides: crate::sema::Overrides,
    /// Where the JSON report goes: checked writable before the run, written by
    /// [`RunOutcome::write_json`] once the caller has shown the table (a failed write then
    /// loses nothing). With `shard`, the shard's partial report (`mkedsl merge` reads
    /// it).
    pub json: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub cache: CacheChoice,
    /// Edit only this shard's block of the cases ([`Shard::select`]).
    pub shard: Option<Shard>,
    pub preserve: Option<PathBuf>,
    pub preserve_captions: Option<PathBuf>,
    pub probe: ProbeOptions,
    /// Draw progress and print notes on stderr.
    pub verbose: bool,
    /// Memory the run may use, in bytes (`--max-memory`); `None` = the machine's memory. A plan
    /// whose estimate exceeds it is refused before the model loads.
    pub max_memory: Option<u64>,
}

impl RunRequest {
    /// A request with every default for `recipe`.
    pub fn new(recipe: PathBuf) -> Self {
        Self {
            recipe,
            setup: SetupRequest::default(),
            sequential: None,
            k: None,
            seed: None,
            overrides: crate::sema::Overrides::default(),
            json: None,
            out: None,
            cache: CacheChoice::Default,
            shard: None,
            preserve: None,
            preserve_captions: None,
            probe: ProbeOptions {
                batch_size: 16,
                max_new_tokens: 16,
            },
            verbose: false,
            max_memory: None,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: EvalReport,
    pub plan: Plan,
    /// Messages printed (or, when not verbose, not printed) during the run: cache reuse, …
    pub notes: Vec<String>,
    pub phases: Phases,
    pub preserve: String,
    pub cache_dir: Option<PathBuf>,
    /// `edit.json` files written by `--out`.
    pub artefacts: Vec<PathBuf>,
    /// The `--out` write that failed, if one did: the run finished and scored every case, but
    /// artefacts from that case on were not written.
    pub output_failure: Option<miette::Report>,
    /// Warnings about the data (answer words outside the vocabulary), printed on stderr when
    /// verbose.
    pub warnings: Vec<String>,
    /// CPU threads of the tensor kernels, when set ([`set_cpu_threads`]).
    pub threads: Option<usize>,
    /// With `--shard`: which shard of which run the report covers.
    pub part: Option<PartInfo>,
}

/// The CPU threads candle was told to use, if any.
pub fn cpu_threads() -> Option<usize> {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
}

impl RunOutcome {
    /// Writes the JSON report to `path` (a shard's partial report, with its `shard` object, for
    /// a shard); when an unsharded report cannot be written it is kept under the system's
    /// temporary folder and the error says where.
    pub fn write_json(&self, path: &Path) -> miette::Result<()> {
        match &self.part {
            Some(part) => write_part(path, &self.report, part)?,
            None => self.report.write_json_or_keep(path)?,
        }
        Ok(())
    }

    /// The lines printed under the metric table: where the time went, the data the method drew
    /// on, what the knowledge-space filter did.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let p = &self.phases;
        let t = &self.report.timing;
        let per = |s: f64| s / p.edits.max(1) as f64;
        let threads = self.threads.map_or(String::new(), |n| {
            format!(", {n} CPU thread{}", if n == 1 { "" } else { "s" })
        });
        let _ = writeln!(
            out,
            "time      prepare {:.1} s once; per edit {:.2} s spaces, {:.2} s optimisation, {:.2} s evaluation ({} edits, total {:.1} s{threads})",
            p.prepare_s,
            per(p.spaces_s),
            per(p.optimise_s),
            per(t.score_s) + t.pre_edit_s / p.edits.max(1) as f64,
            p.edits,
            t.total_s
        );
        if self.plan.metrics.len() < crate::sema::Metric::ALL.len() {
            let asked: Vec<&str> = self.plan.metrics.iter().map(|m| m.name()).collect();
            let _ = writeln!(
                out,
                "metrics   the recipe evaluates {}; the other columns are computed by the same pass and shown for reference",
                asked.join(", ")
            );
        }
        let _ = writeln!(out, "preserve  {}", self.preserve);
        let _ = writeln!(
            out,
            "cache     {}",
            match (
                &self.cache_dir,
                self.plan.steps.iter().any(|s| s.cache.is_some())
            ) {
                (_, false) => "not used (no cacheable step)".to_string(),
                (None, true) => "off (--no-cache)".to_string(),
                (Some(d), true) => d.display().to_string(),
            }
        );
        for k in &self.report.knowledge {
            let _ = writeln!(out, "{}", k.line());
        }
        for line in self.report.perturbations.iter().filter_map(|p| p.line()) {
            let _ = writeln!(out, "{line}");
        }
        for n in &self.report.null_spaces {
            let _ = writeln!(out, "{}", n.line());
        }
        out
    }
}

/// The recipe's identity for `mkedsl merge`: its file's SHA-256, combined with the `--set`
/// values when there are any (two parts run with different values are different runs).
fn recipe_hash(
    path: &Path,
    overrides: &crate::sema::Overrides,
) -> std::result::Result<String, ShardError> {
    let file = file_hash(path)?;
    if overrides.is_empty() {
        return Ok(file);
    }
    use sha2::Digest as _;
    let text = format!("{file}\n{}", overrides.describe());
    Ok(sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The preserve data sets a plan draws on.
fn preserve_sets(plan: &Plan) -> Vec<DataSpec> {
    let mut out: Vec<DataSpec> = Vec::new();
    let mut add = |d: &DataSpec| {
        if matches!(d, DataSpec::Preserve { .. }) && !out.contains(d) {
            out.push(d.clone());
        }
    };
    for s in &plan.steps {
        match &s.op {
            Op::Covariance(ops::Covariance { over, .. }) => add(over),
            Op::Train(ops::Train { loss: terms, .. }) => {
                for t in terms {
                    if let LossKind::KlToOriginal { over } = &t.kind {
                        add(over);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn counts(d: &DataSpec) -> Counts {
    match d {
        DataSpec::Preserve { text, vqa, caption } => Counts {
            text: *text,
            vqa: *vqa,
            caption: *caption,
        },
        DataSpec::Hallucinations { .. } => Counts {
            text: 0,
            vqa: 0,
            caption: 0,
        },
    }
}

/// Checks, plans and executes a recipe over a dataset.
pub fn run(req: &RunRequest) -> miette::Result<RunOutcome> {
    let model_dir = match &req.setup.model {
        Some(p) => p.clone(),
        None => default_path(DEFAULT_MODEL, "the embedded model")?,
    };
    let data = match &req.setup.data {
        Some(p) => p.clone(),
        None => default_path(DEFAULT_DATA, "the embedded dataset")?,
    };
    let config = LlavaConfig::from_path(&model_dir)?;
    // The weights' headers are compared with config.json before the recipe is bound to its
    // sizes (a layer count the file does not back is refused here, not after the checker has
    // expanded `layers(..)` over it). Missing weight files are reported when the model loads,
    // after the recipe's own refusals.
    if let Ok(files) = checkpoint::weight_files(&model_dir) {
        checkpoint::check_tensors(&config, &files)?;
    }
    let dims = config.dims();
    if let Some(json) = &req.json {
        if req.out.as_ref() == Some(json) {
            return Err(ExecError::Option {
                reason: format!("--json and --out both name `{}`", json.display()),
                help: "--out is a folder of artefacts; give --json a file path of its own".into(),
            }
            .into());
        }
        check_output_file(json, "--json")?;
    }
    let options = PlanOptions {
        device: match req.setup.device {
            DeviceKind::Cpu => plan::Device::Cpu,
            DeviceKind::Cuda => plan::Device::Cuda,
        },
        ..PlanOptions::default()
    };
    let mut compiled = crate::compile_with(&req.recipe, Some(&dims), options, &req.overrides)
        .map_err(|f| f.into_report())?;
    if let Some(seed) = req.seed {
        compiled.program.recipe.seed = seed;
        compiled.plan = plan::plan(&compiled.program, &options);
    }
    check_memory(&compiled, &dims, &config, req.max_memory, req.setup.dtype)?;
    let plan = compiled.plan;
    let recipe_k = match plan.recipe.mode {
        Mode::Single => None,
        Mode::Sequential { k } => Some(k),
    };
    let sequential = req.sequential.unwrap_or(recipe_k.is_some());
    let k = req.k.or(if sequential { recipe_k } else { None });
    let mode = EditMode::from_flags(sequential, k)?;

    let preserve = PreserveSource::resolve(
        &model_dir,
        req.preserve.clone(),
        req.preserve_captions.clone(),
    );
    let sets = preserve_sets(&plan);
    if sets.is_empty() && matches!(preserve, PreserveSource::Files { .. }) {
        return Err(ExecError::Option {
            reason: "--preserve / --preserve-captions were given but the recipe draws no preserved samples".into(),
            help: "drop them: only `preserve(...)` data (covariances, kl_to_original) reads them".into(),
        }
        .into());
    }
    for set in &sets {
        preserve.check(counts(set), &data)?;
    }
    let triplets = plan.steps.iter().any(|s| {
        matches!(
            &s.op,
            Op::IncontextMemory(ops::IncontextMemory {
                triplets: DataSpec::Hallucinations { .. },
                ..
            })
        )
    });
    if triplets && !matches!(preserve, PreserveSource::World { .. }) {
        return Err(ExecError::Preserve {
            reason: format!(
                "the recipe draws hallucination triplets, which come from the embedded world, but `{}` records no world",
                model_dir.display()
            ),
            help: "run UniKE-style recipes on the embedded model (examples/model), whose training.json names its world".into(),
        }
        .into());
    }
    if req.out.is_some() && plan.steps.iter().any(|s| matches!(s.op, Op::LatentIcl(_))) {
        return Err(ExecError::Option {
            reason: "--out cannot write this recipe's edit: its latent in-context memory is not part of the edit artefact format".into(),
            help: "drop --out for recipes with `latent_icl`; LoRA, weight deltas and extra neurons are written".into(),
        }
        .into());
    }
    if let Some(out) = &req.out {
        std::fs::create_dir_all(out).map_err(|e| ExecError::Write {
            path: out.clone(),
            reason: e.to_string(),
        })?;
    }

    let mut setup = Setup::load(&SetupRequest {
        model: Some(model_dir.clone()),
        data: Some(data),
        ..req.setup.clone()
    })?;
    let run_cases: Vec<usize> = setup.cases.iter().map(|c| c.index).collect();
    let selection = match req.shard {
        Some(shard) => {
            let selection = shard.select(run_cases.len(), mode.group_size());
            if selection.cases.is_empty() {
                return Err(ShardError::Empty {
                    shard: shard.to_string(),
                    cases: run_cases.len(),
                    groups: run_cases.len().div_ceil(mode.group_size()),
                    count: shard.count,
                }
                .into());
            }
            setup.cases = setup.cases[selection.cases.clone()].to_vec();
            Some(selection)
        }
        None => None,
    };
    let uses_cache = plan.steps.iter().any(|s| s.cache.is_some());
    let needs_hash =
        uses_cache && req.cache != CacheChoice::Off || req.out.is_some() || req.shard.is_some();
    let hash = if needs_hash {
        model_hash(&model_dir)?
    } else {
        String::new()
    };
    let cache_dir = match &req.cache {
        CacheChoice::Off => None,
        CacheChoice::Dir(d) => Some(d.clone()),
        CacheChoice::Default => Some(default_dir(&model_dir)),
    };
    let data_identity = data_identity(&preserve, &setup.template.template, req.setup.dtype);
    let cache = match &cache_dir {
        Some(d) if uses_cache => Cache::new(Some(d.clone()), hash.clone(), data_identity),
        _ => Cache::disabled(),
    };

    let bar = if req.verbose {
        progress_bar()
    } else {
        ProgressBar::hidden()
    };
    let recipe_label = format!("{} ({})", plan.recipe.name, req.recipe.display());
    let unknown_words = setup.unknown_words()?;
    let exec = Executor::new(
        plan.clone(),
        setup.template.template.clone(),
        preserve.clone(),
        cache,
        Log {
            notes: Vec::new(),
            verbose: req.verbose,
            bar: bar.clone(),
        },
    );
    let out = req.out.as_ref().map(|dir| OutputSink {
        dir: dir.clone(),
        provenance: Provenance {
            recipe: plan.recipe.name.clone(),
            recipe_file: req.recipe.display().to_string(),
            model: model_dir.display().to_string(),
            model_hash: hash.clone(),
            mode: mode.to_string(),
            cases: Vec::new(),
        },
    });
    let group_offset = selection.as_ref().map_or(0, |s| s.groups.start);
    let mut editor = PlanEditor::new(exec, mode, out).with_group_offset(group_offset);
    if req.verbose {
        for warning in &unknown_words {
            eprintln!("{warning}");
        }
    }
    let opts = EvalOptions {
        mode,
        probe: req.probe,
        progress: bar,
    };
    let info = setup.run_info(&recipe_label, Some(plan.recipe.seed));
    let mut state = EditState::new(setup.model);
    let mut evaluation = evaluate(&mut state, &mut editor, &setup.cases, &opts)?;
    let artefacts = editor.finish()?;
    // A shard numbers its groups as the unsharded run does.
    for row in &mut evaluation.cases {
        row.group += group_offset;
    }
    for row in &mut evaluation.cases {
        if let Some(c) = editor.exec.calibration.remove(&row.index) {
            row.knowledge = c.knowledge;
            row.perturbations = c.perturbations;
        }
    }
    let output_failure = editor.take_write_failure().map(miette::Report::new);
    let mut report = EvalReport::new(info, evaluation);
    report.null_spaces = editor.exec.null_space_reports();
    let part = match (req.shard, &selection) {
        (Some(shard), Some(_)) => Some(PartInfo {
            format: PART_FORMAT.into(),
            index: shard.index,
            count: shard.count,
            cases: setup.cases.iter().map(|c| c.index).collect(),
            run_cases: run_cases.len(),
            run_groups: run_cases.len().div_ceil(mode.group_size()),
            recipe_hash: recipe_hash(&req.recipe, &req.overrides)?,
            model_hash: hash.clone(),
            data_hash: file_hash(&setup.dataset.path)?,
            max_new_tokens: req.probe.max_new_tokens,
            mkedsl: env!("CARGO_PKG_VERSION").into(),
            dtype: req.setup.dtype.to_string(),
        }),
        _ => None,
    };
    let exec = editor.exec;
    Ok(RunOutcome {
        report,
        plan,
        notes: exec.log.notes,
        phases: exec.phases,
        preserve: if sets.is_empty() {
            "not used".into()
        } else {
            preserve.describe()
        },
        cache_dir,
        artefacts,
        output_failure,
        warnings: unknown_words,
        threads: cpu_threads(),
        part,
    })
}

/// The data part of every cache key: where preserved samples come from and the template that
/// formats them (`mkedsl plan` computes it too, to find a run's entries).
pub fn data_identity(
    preserve: &PreserveSource,
    template: &crate::data::PromptTemplate,
    dtype: crate::model::Precision,
) -> String {
    // Statistics gathered from half-precision activations differ slightly from f32 ones: a
    // bf16 run keeps entries of its own (f32 keys are those of runs before `--dtype` existed).
    let precision = match dtype {
        crate::model::Precision::F32 => String::new(),
        other => format!("; weights: {other}"),
    };
    format!(
        "preserve: {}; template: {:?}{precision}",
        preserve.identity(),
        template.as_str()
    )
}

/// Refuses a plan whose estimated peak memory exceeds `limit` (`--max-memory`, else the
/// machine's memory), pointing at the recipe line of the step that needs the most.
fn check_memory(
    compiled: &crate::Compiled,
    dims: &crate::model::ModelDims,
    config: &LlavaConfig,
    limit: Option<u64>,
    precision: crate::model::Precision,
) -> miette::Result<()> {
    use crate::plan::estimate::{human_bytes, machine_memory};
    let Some(limit) = limit.or_else(machine_memory) else {
        return Ok(());
    };
    let plan = &compiled.plan;
    let estimate = plan::estimate(
        plan,
        dims,
        crate::model::tensors::weight_bytes(config, precision),
        precision,
    );
    if estimate.total <= limit {
        return Ok(());
    }
    let message = format!(
        "this run needs about {} of memory at its peak but {} is available",
        human_bytes(estimate.total),
        human_bytes(limit)
    );
    let help = format!(
        "weights {} ({}); lower the counts or sizes of the step shown, or pass --max-memory SIZE (e.g. 64G) if the estimate is wrong for your machine (`mkedsl plan FILE --model DIR` shows it)",
        human_bytes(estimate.weights),
        estimate.weights_dtype
    );
    let diag = match estimate
        .peak_step
        .as_ref()
        .and_then(|(id, bytes, what)| plan.step(*id).map(|s| (s, bytes, what)))
    {
        Some((step, bytes, what)) => crate::exec::origin::at_origin(
            &compiled.sources,
            &step.origin,
            "mkedsl::exec::memory",
            message,
        )
        .label(format!(
            "step {} `{}` needs {}: {what}",
            step.id,
            step.op.name(),
            human_bytes(*bytes)
        )),
        None => crate::diagnostics::Diag::unplaced("mkedsl::exec::memory", message),
    };
    Err(crate::diagnostics::Diagnostics::from(diag.help(help)).into_report(&compiled.sources))
}

/// Refuses, before any work, an output path that cannot be written: a folder, a path inside
/// something that is not a folder, a folder that is not writable.
pub fn check_output_file(path: &Path, flag: &str) -> std::result::Result<(), ExecError> {
    crate::data::files::check_writable(path).map_err(|e| ExecError::Option {
        reason: format!("{flag} `{}` cannot be written: {e}", path.display()),
        help: format!("give {flag} a file path in a writable folder"),
    })
}

/// The recipe files of a folder, sorted (for `mkedsl bench` with no arguments).
pub fn recipes_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "edit"))
        .collect();
    out.sort();
    out
}
