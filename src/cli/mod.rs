//! The `mkedsl` command line: one file per subcommand, each a thin shell over a library entry point.

use clap::{Parser, Subcommand};

pub mod ablate;
pub mod bench;
pub mod check;
pub mod compare;
pub mod dataset;
pub mod eval;
pub mod fmt;
pub mod infer;
pub mod inputs;
pub mod knowledge;
pub mod merge;
pub mod plan;
pub mod provenance;
pub mod report;
pub mod run;
pub mod sweep;
pub mod train;
pub mod world;

/// mkedsl — write a knowledge-editing method as a recipe, check it, plan it, run it.
#[derive(Debug, Parser)]
#[command(name = "mkedsl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check a recipe (no tensors); print a one-line summary or diagnostics.
    Check(check::CheckArgs),
    /// Print a recipe's execution plan (numbered lines, or JSON with --json).
    Plan(plan::PlanArgs),
    /// Write the embedded procedural world (facts, tokenizer, sample images) to a folder.
    World(world::WorldArgs),
    /// Run a model checkpoint on one prompt (and image) and print the greedy answer.
    Infer(infer::InferArgs),
    /// Score the unedited model on an MMEdit dataset: the pre-edit row of the papers' tables.
    Eval(eval::EvalArgs),
    /// Check, plan and run a recipe: edit every case of a dataset and print the metric table.
    Run(run::RunArgs),
    /// Merge the partial results of `mkedsl run … --shard I/N` into the unsharded run's report.
    Merge(merge::MergeArgs),
    /// Run a recipe over a grid of its `param` values × seeds: one JSON, one Markdown table with
    /// 95 % bootstrap intervals.
    Sweep(sweep::SweepArgs),
    /// A paper's ablation at matched reliability: arms × seeds × data files, means and paired
    /// differences from the control with 95 % bootstrap intervals.
    Ablate(ablate::AblateArgs),
    /// Time recipes side by side: seconds per edit by phase, and peak memory.
    Bench(bench::BenchArgs),
    /// Run recipes on datasets and print one Markdown metric table (the README's results).
    Compare(compare::CompareArgs),
    /// Write one self-contained HTML page (tables, plots, provenance) from results files.
    Report(report::ReportArgs),
    /// Rewrite recipes in the canonical layout (comments kept), or check that they are.
    Fmt(fmt::FmtArgs),
    /// Train the embedded tiny LLaVA on the procedural world.
    Train(train::TrainArgs),
    /// Measure a model's held-out accuracy on every question family of the world.
    Knowledge(knowledge::KnowledgeArgs),
    /// Write the world's E-VQA / E-IC datasets with a model's answers as `pred`.
    Dataset(dataset::DatasetArgs),
}

/// Parses the arguments and runs the chosen subcommand.
pub fn main() -> miette::Result<()> {
    quiet_broken_pipe();
    keep_freed_tensor_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Plan(args) => plan::run(args),
        Command::World(args) => world::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Run(args) => run::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Ablate(args) => ablate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Report(args) => report::run(args),
        Command::Train(args) => train::run(args),
        Command::Knowledge(args) => knowledge::run(args),
        Command::Dataset(args) => dataset::run(args),
    }
}

/// Keeps freed tensor buffers in the heap for the next op instead of returning them to the OS.
///
/// Every candle op allocates its result; glibc serves blocks above its mmap threshold (128 KiB
/// at first) with a fresh `mmap` and unmaps them on free, and trims the heap top above 128 KiB,
/// so each op on an activation of the embedded model (16,384 tokens × 344 × 4 bytes in ELoRA's
/// knowledge space when this was measured) paid page faults and zeroing for memory it had just
/// released. With blocks up to 32 MiB (glibc's ceiling) from the heap and 256 MiB kept on free,
/// the freed buffers are reused: ELoRA's knowledge space and prepare ran in 0.75–0.81 of the
/// time, evaluation in 0.85–0.95, peak resident memory unchanged (README, "Speed"). Linux/glibc
/// only.
fn keep_freed_tensor_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Lets a closed pipe end the program quietly, as it ends `cat` or `grep`.
///
/// Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`mkedsl infer --json |
/// head -c 100`) fails with EPIPE and `println!` panics (exit 101 and a panic message). Restoring
/// the default disposition makes the kernel end the process silently at that write instead; the
/// shell reports it as 141 (128 + SIGPIPE), the status every Unix filter gives in that case.
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler code; it is called before any thread
    // starts, so nothing races with the change of disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
