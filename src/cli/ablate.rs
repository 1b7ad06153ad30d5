//! `mkedsl ablate CONTROL.edit ARM.edit… [--seeds 3] [--limit 60]`: a paper's ablation at matched
//! reliability — each arm's learning rate chosen by one rule on the tuning cases, every arm run
//! over the seeds on every data file, means and paired differences with 95 % bootstrap
//! intervals; one JSON and one Markdown table.

use std::path::{Path, PathBuf};

use clap::Args;

use super::eval::ModeArg;
use super::inputs::EditDataArgs;
use crate::ablate::{self, table, AblateRequest, AblationFile, Tuning};
use crate::eval::default_path;
use crate::exec::compare::file_name;
use crate::exec::run::DEFAULT_LIMIT;
use crate::exec::{CacheChoice, RunRequest};

/// Evaluation files when none is named.
const DEFAULT_DATA: [&str; 2] = ["examples/data/evqa.json", "examples/data/eic.json"];
/// Tuning files when none is named: the same world, another draw of cases (`mkedsl dataset
/// --seed 1`).
const DEFAULT_TUNING: [&str; 2] = [
    "examples/data/tuning/evqa.json",
    "examples/data/tuning/eic.json",
];

#[derive(Debug, Args)]
pub struct AblateArgs {
    /// The arms' recipes, the control first; each declares the tuned `param` (default `lr`).
    #[arg(required_unless_present = "from", num_args = 2..)]
    pub arms: Vec<PathBuf>,
    /// Re-read an ablation.json instead of running: the same scores, each arm compared with
    /// --control (no run; the table and files go to --out).
    #[arg(
        long,
        value_name = "ABLATION.json",
        conflicts_with = "arms",
        requires = "control"
    )]
    pub from: Option<PathBuf>,
    /// With --from: the arm to compare every other with, by its recipe file as the ablation
    /// names it (or its file name).
    #[arg(long, value_name = "ARM.edit", requires = "from")]
    pub control: Option<String>,
    /// Seeds per arm: S, S+1, …, S+N−1 (S: --seed, else 0).
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The `param` the tuning rule sets in every arm.
    #[arg(long, default_value = "lr", conflicts_with = "no_tune")]
    pub tune: String,
    /// Rel every tuning file must reach.
    #[arg(long, default_value_t = 0.9, conflicts_with = "no_tune")]
    pub target_rel: f64,
    /// Tuning file (repeat the flag) [default: examples/data/tuning/evqa.json and eic.json].
    #[arg(long, conflicts_with = "no_tune")]
    pub tuning_data: Vec<PathBuf>,
    /// Cases per tuning file [default: all].
    #[arg(long, conflicts_with = "no_tune")]
    pub tuning_limit: Option<usize>,
    /// Run every arm at its declared values instead of tuning.
    #[arg(long)]
    pub no_tune: bool,
    /// Set a recipe parameter in every arm that declares it (repeat the flag); a name no arm
    /// declares is refused.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    // Model, --data (each file scored on its own; default examples/data/evqa.json and
    // eic.json; with --interleave all files as one cross-task sequence), images, device, dtype,
    // batch size.
    #[command(flatten)]
    pub inputs: EditDataArgs,
    /// Cases per data file (the first N) [default: 24].
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Every case of each data file.
    #[arg(long)]
    pub all: bool,
    /// Editing schedule [default: each recipe's `mode`].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Edits per group in sequential mode.
    #[arg(long)]
    pub k: Option<usize>,
    /// Folder for ablation.json and ablation.md [default: ablations/<control's file stem>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Neither read nor write the cache of prepare results.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Cache folder [default: $MKEDSL_CACHE, else .mkedsl-cache/ beside the model folder].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// CPU threads for tensor kernels [default: $RAYON_NUM_THREADS, else 1].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Check the ablation (every arm with its settings against the model, every --set used,
    /// every data and tuning file present), print how many runs it makes, and stop.
    #[arg(long)]
    pub check: bool,
}

fn files(
    given: Vec<PathBuf>,
    defaults: &[&str],
    what: &'static str,
) -> miette::Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given);
    }
    Ok(defaults
        .iter()
        .map(|d| default_path(d, what))
        .collect::<Result<_, _>>()?)
}

