//! `mkedsl sweep RECIPE --set lr=1e-3,3e-3 [--set rank=8,16] [--seeds 3]`: the recipe over the
//! grid of its parameters × seeds; one JSON, one Markdown table (mean and 95 % bootstrap interval
//! per metric and point), optionally an HTML report. `--task I` runs one run (a Slurm array
//! task), `--merge PARTS…` joins the parts, `--count` says how many runs there are.

use std::path::PathBuf;

use clap::Args;

use super::eval::ModeArg;
use super::inputs::EditDataArgs;
use crate::exec::run::DEFAULT_LIMIT;
use crate::exec::{CacheChoice, RunRequest};
use crate::sweep::{self, output, SweepFile, SweepRequest};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The recipe (`.edit` file); not with --merge.
    #[arg(required_unless_present = "merge")]
    pub file: Option<PathBuf>,
    /// A swept parameter and its values (repeat the flag for another parameter):
    /// `--set lr=1e-3,3e-3`. Every combination is a grid point; each value is checked like the
    /// literal it replaces before the first run.
    #[arg(long = "set", value_name = "NAME=V1,V2,…")]
    pub set: Vec<String>,
    /// Seeds per grid point: S, S+1, …, S+N−1, where S is --seed or the recipe's `seed`.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// The first seed [default: the recipe's `seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Folder for sweep.json and sweep.md (or, with --task, task-I.json) [default: sweeps/<recipe file stem>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write an HTML report (table, a line per metric over each parameter, provenance).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Run only run I of the grid (0-based, points × seeds, point-major) and write its part to
    /// --out as task-I.json: one Slurm array task. Join the parts with --merge.
    #[arg(long, value_name = "I", conflicts_with_all = ["merge", "count"])]
    pub task: Option<usize>,
    /// Print the number of runs (points × seeds) and stop: the size of the Slurm array.
    #[arg(long, conflicts_with = "merge")]
    pub count: bool,
    /// Join the task-I.json parts of one sweep into sweep.json and sweep.md under --out.
    #[arg(long, num_args = 1.., value_name = "PART")]
    pub merge: Vec<PathBuf>,
    #[command(flatten)]
    pub inputs: EditDataArgs,
    /// Edit and score only the first N cases of every run [default: 24].
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Edit and score every case of the dataset in every run.
    #[arg(long)]
    pub all: bool,
    /// Editing schedule of every run [default: the recipe's `mode`].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Edits per group in sequential mode [default: the recipe's `sequential_k`, else 10].
    #[arg(long)]
    pub k: Option<usize>,
    /// Neither read nor write the cache of prepare results.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Cache folder [default: $MKEDSL_CACHE, else .mkedsl-cache/ beside the model folder].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// CPU threads for tensor kernels [default: $RAYON_NUM_THREADS, else 1].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: SweepArgs) -> miette::Result<()> {
    if !args.merge.is_empty() {
        let file = sweep::merge(&args.merge)?;
        let out = args.out.unwrap_or_else(|| PathBuf::from("."));
        return finish(&file, &out, args.report.as_ref());
    }
    let Some(recipe) = args.file else {
        return Err(miette::miette!(
            help = "name the recipe: `mkedsl sweep recipes/ft_l.edit --set lr=1e-3,3e-3`",
            "no recipe named"
        ));
    };
    crate::exec::run::set_cpu_threads(args.threads)?;
    let limit = if args.all {
        None
    } else {
        Some(args.limit.unwrap_or(DEFAULT_LIMIT))
    };
    let (setup, probe) = args.inputs.into_request(limit)?;
    let out = args.out.unwrap_or_else(|| {
        let stem = recipe
            .file_stem()
            .map_or("recipe".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("sweeps").join(stem)
    });
    let request = SweepRequest {
        sets: args.set,
        seeds: args.seeds,
        first_seed: args.seed,
        task: args.task,
        template: RunRequest {
            setup,
            probe,
            sequential: args.mode.map(|m| m == ModeArg::Sequential),
            k: args.k,
            cache: CacheChoice::from_flags(args.no_cache, args.cache_dir),
            verbose: true,
            ..RunRequest::new(recipe.clone())
        },
        recipe,
        verbose: true,
    };
    if args.count {
        let (grid, _) = sweep::prepare(&request)?;
        println!("{}", grid.runs());
        return Ok(());
    }
    let file = sweep::sweep(&request)?;
    match args.task {
        Some(task) => {
            let path = out.join(format!("task-{task}.json"));
            output::write(&path, &output::json(&file)?)?;
            println!("part      {}", path.display());
            Ok(())
        }
        None => finish(&file, &out, args.report.as_ref()),
    }
}

/// Prints the table, then writes sweep.json, sweep.md and the report (the table is on screen
/// before any write can fail).
fn finish(file: &SweepFile, out: &std::path::Path, report: Option<&PathBuf>) -> miette::Result<()> {
    let table = output::markdown(file);
    print!("{table}");
    let json_path = out.join("sweep.json");
    output::write(&json_path, &output::json(file)?)?;
    output::write(&out.join("sweep.md"), &table)?;
    println!();
    println!("json      {}", json_path.display());
    println!("table     {}", out.join("sweep.md").display());
    if let Some(page) = report {
        super::report::write_for(file, Some(&json_path), Vec::new(), page)?;
    }
    Ok(())
}