pub fn run(args: AblateArgs) -> miette::Result<()> {
    if let (Some(from), Some(control)) = (&args.from, &args.control) {
        return reread(from, control, args.out.as_ref());
    }
    crate::exec::run::set_cpu_threads(args.threads)?;
    if !(args.target_rel > 0.0 && args.target_rel <= 1.0) {
        return Err(miette::miette!(
            help = "Rel is a fraction: --target-rel 0.9 asks for 90 %",
            "--target-rel must lie in (0, 1], not {}",
            args.target_rel
        ));
    }
    let limit = if args.all {
        None
    } else {
        Some(args.limit.unwrap_or(DEFAULT_LIMIT))
    };
    let mut inputs = args.inputs;
    let datasets = files(
        std::mem::take(&mut inputs.data),
        &DEFAULT_DATA,
        "the embedded dataset",
    )?;
    let interleave = std::mem::take(&mut inputs.interleave);
    if interleave && datasets.len() < 2 {
        return Err(miette::miette!(
            help = "give --data at least twice (E-VQA and E-IC), or drop --interleave",
            "--interleave mixes several data files in one sequence; only {} was given",
            datasets.len()
        ));
    }
    let (setup, probe) = inputs.into_request(limit)?;
    let tuning = if args.no_tune {
        None
    } else {
        Some(Tuning {
            param: args.tune,
            target: args.target_rel,
            datasets: files(
                args.tuning_data,
                &DEFAULT_TUNING,
                "the embedded tuning cases",
            )?,
            limit: args.tuning_limit,
        })
    };
    let out = args.out.unwrap_or_else(|| {
        let stem = args.arms[0]
            .file_stem()
            .map_or("ablation".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("ablations").join(stem)
    });
    let request = AblateRequest {
        seeds: (0..args.seeds as u64).map(|i| args.seed + i).collect(),
        datasets,
        interleave,
        sets: args.sets,
        tuning,
        template: RunRequest {
            setup,
            probe,
            sequential: args.mode.map(|m| m == ModeArg::Sequential),
            k: args.k,
            cache: CacheChoice::from_flags(args.no_cache, args.cache_dir),
            verbose: true,
            ..RunRequest::new(args.arms[0].clone())
        },
        arms: args.arms,
        verbose: true,
    };
    if args.check {
        let checked = ablate::check(&request)?;
        println!(
            "ablation checks: {} arms, {} runs (arms × data × seeds){}",
            request.arms.len(),
            checked.runs(&request),
            if request.tuning.is_some() {
                " after tuning"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let file = ablate::ablate(&request)?;
    write(&file, &out)
}

/// `--from FILE --control ARM`: the ablation's table with another control.
fn reread(from: &Path, control: &str, out: Option<&PathBuf>) -> miette::Result<()> {
    let text = std::fs::read_to_string(from).map_err(|e| {
        miette::miette!(
            help = "name the ablation.json an `mkedsl ablate` run wrote",
            "cannot read `{}`: {e}",
            from.display()
        )
    })?;
    let file: AblationFile = serde_json::from_str(&text).map_err(|e| {
        miette::miette!(
            help = "name the ablation.json an `mkedsl ablate` run wrote",
            "`{}` is not an ablation: {e}",
            from.display()
        )
    })?;
    let names = |a: &ablate::Arm| [a.file.clone(), file_name(&a.file)];
    let Some(index) = file
        .arms
        .iter()
        .position(|a| names(a).iter().any(|n| n == control))
    else {
        let arms: Vec<String> = file.arms.iter().map(|a| a.file.clone()).collect();
        return Err(miette::miette!(
            help = format!("its arms: {}", arms.join(", ")),
            "`{control}` is not an arm of `{}`",
            from.display()
        ));
    };
    let out = out.cloned().unwrap_or_else(|| {
        let stem = Path::new(control)
            .file_stem()
            .map_or("control".into(), |s| s.to_string_lossy().into_owned());
        from.parent()
            .unwrap_or(Path::new("."))
            .join(format!("versus-{stem}"))
    });
    write(&ablate::with_control(&file, index), &out)
}

/// Prints the table and writes ablation.json and ablation.md under `out`.
fn write(file: &AblationFile, out: &Path) -> miette::Result<()> {
    let markdown = table::markdown(file);
    print!("{markdown}");
    let json = serde_json::to_string_pretty(file)
        .map_err(|e| miette::miette!("cannot serialise the ablation: {e}"))?;
    crate::sweep::output::write(&out.join("ablation.json"), &json)?;
    crate::sweep::output::write(&out.join("ablation.md"), &markdown)?;
    println!();
    println!("json      {}", out.join("ablation.json").display());
    println!("table     {}", out.join("ablation.md").display());
    Ok(())
}
